package gitrepo_test

import (
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/internal/golden"
)

// lines makes a file of n numbered lines.
func lines(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString("line " + string(rune('a'+i-1)) + "\n")
	}
	return b.String()
}

// Diff shows a change as git does: a changed line with three lines of context, a new file from
// /dev/null, a removed one to it, a missing final newline marked; unchanged files are left out.
func TestDiff(t *testing.T) {
	t.Parallel()
	base := map[string][]byte{
		"mpha/changed.yaml":   []byte(lines(12)),
		"mpha/same.yaml":      []byte("kind: Same\n"),
		"mpha/gone.yaml":      []byte("kind: Gone\n"),
		"mpha/no-newline.txt": []byte("a\nb"),
		"mpha/blob.bin":       {0, 1, 2},
	}
	ch := gitops.Change{
		Files: map[string][]byte{
			"mpha/changed.yaml":   []byte(strings.Replace(lines(12), "line f\n", "line F\n", 1)),
			"mpha/same.yaml":      []byte("kind: Same\n"),
			"mpha/added.yaml":     []byte("kind: Added\nname: x\n"),
			"mpha/no-newline.txt": []byte("a\nc"),
			"mpha/blob.bin":       {0, 1, 3},
		},
		Delete: []string{"mpha/gone.yaml", "mpha/never-there.yaml", "mpha/gone.yaml"},
	}
	got, err := gitrepo.Diff(base, ch)
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "testdata/diff.golden.diff", []byte(got))
	for _, want := range []string{
		"--- a/mpha/changed.yaml\n+++ b/mpha/changed.yaml\n@@ -3,7 +3,7 @@ line b\n line c\n line d\n line e\n-line f\n+line F\n line g\n line h\n line i\n",
		"new file mode 100644\nindex 0000000000000000000000000000000000000000..",
		"--- /dev/null\n+++ b/mpha/added.yaml\n@@ -0,0 +1,2 @@\n+kind: Added\n+name: x\n",
		"deleted file mode 100644\n",
		"--- a/mpha/gone.yaml\n+++ /dev/null\n@@ -1 +0,0 @@\n-kind: Gone\n",
		"-b\n\\ No newline at end of file\n+c\n\\ No newline at end of file\n",
		"Binary files a/mpha/blob.bin and b/mpha/blob.bin differ\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("diff lacks %q:\n%s", want, got)
		}
	}
	for _, absent := range []string{"same.yaml", "never-there.yaml", "line a\n", "line l\n"} {
		if strings.Contains(got, absent) {
			t.Errorf("diff shows %q:\n%s", absent, got)
		}
	}
	if n := strings.Count(got, "diff --git"); n != 5 {
		t.Errorf("want 5 files in the diff, got %d:\n%s", n, got)
	}
	if empty, err := gitrepo.Diff(base, gitops.Change{Files: map[string][]byte{"mpha/same.yaml": []byte("kind: Same\n")}}); err != nil || empty != "" {
		t.Errorf("a change that changes nothing: %q, %v", empty, err)
	}
}
