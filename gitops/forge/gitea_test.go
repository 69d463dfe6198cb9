package forge_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/go-git/go-billy/v5/util"
	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// giteaRepo is a repository on a real Gitea with branches pushed to it.
type giteaRepo struct {
	g           *testrig.Gitea
	sdk         *gitea.Client
	owner, name string
}

// newGiteaRepo creates owner/name (owner is the admin or an organisation it creates) with a
// README on main, and pushes each branch of files with one commit on top of main that adds
// the file named.
func newGiteaRepo(t testing.TB, g *testrig.Gitea, owner, name string, files map[string]string) *giteaRepo {
	t.Helper()
	sdk, err := gitea.NewClient(g.URL, gitea.SetToken(g.Token))
	if err != nil {
		t.Fatal(err)
	}
	opt := gitea.CreateRepoOption{Name: name, AutoInit: true, DefaultBranch: "main", Readme: "Default"}
	if owner == g.Admin {
		_, _, err = sdk.CreateRepo(opt)
	} else {
		if _, _, err = sdk.CreateOrg(gitea.CreateOrgOption{Name: owner}); err != nil {
			t.Fatal(err)
		}
		_, _, err = sdk.CreateOrgRepo(owner, opt)
	}
	if err != nil {
		t.Fatal(err)
	}
	pushBranches(t, g, g.CloneURL(owner, name), files)
	return &giteaRepo{g: g, sdk: sdk, owner: owner, name: name}
}

