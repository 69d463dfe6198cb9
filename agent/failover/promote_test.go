package failover_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// West's database is a streaming replica of east's. A failover to west pushes its branch; the
// replica stays in recovery until a person merges the branch into main; once the merge is seen
// the follow-through promotes it (a merged status carries the step) and it takes writes. A drill
// never promotes.
func TestFollowThroughPromotesAfterTheMerge(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{})
	primary := testrig.StartPostgres(t)
	replica := primary.StartReplica(t)
	probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(probe.Close)
	r.startAgent(t, func(o *failover.Options) {
		o.Follow = failover.FollowOptions{Interval: 200 * time.Millisecond, MergeInterval: 300 * time.Millisecond, ProbeURL: probe.URL,
			OnMerged: database.OnMerged(database.PromoteOptions{DSN: replica.DSN("postgres")})}
	})
	inRecovery := func() bool {
		t.Helper()
		c, err := pgx.Connect(r.ctx, replica.DSN("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close(context.Background())
		var b bool
		if err := c.QueryRow(r.ctx, "SELECT pg_is_in_recovery()").Scan(&b); err != nil {
			t.Fatal(err)
		}
		return b
	}

	drill := planned("west")
	drill.Mode = event.ModeDrill
	r.publish(t, request(t, "ev-drill", drill))
	r.waitPhase(t, "ev-drill", event.PhaseProposed, time.Minute)

	r.publish(t, request(t, "ev-promote", planned("west")))
	sts := r.waitPhase(t, "ev-promote", event.PhaseProposed, time.Minute)
	time.Sleep(2 * time.Second) // the follow-through is polling pair.yaml: nothing may happen yet
	if !inRecovery() {
		t.Fatal("the replica was promoted before the merge")
	}
	mergeBranch(t, r, sts[len(sts)-1].Branch)

	sts = r.waitPhase(t, "ev-promote", event.PhaseVerified, time.Minute)
	if p := failovertest.Phases(sts); p != "accepted,preflight,proposed,merged,merged,verified" {
		t.Errorf("phases %s", p)
	}
	step := sts[4]
	if len(step.Steps) != 1 || step.Steps[0].Name != database.StepPromote || step.Steps[0].Result != event.StepDone {
		t.Errorf("the step status: %+v", step)
	}
	if inRecovery() {
		t.Error("the replica is still in recovery after the merge")
	}
	c, err := pgx.Connect(r.ctx, replica.DSN("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(r.ctx, "CREATE TABLE after_failover (x int); INSERT INTO after_failover VALUES (1)"); err != nil {
		t.Errorf("the promoted server refuses writes: %v", err)
	}
	for _, st := range r.statuses(t, "ev-drill") {
		if len(st.Steps) > 0 || st.Phase == event.PhaseMerged {
			t.Errorf("the drill went on to %s %+v", st.Phase, st.Steps)
		}
	}
}

// mergeBranch fast-forwards main to the failover branch, as merging it on a forge would.
func mergeBranch(t *testing.T, r *rig, branch string) {
	t.Helper()
	repo, err := cloneAll(r.ctx, r.url, r.auth)
	if err != nil {
		t.Fatal(err)
	}
	err = repo.PushContext(r.ctx, &gogit.PushOptions{Auth: basicAuth(r.auth),
		RefSpecs: []config.RefSpec{config.RefSpec("refs/remotes/origin/" + branch + ":refs/heads/main")}})
	if err != nil {
		t.Fatalf("merging %s: %v", branch, err)
	}
}
