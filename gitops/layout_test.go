package gitops_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops"
)

// The paths are the contract of docs/design.md §3.
func TestLayoutPaths(t *testing.T) {
	t.Parallel()
	l, err := gitops.NewLayout("")
	if err != nil {
		t.Fatal(err)
	}
	got := []string{
		l.Pair(), l.ClusterDir("east"), l.Kustomization("east"), l.SealingCert("east"), l.SecretsDir("west"),
		l.Secret("west", "iam-signing-key"), l.HelmRelease("west"), l.Role("east"), l.FloatingDNS(),
	}
	want := []string{
		"mpha/pair.yaml", "mpha/clusters/east", "mpha/clusters/east/kustomization.yaml",
		"mpha/clusters/east/sealing-cert.pem", "mpha/clusters/west/secrets",
		"mpha/clusters/west/secrets/iam-signing-key.yaml", "mpha/clusters/west/mp/helmrelease.yaml",
		"mpha/clusters/east/mp/role.yaml", "mpha/dns/floating.yaml",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
	custom, err := gitops.NewLayout("fleet/tsb")
	if err != nil {
		t.Fatal(err)
	}
	if got := custom.Pair(); got != "fleet/tsb/pair.yaml" {
		t.Errorf("custom root: Pair() = %q", got)
	}
}

func TestNewLayoutRejectsRootsOutsideTheRepo(t *testing.T) {
	t.Parallel()
	for _, root := range []string{"/mpha", "..", "../x", "a/../../b", ".", "mpha/", "a//b"} {
		if _, err := gitops.NewLayout(root); err == nil || !strings.Contains(err.Error(), "repository root") {
			t.Errorf("NewLayout(%q): err = %v, want a refusal", root, err)
		}
	}
}

func TestValidateNames(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		cluster, sec bool // valid as a cluster name, as a secret name
	}{
		{"east", true, true},
		{"mp-2", true, true},
		{"tsb-iam-jwks", true, true},
		{"iam.signing", false, true},
		{"East", false, false},
		{"../etc", false, false},
		{"a/b", false, false},
		{"", false, false},
		{"x" + strings.Repeat("y", 63), false, true},
	}
	for _, tc := range tests {
		if err := gitops.ValidateClusterName(tc.name); (err == nil) != tc.cluster {
			t.Errorf("ValidateClusterName(%q) = %v, want valid=%v", tc.name, err, tc.cluster)
		}
		if err := gitops.ValidateSecretName(tc.name); (err == nil) != tc.sec {
			t.Errorf("ValidateSecretName(%q) = %v, want valid=%v", tc.name, err, tc.sec)
		}
	}
}

func TestCheckOwned(t *testing.T) {
	t.Parallel()
	if err := gitops.CheckOwned("mpha/pair.yaml", nil); err != nil {
		t.Errorf("a new file: %v", err)
	}
	if err := gitops.CheckOwned("mpha/pair.yaml", []byte(gitops.Header+"active: east\n")); err != nil {
		t.Errorf("an owned file: %v", err)
	}
	err := gitops.CheckOwned("mpha/pair.yaml", []byte("active: east\n"))
	if !errors.Is(err, gitops.ErrNotOwned) || !strings.Contains(err.Error(), "mpha/pair.yaml") {
		t.Errorf("a foreign file: err = %v, want ErrNotOwned naming it", err)
	}
}
