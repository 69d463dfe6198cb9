package sealtest_test

import (
	"crypto"
	"encoding/json"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
	"k8s.io/client-go/util/keyutil"

	"github.com/mpha-dev/mpha/gitops/seal/sealtest"
)

// iam-signing-key holds a real private key under the site's kid, tsb-iam-jwks its public part
// under the JWKS kid, and the private key is remembered as a secret value.
func TestSiteSigningKeyAndJWKSMatch(t *testing.T) {
	leaks := &sealtest.Leaks{}
	site := sealtest.Site{Namespace: "tsb", SigningKid: "sig-1", JWKSKid: "jwks-1", CA: sealtest.NewCA(t, "root"), DNSNames: []string{"mp.example.com"}}
	byName := map[string]map[string][]byte{}
	for _, s := range site.Secrets(t, leaks) {
		byName[s.Name] = s.Data
	}
	signing := byName["iam-signing-key"]
	if string(signing["kid"]) != "sig-1" {
		t.Errorf("iam-signing-key kid = %q, want sig-1", signing["kid"])
	}
	priv, err := keyutil.ParsePrivateKeyPEM(signing[sealtest.SigningKeyData])
	if err != nil {
		t.Fatalf("iam-signing-key %s: %v", sealtest.SigningKeyData, err)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(byName["tsb-iam-jwks"]["jwks.json"], &set); err != nil {
		t.Fatalf("tsb-iam-jwks: %v", err)
	}
	keys := set.Key("jwks-1")
	if len(keys) != 1 || !keys[0].IsPublic() || keys[0].Algorithm != string(sealtest.SigningAlgorithm) {
		t.Fatalf("tsb-iam-jwks keys under jwks-1: %+v, want one public %s key", keys, sealtest.SigningAlgorithm)
	}
	pub := priv.(crypto.Signer).Public().(interface{ Equal(crypto.PublicKey) bool })
	if !pub.Equal(keys[0].Key) {
		t.Error("tsb-iam-jwks' key is not the public part of iam-signing-key's")
	}

	probe := &recorder{}
	leaks.Scan(probe, "a log", "key: "+string(signing[sealtest.SigningKeyData]))
	if !probe.failed {
		t.Error("the private key is not remembered as a secret value")
	}
}

// recorder notes whether Scan reported anything, instead of failing the test.
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Helper()               {}
func (r *recorder) Errorf(string, ...any) { r.failed = true }
