package gitrepo_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fluxcd/pkg/git"
	"github.com/fluxcd/pkg/git/signature"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/memory"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestMain(m *testing.M) { os.Exit(testrig.Main(m)) }

const repo = "org/fleet.git"

// fastBackoff keeps retries quick in tests while still spreading writers apart.
var fastBackoff = wait.Backoff{Duration: 20 * time.Millisecond, Factor: 1.1, Jitter: 1, Steps: 40}

type fixture struct {
	srv *testrig.GitServer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	if testing.Short() {
		t.Skip("uses the rig's Git server")
	}
	f := &fixture{srv: testrig.StartGitServer(t)}
	f.srv.CreateRepo(t, repo, "main", map[string]string{"README.md": "fleet\n"})
	return f
}

func (f *fixture) writer(t *testing.T, url string, mutate ...func(*gitrepo.Options)) *gitrepo.Writer {
	t.Helper()
	auth, err := gitrepo.NewAuth(url, f.srv.Credentials())
	if err != nil {
		t.Fatal(err)
	}
	o := gitrepo.Options{
		URL: url, Auth: auth, AllowHTTPCredentials: true, Backoff: fastBackoff,
		Author: git.Signature{Name: "mpha agent (east)", Email: "mpha@east.invalid"},
	}
	for _, m := range mutate {
		m(&o)
	}
	w, err := gitrepo.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// clone returns the repository as the server has it now, at branch.
func (f *fixture) clone(t *testing.T, branch string) *gogit.Repository {
	t.Helper()
	r, err := gogit.Clone(memory.NewStorage(), nil, &gogit.CloneOptions{
		URL: f.srv.URL(repo), Auth: f.srv.Auth(), ReferenceName: plumbing.NewBranchReferenceName(branch), SingleBranch: true,
	})
	if err != nil {
		t.Fatalf("cloning %s: %v", branch, err)
	}
	return r
}

func headCommit(t *testing.T, r *gogit.Repository) *object.Commit {
	t.Helper()
	h, err := r.Head()
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.CommitObject(h.Hash())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func fileAt(t *testing.T, c *object.Commit, path string) (string, bool) {
	t.Helper()
	f, err := c.File(path)
	if errors.Is(err, object.ErrFileNotFound) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	s, err := f.Contents()
	if err != nil {
		t.Fatal(err)
	}
	return s, true
}

func owned(s string) []byte { return []byte(gitops.Header + s) }

func TestApplyCommitsWritesAndDeletes(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.writer(t, f.srv.URL(repo))
	ctx := context.Background()
	ch := gitops.Change{
		Files:    map[string][]byte{"mpha/clusters/west/secrets/iam-signing-key.yaml": owned("a: 1\n"), "mpha/clusters/west/secrets/tsb-iam-jwks.yaml": owned("b: 2\n")},
		Message:  "Export 2 secrets for west",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "secrets"}, {Key: trailer.Cluster, Value: "east"}},
		Check:    gitops.CheckOwned,
	}
	res, err := w.Apply(ctx, ch)
	if err != nil {
		t.Fatal(err)
	}
	if res.NoChange || res.Attempts != 1 {
		t.Errorf("result %+v, want one attempt that changed something", res)
	}
	c := headCommit(t, f.clone(t, "main"))
	if c.Hash.String() != res.Commit {
		t.Errorf("server head %s, Apply reported %s", c.Hash, res.Commit)
	}
	if got, _ := fileAt(t, c, "mpha/clusters/west/secrets/tsb-iam-jwks.yaml"); got != string(owned("b: 2\n")) {
		t.Errorf("file content %q", got)
	}
	if v, _ := trailer.Get(trailer.Parse(c.Message), trailer.Kind); v != "secrets" || !strings.HasPrefix(c.Message, "Export 2 secrets for west\n\n") {
		t.Errorf("message %q lacks the subject or the Mpha-Kind trailer", c.Message)
	}
	if c.Author.Name != "mpha agent (east)" || c.Committer.Email != "mpha@east.invalid" {
		t.Errorf("author %v committer %v", c.Author, c.Committer)
	}

	// The same content again: no commit.
	again, err := w.Apply(ctx, ch)
	if err != nil || !again.NoChange || again.Commit != res.Commit {
		t.Errorf("re-applying: %+v, %v; want NoChange at %s", again, err, res.Commit)
	}

	del, err := w.Apply(ctx, gitops.Change{Delete: []string{"mpha/clusters/west/secrets/tsb-iam-jwks.yaml", "never/there.yaml"},
		Message: "Remove tsb-iam-jwks", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "secrets"}}, Check: gitops.CheckOwned})
	if err != nil || del.NoChange {
		t.Fatalf("delete: %+v, %v", del, err)
	}
	if _, ok := fileAt(t, headCommit(t, f.clone(t, "main")), "mpha/clusters/west/secrets/tsb-iam-jwks.yaml"); ok {
		t.Error("the deleted file is still there")
	}
}

