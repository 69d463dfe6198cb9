// Package seal turns a Kubernetes Secret and the peer cluster's sealed-secrets certificate into
// the SealedSecret mpha commits (docs/design.md §4), with sealed-secrets' own code and strict
// scope, and decides whether a secret changed without looking at the random ciphertext: the
// SealedSecret carries a keyed HMAC-SHA256 of the data (the key only the agents hold) and the
// fingerprint of the certificate it was sealed for. Git never sees plaintext or an unkeyed hash.
// It also reads a secret's public facts (kids, CA fingerprint, leaf SANs, keyed digest, whether
// sealed-secrets may manage it), which the exporter writes as annotations and the standby's
// readiness checks read back (Facts, Annotations, FactsFromSealed).
// No network, no clients: the caller passes the Secret, the certificate and the key.
package seal

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	ssv1alpha1 "github.com/bitnami-labs/sealed-secrets/pkg/apis/sealedsecrets/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/gitops"
)

// Annotations mpha sets on the SealedSecret (not on the Secret it unseals to).
const (
	// DigestAnnotation holds "hmac-sha256:<hex>" of the Secret's type and data under the agents' key.
	DigestAnnotation = "mpha.dev/data-hmac"
	// CertAnnotation holds the SHA-256 fingerprint of the certificate the data is sealed for.
	CertAnnotation = "mpha.dev/sealed-for"
)

// MinKeyLen is the shortest HMAC key accepted (bytes).
const MinKeyLen = 32

// ErrShortKey reports an HMAC key too short to resist guessing.
var ErrShortKey = fmt.Errorf("the HMAC key must be at least %d bytes", MinKeyLen)

// Cert is a parsed sealing certificate.
type Cert struct {
	Key *rsa.PublicKey
	// Fingerprint is the SHA-256 of the certificate's DER, hex: public, it names the certificate.
	Fingerprint string
	// NotBefore and NotAfter bound the certificate's validity (see Validity).
	NotBefore, NotAfter time.Time
}

// Validity errors, from Cert.Validity.
var (
	ErrCertExpired     = errors.New("the sealing certificate has expired")
	ErrCertNotYetValid = errors.New("the sealing certificate is not valid yet")
)

// Validity says whether now lies within the certificate's validity: nil, or an error wrapping
// ErrCertExpired or ErrCertNotYetValid with the dates. The sealed-secrets controller decrypts
// with its private key whatever the dates, so sealing still works and callers warn rather than
// refuse; but a certificate out of its dates is one its controller has not renewed (a stale
// copy in Git, a controller gone, a clock off), so the data may never be unsealed.
func (c Cert) Validity(now time.Time) error {
	const day = "2006-01-02 15:04 MST"
	switch {
	case now.After(c.NotAfter):
		return fmt.Errorf("%w: it was valid until %s (%s ago)", ErrCertExpired, c.NotAfter.UTC().Format(day), now.Sub(c.NotAfter).Round(time.Minute))
	case now.Before(c.NotBefore):
		return fmt.Errorf("%w: it is valid from %s (in %s)", ErrCertNotYetValid, c.NotBefore.UTC().Format(day), c.NotBefore.Sub(now).Round(time.Minute))
	}
	return nil
}

// MaxObjectBytes is the largest SealedSecret mpha seals or writes: 1 MiB, what the API server
// takes for a Secret's data and the size Kubernetes documents for an object kept in etcd (whose
// default request limit, 1.5 MiB, must also hold the object's metadata and managed fields).
// Sealed data is about 4/3 of the plaintext, so a Secret of over ~750 KiB cannot be sealed.
const MaxObjectBytes = 1 << 20

// ErrTooLarge reports a Secret whose SealedSecret the API server would refuse.
var ErrTooLarge = errors.New("too large for the Kubernetes API server")

// ParseCert reads the PEM certificate the sealed-secrets controller serves at /v1/cert.pem.
func ParseCert(pemBytes []byte) (Cert, error) {
	certs, err := certutil.ParseCertsPEM(pemBytes)
	if err != nil {
		return Cert{}, fmt.Errorf("parsing sealing certificate: %w", err)
	}
	pub, ok := certs[0].PublicKey.(*rsa.PublicKey)
	if !ok {
		return Cert{}, fmt.Errorf("parsing sealing certificate: it holds a %T, want an RSA key", certs[0].PublicKey)
	}
	sum := sha256.Sum256(certs[0].Raw)
	return Cert{Key: pub, Fingerprint: hex.EncodeToString(sum[:]), NotBefore: certs[0].NotBefore, NotAfter: certs[0].NotAfter}, nil
}

