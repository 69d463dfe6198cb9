package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
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
// own replay lag (received but not replayed), and when a verified import last replaced it.
func Status(ctx context.Context, dsn string, topology Topology) (*event.PostgresStatus, error) {
	s, err := Probe(ctx, dsn)
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
		if rec, err := importRecord(ctx, dsn, s.Database); err == nil {
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

// HeartbeatStatus reads a cluster's Postgres facts from its last heartbeat on the pair's stream;
// one older than maxAge is failover.ErrUnreachable.
func HeartbeatStatus(js jetstream.JetStream, pair string, maxAge time.Duration) PeerStatus {
	return func(ctx context.Context, cluster string) (*event.PostgresStatus, time.Time, error) {
		hb, at, err := failover.LastHeartbeat(ctx, js, pair, cluster, maxAge)
		if err != nil {
			return nil, at, err
		}
		if hb.Postgres == nil {
			return nil, at, errors.New("the heartbeat of " + cluster + " reports no Postgres status")
		}
		return hb.Postgres, at, nil
	}
}
