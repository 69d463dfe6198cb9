package pgcopytest

import (
	"context"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// StartServer starts a rig Postgres set up as a TSB management plane's: the role tsb (LOGIN,
// with password) and the database tsb it owns; then it runs extra as the superuser on the
// database postgres (more roles, grants, role options).
func StartServer(ctx context.Context, t testing.TB, password string, extra ...string) *testrig.Postgres {
	t.Helper()
	p := testrig.StartPostgres(t)
	stmts := append([]string{"CREATE ROLE tsb LOGIN PASSWORD '" + password + "'", "CREATE DATABASE tsb OWNER tsb"}, extra...)
	testrig.ExecSQL(ctx, t, p.DSN("postgres"), stmts...)
	return p
}

// DSN is the DSN the MP has for p: the role tsb with its password, the database tsb.
func DSN(p *testrig.Postgres, password string) string {
	return fmt.Sprintf("postgres://tsb:%s@127.0.0.1:%d/tsb?sslmode=disable", password, p.Port)
}

// Count runs q, a query of one integer, on dsn.
func Count(ctx context.Context, t testing.TB, dsn, q string) int64 {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var n int64
	if err := c.QueryRow(ctx, q).Scan(&n); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return n
}
