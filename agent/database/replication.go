package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgrepl"
	"github.com/mpha-dev/mpha/internal/redact"
	"github.com/mpha-dev/mpha/internal/runloop"
)

// Logical replication managed by mpha (postgres.replication: logical).
const (
	// Publication is what the active's agent publishes: every table of the MP's database.
	Publication = "mpha"
	// StepPromoteSubscription names the promotion of a logical subscriber in failover statuses.
	StepPromoteSubscription = "promote-subscription"
	// slotPrefix starts the name of every subscription mpha makes, and so of its slot on the
	// publisher: the slots mpha may drop.
	slotPrefix = "mpha_"
)

// SubscriptionName is the subscription cluster's standby database holds, named after it (and
// its slot on the active's server likewise): lower case, [a-z0-9_], at most 63 bytes.
func SubscriptionName(cluster string) string {
	b := []byte(slotPrefix + strings.ToLower(cluster))
	for i, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			b[i] = '_'
		}
	}
	return string(b[:min(len(b), 63)])
}

// ReplicationOptions configure a Replicator.
type ReplicationOptions struct {
	// Cluster is this site's; its subscription is SubscriptionName(Cluster).
	Cluster string
	// Self is this site's MP database as the MP's role (publishes, copies the schema in); Admin
	// the same database as a role that may create subscriptions (default Self); Peer the other
	// site's MP database, which the subscription connects to (a role with REPLICATION).
	Self, Admin, Peer string
	// Database is the MP's database (default tsb).
	Database string
	// Active reports whether pair.yaml names this cluster the active one, and its epoch: from a
	// cached copy, or read now when fresh (before a re-seed replaces this site's database).
	Active func(ctx context.Context, fresh bool) (bool, int64, error)
	// Interval between passes (default 10s).
	Interval time.Duration
	// Wake, if set, subscribes to what may change the roles (this cluster's Flux applying a
	// revision): a pass then runs at once.
	Wake func() (<-chan struct{}, func())
	// MaxSlotAge: an mpha slot on this site's server unused for longer is dropped (default 1h).
	MaxSlotAge time.Duration
	// CatchUp bounds the promotion's wait for the subscriber to receive what the fenced old
	// active committed (default 30s).
	CatchUp    time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// Replicator keeps this site's database in the pair's logical replication: publishing while the
// active, subscribed to the active while the standby, promoted once a failover to it is merged.
type Replicator struct {
	o   ReplicationOptions
	sub string
	m   replicationMetrics
	// mu serializes passes and promotions: the loop and the follow-through both act.
	mu            sync.Mutex
	inactiveSince map[string]time.Time
	// leftoverSince is when a pass as the active first found this site's subscription.
	leftoverSince time.Time
	// promotedEpoch is the epoch of the last promotion here (the failover's, or pair.yaml's when
	// a pass promoted): a pass never re-seeds this database at that epoch or before.
	promotedEpoch int64
	state         atomic.Pointer[ReplicationState]
}

// ReplicationState is what the last pass found.
type ReplicationState struct {
	At time.Time
	// Role is publisher, subscriber, or replica (a streaming replica: nothing to do).
	Role string
	// Lag is the subscription's, measured by a subscriber's pass; nil otherwise.
	Lag *pgrepl.Lag
	// Detail says what the pass did or waits for.
	Detail string
}

// The roles of a site in logical replication.
const (
	RolePublisher  = "publisher"
	RoleSubscriber = "subscriber"
)

type replicationMetrics struct {
	lagBytes, lagSeconds prometheus.Gauge
	slotInactive         *prometheus.GaugeVec
	slotsDropped, seeds  prometheus.Counter
}

// NewReplicator fills o's defaults and registers the replication's metrics.
func NewReplicator(o ReplicationOptions) (*Replicator, error) {
	if o.Self == "" || o.Peer == "" || o.Active == nil {
		return nil, errors.New("logical replication needs this site's DSN, the peer's, and the pair's roles")
	}
	if o.Admin == "" {
		o.Admin = o.Self
	}
	if o.Database == "" {
		o.Database = pgcopy.DefaultDatabase
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.MaxSlotAge <= 0 {
		o.MaxSlotAge = time.Hour
	}
	if o.CatchUp <= 0 {
		o.CatchUp = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	r := &Replicator{o: o, sub: SubscriptionName(o.Cluster), inactiveSince: map[string]time.Time{}, m: replicationMetrics{
		lagBytes: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mpha_postgres_replication_lag_bytes",
			Help: "WAL of the active's database that this site's logical subscription has not confirmed (the standby's pass; 0 on the active)."}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{Name: "mpha_postgres_replication_lag_seconds",
			Help: "How long ago this site's logical subscription last heard from the active's database while behind (0 caught up or on the active)."}),
		slotInactive: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "mpha_postgres_replication_slot_inactive_seconds",
			Help: "How long an mpha replication slot on this site's server has had no subscriber, by slot: dropped past postgres.maxSlotAge."}, []string{"slot"}),
		slotsDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpha_postgres_replication_slots_dropped_total",
			Help: "mpha replication slots dropped on this site's server because no subscriber used them for postgres.maxSlotAge."}),
		seeds: prometheus.NewCounter(prometheus.CounterOpts{Name: "mpha_postgres_replication_seeds_total",
			Help: "Times this site's database was replaced by the active's schema and subscribed anew (first subscription, schema change, lost slot)."}),
	}}
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{r.m.lagBytes, r.m.lagSeconds, r.m.slotInactive, r.m.slotsDropped, r.m.seeds} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("registering the replication metrics: %w", err)
			}
		}
	}
	return r, nil
}

