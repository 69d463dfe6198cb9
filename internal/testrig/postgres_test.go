package testrig_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// A row written on the primary reaches the streaming replica, which is in recovery; after the
// primary restarts, replication resumes.
func TestPostgresStreamingReplica(t *testing.T) {
	integration(t)
	t.Parallel()
	primary := testrig.StartPostgres(t)
	replica := primary.StartReplica(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	execSQL(ctx, t, primary.DSN("postgres"), "create database tsb")
	execSQL(ctx, t, primary.DSN("tsb"), "create table config (k text primary key, v text); insert into config values ('org', 'tetrate')")
	waitRow(t, replica.DSN("tsb"), "org", "tetrate")

	var inRecovery bool
	query(ctx, t, replica.DSN("tsb"), "select pg_is_in_recovery()", &inRecovery)
	if !inRecovery {
		t.Error("the replica is not in recovery")
	}
	conn := connect(ctx, t, replica.DSN("tsb"))
	if _, err := conn.Exec(ctx, "insert into config values ('x', 'y')"); err == nil {
		t.Error("the replica accepted a write")
	}

	primary.Stop(t)
	primary.Restart(t)
	execSQL(ctx, t, primary.DSN("tsb"), "insert into config values ('tenant', 'tier1')")
	waitRow(t, replica.DSN("tsb"), "tenant", "tier1")
}

func connect(ctx context.Context, t *testing.T, dsn string) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func execSQL(ctx context.Context, t *testing.T, dsn, sql string) {
	t.Helper()
	if _, err := connect(ctx, t, dsn).Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func query(ctx context.Context, t *testing.T, dsn, sql string, dst ...any) {
	t.Helper()
	if err := connect(ctx, t, dsn).QueryRow(ctx, sql).Scan(dst...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// waitRow polls the replica until config[k] = v: replication is asynchronous, so at first even
// the database may not be there.
func waitRow(t *testing.T, dsn, k, v string) {
	t.Helper()
	testrig.Eventually(t, fmt.Sprintf("the replica to have %s=%s", k, v), time.Minute, func(ctx context.Context) error {
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		defer c.Close(context.Background())
		var got string
		if err := c.QueryRow(ctx, "select v from config where k = $1", k).Scan(&got); err != nil {
			return err
		}
		if got != v {
			return fmt.Errorf("%s=%q", k, got)
		}
		return nil
	})
}
