package health

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/redact"
	"github.com/mpha-dev/mpha/internal/runloop"
)

// Defaults of Options.
const (
	DefaultInterval        = 10 * time.Second
	DefaultTimeout         = 5 * time.Second
	DefaultFailures        = 3
	DefaultHeartbeatMaxAge = 30 * time.Second // 3 heartbeats at docs/design.md §10's default
)

// PairSource says what pair.yaml holds now (agent/heartbeat.GitPair is one).
type PairSource interface {
	Pair(ctx context.Context) (*gitops.Pair, error)
}

// publisher is what a Monitor needs of a jetstream.JetStream.
type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// Options configure a Monitor. Cluster and Pair are required, and Organization unless Probes are
// given.
type Options struct {
	// Cluster is this agent's cluster; Pair names the pair (its subjects).
	Cluster, Pair string
	// Probes are sent to each target (default DefaultProbes(Organization)).
	Probes []Probe
	// Organization is the TSB organization the status probe asks for (the MP's spec.organization).
	Organization string
	// Port is front-envoy's port on both FQDNs (default DefaultPort).
	Port int
	// URLs are absolute URLs probed too (health.probeURL), each a target of its own: the MP is
	// reachable when one of them answers 200 with JSON, as when a whole FQDN target passes.
	URLs []string
	// SelfURL is the base URL where, while this cluster is the active one, the monitor probes its
	// own MP for the heartbeat (Self) instead of https://<its mpFQDN>:<Port>.
	SelfURL string
	// Credentials authenticate the probes (tsb-mp-ha.md §6: a TSB user).
	Credentials Credentials
	// CABundle (PEM), if set, is the only trust for the MP's certificate; else the system roots.
	CABundle []byte
	// Timeout bounds each probe and each NATS call (default DefaultTimeout).
	Timeout time.Duration
	// Interval between rounds in Run (default DefaultInterval).
	Interval time.Duration
	// Failures is how many down rounds in a row make a suggestion (default DefaultFailures);
	// Recoveries how many healthy rounds in a row end the outage (default Failures).
	Failures, Recoveries int
	// HeartbeatMaxAge: an older heartbeat of the active is no evidence (default
	// DefaultHeartbeatMaxAge; pass 3 × heartbeatInterval).
	HeartbeatMaxAge time.Duration
	// AutoPropose also publishes a failover.requested event (mode planned) with the suggestion.
	AutoPropose bool
	// SigningKey, if set, signs that request (for agents with nats.requireSignedEvents).
	SigningKey ed25519.PrivateKey
	// Dial, if set, opens the probes' connections (default a net.Dialer).
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
	// Registerer receives the metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (default time.Now): it ages heartbeats and dates outages.
	Now func() time.Time
}

// Heartbeats gives the last heartbeat a cluster's agent published (a *heartbeat.Reader).
type Heartbeats interface {
	Last(ctx context.Context, cluster string) (heartbeat.Beat, error)
}

// Monitor probes the active MP in rounds and suggests a failover when it is down. Create it with
// New; RunOnce and Run may be called from any goroutine (rounds never overlap).
type Monitor struct {
	opts    Options
	js      publisher
	pairs   PairSource
	peers   Heartbeats
	subj    event.Subjects
	prober  *prober
	log     *slog.Logger
	metrics *metrics

	mu sync.Mutex
	st outage
	// self is the last probe of this cluster's own MP, made while it is the active one.
	self   *event.MPHealth
	selfAt time.Time
}

// outage is the monitor's memory between rounds.
type outage struct {
	// active and epoch are what pair.yaml said; a change starts afresh.
	active string
	epoch  int64
	// down and up count the down and healthy rounds in a row.
	down, up int
	// since is the first down round of the outage; zero when there is none.
	since time.Time
	// suggested and requested: this outage's events are published.
	suggested, requested bool
	verdict              Verdict
}

// Round is what one round saw and did.
type Round struct {
	// Active and Epoch are pair.yaml's at the round.
	Active  string
	Epoch   int64
	Verdict Verdict
	Results []Result
	// Peer is read only when no target passed.
	Peer Peer
	// Down is the number of down rounds in a row, this one included.
	Down int
	// Suggestion and Request are the ids of the events this round published.
	Suggestion, Request string
	// Self is this cluster's own MP health, probed while it is the active one.
	Self *event.MPHealth
}

