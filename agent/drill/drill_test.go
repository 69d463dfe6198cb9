package drill_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/agent/drill"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

// pair is a pair's repository on the rig's Git server and NATS, with both clusters' failover
// handlers (direct mode: a failover commits onto main), each verifying through its own probe.
type pair struct {
	ctx    context.Context
	layout gitops.Layout
	url    string
	auth   *git.AuthOptions
	nats   *testrig.NATS
	// verifies says whether the cluster's new active answers its verification probe.
	verifies map[string]*atomic.Bool
	// ready says whether the cluster passes its preflight as a target.
	ready map[string]*atomic.Bool
}

func startPair(t *testing.T) *pair {
	t.Helper()
	if testing.Short() {
		t.Skip("starts NATS and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	p := &pair{ctx: ctx, nats: testrig.StartNATS(t), verifies: map[string]*atomic.Bool{}, ready: map[string]*atomic.Bool{}}
	p.layout, _ = gitops.NewLayout("mpha")
	srv := testrig.StartGitServer(t)
	files := map[string]string{}
	for k, v := range failovertest.Seed(t, p.layout) {
		files[k] = string(v)
	}
	srv.CreateRepo(t, "org/fleet.git", "main", files)
	p.url = srv.URL("org/fleet.git")
	var err error
	if p.auth, err = gitrepo.NewAuth(p.url, srv.Credentials()); err != nil {
		t.Fatal(err)
	}
	js := p.nats.JetStream(t)
	if _, err := event.EnsureStream(ctx, js, "tsb-mp"); err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"east", "west"} {
		p.verifies[c], p.ready[c] = &atomic.Bool{}, &atomic.Bool{}
		p.verifies[c].Store(true)
		p.ready[c].Store(true)
		probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if !p.verifies[c].Load() {
				http.Error(w, "the new MP does not answer", http.StatusBadGateway)
			}
		}))
		t.Cleanup(probe.Close)
		h, err := failover.New(js, p.writer(t, c), failover.Options{Cluster: c, Pair: "tsb-mp", Layout: p.layout, Mode: failover.ModeDirect,
			Consumer: event.ConsumerOptions{AckWait: 2 * time.Second},
			Preflight: failover.PreflightFunc(func(context.Context, string, string) ([]event.Check, error) {
				if !p.ready[c].Load() {
					return []event.Check{{Name: "database", Result: "fail", Evidence: "lag over the RPO: 20.0 MiB behind"}}, nil
				}
				return []event.Check{{Name: "database", Result: "pass", Evidence: "0 B behind"}}, nil
			}),
			Follow: failover.FollowOptions{ProbeURL: probe.URL, Interval: 100 * time.Millisecond, VerifyTimeout: 3 * time.Second}})
		if err != nil {
			t.Fatal(err)
		}
		hctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = h.Run(hctx) }()
		t.Cleanup(func() { stop(); <-done })
	}
	return p
}

func (p *pair) writer(t *testing.T, name string) *gitrepo.Writer {
	t.Helper()
	w, err := gitrepo.New(gitrepo.Options{URL: p.url, Auth: p.auth, AllowHTTPCredentials: true,
		Author:  git.Signature{Name: name, Email: name + "@mpha.invalid"},
		Backoff: wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 6}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Close)
	return w
}

func (p *pair) run(t *testing.T, id string) (*drill.Report, *gitrepo.Writer, error) {
	t.Helper()
	w := p.writer(t, "game day")
	r, err := drill.Run(p.ctx, drill.Options{ID: id, Layout: p.layout, Repo: w, JS: p.nats.JetStream(t), RequestedBy: "alice",
		LegTimeout: 30 * time.Second})
	if r == nil {
		t.Fatalf("no report: %v", err)
	}
	return r, w, err
}

// committed reads the report r says it committed.
func committed(t *testing.T, w *gitrepo.Writer, r *drill.Report) string {
	t.Helper()
	snap, err := w.Read(context.Background(), r.Path)
	if err != nil || len(snap.Files[r.Path]) == 0 || snap.Commit != r.Commit {
		t.Fatalf("the report at %s: %v (commit %s, want %s)", r.Path, err, snap.Commit, r.Commit)
	}
	return string(snap.Files[r.Path])
}

func active(t *testing.T, w *gitrepo.Writer, l gitops.Layout) *gitops.Pair {
	t.Helper()
	snap, err := w.Read(context.Background(), l.Pair())
	if err != nil {
		t.Fatal(err)
	}
	pr, err := gitops.ParsePair(snap.Files[l.Pair()])
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// A game day on real failover handlers: it fails over to west and back and commits its report;
// with west's preflight failing it changes nothing and says so; when west's failover fails once
// merged, it fails back to east by itself and reports failed.
func TestGameDay(t *testing.T) {
	p := startPair(t)

	r, w, err := p.run(t, "gd-pass")
	if err != nil || r.Verdict != drill.Passed || len(r.Legs) != 2 {
		t.Fatalf("the drill: %v %+v", err, r)
	}
	if got := active(t, w, p.layout); got.Active != "east" || got.Epoch != 9 {
		t.Errorf("after the drill pair.yaml: %s at epoch %d, want east at 9", got.Active, got.Epoch)
	}
	md := committed(t, w, r)
	for _, want := range []string{"# Game day gd-pass of tsb-mp: passed", "## Failover to west", "## Failback to east", "| verified |", "| database | pass | 0 B behind |"} {
		if !strings.Contains(md, want) {
			t.Errorf("the report lacks %q:\n%s", want, md)
		}
	}
	if !strings.HasPrefix(r.Path, "mpha/drills/") || !strings.HasSuffix(r.Path, "-gd-pass.md") {
		t.Errorf("report path %s", r.Path)
	}

	p.ready["west"].Store(false)
	r, w, err = p.run(t, "gd-not-ready")
	if !errors.Is(err, drill.ErrNotReady) || r.Verdict != drill.Aborted || len(r.Legs) != 0 {
		t.Fatalf("a drill while west's preflight fails: %v %+v", err, r)
	}
	if got := active(t, w, p.layout); got.Active != "east" || got.Epoch != 9 {
		t.Errorf("a drill that did not start moved pair.yaml: %s at epoch %d", got.Active, got.Epoch)
	}
	if md := committed(t, w, r); !strings.Contains(md, "aborted") || !strings.Contains(md, "lag over the RPO: 20.0 MiB behind") {
		t.Errorf("the aborted drill's report:\n%s", md)
	}
	p.ready["west"].Store(true)

	p.verifies["west"].Store(false)
	r, w, err = p.run(t, "gd-fails")
	if err == nil || r.Verdict != drill.Failed || len(r.Legs) != 2 || r.Legs[0].Err == "" || r.Legs[1].Err != "" {
		t.Fatalf("a drill whose failover fails once merged: %v %+v", err, r)
	}
	if got := active(t, w, p.layout); got.Active != "east" || got.Epoch != 11 {
		t.Errorf("after the failed drill pair.yaml: %s at epoch %d, want east (failed back) at 11", got.Active, got.Epoch)
	}
	if md := committed(t, w, r); !strings.Contains(md, "the drill failed back to east") || !strings.Contains(md, "**Error**") {
		t.Errorf("the failed drill's report:\n%s", md)
	}
}
