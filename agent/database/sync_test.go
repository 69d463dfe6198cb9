package database_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
)

// The sync before a failover decides by topology and mode: a streaming replica (auto) is not
// copied into; a sync that fails stops a planned failover, and an emergency that forces the
// database check goes on, the failure in its step.
func TestBeforeFailoverDecides(t *testing.T) {
	integration(t)
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	active, standby := primary(ctx, t), primary(ctx, t)
	replica := active.StartReplica(t)
	planned := event.FailoverRequest{Target: "west", Mode: event.ModePlanned}
	forced := event.FailoverRequest{Target: "west", Mode: event.ModeEmergency, Force: []string{database.CheckName}}

	step, err := database.BeforeFailover(database.SyncOptions{Topology: database.Auto, Self: mp(replica), Peer: mp(active)})(ctx, planned, "east")
	if err != nil || step.Result != event.StepSkipped || !strings.Contains(step.Detail, "the databases are streaming") {
		t.Errorf("a streaming replica: %+v, %v", step, err)
	}

	session, err := pgx.Connect(ctx, mp(standby)) // the standby's MP still connected
	if err != nil {
		t.Fatal(err)
	}
	defer session.Close(context.Background())
	busy := database.BeforeFailover(database.SyncOptions{Topology: database.Independent, Self: mp(standby), Peer: mp(active),
		Retries: 1})
	step, err = busy(ctx, planned, "east")
	if err == nil || step.Result != event.StepFailed || !strings.Contains(step.Detail, "active sessions") {
		t.Errorf("planned into a busy database: %+v, %v", step, err)
	}
	step, err = busy(ctx, forced, "east")
	if err != nil || step.Result != event.StepFailed || !strings.Contains(step.Detail, "the emergency forces the database check") {
		t.Errorf("a forced emergency into a busy database: %+v, %v", step, err)
	}
	noPassword(t, "the step", step.Detail)
}
