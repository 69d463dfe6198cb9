// Package sealtest makes what tests of TSB secrets need (their facts here, the readiness checks,
// doctor, the drill), generated in each test (no keys are checked in): a CA and its
// leaf certificates, the TSB secrets of a management plane, and a scan for leaked secret values.
// Test-only: never import it from the binary. It lives under gitops/seal so that seal's own tests
// can use it without reaching up into agent.
package sealtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CA is a certificate authority made for one test.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, what ca.crt holds.
	PEM []byte
}

// NewCA makes a self-signed root CA.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: c, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Fingerprint is the SHA-256 (hex) of the CA certificate.
func (ca *CA) Fingerprint() string {
	sum := sha256.Sum256(ca.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// Leaf issues a server and client certificate for dnsNames (the first is the common name) and
// returns it (the leaf only) and its key, PEM-encoded.
func (ca *CA) Leaf(t testing.TB, dnsNames ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t), Subject: pkix.Name{CommonName: dnsNames[0]}, DNSNames: dnsNames,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func newKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func serial(t testing.TB) *big.Int {
	t.Helper()
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Random returns prefix, a dash and 32 random hex digits: a value to find again if it leaks.
func Random(t testing.TB, prefix string) []byte {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte(prefix + "-" + hex.EncodeToString(b))
}

// Leaks remembers secret values; Scan fails the test where one, or its unkeyed SHA-256, appears.
type Leaks struct {
	values [][]byte
}

// Add remembers values.
func (l *Leaks) Add(values ...[]byte) { l.values = append(l.values, values...) }

// Scan reports each remembered value (or the hex SHA-256 of it) found in text.
func (l *Leaks) Scan(t testing.TB, where, text string) {
	t.Helper()
	lower := strings.ToLower(text)
	for _, v := range l.values {
		sum := sha256.Sum256(v)
		if strings.Contains(text, string(v)) {
			t.Errorf("%s holds a secret value (%.12s…)", where, v)
		}
		if strings.Contains(lower, hex.EncodeToString(sum[:])) {
			t.Errorf("%s holds the unkeyed SHA-256 of a secret value (%.12s…)", where, v)
		}
	}
}

// Site describes one management plane's TSB secrets.
type Site struct {
	Namespace string
	// SigningKid is iam-signing-key's kid; JWKSKid the kid in tsb-iam-jwks' JWKS.
	SigningKid, JWKSKid string
	// CA issues tsb-certs and xcp-central-cert and is their ca.crt.
	CA *CA
	// DNSNames are both leaf certificates' SANs.
	DNSNames []string
}

// Secrets returns the site's iam-signing-key (a kid data key and a private key in private.key,
// see NewSigningKey), tsb-iam-jwks (a JWKS of that key's public part under JWKSKid, no kid key),
// tsb-certs, xcp-central-cert and postgres-credentials. Every secret value is random and
// remembered in leaks (the JWKS holds only a public key).
func (s Site) Secrets(t testing.TB, leaks *Leaks) []*corev1.Secret {
	t.Helper()
	key := NewSigningKey(t)
	password := Random(t, "pg-password")
	leaks.Add(key.PEM, password)
	out := []*corev1.Secret{
		secret(s.Namespace, "iam-signing-key", map[string][]byte{"kid": []byte(s.SigningKid), SigningKeyData: key.PEM}),
		secret(s.Namespace, "tsb-iam-jwks", map[string][]byte{"jwks.json": key.JWKS(t, s.JWKSKid)}),
		secret(s.Namespace, "postgres-credentials", map[string][]byte{"username": []byte("tsb"), "password": password}),
	}
	for _, name := range []string{"tsb-certs", "xcp-central-cert"} {
		crt, key := s.CA.Leaf(t, s.DNSNames...)
		leaks.Add(key)
		out = append(out, secret(s.Namespace, name, map[string][]byte{"tls.crt": crt, "tls.key": key, "ca.crt": s.CA.PEM}))
	}
	return out
}

func secret(ns, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Type: corev1.SecretTypeOpaque, Data: data}
}
