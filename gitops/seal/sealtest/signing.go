package sealtest

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// SigningKeyData is the data key of iam-signing-key that holds the private key (tsb-mp-ha.md §2:
// the Terraform example writes private.key; only the kid key is documented).
const SigningKeyData = "private.key"

// SigningAlgorithm is the JWS algorithm of the keys NewSigningKey makes. The domain notes do not
// say which key type TSB's IAM generates (tokenIssuer.jwt.issuers[].algorithm is a setting; no
// value is given): ECDSA P-256 is chosen because generating one costs microseconds in every test
// that builds a site, where RSA 2048 costs tens to hundreds of milliseconds on a loaded machine.
// The MP stand-in (internal/testrig) verifies RSA keys as well.
const SigningAlgorithm = jose.ES256

// SigningKey is an IAM signing key: what iam-signing-key's private.key holds, and its public part
// for tsb-iam-jwks.
type SigningKey struct {
	Key *ecdsa.PrivateKey
	// PEM is the private key as PKCS#8 PEM ("PRIVATE KEY"), a secret value.
	PEM []byte
}

// NewSigningKey makes a fresh ECDSA P-256 signing key (SigningAlgorithm).
func NewSigningKey(t testing.TB) SigningKey {
	t.Helper()
	k := newKey(t)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return SigningKey{Key: k, PEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})}
}

// JWKS is a JSON Web Key Set holding the key's public part under kid: what tsb-iam-jwks'
// jwks.json holds. It carries nothing secret.
func (k SigningKey) JWKS(t testing.TB, kid string) []byte {
	t.Helper()
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{
		Key: &k.Key.PublicKey, KeyID: kid, Algorithm: string(SigningAlgorithm), Use: "sig",
	}}}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
