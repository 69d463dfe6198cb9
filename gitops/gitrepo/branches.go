package gitrepo

import (
	"context"
	"fmt"
	"slices"
	"strings"

	extgogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"

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
// plain-file paths read at each head. It lists the server's branches, then fetches those at
// depth 1 into the writer's store: failover branches share nearly all their objects with the
// base branch, so only their own commits travel.
func (w *Writer) Branches(ctx context.Context, prefix string, paths ...string) ([]Branch, error) {
	var out []Branch
	err := w.retried(ctx, "branch listing", func(ctx context.Context, s *store) error {
		var err error
		out, err = w.branchesIn(ctx, s, prefix, paths)
		return err
	})
	if err != nil {
		return nil, redact.Error(fmt.Errorf("listing branches %s*: %w", prefix, err))
	}
	return out, nil
}

// branchesIn lists the server's branches under prefix (the server's list, so a deleted branch is
// gone at once), fetches them and reads each head.
func (w *Writer) branchesIn(ctx context.Context, s *store, prefix string, paths []string) ([]Branch, error) {
	remote, err := s.repo.Remote(extgogit.DefaultRemoteName)
	if err != nil {
		return nil, err
	}
	a := w.opts.Auth
	refs, err := remote.ListContext(ctx, &extgogit.ListOptions{Auth: w.auth, CABundle: a.CAFile, ClientCert: a.ClientCert, ClientKey: a.ClientKey})
	if err != nil {
		return nil, fmt.Errorf("listing the server's branches: %w", err)
	}
	var names []string
	for _, ref := range refs {
		name, ok := strings.CutPrefix(ref.Name().String(), "refs/heads/")
		if ok && strings.HasPrefix(name, prefix) && ref.Type() == plumbing.HashReference {
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return nil, nil
	}
	slices.Sort(names)
	if err := w.fetch(ctx, s, names...); err != nil {
		return nil, fmt.Errorf("fetching %d branches: %w", len(names), err)
	}
	out := make([]Branch, 0, len(names))
	for _, name := range names {
		ref, err := s.repo.Reference(remoteRef(name), true)
		if err != nil {
			return nil, fmt.Errorf("branch %s: %w", name, err)
		}
		b, err := readBranch(s.repo, name, ref.Hash(), paths)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
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
