package database

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/redact"
)

// Server is what one site's database server says about itself.
type Server struct {
	// Name is host:port/db (Describe).
	Name string
	// SystemID is pg_control_system's system identifier: a primary and its physical replicas
	// share it; StartedAt (the postmaster's start) tells two such servers apart.
	SystemID   string
	StartedAt  time.Time
	Database   string
	InRecovery bool
	// LSN is pg_current_wal_flush_lsn() on a primary, pg_last_wal_replay_lsn() on a replica.
	// Flushed, not written: a replica receives only flushed WAL, and an idle primary can keep a
	// few bytes (a running-xacts record) written but unflushed for long, which would read as lag.
	LSN string
	// ReceiveLSN and ReplayedAt (pg_last_xact_replay_timestamp) are a replica's; Receiving says
	// whether its WAL receiver is streaming now.
	ReceiveLSN string
	ReplayedAt *time.Time
	Receiving  bool
	// Now is the server's clock when probed (lag in seconds is measured on it).
	Now time.Time
}

// Probe connects to dsn and reads the server's identity and WAL position.
func Probe(ctx context.Context, dsn string) (*Server, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", Describe(dsn), redact.Error(err))
	}
	defer c.Close(context.Background())
	return probe(ctx, c, Describe(dsn))
}

func probe(ctx context.Context, c *pgx.Conn, name string) (*Server, error) {
	s := &Server{Name: name}
	var receive *string
	err := c.QueryRow(ctx, `SELECT s.system_identifier::text, pg_postmaster_start_time(), current_database(), pg_is_in_recovery(),
       CASE WHEN pg_is_in_recovery() THEN coalesce(pg_last_wal_replay_lsn(), '0/0') ELSE pg_current_wal_flush_lsn() END::text,
       pg_last_wal_receive_lsn()::text, pg_last_xact_replay_timestamp(),
       EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'), now()
  FROM pg_control_system() s`).Scan(&s.SystemID, &s.StartedAt, &s.Database, &s.InRecovery, &s.LSN, &receive, &s.ReplayedAt, &s.Receiving, &s.Now)
	if err != nil {
		return nil, fmt.Errorf("reading the state of %s: %w", name, redact.Error(err))
	}
	if receive != nil {
		s.ReceiveLSN = *receive
	}
	return s, nil
}
