package testrig

import (
	"os"
	"path/filepath"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// LocalRepo is a Git repository in a temporary folder, on branch main, into which a test writes
// commits by hand (the audit's and the history's fixtures, commits against the trailer contract):
// go-git on disk, no Git server. mpha reads it by its path, as `--repo DIR` does.
type LocalRepo struct {
	t        testing.TB
	Dir      string
	Repo     *gogit.Repository
	Worktree *gogit.Worktree
}

// NewLocalRepo makes an empty repository whose default branch is main.
func NewLocalRepo(t testing.TB) *LocalRepo {
	t.Helper()
	dir := t.TempDir()
	r, err := gogit.PlainInitWithOptions(dir, &gogit.PlainInitOptions{
		InitOptions: gogit.InitOptions{DefaultBranch: plumbing.NewBranchReferenceName("main")},
	})
	if err != nil {
		t.Fatal(err)
	}
	wt, err := r.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	return &LocalRepo{t: t, Dir: dir, Repo: r, Worktree: wt}
}

// Commit writes files ("" removes one) and commits them on the checked-out branch, by author and
// committer (their When included), onto parents when given (a merge); an empty commit is allowed.
func (r *LocalRepo) Commit(msg string, files map[string]string, author, committer object.Signature, parents ...plumbing.Hash) plumbing.Hash {
	r.t.Helper()
	for p, content := range files {
		if content == "" {
			if _, err := r.Worktree.Remove(p); err != nil {
				r.t.Fatal(err)
			}
			continue
		}
		full := filepath.Join(r.Dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			r.t.Fatal(err)
		}
		if _, err := r.Worktree.Add(p); err != nil {
			r.t.Fatal(err)
		}
	}
	h, err := r.Worktree.Commit(msg, &gogit.CommitOptions{Author: &author, Committer: &committer, Parents: parents, AllowEmptyCommits: true})
	if err != nil {
		r.t.Fatal(err)
	}
	return h
}

// Checkout checks branch out, creating it at HEAD when create is set.
func (r *LocalRepo) Checkout(branch string, create bool) {
	r.t.Helper()
	if err := r.Worktree.Checkout(&gogit.CheckoutOptions{Branch: plumbing.NewBranchReferenceName(branch), Create: create}); err != nil {
		r.t.Fatalf("checkout %s: %v", branch, err)
	}
}

// SetBranch points branch at h, as a fast-forward push does.
func (r *LocalRepo) SetBranch(branch string, h plumbing.Hash) {
	r.t.Helper()
	if err := r.Repo.Storer.SetReference(plumbing.NewHashReference(plumbing.NewBranchReferenceName(branch), h)); err != nil {
		r.t.Fatal(err)
	}
}
