package pgcopy_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const password = "s3cret-Pa55-for-tsb" // the tsb role's; no output may show it

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

// server starts a primary with the role tsb (a password), a database tsb it owns, and a role reader.
func server(ctx context.Context, t *testing.T) *testrig.Postgres {
	t.Helper()
	return pgcopytest.StartServer(ctx, t, password, "CREATE ROLE reader")
}

// withPassword is the DSN the MP would use: the tsb role and its password.
func withPassword(p *testrig.Postgres) string { return pgcopytest.DSN(p, password) }

// noSessions waits until the sessions on database db have ended: a closed client's backend
// leaves pg_stat_activity a moment after the client is gone.
func noSessions(ctx context.Context, t *testing.T, p *testrig.Postgres, db string) {
	t.Helper()
	c, err := pgx.Connect(ctx, p.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for n := 1; n > 0; time.Sleep(20 * time.Millisecond) {
		if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", db).Scan(&n); err != nil {
			t.Fatal(err)
		}
	}
}

func fingerprint(ctx context.Context, t *testing.T, dsn string) *pgcopytest.Fingerprint {
	t.Helper()
	f, err := pgcopytest.Take(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func databases(ctx context.Context, t *testing.T, dsn string) []string {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, _ := c.Query(ctx, "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY 1")
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// A TSB-shaped database (two schemas, dozens of tables, foreign keys, serial and identity
// sequences, a generated column, an enum, views on views, a trigger, bytea and jsonb, a large
// audit_log split over several streams) is copied over an older target database: the oracle's
// checksums and catalog listing are equal, the target's owner owns everything, grants to
// roles that exist are kept, the import record is there, and the copy takes new rows.
func TestSyncCopiesTheDatabase(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, dst := server(ctx, t), server(ctx, t)
	if err := pgcopytest.Generate(ctx, src.DSN("tsb"), "tsb", 20000); err != nil {
		t.Fatal(err)
	}
	exec(ctx, t, src.DSN("tsb"), "GRANT SELECT ON public.audit_log TO reader", "CREATE ROLE only_on_source",
		"GRANT SELECT ON public.tenants TO only_on_source", "GRANT USAGE ON SCHEMA iam TO reader")
	exec(ctx, t, dst.DSN("tsb"), "CREATE TABLE stale (x int)", "INSERT INTO stale VALUES (1)")
	exec(ctx, t, dst.DSN("postgres"), "REVOKE ALL ON DATABASE tsb FROM PUBLIC", "GRANT CONNECT ON DATABASE tsb TO reader")

	if d := pgcopytest.Diff(fingerprint(ctx, t, src.DSN("tsb")), fingerprint(ctx, t, dst.DSN("tsb"))); len(d) == 0 {
		t.Fatal("the oracle sees no difference before the copy")
	}
	noSessions(ctx, t, dst, "tsb")
	var phases []string
	var mu sync.Mutex
	at := time.Date(2026, 8, 1, 12, 0, 0, 0, time.UTC)
	res, err := pgcopy.Sync(ctx, src.DSN("postgres"), dst.DSN("postgres"), pgcopy.Options{
		Jobs: 3, ChunkSize: 1 << 20, Now: func() time.Time { return at }, ProgressInterval: 10 * time.Millisecond,
		Progress: func(p pgcopy.Progress) {
			mu.Lock()
			defer mu.Unlock()
			if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
				phases = append(phases, p.Phase)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	// Tables index and verify while others still copy: the phases after data depend on which
	// work ends last, but they come in this order.
	if got := strings.Join(phases, ","); !regexp.MustCompile(`^schema,data,(indexes,)?(verify,)?constraints,swap,cleanup,done$`).MatchString(got) {
		t.Errorf("progress phases = %s", got)
	}
	var names []string
	for _, p := range res.Phases {
		names = append(names, p.Name)
		if p.Wall <= 0 || p.Busy <= 0 {
			t.Errorf("phase %+v: want positive wall and busy times", p)
		}
	}
	// The target held data: the database it was is dropped after the copy took its place.
	if got := strings.Join(names, ","); got != "schema,copy,indexes,verify,constraints,publish,cleanup" {
		t.Errorf("result phases = %s", got)
	}
	if len(res.Tables) != 13+pgcopytest.ConfigTables || res.Rows < 20000 {
		t.Errorf("copied %d tables, %d rows", len(res.Tables), res.Rows)
	}
	if want := []string{"only_on_source"}; len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], want[0]) {
		t.Errorf("warnings = %q, want one about %s", res.Warnings, want[0])
	}

	want, got := fingerprint(ctx, t, src.DSN("tsb")), fingerprint(ctx, t, dst.DSN("tsb"))
	if d := pgcopytest.Diff(want, got); len(d) > 0 {
		t.Errorf("the target differs from the source:\n%s", strings.Join(d, "\n"))
	}
	c, err := pgx.Connect(ctx, dst.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var grants, dbGrants, stale string
	if err := c.QueryRow(ctx, `SELECT string_agg(grantee || ':' || privilege_type || ':' || table_name, ',' ORDER BY 1)
		FROM information_schema.role_table_grants WHERE grantee IN ('reader', 'only_on_source')`).Scan(&grants); err != nil {
		t.Fatal(err)
	}
	if grants != "reader:SELECT:audit_log" {
		t.Errorf("grants = %q", grants)
	}
	if err := c.QueryRow(ctx, "SELECT datacl::text FROM pg_database WHERE datname = 'tsb'").Scan(&dbGrants); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(dbGrants, "reader=c/") || strings.Contains(dbGrants, "=Tc/") {
		t.Errorf("the database's grants are %s; want the old ones (reader may connect, PUBLIC may not)", dbGrants)
	}
	err = c.QueryRow(ctx, "SELECT to_regclass('public.stale')::text").Scan(&stale)
	if err == nil && stale != "" {
		t.Error("the old target's table is still there")
	}
	rec, err := pgcopy.ReadRecord(ctx, c, "tsb")
	if err != nil {
		t.Fatal(err)
	}
	if !rec.At.Equal(at) || !rec.Verified || rec.Rows != res.Rows || rec.Source.SystemID == "" || rec.Source.LSN == "" {
		t.Errorf("import record = %+v", rec)
	}
	// The MP, connecting as tsb, writes on: sequences continue after the copied rows.
	exec(ctx, t, withPassword(dst), "INSERT INTO public.audit_log (time, actor, kind, resource, operation) VALUES (1, 'a', 'tenant', 'r', 'create')",
		"INSERT INTO public.tenants (org_id, name) VALUES (1, 'new')", "INSERT INTO public.config_01 (name, spec) VALUES ('n', '{}')")
	if dbs := databases(ctx, t, dst.DSN("postgres")); strings.Contains(strings.Join(dbs, ","), "_mpha_") {
		t.Errorf("left over databases: %v", dbs)
	}
}

// The target stays as it was when the copy cannot finish: the source dies mid-copy, the target
// is a standby, sessions are connected, or the source holds objects the copy cannot make.
func TestSyncLeavesTheTargetAlone(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, dst := server(ctx, t), server(ctx, t)
	if err := pgcopytest.Generate(ctx, src.DSN("tsb"), "tsb", 60000); err != nil {
		t.Fatal(err)
	}
	exec(ctx, t, dst.DSN("tsb"), "CREATE TABLE kept (x int)", "INSERT INTO kept SELECT generate_series(1, 100)")
	before := fingerprint(ctx, t, dst.DSN("tsb"))
	unchanged := func(t *testing.T) {
		t.Helper()
		if d := pgcopytest.Diff(before, fingerprint(ctx, t, dst.DSN("tsb"))); len(d) > 0 {
			t.Errorf("the target changed:\n%s", strings.Join(d, "\n"))
		}
		if dbs := databases(ctx, t, dst.DSN("postgres")); strings.Contains(strings.Join(dbs, ","), "_mpha_") {
			t.Errorf("left over databases: %v", dbs)
		}
	}

	t.Run("target in recovery", func(t *testing.T) {
		replica := dst.StartReplica(t)
		_, err := pgcopy.Sync(ctx, src.DSN("tsb"), replica.DSN("tsb"), pgcopy.Options{})
		if !errors.Is(err, pgcopy.ErrInRecovery) {
			t.Errorf("err = %v, want ErrInRecovery", err)
		}
		replica.Stop(t)
	})
	t.Run("sessions on the target", func(t *testing.T) {
		mp, err := pgx.Connect(ctx, withPassword(dst))
		if err != nil {
			t.Fatal(err)
		}
		defer mp.Close(context.Background())
		_, err = pgcopy.Sync(ctx, src.DSN("tsb"), withPassword(dst), pgcopy.Options{})
		if !errors.Is(err, pgcopy.ErrBusy) || !strings.Contains(err.Error(), "tsb@127.0.0.1") {
			t.Errorf("err = %v, want ErrBusy naming the session", err)
		}
		if strings.Contains(err.Error(), password) {
			t.Error("the error shows the password")
		}
		unchanged(t)
	})
	t.Run("unsupported objects", func(t *testing.T) {
		noSessions(ctx, t, dst, "tsb")
		exec(ctx, t, src.DSN("tsb"), "CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS one")
		_, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{})
		exec(ctx, t, src.DSN("tsb"), "DROP MATERIALIZED VIEW public.mv")
		if !errors.Is(err, pgcopy.ErrUnsupported) || !strings.Contains(err.Error(), "public.mv") {
			t.Errorf("err = %v, want ErrUnsupported naming public.mv", err)
		}
		unchanged(t)
	})
	t.Run("large objects", func(t *testing.T) {
		noSessions(ctx, t, dst, "tsb")
		exec(ctx, t, src.DSN("tsb"), "SELECT lo_from_bytea(0, 'a certificate kept as a large object')", "SELECT lo_from_bytea(0, 'another')")
		_, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{})
		exec(ctx, t, src.DSN("tsb"), "SELECT lo_unlink(oid) FROM pg_largeobject_metadata")
		if !errors.Is(err, pgcopy.ErrUnsupported) || !strings.Contains(err.Error(), "the source has 2 large objects; mpha db sync does not copy them") {
			t.Errorf("err = %v, want ErrUnsupported counting the large objects", err)
		}
		unchanged(t)
	})
	t.Run("source killed mid-copy", func(t *testing.T) {
		noSessions(ctx, t, dst, "tsb")
		var once sync.Once
		_, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{
			Jobs: 2, ChunkSize: 4 << 20, ProgressInterval: time.Millisecond,
			Progress: func(p pgcopy.Progress) {
				if p.Phase == "data" && p.Bytes > 1<<20 {
					once.Do(func() {
						if err := src.Process().Kill(); err != nil {
							t.Error(err)
						}
					})
				}
			},
		})
		if err == nil {
			t.Fatal("the copy succeeded with its source killed")
		}
		t.Logf("the copy failed as it should: %v", err)
		unchanged(t)
	})
}

// A sync killed with SIGKILL mid-copy leaves its unfinished database on the target; the next
// sync drops it and says so, and leaves alone what is not its own: a leftover with a session,
// the database a swap renames aside, and databases named differently. Two syncs of one database
// into one server do not run side by side.
func TestSyncDropsItsLeftovers(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	src, dst := server(ctx, t), server(ctx, t)
	if err := pgcopytest.Generate(ctx, src.DSN("tsb"), "tsb", 60000); err != nil {
		t.Fatal(err)
	}
	child := osexec.CommandContext(ctx, os.Args[0])
	child.Env = append(os.Environ(), killedSyncEnv+"="+src.DSN("tsb")+" "+dst.DSN("tsb"))
	out, err := child.CombinedOutput()
	var exit *osexec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("the child sync was not killed: %v\n%s", err, out)
	}
	var leftover string
	for _, db := range databases(ctx, t, dst.DSN("postgres")) {
		if regexp.MustCompile(`^tsb_mpha_[0-9a-f]{8}$`).MatchString(db) {
			leftover = db
		}
	}
	if leftover == "" {
		t.Fatalf("the killed sync left no database behind: %v", databases(ctx, t, dst.DSN("postgres")))
	}
	// The killed sync's sessions end when their server notices the client is gone.
	noSessions(ctx, t, dst, leftover)
	c, err := pgx.Connect(ctx, dst.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	others := []string{"tsb_mpha_0badf00d", "tsb_mpha_old_0badf00d", "tsb_mpha_notes", "other_mpha_0badf00d", "tsbx_mpha_0badf00d"}
	for _, db := range others {
		exec(ctx, t, dst.DSN("postgres"), "CREATE DATABASE "+db)
	}
	busy, err := pgx.Connect(ctx, dst.DSN("tsb_mpha_0badf00d")) // looks like a leftover, but in use
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(context.Background())

	// A second sync of tsb while one holds the target is refused (the lock is the one Sync takes).
	var locked bool
	if err := c.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended('mpha db sync tsb', 0))").Scan(&locked); err != nil || !locked {
		t.Fatalf("taking the sync's lock: %v %v", locked, err)
	}
	if _, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{}); !errors.Is(err, pgcopy.ErrConcurrent) {
		t.Errorf("with another sync running: err = %v, want ErrConcurrent", err)
	}
	if _, err := c.Exec(ctx, "SELECT pg_advisory_unlock_all()"); err != nil {
		t.Fatal(err)
	}
	if dbs := databases(ctx, t, dst.DSN("postgres")); !slices.Contains(dbs, leftover) {
		t.Fatalf("the refused sync dropped %s: %v", leftover, dbs)
	}

	var logs strings.Builder
	res, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="dropped the leftover of an interrupted sync" database=`+leftover) {
		t.Errorf("no log line about dropping %s:\n%s", leftover, logs.String())
	}
	dbs := databases(ctx, t, dst.DSN("postgres"))
	if slices.Contains(dbs, leftover) {
		t.Errorf("the leftover %s is still there: %v", leftover, dbs)
	}
	for _, db := range append(others, "tsb") {
		if !slices.Contains(dbs, db) {
			t.Errorf("%s was dropped: %v", db, dbs)
		}
	}
	warnings := strings.Join(res.Warnings, "\n")
	for _, want := range []string{"leftover tsb_mpha_0badf00d of an interrupted sync has sessions; it is kept", "database tsb_mpha_old_0badf00d looks like the previous tsb"} {
		if !strings.Contains(warnings, want) {
			t.Errorf("warnings %q lack %q", res.Warnings, want)
		}
	}
	if d := pgcopytest.Diff(fingerprint(ctx, t, src.DSN("tsb")), fingerprint(ctx, t, dst.DSN("tsb"))); len(d) > 0 {
		t.Errorf("the target differs from the source:\n%s", strings.Join(d, "\n"))
	}
}

// The verification reads the target: a row changed in the new database after it was loaded and
// before it is read back fails the sync with ErrMismatch naming the table, and the target stays
// as it was. (One stream: the progress callback runs on it when the table's copy is done and its
// index is next, so the change lands before the read-back.)
func TestSyncVerifiesWhatTheTargetHolds(t *testing.T) {
	integration(t)
	t.Parallel()
	for _, readBack := range []bool{false, true} {
		t.Run(fmt.Sprintf("readBack=%v", readBack), func(t *testing.T) {
			t.Parallel()
			verifiesWhatTheTargetHolds(t, readBack)
		})
	}
}

func verifiesWhatTheTargetHolds(t *testing.T, readBack bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src, dst := server(ctx, t), server(ctx, t)
	exec(ctx, t, src.DSN("tsb"), "CREATE TABLE public.certs (id int PRIMARY KEY, pem bytea, spec jsonb)",
		"INSERT INTO public.certs SELECT i, decode(md5(i::text), 'hex'), jsonb_build_object('i', i) FROM generate_series(1, 1000) i")
	exec(ctx, t, dst.DSN("tsb"), "CREATE TABLE kept (x int)", "INSERT INTO kept VALUES (1)")
	before := fingerprint(ctx, t, dst.DSN("tsb"))
	noSessions(ctx, t, dst, "tsb")
	progress, tampered := tamper(ctx, t, dst, "UPDATE public.certs SET pem = '\\x00' WHERE id = 500")
	_, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{Jobs: 1, ProgressInterval: time.Hour, ReadBack: readBack,
		Progress: progress})
	if !*tampered {
		t.Fatal("the copy never reached its index builds")
	}
	if !errors.Is(err, pgcopy.ErrMismatch) || !strings.Contains(err.Error(), "public.certs: source 1000 rows") {
		t.Errorf("err = %v, want ErrMismatch naming public.certs", err)
	}
	if d := pgcopytest.Diff(before, fingerprint(ctx, t, dst.DSN("tsb"))); len(d) > 0 {
		t.Errorf("the target changed:\n%s", strings.Join(d, "\n"))
	}
	if dbs := databases(ctx, t, dst.DSN("postgres")); strings.Contains(strings.Join(dbs, ","), "_mpha_") {
		t.Errorf("left over databases: %v", dbs)
	}
}

// tamper is a Progress hook that runs stmt in the unfinished copy on dst once the sync reaches
// its index builds (with one stream: after the rows are in, before they are verified); tampered
// says whether it did.
func tamper(ctx context.Context, t *testing.T, dst *testrig.Postgres, stmt string) (func(pgcopy.Progress), *bool) {
	tampered := new(bool)
	return func(p pgcopy.Progress) {
		if p.Phase != "indexes" || *tampered {
			return
		}
		*tampered = true
		for _, db := range databases(ctx, t, dst.DSN("postgres")) {
			if strings.HasPrefix(db, "tsb_mpha_") {
				exec(ctx, t, dst.DSN(db), stmt)
			}
		}
	}, tampered
}

// socketDSN reaches p's database db over its Unix socket as role, a route and a string unlike
// p.DSN's (TCP, the superuser).
func socketDSN(p *testrig.Postgres, role, db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", filepath.Dir(p.DataDir), p.Port, role, db)
}

// The source is checked before the target is touched: a source that is the target's own server
// (reached by another route, as another role, with Force) is refused as the same database; a
// source that does not answer, or holds what the copy cannot make, fails the sync while the
// target keeps its data and even the leftover of an interrupted sync, which a sync that got
// that far would drop.
func TestSyncChecksTheSourceFirst(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src, dst := server(ctx, t), server(ctx, t)
	exec(ctx, t, src.DSN("tsb"), "CREATE TABLE public.certs (id int PRIMARY KEY)", "INSERT INTO public.certs SELECT generate_series(1, 10)")
	exec(ctx, t, withPassword(dst), "CREATE TABLE kept (x int)", "INSERT INTO kept VALUES (1)")
	const leftover = "tsb_mpha_0badf00d"
	exec(ctx, t, dst.DSN("postgres"), "CREATE DATABASE "+leftover)
	before := fingerprint(ctx, t, dst.DSN("tsb"))
	untouched := func(t *testing.T) {
		t.Helper()
		if d := pgcopytest.Diff(before, fingerprint(ctx, t, dst.DSN("tsb"))); len(d) > 0 {
			t.Errorf("the target changed:\n%s", strings.Join(d, "\n"))
		}
		if dbs := databases(ctx, t, dst.DSN("postgres")); !slices.Contains(dbs, leftover) || slices.ContainsFunc(dbs, func(db string) bool {
			return strings.HasPrefix(db, "tsb_mpha_") && db != leftover
		}) {
			t.Errorf("the target's databases changed: %v", dbs)
		}
	}

	for _, tc := range []struct{ name, from, to string }{
		{"same server: TCP superuser to socket tsb", dst.DSN("tsb"), socketDSN(dst, "tsb", "tsb")},
		{"same server: socket tsb to TCP superuser", socketDSN(dst, "tsb", "postgres"), dst.DSN("postgres")},
		{"same server: the MP's DSN on both sides", withPassword(dst), withPassword(dst)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noSessions(ctx, t, dst, "tsb")
			_, err := pgcopy.Sync(ctx, tc.from, tc.to, pgcopy.Options{Force: true})
			if !errors.Is(err, pgcopy.ErrSameDatabase) || !strings.Contains(err.Error(), "both DSNs reach one server, where tsb would be replaced by itself") {
				t.Errorf("err = %v, want ErrSameDatabase", err)
			}
			if err != nil && strings.Contains(err.Error(), password) {
				t.Error("the error shows the password")
			}
			untouched(t)
		})
	}
	t.Run("source down", func(t *testing.T) {
		noSessions(ctx, t, dst, "tsb")
		_, err := pgcopy.Sync(ctx, "postgres://postgres@127.0.0.1:1/tsb?sslmode=disable&connect_timeout=5", dst.DSN("tsb"), pgcopy.Options{Force: true})
		if err == nil || !strings.Contains(err.Error(), "connecting to the source") {
			t.Errorf("err = %v, want one connecting to the source", err)
		}
		untouched(t)
	})
	t.Run("source holds what the copy cannot make", func(t *testing.T) {
		noSessions(ctx, t, dst, "tsb")
		exec(ctx, t, src.DSN("tsb"), "CREATE MATERIALIZED VIEW public.mv AS SELECT 1 AS one")
		defer exec(ctx, t, src.DSN("tsb"), "DROP MATERIALIZED VIEW public.mv")
		if _, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{Force: true}); !errors.Is(err, pgcopy.ErrUnsupported) {
			t.Errorf("err = %v, want ErrUnsupported", err)
		}
		untouched(t)
	})
	// The check can pass: two servers are not one, and the copy drops the leftover.
	t.Run("two servers", func(t *testing.T) {
		noSessions(ctx, t, dst, "tsb")
		if _, err := pgcopy.Sync(ctx, src.DSN("tsb"), socketDSN(dst, "postgres", "tsb"), pgcopy.Options{}); err != nil {
			t.Fatal(err)
		}
		if dbs := databases(ctx, t, dst.DSN("postgres")); slices.Contains(dbs, leftover) {
			t.Errorf("the leftover is still there: %v", dbs)
		}
	})
}

// Every column type digests alike on both servers, whether hashed as a value or, where its hash
// would differ between databases (an enum's is of its OID) or it has none (json, point, xml), as
// text: a faithful copy of each passes the verification, on one stream and on several.
func TestSyncDigestsEveryColumnType(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src, dst := server(ctx, t), server(ctx, t)
	exec(ctx, t, src.DSN("tsb"),
		"CREATE TYPE public.mood AS ENUM ('sad', 'ok', 'happy')",
		`CREATE TABLE public.kinds (id bigint, n numeric(20,6), f float8, r real, i interval, ts timestamptz, d date, tm time,
			txt text, vc varchar(20), ch char(3), b bytea, j json, jb jsonb, u uuid, ip inet, net cidr, mac macaddr, bits bit varying(8),
			m money, pt point, x xml, mood public.mood, moods public.mood[], tags text[], nums int[], tsv tsvector, ok boolean)`,
		`INSERT INTO public.kinds SELECT g, g * 1.5, g / 3.0, g / 7.0, g * interval '1 minute', '2026-01-01'::timestamptz + g * interval '1 hour',
			'2026-01-01'::date + g, '12:00'::time, 'row ' || g, 'v' || g, 'c', decode(md5(g::text), 'hex'), json_build_object('g', g, 'z', 1),
			jsonb_build_object('g', g), md5(g::text)::uuid, ('10.0.0.' || g % 250)::inet, '10.1.0.0/16', '08:00:2b:01:02:03', B'1010',
			g, point(g, -g), xmlparse(content '<a>' || g || '</a>'), (ARRAY['sad', 'ok', 'happy']::public.mood[])[g % 3 + 1],
			ARRAY['sad', 'happy']::public.mood[], ARRAY['a', NULL, 'c'], ARRAY[g, g + 1], to_tsvector('simple', 'row ' || g), g % 2 = 0
		  FROM generate_series(1, 3000) g`,
		"INSERT INTO public.kinds (id) VALUES (NULL)",
		"CREATE TABLE public.nothing ()", "INSERT INTO public.nothing DEFAULT VALUES")
	for _, jobs := range []int{1, 4} {
		res, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{Jobs: jobs, ChunkSize: 64 << 10, Force: true})
		if err != nil {
			t.Fatalf("%d streams: %v", jobs, err)
		}
		if res.Rows != 3002 {
			t.Errorf("%d streams: %d rows, want 3002", jobs, res.Rows)
		}
	}
}

// An existing but empty target (a database made for the MP that never ran) is dropped before the
// load, not after it: no cleanup phase. When the sync then fails, the empty target is made again
// with its owner and grants, as it was found.
func TestSyncDropsAnEmptyTargetFirst(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	src, dst := server(ctx, t), server(ctx, t)
	exec(ctx, t, src.DSN("tsb"), "CREATE TABLE public.certs (id int PRIMARY KEY, pem bytea)",
		"INSERT INTO public.certs SELECT i, decode(md5(i::text), 'hex') FROM generate_series(1, 1000) i")
	exec(ctx, t, dst.DSN("postgres"), "REVOKE ALL ON DATABASE tsb FROM PUBLIC", "GRANT CONNECT ON DATABASE tsb TO reader")
	grants := func() string {
		c, err := pgx.Connect(ctx, dst.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var owner, acl string
		if err := c.QueryRow(ctx, "SELECT pg_get_userbyid(datdba), datacl::text FROM pg_database WHERE datname = 'tsb'").Scan(&owner, &acl); err != nil {
			t.Fatal(err)
		}
		return owner + " " + acl
	}
	before := grants()

	// A failed sync (a row changed in the copy before its verification) leaves the empty target.
	progress, tampered := tamper(ctx, t, dst, "UPDATE public.certs SET pem = '\\x00' WHERE id = 7")
	_, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{Jobs: 1, ProgressInterval: time.Hour, Progress: progress})
	if !*tampered || !errors.Is(err, pgcopy.ErrMismatch) {
		t.Fatalf("err = %v, want ErrMismatch", err)
	}
	if got := grants(); got != before {
		t.Errorf("the empty target after a failed sync: %s, want %s", got, before)
	}
	if dbs := strings.Join(databases(ctx, t, dst.DSN("postgres")), ","); strings.Contains(dbs, "_mpha_") || !strings.Contains(dbs, "tsb") {
		t.Errorf("databases after a failed sync: %s", dbs)
	}

	res, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("tsb"), pgcopy.Options{Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range res.Phases {
		if p.Name == "cleanup" {
			t.Errorf("a cleanup phase (%s) after replacing an empty target: it was dropped before the load", p)
		}
	}
	if res.Rows != 1000 || grants() != before {
		t.Errorf("copied %d rows; owner and grants %s, want %s", res.Rows, grants(), before)
	}
}