// Twenty writers pushing to one branch at once: every change lands, none errors, history is a line.
func TestConcurrentWritersAllLand(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, n)
	attempts := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One Writer per goroutine, as separate agents would have.
			w := f.writer(t, f.srv.URL(repo))
			res, err := w.Apply(context.Background(), gitops.Change{
				Files:    map[string][]byte{fmt.Sprintf("mpha/w/%02d.yaml", i): owned(fmt.Sprintf("i: %d\n", i))},
				Message:  fmt.Sprintf("writer %d", i),
				Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}},
			})
			errs[i], attempts[i] = err, res.Attempts
		}()
	}
	wg.Wait()
	retried := 0
	for i, err := range errs {
		if err != nil {
			t.Errorf("writer %d: %v", i, err)
		}
		if attempts[i] > 1 {
			retried++
		}
	}
	if retried == 0 {
		t.Error("no writer had to retry: the test did not race")
	}
	r := f.clone(t, "main")
	head := headCommit(t, r)
	for i := range n {
		if _, ok := fileAt(t, head, fmt.Sprintf("mpha/w/%02d.yaml", i)); !ok {
			t.Errorf("writer %d's file is missing", i)
		}
	}
	commits := 0
	for c := head; ; commits++ {
		if c.NumParents() > 1 {
			t.Fatalf("merge commit %s: history is not linear", c.Hash)
		}
		if c.NumParents() == 0 {
			break
		}
		var err error
		if c, err = c.Parent(0); err != nil {
			t.Fatal(err)
		}
	}
	if commits != n {
		t.Errorf("%d commits above the initial one, want %d", commits, n)
	}
	t.Logf("%d of %d writers retried", retried, n)
}

// A file mpha does not own is never overwritten: the error names it and nothing is pushed.
func TestForeignFileIsAConflict(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.writer(t, f.srv.URL(repo))
	before := headCommit(t, f.clone(t, "main")).Hash
	_, err := w.Apply(context.Background(), gitops.Change{
		Files:   map[string][]byte{"README.md": owned("mine now\n"), "mpha/pair.yaml": owned("active: east\n")},
		Message: "take over", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}, Check: gitops.CheckOwned,
	})
	var ce *gitrepo.ConflictError
	if !errors.As(err, &ce) || ce.Path != "README.md" || !errors.Is(err, gitops.ErrNotOwned) {
		t.Fatalf("err = %v, want a ConflictError on README.md", err)
	}
	if !strings.Contains(err.Error(), "README.md") {
		t.Errorf("the message does not name the file: %v", err)
	}
	if after := headCommit(t, f.clone(t, "main")).Hash; after != before {
		t.Errorf("main moved from %s to %s", before, after)
	}
}

// A pinned file fences a change: it lands while the file holds what it was planned on (absent
// included), and is a conflict once another writer changed it.
func TestPinnedFileFencesAChange(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.writer(t, f.srv.URL(repo))
	ctx := context.Background()
	change := func(file string, pinned map[string][]byte) error {
		_, err := w.Apply(ctx, gitops.Change{Files: map[string][]byte{file: owned(file + "\n")}, Pinned: pinned,
			Message: "fenced", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}})
		return err
	}
	if err := change("mpha/a.yaml", map[string][]byte{"mpha/pair.yaml": nil}); err != nil {
		t.Fatalf("pinned absent, absent: %v", err)
	}
	pair := owned("active: east\n")
	if _, err := w.Apply(ctx, gitops.Change{Files: map[string][]byte{"mpha/pair.yaml": pair}, Message: "pair",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}); err != nil {
		t.Fatal(err)
	}
	if err := change("mpha/b.yaml", map[string][]byte{"mpha/pair.yaml": pair}); err != nil {
		t.Fatalf("pinned as it is: %v", err)
	}
	before := headCommit(t, f.clone(t, "main")).Hash
	for name, pinned := range map[string][]byte{"absent, now present": nil, "another version": owned("active: west\n")} {
		err := change("mpha/c.yaml", map[string][]byte{"mpha/pair.yaml": pinned})
		var ce *gitrepo.ConflictError
		if !errors.As(err, &ce) || ce.Path != "mpha/pair.yaml" || !errors.Is(err, gitops.ErrChanged) {
			t.Errorf("%s: err = %v, want a ConflictError on mpha/pair.yaml", name, err)
		}
	}
	if after := headCommit(t, f.clone(t, "main")).Hash; after != before {
		t.Errorf("main moved from %s to %s", before, after)
	}
}

