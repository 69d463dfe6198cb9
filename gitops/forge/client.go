package forge

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/fluxcd/go-git-providers/gitprovider"
	"k8s.io/apimachinery/pkg/util/wait"
)

// pageSize is the page size asked for when listing pull requests (100 is GitHub's and
// GitLab's maximum; Gitea caps it at its MAX_RESPONSE_ITEMS, 50 by default).
const pageSize = 100

// mergeBackoff paces Merge's attempts: Gitea answers 405 "Please try again later" until its
// queue has checked a new PR, GitHub 405 or 409 while it computes mergeability. Seven
// attempts over about 16 s. No Cap: wait.Backoff ends the steps once the cap is reached.
var mergeBackoff = wait.Backoff{Duration: 250 * time.Millisecond, Factor: 2, Jitter: 0.1, Steps: 7}

// dialect is what differs between forges beyond go-git-providers' common interface.
type dialect interface {
	// call runs fn, which calls the SDK (go-git-providers' calls and merge), under ctx where
	// the SDK takes no context per call. forBranch and open see to ctx themselves.
	call(ctx context.Context, fn func() error) error
	// convert reads the SDK object behind a go-git-providers pull request (its APIObject).
	convert(apiObject any) (PullRequest, error)
	// forBranch lists the pull requests in any state whose head is branch of this repository.
	forBranch(ctx context.Context, branch string) ([]PullRequest, error)
	// open lists the open pull requests into base.
	open(ctx context.Context, base string) ([]PullRequest, error)
	// merge merges an open pull request with a merge commit, keeping the HTTP status in the
	// error so that Merge can tell "try again" from a refusal.
	merge(ctx context.Context, prs gitprovider.PullRequestClient, number int, message string) error
	// setStatus sets a commit status through the forge's SDK (go-git-providers has none).
	setStatus(ctx context.Context, sha string, s CommitStatus) error
	// approve approves a pull request through the forge's SDK.
	approve(ctx context.Context, number int, head, body string) error
}

// client is a Forge on go-git-providers.
type client struct {
	repository string
	prs        gitprovider.PullRequestClient
	d          dialect
	s          scrubber
}

var _ Forge = (*client)(nil)

// Propose implements Forge.
func (c *client) Propose(ctx context.Context, p Proposal) (PullRequest, error) {
	if err := p.validate(); err != nil {
		return PullRequest{}, fmt.Errorf("opening pull request for %s: %w", p.Branch, err)
	}
	pr, ok, err := c.existing(ctx, p)
	if err != nil {
		return PullRequest{}, c.s.wrap(classify(err), "looking for a pull request from %s in %s", p.Branch, c.repository)
	}
	if ok {
		return pr, nil
	}
	var created gitprovider.PullRequest
	err = c.d.call(ctx, func() error {
		var err error
		created, err = c.prs.Create(ctx, p.Title, p.Branch, p.Base, p.Body)
		return err
	})
	if err != nil {
		// A concurrent delivery may have opened it since we looked: the forge refuses a second.
		if pr, ok, findErr := c.existing(ctx, p); findErr == nil && ok {
			return pr, nil
		}
		return PullRequest{}, c.s.wrap(classify(err), "opening pull request for %s into %s in %s", p.Branch, p.Base, c.repository)
	}
	pr, err = c.d.convert(created.APIObject())
	if err != nil {
		return PullRequest{}, c.s.wrap(err, "opening pull request for %s", p.Branch)
	}
	return pr, nil
}

func (p Proposal) validate() error {
	var errs []error
	if p.Branch == "" || p.Base == "" {
		errs = append(errs, errors.New("branch and base are required"))
	} else if p.Branch == p.Base {
		errs = append(errs, fmt.Errorf("branch and base are both %q", p.Base))
	}
	if strings.TrimSpace(p.Title) == "" {
		errs = append(errs, errors.New("title is required"))
	}
	return errors.Join(errs...)
}

// baseHeadFinder is a dialect that can look up the pull request of one head and base in one
// call, whatever the number of pull requests the repository holds.
type baseHeadFinder interface {
	// byBaseHead returns a pull request from head into base (false: none).
	byBaseHead(ctx context.Context, base, head string) (PullRequest, bool, error)
}

// existing returns the open pull request from p.Branch into p.Base, else a merged one. Where the
// forge can look a branch's pull request up directly, none (the usual case: a new failover
// branch) or an open or merged one is answered by that one call; a closed one, or a failed call,
// leaves the answer to the listing.
func (c *client) existing(ctx context.Context, p Proposal) (PullRequest, bool, error) {
	if f, ok := c.d.(baseHeadFinder); ok {
		pr, found, err := f.byBaseHead(ctx, p.Base, p.Branch)
		switch {
		case err == nil && !found:
			return PullRequest{}, false, nil
		case err == nil && (pr.State == StateOpen || pr.State == StateMerged):
			return pr, true, nil
		}
	}
	prs, err := c.d.forBranch(ctx, p.Branch)
	if err != nil {
		return PullRequest{}, false, err
	}
	var merged []PullRequest
	for _, pr := range prs {
		switch {
		case pr.Branch != p.Branch || pr.Base != p.Base:
		case pr.State == StateOpen:
			return pr, true, nil
		case pr.State == StateMerged:
			merged = append(merged, pr)
		}
	}
	if len(merged) == 0 {
		return PullRequest{}, false, nil
	}
	// The latest, should a branch have been merged more than once.
	return slices.MaxFunc(merged, func(a, b PullRequest) int { return a.Number - b.Number }), true, nil
}

