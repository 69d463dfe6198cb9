package gitrepo_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func change(path, content string) gitops.Change {
	return gitops.Change{Files: map[string][]byte{path: owned(content)}, Message: "write " + path,
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}, Check: gitops.CheckOwned}
}

func stores(t *testing.T, dir string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(dir, "repo-*"))
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// The on-disk store: kept between calls (one folder, reused), following another writer's commits
// with its incremental fetch, rebuilt when its objects are lost, removed by Close; and a store
// that a process left behind is removed while one another writer holds stays.
func TestStoreOnDisk(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	cache := t.TempDir()
	w := f.writer(t, f.srv.URL(repo), func(o *gitrepo.Options) { o.CacheDir = cache })

	// A leftover of a process that ended without Close: no lock held on it.
	leftover := filepath.Join(cache, "repo-leftover")
	if err := os.MkdirAll(filepath.Join(leftover, "objects"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(leftover, "mpha.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Apply(ctx, change("mpha/a.yaml", "a: 1\n")); err != nil {
		t.Fatal(err)
	}
	first := stores(t, cache)
	if len(first) != 1 || first[0] == leftover {
		t.Fatalf("stores after the first write: %v, want one new one (the leftover removed)", first)
	}

	// Another writer (its own store, held) commits; this writer's next read and write see it.
	other := f.writer(t, f.srv.URL(repo), func(o *gitrepo.Options) { o.CacheDir = cache })
	if _, err := other.Apply(ctx, change("mpha/b.yaml", "b: 1\n")); err != nil {
		t.Fatal(err)
	}
	if got := len(stores(t, cache)); got != 2 {
		t.Fatalf("%d stores with two writers, want 2 (a held store is never pruned)", got)
	}
	snap, err := w.Read(ctx, "mpha/b.yaml")
	if err != nil || string(snap.Files["mpha/b.yaml"]) != string(owned("b: 1\n")) {
		t.Fatalf("reading the other writer's file: %q, %v", snap.Files["mpha/b.yaml"], err)
	}
	res, err := w.Apply(ctx, change("mpha/a.yaml", "a: 2\n"))
	if err != nil || res.Attempts != 1 {
		t.Fatalf("a write after the other's: %+v, %v; want one attempt", res, err)
	}
	if now := stores(t, cache); !contains(now, first[0]) {
		t.Errorf("the store was not kept between calls: %v, had %s", now, first[0])
	}
	head := headCommit(t, f.clone(t, "main"))
	if head.Hash.String() != res.Commit {
		t.Errorf("server head %s, Apply reported %s", head.Hash, res.Commit)
	}
	for p, want := range map[string]string{"mpha/a.yaml": "a: 2\n", "mpha/b.yaml": "b: 1\n", "README.md": "fleet\n"} {
		if got, _ := fileAt(t, head, p); strings.TrimPrefix(got, gitops.Header) != want {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}

	// The store loses its objects (a disk wiped under it): the writer starts over and lands.
	if err := os.RemoveAll(filepath.Join(first[0], "objects")); err != nil {
		t.Fatal(err)
	}
	res, err = w.Apply(ctx, change("mpha/a.yaml", "a: 3\n"))
	if err != nil {
		t.Fatalf("after the store lost its objects: %v", err)
	}
	if got, _ := fileAt(t, headCommit(t, f.clone(t, "main")), "mpha/a.yaml"); got != string(owned("a: 3\n")) {
		t.Errorf("after the rebuild: %q", got)
	}

	w.Close()
	other.Close()
	if left := stores(t, cache); len(left) != 0 {
		t.Errorf("stores after Close: %v", left)
	}
}

// The commit holds exactly the change on top of the head: files in nested and new folders
// written, deleted ones gone with their emptied folders, the rest of the tree untouched, and a
// path under a file (or a file over a folder) refused without a push.
func TestCommitTreeEdits(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	w := f.writer(t, f.srv.URL(repo))
	base := map[string][]byte{}
	for i := range 30 {
		base[fmt.Sprintf("apps/team-%d/svc-%d.yaml", i%3, i)] = owned(fmt.Sprintf("i: %d\n", i))
	}
	base["mpha/only/one.yaml"] = owned("one\n")
	if _, err := w.Apply(ctx, gitops.Change{Files: base, Message: "base", Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}}); err != nil {
		t.Fatal(err)
	}
	res, err := w.Apply(ctx, gitops.Change{
		Files:    map[string][]byte{"apps/team-1/svc-4.yaml": owned("changed\n"), "apps/new/deep/x.yaml": owned("x\n"), "apps/team-1.yaml": owned("a file beside the folder\n")},
		Delete:   []string{"mpha/only/one.yaml", "apps/team-2/svc-5.yaml", "apps/absent/never.yaml"},
		Message:  "edit",
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: "test"}},
	})
	if err != nil || res.NoChange {
		t.Fatalf("edit: %+v, %v", res, err)
	}
	// Git's own reading of the commit (fsck included) must agree.
	dir := t.TempDir()
	testrig.RunGit(t, "", "clone", "-q", f.srv.AuthURL(repo), dir)
	testrig.RunGit(t, dir, "fsck", "--strict")
	files := strings.Fields(testrig.RunGit(t, dir, "ls-files"))
	want := map[string]bool{"README.md": true, "apps/new/deep/x.yaml": true, "apps/team-1.yaml": true}
	for p := range base {
		want[p] = true
	}
	delete(want, "mpha/only/one.yaml")
	delete(want, "apps/team-2/svc-5.yaml")
	if len(files) != len(want) {
		t.Errorf("%d files in the commit, want %d: %v", len(files), len(want), files)
	}
	for _, p := range files {
		if !want[p] {
			t.Errorf("unexpected %s", p)
		}
	}
	if out := testrig.RunGit(t, dir, "ls-tree", "HEAD", "mpha"); out != "" {
		t.Errorf("the emptied folder mpha/ is still there: %s", out)
	}
	if got := testrig.RunGit(t, dir, "show", "HEAD:apps/team-1/svc-4.yaml"); got != string(owned("changed\n")) {
		t.Errorf("svc-4 = %q", got)
	}

	for _, ch := range []gitops.Change{
		{Files: map[string][]byte{"apps/team-1.yaml/under.yaml": owned("x\n")}},
		{Files: map[string][]byte{"apps/team-0": owned("over a folder\n")}},
	} {
		ch.Message, ch.Trailers = "refused", []trailer.Trailer{{Key: trailer.Kind, Value: "test"}}
		if _, err := w.Apply(ctx, ch); err == nil {
			t.Errorf("%v: applied, want a refusal", ch.Files)
		}
	}
	if h := headCommit(t, f.clone(t, "main")); h.Hash.String() != res.Commit {
		t.Errorf("a refused change moved main to %s", h.Hash)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
