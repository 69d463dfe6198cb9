// Package audit rebuilds the history of mpha's commits (failovers, secret exports, values, certs)
// from `git log` and the Mpha-* trailers alone (docs/design.md §5): no cluster, no forge API. It
// reads Git with go-git and trailers with gitops/trailer; it writes nothing and imports no agent
// or cmd package.
package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// DefaultBranch is the branch Log reads when Options.Branch is empty (docs/design.md §3).
const DefaultBranch = "main"

// Entry is one commit carrying Mpha-* trailers. The failover fields are empty (Epoch 0) on other
// kinds. A value the contract refuses (an Mpha-Epoch that is not an integer, a kind or cluster
// that is not a DNS-1123 label) leaves its field empty, stays in Trailers and is named in
// Problems.
type Entry struct {
	Commit string    `json:"commit"`
	Kind   string    `json:"kind"`
	When   time.Time `json:"when"`   // author time
	Author string    `json:"author"` // "name <email>"

	Event       string `json:"event,omitempty"`
	Epoch       int64  `json:"epoch,omitempty"`
	From        string `json:"from,omitempty"`
	To          string `json:"to,omitempty"`
	Mode        string `json:"mode,omitempty"`
	RequestedBy string `json:"requestedBy,omitempty"`
	Reason      string `json:"reason,omitempty"`
	Preflight   string `json:"preflight,omitempty"`
	Cluster     string `json:"cluster,omitempty"`

	// Trailers holds every Mpha-* trailer of the commit (the first, if a key repeats), as written.
	Trailers map[string]string `json:"trailers"`
	Subject  string            `json:"subject"`
	// Problems name what is wrong with the commit's trailers: malformed Mpha-* lines, values the
	// contract refuses, repeated keys. mpha's agents write none; a problem means a commit written
	// or edited by hand.
	Problems []string `json:"problems,omitempty"`

	// Merged is when the commit reached the branch read: the committer time of the merge commit
	// that brought it in, else its own committer time.
	Merged time.Time `json:"merged"`
	// MergeCommit is the hash of that merge commit, "" when the commit is on the first-parent line.
	MergeCommit string `json:"mergeCommit,omitempty"`
	// PR is the pull request the merge commit names ("#12", GitLab "!12"), see PullRequest.
	PR string `json:"pr,omitempty"`
}

// Options select what Log returns.
type Options struct {
	// Branch is the branch to read (default main); a full ref name ("refs/...") is used as is.
	Branch string
	// Kinds keeps only entries whose Mpha-Kind is one of these; empty keeps all.
	Kinds []string
	// Since keeps only entries authored at or after it; zero keeps all.
	Since time.Time
}

// ErrBranchNotFound reports a branch the repository does not have.
var ErrBranchNotFound = errors.New("branch not found")

// landing is one commit of the branch's first-parent line and, for a merge, the commits it
// brought in (those not reachable from its first parent), children before parents.
type landing struct {
	commit  *object.Commit
	brought []*object.Commit
}

// Log walks the history of Options.Branch and returns one Entry per commit with Mpha-* trailers,
// newest first in the order the commits reached the branch: each first-parent commit, and after a
// merge the commits it brought in. Merge commits are never entries; they give Merged, MergeCommit
// and PR to the commits they bring in. A shallow history ends where its objects do.
func Log(ctx context.Context, repo *gogit.Repository, opts Options) ([]Entry, error) {
	branch := opts.Branch
	if branch == "" {
		branch = DefaultBranch
	}
	tip, err := resolveBranch(repo, branch)
	if err != nil {
		return nil, err
	}
	line, err := firstParents(ctx, repo, tip)
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", branch, err)
	}
	landings, err := land(ctx, repo, line)
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", branch, err)
	}
	return entries(landings, opts), nil
}

// entries turns landings (oldest first) into the entries opts keeps, newest first.
func entries(landings []landing, opts Options) []Entry {
	var out []Entry
	keep := func(c, merge *object.Commit) {
		e, ok := newEntry(c)
		if !ok || !opts.keeps(e) {
			return
		}
		e.Merged = c.Committer.When
		if merge != nil {
			e.Merged, e.MergeCommit, e.PR = merge.Committer.When, merge.Hash.String(), PullRequest(merge.Message)
		}
		out = append(out, e)
	}
	for _, l := range slices.Backward(landings) {
		if !isMerge(l.commit) {
			keep(l.commit, nil)
			continue
		}
		for _, c := range l.brought {
			if !isMerge(c) {
				keep(c, l.commit)
			}
		}
	}
	return out
}

func (o Options) keeps(e Entry) bool {
	if len(o.Kinds) > 0 && !slices.Contains(o.Kinds, e.Kind) {
		return false
	}
	return o.Since.IsZero() || !e.When.Before(o.Since)
}

