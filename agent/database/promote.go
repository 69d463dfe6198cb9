package database

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/redact"
)

// StepPromote names the promotion in failover status events.
const StepPromote = "promote-database"

// Promote promotes the streaming standby at dsn (pg_promote, which needs a superuser or a role
// granted EXECUTE on it) and waits up to wait for it to accept writes. It reports false when the
// server is a primary already: promoting twice is harmless.
func Promote(ctx context.Context, dsn string, wait time.Duration) (bool, error) {
	c, name, err := connectMaintenance(ctx, dsn)
	if err != nil {
		return false, err
	}
	defer c.Close(context.Background())
	var inRecovery bool
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return false, fmt.Errorf("reading the state of %s: %w", name, redact.Error(err))
	}
	if !inRecovery {
		return false, nil
	}
	var done bool
	if err := c.QueryRow(ctx, "SELECT pg_promote(true, $1)", int(max(wait, time.Second).Seconds())).Scan(&done); err != nil {
		return false, fmt.Errorf("promoting %s (the role needs EXECUTE on pg_promote, granted in the database the agent connects to: %s): %w", name, MaintenanceDatabase, redact.Error(err))
	}
	if !done {
		return false, fmt.Errorf("%s did not finish promoting within %s", name, wait)
	}
	return true, nil
}

// MaintenanceDatabase is where Promote runs pg_promote. A function's grants live in each
// database's catalog, and a db sync rebuilds the MP's database from template0, which would drop
// a grant made there; the maintenance database is never synced.
const MaintenanceDatabase = "postgres"

// connectMaintenance connects to the server of dsn through MaintenanceDatabase, or through
// dsn's own database when the role may not connect there (a hardened server revokes CONNECT
// from PUBLIC).
func connectMaintenance(ctx context.Context, dsn string) (*pgx.Conn, string, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, Describe(dsn), fmt.Errorf("parsing the DSN of %s: %w", Describe(dsn), redact.Error(err))
	}
	own := cfg.Database
	cfg.Database = MaintenanceDatabase
	if c, err := pgx.ConnectConfig(ctx, cfg); err == nil {
		return c, Describe(dsn), nil
	}
	cfg.Database = own
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, Describe(dsn), fmt.Errorf("connecting to %s: %w", Describe(dsn), redact.Error(err))
	}
	return c, Describe(dsn), nil
}

// PromoteOptions configure the promotion after a failover merges.
type PromoteOptions struct {
	// DSN is this site's database (the standby's, soon the active's).
	DSN string
	// Wait bounds pg_promote's wait (default 60s).
	Wait   time.Duration
	Logger *slog.Logger
}

// OnMerged is the follow-through hook (failover.FollowOptions.OnMerged) that promotes this
// site's streaming standby once a failover to it is merged, before Flux starts the new MP's
// writers. The follow-through never runs for drills and dry runs, so neither promotes.
func OnMerged(o PromoteOptions) func(ctx context.Context, st event.FailoverStatus) (event.Step, error) {
	if o.Wait <= 0 {
		o.Wait = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return func(ctx context.Context, st event.FailoverStatus) (event.Step, error) {
		name := Describe(o.DSN)
		promoted, err := Promote(ctx, o.DSN, o.Wait)
		switch {
		case err != nil:
			return event.Step{Name: StepPromote, Result: event.StepFailed, Detail: err.Error()}, err
		case !promoted:
			return event.Step{Name: StepPromote, Result: event.StepSkipped, Detail: name + " is a primary already"}, nil
		}
		o.Logger.Info("promoted the standby database", "event", st.Event, "database", name)
		return event.Step{Name: StepPromote, Result: event.StepDone, Detail: name + " promoted: it accepts writes"}, nil
	}
}
