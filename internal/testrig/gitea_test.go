package testrig_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/go-git/go-billy/v5/util"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// The forge takes a pushed branch, opens a pull request for it and merges it into main.
func TestGiteaPullRequest(t *testing.T) {
	integration(t)
	t.Parallel()
	g := testrig.StartGitea(t)
	c, err := gitea.NewClient(g.URL, gitea.SetToken(g.Token))
	if err != nil {
		t.Fatalf("SDK client (the server must report a version): %v", err)
	}
	if _, _, err := c.CreateRepo(gitea.CreateRepoOption{Name: "fleet", AutoInit: true, DefaultBranch: "main", Readme: "Default"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	auth := &githttp.BasicAuth{Username: g.Admin, Password: g.Token}
	dir := t.TempDir()
	r, err := gogit.PlainCloneContext(ctx, dir, false, &gogit.CloneOptions{URL: g.CloneURL(g.Admin, "fleet"), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	wt, _ := r.Worktree()
	branch := plumbing.NewBranchReferenceName("mpha/failover/ev-1")
	if err := wt.Checkout(&gogit.CheckoutOptions{Branch: branch, Create: true}); err != nil {
		t.Fatal(err)
	}
	if err := util.WriteFile(wt.Filesystem, "mpha/pair.yaml", []byte("active: west\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Add("mpha/pair.yaml"); err != nil {
		t.Fatal(err)
	}
	if _, err := wt.Commit("fail over to west", &gogit.CommitOptions{Author: &object.Signature{Name: "mpha", Email: "mpha@mpha.invalid", When: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	if err := r.PushContext(ctx, &gogit.PushOptions{Auth: auth, RefSpecs: []config.RefSpec{config.RefSpec(branch + ":" + branch)}}); err != nil {
		t.Fatalf("push over HTTP with the token: %v", err)
	}

	pr, _, err := c.CreatePullRequest(g.Admin, "fleet", gitea.CreatePullRequestOption{
		Head: branch.Short(), Base: "main", Title: "Fail over tsb-mp to west", Body: "preflight: pass",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The forge checks mergeability asynchronously: until then a merge answers 405.
	testrig.Eventually(t, "the PR to merge", time.Minute, func(context.Context) error {
		merged, _, err := c.MergePullRequest(g.Admin, "fleet", pr.Index, gitea.MergePullRequestOption{Style: gitea.MergeStyleMerge})
		if err == nil && !merged {
			err = errors.New("not merged")
		}
		return err
	})
	got, _, err := c.GetPullRequest(g.Admin, "fleet", pr.Index)
	if err != nil {
		t.Fatal(err)
	}
	if !got.HasMerged || got.MergedCommitID == nil {
		t.Fatalf("PR %d: merged=%v", pr.Index, got.HasMerged)
	}
	main, _, err := c.GetRepoBranch(g.Admin, "fleet", "main")
	if err != nil {
		t.Fatal(err)
	}
	if main.Commit.ID != *got.MergedCommitID {
		t.Errorf("main is at %s, want the merge commit %s", main.Commit.ID, *got.MergedCommitID)
	}
}
