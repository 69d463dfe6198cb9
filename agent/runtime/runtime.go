// Package runtime is `mpha agent`: it serves /healthz, /readyz and /metrics, elects one leader
// among the agent's replicas on a Lease, and while leading runs the agent's loops (docs/design.md
// §2) built from the configuration and the Secrets it names. A loop that fails is restarted; each
// loop reads the roles from pair.yaml when it acts, so none restarts when they change.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/mpha-dev/mpha/agent"
	"github.com/mpha-dev/mpha/agent/alerts"
	"github.com/mpha-dev/mpha/agent/export"
)

// Options configure the runtime.
type Options struct {
	Config *agent.Config
	// Namespace is the agent's own: its Secrets, its Lease, its ConfigMap and Events.
	Namespace string
	// Identity names this replica in the Lease (the pod's name).
	Identity string
	Rest     *rest.Config
	// Listen is the address of /healthz, /readyz and /metrics (default :8080).
	Listen string
	// LeaderElection off runs the loops at once (one replica, or a workstation).
	LeaderElection bool
	// Lease timings (defaults 15s, 10s, 2s, client-go's usual).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// InsecureHTTPCredentials allows Git and forge credentials over plain http://.
	InsecureHTTPCredentials bool
	// GitCacheDir is where the Git writer keeps its copy of the repository between writes (the
	// pod's emptyDir); "" keeps it in memory.
	GitCacheDir string
	// Pprof serves Go's profiles under /debug/pprof/ on Listen (off by default: a heap or
	// goroutine profile is for whoever may reach the port).
	Pprof  bool
	Logger *slog.Logger
	// Registry receives the metrics (default a new registry with Go and process collectors).
	Registry *prometheus.Registry
	// Started, if set, is called with the address the server listens on.
	Started func(addr string)
}

// ErrLostLease ends Run when another replica took the Lease: the process exits and restarts as a
// follower, so no loop of the old leader can act after the handover.
var ErrLostLease = errors.New("lost the leader lease")

// Run serves and, once leading, runs the loops until ctx ends or the lease is lost.
func Run(ctx context.Context, o Options) error {
	if err := o.defaults(); err != nil {
		return err
	}
	rc := clientConfig(o.Rest)
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes dynamic client: %w", err)
	}
	m, err := newMetrics(o.Registry, o.Config.Cluster, o.Identity)
	if err != nil {
		return err
	}
	srv, err := serve(ctx, o, m)
	if err != nil {
		return err
	}
	defer srv.Close()
	lead := func(ctx context.Context) error {
		m.leader.Set(1)
		defer m.leader.Set(0)
		return runLoops(ctx, o, cs, dyn, m)
	}
	if !o.LeaderElection {
		return lead(ctx)
	}
	return elect(ctx, o, cs, lead)
}

