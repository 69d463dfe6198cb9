package seal_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
	"github.com/mpha-dev/mpha/internal/testrig"
)

func TestSecretFacts(t *testing.T) {
	root := sealtest.NewCA(t, "root")
	leaf, leafKey := root.Leaf(t, "mp1.example.com", "active.example.com")
	inter := sealtest.NewCA(t, "intermediate") // stands in for a chain's second certificate
	tests := []struct {
		name string
		data map[string][]byte
		want seal.Facts
	}{
		{"kid key", map[string][]byte{"kid": []byte(" k1\n"), "private.key": []byte("x")}, seal.Facts{Kids: []string{"k1"}}},
		{"empty kid key", map[string][]byte{"kid": []byte(" ")}, seal.Facts{}},
		{"JWKS", map[string][]byte{"a.json": []byte(`{"keys":[{"kid":"b"},{"kid":"a"},{"kid":""}]}`), "b.json": []byte(`{"keys":[{"kid":"a"}]}`), "c": []byte("not json")},
			seal.Facts{Kids: []string{"a", "b"}}},
		{"kid key wins over a JWKS", map[string][]byte{"kid": []byte("k"), "jwks": []byte(`{"keys":[{"kid":"j"}]}`)}, seal.Facts{Kids: []string{"k"}}},
		{"a kid outside the signing keys is not one", map[string][]byte{"kid": []byte("k")}, seal.Facts{}},
		{"ca.crt", map[string][]byte{"tls.crt": leaf, "tls.key": leafKey, "ca.crt": root.PEM},
			seal.Facts{CA: root.Fingerprint(), DNSNames: []string{"active.example.com", "mp1.example.com"}, Leaf: true}},
		{"ca.crt bundle: the last certificate", map[string][]byte{"ca.crt": append(append([]byte{}, inter.PEM...), root.PEM...)}, seal.Facts{CA: root.Fingerprint()}},
		{"chain without ca.crt: its last certificate", map[string][]byte{"tls.crt": append(append([]byte{}, leaf...), root.PEM...)},
			seal.Facts{CA: root.Fingerprint(), DNSNames: []string{"active.example.com", "mp1.example.com"}, Leaf: true}},
		{"leaf only: no CA", map[string][]byte{"tls.crt": leaf}, seal.Facts{DNSNames: []string{"active.example.com", "mp1.example.com"}, Leaf: true}},
		{"bad tls.crt", map[string][]byte{"tls.crt": []byte("garbage")}, seal.Facts{Problem: "tls.crt: data does not contain any valid RSA or ECDSA certificates"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			name := seal.SigningKeySecret
			if tc.name == "a kid outside the signing keys is not one" {
				name = "postgres-credentials"
			}
			s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: tc.data}
			got, err := seal.SecretFacts(hmacKey, s)
			if err != nil {
				t.Fatal(err)
			}
			tc.want.Present = true
			tc.want.Digest, _ = seal.Digest(hmacKey, s)
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("facts (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := seal.SecretFacts([]byte("short"), &corev1.Secret{}); !errors.Is(err, seal.ErrShortKey) {
		t.Errorf("a short key: err = %v", err)
	}
}

// The exporter's annotations read back from a committed SealedSecret give the live facts, less
// what is not annotated.
func TestFactsFromSealed(t *testing.T) {
	leaks := &sealtest.Leaks{}
	ca := sealtest.NewCA(t, "root")
	certPEM, _ := testrig.SealingKeyPair(t, "west")
	cert, err := seal.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range (sealtest.Site{Namespace: "tsb", SigningKid: "sig", JWKSKid: "jw", CA: ca, DNSNames: []string{"b.example.com", "a.example.com"}}).Secrets(t, leaks) {
		live, err := seal.SecretFacts(hmacKey, s)
		if err != nil {
			t.Fatal(err)
		}
		ss, err := seal.Seal(cert, hmacKey, s)
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range seal.Annotations(live) {
			ss.Annotations[k] = v
		}
		file, err := seal.Marshal(ss)
		if err != nil {
			t.Fatal(err)
		}
		leaks.Scan(t, s.Name+"'s SealedSecret annotations", strings.Join(mapValues(ss.Annotations), "\n"))
		got, err := seal.FactsFromSealed(file)
		if err != nil {
			t.Fatal(err)
		}
		want := live
		want.Sealed = true
		want.Leaf = len(live.DNSNames) > 0
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%s: facts from the SealedSecret (-live +sealed):\n%s", s.Name, diff)
		}
	}
	if got := seal.Annotations(seal.Facts{Present: true, Kids: []string{"a", "b"}}); !cmp.Equal(got, map[string]string{seal.KidAnnotation: "a,b"}) {
		t.Errorf("Annotations kept empty facts: %v", got)
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func TestFactsFromSealedRefuses(t *testing.T) {
	for name, file := range map[string]string{
		"not YAML":       "{",
		"another kind":   "kind: Secret\n",
		"bad digest":     "kind: SealedSecret\nmetadata: {annotations: {mpha.dev/data-hmac: sha1:00}}\n",
		"bad CA":         "kind: SealedSecret\nmetadata: {annotations: {mpha.dev/ca-sha256: xyz}}\n",
		"kid with space": "kind: SealedSecret\nmetadata: {annotations: {mpha.dev/kid: \"a b\"}}\n",
		"empty DNS name": "kind: SealedSecret\nmetadata: {annotations: {mpha.dev/dns-names: \"a,,b\"}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := seal.FactsFromSealed([]byte(file)); err == nil {
				t.Error("accepted")
			}
		})
	}
}

// FactsFromSealed reads files from Git: it never panics, and what it accepts survives Annotations.
func FuzzFactsFromSealed(f *testing.F) {
	f.Add([]byte("kind: SealedSecret\nmetadata:\n  name: s\n  annotations:\n    mpha.dev/kid: a,b\n    mpha.dev/ca-sha256: " + strings.Repeat("0f", 32) + "\n    mpha.dev/dns-names: x.example.com\n    mpha.dev/data-hmac: hmac-sha256:" + strings.Repeat("ab", 32) + "\n"))
	f.Add([]byte("kind: SealedSecret\n"))
	f.Add([]byte("kind: SealedSecret\nmetadata: {annotations: {mpha.dev/kid: \"\"}}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := seal.FactsFromSealed(b)
		if err != nil {
			return
		}
		file := "kind: SealedSecret\nmetadata:\n  annotations:\n"
		ann := seal.Annotations(got)
		if got.Digest != "" {
			ann[seal.DigestAnnotation] = got.Digest
		}
		for k, v := range ann {
			file += "    " + k + ": '" + strings.ReplaceAll(v, "'", "''") + "'\n"
		}
		again, err := seal.FactsFromSealed([]byte(file))
		if err != nil {
			t.Fatalf("re-reading %q: %v", file, err)
		}
		if diff := cmp.Diff(got, again, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}