func pushBranches(t testing.TB, g *testrig.Gitea, url string, files map[string]string) {
	t.Helper()
	if len(files) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	auth := &githttp.BasicAuth{Username: g.Admin, Password: g.Token}
	r, err := gogit.PlainCloneContext(ctx, t.TempDir(), false, &gogit.CloneOptions{URL: url, Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	var specs []config.RefSpec
	for b, file := range files {
		ref := plumbing.NewBranchReferenceName(b)
		if err := wt.Checkout(&gogit.CheckoutOptions{Branch: plumbing.Main, Force: true}); err != nil {
			t.Fatal(err)
		}
		if err := wt.Checkout(&gogit.CheckoutOptions{Branch: ref, Create: true}); err != nil {
			t.Fatal(err)
		}
		if err := util.WriteFile(wt.Filesystem, file, []byte("branch: "+b+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := wt.Add(file); err != nil {
			t.Fatal(err)
		}
		sig := &object.Signature{Name: "mpha", Email: "mpha@mpha.invalid", When: time.Now()}
		if _, err := wt.Commit("change on "+b, &gogit.CommitOptions{Author: sig}); err != nil {
			t.Fatal(err)
		}
		specs = append(specs, config.RefSpec(ref+":"+ref))
	}
	if err := r.PushContext(ctx, &gogit.PushOptions{Auth: auth, RefSpecs: specs}); err != nil {
		t.Fatal(err)
	}
}

func (r *giteaRepo) forge(t *testing.T) forge.Forge {
	t.Helper()
	f, err := forge.New(context.Background(), forge.Options{
		Kind: forge.KindGitea, URL: r.g.URL, Token: r.g.Token, Repository: r.owner + "/" + r.name,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (r *giteaRepo) pullURL(n int) string {
	return r.g.URL + r.owner + "/" + r.name + "/pulls/" + strconv.Itoa(n)
}

// The whole life of a failover pull request on a real Gitea, in order: each step depends on
// the one before.
func TestGiteaPullRequestLife(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea")
	}
	t.Parallel()
	g := testrig.StartGitea(t)
	const ev1, ev2, other = "mpha/failover/ev-1", "mpha/failover/ev-2", "feature/docs"
	r := newGiteaRepo(t, g, g.Admin, "fleet", map[string]string{
		ev1: "mpha/ev-1.yaml", ev2: "mpha/ev-2.yaml", other: "docs/failover.md",
	})
	f := r.forge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	proposal := forge.Proposal{Branch: ev1, Base: "main", Title: "Fail over tsb-mp to west", Body: "preflight: pass\n"}
	first, err := f.Propose(ctx, proposal)
	if err != nil {
		t.Fatal(err)
	}
	raw, _, err := r.sdk.GetPullRequest(r.owner, r.name, int64(first.Number))
	if err != nil {
		t.Fatal(err)
	}
	want := forge.PullRequest{Number: first.Number, URL: r.pullURL(first.Number), Branch: ev1, Base: "main",
		Head: r.branchHead(t, ev1), Title: proposal.Title, State: forge.StateOpen}
	if diff := cmp.Diff(want, first); diff != "" || first.Number == 0 {
		t.Fatalf("Propose (-want +got):\n%s", diff)
	}
	if raw.Body != proposal.Body {
		t.Errorf("body on the forge = %q, want %q", raw.Body, proposal.Body)
	}

	t.Run("proposing again returns the same pull request", func(t *testing.T) {
		again := proposal
		again.Title = "a redelivery may render another title"
		got, err := f.Propose(ctx, again)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(first, got); diff != "" {
			t.Errorf("second Propose (-first +second):\n%s", diff)
		}
		if n := r.count(t, ev1); n != 1 {
			t.Errorf("%d pull requests from %s, want 1", n, ev1)
		}
	})

	otherPR, err := f.Propose(ctx, forge.Proposal{Branch: other, Base: "main", Title: "Docs"})
	if err != nil {
		t.Fatal(err)
	}
	if otherPR.Number == first.Number {
		t.Fatalf("another branch got the same pull request %d", first.Number)
	}
	t.Run("open lists only the prefix", func(t *testing.T) {
		got, err := f.Open(ctx, "main", "mpha/failover/")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]forge.PullRequest{first}, got); diff != "" {
			t.Errorf("Open (-want +got):\n%s", diff)
		}
		if got, err := f.Open(ctx, "release", "mpha/failover/"); err != nil || len(got) != 0 {
			t.Errorf("Open into another base = %v, %v; want none", got, err)
		}
	})

	t.Run("merge", func(t *testing.T) {
		// Right after creation Gitea may answer 405 "try again later": Merge retries.
		if err := f.Merge(ctx, first.Number, "Fail over tsb-mp to west\n\nMpha-Event: ev-1"); err != nil {
			t.Fatal(err)
		}
		got, err := f.Get(ctx, first.Number)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != forge.StateMerged {
			t.Fatalf("after Merge the state is %q", got.State)
		}
		r.assertMergeCommit(t, first.Number)
		if err := f.Merge(ctx, first.Number, "again"); err != nil {
			t.Errorf("merging a merged pull request: %v", err)
		}
		open, err := f.Open(ctx, "main", "mpha/failover/")
		if err != nil || len(open) != 0 {
			t.Errorf("Open after the merge = %v, %v; want none", open, err)
		}
		// A redelivery after the merge gets the merged pull request, not a new one.
		again, err := f.Propose(ctx, proposal)
		if err != nil {
			t.Fatal(err)
		}
		if again.Number != first.Number || again.State != forge.StateMerged {
			t.Errorf("Propose after the merge = %+v, want #%d merged", again, first.Number)
		}
	})

	t.Run("closed without merging", func(t *testing.T) {
		pr, err := f.Propose(ctx, forge.Proposal{Branch: ev2, Base: "main", Title: "Fail over again"})
		if err != nil {
			t.Fatal(err)
		}
		closed := gitea.StateClosed
		if _, _, err := r.sdk.EditPullRequest(r.owner, r.name, int64(pr.Number), gitea.EditPullRequestOption{State: &closed}); err != nil {
			t.Fatal(err)
		}
		got, err := f.Get(ctx, pr.Number)
		if err != nil {
			t.Fatal(err)
		}
		if got.State != forge.StateClosed {
			t.Errorf("state = %q, want closed", got.State)
		}
		if open, err := f.Open(ctx, "main", "mpha/failover/"); err != nil || len(open) != 0 {
			t.Errorf("Open = %v, %v; want none", open, err)
		}
		if err := f.Merge(ctx, pr.Number, "no"); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("Merge of a closed pull request = %v, want an error saying closed", err)
		}
		// A closed one does not count as proposed: a new one is opened.
		reopened, err := f.Propose(ctx, forge.Proposal{Branch: ev2, Base: "main", Title: "Fail over again"})
		if err != nil {
			t.Fatal(err)
		}
		if reopened.Number == pr.Number || reopened.State != forge.StateOpen {
			t.Errorf("Propose after close = %+v, want a new open pull request", reopened)
		}
	})

	t.Run("errors", func(t *testing.T) {
		if _, err := f.Propose(ctx, forge.Proposal{Branch: "mpha/failover/missing", Base: "main", Title: "x"}); err == nil {
			t.Error("Propose for a branch that does not exist succeeded")
		}
		if _, err := f.Propose(ctx, forge.Proposal{Branch: "main", Base: "main", Title: "x"}); err == nil {
			t.Error("Propose from main into main succeeded")
		}
		if _, err := f.Get(ctx, 999); err == nil {
			t.Error("Get of pull request 999 succeeded")
		}
		if err := f.Merge(ctx, 999, "x"); err == nil {
			t.Error("Merge of pull request 999 succeeded")
		}
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := f.Open(cancelled, "main", ""); !errors.Is(err, context.Canceled) {
			t.Errorf("Open with a cancelled context = %v, want context.Canceled", err)
		}
	})
}

// branchHead is the commit at the head of branch, as Gitea reports it.
func (r *giteaRepo) branchHead(t *testing.T, branch string) string {
	t.Helper()
	b, _, err := r.sdk.GetRepoBranch(r.owner, r.name, branch)
	if err != nil || b.Commit == nil || b.Commit.ID == "" {
		t.Fatalf("branch %s: %+v, %v", branch, b, err)
	}
	return b.Commit.ID
}

// A commit status gates the merge on a protected branch: with mpha/preflight required, Gitea
// refuses the merge while the status is missing or failed, and merges once it is success. The
// statuses read back as set, the description cut to GitHub's 140 characters.
func TestGiteaStatusGatesTheMerge(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea")
	}
	t.Parallel()
	g := testrig.StartGitea(t)
	const branch = "mpha/failover/ev-gated"
	r := newGiteaRepo(t, g, g.Admin, "fleet", map[string]string{branch: "mpha/ev.yaml"})
	if _, _, err := r.sdk.CreateBranchProtection(r.owner, r.name, gitea.CreateBranchProtectionOption{BranchName: "main",
		EnablePush: true, EnableStatusCheck: true, StatusCheckContexts: []string{"mpha/preflight"}}); err != nil {
		t.Fatal(err)
	}
	f := r.forge(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pr, err := f.Propose(ctx, forge.Proposal{Branch: branch, Base: "main", Title: "Fail over tsb-mp to west"})
	if err != nil {
		t.Fatal(err)
	}
	refused := func(what string) {
		t.Helper()
		mctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		if err := f.Merge(mctx, pr.Number, "merge"); err == nil {
			t.Fatalf("%s: Gitea merged", what)
		}
		if got, err := f.Get(ctx, pr.Number); err != nil || got.State != forge.StateOpen {
			t.Fatalf("%s: the pull request is %+v, %v; want open", what, got, err)
		}
	}
	refused("without a status")
	long := strings.Repeat("evidence ", 30)
	if err := f.SetStatus(ctx, pr.Head, forge.CommitStatus{Context: "mpha/preflight", State: forge.StatusFailure, Description: long}); err != nil {
		t.Fatal(err)
	}
	refused("with the status failure")
	st, _, err := r.sdk.GetCombinedStatus(r.owner, r.name, pr.Head)
	if err != nil || len(st.Statuses) != 1 || st.Statuses[0].Context != "mpha/preflight" || st.Statuses[0].State != gitea.StatusFailure ||
		len([]rune(st.Statuses[0].Description)) != 140 || !strings.HasSuffix(st.Statuses[0].Description, "…") {
		t.Fatalf("the status on Gitea: %+v, %v", st, err)
	}
	if err := f.SetStatus(ctx, pr.Head, forge.CommitStatus{Context: "mpha/preflight", State: forge.StatusSuccess, Description: "preflight holds"}); err != nil {
		t.Fatal(err)
	}
	if err := f.Merge(ctx, pr.Number, "merge"); err != nil {
		t.Fatalf("merging with the status success: %v", err)
	}
	if err := f.SetStatus(ctx, pr.Head, forge.CommitStatus{Context: "mpha/preflight", State: "green"}); err == nil {
		t.Error("a state no forge has was accepted")
	}
}

func (r *giteaRepo) count(t *testing.T, branch string) int {
	t.Helper()
	prs, _, err := r.sdk.ListRepoPullRequests(r.owner, r.name, gitea.ListPullRequestsOptions{State: gitea.StateAll})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, pr := range prs {
		if pr.Head != nil && pr.Head.Ref == branch {
			n++
		}
	}
	return n
}

// assertMergeCommit checks that main now is a merge commit (two parents) of pull request n.
func (r *giteaRepo) assertMergeCommit(t *testing.T, n int) {
	t.Helper()
	pr, _, err := r.sdk.GetPullRequest(r.owner, r.name, int64(n))
	if err != nil {
		t.Fatal(err)
	}
	main, _, err := r.sdk.GetRepoBranch(r.owner, r.name, "main")
	if err != nil {
		t.Fatal(err)
	}
	if pr.MergedCommitID == nil || main.Commit.ID != *pr.MergedCommitID {
		t.Fatalf("main is at %s, want the merge commit of #%d", main.Commit.ID, n)
	}
	c, _, err := r.sdk.GetSingleCommit(r.owner, r.name, main.Commit.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Parents) != 2 {
		t.Errorf("main's head has %d parents, want 2 (a merge commit)", len(c.Parents))
	}
}

// A repository owned by an organisation works like one owned by a user; listing pages through
// every pull request; merges right after proposing succeed (Gitea's 405 "try again later" is
// retried) and a conflicting one fails.
func TestGiteaOrganisationPagingAndMerges(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea")
	}
	t.Parallel()
	g := testrig.StartGitea(t)
	branches := []string{"mpha/failover/a", "mpha/failover/b", "mpha/failover/c"}
	const clash = "mpha/failover/clash"
	r := newGiteaRepo(t, g, "platform", "fleet", map[string]string{
		branches[0]: "mpha/a.yaml", branches[1]: "mpha/b.yaml", branches[2]: "mpha/c.yaml", clash: "mpha/a.yaml",
	})
	f := r.forge(t)
	forge.SetGiteaPageSize(f, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var want []forge.PullRequest
	for _, b := range branches {
		pr, err := f.Propose(ctx, forge.Proposal{Branch: b, Base: "main", Title: "Fail over " + b})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, pr)
	}
	// The first pull request is on the last page (newest first): Propose must still find it.
	again, err := f.Propose(ctx, forge.Proposal{Branch: branches[0], Base: "main", Title: "again"})
	if err != nil || again.Number != want[0].Number {
		t.Errorf("second Propose = %+v, %v; want #%d", again, err, want[0].Number)
	}
	got, err := f.Open(ctx, "main", "mpha/failover/")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Open over three pages (-want +got):\n%s", diff)
	}
	if want[0].URL != r.pullURL(want[0].Number) {
		t.Errorf("URL = %s, want %s", want[0].URL, r.pullURL(want[0].Number))
	}

	for _, b := range branches[1:] {
		pr, err := f.Propose(ctx, forge.Proposal{Branch: b, Base: "main", Title: "unused"})
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Merge(ctx, pr.Number, "merge "+b); err != nil {
			t.Fatalf("merging %s: %v", b, err)
		}
	}
	if err := f.Merge(ctx, want[0].Number, "merge a"); err != nil {
		t.Fatalf("merging %s: %v", branches[0], err)
	}
	// clash adds mpha/a.yaml too, with other content: it conflicts now.
	pr, err := f.Propose(ctx, forge.Proposal{Branch: clash, Base: "main", Title: "Clash"})
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	err = f.Merge(short, pr.Number, "no")
	if err == nil {
		t.Fatal("merging a conflicting pull request succeeded")
	}
	t.Logf("conflict: %v", err)
	if got, err := f.Get(ctx, pr.Number); err != nil || got.State != forge.StateOpen {
		t.Errorf("after the failed merge: %+v, %v; want it open", got, err)
	}
}

// A wrong token or repository fails in New, and the error never shows the token.
func TestGiteaNewErrors(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Gitea")
	}
	t.Parallel()
	g := testrig.StartGitea(t)
	newGiteaRepo(t, g, g.Admin, "fleet", nil)
	ctx := context.Background()
	const wrong = "0123456789abcdef0123456789abcdef01234567"
	_, err := forge.New(ctx, forge.Options{Kind: forge.KindGitea, URL: g.URL, Token: wrong, Repository: g.Admin + "/fleet"})
	if err == nil {
		t.Fatal("New with a wrong token succeeded")
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error shows the token: %v", err)
	}
	t.Logf("wrong token: %v", err)
	_, err = forge.New(ctx, forge.Options{Kind: forge.KindGitea, URL: g.URL, Token: g.Token, Repository: g.Admin + "/nope"})
	if !errors.Is(err, forge.ErrNotFound) {
		t.Errorf("New for a missing repository = %v, want ErrNotFound", err)
	}
	if err != nil && strings.Contains(err.Error(), g.Token) {
		t.Errorf("error shows the token: %v", err)
	}
}
