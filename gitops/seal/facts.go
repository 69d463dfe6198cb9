package seal

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"

	ssv1alpha1 "github.com/bitnami-labs/sealed-secrets/pkg/apis/sealedsecrets/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	certutil "k8s.io/client-go/util/cert"
)

// Facts are what the standby's readiness checks need of one secret, read live (SecretFacts) or
// from the annotations of the SealedSecret the active committed (FactsFromSealed). All of it is
// public: a kid names a key, a certificate's fingerprint and SANs are in every TLS handshake, and
// the digest is keyed.
type Facts struct {
	// Present is false when the secret does not exist (then nothing else is set).
	Present bool
	// Digest is Digest of the secret under the agents' key ("hmac-sha256:<hex>").
	Digest string
	// Kids are the key IDs: the `kid` data key, else the kids of a JWKS held in a data value. Sorted.
	Kids []string
	// CA is the SHA-256 (hex) of the CA certificate: the last one of `ca.crt`, else the last of
	// the `tls.crt` chain when it holds more than the leaf.
	CA string
	// DNSNames are the leaf certificate's (first of `tls.crt`) DNS SANs, sorted.
	DNSNames []string
	// Leaf is true when the secret holds a leaf certificate (`tls.crt`).
	Leaf bool
	// Sealed marks facts read from a SealedSecret's annotations: what is not annotated is
	// unknown, not absent.
	Sealed bool
	// Problem says what could not be read (a certificate that does not parse, a file that is not
	// a SealedSecret); never a value.
	Problem string
	// Managed is true when the sealed-secrets controller may replace the live Secret with one
	// unsealed from a SealedSecret of the same name: a SealedSecret controls it, or it is
	// annotated ManagedAnnotation (or the patch annotation) "true". Unknown (false) for Sealed facts.
	Managed bool
}

// ManagedAnnotation lets the sealed-secrets controller take over a Secret it did not create
// (ssv1alpha1.SealedSecretManagedAnnotation); without it the controller refuses to overwrite it.
const ManagedAnnotation = ssv1alpha1.SealedSecretManagedAnnotation

// The TSB secrets whose `kid` names a key (tsb-mp-ha.md §2): only theirs is one of the facts.
const (
	SigningKeySecret = "iam-signing-key"
	JWKSSecret       = "tsb-iam-jwks"
)

// Data keys the facts come from (tsb-mp-ha.md §2, §7).
const (
	KidKey = "kid"
	CAKey  = "ca.crt"
	TLSKey = "tls.crt"
)

// SecretFacts reads the facts of s; key is the agents' HMAC key (at least MinKeyLen bytes).
// A certificate that does not parse is a Problem of the facts, not an error: it is what a check
// reports.
func SecretFacts(key []byte, s *corev1.Secret) (Facts, error) {
	digest, err := Digest(key, s)
	if err != nil {
		return Facts{}, fmt.Errorf("digest of secret %s: %w", s.Name, err)
	}
	data := maps.Clone(s.Data)
	if data == nil {
		data = map[string][]byte{}
	}
	for k, v := range s.StringData {
		data[k] = []byte(v)
	}
	f := Facts{Present: true, Digest: digest, Managed: managed(s)}
	// Only the signing keys' kid is an identifier; a "kid" key elsewhere could be anything.
	if s.Name == SigningKeySecret || s.Name == JWKSSecret {
		f.Kids = kids(data)
	}
	if err := certFacts(data, &f); err != nil {
		f.Problem = err.Error()
	}
	return f, nil
}

// managed says whether the sealed-secrets controller may replace s (Facts.Managed): as its
// controller does, when a SealedSecret controls s or s is annotated to be managed or patched.
func managed(s *corev1.Secret) bool {
	if s.Annotations[ManagedAnnotation] == "true" || s.Annotations[ssv1alpha1.SealedSecretPatchAnnotation] == "true" {
		return true
	}
	o := metav1.GetControllerOfNoCopy(s)
	return o != nil && o.Kind == "SealedSecret" && strings.HasPrefix(o.APIVersion, ssv1alpha1.SchemeGroupVersion.Group+"/")
}

// kids returns the `kid` value, or the kids of every JWKS-shaped value, sorted and unique.
func kids(data map[string][]byte) []string {
	if k, ok := data[KidKey]; ok {
		if s := strings.TrimSpace(string(k)); s != "" {
			return []string{s}
		}
		return nil
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(data)) {
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		if json.Unmarshal(data[name], &set) != nil {
			continue
		}
		for _, k := range set.Keys {
			if k.Kid != "" {
				out = append(out, k.Kid)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// certFacts fills the CA fingerprint and the leaf's DNS names.
func certFacts(data map[string][]byte, f *Facts) error {
	var chain []*x509.Certificate
	if pem, ok := data[TLSKey]; ok {
		c, err := certutil.ParseCertsPEM(pem)
		if err != nil {
			return fmt.Errorf("%s: %w", TLSKey, err)
		}
		chain, f.Leaf = c, true
		f.DNSNames = slices.Sorted(slices.Values(c[0].DNSNames))
	}
	if pem, ok := data[CAKey]; ok {
		c, err := certutil.ParseCertsPEM(pem)
		if err != nil {
			return fmt.Errorf("%s: %w", CAKey, err)
		}
		f.CA = fingerprint(c[len(c)-1])
	} else if len(chain) > 1 {
		// Without ca.crt the chain's last certificate is the closest to the root we can see; a
		// chain of only the leaf shows no CA at all.
		f.CA = fingerprint(chain[len(chain)-1])
	}
	return nil
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}