// Subscription is the name of this site's subscription.
func (r *Replicator) Subscription() string { return r.sub }

// State is what the last pass found; nil before the first.
func (r *Replicator) State() *ReplicationState { return r.state.Load() }

// Run passes at once and then every Interval until ctx ends; a failed pass is logged and tried
// again sooner.
func (r *Replicator) Run(ctx context.Context) error {
	loop := runloop.New(runloop.Options{Name: "logical replication pass", Debounce: min(time.Second, r.o.Interval),
		Resync: r.o.Interval, Logger: r.o.Logger})
	if r.o.Wake != nil {
		go loop.SignalOn(ctx, r.o.Wake)
	}
	return loop.Run(ctx, r.Pass)
}

// Pass does one round: publish (the active) or subscribe and measure (the standby), then
// report and drop stale slots on this site's server.
func (r *Replicator) Pass(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	active, epoch, err := r.o.Active(ctx, false)
	if err != nil {
		return fmt.Errorf("reading the pair's roles: %w", err)
	}
	self, err := Probe(ctx, r.o.Self)
	if err != nil {
		return err
	}
	var st ReplicationState
	switch {
	case self.InRecovery:
		st = ReplicationState{Role: RoleReplica, Detail: self.Name + " is a streaming replica: nothing to publish or subscribe"}
	case active:
		st, err = r.publish(ctx, epoch)
	default:
		st, err = r.subscribe(ctx)
	}
	if err != nil {
		return err
	}
	if !self.InRecovery {
		if err := r.reapSlots(ctx); err != nil {
			return err
		}
	}
	st.At = r.o.Now()
	if st.Lag == nil {
		r.m.lagBytes.Set(0)
		r.m.lagSeconds.Set(0)
	}
	r.state.Store(&st)
	r.o.Logger.Debug("logical replication", "role", st.Role, "detail", st.Detail)
	return nil
}

// promoteGrace is how long the active's pass leaves a subscription it finds to the failover's
// promotion before it promotes it itself.
const promoteGrace = time.Minute