// Open implements Forge.
func (c *client) Open(ctx context.Context, base, prefix string) ([]PullRequest, error) {
	prs, err := c.d.open(ctx, base)
	if err != nil {
		return nil, c.s.wrap(classify(err), "listing open pull requests into %s in %s", base, c.repository)
	}
	prs = slices.DeleteFunc(prs, func(pr PullRequest) bool {
		return pr.State != StateOpen || pr.Base != base || !strings.HasPrefix(pr.Branch, prefix)
	})
	slices.SortFunc(prs, func(a, b PullRequest) int { return a.Number - b.Number })
	return prs, nil
}

// Get implements Forge.
func (c *client) Get(ctx context.Context, number int) (PullRequest, error) {
	pr, err := c.get(ctx, number)
	if err != nil {
		return PullRequest{}, c.s.wrap(classify(err), "getting pull request %d in %s", number, c.repository)
	}
	return pr, nil
}

func (c *client) get(ctx context.Context, number int) (PullRequest, error) {
	var got gitprovider.PullRequest
	err := c.d.call(ctx, func() error {
		var err error
		got, err = c.prs.Get(ctx, number)
		return err
	})
	if err != nil {
		return PullRequest{}, err
	}
	return c.d.convert(got.APIObject())
}

// Merge implements Forge. It retries, with backoff, while the forge answers 405, 409 or 5xx,
// and looks at the pull request before each attempt, so one merged meanwhile (or by the
// attempt whose answer was lost) is success.
func (c *client) Merge(ctx context.Context, number int, message string) error {
	var last error
	err := wait.ExponentialBackoffWithContext(ctx, mergeBackoff, func(ctx context.Context) (bool, error) {
		done, err := c.mergeOnce(ctx, number, message)
		if err != nil && retryable(err) {
			last = err
			return false, nil
		}
		return done, err
	})
	switch {
	case err == nil:
		return nil
	case last != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()):
		err = fmt.Errorf("%w; last answer: %w", err, last)
	case last != nil && wait.Interrupted(err):
		err = fmt.Errorf("gave up after %d attempts: %w", mergeBackoff.Steps, last)
	}
	return c.s.wrap(classify(err), "merging pull request %d in %s", number, c.repository)
}

func (c *client) mergeOnce(ctx context.Context, number int, message string) (bool, error) {
	pr, err := c.get(ctx, number)
	if err != nil {
		return false, err
	}
	switch pr.State {
	case StateMerged:
		return true, nil
	case StateClosed:
		return false, errors.New("closed without merging")
	}
	err = c.d.call(ctx, func() error { return c.d.merge(ctx, c.prs, number, message) })
	if err != nil {
		return false, err
	}
	return true, nil
}

// maxStatusDescription is GitHub's limit on a status's description.
const maxStatusDescription = 140

// SetStatus implements Forge.
func (c *client) SetStatus(ctx context.Context, sha string, s CommitStatus) error {
	switch {
	case sha == "" || s.Context == "":
		return errors.New("a commit status needs a commit and a context")
	case s.State != StatusPending && s.State != StatusSuccess && s.State != StatusFailure:
		return fmt.Errorf("commit status state %q: want pending, success or failure", s.State)
	}
	if r := []rune(s.Description); len(r) > maxStatusDescription {
		s.Description = string(r[:maxStatusDescription-1]) + "…"
	}
	if err := c.d.call(ctx, func() error { return c.d.setStatus(ctx, sha, s) }); err != nil {
		return c.s.wrap(classify(err), "setting status %s of %s in %s", s.Context, sha, c.repository)
	}
	return nil
}

// Approve implements Forge.
func (c *client) Approve(ctx context.Context, number int, head, body string) error {
	if err := c.d.call(ctx, func() error { return c.d.approve(ctx, number, head, body) }); err != nil {
		return c.s.wrap(classify(err), "approving pull request %d in %s", number, c.repository)
	}
	return nil
}

// retryable says whether a merge may succeed if tried again.
func retryable(err error) bool {
	code := statusOf(err)
	return code == http.StatusMethodNotAllowed || code == http.StatusConflict || code >= 500
}

// paginate calls list for pages 1, 2, ... until it reports no next page.
func paginate(ctx context.Context, list func(page int) (prs []PullRequest, next int, err error)) ([]PullRequest, error) {
	var all []PullRequest
	for page := 1; page > 0; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		prs, next, err := list(page)
		if err != nil {
			return nil, err
		}
		all = append(all, prs...)
		page = next
	}
	return all, nil
}
