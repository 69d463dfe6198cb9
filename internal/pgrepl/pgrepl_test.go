package pgrepl_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
	"github.com/mpha-dev/mpha/internal/pgrepl"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const password = "repl-pa55word"

func server(ctx context.Context, t *testing.T) *testrig.Postgres {
	t.Helper()
	p := testrig.StartPostgresWith(t, testrig.PostgresOptions{Logical: true})
	// The subscriber connects to the publisher as a role with REPLICATION (here the MP's own).
	testrig.ExecSQL(ctx, t, p.DSN("postgres"), "CREATE ROLE tsb LOGIN REPLICATION PASSWORD '"+password+"'", "CREATE DATABASE tsb OWNER tsb")
	return p
}

// caughtUp waits until the subscription copied every table and confirmed the publisher's WAL.
func caughtUp(t *testing.T, pub, sub *testrig.Postgres) pgrepl.Lag {
	t.Helper()
	var l pgrepl.Lag
	testrig.Eventually(t, "the subscriber to catch up", time.Minute, func(ctx context.Context) error {
		var err error
		if l, err = pgrepl.MeasureLag(ctx, pub.DSN("tsb"), sub.DSN("tsb"), "mpha_tsb"); err != nil {
			return err
		}
		if !l.Synced || l.Bytes != 0 {
			return fmt.Errorf("lag %+v", l)
		}
		return nil
	})
	return l
}

