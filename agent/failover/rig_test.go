package failover_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"os"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/fluxcd/pkg/git"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/nats-io/nats.go/jetstream"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const pairName = "tsb-mp"

// rig is a pair's Git repository (on Gitea, or the rig's Git server), NATS with the pair's
// stream, and what the tests need to drive an agent of west, the standby.
type rig struct {
	ctx    context.Context
	nats   *testrig.NATS
	js     jetstream.JetStream
	subj   event.Subjects
	layout gitops.Layout
	url    string
	auth   *git.AuthOptions
	repo   *gitrepo.Writer
	gitea  *testrig.Gitea
	forge  forge.Forge
	base   string // the seed commit
	logs   *testrig.LogBuffer
}

type rigOptions struct {
	gitea bool
	// gitAddr, if set, is put in front of the Git server (a testrig.Proxy address).
	proxy bool
}

// heartbeats reads the pair's heartbeats from the rig's stream, as the agent does.
func (r *rig) heartbeats(t *testing.T) *heartbeat.Reader {
	t.Helper()
	beats, err := heartbeat.NewReader(r.js, pairName, heartbeat.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return beats
}

func startRig(t *testing.T, o rigOptions) (*rig, *testrig.Proxy) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts NATS and a Git server")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	r := &rig{ctx: ctx, nats: testrig.StartNATS(t), logs: &testrig.LogBuffer{}}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- agent logs ---\n%s", r.logs)
		}
	})
	r.js = r.nats.JetStream(t)
	if _, err := event.EnsureStream(ctx, r.js, pairName); err != nil {
		t.Fatal(err)
	}
	r.subj, _ = event.NewSubjects(pairName)
	r.layout, _ = gitops.NewLayout("mpha")
	var creds map[string][]byte
	var proxy *testrig.Proxy
	if o.gitea {
		r.gitea = testrig.StartGitea(t)
		c, err := gitea.NewClient(r.gitea.URL, gitea.SetToken(r.gitea.Token))
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.CreateRepo(gitea.CreateRepoOption{Name: "fleet", AutoInit: true, DefaultBranch: "main", Readme: "Default"}); err != nil {
			t.Fatal(err)
		}
		r.url = r.gitea.CloneURL(r.gitea.Admin, "fleet")
		creds = map[string][]byte{"username": []byte(r.gitea.Admin), "password": []byte(r.gitea.Token)}
		r.forge, err = forge.New(ctx, forge.Options{Kind: forge.KindGitea, URL: r.gitea.URL, Token: r.gitea.Token, Repository: r.gitea.Admin + "/fleet"})
		if err != nil {
			t.Fatal(err)
		}
	} else {
		srv := testrig.StartGitServer(t)
		srv.CreateRepo(t, "org/fleet.git", "main", map[string]string{"README.md": "fleet\n"})
		r.url, creds = srv.URL("org/fleet.git"), srv.Credentials()
		if o.proxy {
			proxy = testrig.StartProxy(t, srv.HostPort())
			r.url = "http://" + proxy.Addr + "/org/fleet.git"
		}
	}
	var err error
	if r.auth, err = gitrepo.NewAuth(r.url, creds); err != nil {
		t.Fatal(err)
	}
	r.repo = r.writer(t, "mpha agent (west)")
	res, err := r.repo.Apply(ctx, gitops.Change{Files: failovertest.Seed(t, r.layout), Message: "Seed the pair",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	r.base = res.Commit
	return r, proxy
}

func (r *rig) writer(t testing.TB, name string) *gitrepo.Writer {
	t.Helper()
	w, err := gitrepo.New(gitrepo.Options{URL: r.url, Auth: r.auth, AllowHTTPCredentials: true,
		Author:  git.Signature{Name: name, Email: "mpha@west.invalid"},
		Backoff: wait.Backoff{Duration: 200 * time.Millisecond, Factor: 1.5, Jitter: 0.2, Steps: 6}})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// agent is a running failover handler of west.
type agent struct {
	h    *failover.Handler
	stop context.CancelFunc
	done chan struct{}
}

// startAgent runs a handler of west with the rig's repository (and forge, if any).
func (r *rig) startAgent(t testing.TB, edit func(*failover.Options)) *agent {
	t.Helper()
	return r.startAgentWithHook(t, edit, nil)
}

// startAgentWithHook is startAgent with a hook called at the handler's named points; the hook
// gets the agent's stop function, to kill it there.
func (r *rig) startAgentWithHook(t testing.TB, edit func(*failover.Options), hook func(point string, stop func())) *agent {
	t.Helper()
	o := failover.Options{
		Cluster: "west", Pair: pairName, Layout: r.layout,
		Consumer: event.ConsumerOptions{AckWait: 2 * time.Second},
		Follow:   failover.FollowOptions{Disabled: true},
		Logger:   slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if r.forge != nil {
		o.Forge = r.forge
	}
	if edit != nil {
		edit(&o)
	}
	h, err := failover.New(r.js, r.repo, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	a := &agent{h: h, stop: cancel, done: make(chan struct{})}
	if hook != nil {
		failover.SetHook(h, func(point string) { hook(point, cancel) })
	}
	go func() {
		defer close(a.done)
		if err := h.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
	}()
	t.Cleanup(a.kill)
	return a
}

// kill stops the agent and waits for it.
func (a *agent) kill() {
	a.stop()
	<-a.done
}

func epoch(n int64) *int64 { return &n }

func request(t *testing.T, id string, data event.FailoverRequest) event.Event {
	t.Helper()
	e, err := event.NewFailoverRequest("mpha://cli/alice", id, data)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func planned(target string) event.FailoverRequest {
	return event.FailoverRequest{Target: target, ExpectedEpoch: epoch(7), Mode: event.ModePlanned,
		Reason: "east region degraded", RequestedBy: "alice@example.com"}
}

func (r *rig) publish(t *testing.T, e event.Event) {
	t.Helper()
	if _, err := event.Publish(r.ctx, r.js, r.subj.Requested(), e); err != nil {
		t.Fatal(err)
	}
}

// messages returns what the stream holds on subject, oldest first.
func (r *rig) messages(t testing.TB, subject string) []*jetstream.RawStreamMsg {
	t.Helper()
	return testrig.StreamMessages(t, r.ctx, r.js, r.subj.Stream(), subject)
}

// statuses returns the failover.status data published for request id, in order.
func (r *rig) statuses(t testing.TB, id string) []event.FailoverStatus {
	t.Helper()
	return failovertest.Stream{JS: r.js, Subjects: r.subj}.Statuses(t, r.ctx, id)
}

// rejections returns the DLQ's rejected events.
func (r *rig) rejections(t testing.TB) []event.Rejected {
	t.Helper()
	var out []event.Rejected
	for _, m := range r.messages(t, r.subj.DLQ()) {
		e, err := event.Decode(m.Data, event.TypeRejected)
		if err != nil {
			t.Fatal(err)
		}
		var rj event.Rejected
		if err := e.DataAs(&rj); err != nil {
			t.Fatal(err)
		}
		out = append(out, rj)
	}
	return out
}

// waitPhase waits until request id reached phase and returns its statuses.
func (r *rig) waitPhase(t *testing.T, id string, phase event.Phase, timeout time.Duration) []event.FailoverStatus {
	t.Helper()
	return failovertest.Stream{JS: r.js, Subjects: r.subj}.WaitPhase(t, r.ctx, id, phase, timeout)
}

// cloneAll clones every branch of the repository into memory.
func cloneAll(ctx context.Context, url string, auth *git.AuthOptions) (*gogit.Repository, error) {
	return gogit.CloneContext(ctx, memory.NewStorage(), nil, &gogit.CloneOptions{
		URL: url, Auth: basicAuth(auth), NoCheckout: true,
	})
}

func treeOf(t *testing.T, repo *gogit.Repository, commit string) *object.Tree {
	t.Helper()
	c, err := repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := c.Tree()
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// testKey is a deterministic ed25519 key.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func trustedKeys(t *testing.T, keys ...ed25519.PrivateKey) []event.TrustedKey {
	t.Helper()
	var out []event.TrustedKey
	for _, k := range keys {
		tk, err := event.ParseTrustedKey(event.FormatTrustedKey(k.Public().(ed25519.PublicKey)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tk)
	}
	return out
}

func mustSigned(t *testing.T, key ed25519.PrivateKey, id string, d event.FailoverRequest) event.Event {
	t.Helper()
	e := request(t, id, d)
	if err := event.Sign(&e, key); err != nil {
		t.Fatal(err)
	}
	return e
}

func mustEncode(t *testing.T, e event.Event) []byte {
	t.Helper()
	b, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func basicAuth(a *git.AuthOptions) *githttp.BasicAuth {
	return &githttp.BasicAuth{Username: a.Username, Password: a.Password}
}
