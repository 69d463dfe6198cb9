package testrig

import (
	"context"
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