func (o *Options) defaults() error {
	if o.Config == nil || o.Rest == nil {
		return errors.New("agent runtime: a configuration and a Kubernetes client configuration are required")
	}
	if err := o.Config.Validate(); err != nil {
		return fmt.Errorf("agent configuration: %w", err)
	}
	if o.Namespace == "" {
		return errors.New("agent runtime: the agent's namespace is required")
	}
	if o.Identity == "" {
		return errors.New("agent runtime: an identity (the pod name) is required")
	}
	if o.Listen == "" {
		o.Listen = ":8080"
	}
	if o.LeaseDuration <= 0 {
		o.LeaseDuration = 15 * time.Second
	}
	if o.RenewDeadline <= 0 {
		o.RenewDeadline = 10 * time.Second
	}
	if o.RetryPeriod <= 0 {
		o.RetryPeriod = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.Logger = o.Logger.With("cluster", o.Config.Cluster, "replica", o.Identity)
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
		o.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return nil
}

// Client-side rate of the agent's Kubernetes clients when the kubeconfig sets none.
const (
	clientQPS   = 50
	clientBurst = 100
)

// clientConfig is rc with a client-side rate fit for reading by name. Under the chart's Role the
// agent may not list Secrets, so a cold search for the MP's Helm release is one GET per fifth
// revision up to the Role's limit (40 at rbac.helmReleaseRevisions 200), paid in every readiness
// round by a standby whose MP is not installed yet. At client-go's default 5/s (burst 10), shared
// with the other loops, the e2e drill's preflight took half a minute. The API server's priority
// and fairness still bounds the agent.
func clientConfig(rc *rest.Config) *rest.Config {
	if rc.QPS != 0 || rc.Burst != 0 || rc.RateLimiter != nil {
		return rc
	}
	out := rest.CopyConfig(rc)
	out.QPS, out.Burst = clientQPS, clientBurst
	return out
}

// LeaseName is the Lease the replicas of one cluster's agent compete for.
func LeaseName(cluster string) string { return "mpha-agent-" + cluster }

// elect runs lead while holding the Lease. Losing it ends Run with ErrLostLease. When ctx ends,
// the loops stop first and the Lease is released after them, so the next leader starts at once
// and never alongside a loop of this one.
func elect(ctx context.Context, o Options, cs kubernetes.Interface, lead func(context.Context) error) error {
	lock, err := resourcelock.New(resourcelock.LeasesResourceLock, o.Namespace, LeaseName(o.Config.Cluster),
		cs.CoreV1(), cs.CoordinationV1(), resourcelock.ResourceLockConfig{Identity: o.Identity})
	if err != nil {
		return fmt.Errorf("leader lock: %w", err)
	}
	electCtx, release := context.WithCancel(context.WithoutCancel(ctx))
	defer release()
	var loopErr atomic.Value
	var leading atomic.Bool
	lost, loopsDone := make(chan struct{}), make(chan struct{})
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock: lock, ReleaseOnCancel: true, Name: LeaseName(o.Config.Cluster),
		LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(lctx context.Context) {
				defer close(loopsDone)
				leading.Store(true)
				lctx, stop := context.WithCancel(lctx)
				defer stop()
				defer context.AfterFunc(ctx, stop)()
				o.Logger.Info("leading: starting the loops")
				if err := lead(lctx); err != nil && lctx.Err() == nil {
					loopErr.Store(err)
					release() // give the Lease up: a replica that cannot act must not hold it
				}
			},
			OnStoppedLeading: func() { close(lost) },
			OnNewLeader: func(id string) {
				if id != o.Identity {
					o.Logger.Info("following", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	go func() {
		<-ctx.Done()
		if leading.Load() {
			select { // the loops stop on ctx; release the Lease once they have
			case <-loopsDone:
			case <-time.After(o.RenewDeadline):
				o.Logger.Warn("loops still stopping; releasing the lease anyway")
			}
		}
		release()
	}()
	le.Run(electCtx) // returns when the lease is released or lost
	if err, ok := loopErr.Load().(error); ok {
		return err
	}
	select {
	case <-lost:
		if ctx.Err() == nil {
			return ErrLostLease
		}
	default:
	}
	return ctx.Err()
}

func serve(ctx context.Context, o Options, m *metrics) (*http.Server, error) {
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", o.Listen, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !m.ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("/metrics", promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{Registry: o.Registry}))
	if o.Config.Alerts.Enabled {
		mux.HandleFunc(o.Config.Alerts.Path, m.bridge)
	}
	if o.Pprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	s := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			o.Logger.Error("health server", "error", err)
		}
	}()
	go func() { <-ctx.Done(); s.Close() }()
	m.ready.Store(true)
	if o.Started != nil {
		o.Started(ln.Addr().String())
	}
	return s, nil
}

// metrics are the runtime's own series; the loops register theirs on the same registry.
type metrics struct {
	leader   prometheus.Gauge
	restarts *prometheus.CounterVec
	retries  *prometheus.CounterVec
	export   *export.Metrics
	ready    atomic.Bool
	// alerts is the leader's alert bridge, served on the health port; nil on a follower.
	alerts atomic.Pointer[alerts.Handler]
}

func newMetrics(reg prometheus.Registerer, cluster, identity string) (*metrics, error) {
	m := &metrics{
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mpha_leader", Help: "1 while this replica leads and runs the loops.",
			ConstLabels: prometheus.Labels{"cluster": cluster, "replica": identity}}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpha_loop_restarts_total",
			Help: "Loops that ended with an error and were restarted."}, []string{"loop"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "mpha_git_push_retries_total",
			Help: "Git writes that did not land and were tried again on the new head (a racing push, Git unreachable), by branch kind (main, failover, drill)."},
			[]string{"branch"}),
	}
	reg.MustRegister(m.leader, m.restarts, m.retries)
	for _, b := range []string{"main", "failover", "drill"} {
		m.retries.WithLabelValues(b)
	}
	var err error
	if m.export, err = export.NewMetrics(reg); err != nil {
		return nil, err
	}
	return m, nil
}
