package forge

import (
	"context"
	"fmt"

	ggpgithub "github.com/fluxcd/go-git-providers/github"
	"github.com/fluxcd/go-git-providers/gitprovider"
	"github.com/google/go-github/v82/github"
)

// githubDialect reads go-github's objects and lists through its client.
type githubDialect struct {
	gh          *github.Client
	owner, name string
}

// newGitHub builds the client without touching the network. GitHub Enterprise is reached at
// https://HOST/api/v3/.
func newGitHub(o Options) (gitprovider.Client, dialect, error) {
	gp, err := ggpgithub.NewClient(
		gitprovider.WithDomain(o.domain(ggpgithub.DefaultDomain)),
		gitprovider.WithOAuth2Token(o.Token),
		o.transportOption(),
	)
	if err != nil {
		return nil, nil, err
	}
	gh, ok := gp.Raw().(*github.Client)
	if !ok {
		return nil, nil, fmt.Errorf("go-git-providers returned a %T for GitHub", gp.Raw())
	}
	owner, name := o.split()
	return gp, &githubDialect{gh: gh, owner: owner, name: name}, nil
}

func (d *githubDialect) call(_ context.Context, fn func() error) error { return fn() }

func (d *githubDialect) convert(apiObject any) (PullRequest, error) {
	pr, ok := apiObject.(*github.PullRequest)
	if !ok {
		return PullRequest{}, fmt.Errorf("go-git-providers returned a %T for a GitHub pull request", apiObject)
	}
	return githubPullRequest(pr), nil
}

func githubPullRequest(pr *github.PullRequest) PullRequest {
	state := StateOpen
	if pr.GetState() == "closed" {
		state = StateClosed
		// List answers carry merged_at but not merged.
		if pr.GetMerged() || pr.MergedAt != nil {
			state = StateMerged
		}
	}
	return PullRequest{
		Number: pr.GetNumber(),
		URL:    pr.GetHTMLURL(),
		Branch: pr.GetHead().GetRef(),
		Head:   pr.GetHead().GetSHA(),
		Base:   pr.GetBase().GetRef(),
		Title:  pr.GetTitle(),
		State:  state,
	}
}

func (d *githubDialect) forBranch(ctx context.Context, branch string) ([]PullRequest, error) {
	// head=owner:branch selects branches of this repository, not of forks.
	return d.list(ctx, &github.PullRequestListOptions{State: "all", Head: d.owner + ":" + branch})
}

func (d *githubDialect) open(ctx context.Context, base string) ([]PullRequest, error) {
	return d.list(ctx, &github.PullRequestListOptions{State: "open", Base: base})
}

func (d *githubDialect) list(ctx context.Context, opts *github.PullRequestListOptions) ([]PullRequest, error) {
	opts.PerPage = pageSize
	return paginate(ctx, func(page int) ([]PullRequest, int, error) {
		opts.Page = page
		prs, resp, err := d.gh.PullRequests.List(ctx, d.owner, d.name, opts)
		if err != nil {
			return nil, 0, err
		}
		out := make([]PullRequest, 0, len(prs))
		for _, pr := range prs {
			out = append(out, githubPullRequest(pr))
		}
		return out, resp.NextPage, nil
	})
}

// merge uses go-git-providers: go-github's error keeps the response, so the status is known.
func (d *githubDialect) merge(ctx context.Context, prs gitprovider.PullRequestClient, number int, message string) error {
	return prs.Merge(ctx, number, gitprovider.MergeMethodMerge, message)
}

func (d *githubDialect) setStatus(ctx context.Context, sha string, s CommitStatus) error {
	st := github.RepoStatus{State: github.Ptr(string(s.State)), Context: github.Ptr(s.Context), Description: github.Ptr(s.Description)}
	if s.TargetURL != "" {
		st.TargetURL = github.Ptr(s.TargetURL)
	}
	_, _, err := d.gh.Repositories.CreateStatus(ctx, d.owner, d.name, sha, st)
	return err
}

func (d *githubDialect) approve(ctx context.Context, number int, head, body string) error {
	r := &github.PullRequestReviewRequest{Event: github.Ptr("APPROVE"), Body: github.Ptr(body)}
	if head != "" {
		r.CommitID = github.Ptr(head)
	}
	_, _, err := d.gh.PullRequests.CreateReview(ctx, d.owner, d.name, number, r)
	return err
}
