package values_test

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops/values"
	"github.com/mpha-dev/mpha/internal/golden"
)

func westOverrides() values.Overrides {
	return values.Overrides{
		"image.registry": "registry.west.example.com",
		"spec.hub":       "registry.west.example.com/tsb",
		"operator.deployment.tolerations": []any{
			map[string]any{"key": "dedicated", "operator": "Equal", "value": "tsb-west", "effect": "NoSchedule"},
		},
		"spec.components.frontEnvoy.kubeSpec.service.annotations": map[string]any{"lb.example.com/zone": "west"},
	}
}

func load(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := values.ParseFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The seed's runbook: dr_mp_values.yaml is source_mp_values.yaml with spec kept and secrets dropped.
func TestRenderSourceValues(t *testing.T) {
	src := load(t, "testdata/source_mp_values.yaml")
	before, _ := values.Marshal(src)
	r, err := values.Render(src, values.Options{Overrides: westOverrides()})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Stripped) != 0 {
		t.Errorf("stripped %v from values that hold no credential outside secrets", r.Stripped)
	}
	got := r.Values
	if _, ok := got["secrets"]; ok {
		t.Error("secrets survived rendering")
	}
	out, err := values.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"fixture-", "secrets", "adminPassword"} {
		if bytes.Contains(out, []byte(leak)) {
			t.Errorf("rendered values contain %q", leak)
		}
	}
	// Only the overridden paths differ from the source's spec, image, operator and certManager.
	src2 := load(t, "testdata/source_mp_values.yaml")
	delete(src2, "secrets")
	want := []string{"image.registry", "operator.deployment.tolerations", "spec.components.frontEnvoy.kubeSpec", "spec.hub"}
	if diff := cmp.Diff(want, values.Diff(src2, got)); diff != "" {
		t.Errorf("differences from the source (-want +got):\n%s", diff)
	}
	if after, _ := values.Marshal(src); !bytes.Equal(before, after) {
		t.Error("Render modified its input")
	}
	golden.Assert(t, "testdata/dr_mp_values.golden.yaml", out)
}

// An unchanged release must never produce a commit: equal input, equal bytes, whatever the
// map iteration order.
func TestRenderIsDeterministic(t *testing.T) {
	first := ""
	for i := range 20 {
		got, err := values.Render(load(t, "testdata/source_mp_values.yaml"), values.Options{Overrides: westOverrides()})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := values.Marshal(got.Values)
		if i == 0 {
			first = string(b)
		} else if string(b) != first {
			t.Fatalf("run %d rendered different bytes", i)
		}
	}
}

func TestOverridesAllowList(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"image.registry", true},
		{"spec.hub", true},
		{"spec.imagePullSecrets", true},
		{"operator.deployment.affinity", true},
		{"spec.components.iamServer.kubeSpec.deployment.resources", true},
		{"certManager.clusterResourcesNamespace", true},
		{"image.tag", false},                          // the standby runs the active's version
		{"spec.dataStore.postgres.address", false},    // must equal the active's
		{"spec.tokenIssuer", false},                   // ditto
		{"spec.components.iamServer.replicas", false}, // outside kubeSpec
		{"secrets.tsb.adminPassword", false},
		{"spec..hub", false},
		{"spec", false},
	}
	for _, tc := range tests {
		err := values.Overrides{tc.path: "x"}.Validate()
		if (err == nil) != tc.ok {
			t.Errorf("%s: allowed %v, want %v (%v)", tc.path, err == nil, tc.ok, err)
		}
		if err != nil && !strings.Contains(err.Error(), tc.path) {
			t.Errorf("%s: error %q does not name the path", tc.path, err)
		}
	}
}

func TestRenderRefusesOverridingThroughAScalar(t *testing.T) {
	_, err := values.Render(map[string]any{"spec": map[string]any{"hub": "x", "components": "oops"}},
		values.Options{Overrides: values.Overrides{"spec.components.frontEnvoy.kubeSpec.service": map[string]any{}}})
	if err == nil || !strings.Contains(err.Error(), "spec.components is a string") {
		t.Fatalf("got %v", err)
	}
}