// New validates opts and returns a Monitor publishing through js, reading pair.yaml from pairs
// and the active agent's heartbeats from peers (nil: no heartbeat is ever evidence, so a probe
// failure is always "down").
func New(js publisher, pairs PairSource, peers Heartbeats, opts Options) (*Monitor, error) {
	opts, subj, err := defaults(opts)
	if err == nil && (js == nil || pairs == nil) {
		err = errors.New("a JetStream client and a pair.yaml source are required")
	}
	if err != nil {
		return nil, fmt.Errorf("health monitor: %w", err)
	}
	p, err := newProber(opts)
	if err != nil {
		return nil, fmt.Errorf("health monitor: %w", err)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("health monitor: %w", err)
	}
	m.suggested.WithLabelValues(opts.Cluster).Set(0)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Monitor{opts: opts, js: js, pairs: pairs, peers: peers, subj: subj, prober: p,
		log: log.With("cluster", opts.Cluster, "pair", opts.Pair), metrics: m}, nil
}

// defaults validates opts and fills in their defaults.
func defaults(opts Options) (Options, event.Subjects, error) {
	var errs []error
	if err := gitops.ValidateClusterName(opts.Cluster); err != nil {
		errs = append(errs, fmt.Errorf("cluster: %w", err))
	}
	subj, err := event.NewSubjects(opts.Pair)
	if err != nil {
		errs = append(errs, err)
	}
	if len(opts.Probes) == 0 && opts.Organization == "" {
		errs = append(errs, errors.New("an organization (for the status probe) or a list of probes is required"))
	}
	if len(opts.Probes) == 0 {
		opts.Probes = DefaultProbes(opts.Organization)
	}
	for i, p := range opts.Probes {
		if p.Name == "" || !strings.HasPrefix(p.Path, "/") {
			errs = append(errs, fmt.Errorf("probes[%d]: a name and a path starting with '/' are required", i))
		}
	}
	for i, u := range opts.URLs {
		if pu, err := url.Parse(u); err != nil || (pu.Scheme != "https" && pu.Scheme != "http") || pu.Host == "" {
			errs = append(errs, fmt.Errorf("urls[%d]: an absolute http(s) URL is required", i))
		}
	}
	if opts.Failures < 0 || opts.Recoveries < 0 || opts.Port < 0 || opts.Port > 65535 {
		errs = append(errs, errors.New("failures, recoveries and port must not be negative (port at most 65535)"))
	}
	if err := opts.Credentials.validate(); err != nil {
		errs = append(errs, err)
	}
	if opts.SigningKey != nil && len(opts.SigningKey) != ed25519.PrivateKeySize {
		errs = append(errs, errors.New("the signing key is not an ed25519 private key"))
	}
	fill(&opts)
	return opts, subj, errors.Join(errs...)
}

func fill(opts *Options) {
	setDefault(&opts.Port, DefaultPort)
	setDefault(&opts.Timeout, DefaultTimeout)
	setDefault(&opts.Interval, DefaultInterval)
	setDefault(&opts.Failures, DefaultFailures)
	setDefault(&opts.Recoveries, opts.Failures)
	setDefault(&opts.HeartbeatMaxAge, DefaultHeartbeatMaxAge)
	if opts.Now == nil {
		opts.Now = time.Now
	}
}

func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Run runs a round at once and then every Interval until ctx ends, and returns nil then. A round
// that fails (pair.yaml unreadable, NATS down) is logged and tried again sooner.
func (m *Monitor) Run(ctx context.Context) error {
	loop := runloop.New(runloop.Options{Name: "health round", Debounce: min(time.Second, m.opts.Interval),
		Resync: m.opts.Interval, Logger: m.log})
	return loop.Run(ctx, func(ctx context.Context) error {
		_, err := m.RunOnce(ctx)
		return err
	})
}

