// Package fence watches for split brain (docs/design.md §2): this cluster's tsb or iam
// Deployments have ready replicas while pair.yaml makes the peer active. That is the old active
// coming back before its Flux applied the standby role. The Detector raises the condition as the
// mpha_split_brain metric, a Warning Event on each serving Deployment and an Error log, and with
// SelfFence scales the serving Deployments to 0 through their scale subresource: the one write
// to the management plane's objects the agent may make.
//
// Unknown means do nothing: when pair.yaml cannot be read, or the Deployments cannot, a round
// reports the error and changes neither the metric nor any replica count.
//
// RBAC, in the management plane's namespace (Options.Namespace):
//
//	deployments        get, list, watch   resourceNames: the Deployments (tsb, iam)
//	deployments/scale  patch              resourceNames: the same; only with SelfFence
//
// and in the namespace of the Events (Options.EventNamespace, default the MP's):
//
//	events             create             (create cannot be limited by resourceNames)
//
// By default the Events sit beside the Deployments, where kubectl describe deployment shows them:
// whoever wonders why tsb is at 0 replicas finds SelfFenced next to it. The chart puts them in
// the agent's own namespace instead (kubectl get events -n <agent namespace>), so that nothing in
// the MP's namespace is writable but the scale with SelfFence; an Event outside its object's
// namespace must be of the events.k8s.io shape (eventTime, reportingController, action). Without
// the events grant the detector still works; the Events are logged as not sent.
//
// It imports gitops and internal/runloop; nothing of cmd.
package fence

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/runloop"
)

// Defaults of Options.
const (
	DefaultInterval = 10 * time.Second
	// DefaultFenceAfter is twice heartbeat.DefaultRefresh, the age a cached pair.yaml may have.
	DefaultFenceAfter = time.Minute
)

// FieldManager is the field manager of the scale-downs, so the Deployment's managedFields say
// who set its replicas to 0.
const FieldManager = "mpha-agent"

// PairSource says what pair.yaml holds now; heartbeat.GitPair is one.
type PairSource interface {
	Pair(ctx context.Context) (*gitops.Pair, error)
}

