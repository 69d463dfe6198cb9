package testrig_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// A commit pushed with go-git over HTTP comes back in a fresh clone; without credentials the
// server refuses.
func TestGitServerPushAndClone(t *testing.T) {
	integration(t)
	t.Parallel()
	g := testrig.StartGitServer(t)
	g.CreateRepo(t, "org/fleet.git", "main", map[string]string{"mpha/pair.yaml": "active: east\n"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	dir := t.TempDir()
	r, err := gogit.PlainCloneContext(ctx, dir, false, &gogit.CloneOptions{URL: g.URL("org/fleet.git"), Auth: g.Auth()})
	if err != nil {
		t.Fatalf("clone (HEAD must name main): %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "mpha", "pair.yaml"), []byte("active: west\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	wt, _ := r.Worktree()
	if _, err := wt.Add("mpha/pair.yaml"); err != nil {
		t.Fatal(err)
	}
	sig := &object.Signature{Name: "t", Email: "t@mpha.invalid", When: time.Now()}
	h, err := wt.Commit("fail over to west", &gogit.CommitOptions{Author: sig})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PushContext(ctx, &gogit.PushOptions{Auth: g.Auth()}); err != nil {
		t.Fatalf("push: %v", err)
	}

	again := t.TempDir()
	r2, err := gogit.PlainCloneContext(ctx, again, false, &gogit.CloneOptions{
		URL: g.URL("org/fleet.git"), Auth: g.Auth(), ReferenceName: plumbing.NewBranchReferenceName("main"), SingleBranch: true, Depth: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	head, _ := r2.Head()
	if head.Hash() != h {
		t.Errorf("cloned HEAD %s, want the pushed %s", head.Hash(), h)
	}
	if b, _ := os.ReadFile(filepath.Join(again, "mpha", "pair.yaml")); string(b) != "active: west\n" {
		t.Errorf("cloned pair.yaml = %q", b)
	}

	_, err = gogit.PlainCloneContext(ctx, t.TempDir(), false, &gogit.CloneOptions{URL: g.URL("org/fleet.git")})
	if !errors.Is(err, transport.ErrAuthenticationRequired) {
		t.Errorf("anonymous clone: err = %v, want %v", err, transport.ErrAuthenticationRequired)
	}
}