// RunOnce runs one round: probe, judge, and publish the suggestion (and request) when due. Probe
// failures are a verdict, not an error; the error says the round could not read pair.yaml or
// publish what was due (the next round tries again).
func (m *Monitor) RunOnce(ctx context.Context) (Round, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pair, err := m.pairs.Pair(ctx)
	if err == nil {
		_, err = pair.Peer(m.opts.Cluster)
	}
	if err != nil {
		m.failed(ctx)
		return Round{}, fmt.Errorf("health round: pair.yaml: %w", err)
	}
	r := Round{Active: pair.Active, Epoch: pair.Epoch}
	if pair.Active == m.opts.Cluster {
		r.Verdict = VerdictSkipped
		m.track(pair)
		r.Results = m.prober.all(ctx, m.selfRequests(pair))
		if err := ctx.Err(); err != nil {
			return r, err
		}
		r.Self = selfHealth(r.Results)
		m.self, m.selfAt = r.Self, m.opts.Now()
		m.record(&r)
		return r, nil
	}
	m.self = nil
	m.track(pair)
	r.Results = m.prober.all(ctx, m.requests(pair))
	if err := ctx.Err(); err != nil {
		return r, err // stopping: the failures say nothing of the MP
	}
	ok := reachable(r.Results)
	if !ok {
		r.Peer = m.peer(ctx, pair.Active)
	}
	r.Verdict = Decide(ok, r.Peer)
	m.record(&r)
	if err := m.act(ctx, pair, &r); err != nil {
		m.failed(ctx)
		return r, err
	}
	return r, nil
}

// requests are the probes of a round: each probe on the floating and the instance FQDN, and
// each configured URL.
func (m *Monitor) requests(pair *gitops.Pair) []request {
	var out []request
	hosts := []struct{ target, host string }{{TargetFloating, pair.FloatingFQDN}}
	for _, c := range pair.Clusters {
		if c.Name == pair.Active && c.MPFQDN != pair.FloatingFQDN {
			hosts = append(hosts, struct{ target, host string }{TargetInstance, c.MPFQDN})
		}
	}
	for _, h := range hosts {
		base := baseURL(h.host, m.opts.Port)
		for _, p := range m.opts.Probes {
			out = append(out, request{target: h.target, probe: p.Name, url: base + p.Path})
		}
	}
	for i, u := range m.opts.URLs {
		out = append(out, request{target: TargetURL, probe: fmt.Sprintf("url-%d", i), url: u})
	}
	return out
}

// selfRequests are the probes of this cluster's own MP: SelfURL, else its FQDN in pair.yaml.
func (m *Monitor) selfRequests(pair *gitops.Pair) []request {
	base := strings.TrimSuffix(m.opts.SelfURL, "/")
	if base == "" {
		for _, c := range pair.Clusters {
			if c.Name == m.opts.Cluster {
				base = baseURL(c.MPFQDN, m.opts.Port)
			}
		}
	}
	out := make([]request, 0, len(m.opts.Probes))
	for _, p := range m.opts.Probes {
		out = append(out, request{target: TargetSelf, probe: p.Name, url: base + p.Path})
	}
	return out
}

// selfHealth is the heartbeat's MP health from the self probes: healthy when all passed.
func selfHealth(results []Result) *event.MPHealth {
	failed := failures(results)
	if len(failed) == 0 {
		return &event.MPHealth{Healthy: true, Detail: fmt.Sprintf("%d probes passed", len(results))}
	}
	return &event.MPHealth{Healthy: false, Detail: OneLine(strings.Join(failed, "; "), 200)}
}

// Self is what this agent last found of its own MP while active, for its heartbeat; nil when it
// is not the active one or its last probe is older than two intervals (the monitor stalled: no
// word is better than an old one).
func (m *Monitor) Self() *event.MPHealth {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.self == nil || m.opts.Now().Sub(m.selfAt) > 2*m.opts.Interval {
		return nil
	}
	h := *m.self
	return &h
}

// peer reads what the active's agent last said.
func (m *Monitor) peer(ctx context.Context, active string) Peer {
	if m.peers == nil {
		return Peer{Problem: "no heartbeat source"}
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	b, err := m.peers.Last(ctx, active)
	if err != nil {
		return Peer{Problem: redact.String(err.Error())}
	}
	age := m.opts.Now().Sub(b.At)
	return Peer{Seen: true, Age: age, Fresh: age <= m.opts.HeartbeatMaxAge, MP: b.Heartbeat.MP}
}

// failed counts a failed round, unless it failed because the monitor is stopping.
func (m *Monitor) failed(ctx context.Context) {
	if ctx.Err() == nil {
		m.metrics.errors.Inc()
	}
}
