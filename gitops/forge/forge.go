package forge

import (
	"context"
	"errors"
	"fmt"

	"github.com/fluxcd/go-git-providers/gitprovider"
)

// Kinds of forge, the values of Options.Kind.
const (
	KindGitHub = "github"
	KindGitLab = "gitlab"
	KindGitea  = "gitea"
)

// State is where a pull request is in its life.
type State string

// States of a pull request. GitLab's "locked" (a merge in progress) counts as open.
const (
	StateOpen   State = "open"
	StateMerged State = "merged"
	StateClosed State = "closed"
)

// PullRequest is a pull request (a merge request on GitLab) as the forge reports it.
type PullRequest struct {
	// Number is the pull request's number in its repository (GitLab's IID).
	Number int
	// URL is the page a person opens to review it.
	URL string
	// Branch is the head (source) branch and Base the branch it merges into; Head is the head
	// branch's commit, where commit statuses go.
	Branch, Base, Head string
	Title              string
	State              State
}

// Proposal is a pull request to open.
type Proposal struct {
	Branch, Base, Title, Body string
}

// CommitStatus is a commit status, as a required check reads it: GitHub's commit status,
// GitLab's external commit status, Gitea's commit status.
type CommitStatus struct {
	// Context names the check (mpha/preflight): what branch protection requires.
	Context string
	State   StatusState
	// Description is the one line the forge shows beside it (cut to 140 characters, GitHub's
	// limit); TargetURL, if set, is where "details" leads.
	Description, TargetURL string
}

// StatusState is a commit status's state.
type StatusState string

// The states every forge has.
const (
	StatusPending StatusState = "pending"
	StatusSuccess StatusState = "success"
	StatusFailure StatusState = "failure"
)

// Forge opens and follows pull requests in one repository.
type Forge interface {
	// Propose opens a pull request from Branch into Base, or returns the open one that already
	// exists for Branch into Base (idempotent: a redelivered failover must not open a second
	// PR). A merged PR for the branch is returned as is, too. A PR closed without merging does
	// not count: a new one is opened.
	Propose(ctx context.Context, p Proposal) (PullRequest, error)
	// Open lists the open pull requests into base whose head branch starts with prefix (e.g.
	// "mpha/failover/"), by number.
	Open(ctx context.Context, base, prefix string) ([]PullRequest, error)
	// Get returns pull request number.
	Get(ctx context.Context, number int) (PullRequest, error)
	// Merge merges pull request number with a merge commit (used by drills and tests). An
	// already merged PR is not an error; a closed one is.
	Merge(ctx context.Context, number int, message string) error
	// SetStatus sets the commit status s.Context of commit sha (a pull request's head): a
	// required status check refuses the merge while it is not success.
	SetStatus(ctx context.Context, sha string, s CommitStatus) error
	// Approve approves pull request number as the token's user, at its head commit head (GitHub
	// and GitLab refuse the approval once the head moved): the review a protected branch
	// requires. A forge refuses an approval by the pull request's author.
	Approve(ctx context.Context, number int, head, body string) error
}

// ErrNotFound is returned (wrapped) when the repository or a pull request does not exist, or
// the token may not see it. The Gitea SDK drops the status of a missing pull request, so
// there only a missing repository is marked.
var ErrNotFound = errors.New("not found")

// ErrUnauthorized is returned (wrapped) when the forge rejects the token. New against Gitea
// cannot tell: the SDK's version check, which fails first, keeps only the message.
var ErrUnauthorized = errors.New("unauthorized")

// New connects to the forge and looks up the repository, so a wrong URL, token or repository
// fails here.
func New(ctx context.Context, o Options) (Forge, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	s := scrubber{token: o.Token}
	c, err := connect(ctx, o)
	if err != nil {
		return nil, s.wrap(err, "connecting to %s forge %s", o.Kind, o.endpoint())
	}
	return c, nil
}

// connect builds the go-git-providers client for o.Kind and resolves the repository.
func connect(ctx context.Context, o Options) (*client, error) {
	var (
		gp  gitprovider.Client
		d   dialect
		err error
	)
	switch o.Kind {
	case KindGitHub:
		gp, d, err = newGitHub(o)
	case KindGitLab:
		gp, d, err = newGitLab(o)
	default:
		gp, d, err = newGitea(o)
	}
	if err != nil {
		return nil, err
	}
	owner, name := o.split()
	ref := gitprovider.UserRepositoryRef{
		UserRef:        gitprovider.UserRef{Domain: gp.SupportedDomain(), UserLogin: owner},
		RepositoryName: name,
	}
	var repo gitprovider.UserRepository
	err = d.call(ctx, func() error {
		// Both user and organisation repositories: every forge looks the repository up by its
		// full path (GET /repos/{owner}/{name}, GitLab /projects/{path}), whatever the owner
		// is. OrgRepositories().Get on GitLab drops subgroups, so it is not used.
		var err error
		repo, err = gp.UserRepositories().Get(ctx, ref)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", o.Repository, classify(err))
	}
	return &client{repository: o.Repository, prs: repo.PullRequests(), d: d, s: scrubber{token: o.Token}}, nil
}
