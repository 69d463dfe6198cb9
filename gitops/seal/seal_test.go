package seal_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	ssv1alpha1 "github.com/bitnami-labs/sealed-secrets/pkg/apis/sealedsecrets/v1alpha1"
	sscrypto "github.com/bitnami-labs/sealed-secrets/pkg/crypto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/yaml"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/seal"
	"github.com/mpha-dev/mpha/internal/golden"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// hmacKey is a fixed test key, so digests in golden files are stable.
var hmacKey = bytes.Repeat([]byte("k"), seal.MinKeyLen)

type peer struct {
	cert seal.Cert
	priv *rsa.PrivateKey
}

func newPeer(t testing.TB) peer {
	t.Helper()
	certPEM, priv := testrig.SealingKeyPair(t, "west")
	c, err := seal.ParseCert(certPEM)
	if err != nil {
		t.Fatal(err)
	}
	return peer{cert: c, priv: priv}
}

func (p peer) unseal(t *testing.T, file []byte) (*corev1.Secret, error) {
	t.Helper()
	var ss ssv1alpha1.SealedSecret
	if err := yaml.Unmarshal(file, &ss); err != nil {
		t.Fatal(err)
	}
	fp, err := sscrypto.PublicKeyFingerprint(&p.priv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return ss.Unseal(serializer.NewCodecFactory(runtime.NewScheme()), map[string]*rsa.PrivateKey{fp: p.priv})
}

func randomValue(t testing.TB) []byte {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte("plain-" + hex.EncodeToString(b))
}

func signingKey(t testing.TB) *corev1.Secret {
	t.Helper()
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name: "iam-signing-key", Namespace: "tsb", UID: "u-1", ResourceVersion: "42",
			Labels: map[string]string{"app": "iam"},
			Annotations: map[string]string{
				"kubectl.kubernetes.io/last-applied-configuration": `{"data":{"private.key":"leak"}}`,
				ssv1alpha1.SealedSecretNamespaceWideAnnotation:     "true",
				"tsb.tetrate.io/note":                              "kept",
			},
		},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{"private.key": randomValue(t), "kid": []byte("kid-2026-11")},
	}
}

func TestSealUnsealsToTheSameSecret(t *testing.T) {
	t.Parallel()
	p := newPeer(t)
	s := signingKey(t)
	file := sealFile(t, p, s)
	if !bytes.HasPrefix(file, []byte(gitops.Header)) {
		t.Error("the file lacks mpha's ownership header")
	}
	got, err := p.unseal(t, file)
	if err != nil {
		t.Fatalf("unsealing with the peer's key: %v", err)
	}
	for k, v := range s.Data {
		if !bytes.Equal(got.Data[k], v) {
			t.Errorf("key %s: unsealed value differs", k)
		}
	}
	if got.Type != corev1.SecretTypeOpaque || got.Labels["app"] != "iam" || got.Annotations["tsb.tetrate.io/note"] != "kept" {
		t.Errorf("type, labels or annotations lost: %v %v %v", got.Type, got.Labels, got.Annotations)
	}
	if _, ok := got.Annotations["kubectl.kubernetes.io/last-applied-configuration"]; ok {
		t.Error("kubectl's last-applied copy (which holds the plaintext) was kept")
	}
	if got.UID != "" || got.ResourceVersion != "" {
		t.Errorf("server fields copied into the template: uid %q rv %q", got.UID, got.ResourceVersion)
	}

	// Strict scope: the same ciphertext under another name does not unseal.
	renamed := bytes.Replace(file, []byte("name: iam-signing-key"), []byte("name: stolen"), -1)
	if _, err := p.unseal(t, renamed); err == nil {
		t.Error("a renamed SealedSecret unsealed: the scope is not strict")
	}
}