func TestParseFileRefusesBadInput(t *testing.T) {
	bomb := `a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`
	tests := []struct {
		name, doc, want string
	}{
		{"yaml bomb", bomb, "decoding values"},
		{"a list", "- a\n- b\n", "must be a map"},
		{"a scalar", "hello\n", "must be a map"},
		{"bad yaml", "spec: [\n", "decoding values"},
		{"too big", "a: " + strings.Repeat("x", values.MaxFileSize) + "\n", "more than the"},
		// Helm would keep the last silently: one of two passwords, or two hubs, is a mistake.
		{"duplicate key", "spec:\n  hub: a\n  hub: b\n", `key "hub" already set in map`},
		{"duplicate key in JSON", `{"image": {"registry": "a", "registry": "b"}}`, `key "registry" already set in map`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := values.ParseFile([]byte(tc.doc))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if v, err := values.ParseFile([]byte("# nothing\n")); err != nil || len(v) != 0 {
		t.Errorf("an empty file: %v, %v", v, err)
	}
}

func TestDiffComparesNumbersByValue(t *testing.T) {
	a := map[string]any{"spec": map[string]any{"port": float64(443), "x": []any{1}}, "only": 1}
	b := map[string]any{"spec": map[string]any{"port": int64(443), "x": []any{2}}, "extra": true}
	if diff := cmp.Diff([]string{"extra", "only", "spec.x"}, values.Diff(a, b)); diff != "" {
		t.Error(diff)
	}
	if d := values.Diff(a, a); d != nil {
		t.Errorf("a differs from itself: %v", d)
	}
}

func TestSetReplicas(t *testing.T) {
	v := map[string]any{"spec": map[string]any{"hub": "h"}}
	if err := values.SetReplicas(v, 0); err != nil {
		t.Fatal(err)
	}
	for _, p := range values.ReplicaPaths() {
		if got, ok := values.Get(v, p); !ok || got != int64(0) {
			t.Errorf("%s = %v", p, got)
		}
	}
}

// Fuzz the renderer on arbitrary values files: it never panics, rendering the same input twice
// gives the same bytes (what keeps Git quiet), its output reads back as the same values, and
// holds nothing a second rendering would strip.
// (Byte-level idempotence does not hold for odd keys: the YAML encoder orders numeric-looking
// keys differently once they have been through a round trip; the values are equal.)
func FuzzRender(f *testing.F) {
	src, err := os.ReadFile("testdata/source_mp_values.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(src)
	f.Add([]byte("spec: {components: 1}\nimage: {registry: [1]}\n"))
	f.Add([]byte("secrets: {a: b}\n"))
	f.Add([]byte("spec: {dataStore: {postgres: {password: p1}}, identityProvider: {oidc: {clientSecret: c1}}}\n"))
	f.Add([]byte("operator: {deployment: {env: [{name: DB_PASSWORD, value: p2}, {name: LOG, value: debug}]}}\n"))
	f.Add([]byte("spec: {tokenIssuer: {jwt: {signingKeysSecret: tsb-certs, issuers: [{name: a, signingKey: tls.key}]}}}\n"))
	f.Add([]byte("spec: {x: {tls.key: \"-----BEGIN PRIVATE KEY-----\\nMII\\n\", dsn: \"postgres://u:pw@h/db\", tokens: [a, 1, true]}}\n"))
	f.Fuzz(func(t *testing.T, doc []byte) {
		v, err := values.ParseFile(doc)
		if err != nil {
			return
		}
		ov := values.Overrides{"image.registry": "r.example.com", "spec.hub": "h"}
		r, err := values.Render(v, values.Options{Overrides: ov})
		if err != nil {
			return // e.g. spec is a scalar: refused with an error
		}
		once := r.Values
		if _, ok := once["secrets"]; ok {
			t.Fatal("secrets survived")
		}
		b1, err := values.Marshal(once)
		if err != nil {
			t.Fatal(err)
		}
		again, err := values.ParseFile(b1)
		if err != nil {
			t.Fatalf("own output does not parse: %v\n%s", err, b1)
		}
		if d := values.Diff(once, again); d != nil {
			t.Fatalf("own output reads back different at %v:\n%s", d, b1)
		}
		if r2, err := values.Render(again, values.Options{SecretValues: values.SecretsRefuse}); err != nil {
			t.Fatalf("own output still holds credentials: %v", err)
		} else if len(r2.Stripped) != 0 {
			t.Fatalf("stripped %v in refuse mode", r2.Stripped)
		}
		twice, err := values.Render(v, values.Options{Overrides: ov})
		if err != nil {
			t.Fatal(err)
		}
		b2, _ := values.Marshal(twice.Values)
		if !bytes.Equal(b1, b2) {
			t.Fatalf("not deterministic:\n%s\n---\n%s", b1, b2)
		}
	})
}
