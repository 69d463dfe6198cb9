package strictyaml_test

import (
	"errors"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/internal/strictyaml"
)

type probe struct {
	Name string `json:"name"`
	Port int32  `json:"port"`
}

type doc struct {
	metav1.TypeMeta `json:",inline"`
	Interval        metav1.Duration   `json:"interval"`
	Count           int               `json:"count"`
	Ratio           float64           `json:"ratio"`
	Enabled         bool              `json:"enabled"`
	Names           []string          `json:"names"`
	Probes          []probe           `json:"probes"`
	Limits          map[string]uint16 `json:"limits"`
	Nested          struct {
		Timeout *metav1.Duration `json:"timeout"`
	} `json:"nested"`
}

func TestUnmarshalNamesTheField(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc string
		want      []string
	}{
		{"a duration that does not parse", "interval: banana\n", []string{`interval: invalid duration "banana"`}},
		{"a duration given as a number", "interval: 5\n", []string{`interval: want a duration such as "10s" or "1m30s", got the number 5`}},
		{"a nested duration", "nested: {timeout: 3 parsecs}\n", []string{`nested.timeout: unknown unit " parsecs" in duration "3 parsecs"`}},
		{"a string for an integer, not echoed", "count: hunter2\n", []string{"count: want an integer (64 bits), got a string"}},
		{"a fraction for an integer", "count: 1.5\n", []string{"count: want an integer (64 bits), got the number 1.5"}},
		{"an overflow", "probes: [{name: a, port: 99999999999}]\n", []string{"probes[0].port: want an integer (32 bits), got the number 99999999999"}},
		{"a list for a bool", "enabled: [1]\n", []string{"enabled: want true or false, got a list"}},
		{"a map for a list", "names: {a: b}\n", []string{"names: want a list, got a map"}},
		{"a list element", "names: [a, {b: c}]\n", []string{"names[1]: want a string, got a map"}},
		{"a map value", "limits: {cpu: -1}\n", []string{"limits.cpu: want a non-negative integer (16 bits), got the number -1"}},
		{"an inline field", "kind: [x]\n", []string{"kind: want a string, got a list"}},
		{"every bad value, in field order", "ratio: x\ninterval: soon\ncount: z\n",
			[]string{`interval: invalid duration "soon"`, "count: want an integer (64 bits), got a string", "ratio: want a number, got a string"}},
		{"not a map", "- a\n", []string{"the document: want a map, got a list"}},
		{"an unknown key", "colour: blue\n", []string{`unknown field "colour"`}},
		{"a mis-cased key", "Interval: 1s\n", []string{`unknown field "Interval"`}},
		{"a duplicate key", "count: 1\ncount: 2\n", []string{`key "count" already set in map`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var d doc
			err := strictyaml.Unmarshal([]byte(tc.doc), &d)
			if err == nil {
				t.Fatal("accepted")
			}
			if got := err.Error(); got != strings.Join(tc.want, "\n") && len(tc.want) > 1 || !strings.Contains(got, tc.want[0]) {
				t.Errorf("got %q, want %q", got, strings.Join(tc.want, "\n"))
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), "Go struct field") {
				t.Errorf("the error echoes a string value or speaks Go: %q", err)
			}
		})
	}
	var fe *strictyaml.FieldError
	err := strictyaml.Unmarshal([]byte("interval: banana\n"), &doc{})
	if !errors.As(err, &fe) || fe.Path != "interval" {
		t.Errorf("got %#v, want a FieldError for interval", err)
	}
}

func TestUnmarshalAcceptsGoodValues(t *testing.T) {
	t.Parallel()
	var d doc
	if err := strictyaml.Unmarshal([]byte("kind: K\ninterval: 1m\ncount: 3\nratio: 0.5\nenabled: true\nnames: [a]\nprobes: [{name: p, port: 80}]\nlimits: {cpu: 2}\nnested: {timeout: 2s}\n"), &d); err != nil {
		t.Fatal(err)
	}
	if d.Kind != "K" || d.Interval.Duration.String() != "1m0s" || d.Nested.Timeout.Duration.String() != "2s" || d.Probes[0].Port != 80 || d.Limits["cpu"] != 2 {
		t.Errorf("decoded %+v", d)
	}
}
