package main

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgcopy/pgcopytest"
)

const dbPassword = "Db-sync-Pa55word-4-tsb"

func TestDBSyncFlagErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no DSNs", []string{"db", "sync"}, "--from and --to are required"},
		{"bad jobs", []string{"db", "sync", "--from", "x", "--to", "y", "--jobs", "0"}, "--jobs 0"},
		{"bad output", []string{"db", "sync", "--from", "x", "--to", "y", "-o", "yaml"}, `--output "yaml"`},
		{"unparsable DSN", []string{"db", "sync", "--from", "postgres://tsb:" + dbPassword + "@db:notaport/tsb", "--to", "postgres://db/tsb"}, "source: parsing the DSN"},
		{"unreachable servers", []string{"db", "sync", "--from", "postgres://tsb:" + dbPassword + "@127.0.0.1:1/tsb?connect_timeout=2",
			"--to", "postgres://tsb:" + dbPassword + "@127.0.0.1:1/tsb?connect_timeout=2"}, "connecting to the source"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, err := run(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			for _, s := range []string{out, errOut, err.Error()} {
				if strings.Contains(s, dbPassword) {
					t.Errorf("the password shows: %s", s)
				}
			}
		})
	}
}

// `mpha db sync` between two rig servers with password DSNs (one from the environment): the copy
// is there and verified, progress was printed, and neither output nor logs show the password.
func TestDBSync(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real Postgres servers")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var dsn [2]string
	for i := range dsn {
		dsn[i] = pgcopytest.DSN(pgcopytest.StartServer(ctx, t, dbPassword, "ALTER ROLE tsb CREATEDB"), dbPassword)
	}
	src, err := pgx.Connect(ctx, dsn[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Exec(ctx, `CREATE TABLE config (k text PRIMARY KEY, v jsonb, blob bytea);
		INSERT INTO config SELECT 'k' || i, jsonb_build_object('i', i), decode(md5(i::text), 'hex') FROM generate_series(1, 5000) i`); err != nil {
		t.Fatal(err)
	}
	src.Close(ctx)

	t.Setenv("MPHA_TO", dsn[1])
	out, errOut, err := run(t, "db", "sync", "--from", dsn[0], "--jobs", "2", "--progress", "--log-level", "debug")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	for _, s := range []string{out, errOut} {
		if strings.Contains(s, dbPassword) {
			t.Errorf("the password shows in the output:\n%s", s)
		}
	}
	if !strings.Contains(out, "public.config  5000") || !strings.Contains(out, "row counts and digests equal on both sides") ||
		!regexp.MustCompile(`phases: schema [0-9.]+s, copy [0-9.]+s.*, verify .*publish [0-9.]+s`).MatchString(out) {
		t.Errorf("stdout:\n%s", out)
	}
	if !strings.Contains(errOut, "done") || !strings.Contains(errOut, "1/1 tables  5000 rows") || !strings.Contains(errOut, "db sync done") {
		t.Errorf("progress on stderr:\n%s", errOut)
	}
	dst, err := pgx.Connect(ctx, dsn[1])
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close(ctx)
	var n int
	if err := dst.QueryRow(ctx, "SELECT count(*) FROM config WHERE v->>'i' = substr(k, 2)").Scan(&n); err != nil || n != 5000 {
		t.Errorf("the target has %d matching rows, %v", n, err)
	}
	if _, err := pgcopy.ReadRecord(ctx, dst, "tsb"); err != nil {
		t.Errorf("no import record: %v", err)
	}

	// JSON, and a refusal while the MP is connected to the target.
	_, _, err = run(t, "db", "sync", "--from", dsn[0], "-o", "json")
	if err == nil || !strings.Contains(err.Error(), "active sessions") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("with a session on the target: %v", err)
	}
	dst.Close(ctx)
	waitNoSessions(ctx, t, dsn[1])
	out, _, err = run(t, "db", "sync", "--from", dsn[0], "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var res pgcopy.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil || res.Rows != 5000 || len(res.Phases) != 7 {
		t.Errorf("json: %v %+v", err, res)
	}

	// The target's server as the source, under another DSN: refused at once, even with --force.
	cfg, err := pgx.ParseConfig(dsn[1])
	if err != nil {
		t.Fatal(err)
	}
	same := fmt.Sprintf("host=%s port=%d user=tsb password=%s dbname=postgres sslmode=disable", cfg.Host, cfg.Port, dbPassword)
	out, errOut, err = run(t, "db", "sync", "--from", same, "--force")
	if err == nil || !strings.Contains(err.Error(), "db sync: the source and the target are the same database") {
		t.Errorf("the same database: %v", err)
	}
	if strings.Contains(out+errOut+fmt.Sprint(err), dbPassword) {
		t.Error("the password shows")
	}
}

// waitNoSessions waits until the sessions on dsn's database have ended (watching from the
// database postgres): a closed client's backend leaves pg_stat_activity a moment after the
// client is gone.
func waitNoSessions(ctx context.Context, t *testing.T, dsn string) {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Database
	cfg.Database = "postgres"
	c, err := pgx.ConnectConfig(ctx, cfg)
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
