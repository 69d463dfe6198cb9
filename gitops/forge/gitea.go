package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"code.gitea.io/sdk/gitea"
	ggpgitea "github.com/fluxcd/go-git-providers/gitea"
	"github.com/fluxcd/go-git-providers/gitprovider"
)

// giteaDialect reads the Gitea SDK's objects and lists through its client.
type giteaDialect struct {
	sdk         *gitea.Client
	owner, name string
	pageSize    int
	// mu serialises calls: the SDK takes its context from the shared client (SetContext), not
	// per call, and go-git-providers passes none.
	mu sync.Mutex
}

// newGitea asks the server for its version (the SDK does, in gitea.NewClient), so it needs
// the network.
func newGitea(o Options) (gitprovider.Client, dialect, error) {
	gp, err := ggpgitea.NewClient(o.Token, gitprovider.WithDomain(o.domain("")), o.transportOption())
	if err != nil {
		return nil, nil, err
	}
	sdk, ok := gp.Raw().(*gitea.Client)
	if !ok {
		return nil, nil, fmt.Errorf("go-git-providers returned a %T for Gitea", gp.Raw())
	}
	owner, name := o.split()
	return gp, &giteaDialect{sdk: sdk, owner: owner, name: name, pageSize: pageSize}, nil
}

func (d *giteaDialect) call(ctx context.Context, fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sdk.SetContext(ctx)
	defer d.sdk.SetContext(context.Background())
	return fn()
}

func (d *giteaDialect) convert(apiObject any) (PullRequest, error) {
	pr, ok := apiObject.(*gitea.PullRequest)
	if !ok {
		return PullRequest{}, fmt.Errorf("go-git-providers returned a %T for a Gitea pull request", apiObject)
	}
	return giteaPullRequest(pr), nil
}

func giteaPullRequest(pr *gitea.PullRequest) PullRequest {
	state := StateOpen
	if pr.State == gitea.StateClosed {
		state = StateClosed
		if pr.HasMerged {
			state = StateMerged
		}
	}
	out := PullRequest{Number: int(pr.Index), URL: pr.HTMLURL, Title: pr.Title, State: state}
	if pr.Head != nil {
		out.Branch, out.Head = pr.Head.Ref, pr.Head.Sha
	}
	if pr.Base != nil {
		out.Base = pr.Base.Ref
	}
	return out
}

// forBranch lists every pull request of the repository: the Gitea SDK filters by neither head
// nor base branch.
func (d *giteaDialect) forBranch(ctx context.Context, branch string) ([]PullRequest, error) {
	return d.list(ctx, gitea.StateAll, func(pr *gitea.PullRequest) bool {
		return pr.Head != nil && pr.Head.Ref == branch && pr.Base != nil && pr.Head.RepoID == pr.Base.RepoID
	})
}

// byBaseHead asks Gitea for the pull request of head into base (GET /pulls/{base}/{head}):
// listing them all costs a page per 50 pull requests, and a fleet's repository gathers them.
func (d *giteaDialect) byBaseHead(ctx context.Context, base, head string) (PullRequest, bool, error) {
	var (
		pr   *gitea.PullRequest
		resp *gitea.Response
	)
	err := d.call(ctx, func() error {
		var err error
		pr, resp, err = d.sdk.GetPullRequestByBaseHead(d.owner, d.name, base, head)
		return err
	})
	switch {
	case resp != nil && resp.StatusCode == http.StatusNotFound:
		return PullRequest{}, false, nil
	case err != nil:
		return PullRequest{}, false, withStatus(httpResponse(resp), err)
	case pr.Head == nil || pr.Base == nil || pr.Head.RepoID != pr.Base.RepoID:
		return PullRequest{}, false, errors.New("a pull request from another repository's branch")
	}
	return giteaPullRequest(pr), true, nil
}

func (d *giteaDialect) open(ctx context.Context, base string) ([]PullRequest, error) {
	return d.list(ctx, gitea.StateOpen, func(pr *gitea.PullRequest) bool {
		return pr.Base != nil && pr.Base.Ref == base
	})
}

func (d *giteaDialect) list(ctx context.Context, state gitea.StateType, keep func(*gitea.PullRequest) bool) ([]PullRequest, error) {
	opts := gitea.ListPullRequestsOptions{State: state, ListOptions: gitea.ListOptions{PageSize: d.pageSize}}
	return paginate(ctx, func(page int) ([]PullRequest, int, error) {
		opts.Page = page
		var (
			prs  []*gitea.PullRequest
			resp *gitea.Response
		)
		err := d.call(ctx, func() error {
			var err error
			prs, resp, err = d.sdk.ListRepoPullRequests(d.owner, d.name, opts)
			return err
		})
		if err != nil {
			return nil, 0, withStatus(httpResponse(resp), err)
		}
		var out []PullRequest
		for _, pr := range prs {
			if keep(pr) {
				out = append(out, giteaPullRequest(pr))
			}
		}
		return out, resp.NextPage, nil
	})
}

// merge calls the SDK: through go-git-providers a refusal becomes the plain error "merge
// failed: 405 Method Not Allowed" (the SDK drops the body), so the status would be lost.
func (d *giteaDialect) merge(_ context.Context, _ gitprovider.PullRequestClient, number int, message string) error {
	merged, resp, err := d.sdk.MergePullRequest(d.owner, d.name, int64(number), gitea.MergePullRequestOption{
		Style: gitea.MergeStyleMerge, Message: message,
	})
	switch {
	case err != nil:
		return withStatus(httpResponse(resp), err)
	case !merged:
		// 405 is both "being checked" and "conflicts": Gitea does not tell them apart.
		return &statusError{code: resp.StatusCode, err: fmt.Errorf("forge answered %s (not mergeable yet, or conflicting)", resp.Status)}
	}
	return nil
}

func (d *giteaDialect) setStatus(_ context.Context, sha string, s CommitStatus) error {
	_, resp, err := d.sdk.CreateStatus(d.owner, d.name, sha, gitea.CreateStatusOption{
		State: gitea.StatusState(s.State), TargetURL: s.TargetURL, Description: s.Description, Context: s.Context,
	})
	return withStatus(httpResponse(resp), err)
}

func (d *giteaDialect) approve(_ context.Context, number int, head, body string) error {
	_, resp, err := d.sdk.CreatePullReview(d.owner, d.name, int64(number), gitea.CreatePullReviewOptions{
		State: gitea.ReviewStateApproved, Body: body, CommitID: head,
	})
	return withStatus(httpResponse(resp), err)
}

func httpResponse(resp *gitea.Response) *http.Response {
	if resp == nil {
		return nil
	}
	return resp.Response
}
