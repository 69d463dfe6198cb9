package failover_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const pgPassword = "tsb-Sync-Pa55word-never-shown"

// mpDatabase starts a primary with the MP's role tsb (CREATEDB: a sync replaces its database)
// and database tsb holding a table; it returns the server and the DSN an agent has for it.
func mpDatabase(ctx context.Context, t *testing.T, marker string) (*testrig.Postgres, string) {
	t.Helper()
	p := testrig.StartPostgres(t)
	testrig.ExecSQL(ctx, t, p.DSN("postgres"), "CREATE ROLE tsb LOGIN CREATEDB PASSWORD '"+pgPassword+"'", "GRANT pg_monitor TO tsb",
		"CREATE DATABASE tsb OWNER tsb")
	testrig.ExecSQL(ctx, t, p.DSN("tsb"), "SET ROLE tsb", "CREATE TABLE public.config (id bigserial PRIMARY KEY, name text NOT NULL)",
		"INSERT INTO public.config (name) VALUES ('"+marker+"')")
	return p, fmt.Sprintf("postgres://tsb:%s@127.0.0.1:%d/tsb?sslmode=disable", pgPassword, p.Port)
}

// names reads public.config's names on dsn.
func names(ctx context.Context, t *testing.T, dsn string) string {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var s string
	if err := c.QueryRow(ctx, "SELECT string_agg(name, ',' ORDER BY id) FROM public.config").Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// syncAgent runs west's handler with the sync before the checks and the database check, as the
// agent wires them for postgres.syncOnFailover.
func syncAgent(t *testing.T, r *rig, topology database.Topology, west, east string) {
	t.Helper()
	r.startAgent(t, func(o *failover.Options) {
		o.Prepare = database.BeforeFailover(database.SyncOptions{Topology: topology, Self: west, Peer: east,
			Retries: 2, RetryDelay: 100 * time.Millisecond})
		o.Preflight = database.Preflight(database.CheckOptions{Topology: topology, Self: west, Peer: east, MaxImportAge: time.Hour})
	})
}

func stepOf(sts []event.FailoverStatus) *event.Step {
	for _, st := range sts {
		for _, s := range st.Steps {
			if s.Name == database.StepSync {
				return &s
			}
		}
	}
	return nil
}

func noDSNPassword(t *testing.T, sts []event.FailoverStatus) {
	t.Helper()
	for _, st := range sts {
		if s := fmt.Sprintf("%+v", st); strings.Contains(s, pgPassword) {
			t.Errorf("a status shows the database password: %s", s)
		}
	}
}

// Independent databases (auto-detected): a drill and a dry run change nothing, so they do not
// sync, and the database check refuses them (west was never imported into). A planned failover
// first copies east's database into west's, verified, in a preflight status of its own; the
// check then passes on that import and the failover commit is pushed.
func TestPlannedFailoverSyncsIndependentDatabases(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{})
	_, east := mpDatabase(r.ctx, t, "east-config")
	_, west := mpDatabase(r.ctx, t, "west-stale")
	syncAgent(t, r, database.Auto, west, east)

	drill := planned("west")
	drill.Mode = event.ModeDrill
	r.publish(t, request(t, "ev-drill", drill))
	dry := planned("west")
	dry.DryRun = true
	r.publish(t, request(t, "ev-dry", dry))
	for _, id := range []string{"ev-drill", "ev-dry"} {
		var sts []event.FailoverStatus
		testrig.Eventually(t, id+" refused", time.Minute, func(context.Context) error {
			if sts = r.statuses(t, id); len(sts) == 0 || sts[len(sts)-1].Phase != event.PhaseRejected {
				return fmt.Errorf("phases %s", failovertest.Phases(sts))
			}
			return nil
		})
		if s := stepOf(sts); s != nil || sts[len(sts)-1].Reason != event.ReasonPreflightFailed ||
			!strings.Contains(sts[len(sts)-1].Message, "never replaced by a verified `mpha db sync`") {
			t.Errorf("%s: step %+v, last status %+v", id, s, sts[len(sts)-1])
		}
	}
	if got := names(r.ctx, t, west); got != "west-stale" {
		t.Fatalf("a drill or a dry run changed west's database: %s", got)
	}

	r.publish(t, request(t, "ev-sync", planned("west")))
	sts := r.waitPhase(t, "ev-sync", event.PhaseProposed, 2*time.Minute)
	if p := failovertest.Phases(sts); p != "accepted,preflight,preflight,proposed" {
		t.Errorf("phases %s", p)
	}
	s := stepOf(sts[1:2])
	if s == nil || s.Result != event.StepDone || !strings.Contains(s.Detail, "verified it: 1 tables, 1 rows") {
		t.Errorf("the sync step: %+v", s)
	}
	var check *event.Check
	for _, c := range sts[2].Checks {
		if c.Name == database.CheckName {
			check = &c
		}
	}
	if check == nil || check.Result != "pass" || !strings.Contains(check.Evidence, "the last verified import into") {
		t.Errorf("the database check after the sync: %+v", check)
	}
	if got := names(r.ctx, t, west); got != "east-config" {
		t.Errorf("west's database after the sync: %s, want east's", got)
	}
	c, err := pgx.Connect(r.ctx, west)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rec, err := pgcopy.ReadRecord(r.ctx, c, "tsb")
	if err != nil || !rec.Verified || time.Since(rec.At) > time.Minute {
		t.Errorf("west's import record: %+v, %v", rec, err)
	}
	noDSNPassword(t, sts)
}

