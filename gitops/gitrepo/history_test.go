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
	"github.com/mpha-dev/mpha/internal/testrig"
)

// localRepo is a repository on disk built commit by commit, as a person's checkout is; each
// commit a minute after the last.
type localRepo struct {
	*testrig.LocalRepo
	n int
}

func newLocalRepo(t *testing.T) *localRepo { return &localRepo{LocalRepo: testrig.NewLocalRepo(t)} }

// commit writes files ("" deletes one) and commits them with msg (onto parents, if given).
func (l *localRepo) commit(msg string, files map[string]string, parents ...plumbing.Hash) plumbing.Hash {
	l.n++
	who := object.Signature{Name: "test", Email: "test@mpha.invalid", When: time.Date(2026, 8, 1, 9, l.n, 0, 0, time.UTC)}
	return l.Commit(msg, files, who, who, parents...)
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
	r.Checkout("feature", true)
	c := r.commit("c\n\nMpha-Kind: secrets\nMpha-Cluster: west\n", map[string]string{"d/y": "2", "d/e/w": "1"})
	r.Checkout("main", false)
	d := r.commit("d", map[string]string{"d/e/z": "2"})
	m := r.commit("Merge branch feature", map[string]string{"d/y": "2", "d/e/w": "1"}, d, c)
	f := r.commit("f\n\nMpha-Kind: values\nMpha-Cluster: west\nMpha-Epoch: banana\n", map[string]string{"x": "3", "d/e/old": ""})

	h, err := gitrepo.NewHistory(r.Repo, "main")
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
		it, err := r.Repo.Log(&gogit.LogOptions{From: f, FileName: &p})
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
	hf, err := gitrepo.NewHistory(r.Repo, "feature")
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
	if _, err := gitrepo.NewHistory(r.Repo, "nope"); err == nil {
		t.Error("a missing branch was read")
	}
}

// Read takes the paths as Writer.Read does, from the branch's commit (not the work tree).
func TestHistoryRead(t *testing.T) {
	t.Parallel()
	r := newLocalRepo(t)
	head := r.commit("one", map[string]string{"top": "t", "d/y": "y", "d/e/z": "z"})
	if err := os.WriteFile(filepath.Join(r.Dir, "d", "uncommitted"), []byte("u"), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := gitrepo.NewHistory(r.Repo, "")
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
