//go:build dbsyncbench

package dbsync

import (
	"context"
	"fmt"
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

func shell(ctx context.Context, t *testing.T, script string) {
	t.Helper()
	out, err := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-ec", script).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
}

// TestDBSyncVersusPgDump generates one TSB-shaped database of at least 1 GiB and copies it to a
// second server three ways, each into a fresh database; every copy is checked against the
// source with pgcopytest's oracle, then the wall times are printed.
func TestDBSyncVersusPgDump(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Hour)
	defer cancel()
	rows, jobs := envInt("MPHA_BENCH_AUDIT_ROWS", 1400000), envInt("MPHA_BENCH_JOBS", 4)
	src, dst := testrig.StartPostgres(t), testrig.StartPostgres(t)
	for _, p := range []*testrig.Postgres{src, dst} {
		exec1(ctx, t, p.DSN("postgres"), "CREATE ROLE tsb LOGIN", "ALTER SYSTEM SET max_wal_size = '4GB'", "SELECT pg_reload_conf()")
	}
	exec1(ctx, t, src.DSN("postgres"), "CREATE DATABASE tsb OWNER tsb")
	start := time.Now()
	if err := pgcopytest.Generate(ctx, src.DSN("tsb"), "tsb", rows); err != nil {
		t.Fatal(err)
	}
	var size int64
	c, err := pgx.Connect(ctx, src.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT pg_database_size('tsb')").Scan(&size); err != nil {
		t.Fatal(err)
	}
	c.Close(ctx)
	fmt.Printf("source: %d audit_log rows, %d tables, database size %.2f GiB (generated in %s)\n",
		rows, 13+pgcopytest.ConfigTables, float64(size)/(1<<30), time.Since(start).Round(time.Second))
	if minMiB := envInt("MPHA_BENCH_MIN_MIB", 1024); size < int64(minMiB)<<20 {
		t.Fatalf("the source is %d bytes; the benchmark wants at least %d MiB (raise MPHA_BENCH_AUDIT_ROWS)", size, minMiB)
	}
	want, err := pgcopytest.Take(ctx, src.DSN("tsb"))
	if err != nil {
		t.Fatal(err)
	}

	dump, restore, psql := src.Tool("pg_dump"), src.Tool("pg_restore"), src.Tool("psql")
	dir := filepath.Join(t.TempDir(), "dump")
	methods := []struct {
		name, db string
		run      func(ctx context.Context, t *testing.T, db string)
	}{
		{"pg_dump | psql", "tsb_psql", func(ctx context.Context, t *testing.T, db string) {
			shell(ctx, t, fmt.Sprintf("%s -d '%s' | %s -q -X -v ON_ERROR_STOP=1 -d '%s' >/dev/null", dump, src.DSN("tsb"), psql, dst.DSN(db)))
		}},
		{fmt.Sprintf("pg_dump -Fd -j %d | pg_restore -j %d", jobs, jobs), "tsb_restore", func(ctx context.Context, t *testing.T, db string) {
			shell(ctx, t, fmt.Sprintf("%s -Fd -j %d -f %s -d '%s' && %s -j %d -d '%s' %s", dump, jobs, dir, src.DSN("tsb"), restore, jobs, dst.DSN(db), dir))
		}},
		{fmt.Sprintf("mpha db sync (%d streams)", jobs), "tsb", func(ctx context.Context, t *testing.T, db string) {
			res, err := pgcopy.Sync(ctx, src.DSN("tsb"), dst.DSN("postgres"), pgcopy.Options{Database: db, Jobs: jobs, ChunkSize: int64(envInt("MPHA_BENCH_CHUNK_MIB", 128)) << 20})
			if err != nil {
				t.Fatal(err)
			}
			fmt.Printf("  mpha db sync phases: %s\n", res.PhaseSummary())
		}},
	}
	// The machine is shared: the methods take turns, round after round, and each is judged by
	// its fastest round. Every copy of the first round is checked against the source.
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
			fmt.Printf("round %d  %-40s %7.1f s  %s\n", round, m.name, took.Seconds(), same)
			exec1(ctx, t, dst.DSN("postgres"), "DROP DATABASE "+m.db)
			os.RemoveAll(dir)
		}
	}
	best := func(name string) float64 { return slices.Min(wall[name]).Seconds() }
	sync := best(methods[2].name)
	fmt.Printf("\n%-40s %10s %14s   (best of %d rounds; load average at the end: %s)\n", "method", "wall", "× mpha's time", rounds, loadAverage())
	for _, m := range methods {
		fmt.Printf("%-40s %9.1fs %13.2f×\n", m.name, best(m.name), best(m.name)/sync)
	}
}

func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
