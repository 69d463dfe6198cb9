package runtime

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent/alerts"
	"github.com/mpha-dev/mpha/agent/certificate"
	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/export"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/fence"
	"github.com/mpha-dev/mpha/agent/flux"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/agent/standby"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/internal/natsconn"
	"github.com/mpha-dev/mpha/internal/notify"
	"github.com/mpha-dev/mpha/internal/redact"
)

// runLoops builds what the loops share (retrying while a Secret or NATS is missing) and runs
// them until ctx ends.
func runLoops(ctx context.Context, o Options, cs kubernetes.Interface, dyn dynamic.Interface, m *metrics) error {
	d, ok := setUp(ctx, o, cs, m)
	if !ok {
		return nil // ctx ended
	}
	defer d.close()
	loops, err := d.loops(ctx, o, cs, dyn)
	if err != nil {
		return err
	}
	ages := &heartbeatAges{beats: d.beats, pairs: d.pairs, now: time.Now, timeout: 2 * time.Second,
		desc: prometheus.NewDesc("mpha_heartbeat_age_seconds", "How old each cluster's last heartbeat in the stream is, by cluster (this one included), read at scrape time.",
			[]string{"cluster"}, nil)}
	if err := o.Registry.Register(ages); err != nil {
		return fmt.Errorf("registering the heartbeat ages: %w", err)
	}
	defer o.Registry.Unregister(ages)
	bridge, err := d.alertBridge(o)
	if err != nil {
		return err
	}
	if bridge != nil {
		m.alerts.Store(bridge)
		defer m.alerts.Store(nil)
	}
	var wg sync.WaitGroup
	for _, l := range loops {
		m.restarts.WithLabelValues(l.name) // at 0 from the start: an alert sees the first restart
		wg.Go(func() { supervise(ctx, o, m, l) })
	}
	wg.Wait()
	return nil
}

// setUp builds the loops' dependencies, retrying for as long as it takes (a Secret not created
// yet, Git or NATS down): waits of 1 s doubling up to a minute, then every minute. false when ctx
// ended first.
func setUp(ctx context.Context, o Options, cs kubernetes.Interface, m *metrics) (*deps, bool) {
	var d *deps
	ok := retryForever(ctx, wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Steps: 8, Cap: time.Minute},
		func(ctx context.Context) (err error) {
			d, err = build(ctx, o, cs, m)
			return err
		},
		func(err error, delay time.Duration) {
			o.Logger.Error("agent set-up failed; retrying", "in", delay.Round(time.Millisecond), "error", redact.String(err.Error()))
			m.restarts.WithLabelValues("setup").Inc()
		})
	return d, ok
}

// deps are what the loops share: the Git writer, NATS, the pair's state, the keys.
type deps struct {
	o      Options
	layout gitops.Layout
	repo   *gitrepo.Writer
	nc     *nats.Conn
	js     jetstream.JetStream
	pairs  *heartbeat.GitPair
	key    []byte
	forge  forge.Forge
	// signer signs the requests the agent publishes itself (nats.signingKeySecret); may be nil.
	signer ed25519.PrivateKey
	// watch is the health monitor; nil when health monitoring is not configured.
	watch *health.Monitor
	// flux follows this cluster's Kustomization; arrivals wakes whoever waits on a heartbeat.
	flux     *flux.Watch
	arrivals notify.Broadcast
	// beats reads the pair's heartbeats back: for the metrics, the watch, the follow-through and
	// the database check.
	beats *heartbeat.Reader
	// What the monitor and the alert bridge read from Secrets (watchSecrets).
	probeCreds health.Credentials
	probeCA    []byte
	alertAuth  alerts.Auth
	// selfDSN and peerDSN are this site's and the active's MP database (postgres.*), adminDSN
	// this site's as the role that manages its subscription; "" unset.
	selfDSN, peerDSN, adminDSN string
	// repl keeps the logical replication (postgres.replication: logical); nil otherwise.
	repl *database.Replicator
	// pairRevision is this cluster's applied Flux revision when isActive last read pair.yaml.
	pairRevision atomic.Pointer[string]
	// exportMetrics outlive each exporter (one per term as the active).
	exportMetrics *export.Metrics
}