// publish keeps the publication holding every table. A subscription left here (the site was
// the standby and its promotion did not run: the agent restarted after the merge) is promoted
// after promoteGrace, as the follow-through would, fence and catch-up included.
func (r *Replicator) publish(ctx context.Context, epoch int64) (ReplicationState, error) {
	st := ReplicationState{Role: RolePublisher}
	sub, err := pgrepl.ReadSubscription(ctx, r.o.Admin, r.sub)
	if err != nil {
		return st, err
	}
	switch {
	case !sub.Exists:
		r.leftoverSince = time.Time{}
	case r.leftoverSince.IsZero() || r.o.Now().Sub(r.leftoverSince) < promoteGrace:
		// The follow-through promotes right after the merge, and reports it in the failover's
		// statuses: leave it the time to, and publish nothing before it did.
		if r.leftoverSince.IsZero() {
			r.leftoverSince = r.o.Now()
		}
		st.Detail = fmt.Sprintf("this site is the active but %s still subscribes to the peer: waiting for the failover's promotion (at most %s)",
			Describe(r.o.Self), promoteGrace)
		return st, nil
	default:
		detail, err := r.promote(ctx)
		if err != nil {
			return st, fmt.Errorf("this site is the active but still subscribes to the peer: %w", err)
		}
		r.leftoverSince, r.promotedEpoch = time.Time{}, max(r.promotedEpoch, epoch)
		r.o.Logger.Warn("promoted this site's subscription: it is the active and the failover's promotion did not run", "detail", detail)
	}
	added, err := pgrepl.Publish(ctx, r.o.Self, Publication)
	if err != nil {
		return st, err
	}
	if len(added) > 0 {
		r.o.Logger.Info("published tables for the standby's subscription", "publication", Publication, "added", len(added))
	}
	st.Detail = "publishing every table of " + Describe(r.o.Self) + " as " + Publication
	return st, nil
}

// subscribe makes and keeps this site's subscription to the active's publication: the schema
// first (the database replaced by mpha's own schema-only copy, then the subscription's initial
// copy brings the rows), again whenever the active's schema drifts from this one's or the
// active lost the subscription's slot; new tables are refreshed in.
func (r *Replicator) subscribe(ctx context.Context) (ReplicationState, error) {
	st := ReplicationState{Role: RoleSubscriber}
	sub, err := pgrepl.ReadSubscription(ctx, r.o.Admin, r.sub)
	if err != nil {
		return st, err
	}
	if !sub.Exists {
		published, err := pgrepl.Published(ctx, r.o.Peer, Publication)
		if err != nil {
			return st, fmt.Errorf("the active's database: %w", err)
		}
		if !published {
			st.Detail = "waiting for the active's agent to publish " + Publication + " on " + Describe(r.o.Peer)
			return st, nil
		}
		return r.seed(ctx, st, "no subscription yet")
	}
	tables, drift, err := pgrepl.SchemaDrift(ctx, r.o.Peer, r.o.Self, Publication)
	if err != nil {
		return st, err
	}
	if len(drift) > 0 {
		return r.seed(ctx, st, "the active's schema changed: "+strings.Join(drift[:min(len(drift), 5)], "; "))
	}
	for _, t := range tables {
		if !slices.Contains(sub.Tables, t) {
			if err := pgrepl.Subscribe(ctx, r.o.Admin, r.sub, r.o.Peer, Publication); err != nil {
				return st, err
			}
			r.o.Logger.Info("refreshed the subscription: the active publishes new tables", "subscription", r.sub)
			break
		}
	}
	lag, err := pgrepl.MeasureLag(ctx, r.o.Peer, r.o.Admin, r.sub)
	if errors.Is(err, pgrepl.ErrNoSlot) {
		return r.seed(ctx, st, "the active's server lost the subscription's slot")
	}
	if err != nil {
		return st, err
	}
	st.Lag = &lag
	r.m.lagBytes.Set(float64(lag.Bytes))
	r.m.lagSeconds.Set(lag.Seconds)
	st.Detail = fmt.Sprintf("subscription %s on %s: %s behind %s", r.sub, Describe(r.o.Self), FormatBytes(lag.Bytes), Describe(r.o.Peer))
	if !lag.Synced {
		st.Detail += ", initial copy under way"
	}
	return st, nil
}