// The standby's database follows the active's by logical replication: the MP's role publishes
// its tables, the subscriber copies them and streams every change (the tables' rows equal by
// pgcopytest's oracle once caught up, under a write load too: RPO 0 for a planned failover), a
// table made by an upgrade is published and followed after a refresh, and the promotion leaves a
// database whose inserts never collide with replicated rows, with the publisher's slot gone.
func TestLogicalReplication(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two Postgres servers")
	}
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	active, standby := server(ctx, t), server(ctx, t)
	activeDSN := pgcopytest.DSN(active, password)
	if err := pgcopytest.Generate(ctx, active.DSN("tsb"), "tsb", 3000); err != nil {
		t.Fatal(err)
	}
	// The schema first, by mpha's own copy without rows: every index and constraint, no rows, and
	// no import record for the database check to trust.
	if _, err := pgcopy.Sync(ctx, active.DSN("tsb"), standby.DSN("tsb"), pgcopy.Options{SchemaOnly: true}); err != nil {
		t.Fatal(err)
	}
	indexes := "SELECT count(*) FROM pg_indexes WHERE schemaname IN ('public', 'iam')"
	if n, want := pgcopytest.Count(ctx, t, standby.DSN("tsb"), indexes), pgcopytest.Count(ctx, t, active.DSN("tsb"), indexes); n != want || n == 0 {
		t.Errorf("the schema-only copy has %d indexes, the active %d", n, want)
	}
	if n := pgcopytest.Count(ctx, t, standby.DSN("tsb"), "SELECT count(*) FROM public.audit_log"); n != 0 {
		t.Errorf("the schema-only copy holds %d audit rows", n)
	}
	if c, err := pgx.Connect(ctx, standby.DSN("postgres")); err != nil {
		t.Fatal(err)
	} else {
		if _, err := pgcopy.ReadRecord(ctx, c, "tsb"); !errors.Is(err, pgcopy.ErrNoRecord) {
			t.Errorf("the schema-only copy's import record: %v, want none", err)
		}
		c.Close(ctx)
	}

	added, err := pgrepl.Publish(ctx, activeDSN, "mpha")
	if err != nil || len(added) != 13+pgcopytest.ConfigTables {
		t.Fatalf("publish as the MP's role: added %v, %v", added, err)
	}
	if err := pgrepl.Subscribe(ctx, standby.DSN("tsb"), "mpha_tsb", activeDSN, "mpha"); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, active, standby)
	same := func(what string) {
		t.Helper()
		want, err := pgcopytest.Take(ctx, active.DSN("tsb"))
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgcopytest.Take(ctx, standby.DSN("tsb"))
		if err != nil {
			t.Fatal(err)
		}
		for name, sum := range want.Tables {
			if got.Tables[name] != sum {
				t.Errorf("%s: %s: %s on the standby, %s on the active", what, name, got.Tables[name], sum)
			}
		}
	}
	same("after the initial copy")

	// A write load: the lag is measured while it runs, and is 0 once it stops.
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		c, err := pgx.Connect(ctx, active.DSN("tsb"))
		if err != nil {
			done <- err
			return
		}
		defer c.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			if _, err := c.Exec(ctx, `INSERT INTO public.audit_log (time, actor, kind, resource, operation, payload)
				VALUES ($1, 'load', 'tenant', 'r', 'update', '{"n": 1}')`, int64(i)); err != nil {
				done <- err
				return
			}
			if _, err := c.Exec(ctx, `UPDATE public.config_01 SET spec = jsonb_set(spec, '{n}', to_jsonb($1::int8)) WHERE id = 1`, int64(i)); err != nil {
				done <- err
				return
			}
		}
	}()
	var lags []pgrepl.Lag
	for range 5 {
		time.Sleep(300 * time.Millisecond)
		l, err := pgrepl.MeasureLag(ctx, active.DSN("tsb"), standby.DSN("tsb"), "mpha_tsb")
		if err != nil {
			t.Fatal(err)
		}
		lags = append(lags, l)
	}
	close(stop)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	t.Logf("lag under writes: %+v", lags)
	caughtUp(t, active, standby)
	same("after a write load, caught up")

	// An upgrade adds a table (the schema first on both sides): published, then followed.
	for _, p := range []*testrig.Postgres{active, standby} {
		testrig.ExecSQL(ctx, t, p.DSN("tsb"), "SET ROLE tsb", "CREATE TABLE public.new_in_upgrade (id bigserial PRIMARY KEY, v text)")
	}
	testrig.ExecSQL(ctx, t, active.DSN("tsb"), "INSERT INTO public.new_in_upgrade (v) SELECT 'v' || g FROM generate_series(1, 50) g")
	added, err = pgrepl.Publish(ctx, activeDSN, "mpha")
	if err != nil || strings.Join(added, ",") != "public.new_in_upgrade" {
		t.Fatalf("publish after the upgrade: added %v, %v", added, err)
	}
	if err := pgrepl.Subscribe(ctx, standby.DSN("tsb"), "mpha_tsb", activeDSN, "mpha"); err != nil {
		t.Fatal(err)
	}
	caughtUp(t, active, standby)
	if n := pgcopytest.Count(ctx, t, standby.DSN("tsb"), "SELECT count(*) FROM public.new_in_upgrade"); n != 50 {
		t.Errorf("the new table has %d rows on the standby, want 50", n)
	}

	// Promotion: the subscription and its slot are gone, and inserts take ids past every
	// replicated one (the standby's own sequences never moved).
	rows := pgcopytest.Count(ctx, t, active.DSN("tsb"), "SELECT count(*) FROM public.audit_log")
	if _, err := pgrepl.Promote(ctx, standby.DSN("tsb"), activeDSN, "mpha_tsb"); err != nil {
		t.Fatal(err)
	}
	if n := pgcopytest.Count(ctx, t, standby.DSN("tsb"), "SELECT count(*) FROM pg_subscription"); n != 0 {
		t.Errorf("%d subscriptions left after the promotion", n)
	}
	if n := pgcopytest.Count(ctx, t, active.DSN("tsb"), "SELECT count(*) FROM pg_replication_slots"); n != 0 {
		t.Errorf("%d slots left on the old active after the promotion", n)
	}
	testrig.ExecSQL(ctx, t, standby.DSN("tsb"),
		"INSERT INTO public.audit_log (time, actor, kind, resource, operation) VALUES (1, 'new active', 'tenant', 'r', 'create')",
		"INSERT INTO public.new_in_upgrade (v) VALUES ('after')",
		"INSERT INTO public.tenants (org_id, name) VALUES (1, 'after-failover')")
	if n := pgcopytest.Count(ctx, t, standby.DSN("tsb"), "SELECT count(*) FROM public.audit_log"); n != rows+1 {
		t.Errorf("the new active has %d audit rows, want %d", n, rows+1)
	}
	if n := pgcopytest.Count(ctx, t, standby.DSN("tsb"), "SELECT nextval('public.revision_seq')"); n <= pgcopytest.Count(ctx, t, active.DSN("tsb"), "SELECT last_value FROM public.revision_seq") {
		t.Errorf("revision_seq on the new active gives %d, not past the old active's", n)
	}

	// A slot whose subscriber is gone is dropped; one in use is not (none here: a fresh one).
	testrig.ExecSQL(ctx, t, active.DSN("tsb"), "SELECT pg_create_logical_replication_slot('mpha_gone', 'pgoutput')")
	if dropped, err := pgrepl.DropSlot(ctx, active.DSN("tsb"), "mpha_gone"); err != nil || !dropped {
		t.Errorf("DropSlot: %v, %v", dropped, err)
	}
}