// Digest returns the keyed digest of s's type and data (StringData folded in, as the API server
// would), in the DigestAnnotation's format. Map order does not matter.
func Digest(key []byte, s *corev1.Secret) (string, error) {
	if len(key) < MinKeyLen {
		return "", ErrShortKey
	}
	data := maps.Clone(s.Data)
	if data == nil {
		data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	m := hmac.New(sha256.New, key)
	field := func(b []byte) { // length-prefixed: no two inputs encode alike
		_ = binary.Write(m, binary.BigEndian, uint64(len(b)))
		m.Write(b)
	}
	field([]byte(s.Type))
	for _, k := range slices.Sorted(maps.Keys(data)) {
		field([]byte(k))
		field(data[k])
	}
	return "hmac-sha256:" + hex.EncodeToString(m.Sum(nil)), nil
}

// Seal seals s for cert with strict scope (it unseals only as s's name in s's namespace). The
// template keeps s's type, labels and annotations (less kubectl's last-applied copy and any scope
// annotation); the SealedSecret carries the digest, the certificate's fingerprint and mpha's
// managed-by label. A nil key (offline sealing by hand) leaves the digest out: the agent then
// re-seals the secret on its next pass.
func Seal(cert Cert, key []byte, s *corev1.Secret) (*ssv1alpha1.SealedSecret, error) {
	if err := checkSealedSize(cert, s); err != nil {
		return nil, err
	}
	var digest string
	if key != nil {
		d, err := Digest(key, s)
		if err != nil {
			return nil, err
		}
		digest = d
	}
	clean := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: s.Name, Namespace: s.Namespace,
			Labels: maps.Clone(s.Labels), Annotations: maps.Clone(s.Annotations),
		},
		Type: s.Type, Data: s.Data, StringData: s.StringData,
	}
	for _, a := range []string{ssv1alpha1.SealedSecretClusterWideAnnotation, ssv1alpha1.SealedSecretNamespaceWideAnnotation} {
		delete(clean.Annotations, a)
	}
	ss, err := ssv1alpha1.NewSealedSecret(serializer.NewCodecFactory(runtime.NewScheme()), cert.Key, clean)
	if err != nil {
		return nil, fmt.Errorf("sealing %s/%s: %w", s.Namespace, s.Name, err)
	}
	ss.TypeMeta = metav1.TypeMeta{APIVersion: ssv1alpha1.SchemeGroupVersion.String(), Kind: "SealedSecret"}
	if ss.Annotations == nil {
		ss.Annotations = map[string]string{}
	}
	if digest != "" {
		ss.Annotations[DigestAnnotation] = digest
	}
	ss.Annotations[CertAnnotation] = cert.Fingerprint
	ss.Labels = map[string]string{gitops.ManagedByLabel: gitops.ManagedByValue}
	return ss, nil
}

// checkSealedSize refuses, before any encryption, a Secret whose sealed data alone would pass
// MaxObjectBytes. Sealing is exact in size: each value becomes, base64-encoded, a 2-byte length,
// the RSA-OAEP-encrypted session key (the modulus' size) and the AES-GCM ciphertext (the value
// and a 16-byte tag); a key in both Data and StringData is sealed once, from StringData.
func checkSealedSize(cert Cert, s *corev1.Secret) error {
	values := make(map[string]int, len(s.Data)+len(s.StringData))
	for k, v := range s.Data {
		values[k] = len(v)
	}
	for k, v := range s.StringData {
		values[k] = len(v)
	}
	plain, sealed := 0, 0
	for k, n := range values {
		plain += n
		sealed += len(k) + base64.StdEncoding.EncodedLen(2+cert.Key.Size()+n+16)
	}
	if sealed <= MaxObjectBytes {
		return nil
	}
	return fmt.Errorf("sealing %s/%s: its data is %d bytes, which sealed take %d bytes, over the %d bytes (1 MiB) the API server takes for an object: %w",
		s.Namespace, s.Name, plain, sealed, MaxObjectBytes, ErrTooLarge)
}

// Marshal renders a SealedSecret as the file mpha commits: the ownership header, then YAML with
// sorted keys. A file over MaxObjectBytes is refused with ErrTooLarge: the API server would
// refuse the object Flux applies from it.
func Marshal(ss *ssv1alpha1.SealedSecret) ([]byte, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ss)
	if err != nil {
		return nil, fmt.Errorf("rendering SealedSecret %s: %w", ss.Name, err)
	}
	// An unset creationTimestamp renders as null: noise in Git.
	unstructured.RemoveNestedField(m, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(m, "spec", "template", "metadata", "creationTimestamp")
	b, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("rendering SealedSecret %s: %w", ss.Name, err)
	}
	out := append([]byte(gitops.Header), b...)
	if len(out) > MaxObjectBytes {
		return nil, fmt.Errorf("rendering SealedSecret %s/%s: it is %d bytes, over the %d bytes (1 MiB) the API server takes for an object: %w",
			ss.Namespace, ss.Name, len(out), MaxObjectBytes, ErrTooLarge)
	}
	return out, nil
}

// Stamp is what a committed SealedSecret says it holds.
type Stamp struct {
	Digest, CertFingerprint string
}

// ReadStamp reads the digest and certificate annotations of a committed SealedSecret file.
func ReadStamp(file []byte) (Stamp, error) {
	var ss ssv1alpha1.SealedSecret
	if err := yaml.Unmarshal(file, &ss); err != nil {
		return Stamp{}, fmt.Errorf("reading SealedSecret: %w", err)
	}
	if ss.Kind != "SealedSecret" {
		return Stamp{}, fmt.Errorf("reading SealedSecret: kind %q", ss.Kind)
	}
	st := Stamp{Digest: ss.Annotations[DigestAnnotation], CertFingerprint: ss.Annotations[CertAnnotation]}
	if !strings.HasPrefix(st.Digest, "hmac-sha256:") || st.CertFingerprint == "" {
		return Stamp{}, errors.New("reading SealedSecret: no mpha digest or certificate annotation")
	}
	return st, nil
}

// NeedsSealing reports whether s must be (re)sealed for cert given the committed file (nil when
// there is none): when the data or the certificate changed, or the file is not readable as ours.
func NeedsSealing(file []byte, cert Cert, key []byte, s *corev1.Secret) (bool, error) {
	digest, err := Digest(key, s)
	if err != nil {
		return false, err
	}
	if file == nil {
		return true, nil
	}
	st, err := ReadStamp(file)
	if err != nil {
		return true, nil // a file we cannot read as ours is re-sealed, not an error
	}
	return st.Digest != digest || st.CertFingerprint != cert.Fingerprint, nil
}