func build(ctx context.Context, o Options, cs kubernetes.Interface, m *metrics) (*deps, error) {
	cfg := o.Config
	d := &deps{o: o, exportMetrics: m.export}
	var err error
	if d.layout, err = gitops.NewLayout(cfg.Git.Root); err != nil {
		return nil, err
	}
	if d.repo, err = gitWriter(ctx, o, cs, m); err != nil {
		return nil, err
	}
	if d.key, err = export.LoadKey(ctx, cs, o.Namespace, cfg.Secrets.HMACKeySecret); err != nil {
		return nil, err
	}
	if cfg.Forge.Kind != "none" {
		token, err := secretField(ctx, cs, o.Namespace, cfg.Forge.TokenSecret, "token")
		if err != nil {
			return nil, err
		}
		repo, err := forge.RepositoryFromURL(cfg.Git.URL)
		if err != nil {
			return nil, fmt.Errorf("forge repository from git.url: %w", err)
		}
		if d.forge, err = forge.New(ctx, forge.Options{Kind: cfg.Forge.Kind, URL: cfg.Forge.URL, Token: string(token), Repository: repo}); err != nil {
			return nil, err
		}
	}
	natsOpts := natsconn.Options{}
	if cfg.NATS.CredsSecret != "" {
		s, err := cs.CoreV1().Secrets(o.Namespace).Get(ctx, cfg.NATS.CredsSecret, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("reading the NATS credentials secret %s/%s: %w", o.Namespace, cfg.NATS.CredsSecret, err)
		}
		if natsOpts, err = natsconn.FromSecret(s.Data); err != nil {
			return nil, fmt.Errorf("NATS credentials secret %s/%s: %w", o.Namespace, cfg.NATS.CredsSecret, err)
		}
	}
	natsOpts.URL, natsOpts.Name, natsOpts.RetryOnFailedConnect = cfg.NATS.URL, "mpha agent "+cfg.Cluster+" ("+o.Identity+")", true
	if d.nc, err = natsconn.Connect(ctx, natsOpts, o.Logger); err != nil {
		return nil, err
	}
	if d.js, err = jetstream.New(d.nc); err != nil {
		d.nc.Close()
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	d.pairs = heartbeat.NewGitPair(d.repo, heartbeat.GitPairOptions{Layout: d.layout, Logger: o.Logger})
	if d.beats, err = heartbeat.NewReader(d.js, cfg.Pair, heartbeat.ReaderOptions{}); err != nil {
		d.nc.Close()
		return nil, err
	}
	if cfg.NATS.SigningKeySecret != "" {
		b, err := secretField(ctx, cs, o.Namespace, cfg.NATS.SigningKeySecret, "key")
		if err == nil {
			d.signer, err = event.ParseSigningKey(b)
		}
		if err != nil {
			d.nc.Close()
			return nil, fmt.Errorf("nats.signingKeySecret %s: %w", cfg.NATS.SigningKeySecret, err)
		}
	}
	if err := d.watchSecrets(ctx, o, cs); err != nil {
		d.nc.Close()
		return nil, err
	}
	return d, nil
}

func (d *deps) close() {
	d.nc.Close()
	d.repo.Close()
}

// loops builds every loop of this cluster's agent.
func (d *deps) loops(ctx context.Context, o Options, cs kubernetes.Interface, dyn dynamic.Interface) ([]loop, error) {
	cfg, log := o.Config, o.Logger
	subj, err := event.NewSubjects(cfg.Pair)
	if err != nil {
		return nil, err
	}
	src := certificate.ServiceProxy(cs, cfg.SealedSecrets.ControllerNamespace, cfg.SealedSecrets.ControllerName)
	if cfg.SealedSecrets.CertURL != "" {
		src = certificate.URL(&http.Client{Timeout: 30 * time.Second}, cfg.SealedSecrets.CertURL)
	}
	if d.flux, err = flux.New(dyn, cfg.Flux.Namespace, cfg.Flux.Kustomization, log.With("loop", "flux")); err != nil {
		return nil, err
	}
	cert := &certificate.Publisher{Self: cfg.Cluster, Layout: d.layout, Source: src, Repo: d.repo, Logger: log}
	hb := &heartbeat.Publisher{Cluster: cfg.Cluster, Subjects: subj, Pair: d.pairs, JS: d.js, Interval: cfg.HeartbeatInterval.Duration,
		Facts: d.facts(cs), Wake: d.flux.Changed().Subscribe, Logger: log}
	mon, err := readiness.New(cs, d.repo, readiness.Options{Self: cfg.Cluster, Namespace: cfg.Kubernetes.Namespace,
		Release: cfg.Kubernetes.HelmRelease, StatusNamespace: o.Namespace, Names: cfg.Secrets.Names, Key: d.key,
		Layout: d.layout, Registerer: o.Registry, Logger: log})
	if err != nil {
		return nil, err
	}
	sb, err := standby.New(cs, d.repo, standby.Options{Self: cfg.Cluster, Namespace: cfg.Kubernetes.Namespace,
		Release: cfg.Kubernetes.HelmRelease, Layout: d.layout, ChartRepository: cfg.Standby.ChartRepository,
		ChartRepositorySecret: cfg.Standby.ChartRepositorySecret, Overrides: cfg.Standby.Overrides, RoleMode: cfg.Standby.RoleMode,
		SecretValues: cfg.Standby.SecretValues, NotSecret: cfg.Standby.NotSecret,
		Deployments: cfg.Standby.Deployments, RestoreCronJob: cfg.Standby.RestoreCronJob, Wake: d.flux.Changed().Subscribe, Logger: log})
	if err != nil {
		return nil, err
	}
	if cfg.Postgres.Replication == "logical" {
		none := ""
		d.pairRevision.Store(&none)
		if d.repl, err = database.NewReplicator(database.ReplicationOptions{Cluster: cfg.Cluster, Self: d.selfDSN, Admin: d.adminDSN,
			Peer: d.peerDSN, Database: cfg.Postgres.Database, Active: d.isActive, Interval: cfg.HeartbeatInterval.Duration,
			MaxSlotAge: cfg.Postgres.MaxSlotAge.Duration, Wake: d.flux.Changed().Subscribe, Registerer: o.Registry, Logger: log.With("loop", "replication")}); err != nil {
			return nil, err
		}
	}
	fo, err := d.failoverHandler(o, cs, dyn, mon)
	if err != nil {
		return nil, err
	}
	if d.watch, err = d.healthMonitor(ctx, o); err != nil {
		return nil, err
	}
	split, err := fence.New(cs, d.pairs, fence.Options{Cluster: cfg.Cluster, Namespace: cfg.Kubernetes.Namespace, EventNamespace: o.Namespace,
		Deployments: cfg.Standby.Deployments, SelfFence: cfg.SelfFence, Registerer: o.Registry, Logger: log})
	if err != nil {
		return nil, err
	}
	loops := []loop{
		{"flux", d.flux.Run},
		{"flux-nudge", func(ctx context.Context) error { return d.flux.NudgeOnMerge(ctx, d.nc, subj.Status(), cfg.Cluster) }},
		{"heartbeat-arrivals", func(ctx context.Context) error { return heartbeat.Arrivals(ctx, d.nc, subj, &d.arrivals) }},
		{"certificate", cert.Run},
		{"heartbeat", hb.Run},
		{"readiness", mon.Run},
		{"standby", sb.Run},
		{"failover", fo.Run},
		{"fence", split.Run},
		{"export", func(ctx context.Context) error { return d.export(ctx, cs) }},
	}
	if d.watch != nil {
		loops = append(loops, loop{"health", d.watch.Run})
	}
	if d.repl != nil {
		loops = append(loops, loop{"replication", d.repl.Run})
	}
	return loops, nil
}

func (d *deps) failoverHandler(o Options, cs kubernetes.Interface, dyn dynamic.Interface, mon *readiness.Monitor) (*failover.Handler, error) {
	cfg := o.Config
	keys, err := event.ParseTrustedKeys(cfg.NATS.TrustedKeys)
	if err != nil {
		return nil, fmt.Errorf("nats.trustedKeys: %w", err)
	}
	opts := failover.Options{
		Cluster: cfg.Cluster, Pair: cfg.Pair, Layout: d.layout, Namespace: cfg.Kubernetes.Namespace, Base: cfg.Git.Branch,
		Mode: cfg.Forge.Mode, RequireSigned: cfg.NATS.RequireSignedEvents, TrustedKeys: keys,
		Preflight: failover.Preflights(d.preflights(cs, dyn, mon)...),
		Follow: failover.FollowOptions{ProbeURL: cfg.Health.ProbeURL, MergeInterval: cfg.Forge.MergePollInterval.Duration,
			Revision: failover.Revisions(cfg.Cluster, d.flux.Revision, failover.HeartbeatRevision(d.beats, 3*cfg.HeartbeatInterval.Duration)),
			// Follow Flux rather than poll it: look again when this cluster's Kustomization
			// changes or a heartbeat (the peer's report of its Flux) arrives, and nudge this
			// cluster's Flux once the merge's own steps are done.
			Wake:  func() (<-chan struct{}, func()) { return notify.Merge(d.flux.Changed(), &d.arrivals) },
			Nudge: func(ctx context.Context) { d.flux.NudgeNow(ctx, "the failover to this cluster was merged", nil) }},
		Registerer: o.Registry, Logger: o.Logger,
	}
	if d.forge != nil {
		opts.Forge = d.forge
	}
	if cfg.Postgres.PromoteOnFailover && d.selfDSN != "" {
		opts.Follow.OnMerged = database.OnMerged(database.PromoteOptions{DSN: d.selfDSN, Logger: o.Logger.With("loop", "failover")})
	}
	if d.repl != nil {
		// The subscriber becomes the database that takes writes once the merge is seen.
		opts.Follow.OnMerged = d.repl.OnMerged
	}
	if cfg.Postgres.SyncOnFailover && d.selfDSN != "" && d.peerDSN != "" {
		// This agent handles failovers to its site, so it copies the active's database into its own.
		opts.Prepare = database.BeforeFailover(database.SyncOptions{Topology: database.Topology(cfg.Postgres.Topology),
			Self: d.selfDSN, Peer: d.peerDSN, Database: cfg.Postgres.Database, Logger: o.Logger.With("loop", "failover")})
	}
	return failover.New(d.js, d.repo, opts)
}

// preflights are the failover's checks: the readiness monitor's, the standby's HelmRelease, and,
// where a database is configured (or embedded, judged by its restore job), the database's RPO.
func (d *deps) preflights(cs kubernetes.Interface, dyn dynamic.Interface, mon *readiness.Monitor) []failover.Preflight {
	cfg := d.o.Config
	out := []failover.Preflight{failover.Monitor(mon), failover.StandbyReady(dyn, cfg.Kubernetes.Namespace, cfg.Kubernetes.HelmRelease)}
	pg := cfg.Postgres
	if d.selfDSN == "" && pg.Topology != string(database.Embedded) {
		return out
	}
	co := database.CheckOptions{
		Topology: database.Topology(pg.Topology), Self: d.selfDSN, Peer: d.peerDSN,
		PeerStatus: database.HeartbeatStatus(d.beats, 3*cfg.HeartbeatInterval.Duration),
		MaxLag:     pg.MaxLag.Duration, MaxLagBytes: pg.MaxLagBytes, MaxImportAge: pg.MaxImportAge.Duration,
		LastRestore: database.RestoreJob(cs, cfg.Kubernetes.Namespace, cfg.Standby.RestoreCronJob),
	}
	if d.repl != nil {
		co.Subscription, co.Subscriber = d.repl.Subscription(), d.adminDSN
	}
	return append(out, database.Preflight(co))
}

// isActive says whether pair.yaml names this cluster the active one, and its epoch. It reads
// the heartbeat's cached copy while this cluster's Flux has applied nothing new since the last
// read (a merged failover reaches it as an applied revision), and reads now otherwise, or when
// fresh (before a standby's replication replaces its database).
func (d *deps) isActive(ctx context.Context, fresh bool) (bool, int64, error) {
	rev, err := d.flux.Revision(ctx)
	read := d.pairs.Pair
	if fresh || err != nil || rev != *d.pairRevision.Load() {
		read = d.pairs.Fresh
	}
	p, err := read(ctx)
	if err != nil {
		return false, 0, fmt.Errorf("reading pair.yaml: %w", err)
	}
	d.pairRevision.Store(&rev)
	return p.Active == d.o.Config.Cluster, p.Epoch, nil
}

// export runs the secret exporter on both sides, sealing for the peer. Each run reads pair.yaml
// and exports only while it names this cluster the active one (the commit is pinned to it): after
// a failover the new active exports from its first change on, without waiting for a cached role,
// and the demoted one stops writing at once.
func (d *deps) export(ctx context.Context, cs kubernetes.Interface) error {
	cfg := d.o.Config
	p, err := d.pairs.Pair(ctx)
	if err != nil {
		return fmt.Errorf("reading pair.yaml: %w", err)
	}
	peer, err := p.Peer(cfg.Cluster)
	if err != nil {
		return err
	}
	exp, err := export.New(cs, d.repo, export.Options{Self: cfg.Cluster, Peer: peer, Namespace: cfg.Kubernetes.Namespace,
		Names: cfg.Secrets.Names, Facts: readiness.CheckedSecrets(), Key: d.key, Layout: d.layout, DeleteRemoved: cfg.Secrets.DeleteRemoved, Metrics: d.exportMetrics,
		Wake: d.flux.Changed().Subscribe, Logger: d.o.Logger})
	if err != nil {
		return err
	}
	return exp.Run(ctx)
}
