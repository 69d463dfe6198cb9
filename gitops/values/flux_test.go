package values_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/golden"
)

func TestReleaseMarshalAndParse(t *testing.T) {
	r0, err := values.Render(load(t, "testdata/source_mp_values.yaml"), values.Options{Overrides: westOverrides()})
	if err != nil {
		t.Fatal(err)
	}
	vals := r0.Values
	r := values.Release{
		Name: "mp", Namespace: "tsb", Chart: "managementplane", Version: "1.12.3",
		RepositoryURL: values.DefaultChartRepository, RepositorySecret: "tsb-charts-auth", Values: vals,
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "testdata/helmrelease.golden.yaml", b)
	again, err := r.Marshal()
	if err != nil || string(again) != string(b) {
		t.Fatal("Marshal is not deterministic")
	}
	got, err := values.ParseRelease(b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

func TestReleaseValidate(t *testing.T) {
	_, err := values.Release{Name: "MP!", Namespace: "tsb", Chart: "managementplane", RepositoryURL: "ftp://x"}.Marshal()
	for _, want := range []string{`release name "MP!"`, "chart version must be set", `chart repository "ftp://x"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
	if _, err := values.ParseRelease([]byte("kind: HelmRelease\n")); err == nil {
		t.Error("a file without the mpha header was read as ours")
	}
}
