package forge

import (
	"context"
	"fmt"

	ggpgitlab "github.com/fluxcd/go-git-providers/gitlab"
	"github.com/fluxcd/go-git-providers/gitprovider"
	gitlab "gitlab.com/gitlab-org/api/client-go"
)

// gitlabDialect reads GitLab client-go's merge requests and lists through its client.
type gitlabDialect struct {
	gl *gitlab.Client
	// project is the full path, group/subgroup/name.
	project string
}

// newGitLab builds the client without touching the network; the token is a personal, group or
// project access token (sent as PRIVATE-TOKEN).
func newGitLab(o Options) (gitprovider.Client, dialect, error) {
	gp, err := ggpgitlab.NewClient(o.Token, "", gitprovider.WithDomain(o.domain(ggpgitlab.DefaultDomain)), o.transportOption())
	if err != nil {
		return nil, nil, err
	}
	gl, ok := gp.Raw().(*gitlab.Client)
	if !ok {
		return nil, nil, fmt.Errorf("go-git-providers returned a %T for GitLab", gp.Raw())
	}
	return gp, &gitlabDialect{gl: gl, project: o.Repository}, nil
}

func (d *gitlabDialect) call(_ context.Context, fn func() error) error { return fn() }

func (d *gitlabDialect) convert(apiObject any) (PullRequest, error) {
	mr, ok := apiObject.(*gitlab.MergeRequest)
	if !ok {
		return PullRequest{}, fmt.Errorf("go-git-providers returned a %T for a GitLab merge request", apiObject)
	}
	return gitlabPullRequest(&mr.BasicMergeRequest)
}

func gitlabPullRequest(mr *gitlab.BasicMergeRequest) (PullRequest, error) {
	var state State
	switch mr.State {
	case "opened", "locked": // locked: a merge is under way
		state = StateOpen
	case "merged":
		state = StateMerged
	case "closed":
		state = StateClosed
	default:
		return PullRequest{}, fmt.Errorf("merge request !%d has unknown state %q", mr.IID, mr.State)
	}
	return PullRequest{
		Number: int(mr.IID),
		URL:    mr.WebURL,
		Branch: mr.SourceBranch,
		Head:   mr.SHA,
		Base:   mr.TargetBranch,
		Title:  mr.Title,
		State:  state,
	}, nil
}

func (d *gitlabDialect) forBranch(ctx context.Context, branch string) ([]PullRequest, error) {
	return d.list(ctx, &gitlab.ListProjectMergeRequestsOptions{State: gitlab.Ptr("all"), SourceBranch: gitlab.Ptr(branch)})
}

func (d *gitlabDialect) open(ctx context.Context, base string) ([]PullRequest, error) {
	return d.list(ctx, &gitlab.ListProjectMergeRequestsOptions{State: gitlab.Ptr("opened"), TargetBranch: gitlab.Ptr(base)})
}

func (d *gitlabDialect) list(ctx context.Context, opts *gitlab.ListProjectMergeRequestsOptions) ([]PullRequest, error) {
	opts.PerPage = pageSize
	return paginate(ctx, func(page int) ([]PullRequest, int, error) {
		opts.Page = int64(page)
		mrs, resp, err := d.gl.MergeRequests.ListProjectMergeRequests(d.project, opts, gitlab.WithContext(ctx))
		if err != nil {
			return nil, 0, err
		}
		out := make([]PullRequest, 0, len(mrs))
		for _, mr := range mrs {
			// Merge requests from forks may use the same branch name.
			if mr.SourceProjectID != mr.TargetProjectID {
				continue
			}
			pr, err := gitlabPullRequest(mr)
			if err != nil {
				return nil, 0, err
			}
			out = append(out, pr)
		}
		return out, int(resp.NextPage), nil
	})
}

// merge uses go-git-providers, which waits (up to about 20 s) for GitLab to find the merge
// request mergeable and retries "Branch cannot be merged" itself.
func (d *gitlabDialect) merge(ctx context.Context, prs gitprovider.PullRequestClient, number int, message string) error {
	return prs.Merge(ctx, number, gitprovider.MergeMethodMerge, message)
}

// setStatus sets an external commit status; GitLab's state for a failure is "failed", and its
// context is the status's name.
func (d *gitlabDialect) setStatus(ctx context.Context, sha string, s CommitStatus) error {
	state := gitlab.BuildStateValue(s.State)
	if s.State == StatusFailure {
		state = gitlab.Failed
	}
	opt := &gitlab.SetCommitStatusOptions{State: state, Name: gitlab.Ptr(s.Context), Description: gitlab.Ptr(s.Description)}
	if s.TargetURL != "" {
		opt.TargetURL = gitlab.Ptr(s.TargetURL)
	}
	_, _, err := d.gl.Commits.SetCommitStatus(d.project, sha, opt, gitlab.WithContext(ctx))
	return err
}

// approve approves the merge request; GitLab takes no review text with an approval.
func (d *gitlabDialect) approve(ctx context.Context, number int, head, _ string) error {
	opt := &gitlab.ApproveMergeRequestOptions{}
	if head != "" {
		opt.SHA = gitlab.Ptr(head)
	}
	_, _, err := d.gl.MergeRequestApprovals.ApproveMergeRequest(d.project, int64(number), opt, gitlab.WithContext(ctx))
	return err
}