// Options configure a Detector.
type Options struct {
	// Cluster is this cluster, a member of the pair.
	Cluster string
	// Namespace holds the management plane's Deployments (default tsb).
	Namespace string
	// Deployments are the ones that must not serve on a standby (default tsb, iam).
	Deployments []string
	// EventNamespace is where the Events go (default Namespace, beside the Deployments). The
	// chart sets the agent's own namespace, so that its Role grants nothing writable in the
	// MP's; the Events still name the Deployment as their object.
	EventNamespace string
	// SelfFence scales the ready Deployments to 0 once the split brain has lasted FenceAfter.
	SelfFence bool
	// FenceAfter (default DefaultFenceAfter) must exceed how stale the PairSource may be: right
	// after a failover to this cluster Flux scales the MP up from the merged commit while a
	// cached pair.yaml may still call this cluster standby, and fencing then would take down the
	// new active. An epoch change restarts the wait.
	FenceAfter time.Duration
	// Interval between rounds (default DefaultInterval); Run also reacts to Deployment changes.
	Interval time.Duration
	// Registerer receives the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Status is what one round found.
type Status struct {
	// SplitBrain: pair.yaml makes Active (another cluster) active and a Deployment here is ready.
	SplitBrain bool
	Active     string
	Epoch      int64
	// Ready holds the ready replicas of each Deployment that exists.
	Ready map[string]int32
	// Since is when this split brain was first seen at this epoch; zero without split brain.
	Since time.Time
	// Fenced lists the Deployments this round scaled to 0.
	Fenced  []string
	Message string
}

// Detector checks for split brain in rounds. Create it with New.
type Detector struct {
	opts    Options
	cs      kubernetes.Interface
	pairs   PairSource
	log     *slog.Logger
	metrics *metrics

	round sync.Mutex // one round at a time
	mu    sync.Mutex // guards last
	last  Status
}

// New validates o and returns a Detector reading the cluster through cs and pair.yaml through
// pairs.
func New(cs kubernetes.Interface, pairs PairSource, o Options) (*Detector, error) {
	var errs []error
	if err := gitops.ValidateClusterName(o.Cluster); err != nil {
		errs = append(errs, err)
	}
	if cs == nil || pairs == nil {
		errs = append(errs, errors.New("a Kubernetes client and a pair source are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("split-brain detector: %w", err)
	}
	o.Namespace = cmp.Or(o.Namespace, "tsb")
	if len(o.Deployments) == 0 {
		o.Deployments = []string{"tsb", "iam"}
	}
	o.Deployments = slices.Compact(slices.Sorted(slices.Values(o.Deployments)))
	o.FenceAfter = cmp.Or(o.FenceAfter, DefaultFenceAfter)
	o.Interval = cmp.Or(o.Interval, DefaultInterval)
	if o.Now == nil {
		o.Now = time.Now
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Registerer, o.Cluster, o.Deployments)
	if err != nil {
		return nil, fmt.Errorf("split-brain detector: %w", err)
	}
	return &Detector{opts: o, cs: cs, pairs: pairs, log: log.With("cluster", o.Cluster), metrics: m}, nil
}

// Status returns what the last successful round found (the zero Status before one).
func (d *Detector) Status() Status {
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.last
	st.Ready, st.Fenced = maps.Clone(st.Ready), slices.Clone(st.Fenced)
	return st
}

// RunOnce reads pair.yaml and the Deployments, publishes the condition and, with SelfFence, scales
// the serving Deployments down. A failed read returns the error and changes nothing.
func (d *Detector) RunOnce(ctx context.Context) (Status, error) {
	d.round.Lock()
	defer d.round.Unlock()
	pair, err := d.pairs.Pair(ctx)
	if err != nil {
		return Status{}, fmt.Errorf("reading pair.yaml: %w", err)
	}
	if _, err := pair.Peer(d.opts.Cluster); err != nil {
		return Status{}, err
	}
	deps, err := d.read(ctx)
	if err != nil {
		return Status{}, err
	}
	prev := d.Status()
	st := evaluate(d.opts.Cluster, d.opts.Namespace, pair, readiness(deps))
	if st.SplitBrain {
		st.Since = d.opts.Now()
		if prev.SplitBrain && prev.Epoch == st.Epoch {
			st.Since = prev.Since
		}
	}
	d.metrics.set(st.SplitBrain)
	d.announce(ctx, prev, st, deps)
	if d.opts.SelfFence && st.SplitBrain && d.opts.Now().Sub(st.Since) >= d.opts.FenceAfter {
		st.Fenced, err = d.fence(ctx, st, deps)
	}
	d.mu.Lock()
	d.last = st
	d.last.Ready, d.last.Fenced = maps.Clone(st.Ready), slices.Clone(st.Fenced)
	d.mu.Unlock()
	return st, err
}

// read gets the named Deployments; a missing one is left out.
func (d *Detector) read(ctx context.Context) (map[string]*appsv1.Deployment, error) {
	out := map[string]*appsv1.Deployment{}
	for _, name := range d.opts.Deployments {
		dep, err := d.cs.AppsV1().Deployments(d.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading Deployment %s/%s: %w", d.opts.Namespace, name, err)
		}
		out[name] = dep
	}
	return out, nil
}

func readiness(deps map[string]*appsv1.Deployment) map[string]int32 {
	out := make(map[string]int32, len(deps))
	for name, dep := range deps {
		out[name] = dep.Status.ReadyReplicas
	}
	return out
}

// evaluate decides split brain from pair.yaml and the ready replicas of the Deployments that
// exist:
//
//	pair.yaml active   ready replicas        split brain
//	self               any                   no
//	peer               all 0 or no objects   no
//	peer               some > 0              yes
func evaluate(self, ns string, pair *gitops.Pair, ready map[string]int32) Status {
	st := Status{Active: pair.Active, Epoch: pair.Epoch, Ready: ready}
	if pair.Active == self {
		st.Message = fmt.Sprintf("%s is active in pair.yaml (epoch %d)", self, pair.Epoch)
		return st
	}
	var serving []string
	for _, name := range slices.Sorted(maps.Keys(ready)) {
		if ready[name] > 0 {
			serving = append(serving, fmt.Sprintf("%s/%s (%d ready)", ns, name, ready[name]))
		}
	}
	if len(serving) == 0 {
		st.Message = fmt.Sprintf("%s is standby in pair.yaml (epoch %d, %s active) and none of its Deployments is ready", self, pair.Epoch, pair.Active)
		return st
	}
	st.SplitBrain = true
	what := "Deployment " + serving[0] + " serves"
	if len(serving) > 1 {
		what = "Deployments " + strings.Join(serving, ", ") + " serve"
	}
	st.Message = fmt.Sprintf("split brain: %s is standby in pair.yaml (epoch %d, %s active) but %s", self, pair.Epoch, pair.Active, what)
	return st
}

// fence scales every ready Deployment whose spec still asks for replicas to 0. The patch carries
// the resourceVersion the decision was made on: a Deployment changed since (Flux, the operator)
// is left alone and the next round decides again.
func (d *Detector) fence(ctx context.Context, st Status, deps map[string]*appsv1.Deployment) ([]string, error) {
	var fenced []string
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(deps)) {
		dep := deps[name]
		if dep.Status.ReadyReplicas == 0 || (dep.Spec.Replicas != nil && *dep.Spec.Replicas == 0) {
			continue
		}
		patch := fmt.Sprintf(`{"metadata":{"resourceVersion":%q},"spec":{"replicas":0}}`, dep.ResourceVersion)
		_, err := d.cs.AppsV1().Deployments(dep.Namespace).Patch(ctx, name, types.MergePatchType, []byte(patch),
			metav1.PatchOptions{FieldManager: FieldManager}, "scale")
		if err != nil {
			errs = append(errs, fmt.Errorf("scaling Deployment %s/%s to 0: %w", dep.Namespace, name, err))
			continue
		}
		fenced = append(fenced, name)
		d.metrics.fenced.WithLabelValues(d.opts.Cluster, name).Inc()
		msg := fmt.Sprintf("self-fenced: scaled to 0 (had %d ready) because %s is standby in pair.yaml (epoch %d, %s active)",
			dep.Status.ReadyReplicas, d.opts.Cluster, st.Epoch, st.Active)
		d.log.Warn("split brain: Deployment scaled to 0", "deployment", name, "ready", dep.Status.ReadyReplicas,
			"epoch", st.Epoch, "active", st.Active)
		d.emit(ctx, reference(dep, d.opts.Namespace, name), ReasonSelfFenced, msg)
	}
	return fenced, errors.Join(errs...)
}

// Run runs a round at once, on every change of the Deployments and every Interval, until ctx
// ends. A failed round is logged and tried again sooner; it never stops the agent.
func (d *Detector) Run(ctx context.Context) error {
	loop := runloop.New(runloop.Options{Name: "split-brain check", Debounce: min(time.Second, d.opts.Interval),
		Resync: d.opts.Interval, Logger: d.log})
	for _, name := range d.opts.Deployments {
		// One informer per name: a field selector on metadata.name is what RBAC resourceNames can
		// grant list and watch for.
		f := informers.NewSharedInformerFactoryWithOptions(d.cs, 0, informers.WithNamespace(d.opts.Namespace),
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = fields.OneTermEqualSelector("metadata.name", name).String()
			}))
		inf := f.Apps().V1().Deployments().Informer()
		if _, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(any) { loop.Signal() },
			UpdateFunc: func(any, any) { loop.Signal() },
			DeleteFunc: func(any) { loop.Signal() },
		}); err != nil {
			return fmt.Errorf("watching Deployment %s/%s: %w", d.opts.Namespace, name, err)
		}
		f.Start(ctx.Done())
		defer f.Shutdown()
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return ctx.Err()
		}
	}
	return loop.Run(ctx, func(ctx context.Context) error {
		_, err := d.RunOnce(ctx)
		return err
	})
}
