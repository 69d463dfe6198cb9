package gitrepo

import (
	"context"
	"errors"
	"fmt"
	"io"

	extgogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// History reads one branch of a repository that holds its history: a clone audit.Open makes of a
// URL, or a local repository. It writes nothing; it hands the pure packages what they weigh of the
// past (who last changed a file) as data.
type History struct {
	repo *extgogit.Repository
	tip  *object.Commit
}

// NewHistory reads branch ("" = main) of repo: the local branch, else origin's (a clone whose
// local branch was never checked out).
func NewHistory(repo *extgogit.Repository, branch string) (*History, error) {
	if branch == "" {
		branch = "main"
	}
	ref, err := repo.Reference(plumbing.NewBranchReferenceName(branch), true)
	if err != nil {
		if ref, err = repo.Reference(plumbing.NewRemoteReferenceName("origin", branch), true); err != nil {
			return nil, fmt.Errorf("branch %s: %w", branch, err)
		}
	}
	tip, err := repo.CommitObject(ref.Hash())
	if err != nil {
		return nil, fmt.Errorf("branch %s: %w", branch, err)
	}
	return &History{repo: repo, tip: tip}, nil
}

// Read returns what paths hold at the branch's tip, as Writer.Read does: "dir/" reads the files
// directly inside dir, "dir/**" every file below it, and absent paths are left out.
func (h *History) Read(paths ...string) (Snapshot, error) {
	tree, err := h.tip.Tree()
	if err != nil {
		return Snapshot{}, fmt.Errorf("reading the tree of %s: %w", h.tip.Hash, err)
	}
	snap := Snapshot{Commit: h.tip.Hash.String(), Files: map[string][]byte{}}
	for _, p := range paths {
		if err := readInto(commitTree{tree}, p, snap.Files); err != nil {
			return Snapshot{}, err
		}
	}
	return snap, nil
}

// LastChanges returns, for each of paths, the newest commit from the tip that changed it; a path
// no commit of the history read changed (a shallow history ends early) is left out. Each answer is
// go-git's Log with that FileName (`git log -1 -- path`): the commits in log order, each compared
// with the next; here one walk answers for every path.
func (h *History) LastChanges(ctx context.Context, paths ...string) (map[string]gitops.Commit, error) {
	out := map[string]gitops.Commit{}
	want := map[string]bool{}
	for _, p := range paths {
		want[p] = true
	}
	if len(want) == 0 {
		return out, nil
	}
	it, err := h.repo.Log(&extgogit.LogOptions{From: h.tip.Hash})
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", h.tip.Hash, err)
	}
	defer it.Close()
	cur, err := it.Next()
	if err != nil {
		return nil, fmt.Errorf("reading the history of %s: %w", h.tip.Hash, err)
	}
	for cur != nil && len(out) < len(want) {
		next, err := it.Next()
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			return out, nil // a shallow history's boundary: nothing to compare cur with
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the history of %s: %w", h.tip.Hash, err)
		}
		// At the root next is nil: every file of the root changed there.
		changed, err := changedPaths(ctx, cur, next)
		if err != nil {
			return nil, err
		}
		for _, p := range changed {
			if _, seen := out[p]; want[p] && !seen {
				out[p] = gitops.Commit{Hash: cur.Hash.String(), Merge: len(cur.ParentHashes) > 1, Trailers: trailer.Parse(cur.Message)}
			}
		}
		cur = next
	}
	return out, nil
}

// changedPaths lists the paths whose content differs between c and next (nil: none, so every
// path of c).
func changedPaths(ctx context.Context, c, next *object.Commit) ([]string, error) {
	from, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading the tree of %s: %w", c.Hash, err)
	}
	var to *object.Tree
	if next != nil {
		if to, err = next.Tree(); err != nil {
			return nil, fmt.Errorf("reading the tree of %s: %w", next.Hash, err)
		}
	}
	changes, err := object.DiffTreeContext(ctx, from, to)
	if err != nil {
		return nil, fmt.Errorf("comparing %s with its predecessor: %w", c.Hash, err)
	}
	out := make([]string, 0, len(changes))
	for _, ch := range changes {
		// DiffTree detects no renames: a change has one name, on the side that has the file.
		name := ch.From.Name
		if name == "" {
			name = ch.To.Name
		}
		out = append(out, name)
	}
	return out, nil
}
