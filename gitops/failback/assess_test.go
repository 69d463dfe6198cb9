package failback_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/failback"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// commit is a commit as gitrepo's History reports it, by kind and cluster.
func commit(hash, kind, cluster string) gitops.Commit {
	c := gitops.Commit{Hash: hash}
	if kind != "" {
		c.Trailers = append(c.Trailers, trailer.Trailer{Key: trailer.Kind, Value: kind})
	}
	if cluster != "" {
		c.Trailers = append(c.Trailers, trailer.Trailer{Key: trailer.Cluster, Value: cluster})
	}
	return c
}

// reseeded is the repository once west, the new active, has re-seeded east: every file in place,
// each last written by west's loops.
func reseeded(t *testing.T, l gitops.Layout, pem []byte) failback.Input {
	t.Helper()
	cert, err := seal.ParseCert(pem)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := seal.Seal(cert, []byte(strings.Repeat("h", 32)), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "iam-signing-key", Namespace: "tsb"},
		Data: map[string][]byte{"k": []byte("v")}})
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := seal.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	return failback.Input{
		Commit: "c0ffee",
		Files: map[string][]byte{
			l.Pair():                            []byte(pairAfter),
			l.SealingCert("east"):               pem,
			l.Secret("east", "iam-signing-key"): sealed,
			l.HelmRelease("east"):               []byte("# rendered from west\n"),
			l.Role("east"):                      roleFile(t, role.Standby("tsb", deps, restore, true)),
			l.Role("west"):                      roleFile(t, role.Active("tsb", 1, deps, restore)),
			l.HelmRelease("west"):               []byte("# west's own\n"),
		},
		Last: map[string]gitops.Commit{
			l.Secret("east", "iam-signing-key"): commit("5ec1e75000000000", "secrets", "west"),
			l.HelmRelease("east"):               commit("7a1be5000000000", "values", "west"),
		},
	}
}

// Assess weighs the files and their authors alone: each case changes one thing of a re-seeded
// repository and names the check it fails and the evidence given.
func TestAssess(t *testing.T) {
	t.Parallel()
	l := mustLayout(t)
	pem, _ := testrig.SealingKeyPair(t, "east")
	tests := []struct {
		name     string
		edit     func(*failback.Input)
		check    string // "" : every check passes
		evidence string
	}{
		{"re-seeded", func(*failback.Input) {}, "", ""},
		{"no certificate", func(in *failback.Input) { delete(in.Files, l.SealingCert("east")) },
			failback.CheckSecrets, "sealing-cert.pem is missing"},
		{"a secret sealed for west only", func(in *failback.Input) { in.Files[l.Secret("west", "tsb-iam-jwks")] = []byte("x") },
			failback.CheckSecrets, "tsb-iam-jwks: not sealed for east"},
		{"a secret last written by east", func(in *failback.Input) {
			in.Last[l.Secret("east", "iam-signing-key")] = commit("0123456789abcdef", "secrets", "east")
		}, failback.CheckSecrets, "last written by east's secrets commit 0123456789ab, not by the new active west's export"},
		{"a secret whose last commit is a merge", func(in *failback.Input) {
			c := commit("feedfacefeedface", "secrets", "west")
			c.Merge = true
			in.Last[l.Secret("east", "iam-signing-key")] = c
		}, failback.CheckSecrets, "commit feedfacefeed (no mpha trailers)"},
		{"values written by hand", func(in *failback.Input) { in.Last[l.HelmRelease("east")] = commit("abcdefabcdefabcd", "", "") },
			failback.CheckValues, "last written by commit abcdefabcdef (no mpha trailers)"},
		{"values whose cluster trailer is malformed", func(in *failback.Input) {
			in.Last[l.HelmRelease("east")] = commit("abcdefabcdefabcd", "values", "West")
		}, failback.CheckValues, "last written by a values commit abcdefabcdef"},
		{"values with no history", func(in *failback.Input) { delete(in.Last, l.HelmRelease("east")) },
			failback.CheckValues, "last written by no commit"},
		{"no values", func(in *failback.Input) { delete(in.Files, l.HelmRelease("east")) },
			failback.CheckValues, "helmrelease.yaml is missing"},
		{"east scaled up", func(in *failback.Input) { in.Files[l.Role("east")] = roleFile(t, role.Active("tsb", 2, deps, restore)) },
			failback.CheckRestore, "scales the MP to 2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := reseeded(t, l, pem)
			tc.edit(&in)
			a, err := failback.Assess(in, l)
			if err != nil {
				t.Fatal(err)
			}
			if a.Active != "west" || a.Demoted != "east" || a.Commit != "c0ffee" || len(a.Checks) != 3 {
				t.Fatalf("assessment: %+v", a)
			}
			for _, c := range a.Checks {
				failed := c.Result != failback.Pass
				if failed != (c.Name == tc.check) {
					t.Errorf("%s: %s (%s)", c.Name, c.Result, c.Evidence)
				}
				if c.Name == tc.check && !strings.Contains(c.Evidence, tc.evidence) {
					t.Errorf("%s: evidence %q, want %q", c.Name, c.Evidence, tc.evidence)
				}
			}
		})
	}
}

// Authored names exactly the files whose author Assess weighs: east's sealed secrets and values.
func TestAuthored(t *testing.T) {
	t.Parallel()
	l := mustLayout(t)
	pem, _ := testrig.SealingKeyPair(t, "east")
	in := reseeded(t, l, pem)
	got, err := failback.Authored(in.Files, l)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{l.Secret("east", "iam-signing-key"), l.HelmRelease("east")}; !slices.Equal(got, want) {
		t.Errorf("Authored = %q, want %q", got, want)
	}
	delete(in.Files, l.Pair())
	if _, err := failback.Assess(in, l); err == nil || !strings.Contains(err.Error(), "pair.yaml") {
		t.Errorf("without pair.yaml: %v", err)
	}
	in.Files[l.Pair()] = []byte(strings.Split(pairAfter, "lastFailover")[0])
	if _, err := failback.Authored(in.Files, l); !errors.Is(err, failback.ErrNoFailover) {
		t.Errorf("without a failover: %v", err)
	}
}
