package testrig

import (
	"bufio"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fluxcd/pkg/gittestserver"
	"github.com/go-git/go-billy/v5/memfs"
	"github.com/go-git/go-billy/v5/util"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/memory"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// GitServer is Flux's gittestserver (git's own upload-pack/receive-pack behind smart HTTP) in the
// test binary, with HTTP basic auth. Pushing to a repository that does not exist creates it.
type GitServer struct {
	Username, Password string

	srv *gittestserver.GitServer
}

// StartGitServer starts the server on a free loopback port; it stops when t ends.
func StartGitServer(t testing.TB) *GitServer {
	t.Helper()
	systemBin(t, "git") // gitkit execs git-upload-pack and git-receive-pack
	g := &GitServer{Username: "mpha", Password: randomHex(t, 12)}
	g.srv = gittestserver.NewGitServer(t.TempDir()).Auth(g.Username, g.Password).AutoCreate()
	if err := g.srv.StartHTTP(); err != nil {
		t.Fatalf("git server: %v", err)
	}
	t.Cleanup(g.srv.StopHTTP)
	return g
}

// URL returns the clone URL of repo ("org/name.git"), without credentials.
func (g *GitServer) URL(repo string) string { return g.srv.HTTPAddress() + "/" + repo }

// HostPort is the server's host:port, for a Proxy in front of it.
func (g *GitServer) HostPort() string { return strings.TrimPrefix(g.srv.HTTPAddress(), "http://") }

// Auth returns go-git's basic auth for the server.
func (g *GitServer) Auth() *githttp.BasicAuth {
	return &githttp.BasicAuth{Username: g.Username, Password: g.Password}
}

// Root is the directory holding the bare repositories.
func (g *GitServer) Root() string { return g.srv.Root() }

// CreateRepo creates repo with HEAD on branch and pushes one commit holding files (path → content)
// over HTTP. It returns the commit's hash.
func (g *GitServer) CreateRepo(t testing.TB, repo, branch string, files map[string]string) string {
	t.Helper()
	ref := plumbing.NewBranchReferenceName(branch)
	// A bare repo whose HEAD names the branch, so clones without a ref find it.
	if _, err := gogit.PlainInitWithOptions(filepath.Join(g.Root(), repo), &gogit.PlainInitOptions{
		Bare: true, InitOptions: gogit.InitOptions{DefaultBranch: ref},
	}); err != nil {
		t.Fatalf("creating %s: %v", repo, err)
	}
	fs := memfs.New()
	r, err := gogit.InitWithOptions(memory.NewStorage(), fs, gogit.InitOptions{DefaultBranch: ref})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	for p, content := range files {
		if err := util.WriteFile(fs, p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := wt.AddWithOptions(&gogit.AddOptions{All: true}); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "rig", Email: "rig@mpha.invalid", When: time.Now()}
	h, err := wt.Commit("initial commit", &gogit.CommitOptions{Author: sig, AllowEmptyCommits: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{g.URL(repo)}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	spec := config.RefSpec(ref.String() + ":" + ref.String())
	if err := r.PushContext(ctx, &gogit.PushOptions{Auth: g.Auth(), RefSpecs: []config.RefSpec{spec}}); err != nil {
		t.Fatalf("pushing %s: %v", repo, err)
	}
	return h.String()
}

// CreateLargeRepo creates repo on branch main with files files and commits commits (the first adds
// every file, each later one changes one), through git fast-import: a repository of realistic
// size for benchmarks, made in seconds.
func (g *GitServer) CreateLargeRepo(t testing.TB, repo string, files, commits int) {
	t.Helper()
	bare := filepath.Join(g.Root(), repo)
	if out, err := exec.Command("git", "init", "--bare", "--initial-branch=main", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	cmd := exec.Command("git", "-C", bare, "fast-import", "--quiet")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(in)
	ts := time.Now().Add(-time.Duration(commits) * time.Minute).Unix()
	blob := func(path, content string) {
		fmt.Fprintf(w, "M 644 inline %s\ndata %d\n%s\n", path, len(content), content)
	}
	for c := range commits {
		msg := fmt.Sprintf("commit %d", c)
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter rig <rig@mpha.invalid> %d +0000\ndata %d\n%s\n", ts+int64(c)*60, len(msg), msg)
		if c == 0 {
			for f := range files {
				blob(fmt.Sprintf("apps/team-%03d/svc-%04d.yaml", f%100, f), fmt.Sprintf("kind: ConfigMap\nname: svc-%d\n", f))
			}
			continue
		}
		blob(fmt.Sprintf("apps/team-%03d/svc-%04d.yaml", c%100, c%files), fmt.Sprintf("kind: ConfigMap\nrev: %d\n", c))
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("git fast-import: %v", err)
	}
}

// StartSSH serves the repositories over SSH as well (any client key is accepted). It returns the
// base URL (ssh://git@127.0.0.1:PORT) and a known_hosts line for the server's host key.
func (g *GitServer) StartSSH(t testing.TB) (string, []byte) {
	t.Helper()
	keys := t.TempDir()
	g.srv.KeyDir(keys)
	if err := g.srv.ListenSSH(); err != nil {
		t.Fatalf("git server over SSH: %v", err)
	}
	go func() { _ = g.srv.StartSSH() }() // serves until StopSSH
	t.Cleanup(func() { _ = g.srv.StopSSH() })
	pubs, _ := filepath.Glob(filepath.Join(keys, "*.pub"))
	if len(pubs) != 1 {
		t.Fatalf("git server over SSH: want one host key in %s, found %v", keys, pubs)
	}
	b, err := os.ReadFile(pubs[0])
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(b)
	if err != nil {
		t.Fatal(err)
	}
	base := g.srv.SSHAddress()
	host := strings.TrimPrefix(base, "ssh://git@")
	return base, []byte(knownhosts.Line([]string{knownhosts.Normalize(host)}, pub) + "\n")
}

// Credentials are the server's basic-auth credentials as a Git credentials Secret holds them
// (Flux's keys: username, password).
func (g *GitServer) Credentials() map[string][]byte {
	return map[string][]byte{"username": []byte(g.Username), "password": []byte(g.Password)}
}

// AuthURL is repo's clone URL with the server's credentials in it, for the git CLI.
func (g *GitServer) AuthURL(repo string) string {
	u, err := url.Parse(g.URL(repo))
	if err != nil {
		panic(err) // the server's own address
	}
	u.User = url.UserPassword(g.Username, g.Password)
	return u.String()
}

// RunGit runs the git CLI in dir ("" = the current directory) and returns its standard output;
// a failure fails t with git's output.
func RunGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	if dir != "" {
		args = append([]string{"-C", dir}, args...)
	}
	cmd := exec.Command("git", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
