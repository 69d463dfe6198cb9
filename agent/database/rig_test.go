package database_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const password = "tsb-Pa55word-never-shown"

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real Postgres servers; skipped with -short")
	}
}

func exec(ctx context.Context, t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	testrig.ExecSQL(ctx, t, dsn, stmts...)
}

// primary starts a server with the MP's role tsb (a password, pg_monitor to read the WAL
// receiver and the control data) and its database tsb.
func primary(ctx context.Context, t *testing.T) *testrig.Postgres {
	t.Helper()
	p := pgcopytest.StartServer(ctx, t, password, "GRANT pg_monitor TO tsb")
	exec(ctx, t, p.DSN("tsb"), "SET ROLE tsb", "CREATE TABLE public.audit_log (id bigserial PRIMARY KEY, payload text)")
	return p
}

// mp is the DSN the agent has for a site: the tsb role with its password.
func mp(p *testrig.Postgres) string { return pgcopytest.DSN(p, password) }

func noPassword(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, password) {
		t.Errorf("%s shows the password: %s", what, s)
	}
}

// Detection on servers the rig built: one server for both MPs is shared, a streaming replica is
// streaming, two primaries are independent, a replica of another server is refused.
func TestDetectOnRealServers(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b := primary(ctx, t), primary(ctx, t)
	replica := a.StartReplica(t)
	probe := func(p *testrig.Postgres) *database.Server {
		s, err := database.Probe(ctx, mp(p))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	pa, pb, pr := probe(a), probe(b), probe(replica)
	tests := []struct {
		name            string
		active, standby *database.Server
		want            database.Topology
	}{
		{"shared", pa, probe(a), database.Shared},
		{"streaming", pa, pr, database.Streaming},
		{"independent", pa, pb, database.Independent},
	}
	for _, tc := range tests {
		got, err := database.Detect(tc.active, tc.standby)
		if err != nil || got != tc.want {
			t.Errorf("%s: Detect = %s, %v", tc.name, got, err)
		}
	}
	if _, err := database.Detect(pb, pr); err == nil {
		t.Error("a replica of a is taken as following b")
	}
	if pr.SystemID != pa.SystemID || pa.SystemID == pb.SystemID || !pr.InRecovery {
		t.Errorf("system ids: a %s, b %s, replica %s (in recovery %v)", pa.SystemID, pb.SystemID, pr.SystemID, pr.InRecovery)
	}
	// The check on a shared configuration passes only when both DSNs reach one server.
	c := database.Check(ctx, database.CheckOptions{Topology: database.Shared, Self: mp(a), Peer: mp(a)})
	if c.Result != "pass" || !strings.Contains(c.Evidence, "shared database") {
		t.Errorf("shared: %+v", c)
	}
	c = database.Check(ctx, database.CheckOptions{Topology: database.Shared, Self: mp(b), Peer: mp(a)})
	if c.Result != "fail" {
		t.Errorf("shared configured over two servers: %+v", c)
	}
}

// The lag of a live replica under writes: within the limits it passes; with replay paused while
// the primary writes, it fails with the lag as evidence; resumed, it passes again; with the
// active unreachable, its heartbeat's LSN is used (an hour-old heartbeat fails it); with the replica
// stopped, it fails.
func TestStreamingLag(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	a := primary(ctx, t)
	replica := a.StartReplica(t)
	opts := database.CheckOptions{Topology: database.Auto, Self: mp(replica), Peer: mp(a), MaxLag: 30 * time.Second, MaxLagBytes: 1 << 20}
	write := func(n int) {
		exec(ctx, t, a.DSN("tsb"), fmt.Sprintf("INSERT INTO public.audit_log (payload) SELECT repeat(md5(i::text), 32) FROM generate_series(1, %d) i", n))
	}
	waitResult := func(o database.CheckOptions, want string) event.Check {
		t.Helper()
		var c event.Check
		testrig.Eventually(t, "the database check to "+want, time.Minute, func(ctx context.Context) error {
			write(10) // writes go on all along
			if c = database.Check(ctx, o); c.Result != want {
				return fmt.Errorf("%s: %s", c.Result, c.Evidence)
			}
			return nil
		})
		noPassword(t, "the evidence", c.Evidence)
		return c
	}

	c := waitResult(opts, "pass")
	if !strings.Contains(c.Evidence, "streaming replica 127.0.0.1:") || !strings.Contains(c.Evidence, "the WAL receiver is streaming") {
		t.Errorf("evidence: %s", c.Evidence)
	}
	exec(ctx, t, replica.DSN("postgres"), "SELECT pg_wal_replay_pause()")
	write(5000) // ~5 MiB of WAL the replica receives but does not replay
	c = waitResult(opts, "fail")
	if !strings.Contains(c.Evidence, "lag over the RPO") || !strings.Contains(c.Evidence, "MiB") {
		t.Errorf("evidence: %s", c.Evidence)
	}
	exec(ctx, t, replica.DSN("postgres"), "SELECT pg_wal_replay_resume()")
	waitResult(opts, "pass")

	// The active's database is out of reach: its heartbeat says where its WAL was.
	n := testrig.StartNATS(t)
	js := n.JetStream(t)
	if _, err := event.EnsureStream(ctx, js, "tsb-mp"); err != nil {
		t.Fatal(err)
	}
	st, err := database.Status(ctx, mp(a), database.Streaming)
	if err != nil {
		t.Fatal(err)
	}
	if st.Role != database.RolePrimary || st.LSN == "" || st.SystemID == "" {
		t.Errorf("the active's status: %+v", st)
	}
	hb, err := event.NewHeartbeat("mpha://agent/east", "hb-1", event.Heartbeat{Cluster: "east", Role: "active", Epoch: 7, Postgres: st})
	if err != nil {
		t.Fatal(err)
	}
	subj, _ := event.NewSubjects("tsb-mp")
	subject, _ := subj.Heartbeat("east")
	if _, err := event.Publish(ctx, js, subject, hb); err != nil {
		t.Fatal(err)
	}
	viaHeartbeat := opts
	viaHeartbeat.Topology, viaHeartbeat.Peer = database.Streaming, ""
	beats, err := heartbeat.NewReader(js, "tsb-mp", heartbeat.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	viaHeartbeat.PeerStatus = database.HeartbeatStatus(beats, time.Minute)
	checks, err := database.Preflight(viaHeartbeat).Run(ctx, "east", "west")
	if err != nil || len(checks) != 1 {
		t.Fatalf("the preflight: %v, %v", checks, err)
	}
	c = checks[0]
	if c.Result != "pass" || !strings.Contains(c.Evidence, "per the active's heartbeat of") {
		t.Errorf("via the heartbeat: %+v", c)
	}
	// An hour later, that heartbeat is no evidence.
	later, err := heartbeat.NewReader(js, "tsb-mp", heartbeat.ReaderOptions{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	viaHeartbeat.PeerStatus = database.HeartbeatStatus(later, time.Minute)
	if checks, err := database.Preflight(viaHeartbeat).Run(ctx, "east", "west"); err != nil || len(checks) != 1 ||
		checks[0].Result != "fail" || !strings.Contains(checks[0].Evidence, "its heartbeat: heartbeat too old: the last heartbeat of east is 1h") {
		t.Errorf("via a stale heartbeat: %+v, %v", checks, err)
	}
	rs, err := database.Status(ctx, mp(replica), database.Streaming)
	if err != nil || rs.Role != database.RoleReplica || rs.LagBytes == nil || rs.SystemID != st.SystemID {
		t.Errorf("the replica's status: %+v, %v", rs, err)
	}

	replica.Stop(t)
	c = database.Check(ctx, opts)
	if c.Result != "fail" || !strings.Contains(c.Evidence, fmt.Sprintf("this site's database: connecting to 127.0.0.1:%d/tsb", replica.Port)) {
		t.Errorf("with the replica stopped: %+v", c)
	}
	noPassword(t, "the evidence", c.Evidence)
}

// Independent databases: the check fails until a verified db sync replaced the standby's
// database, passes while that import is younger than the limit, fails when it ages past it.
func TestIndependentImportAge(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	active, standby := primary(ctx, t), primary(ctx, t)
	exec(ctx, t, active.DSN("tsb"), "INSERT INTO public.audit_log (payload) SELECT md5(i::text) FROM generate_series(1, 1000) i")
	now := time.Now()
	opts := database.CheckOptions{Topology: database.Auto, Self: mp(standby), Peer: mp(active), MaxImportAge: 24 * time.Hour,
		Now: func() time.Time { return now }}
	c := database.Check(ctx, opts)
	if c.Result != "fail" || !strings.Contains(c.Evidence, "never replaced by a verified `mpha db sync`") {
		t.Errorf("before any import: %+v", c)
	}
	if _, err := pgcopy.Sync(ctx, active.DSN("postgres"), standby.DSN("postgres"), pgcopy.Options{}); err != nil {
		t.Fatal(err)
	}
	c = database.Check(ctx, opts)
	if c.Result != "pass" || !strings.Contains(c.Evidence, "1000 rows") {
		t.Errorf("after the import: %+v", c)
	}
	st, err := database.Status(ctx, mp(standby), database.Independent)
	if err != nil || st.ImportedAt == nil || st.Role != database.RolePrimary {
		t.Errorf("the standby's status: %+v, %v", st, err)
	}
	now = now.Add(25 * time.Hour)
	c = database.Check(ctx, opts)
	if c.Result != "fail" || !strings.Contains(c.Evidence, "import older than the RPO") {
		t.Errorf("a day later: %+v", c)
	}
}

// Promote promotes a streaming standby, which then takes writes; a second call is a no-op.
func TestPromote(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a := primary(ctx, t)
	replica := a.StartReplica(t)
	hook := database.OnMerged(database.PromoteOptions{DSN: replica.DSN("tsb")})
	step, err := hook(ctx, event.FailoverStatus{Event: "ev-1", Phase: event.PhaseMerged})
	if err != nil || step.Result != event.StepDone || step.Name != database.StepPromote {
		t.Fatalf("promotion: %+v, %v", step, err)
	}
	exec(ctx, t, mp(replica), "INSERT INTO public.audit_log (payload) VALUES ('after the failover')")
	step, err = hook(ctx, event.FailoverStatus{Event: "ev-1", Phase: event.PhaseMerged})
	if err != nil || step.Result != event.StepSkipped {
		t.Errorf("promoting again: %+v, %v", step, err)
	}
}

// The MP's role promotes with EXECUTE on pg_promote granted in the postgres database, where
// Promote connects: a db sync that rebuilt the MP's database (dropping any grant made there)
// does not take the right away.
func TestPromoteAfterSync(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, b := primary(ctx, t), primary(ctx, t)
	exec(ctx, t, a.DSN("postgres"), "GRANT EXECUTE ON FUNCTION pg_promote(boolean, integer) TO tsb")
	exec(ctx, t, b.DSN("tsb"), "INSERT INTO public.audit_log (payload) VALUES ('from b')")
	if _, err := pgcopy.Sync(ctx, b.DSN("postgres"), a.DSN("postgres"), pgcopy.Options{}); err != nil {
		t.Fatalf("sync: %v", err)
	}
	replica := a.StartReplica(t)
	promoted, err := database.Promote(ctx, mp(replica), time.Minute)
	if err != nil || !promoted {
		t.Fatalf("promoting as the MP's role after a sync: %v, %v", promoted, err)
	}
	exec(ctx, t, mp(replica), "INSERT INTO public.audit_log (payload) VALUES ('after the failover')")
}
