package plan_test

import (
	"bytes"
	"io/fs"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/internal/golden"
)

// fleet is manifests/fleet as a user copies it into their repository: what plan.Inputs reads.
func fleet(t *testing.T) map[string][]byte {
	t.Helper()
	root := os.DirFS("../../manifests/fleet")
	files := map[string][]byte{}
	err := fs.WalkDir(root, "mpha", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files[p], err = fs.ReadFile(root, p)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	l := layout(t)
	if files[l.Pair()] == nil || files[l.FloatingDNS()] == nil {
		t.Fatalf("manifests/fleet lacks %s or %s", l.Pair(), l.FloatingDNS())
	}
	return files
}

// changedLines are the removed and added lines of path in a git diff.
func changedLines(t *testing.T, diff, path string) (removed, added []string) {
	t.Helper()
	for _, section := range strings.Split(diff, "diff --git ")[1:] {
		if !strings.HasPrefix(section, "a/"+path+" ") {
			continue
		}
		for _, line := range strings.Split(section, "\n") {
			switch {
			case strings.HasPrefix(line, "---"), strings.HasPrefix(line, "+++"):
			case strings.HasPrefix(line, "-"):
				removed = append(removed, line[1:])
			case strings.HasPrefix(line, "+"):
				added = append(added, line[1:])
			}
		}
		return removed, added
	}
	t.Fatalf("the diff has no section for %s:\n%s", path, diff)
	return nil, nil
}

// The failover of manifests/fleet to west, as the diff a reviewer reads: floating.yaml changes
// its one target line; pair.yaml its active and epoch lines and gains lastFailover, keeping the
// user's comment and key order, with no mpha header.
func TestBuildFleetDiff(t *testing.T) {
	l := layout(t)
	cur := fleet(t)
	p, err := plan.Build(cur, request(), plan.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	diff, err := gitrepo.Diff(cur, p.Change)
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "testdata/fleet-west.golden.diff", []byte(diff))

	removed, added := changedLines(t, diff, l.FloatingDNS())
	if !slices.Equal(removed, []string{"        - mp1.tsb.example.com"}) || !slices.Equal(added, []string{"        - mp2.tsb.example.com"}) {
		t.Errorf("floating.yaml: removed %q, added %q; want only the target", removed, added)
	}
	removed, added = changedLines(t, diff, l.Pair())
	if want := []string{"active: east", "epoch: 1"}; !slices.Equal(removed, want) {
		t.Errorf("pair.yaml: removed %q, want %q", removed, want)
	}
	if want := []string{"active: west", "epoch: 2", "lastFailover:", "  event: ev-42", "  from: east", "  to: west", `  at: "2026-11-22T09:30:00Z"`}; !slices.Equal(added, want) {
		t.Errorf("pair.yaml: added %q, want %q", added, want)
	}
	next := p.Change.Files[l.Pair()]
	if comment, _, _ := bytes.Cut(cur[l.Pair()], []byte("apiVersion:")); !bytes.HasPrefix(next, comment) || bytes.Contains(next, []byte(gitops.Header)) {
		t.Errorf("pair.yaml lost the user's comment or gained mpha's header:\n%s", next)
	}
	// The fence takes the user's pair.yaml, which has no mpha header: it is edited, not owned.
	if err := p.Change.Check(l.Pair(), cur[l.Pair()]); err != nil {
		t.Errorf("fence on the user's pair.yaml: %v", err)
	}
}

// manifests/fleet's pair.yaml shows floatingTTL commented out at its default: uncommented, it
// parses, and it equals the recordTTL of the fleet's dns/floating.yaml, as the comment says.
func TestFleetFloatingTTLExample(t *testing.T) {
	l := layout(t)
	cur := fleet(t)
	raw := string(cur[l.Pair()])
	example := "# floatingTTL: 60s"
	if !strings.Contains(raw, "\n"+example+" ") {
		t.Fatalf("manifests/fleet's pair.yaml has no line starting %q", example)
	}
	pair, err := gitops.ParsePair([]byte(strings.Replace(raw, example, "floatingTTL: 60s", 1)))
	if err != nil {
		t.Fatalf("the example uncommented: %v", err)
	}
	if pair.RecordTTL() != gitops.DefaultFloatingTTL {
		t.Errorf("the example says %s, the default is %s", pair.RecordTTL(), gitops.DefaultFloatingTTL)
	}
	if want := "      recordTTL: 60\n"; !strings.Contains(string(cur[l.FloatingDNS()]), want) {
		t.Errorf("manifests/fleet's dns/floating.yaml lacks %q:\n%s", want, cur[l.FloatingDNS()])
	}
}
