package gitrepo_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// localRepo is a repository on disk built commit by commit, as a person's checkout is.
type localRepo struct {
	t    *testing.T
	dir  string
	repo *gogit.Repository
	wt   *gogit.Worktree
	n    int
}

func newLocalRepo(t *testing.T) *localRepo {
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
	return &localRepo{t: t, dir: dir, repo: r, wt: wt}
}

// commit writes files ("" deletes one) and commits them with msg (onto parents, if given).
func (l *localRepo) commit(msg string, files map[string]string, parents ...plumbing.Hash) plumbing.Hash {
	l.t.Helper()
	for p, content := range files {
		full := filepath.Join(l.dir, p)
		if content == "" {
			if _, err := l.wt.Remove(p); err != nil {
				l.t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			l.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			l.t.Fatal(err)
		}
		if _, err := l.wt.Add(p); err != nil {
			l.t.Fatal(err)
		}
	}
	l.n++
	who := &object.Signature{Name: "test", Email: "test@mpha.invalid", When: time.Date(2026, 8, 1, 9, l.n, 0, 0, time.UTC)}
	h, err := l.wt.Commit(msg, &gogit.CommitOptions{Author: who, Committer: who, Parents: parents, AllowEmptyCommits: true})
	if err != nil {
		l.t.Fatal(err)
	}
	return h
}

// A history with a merged branch:
//
//	a ─ b ─ d ─ m ─ f   (main)
//	     └─ c ─┘        (feature)
//
// LastChanges answers for every path what go-git's Log with that FileName answers, in one walk:
// a file changed on the branch counts as changed by the merge, which Merge says.
func TestHistoryLastChanges(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := newLocalRepo(t)
	a := r.commit("a\n\nMpha-Kind: bootstrap\n", map[string]string{"x": "1", "d/y": "1", "d/e/z": "1", "d/e/old": "1"})
	r.commit("b", map[string]string{"x": "2"})
	if err := r.wt.Checkout(&gogit.CheckoutOptions{Branch: plumbing.NewBranchReferenceName("feature"), Create: true}); err != nil {
		t.Fatal(err)
	}
	c := r.commit("c\n\nMpha-Kind: secrets\nMpha-Cluster: west\n", map[string]string{"d/y": "2", "d/e/w": "1"})
	if err := r.wt.Checkout(&gogit.CheckoutOptions{Branch: plumbing.NewBranchReferenceName("main")}); err != nil {
		t.Fatal(err)
	}
	d := r.commit("d", map[string]string{"d/e/z": "2"})
	m := r.commit("Merge branch feature", map[string]string{"d/y": "2", "d/e/w": "1"}, d, c)
	f := r.commit("f\n\nMpha-Kind: values\nMpha-Cluster: west\nMpha-Epoch: banana\n", map[string]string{"x": "3", "d/e/old": ""})

	h, err := gitrepo.NewHistory(r.repo, "main")
	if err != nil {
		t.Fatal(err)
	}
	paths := []string{"x", "d/y", "d/e/z", "d/e/w", "d/e/old", "never"}
	got, err := h.LastChanges(ctx, paths...)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range paths {
		want := ""
		it, err := r.repo.Log(&gogit.LogOptions{From: f, FileName: &p})
		if err != nil {
			t.Fatal(err)
		}
		if c, err := it.Next(); err == nil {
			want = c.Hash.String()
		}
		it.Close()
		if got[p].Hash != want {
			t.Errorf("%s: last changed by %q, go-git's log says %q", p, got[p].Hash, want)
		}
	}
	wantCommits := map[string]gitops.Commit{
		"x": {Hash: f.String(), Trailers: []gitops.Trailer{{Key: trailer.Kind, Value: "values"}, {Key: trailer.Cluster, Value: "west"},
			{Key: trailer.Epoch, Value: "banana"}}},
		"d/e/old": {Hash: f.String(), Trailers: []gitops.Trailer{{Key: trailer.Kind, Value: "values"}, {Key: trailer.Cluster, Value: "west"},
			{Key: trailer.Epoch, Value: "banana"}}},
		"d/y":   {Hash: m.String(), Merge: true},
		"d/e/w": {Hash: m.String(), Merge: true},
		"d/e/z": {Hash: d.String()},
	}
	if diff := cmp.Diff(wantCommits, got); diff != "" {
		t.Errorf("LastChanges (-want +got):\n%s", diff)
	}

	// From the branch, the same walk finds the branch's own commit and the root.
	hf, err := gitrepo.NewHistory(r.repo, "feature")
	if err != nil {
		t.Fatal(err)
	}
	got, err = hf.LastChanges(ctx, "d/y", "d/e/z")
	if err != nil {
		t.Fatal(err)
	}
	if got["d/y"].Hash != c.String() || got["d/e/z"].Hash != a.String() || !cmp.Equal(got["d/e/z"].Trailers, []gitops.Trailer{{Key: trailer.Kind, Value: "bootstrap"}}) {
		t.Errorf("from feature: %+v", got)
	}
	if _, err := gitrepo.NewHistory(r.repo, "nope"); err == nil {
		t.Error("a missing branch was read")
	}
}

// Read takes the paths as Writer.Read does, from the branch's commit (not the work tree).
func TestHistoryRead(t *testing.T) {
	t.Parallel()
	r := newLocalRepo(t)
	head := r.commit("one", map[string]string{"top": "t", "d/y": "y", "d/e/z": "z"})
	if err := os.WriteFile(filepath.Join(r.dir, "d", "uncommitted"), []byte("u"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := gitrepo.NewHistory(r.repo, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		paths []string
		want  map[string]string
	}{
		{[]string{"top", "absent"}, map[string]string{"top": "t"}},
		{[]string{"d/"}, map[string]string{"d/y": "y"}},
		{[]string{"d/**"}, map[string]string{"d/y": "y", "d/e/z": "z"}},
		{[]string{"nodir/", "nodir/**"}, map[string]string{}},
	} {
		snap, err := h.Read(tc.paths...)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for p, b := range snap.Files {
			got[p] = string(b)
		}
		if snap.Commit != head.String() || !cmp.Equal(got, tc.want) {
			t.Errorf("Read(%q) = %s %v, want %s %v", tc.paths, snap.Commit, got, head, tc.want)
		}
	}
}