// The committed file holds neither a plaintext value, nor its base64, nor an unkeyed hash of it.
func TestSealedFileLeaksNothing(t *testing.T) {
	t.Parallel()
	p := newPeer(t)
	s := signingKey(t)
	file := sealFile(t, p, s)
	for k, v := range s.Data {
		sum := sha256.Sum256(v)
		for _, form := range [][]byte{v, []byte(base64.StdEncoding.EncodeToString(v)), []byte(hex.EncodeToString(sum[:]))} {
			if bytes.Contains(file, form) {
				t.Errorf("the sealed file holds %s in a recoverable form", k)
			}
		}
	}
	if bytes.Contains(file, []byte("leak")) {
		t.Error("the last-applied annotation's content reached the file")
	}
}

func TestDigest(t *testing.T) {
	t.Parallel()
	s := &corev1.Secret{Type: "Opaque", Data: map[string][]byte{"a": []byte("1"), "b": []byte("2")}}
	d1, err := seal.Digest(hmacKey, s)
	if err != nil {
		t.Fatal(err)
	}
	same := &corev1.Secret{Type: "Opaque", Data: map[string][]byte{"b": []byte("2")}, StringData: map[string]string{"a": "1"}}
	if d2, _ := seal.Digest(hmacKey, same); d2 != d1 {
		t.Error("StringData is not folded into Data as the API server would")
	}
	for name, other := range map[string]*corev1.Secret{
		"value":    {Type: "Opaque", Data: map[string][]byte{"a": []byte("1"), "b": []byte("3")}},
		"type":     {Type: "kubernetes.io/tls", Data: s.Data},
		"boundary": {Type: "Opaque", Data: map[string][]byte{"a": []byte("1b"), "": []byte("2")}},
	} {
		if d, _ := seal.Digest(hmacKey, other); d == d1 {
			t.Errorf("a different %s gives the same digest", name)
		}
	}
	if d, _ := seal.Digest(bytes.Repeat([]byte("x"), seal.MinKeyLen), s); d == d1 {
		t.Error("the digest does not depend on the key")
	}
	if _, err := seal.Digest([]byte("short"), s); !errors.Is(err, seal.ErrShortKey) {
		t.Errorf("a short key: err = %v, want ErrShortKey", err)
	}
}