// A change for a new branch starts it from main; the next change on it builds on it; main stays.
func TestBranchForPullRequests(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.writer(t, f.srv.URL(repo))
	ctx := context.Background()
	main := headCommit(t, f.clone(t, "main")).Hash
	const br = "mpha/failover/ev-1"
	first, err := w.Apply(ctx, gitops.Change{Branch: br, Files: map[string][]byte{"mpha/pair.yaml": owned("active: west\n")},
		Message: "Fail over to west", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "failover"}}})
	if err != nil {
		t.Fatal(err)
	}
	second, err := w.Apply(ctx, gitops.Change{Branch: br, Files: map[string][]byte{"mpha/dns/floating.yaml": owned("to: mp2\n")},
		Message: "Move DNS", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "failover"}}})
	if err != nil {
		t.Fatal(err)
	}
	head := headCommit(t, f.clone(t, br))
	if head.Hash.String() != second.Commit || head.NumParents() != 1 || head.ParentHashes[0].String() != first.Commit {
		t.Errorf("branch head %s (parents %v), want %s on top of %s", head.Hash, head.ParentHashes, second.Commit, first.Commit)
	}
	p, _ := head.Parent(0)
	if p.ParentHashes[0] != main {
		t.Errorf("the branch does not start from main %s", main)
	}
	if headCommit(t, f.clone(t, "main")).Hash != main {
		t.Error("main moved")
	}
}

// While the server is unreachable the writer backs off and retries; when it returns, the change lands.
func TestServerOutageIsRetried(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	proxy := testrig.StartProxy(t, f.srv.HostPort())
	url := "http://" + proxy.Addr + "/" + repo
	proxy.Down()
	var retries atomic.Int64
	w := f.writer(t, url, func(o *gitrepo.Options) { o.OnRetry = func(string) { retries.Add(1) } })
	go func() {
		time.Sleep(time.Second)
		if err := proxy.Up(); err != nil {
			t.Error(err)
		}
	}()
	res, err := w.Apply(context.Background(), gitops.Change{Files: map[string][]byte{"mpha/x.yaml": owned("x: 1\n")},
		Message: "during an outage", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}})
	if err != nil {
		t.Fatalf("after the server came back: %v", err)
	}
	if res.Attempts < 2 {
		t.Errorf("%d attempts, want retries during the outage", res.Attempts)
	}
	if got := retries.Load(); got != int64(res.Attempts-1) {
		t.Errorf("OnRetry called %d times for %d attempts", got, res.Attempts)
	}
	if got, ok := fileAt(t, headCommit(t, f.clone(t, "main")), "mpha/x.yaml"); !ok || got != string(owned("x: 1\n")) {
		t.Errorf("the change did not land: %q", got)
	}

	// A server that stays away: a bounded number of attempts, then an error that says so.
	proxy.Down()
	short := f.writer(t, url, func(o *gitrepo.Options) {
		o.Backoff = wait.Backoff{Duration: 10 * time.Millisecond, Factor: 1, Steps: 3}
	})
	res, err = short.Apply(context.Background(), gitops.Change{Files: map[string][]byte{"mpha/y.yaml": owned("y\n")},
		Message: "lost", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}})
	if err == nil || !strings.Contains(err.Error(), "gave up after 3 attempts") || res.Attempts != 3 {
		t.Errorf("err = %v, attempts %d; want a give-up after 3", err, res.Attempts)
	}
	if strings.Contains(err.Error(), f.srv.Password) {
		t.Errorf("the error leaks the password: %v", err)
	}
}

// Commits are signed with the configured SSH key, verifiably.
func TestSignedCommits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "mpha")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := gitrepo.NewSigner(pem.EncodeToMemory(block), nil)
	if err != nil {
		t.Fatal(err)
	}
	w := f.writer(t, f.srv.URL(repo), func(o *gitrepo.Options) { o.Signer = signer })
	if _, err := w.Apply(context.Background(), gitops.Change{Files: map[string][]byte{"mpha/s.yaml": owned("s\n")},
		Message: "signed", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}); err != nil {
		t.Fatal(err)
	}
	c := headCommit(t, f.clone(t, "main"))
	payload := signedPayload(t, c)
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := signature.VerifySSHSignature(c.PGPSignature, payload, string(ssh.MarshalAuthorizedKey(sshPub))); err != nil {
		t.Errorf("the commit's signature does not verify: %v", err)
	}
}

