package canonyaml_test

import (
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/internal/canonyaml"
)

// The keys the fuzzer found: sigs.k8s.io/yaml ordered them differently from run to run.
func TestStableOrderAndRoundTrip(t *testing.T) {
	in := map[string]any{"170": 0, "1B": nil, "2": 0, "registry": "r", "true": "yes", "list": []any{"a", map[string]any{"b": 1, "a": "170"}}, "empty": map[string]any{}}
	first, err := canonyaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	const want = `"170": 0
1B: null
"2": 0
empty: {}
list:
  - a
  - a: "170"
    b: 1
registry: r
"true": "yes"
`
	if string(first) != want {
		t.Fatalf("got:\n%s\nwant:\n%s", first, want)
	}
	for range 50 {
		again, _ := canonyaml.Marshal(in)
		if string(again) != string(first) {
			t.Fatalf("order changed:\n%s", again)
		}
	}
	var back map[string]any
	if err := yaml.Unmarshal(first, &back); err != nil {
		t.Fatal(err)
	}
	if back["true"] != "yes" || back["170"] != float64(0) || back["list"].([]any)[1].(map[string]any)["a"] != "170" {
		t.Errorf("types lost in the round trip: %#v", back)
	}
}

// Strings YAML 1.1 readers (Helm, sigs.k8s.io/yaml) would turn into something else stay strings.
func TestYAML11Hazards(t *testing.T) {
	hazards := []string{"yes", "No", "on", "OFF", "y", "n", "~", "null", "1:20", "0777", "1_000", "0x1F", ".inf", "-.5", "2026-11-22", "", "a: b", "# c", "- d", "multi\nline", "tab\there", "'", `"`, "@at", "*star", "&amp", "!bang", "%pct", "170"}
	in := map[string]any{}
	for i, h := range hazards {
		in[string(rune('a'+i%26))+string(rune('a'+i/26))] = h
	}
	b, err := canonyaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := yaml.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	for k, v := range in {
		if back[k] != v {
			t.Errorf("%q read back as %#v:\n%s", v, back[k], b)
		}
	}
}