func TestNeedsSealing(t *testing.T) {
	t.Parallel()
	p := newPeer(t)
	s := signingKey(t)
	file := sealFile(t, p, s)
	rotated := s.DeepCopy()
	rotated.Data["kid"] = []byte("kid-2026-12")
	tests := []struct {
		name   string
		file   []byte
		cert   seal.Cert
		secret *corev1.Secret
		want   bool
	}{
		{"no file yet", nil, p.cert, s, true},
		{"unchanged", file, p.cert, s, false},
		{"unchanged but other metadata", file, p.cert, func() *corev1.Secret { c := s.DeepCopy(); c.ResourceVersion = "43"; return c }(), false},
		{"rotated", file, p.cert, rotated, true},
		{"new peer certificate", file, newPeer(t).cert, s, true},
		{"not ours", []byte("kind: ConfigMap\n"), p.cert, s, true},
	}
	for _, tc := range tests {
		got, err := seal.NeedsSealing(tc.file, tc.cert, hmacKey, tc.secret)
		if err != nil || got != tc.want {
			t.Errorf("%s: NeedsSealing = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// The committed form, with what is random (ciphertext, certificate) masked.
func TestMarshalGolden(t *testing.T) {
	t.Parallel()
	p := newPeer(t)
	s := signingKey(t)
	s.Data = map[string][]byte{"private.key": []byte("fixed-for-the-digest"), "kid": []byte("kid-1")}
	file := sealFile(t, p, s)
	masked := regexp.MustCompile(`(?m)^(    (?:kid|private\.key): ).*$`).ReplaceAll(file, []byte("${1}<sealed>"))
	masked = bytes.ReplaceAll(masked, []byte(p.cert.Fingerprint), []byte("<cert-fingerprint>"))
	golden.Assert(t, "testdata/iam-signing-key.golden.yaml", masked)
}

func FuzzReadStamp(f *testing.F) {
	p := newPeer(f)
	ss, err := seal.Seal(p.cert, hmacKey, signingKey(f))
	if err != nil {
		f.Fatal(err)
	}
	file, _ := seal.Marshal(ss)
	f.Add(file)
	f.Add([]byte("kind: SealedSecret\nmetadata: {annotations: {mpha.dev/data-hmac: 'hmac-sha256:00'}}\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := seal.ReadStamp(b)
		if err == nil && (st.Digest == "" || st.CertFingerprint == "") {
			t.Errorf("an accepted stamp is incomplete: %+v", st)
		}
	})
}

// sealFile seals s for p and renders the file mpha would commit.
func sealFile(t testing.TB, p peer, s *corev1.Secret) []byte {
	t.Helper()
	ss, err := seal.Seal(p.cert, hmacKey, s)
	if err != nil {
		t.Fatal(err)
	}
	file, err := seal.Marshal(ss)
	if err != nil {
		t.Fatal(err)
	}
	return file
}

// Validity is judged at the now passed in: certificates made expired and not yet valid say so
// with their dates; one inside its dates passes.
func TestCertValidity(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	parse := func(notBefore time.Time, validFor time.Duration) seal.Cert {
		pem, _ := testrig.SealingKeyPairAt(t, "west", notBefore, validFor)
		c, err := seal.ParseCert(pem)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name string
		cert seal.Cert
		want error
		text string
	}{
		{"valid", parse(now.AddDate(0, -1, 0), 10*365*24*time.Hour), nil, ""},
		{"expired", parse(now.AddDate(-10, 0, 0), 24*time.Hour), seal.ErrCertExpired, "it was valid until 2016-12-02 12:00 UTC"},
		{"not valid yet", parse(now.Add(90*time.Minute), time.Hour), seal.ErrCertNotYetValid, "it is valid from 2026-12-01 13:30 UTC (in 1h30m0s)"},
	}
	for _, tc := range tests {
		err := tc.cert.Validity(now)
		if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.text)) {
			t.Errorf("%s: Validity = %v, want %v with %q", tc.name, err, tc.want, tc.text)
		}
	}
}

// A Secret whose sealed form the API server would refuse is refused with its size and the
// limit: before any encryption when its data alone is too large (the estimate is exact: a
// Secret just under it seals to data just under it), else when the rendered file is.
func TestSealRefusesWhatTheAPIServerWouldNot(t *testing.T) {
	t.Parallel()
	p := newPeer(t)
	big := func(n int) *corev1.Secret {
		s := signingKey(t)
		s.Data = map[string][]byte{"blob": bytes.Repeat([]byte("x"), n)}
		return s
	}
	_, err := seal.Seal(p.cert, hmacKey, big(10<<20))
	if !errors.Is(err, seal.ErrTooLarge) || !strings.Contains(err.Error(), "sealing tsb/iam-signing-key: its data is 10485760 bytes, which sealed take 13981384 bytes, over the 1048576 bytes (1 MiB)") {
		t.Errorf("a 10 MiB Secret: err = %v", err)
	}

	// The largest value whose sealed data fits: 3*(MaxObjectBytes-len("blob"))/4 base64 bytes
	// less the length, the RSA block and the GCM tag.
	fits := (seal.MaxObjectBytes-len("blob"))/4*3 - 2 - p.cert.Key.Size() - 16
	ss, err := seal.Seal(p.cert, hmacKey, big(fits))
	if err != nil {
		t.Fatalf("a Secret whose sealed data just fits: %v", err)
	}
	if got := len("blob") + len(ss.Spec.EncryptedData["blob"]); got > seal.MaxObjectBytes || got < seal.MaxObjectBytes-4 {
		t.Errorf("sealed data of %d bytes, want just under %d: the estimate is off", got, seal.MaxObjectBytes)
	}
	if _, err := seal.Seal(p.cert, hmacKey, big(fits+3)); !errors.Is(err, seal.ErrTooLarge) {
		t.Errorf("3 bytes more: err = %v, want ErrTooLarge", err)
	}
	// Its data fits, but with the template's metadata the file does not.
	_, err = seal.Marshal(ss)
	if !errors.Is(err, seal.ErrTooLarge) || !regexp.MustCompile(`rendering SealedSecret tsb/iam-signing-key: it is 10[0-9]{5} bytes, over the 1048576 bytes`).MatchString(err.Error()) {
		t.Errorf("a file over the limit: err = %v", err)
	}
}
