package fence

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
)

// Event reasons, on the Deployments.
const (
	ReasonSplitBrain         = "SplitBrain"         // Warning, on the way into split brain
	ReasonSplitBrainResolved = "SplitBrainResolved" // Normal, on the way out
	ReasonSelfFenced         = "SelfFenced"         // Warning, the agent scaled the Deployment to 0
)

// ReportingController names the agent in Events kept outside their object's namespace.
const ReportingController = "mpha.dev/agent"

// maxEventMessage is what client-go's recorder keeps of a message, too.
const maxEventMessage = 1024

// metrics are the detector's Prometheus series. mpha_split_brain is absent until a round has
// read pair.yaml and the Deployments: unknown is neither 0 nor 1.
type metrics struct {
	cluster    string
	splitBrain *prometheus.GaugeVec
	fenced     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, cluster string, deployments []string) (*metrics, error) {
	m := &metrics{
		cluster: cluster,
		splitBrain: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "mpha_split_brain",
			Help: "1 while pair.yaml makes the peer active and this cluster's MP Deployments have ready replicas, else 0.",
		}, []string{"cluster"}),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "mpha_self_fence_total",
			Help: "MP Deployments this agent scaled to 0 because of a split brain.",
		}, []string{"cluster", "deployment"}),
	}
	for _, name := range deployments {
		m.fenced.WithLabelValues(cluster, name) // 0 from the start, so increase() sees the first one
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.splitBrain, m.fenced} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering split-brain metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) set(splitBrain bool) {
	v := 0.0
	if splitBrain {
		v = 1
	}
	m.splitBrain.WithLabelValues(m.cluster).Set(v)
}

// announce logs and emits Events when the condition changes. The memory is the detector's own: a
// restarted agent announces an ongoing split brain again, which for a critical condition is wanted.
func (d *Detector) announce(ctx context.Context, prev, st Status, deps map[string]*appsv1.Deployment) {
	switch {
	case st.SplitBrain && !prev.SplitBrain:
		d.log.Error("split brain", "message", st.Message, "epoch", st.Epoch, "active", st.Active, "ready", st.Ready)
		for _, name := range serving(st.Ready) {
			d.emit(ctx, reference(deps[name], d.opts.Namespace, name), ReasonSplitBrain, st.Message)
		}
	case !st.SplitBrain && prev.SplitBrain:
		msg := "split brain resolved: " + st.Message
		d.log.Info("split brain resolved", "message", st.Message, "epoch", st.Epoch, "active", st.Active, "ready", st.Ready)
		for _, name := range serving(prev.Ready) {
			d.emit(ctx, reference(deps[name], d.opts.Namespace, name), ReasonSplitBrainResolved, msg)
		}
	default:
		d.log.Debug("split brain checked", "split", st.SplitBrain, "epoch", st.Epoch, "active", st.Active, "ready", st.Ready)
	}
}

// serving lists the Deployments with ready replicas, sorted.
func serving(ready map[string]int32) []string {
	var out []string
	for _, name := range slices.Sorted(maps.Keys(ready)) {
		if ready[name] > 0 {
			out = append(out, name)
		}
	}
	return out
}

// reference points at a Deployment; dep may be nil when it is gone.
func reference(dep *appsv1.Deployment, ns, name string) corev1.ObjectReference {
	ref := corev1.ObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Namespace: ns, Name: name}
	if dep != nil {
		ref.UID, ref.ResourceVersion = dep.UID, dep.ResourceVersion
	}
	return ref
}

// emit creates an Event directly (not through client-go's asynchronous recorder), so a round's
// Events exist when RunOnce returns. One that cannot be created is logged; the round goes on.
func (d *Detector) emit(ctx context.Context, ref corev1.ObjectReference, reason, msg string) {
	typ := corev1.EventTypeWarning
	if reason == ReasonSplitBrainResolved {
		typ = corev1.EventTypeNormal
	}
	if len(msg) > maxEventMessage {
		msg = strings.ToValidUTF8(msg[:maxEventMessage-3], "") + "..."
	}
	now := metav1.NewTime(d.opts.Now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: ref.Name + ".", Namespace: ref.Namespace,
			Labels: map[string]string{gitops.ManagedByLabel: gitops.ManagedByValue}},
		InvolvedObject: ref,
		Reason:         reason, Message: msg, Type: typ, Count: 1,
		FirstTimestamp: now, LastTimestamp: now,
		Source: corev1.EventSource{Component: "mpha-agent", Host: d.opts.Cluster},
	}
	if ns := d.opts.EventNamespace; ns != "" && ns != ref.Namespace {
		// The API server accepts an Event in another namespace than its object only in the
		// events.k8s.io shape: eventTime, reportingController, reportingInstance and action set.
		ev.Namespace = ns
		ev.EventTime = metav1.NewMicroTime(now.Time)
		ev.ReportingController, ev.ReportingInstance, ev.Action = ReportingController, d.opts.Cluster, reason
	}
	if _, err := d.cs.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		d.log.Warn("emitting split-brain event", "reason", reason, "deployment", ref.Name, "error", err)
	}
}