func TestInvalidPathsAreRefused(t *testing.T) {
	t.Parallel()
	w, err := gitrepo.New(gitrepo.Options{URL: "https://git.invalid/x.git", Author: git.Signature{Name: "a", Email: "a@b"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"../escape", "/abs", "a/../../b", ".git/config", "a//b", ""} {
		_, err := w.Apply(context.Background(), gitops.Change{Files: map[string][]byte{p: []byte("x")}, Message: "m"})
		if !errors.Is(err, gitrepo.ErrInvalidPath) {
			t.Errorf("path %q: err = %v, want ErrInvalidPath", p, err)
		}
	}
	if _, err := gitrepo.NewAuth("https://bot:tok@git.invalid/x.git", nil); err == nil || strings.Contains(err.Error(), "tok") {
		t.Errorf("a URL with a password: err = %v, want a refusal that does not echo it", err)
	}
}

func TestRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.writer(t, f.srv.URL(repo))
	ctx := context.Background()
	res, err := w.Apply(ctx, gitops.Change{Files: map[string][]byte{
		"mpha/clusters/west/secrets/a.yaml": owned("a\n"), "mpha/clusters/west/secrets/b.yaml": owned("b\n"),
		"mpha/clusters/west/sealing-cert.pem": []byte("cert"),
	}, Message: "seed", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := w.Read(ctx, "mpha/clusters/west/secrets/", "mpha/clusters/west/sealing-cert.pem", "mpha/missing.yaml", "mpha/nodir/")
	if err != nil {
		t.Fatal(err)
	}
	if snap.Commit != res.Commit {
		t.Errorf("read at %s, want the head %s", snap.Commit, res.Commit)
	}
	want := map[string]string{
		"mpha/clusters/west/secrets/a.yaml": string(owned("a\n")), "mpha/clusters/west/secrets/b.yaml": string(owned("b\n")),
		"mpha/clusters/west/sealing-cert.pem": "cert",
	}
	got := map[string]string{}
	for k, v := range snap.Files {
		got[k] = string(v)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
	// "/**" reads the whole tree below a folder.
	deep, err := w.Read(ctx, "mpha/**", "mpha/nodir/**")
	if err != nil {
		t.Fatal(err)
	}
	if len(deep.Files) != 3 || string(deep.Files["mpha/clusters/west/secrets/b.yaml"]) != string(owned("b\n")) {
		t.Errorf("recursive read: %v", deep.Files)
	}
}

// signedPayload is what a commit's signature signs: the commit encoded without it.
func signedPayload(t *testing.T, c *object.Commit) []byte {
	t.Helper()
	enc := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(enc); err != nil {
		t.Fatal(err)
	}
	rd, err := enc.Reader()
	if err != nil {
		t.Fatal(err)
	}
	payload, err := io.ReadAll(rd)
	if err != nil {
		t.Fatal(err)
	}
	return payload
}

// Branches lists the branches under a prefix with files read at each head, and nothing else.
func TestBranches(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	w := f.writer(t, f.srv.URL(repo))
	ctx := context.Background()
	write := func(branch, content string) gitrepo.Result {
		t.Helper()
		r, err := w.Apply(ctx, gitops.Change{Branch: branch, Files: map[string][]byte{"mpha/pair.yaml": owned(content)},
			Message: "on " + branch, Trailers: []trailer.Trailer{{Key: trailer.Event, Value: "ev"}}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	write("main", "epoch: 1\n")
	b1 := write("mpha/failover/ev-1", "epoch: 2\n")
	b2 := write("mpha/failover/ev-2", "epoch: 3\n")
	write("mpha/drill/ev-3", "epoch: 9\n")
	got, err := w.Branches(ctx, "mpha/failover/", "mpha/pair.yaml", "mpha/absent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("branches: %+v", got)
	}
	for i, want := range []struct{ name, commit, pair string }{
		{"mpha/failover/ev-1", b1.Commit, "epoch: 2\n"}, {"mpha/failover/ev-2", b2.Commit, "epoch: 3\n"},
	} {
		b := got[i]
		if b.Name != want.name || b.Commit != want.commit || string(b.Files["mpha/pair.yaml"]) != string(owned(want.pair)) || len(b.Files) != 1 {
			t.Errorf("branch %d: %s %s %q, want %s %s %q", i, b.Name, b.Commit, b.Files, want.name, want.commit, want.pair)
		}
		if !strings.Contains(b.Message, "Mpha-Event: ev") {
			t.Errorf("branch %s message %q lacks its trailer", b.Name, b.Message)
		}
	}
	none, err := w.Branches(ctx, "nothing/")
	if err != nil || len(none) != 0 {
		t.Errorf("no branch under a prefix: %v, %v", none, err)
	}
}