// newEntry reads c's Mpha-* trailers into an Entry (without the Merged fields); false when c has
// none, valid or malformed. A trailer that is malformed, or whose value the contract refuses
// (trailer.Check), leaves its field empty and becomes a problem; so does a repeated key, whose
// first value counts (as trailer.Get reads it for the agents) and whose values the problem lists.
func newEntry(c *object.Commit) (Entry, bool) {
	ts, malformed := trailer.ParseAll(c.Message)
	if len(ts) == 0 && len(malformed) == 0 {
		return Entry{}, false
	}
	e := Entry{
		Commit: c.Hash.String(), When: c.Author.When, Author: fmt.Sprintf("%s <%s>", c.Author.Name, c.Author.Email),
		Trailers: make(map[string]string, len(ts)), Subject: subject(c.Message),
	}
	for _, err := range malformed {
		e.Problems = append(e.Problems, err.Error())
	}
	var keys []string
	values := map[string][]string{}
	for _, t := range ts {
		if _, seen := values[t.Key]; !seen {
			keys = append(keys, t.Key)
		}
		values[t.Key] = append(values[t.Key], t.Value)
	}
	for _, k := range keys {
		vs := values[k]
		e.Trailers[k] = vs[0]
		if len(vs) > 1 {
			quoted := make([]string, len(vs))
			for i, v := range vs {
				quoted[i] = gitops.Quote(v)
			}
			e.Problems = append(e.Problems, fmt.Sprintf("%s appears %d times (%s): the first counts", k, len(vs), strings.Join(quoted, ", ")))
		}
		if err := trailer.Check(trailer.Trailer{Key: k, Value: vs[0]}); err != nil {
			e.Problems = append(e.Problems, err.Error())
			continue
		}
		e.set(k, vs[0])
	}
	return e, true
}

// set fills the field of trailer key with a value trailer.Check accepted.
func (e *Entry) set(key, v string) {
	switch key {
	case trailer.Kind:
		e.Kind = v
	case trailer.Event:
		e.Event = v
	case trailer.Epoch:
		e.Epoch, _ = strconv.ParseInt(v, 10, 64)
	case trailer.From:
		e.From = v
	case trailer.To:
		e.To = v
	case trailer.Mode:
		e.Mode = v
	case trailer.RequestedBy:
		e.RequestedBy = v
	case trailer.Reason:
		e.Reason = v
	case trailer.Preflight:
		e.Preflight = v
	case trailer.Cluster:
		e.Cluster = v
	}
}

func subject(message string) string {
	s, _, _ := strings.Cut(strings.TrimLeft(message, "\r\n"), "\n")
	return strings.TrimSpace(s)
}

func isMerge(c *object.Commit) bool { return len(c.ParentHashes) > 1 }

// resolveBranch finds the branch as a local branch, else as origin's (a clone whose local branch
// was never checked out).
func resolveBranch(repo *gogit.Repository, branch string) (plumbing.Hash, error) {
	names := []plumbing.ReferenceName{plumbing.NewBranchReferenceName(branch), plumbing.NewRemoteReferenceName("origin", branch)}
	if strings.HasPrefix(branch, "refs/") {
		names = []plumbing.ReferenceName{plumbing.ReferenceName(branch)}
	}
	for _, n := range names {
		ref, err := repo.Reference(n, true)
		if err == nil {
			return ref.Hash(), nil
		}
		if !errors.Is(err, plumbing.ErrReferenceNotFound) {
			return plumbing.ZeroHash, fmt.Errorf("resolving %s: %w", n, err)
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("%w: %s", ErrBranchNotFound, branch)
}

// firstParents returns the first-parent line from tip back to the root (or the shallow boundary),
// newest first.
func firstParents(ctx context.Context, repo *gogit.Repository, tip plumbing.Hash) ([]*object.Commit, error) {
	var line []*object.Commit
	for h := tip; ; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, ok, err := commit(repo, h)
		if err != nil {
			return nil, err
		}
		if !ok {
			return line, nil
		}
		line = append(line, c)
		if len(c.ParentHashes) == 0 {
			return line, nil
		}
		h = c.ParentHashes[0]
	}
}

// land turns the first-parent line (newest first) into landings, oldest first. Walking from the
// root keeps seen equal to the ancestors of the commit just processed, so a merge brings in exactly
// what its other parents reach beyond seen: one pass over the history, whatever its merges.
func land(ctx context.Context, repo *gogit.Repository, line []*object.Commit) ([]landing, error) {
	seen := make(map[plumbing.Hash]bool)
	out := make([]landing, 0, len(line))
	for _, c := range slices.Backward(line) {
		seen[c.Hash] = true
		l := landing{commit: c}
		if isMerge(c) {
			var err error
			if l.brought, err = reach(ctx, repo, c.ParentHashes[1:], seen); err != nil {
				return nil, err
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// reach returns the commits reachable from starts and not in seen, children before parents
// (reverse post-order of a depth-first walk), and adds them to seen.
func reach(ctx context.Context, repo *gogit.Repository, starts []plumbing.Hash, seen map[plumbing.Hash]bool) ([]*object.Commit, error) {
	type frame struct {
		c    *object.Commit
		next int
	}
	var post []*object.Commit
	var stack []frame
	push := func(h plumbing.Hash) error {
		if seen[h] {
			return nil
		}
		seen[h] = true
		c, ok, err := commit(repo, h)
		if !ok {
			return err
		}
		stack = append(stack, frame{c: c})
		return nil
	}
	for _, s := range starts {
		if err := push(s); err != nil {
			return nil, err
		}
		for len(stack) > 0 {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			top := &stack[len(stack)-1]
			if top.next < len(top.c.ParentHashes) {
				top.next++
				if err := push(top.c.ParentHashes[top.next-1]); err != nil {
					return nil, err
				}
				continue
			}
			post = append(post, top.c)
			stack = stack[:len(stack)-1]
		}
	}
	slices.Reverse(post)
	return post, nil
}

// commit reads a commit; false without an error when the object is absent (past a shallow
// boundary), so the history ends there.
func commit(repo *gogit.Repository, h plumbing.Hash) (*object.Commit, bool, error) {
	c, err := repo.CommitObject(h)
	if errors.Is(err, plumbing.ErrObjectNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("reading commit %s: %w", h, err)
	}
	return c, true, nil
}
