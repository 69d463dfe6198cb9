package database_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// logicalServer starts a server with wal_level=logical and the MP's role tsb, which owns the
// database tsb, may create databases (the schema copy replaces it) and has REPLICATION (the
// peer's subscription connects as it). The rig's superuser manages the subscription.
func logicalServer(ctx context.Context, t *testing.T) *testrig.Postgres {
	t.Helper()
	p := testrig.StartPostgresWith(t, testrig.PostgresOptions{Logical: true})
	exec(ctx, t, p.DSN("postgres"), "CREATE ROLE tsb LOGIN CREATEDB REPLICATION PASSWORD '"+password+"'", "CREATE DATABASE tsb OWNER tsb")
	return p
}

// site is one side of the pair in the replication test: its server, its replicator, its clock.
type site struct {
	name string
	pg   *testrig.Postgres
	r    *database.Replicator
	reg  *prometheus.Registry
}

// One pair through its whole life with logical replication managed by mpha: the standby waits
// for the active to publish, copies the schema and subscribes; its lag is the database check's
// RPO (measured on the active's slot, or from the active's heartbeat when its server is away); a
// TSB-shaped upgrade (a new table, a new column) re-seeds it; a planned failover under a write
// load fences the old active and loses no acknowledged row, and the new active's inserts never
// collide; the old active is re-subscribed the other way; a slot whose subscriber is gone is
// reported, then dropped after postgres.maxSlotAge. No password in any log or detail.
func TestReplicatorFailsOverAndBack(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	var logs testrig.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var active atomic.Value
	active.Store("east")
	var epoch atomic.Int64 // pair.yaml's: each role change moves it
	epoch.Store(7)
	var clock atomic.Int64
	clock.Store(time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	advance := func(d time.Duration) { clock.Add(int64(d)) }

	east, west := &site{name: "east", pg: logicalServer(ctx, t)}, &site{name: "west", pg: logicalServer(ctx, t)}
	for _, s := range []*site{east, west} {
		peer := west
		if s == west {
			peer = east
		}
		s.reg = prometheus.NewRegistry()
		r, err := database.NewReplicator(database.ReplicationOptions{Cluster: s.name, Self: mp(s.pg), Admin: s.pg.DSN("tsb"), Peer: mp(peer.pg),
			Active: func(context.Context, bool) (bool, int64, error) { return active.Load() == s.name, epoch.Load(), nil }, MaxSlotAge: time.Hour,
			Registerer: s.reg, Logger: log.With("cluster", s.name), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		s.r = r
	}
	pass := func(s *site) *database.ReplicationState {
		t.Helper()
		if err := s.r.Pass(ctx); err != nil {
			t.Fatalf("%s's pass: %v", s.name, err)
		}
		return s.r.State()
	}
	caughtUp := func(s *site) {
		t.Helper()
		testrig.Eventually(t, s.name+"'s subscription to catch up", time.Minute, func(ctx context.Context) error {
			st := pass(s)
			if st.Lag == nil || !st.Lag.Synced || st.Lag.Bytes != 0 {
				return fmt.Errorf("%s", st.Detail)
			}
			return nil
		})
	}
	same := func(what string, from, to *site) {
		t.Helper()
		want, err := pgcopytest.Take(ctx, from.pg.DSN("tsb"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgcopytest.Take(ctx, to.pg.DSN("tsb"))
		if err != nil {
			t.Fatal(err)
		}
		if len(want.Tables) == 0 {
			t.Fatalf("%s: no tables", what)
		}
		for name, sum := range want.Tables {
			if got.Tables[name] != sum {
				t.Errorf("%s: %s is %q on %s, %q on %s", what, name, got.Tables[name], to.name, sum, from.name)
			}
		}
	}
	if err := pgcopytest.Generate(ctx, mp(east.pg), "tsb", 2000); err != nil {
		t.Fatal(err)
	}

	// The standby waits for the active to publish, then copies the schema and subscribes.
	if st := pass(west); st.Role != database.RoleSubscriber || !strings.Contains(st.Detail, "waiting for the active's agent to publish") {
		t.Fatalf("west before east publishes: %+v", st)
	}
	if st := pass(east); st.Role != database.RolePublisher {
		t.Fatalf("east's pass: %+v", st)
	}
	if st := pass(west); !strings.Contains(st.Detail, "no subscription yet: copied the schema of") {
		t.Fatalf("west's first subscription: %+v", st)
	}
	caughtUp(west)
	same("after the initial copy", east, west)

	// The RPO gate: measured on the active's slot; from its heartbeat when its server is away.
	check := func(o database.CheckOptions) event.Check {
		o.Topology, o.Self, o.Subscription, o.Subscriber, o.Active = database.Auto, mp(west.pg), west.r.Subscription(), west.pg.DSN("tsb"), "east"
		o.MaxLag, o.Now = 30*time.Second, time.Now
		if o.MaxLagBytes == 0 {
			o.MaxLagBytes = 16 << 20
		}
		c := database.Check(ctx, o)
		noPassword(t, "the check's evidence", c.Evidence)
		return c
	}
	if c := check(database.CheckOptions{Peer: mp(east.pg)}); c.Result != "pass" ||
		!strings.Contains(c.Evidence, "logical subscription mpha_west on 127.0.0.1:") || !strings.Contains(c.Evidence, "per its slot on the active's server") {
		t.Errorf("the check caught up: %+v", c)
	}
	heartbeat := func(lsn string) database.PeerStatus {
		return func(context.Context, string) (*event.PostgresStatus, time.Time, error) {
			return &event.PostgresStatus{LSN: lsn}, time.Now().Add(-2 * time.Second), nil
		}
	}
	if c := check(database.CheckOptions{PeerStatus: heartbeat("FF/0")}); c.Result != "fail" ||
		!strings.Contains(c.Evidence, "lag over the RPO") || !strings.Contains(c.Evidence, "against the active's heartbeat of 2s ago") {
		t.Errorf("the check against a heartbeat far ahead: %+v", c)
	}
	if c := check(database.CheckOptions{PeerStatus: heartbeat("0/1")}); c.Result != "pass" {
		t.Errorf("the check against a heartbeat behind what was received: %+v", c)
	}
	// The subscription stopped while the active writes: over a small limit, and the standby's
	// pass measures and exports the lag.
	exec(ctx, t, west.pg.DSN("tsb"), "ALTER SUBSCRIPTION mpha_west DISABLE")
	exec(ctx, t, mp(east.pg), "INSERT INTO public.audit_log (time, actor, kind, resource, operation) SELECT g, 'stopped', 'tenant', 'r', 'create' FROM generate_series(1, 500) g")
	if c := check(database.CheckOptions{Peer: mp(east.pg), MaxLagBytes: 1024}); c.Result != "fail" || !strings.Contains(c.Evidence, "lag over the RPO") {
		t.Errorf("the check with the subscription stopped: %+v", c)
	}
	if st := pass(west); st.Lag == nil || st.Lag.Bytes == 0 || value(t, west.reg, "mpha_postgres_replication_lag_bytes") != float64(st.Lag.Bytes) {
		t.Errorf("west's pass with its subscription stopped: %+v", st)
	}
	exec(ctx, t, west.pg.DSN("tsb"), "ALTER SUBSCRIPTION mpha_west ENABLE")
	caughtUp(west)

	// A TSB upgrade migrates the active's schema: a new table and a new column. The standby is
	// re-seeded from the new schema and follows both.
	// The new table has no primary key: publishing it must not break the MP's updates.
	exec(ctx, t, mp(east.pg), "CREATE TABLE public.new_in_upgrade (k text, v text)",
		"ALTER TABLE public.tenants ADD COLUMN labels jsonb",
		"INSERT INTO public.new_in_upgrade (k, v) SELECT 'k' || g, 'v' FROM generate_series(1, 50) g",
		`UPDATE public.tenants SET labels = '{"upgraded": true}'`)
	pass(east)
	exec(ctx, t, mp(east.pg), "UPDATE public.new_in_upgrade SET v = 'updated' WHERE k IN ('k1', 'k2')", "DELETE FROM public.new_in_upgrade WHERE k = 'k3'")
	if st := pass(west); !strings.Contains(st.Detail, "the active's schema changed: public.new_in_upgrade is missing; public.tenants.labels is missing") {
		t.Fatalf("west after the upgrade: %+v", st)
	}
	caughtUp(west)
	same("after the upgrade", east, west)
	if n := value(t, west.reg, "mpha_postgres_replication_seeds_total"); n != 2 {
		t.Errorf("west seeded %v times, want 2", n)
	}

	// A planned failover while east's MP writes: the merge's promotion fences east's database,
	// waits until west received everything, and promotes. Every row east acknowledged is on west.
	acked, stopped := writer(ctx, t, mp(east.pg))
	time.Sleep(500 * time.Millisecond)
	active.Store("west")
	epoch.Store(8)
	// West's own pass leaves the promotion to the follow-through, and publishes nothing yet.
	if st := pass(west); !strings.Contains(st.Detail, "waiting for the failover's promotion") {
		t.Fatalf("west's pass as the active before the promotion: %+v", st)
	}
	step, err := west.r.OnMerged(ctx, event.FailoverStatus{Event: "planned-west", Epoch: 8})
	if err != nil || step.Name != database.StepPromoteSubscription || step.Result != event.StepDone ||
		!strings.Contains(step.Detail, "sessions ended") || !strings.Contains(step.Detail, "RPO 0") || !strings.Contains(step.Detail, "advanced") {
		t.Fatalf("the promotion: %+v, %v", step, err)
	}
	t.Logf("promotion: %s", step.Detail)
	werr := <-stopped
	ids := acked()
	if len(ids) < 10 || werr == nil {
		t.Fatalf("the writer acknowledged %d rows and ended with %v: want a load, ended by the fence", len(ids), werr)
	}
	if n := pgcopytest.Count(ctx, t, west.pg.DSN("tsb"), fmt.Sprintf("SELECT count(*) FROM public.audit_log WHERE actor = 'writer' AND time <= %d", ids[len(ids)-1])); n != int64(len(ids)) {
		t.Errorf("west holds %d of the %d rows east acknowledged: RPO is not 0", n, len(ids))
	}
	if err := tryExec(ctx, mp(east.pg), "INSERT INTO public.organizations (name) VALUES ('late')"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("a write on the fenced old active: %v, want read-only", err)
	}
	exec(ctx, t, mp(west.pg), "INSERT INTO public.audit_log (time, actor, kind, resource, operation) VALUES (1, 'new active', 'tenant', 'r', 'create')",
		"INSERT INTO public.new_in_upgrade (k, v) VALUES ('after', 'v')", "INSERT INTO public.tenants (org_id, name) VALUES (1, 'after-failover')")
	if n := pgcopytest.Count(ctx, t, east.pg.DSN("tsb"), "SELECT count(*) FROM pg_replication_slots"); n != 0 {
		t.Errorf("%d slots left on the old active", n)
	}
	if step, err := west.r.OnMerged(ctx, event.FailoverStatus{Event: "planned-west"}); err != nil || step.Result != event.StepSkipped {
		t.Errorf("a second promotion: %+v, %v", step, err)
	}

	// A pass that reads a pair.yaml older than the promotion (west the standby at epoch 7) leaves
	// west's database alone: replacing it would lose what west took since.
	active.Store("east")
	epoch.Store(7)
	if st := pass(west); !strings.Contains(st.Detail, "not re-seeded: pair.yaml at epoch 7 names this site the standby, but its database was promoted at epoch 8") {
		t.Errorf("west's pass with a pair.yaml older than its promotion: %+v", st)
	}
	if n := pgcopytest.Count(ctx, t, mp(west.pg), "SELECT count(*) FROM public.audit_log WHERE actor = 'new active'"); n != 1 {
		t.Errorf("west's database lost the new active's row (%d)", n)
	}
	active.Store("west")
	epoch.Store(8)

	// Failback prepared: the new active publishes; the old one is re-seeded from it (a new
	// database, no longer read-only) and follows it.
	if st := pass(west); st.Role != database.RolePublisher {
		t.Fatalf("west after the failover: %+v", st)
	}
	if st := pass(east); !strings.Contains(st.Detail, "no subscription yet: copied the schema") {
		t.Fatalf("east re-subscribed: %+v", st)
	}
	caughtUp(east)
	same("east following west", west, east)
	if n := pgcopytest.Count(ctx, t, mp(east.pg), "SELECT count(*) FROM pg_settings WHERE name = 'default_transaction_read_only' AND setting = 'on'"); n != 0 {
		t.Error("east's re-seeded database is still read-only")
	}

	// East's subscriber is gone (its subscription dropped without its slot): west reports the
	// unused slot, and drops it once it is older than maxSlotAge; east then subscribes anew.
	exec(ctx, t, east.pg.DSN("tsb"), "ALTER SUBSCRIPTION mpha_east DISABLE", "ALTER SUBSCRIPTION mpha_east SET (slot_name = NONE)", "DROP SUBSCRIPTION mpha_east")
	inactive := func() float64 {
		return value(t, west.reg, "mpha_postgres_replication_slot_inactive_seconds")
	}
	testrig.Eventually(t, "west to see the unused slot", 30*time.Second, func(ctx context.Context) error {
		pass(west)
		if n := inactiveSeries(t, west.reg); n != 1 {
			return fmt.Errorf("%d slots reported", n)
		}
		return nil
	})
	advance(40 * time.Minute)
	pass(west)
	if v := inactive(); v != 2400 || pgcopytest.Count(ctx, t, mp(west.pg), "SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'mpha_east'") != 1 {
		t.Errorf("after 40 min: reported %vs, want 2400 and the slot kept", v)
	}
	advance(30 * time.Minute)
	pass(west)
	if n := pgcopytest.Count(ctx, t, mp(west.pg), "SELECT count(*) FROM pg_replication_slots"); n != 0 ||
		value(t, west.reg, "mpha_postgres_replication_slots_dropped_total") != 1 || inactiveSeries(t, west.reg) != 0 {
		t.Errorf("after 70 min: %d slots left", n)
	}
	pass(east)
	caughtUp(east)
	same("east subscribed anew", west, east)

	// A failback whose follow-through never ran (its agent restarted after the merge): east's
	// own pass promotes its subscription once the grace is over.
	active.Store("east")
	epoch.Store(9)
	if st := pass(east); !strings.Contains(st.Detail, "waiting for the failover's promotion") {
		t.Fatalf("east's pass as the active: %+v", st)
	}
	advance(61 * time.Second)
	if st := pass(east); st.Role != database.RolePublisher || !strings.Contains(st.Detail, "publishing every table") {
		t.Fatalf("east's pass after the grace: %+v", st)
	}
	if n := pgcopytest.Count(ctx, t, east.pg.DSN("tsb"), "SELECT count(*) FROM pg_subscription"); n != 0 {
		t.Errorf("%d subscriptions left on east after its pass promoted it", n)
	}
	exec(ctx, t, mp(east.pg), "INSERT INTO public.tenants (org_id, name) VALUES (1, 'after-failback')")
	noPassword(t, "the replicators' logs", logs.String())
	if !strings.Contains(logs.String(), "dropped a replication slot without a subscriber") || !strings.Contains(logs.String(), "the failover's promotion did not run") {
		t.Errorf("no log of the dropped slot:\n%s", logs.String())
	}
}

// writer inserts audit rows on dsn until an insert fails, as the MP would; acked lists the rows'
// time values whose commit returned, stopped the error that ended it.
func writer(ctx context.Context, t *testing.T, dsn string) (acked func() []int64, stopped <-chan error) {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var ids []int64
	done := make(chan error, 1)
	go func() {
		defer c.Close(context.Background())
		for i := int64(1); ; i++ {
			if _, err := c.Exec(ctx, `INSERT INTO public.audit_log (time, actor, kind, resource, operation) VALUES ($1, 'writer', 'tenant', 'r', 'update')`, i); err != nil {
				done <- err
				return
			}
			mu.Lock()
			ids = append(ids, i)
			mu.Unlock()
		}
	}()
	return func() []int64 { mu.Lock(); defer mu.Unlock(); return append([]int64(nil), ids...) }, done
}

func tryExec(ctx context.Context, dsn, q string) error {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	_, err = c.Exec(ctx, q)
	return err
}

// value is the single series name of reg (0 when there is none).
func value(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	v, _ := testrig.Metric(t, reg, name, nil)
	return v
}

func inactiveSeries(t *testing.T, reg *prometheus.Registry) int {
	t.Helper()
	n, err := testutil.GatherAndCount(reg, "mpha_postgres_replication_slot_inactive_seconds")
	if err != nil {
		t.Fatal(err)
	}
	return n
}
