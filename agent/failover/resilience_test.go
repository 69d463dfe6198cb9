package failover_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// crashAt kills the agent the first time it reaches point: its context ends and its goroutine
// exits there, so nothing after the point happens and the request is not acked.
func crashAt(point string) func(string, func()) {
	return func(p string, stop func()) {
		if p == point {
			stop()
			runtime.Goexit()
		}
	}
}

// 1000 copies of one request (500 the stream drops as duplicates, 500 published without a
// message id, so the agent sees each), and the agent killed at four points while handling it,
// still make exactly one branch and one pull request, and the request is answered.
func TestDuplicatesAndCrashesMakeOnePullRequest(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{gitea: true})
	e := request(t, "ev-dup", planned("west"))
	raw := mustEncode(t, e)
	for i := range 1000 {
		var err error
		if i%2 == 0 {
			_, err = event.Publish(r.ctx, r.js, r.subj.Requested(), e)
		} else {
			_, err = r.js.Publish(r.ctx, r.subj.Requested(), raw)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := len(r.messages(t, r.subj.Requested())); n != 501 {
		t.Fatalf("%d requests stored, want 501 (one deduplicated copy and 500 without an id)", n)
	}
	for _, point := range []string{"decoded", "pushed", "pr-opened", "answered"} {
		a := r.startAgentWithHook(t, nil, crashAt(point))
		select {
		case <-a.done:
		case <-time.After(time.Minute):
			t.Fatalf("the agent never reached %s", point)
		}
	}
	r.startAgent(t, nil)
	testrig.Eventually(t, "every copy handled", 2*time.Minute, func(ctx context.Context) error {
		c, err := r.js.Consumer(ctx, r.subj.Stream(), "agent-west")
		if err != nil {
			return err
		}
		info, err := c.Info(ctx)
		if err != nil {
			return err
		}
		if info.NumPending != 0 || info.NumAckPending != 0 || info.AckFloor.Stream < info.Delivered.Stream {
			return fmt.Errorf("pending %d, ack pending %d", info.NumPending, info.NumAckPending)
		}
		return nil
	})
	sts := r.statuses(t, "ev-dup")
	if p := failovertest.Phases(sts); p != "accepted,preflight,proposed" {
		t.Errorf("statuses %s: each phase once, in order", p)
	}
	if bs, err := r.repo.Branches(r.ctx, "mpha/"); err != nil || len(bs) != 1 || bs[0].Name != "mpha/failover/ev-dup" {
		t.Errorf("branches %+v, %v", bs, err)
	}
	prs := r.pullRequests(t)
	if len(prs) != 1 || prs[0].HTMLURL != sts[len(sts)-1].PR {
		t.Errorf("%d pull requests; status says %s", len(prs), sts[len(sts)-1].PR)
	}
	if n := len(r.rejections(t)); n != 0 {
		t.Errorf("%d rejections", n)
	}
}

// NATS restarted while a request is handled and the Git server down for 30 s: the request
// completes once both are back.
func TestRequestSurvivesNATSRestartAndGitOutage(t *testing.T) {
	t.Parallel()
	r, proxy := startRig(t, rigOptions{proxy: true})
	reached, resume := make(chan struct{}), make(chan struct{})
	first := true
	r.startAgentWithHook(t, nil, func(point string, _ func()) {
		if point == "decoded" && first {
			first = false
			close(reached)
			<-resume
		}
	})
	r.publish(t, request(t, "ev-outage", planned("west")))
	select {
	case <-reached:
	case <-time.After(time.Minute):
		t.Fatal("the agent never took the request")
	}
	proxy.Down()
	r.nats.Restart(t)
	close(resume)
	downAt := time.Now()
	time.Sleep(30 * time.Second)
	if err := proxy.Up(); err != nil {
		t.Fatal(err)
	}
	sts := r.waitPhase(t, "ev-outage", event.PhaseProposed, 3*time.Minute)
	if last := sts[len(sts)-1]; last.Branch != "mpha/failover/ev-outage" {
		t.Errorf("answer %+v", last)
	}
	if !strings.Contains(r.logs.String(), "retrying") {
		t.Error("the agent logged no retry: was Git really down?")
	}
	bs, err := r.repo.Branches(r.ctx, "mpha/")
	if err != nil || len(bs) != 1 {
		t.Fatalf("branches %+v, %v", bs, err)
	}
	r.noCredentials(t, r.auth.Password)
	t.Logf("answered %s after Git went down", time.Since(downAt).Round(time.Second))
}