// seed replaces this site's database by the active's schema and subscribes it. A database with
// sessions (this site's MP still up) is waited for, not forced.
func (r *Replicator) seed(ctx context.Context, st ReplicationState, why string) (ReplicationState, error) {
	// The pass read a cached pair.yaml; replacing the database waits for one read now.
	active, epoch, err := r.o.Active(ctx, true)
	if err != nil {
		return st, fmt.Errorf("reading the pair's roles before a re-seed: %w", err)
	}
	if active || epoch <= r.promotedEpoch {
		st.Detail = fmt.Sprintf("%s; not re-seeded: pair.yaml read now names this site active at epoch %d (promoted at %d)", why, epoch, r.promotedEpoch)
		if !active {
			st.Detail = fmt.Sprintf("%s; not re-seeded: pair.yaml at epoch %d names this site the standby, but its database was promoted at epoch %d", why, epoch, r.promotedEpoch)
		}
		return st, nil
	}
	if err := pgrepl.Unsubscribe(ctx, r.o.Admin, r.sub); err != nil {
		return st, err
	}
	res, err := pgcopy.Sync(ctx, r.o.Peer, r.o.Self, pgcopy.Options{Database: r.o.Database, SchemaOnly: true, Logger: r.o.Logger})
	if errors.Is(err, pgcopy.ErrBusy) {
		st.Detail = fmt.Sprintf("%s; waiting: %s has sessions (this site's MP must be down while it is the standby)", why, Describe(r.o.Self))
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("copying the active's schema (%s): %w", why, err)
	}
	if err := pgrepl.Subscribe(ctx, r.o.Admin, r.sub, r.o.Peer, Publication); err != nil {
		return st, err
	}
	r.m.seeds.Inc()
	r.o.Logger.Info("subscribed to the active's database", "why", why, "subscription", r.sub, "tables", len(res.Tables),
		"from", Describe(r.o.Peer), "into", Describe(r.o.Self))
	st.Detail = fmt.Sprintf("%s: copied the schema of %d tables from %s and subscribed as %s; the initial copy is under way",
		why, len(res.Tables), Describe(r.o.Peer), r.sub)
	return st, nil
}

// reapSlots reports the mpha slots on this site's server that no subscriber streams from, and
// drops those unused past MaxSlotAge: a slot keeps WAL until it is used or dropped. The time is
// counted from when this agent first saw the slot unused.
func (r *Replicator) reapSlots(ctx context.Context) error {
	slots, err := pgrepl.Slots(ctx, r.o.Self, slotPrefix)
	if err != nil {
		return err
	}
	now, seen := r.o.Now(), map[string]bool{}
	for _, s := range slots {
		if s.Active {
			continue
		}
		seen[s.Name] = true
		since, ok := r.inactiveSince[s.Name]
		if !ok {
			since, r.inactiveSince[s.Name] = now, now
		}
		age := now.Sub(since)
		r.m.slotInactive.WithLabelValues(s.Name).Set(age.Seconds())
		if age < r.o.MaxSlotAge {
			if age > 0 {
				r.o.Logger.Warn("a replication slot has no subscriber", "slot", s.Name, "for", age.Round(time.Second),
					"retains", FormatBytes(s.Retained), "dropped after", r.o.MaxSlotAge)
			}
			continue
		}
		dropped, err := pgrepl.DropSlot(ctx, r.o.Self, s.Name)
		if err != nil {
			return err
		}
		if dropped {
			r.m.slotsDropped.Inc()
			r.o.Logger.Warn("dropped a replication slot without a subscriber", "slot", s.Name, "unused for", age.Round(time.Second),
				"retained", FormatBytes(s.Retained))
		}
		delete(seen, s.Name)
	}
	for name := range r.inactiveSince {
		if !seen[name] {
			delete(r.inactiveSince, name)
			r.m.slotInactive.DeleteLabelValues(name)
		}
	}
	return nil
}

