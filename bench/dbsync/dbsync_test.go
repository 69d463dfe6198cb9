//go:build dbsyncbench

package dbsync

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func exec1(ctx context.Context, t *testing.T, dsn string, stmts ...string) {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func shell(ctx context.Context, t *testing.T, env []string, script string) {
	t.Helper()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-ec", script)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// rowsPerMiB is how many audit_log rows make a MiB of pgcopytest's database (1.4M rows: 1.15 GiB).
const rowsPerMiB = 1190

// TestDBSyncVersusPeers generates a TSB-shaped database at each size of MPHA_BENCH_SIZES (MiB,
// default 200,1024,5120) and copies it to a second server with every method, each into a fresh
// database, round after round (MPHA_BENCH_ROUNDS, default 2; each method judged by its fastest
// round): pg_dump | psql, pg_dump -Fd -j | pg_restore -j, pgcopydb clone, and mpha db sync.
// Every copy of the first round is checked against the source with pgcopytest's oracle. The
// floor is measured in the same run: the largest table copied alone (one binary COPY stream,
// frozen, into a table created in the same transaction) plus its largest index built alone.
func TestDBSyncVersusPeers(t *testing.T) {
	var sizes []int
	for _, f := range strings.Split(os.Getenv("MPHA_BENCH_SIZES"), ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			sizes = append(sizes, n)
		}
	}
	if len(sizes) == 0 {
		sizes = []int{200, 1024, 5120}
	}
	if _, err := exec.LookPath("pgcopydb"); err != nil {
		t.Fatal("pgcopydb is missing: run `make deps-bench` (the Debian package pgcopydb)")
	}
	for _, mib := range sizes {
		t.Run(fmt.Sprintf("%dMiB", mib), func(t *testing.T) { versusPeers(t, mib) })
	}
}

func versusPeers(t *testing.T, mib int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	jobs := envInt("MPHA_BENCH_JOBS", 4)
	src, dst := testrig.StartPostgres(t), testrig.StartPostgres(t)
	for _, p := range []*testrig.Postgres{src, dst} {
		exec1(ctx, t, p.DSN("postgres"), "CREATE ROLE tsb LOGIN", "ALTER SYSTEM SET max_wal_size = '8GB'", "SELECT pg_reload_conf()")
	}
	exec1(ctx, t, src.DSN("postgres"), "CREATE DATABASE tsb OWNER tsb")
	start := time.Now()
	if err := pgcopytest.Generate(ctx, src.DSN("tsb"), "tsb", mib*rowsPerMiB); err != nil {
		t.Fatal(err)
	}
	var size int64
	var largest string
	c, err := pgx.Connect(ctx, src.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, `SELECT pg_database_size('tsb'), (SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind = 'r' AND n.nspname IN ('public', 'iam') ORDER BY pg_table_size(c.oid) DESC LIMIT 1)`).Scan(&size, &largest); err != nil {
		t.Fatal(err)
	}
	indexes, err := pgx.CollectRows(must(c.Query(ctx, "SELECT indexdef FROM pg_indexes WHERE (schemaname || '.' || tablename)::regclass = $1::regclass", largest)), pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	fmt.Printf("\n== %d MiB: source %d audit_log rows, database size %.2f GiB (generated in %s); largest table %s\n",
		mib, mib*rowsPerMiB, float64(size)/(1<<30), time.Since(start).Round(time.Second), largest)
	want, err := pgcopytest.Take(ctx, src.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}

	dump, restore, psql := src.Tool("pg_dump"), src.Tool("pg_restore"), src.Tool("psql")
	dir := filepath.Join(t.TempDir(), "work")
	// pgcopydb runs pg_dump and pg_restore from PATH: the server's own.
	pathEnv := []string{"PATH=" + filepath.Dir(dump) + ":" + os.Getenv("PATH")}
	type method struct {
		name, db string
		run      func(ctx context.Context, t *testing.T, db string)
	}
	methods := []method{
		{"pg_dump | psql", "tsb_psql", func(ctx context.Context, t *testing.T, db string) {
			shell(ctx, t, nil, fmt.Sprintf("%s -d '%s' | %s -q -X -v ON_ERROR_STOP=1 -d '%s' >/dev/null", dump, src.DSN("tsb"), psql, dst.DSN(db)))
		}},
		{fmt.Sprintf("pg_dump -Fd -j %d | pg_restore -j %d", jobs, jobs), "tsb_restore", func(ctx context.Context, t *testing.T, db string) {
			shell(ctx, t, nil, fmt.Sprintf("%s -Fd -j %d -f %s -d '%s' && %s -j %d -d '%s' %s", dump, jobs, dir, src.DSN("tsb"), restore, jobs, dst.DSN(db), dir))
		}},
		{fmt.Sprintf("pgcopydb clone (%d table, %d index jobs)", jobs, jobs), "tsb_pgcopydb", func(ctx context.Context, t *testing.T, db string) {
			shell(ctx, t, pathEnv, fmt.Sprintf("pgcopydb clone --source '%s' --target '%s' --table-jobs %d --index-jobs %d --dir %s --skip-extensions >%s.log 2>&1 || { tail -20 %s.log; exit 1; }",
				src.DSN("tsb"), dst.DSN(db), jobs, jobs, dir, dir, dir))
		}},
		{fmt.Sprintf("mpha db sync (%d streams)", jobs), "tsb", func(ctx context.Context, t *testing.T, db string) {
			opts := pgcopy.Options{Database: db, Jobs: jobs, ReadBack: os.Getenv("MPHA_BENCH_READBACK") == "1"}
			if n := envInt("MPHA_BENCH_CHUNK_MIB", 0); n > 0 {
				opts.ChunkSize = int64(n) << 20
			}
			if os.Getenv("MPHA_BENCH_TRACE") == "1" { // each task of the pipeline, when and how long
				opts.Logger = slog.New(slog.NewTextHandler(os.Stdout, &slog.HandlerOptions{Level: slog.LevelDebug}))
			}
			res, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("postgres"), opts)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("  mpha db sync phases: %s\n", res.PhaseSummary())
		}},
	}
	floorName := "floor: " + largest + " alone + its largest index"
	rounds := envInt("MPHA_BENCH_ROUNDS", 2)
	wall := map[string][]time.Duration{}
	for round := 1; round <= rounds; round++ {
		for _, m := range methods {
			if m.db != "tsb" {
				exec1(ctx, t, dst.DSN("postgres"), "CREATE DATABASE "+m.db+" OWNER tsb")
			}
			exec1(ctx, t, dst.DSN("postgres"), "CHECKPOINT")
			start := time.Now()
			m.run(ctx, t, m.db)
			took := time.Since(start)
			wall[m.name] = append(wall[m.name], took)
			same := "not checked"
			if round == 1 {
				got, err := pgcopytest.Take(ctx, dst.DSN(m.db))
				if err != nil {
					t.Fatal(err)
				}
				same = "identical to the source"
				if d := pgcopytest.Diff(want, got); len(d) > 0 {
					same = "DIFFERS from the source"
					t.Errorf("%s: the copy differs from the source:\n%s", m.name, strings.Join(d, "\n"))
				}
			}
			fmt.Printf("round %d  %-44s %7.1f s  %s\n", round, m.name, took.Seconds(), same)
			exec1(ctx, t, dst.DSN("postgres"), "DROP DATABASE "+m.db)
			os.RemoveAll(dir)
		}
		copied, index := floor(ctx, t, src, dst, largest, indexes)
		wall[floorName] = append(wall[floorName], copied+index)
		fmt.Printf("round %d  %-44s %7.1f s  (copy %.1f s, index %.1f s)\n", round, "floor", (copied + index).Seconds(), copied.Seconds(), index.Seconds())
	}
	best := func(name string) float64 { return slices.Min(wall[name]).Seconds() }
	mpha := best(methods[3].name)
	fmt.Printf("\n%d MiB: %-44s %10s %14s   (best of %d rounds; load average at the end: %s)\n", mib, "method", "wall", "÷ mpha's time", rounds, loadAverage())
	for _, name := range []string{methods[0].name, methods[1].name, methods[2].name, methods[3].name, floorName} {
		fmt.Printf("%d MiB: %-44s %9.1fs %13.2f×\n", mib, name, best(name), best(name)/mpha)
	}
}

// floor copies the largest table alone into a fresh database holding the source's schema without
// indexes or constraints (pg_dump --section=pre-data): one binary COPY stream, loaded frozen in
// the transaction that truncates the table; then builds each of its indexes alone and returns the
// copy's time and the slowest index's.
func floor(ctx context.Context, t *testing.T, src, dst *testrig.Postgres, table string, indexes []string) (copied, index time.Duration) {
	exec1(ctx, t, dst.DSN("postgres"), "CREATE DATABASE tsb_floor OWNER tsb")
	defer exec1(ctx, t, dst.DSN("postgres"), "DROP DATABASE tsb_floor")
	shell(ctx, t, nil, fmt.Sprintf("%s --section=pre-data -d '%s' | %s -q -X -v ON_ERROR_STOP=1 -d '%s' >/dev/null", src.Tool("pg_dump"), src.DSN("tsb"), src.Tool("psql"), dst.DSN("tsb_floor")))
	exec1(ctx, t, dst.DSN("postgres"), "CHECKPOINT")
	from, err := pgx.Connect(ctx, src.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close(context.Background())
	to, err := pgx.Connect(ctx, dst.DSN("tsb_floor"))
	if err != nil {
		t.Fatal(err)
	}
	defer to.Close(context.Background())
	start := time.Now()
	if _, err := to.Exec(ctx, "BEGIN; TRUNCATE "+table); err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	go func() {
		bw := bufio.NewWriterSize(pw, 256<<10)
		_, err := from.PgConn().CopyTo(ctx, bw, "COPY "+table+" TO STDOUT (FORMAT binary)")
		if err == nil {
			err = bw.Flush()
		}
		pw.CloseWithError(err)
	}()
	if _, err := to.PgConn().CopyFrom(ctx, pr, "COPY "+table+" FROM STDIN (FORMAT binary, FREEZE)"); err != nil {
		t.Fatal(err)
	}
	if _, err := to.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	copied = time.Since(start)
	if _, err := to.Exec(ctx, "SET maintenance_work_mem = '256MB'"); err != nil {
		t.Fatal(err)
	}
	for _, q := range indexes {
		start := time.Now()
		if _, err := to.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
		index = max(index, time.Since(start))
	}
	return copied, index
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
