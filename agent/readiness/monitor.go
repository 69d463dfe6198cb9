package readiness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent/release"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/runloop"
)

// repo is what the monitor needs of the Git repository.
type repo interface {
	Read(ctx context.Context, paths ...string) (gitrepo.Snapshot, error)
}

// Options configure a Monitor.
type Options struct {
	// Self is this cluster. Peer, if set, must be the other cluster of pair.yaml (the default).
	Self, Peer string
	// Namespace holds the MP's Secrets and Helm release (default tsb); Release names the release
	// (default mp).
	Namespace, Release string
	// StatusNamespace is the agent's own namespace: the readiness ConfigMap and its Events live
	// there.
	StatusNamespace string
	// Names are the exported secrets (secrets.names).
	Names []string
	// Key is the agents' HMAC key: the same on both sides, so digests compare.
	Key    []byte
	Layout gitops.Layout
	// Interval between rounds (default 1m).
	Interval time.Duration
	// Registerer receives the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Monitor runs the readiness checks in a loop and publishes the results as metrics, the
// mpha-readiness ConfigMap and Events on status changes.
type Monitor struct {
	opts    Options
	cs      kubernetes.Interface
	repo    repo
	log     *slog.Logger
	metrics *metrics
	// releases remembers the release's newest revision between rounds.
	releases *release.Reader
}

// New validates opts and returns a Monitor reading the cluster through cs and Git through repo.
func New(cs kubernetes.Interface, repo repo, opts Options) (*Monitor, error) {
	var errs []error
	if err := gitops.ValidateClusterName(opts.Self); err != nil {
		errs = append(errs, err)
	}
	if opts.StatusNamespace == "" {
		errs = append(errs, errors.New("the agent's namespace (for the readiness ConfigMap) is required"))
	}
	if len(opts.Key) < seal.MinKeyLen {
		errs = append(errs, seal.ErrShortKey)
	}
	if opts.Layout == (gitops.Layout{}) {
		errs = append(errs, errors.New("a repository layout is required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("readiness monitor: %w", err)
	}
	opts.Namespace = cmp.Or(opts.Namespace, "tsb")
	opts.Release = cmp.Or(opts.Release, "mp")
	if opts.Interval <= 0 {
		opts.Interval = time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("readiness monitor: %w", err)
	}
	return &Monitor{opts: opts, cs: cs, repo: repo, log: log.With("cluster", opts.Self), metrics: m,
		releases: release.NewReader(cs, opts.Namespace, opts.Release)}, nil
}

// RunOnce runs every check once and publishes the results.
func (m *Monitor) RunOnce(ctx context.Context) ([]Result, error) {
	in, err := m.input(ctx)
	if err != nil {
		m.failed(ctx)
		return nil, err
	}
	results := Evaluate(in)
	now := m.opts.Now()
	rep := NewReport(in.Active.Cluster, in.Standby.Cluster, results)
	rep.At = &now
	m.metrics.set(rep)
	if err := m.publish(ctx, rep); err != nil {
		m.failed(ctx)
		return results, err
	}
	m.log.Debug("readiness checked", "status", rep.Status, "active", rep.Active)
	return results, nil
}

// failed counts a failed round, unless it failed because the agent is stopping.
func (m *Monitor) failed(ctx context.Context) {
	if ctx.Err() == nil {
		m.metrics.errors.Inc()
	}
}

// Run runs a round at once and then every Interval until ctx ends. A failed round is logged and
// tried again sooner (growing delays up to Interval): readiness never stops the agent.
func (m *Monitor) Run(ctx context.Context) error {
	loop := runloop.New(runloop.Options{Name: "readiness round", Debounce: min(time.Second, m.opts.Interval),
		Resync: m.opts.Interval, Logger: m.log})
	return loop.Run(ctx, func(ctx context.Context) error {
		_, err := m.RunOnce(ctx)
		return err
	})
}

// input reads pair.yaml for the roles, this cluster's facts live, and the peer's from Git.
func (m *Monitor) input(ctx context.Context) (Input, error) {
	l, self := m.opts.Layout, m.opts.Self
	snap, err := m.repo.Read(ctx, l.Pair(), l.SecretsDir(self)+"/", l.HelmRelease(self), l.FactsDir()+"/")
	if err != nil {
		return Input{}, err
	}
	b, ok := snap.Files[l.Pair()]
	if !ok {
		return Input{}, fmt.Errorf("%s is not in Git yet", l.Pair())
	}
	pair, err := gitops.ParsePair(b)
	if err != nil {
		return Input{}, err
	}
	peer, err := pair.Peer(self)
	if err != nil {
		return Input{}, err
	}
	if m.opts.Peer != "" && m.opts.Peer != peer {
		return Input{}, fmt.Errorf("configured peer %q is not %s's peer in %s (%q)", m.opts.Peer, self, l.Pair(), peer)
	}
	local, err := LocalSite(ctx, m.cs, Local{Cluster: self, Namespace: m.opts.Namespace, Release: m.opts.Release, Names: m.opts.Names, Key: m.opts.Key,
		Releases: m.releases})
	if err != nil {
		return Input{}, err
	}
	in := Input{FloatingFQDN: pair.FloatingFQDN, Names: m.opts.Names}
	if pair.Active == self {
		in.Active, in.Standby = local, unseenStandby(peer)
		in.RenderedUnknown = "the standby's agent compares them: only it sees both"
		return in, nil
	}
	in.Standby, in.Active = local, m.exportedSite(peer, snap.Files)
	in.Rendered, in.RenderedUnknown = m.rendered(snap.Files)
	return in, nil
}

// unseenStandby is the standby as the active sees it: nothing yet.
func unseenStandby(peer string) Site {
	why := "no live facts of " + peer + " reach the active before its heartbeats do (NATS, a later issue)"
	return Site{Cluster: peer, SecretsUnknown: why, ValuesUnknown: why}
}

// exportedSite reads the active's facts from the SealedSecrets it committed for this cluster and,
// for the secrets it does not export (each MP's own certificates, or a secret left out of
// secrets.names), from the facts file it publishes (Layout.Facts). A configured secret in
// neither is absent on the active; another one is unknown.
func (m *Monitor) exportedSite(peer string, files map[string][]byte) Site {
	site := Site{Cluster: peer, Secrets: map[string]seal.Facts{}, Via: "as exported to Git",
		ValuesUnknown: "only its rendered values are in Git"}
	published := m.publishedFacts(peer, files)
	for _, n := range slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(m.opts.Names), CheckedSecrets()...)))) {
		p := m.opts.Layout.Secret(m.opts.Self, n)
		b, ok := files[p]
		pf, inFacts := published[n]
		switch {
		case ok:
			f, err := seal.FactsFromSealed(b)
			if err != nil {
				f = seal.Facts{Present: true, Sealed: true, Problem: fmt.Sprintf("%s: %v", p, err)}
			}
			site.Secrets[n] = f
		case inFacts:
			site.Secrets[n] = pf
		case slices.Contains(m.opts.Names, n):
			site.Secrets[n] = seal.Facts{}
		}
	}
	return site
}

// publishedFacts reads the facts file peer's agent publishes; a file that cannot be read makes
// every secret in it unknown, with the reason logged.
func (m *Monitor) publishedFacts(peer string, files map[string][]byte) map[string]seal.Facts {
	p := m.opts.Layout.Facts(peer)
	b, ok := files[p]
	if !ok {
		return nil
	}
	cluster, facts, err := seal.ParseFactsFile(b)
	if err == nil && cluster != peer {
		err = fmt.Errorf("it describes cluster %q", cluster)
	}
	if err != nil {
		m.log.Warn("ignoring the peer's facts file", "path", p, "error", err)
		return nil
	}
	return facts
}

// rendered reads the values the active committed for this cluster.
func (m *Monitor) rendered(files map[string][]byte) (map[string]any, string) {
	p := m.opts.Layout.HelmRelease(m.opts.Self)
	b, ok := files[p]
	if !ok {
		return nil, p + " is not in Git yet (the active's agent commits it)"
	}
	r, err := values.ParseRelease(b)
	if err != nil {
		return nil, fmt.Sprintf("%s: %v", p, err)
	}
	return r.Values, ""
}
