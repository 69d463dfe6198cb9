package gitrepo

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/fluxcd/pkg/git/gogit"
	extgogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/internal/redact"
)

// Branch is the head of one branch as Branches read it.
type Branch struct {
	// Name is the branch's short name (mpha/failover/ev-1).
	Name string
	// Commit is its head, Message the head's commit message (with its trailers).
	Commit, Message string
	// Files maps each requested path that exists at the head to its content.
	Files map[string][]byte
}

// Branches returns the branches whose names start with prefix, sorted by name, with the given
// plain-file paths read at each head. It makes one shallow clone of every branch: failover
// branches share nearly all their objects with the base branch, so that costs little more than
// one clone.
func (w *Writer) Branches(ctx context.Context, prefix string, paths ...string) ([]Branch, error) {
	var out []Branch
	err := wait.ExponentialBackoffWithContext(ctx, w.opts.Backoff, func(ctx context.Context) (bool, error) {
		st := memory.NewStorage()
		c, _, err := w.clone(ctx, w.opts.Branch, gogit.WithStorer(st), gogit.WithSingleBranch(false))
		if err != nil {
			if terminal(ctx, err) {
				return false, err
			}
			w.log.Warn("git branch listing failed; retrying", "error", redact.String(err.Error()))
			return false, nil
		}
		defer c.Close()
		out, err = branchesIn(st, prefix, paths)
		return err == nil, err
	})
	if err != nil {
		return nil, redact.Error(fmt.Errorf("listing branches %s*: %w", prefix, err))
	}
	return out, nil
}

// branchesIn reads the remote-tracking branches of a clone's store.
func branchesIn(st *memory.Storage, prefix string, paths []string) ([]Branch, error) {
	repo, err := extgogit.Open(st, nil)
	if err != nil {
		return nil, fmt.Errorf("opening the clone: %w", err)
	}
	refs, err := repo.References()
	if err != nil {
		return nil, fmt.Errorf("listing references: %w", err)
	}
	var out []Branch
	err = refs.ForEach(func(ref *plumbing.Reference) error {
		name, ok := strings.CutPrefix(ref.Name().String(), "refs/remotes/origin/")
		if !ok || !strings.HasPrefix(name, prefix) || ref.Type() != plumbing.HashReference {
			return nil
		}
		b, err := readBranch(repo, name, ref.Hash(), paths)
		if err != nil {
			return err
		}
		out = append(out, b)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Branch) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func readBranch(repo *extgogit.Repository, name string, h plumbing.Hash, paths []string) (Branch, error) {
	commit, err := repo.CommitObject(h)
	if err != nil {
		return Branch{}, fmt.Errorf("branch %s: reading %s: %w", name, h, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return Branch{}, fmt.Errorf("branch %s: reading the tree of %s: %w", name, h, err)
	}
	b := Branch{Name: name, Commit: h.String(), Message: commit.Message, Files: map[string][]byte{}}
	for _, p := range paths {
		if err := readInto(commitTree{tree}, p, b.Files); err != nil {
			return Branch{}, fmt.Errorf("branch %s: %w", name, err)
		}
	}
	return b, nil
}
