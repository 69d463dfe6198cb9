package seal_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/gitops/seal"
)

func TestFactsFile(t *testing.T) {
	ca := strings.Repeat("ab", 32)
	in := map[string]seal.Facts{
		"iam-signing-key": {Present: true, Kids: []string{"iam-1"}, Digest: "hmac-sha256:" + strings.Repeat("0", 64)},
		"tsb-certs":       {Present: true, CA: ca, DNSNames: []string{"a.example.com", "mp.example.com"}, Leaf: true},
		"es-certs":        {},
	}
	b, err := seal.MarshalFactsFile("east", in)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hmac-sha256") {
		t.Errorf("the facts file carries a digest:\n%s", b)
	}
	cluster, out, err := seal.ParseFactsFile(b)
	if err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if cluster != "east" || len(out) != 3 {
		t.Fatalf("cluster %q, %d secrets", cluster, len(out))
	}
	if f := out["iam-signing-key"]; !f.Present || !f.Sealed || !slices.Equal(f.Kids, []string{"iam-1"}) || f.Digest != "" {
		t.Errorf("iam-signing-key: %+v", f)
	}
	if f := out["tsb-certs"]; f.CA != ca || !f.Leaf || !slices.Equal(f.DNSNames, []string{"a.example.com", "mp.example.com"}) {
		t.Errorf("tsb-certs: %+v", f)
	}
	if f, ok := out["es-certs"]; !ok || f.Present {
		t.Errorf("es-certs: %+v %v, want known absent", f, ok)
	}
	again, err := seal.MarshalFactsFile("east", in)
	if err != nil || string(again) != string(b) {
		t.Error("the facts file is not the same twice: every run would commit")
	}

	for name, bad := range map[string]string{
		"another kind":  "kind: ConfigMap\ncluster: east\n",
		"unknown field": "kind: MphaSecretFacts\ncluster: east\nsecrets: {}\nextra: 1\n",
		"not a CA hash": "kind: MphaSecretFacts\ncluster: east\nsecrets:\n  tsb-certs:\n    present: true\n    facts: {mpha.dev/ca-sha256: nope}\n",
		"a kid with a space": "kind: MphaSecretFacts\ncluster: east\nsecrets:\n  iam-signing-key:\n    present: true\n" +
			"    facts: {mpha.dev/kid: \"a b\"}\n",
	} {
		if _, _, err := seal.ParseFactsFile([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