// A sync that cannot run refuses a planned failover (step-failed, in the DLQ too) and pushes
// nothing: a session on west's database, then east's server down. An emergency with east's
// server down goes on without the sync; its status names the last verified import's age.
func TestFailedSyncStopsTheFailover(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{})
	eastPG, east := mpDatabase(r.ctx, t, "east-config")
	_, west := mpDatabase(r.ctx, t, "west-stale")
	if _, err := pgcopy.Sync(r.ctx, east, west, pgcopy.Options{}); err != nil { // last night's import
		t.Fatal(err)
	}
	testrig.ExecSQL(r.ctx, t, eastPG.DSN("tsb"), "INSERT INTO public.config (name) VALUES ('east-today')")
	syncAgent(t, r, database.Independent, west, east)

	session, err := pgx.Connect(r.ctx, west)
	if err != nil {
		t.Fatal(err)
	}
	r.publish(t, request(t, "ev-busy", planned("west")))
	busy := waitRejected(t, r, "ev-busy")
	session.Close(context.Background())
	if s := stepOf(busy); s == nil || s.Result != event.StepFailed || !strings.Contains(s.Detail, "active sessions") {
		t.Errorf("the busy sync's step: %+v", s)
	}

	eastPG.Stop(t)
	r.publish(t, request(t, "ev-down", planned("west")))
	down := waitRejected(t, r, "ev-down")
	if s := stepOf(down); s == nil || !strings.Contains(s.Detail, "the active's database (east) is unreachable") {
		t.Errorf("the sync's step with east down: %+v", s)
	}
	reasons := map[string]string{}
	for _, rj := range r.rejections(t) {
		reasons[rj.Event] = rj.Reason
	}
	if reasons["ev-busy"] != event.ReasonStepFailed || reasons["ev-down"] != event.ReasonStepFailed {
		t.Errorf("DLQ reasons: %v", reasons)
	}
	if branches, err := r.repo.Branches(r.ctx, "mpha/", "mpha/pair.yaml"); err != nil || len(branches) != 0 {
		t.Errorf("a refused failover pushed %+v (%v)", branches, err)
	}
	if got := names(r.ctx, t, west); got != "east-config" {
		t.Errorf("west's database after the refusals: %s, want last night's import", got)
	}

	emergency := planned("west")
	emergency.Mode = event.ModeEmergency
	r.publish(t, request(t, "ev-emergency", emergency))
	sts := r.waitPhase(t, "ev-emergency", event.PhaseProposed, 2*time.Minute)
	s := stepOf(sts)
	if s == nil || s.Result != event.StepSkipped || !strings.Contains(s.Detail, "keeps its last verified import, of") {
		t.Errorf("the emergency's sync step: %+v", s)
	}
	noDSNPassword(t, append(append(busy, down...), sts...))
}

func waitRejected(t *testing.T, r *rig, id string) []event.FailoverStatus {
	t.Helper()
	var sts []event.FailoverStatus
	testrig.Eventually(t, id+" refused", time.Minute, func(context.Context) error {
		sts = r.statuses(t, id)
		if len(sts) == 0 || sts[len(sts)-1].Phase != event.PhaseRejected {
			return fmt.Errorf("phases %s", failovertest.Phases(sts))
		}
		if sts[len(sts)-1].Reason != event.ReasonStepFailed {
			t.Fatalf("%s refused for %s: %s", id, sts[len(sts)-1].Reason, sts[len(sts)-1].Message)
		}
		return nil
	})
	return sts
}