// Promote makes this site's database the one that takes writes: it fences the old active's
// database (read-only, the MP's sessions ended), waits until the subscription received
// everything committed there (at most CatchUp), then stops the subscription and advances every
// sequence. With the old active unreachable it promotes at once, with the lag last measured as
// the RPO. It reports false when there is no subscription (a primary already).
//
// epoch is the failover's (pair.yaml's once merged): until a later one, no pass re-seeds this
// database.
func (r *Replicator) Promote(ctx context.Context, epoch int64) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.promotedEpoch = max(r.promotedEpoch, epoch)
	sub, err := pgrepl.ReadSubscription(ctx, r.o.Admin, r.sub)
	if err != nil {
		return "", false, err
	}
	if !sub.Exists {
		return Describe(r.o.Self) + " has no subscription: it takes writes already", false, nil
	}
	detail, err := r.promote(ctx)
	return detail, err == nil, err
}

func (r *Replicator) promote(ctx context.Context) (string, error) {
	var notes []string
	fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ended, err := pgrepl.Fence(fctx, r.o.Peer)
	cancel()
	switch {
	case err != nil:
		notes = append(notes, fmt.Sprintf("the old active's database %s could not be fenced (%s)", Describe(r.o.Peer), redact.String(err.Error())))
		if last := r.state.Load(); last != nil && last.Lag != nil {
			notes = append(notes, fmt.Sprintf("RPO: %s behind when last measured, %s", FormatBytes(last.Lag.Bytes), ago(r.o.Now().Sub(last.At))))
		} else {
			notes = append(notes, "RPO unknown: no lag measured yet")
		}
	default:
		notes = append(notes, fmt.Sprintf("fenced the old active's database %s (read-only, %d sessions ended)", Describe(r.o.Peer), ended))
		behind, err := pgrepl.CatchUp(ctx, r.o.Peer, r.sub, 50*time.Millisecond, r.o.CatchUp)
		switch {
		case err != nil:
			notes = append(notes, "its WAL position could not be compared: "+redact.String(err.Error()))
		case behind == 0:
			notes = append(notes, "received everything it committed: RPO 0")
		default:
			notes = append(notes, fmt.Sprintf("RPO: %s it committed not received within %s", FormatBytes(behind), r.o.CatchUp))
		}
	}
	n, err := pgrepl.Promote(ctx, r.o.Admin, r.o.Peer, r.sub)
	if err != nil {
		return strings.Join(notes, "; "), fmt.Errorf("promoting %s: %w", Describe(r.o.Self), err)
	}
	r.m.lagBytes.Set(0)
	r.m.lagSeconds.Set(0)
	notes = append(notes, fmt.Sprintf("stopped subscription %s and advanced %d sequences on %s: it takes writes", r.sub, n, Describe(r.o.Self)))
	return strings.Join(notes, "; "), nil
}

// OnMerged is the follow-through hook (failover.FollowOptions.OnMerged) that promotes this
// site's subscriber once a failover to it is merged, before Flux starts the new MP's writers.
func (r *Replicator) OnMerged(ctx context.Context, st event.FailoverStatus) (event.Step, error) {
	detail, promoted, err := r.Promote(ctx, st.Epoch)
	switch {
	case err != nil:
		return event.Step{Name: StepPromoteSubscription, Result: event.StepFailed, Detail: joinNote(detail, err.Error())}, err
	case !promoted:
		return event.Step{Name: StepPromoteSubscription, Result: event.StepSkipped, Detail: detail}, nil
	}
	r.o.Logger.Info("promoted the subscriber database", "event", st.Event, "detail", detail)
	return event.Step{Name: StepPromoteSubscription, Result: event.StepDone, Detail: detail}, nil
}
