package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/redact"
)

// Roles in a heartbeat's Postgres status.
const (
	RolePrimary = "primary"
	RoleReplica = "replica"
	RoleShared  = "shared"
)

// Status is this site's database for its heartbeat: role, WAL position, system id, a replica's
// own replay lag (received but not replayed), and when a verified import last replaced it. One
// connection per call: the heartbeat runs it every beat.
func Status(ctx context.Context, dsn string, topology Topology) (*event.PostgresStatus, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", Describe(dsn), redact.Error(err))
	}
	defer c.Close(context.Background())
	s, err := probe(ctx, c, Describe(dsn))
	if err != nil {
		return nil, err
	}
	st := &event.PostgresStatus{Role: RolePrimary, LSN: s.LSN, SystemID: s.SystemID}
	switch {
	case s.InRecovery:
		st.Role = RoleReplica
		lag, err := MeasureLag(s, s.ReceiveLSN)
		if err == nil {
			st.LagBytes, st.LagSeconds = &lag.Bytes, &lag.Seconds
		}
	case topology == Shared:
		st.Role = RoleShared
	}
	if topology == Independent || topology == Auto {
		if rec, err := pgcopy.ReadRecord(ctx, c, s.Database); err == nil {
			at := rec.At
			st.ImportedAt = &at
		}
	}
	return st, nil
}

func importRecord(ctx context.Context, dsn, db string) (*pgcopy.Record, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", Describe(dsn), redact.Error(err))
	}
	defer c.Close(context.Background())
	return pgcopy.ReadRecord(ctx, c, db)
}

// PeerStatus reads the Postgres facts a cluster last published in its heartbeat, and when.
type PeerStatus func(ctx context.Context, cluster string) (*event.PostgresStatus, time.Time, error)

// recentHeartbeats reads a cluster's last heartbeat, refusing one older than maxAge (a
// *heartbeat.Reader).
type recentHeartbeats interface {
	Recent(ctx context.Context, cluster string, maxAge time.Duration) (heartbeat.Beat, error)
}

// HeartbeatStatus reads a cluster's Postgres facts from its last heartbeat on the pair's stream;
// one older than maxAge is heartbeat.ErrStale.
func HeartbeatStatus(beats recentHeartbeats, maxAge time.Duration) PeerStatus {
	return func(ctx context.Context, cluster string) (*event.PostgresStatus, time.Time, error) {
		b, err := beats.Recent(ctx, cluster, maxAge)
		if err != nil {
			return nil, b.At, err
		}
		if b.Heartbeat.Postgres == nil {
			return nil, b.At, errors.New("the heartbeat of " + cluster + " reports no Postgres status")
		}
		return b.Heartbeat.Postgres, b.At, nil
	}
}
