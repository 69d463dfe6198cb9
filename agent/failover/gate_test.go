package failover_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// A pull request gates itself on a real Gitea whose main requires the mpha/preflight status:
// the agent sets it success when it proposes, runs the preflight again while the pull request
// waits, turns it failure when a check stops holding (Gitea then refuses the merge), success
// again when it holds, and the merge goes through; the follow-through then sees it merged.
func TestPullRequestGatesItself(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{gitea: true})
	sdk, err := gitea.NewClient(r.gitea.URL, gitea.SetToken(r.gitea.Token))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := sdk.CreateBranchProtection(r.gitea.Admin, "fleet", gitea.CreateBranchProtectionOption{BranchName: "main",
		EnablePush: true, EnableStatusCheck: true, StatusCheckContexts: []string{failover.StatusContext}}); err != nil {
		t.Fatal(err)
	}
	var lagging atomic.Bool
	r.startAgent(t, func(o *failover.Options) {
		o.Follow = failover.FollowOptions{MergeInterval: 200 * time.Millisecond, Interval: 200 * time.Millisecond}
		o.Preflight = failover.PreflightFunc(func(context.Context, string, string) ([]event.Check, error) {
			db := event.Check{Name: "database", Result: "pass", Evidence: "logical subscription 0 B behind"}
			if lagging.Load() {
				db = event.Check{Name: "database", Result: "fail", Evidence: "lag over the RPO: 20.0 MiB behind"}
			}
			return []event.Check{{Name: "signing-key-kid", Result: "pass", Evidence: "kid k-2026 on both"}, db}, nil
		})
	})
	r.publish(t, request(t, "ev-gated", planned("west")))
	proposed := r.waitPhase(t, "ev-gated", event.PhaseProposed, time.Minute)
	pr := proposed[len(proposed)-1]
	status := func(want gitea.StatusState, desc string) {
		t.Helper()
		testrig.Eventually(t, "the pull request's status "+string(want), 30*time.Second, func(context.Context) error {
			st, _, err := sdk.GetCombinedStatus(r.gitea.Admin, "fleet", pr.Commit)
			if err != nil {
				return err
			}
			for _, s := range st.Statuses {
				if s.Context == failover.StatusContext && s.State == want && strings.Contains(s.Description, desc) && s.TargetURL == pr.PR {
					return nil
				}
			}
			return fmt.Errorf("statuses %+v", st.Statuses)
		})
	}
	// Set before the proposed status was published: a merge right away finds it.
	status(gitea.StatusSuccess, "preflight holds: 3 pass, 0 warn")

	lagging.Store(true)
	status(gitea.StatusFailure, "preflight fails, do not merge: database (lag over the RPO: 20.0 MiB behind)")
	number := prNumber(t, pr.PR)
	mctx, cancel := context.WithTimeout(r.ctx, 3*time.Second)
	err = r.forge.Merge(mctx, number, "merge while red")
	cancel()
	if err == nil {
		t.Fatal("Gitea merged a pull request whose preflight status is failure")
	}
	if got, err := r.forge.Get(r.ctx, number); err != nil || got.State != forge.StateOpen {
		t.Fatalf("after the refused merge: %+v, %v", got, err)
	}

	lagging.Store(false)
	status(gitea.StatusSuccess, "preflight holds")
	if err := r.forge.Merge(r.ctx, number, "merge while green"); err != nil {
		t.Fatalf("merging once green: %v", err)
	}
	r.waitPhase(t, "ev-gated", event.PhaseMerged, time.Minute)
	if !strings.Contains(r.logs.String(), "the pull request's preflight status changed") {
		t.Errorf("no log of the status change:\n%s", r.logs)
	}
}

func prNumber(t *testing.T, url string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscanf(url[strings.LastIndex(url, "/")+1:], "%d", &n); err != nil {
		t.Fatalf("pull request URL %s: %v", url, err)
	}
	return n
}
