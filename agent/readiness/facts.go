package readiness

import (
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	ssv1alpha1 "github.com/bitnami-labs/sealed-secrets/pkg/apis/sealedsecrets/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	certutil "k8s.io/client-go/util/cert"

	"github.com/mpha-dev/mpha/agent/release"
	"github.com/mpha-dev/mpha/gitops/seal"
)

// Facts are what the checks need of one secret. All of it is public: a kid names a key, a
// certificate's fingerprint and SANs are in every TLS handshake, and the digest is keyed.
type Facts struct {
	// Present is false when the secret does not exist (then nothing else is set).
	Present bool
	// Digest is seal.Digest of the secret under the agents' key ("hmac-sha256:<hex>").
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

// Data keys the facts come from (tsb-mp-ha.md §2, §7).
const (
	kidKey = "kid"
	caKey  = "ca.crt"
	tlsKey = "tls.crt"
)

// SecretFacts reads the facts of s; key is the agents' HMAC key (at least seal.MinKeyLen bytes).
// A certificate that does not parse is a Problem of the facts, not an error: it is what a check
// reports.
func SecretFacts(key []byte, s *corev1.Secret) (Facts, error) {
	digest, err := seal.Digest(key, s)
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
	if k, ok := data[kidKey]; ok {
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
	if pem, ok := data[tlsKey]; ok {
		c, err := certutil.ParseCertsPEM(pem)
		if err != nil {
			return fmt.Errorf("%s: %w", tlsKey, err)
		}
		chain, f.Leaf = c, true
		f.DNSNames = slices.Sorted(slices.Values(c[0].DNSNames))
	}
	if pem, ok := data[caKey]; ok {
		c, err := certutil.ParseCertsPEM(pem)
		if err != nil {
			return fmt.Errorf("%s: %w", caKey, err)
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

// Gather reads the facts of each named Secret in namespace; a Secret that does not exist has
// Facts with Present false.
func Gather(ctx context.Context, cs kubernetes.Interface, namespace string, names []string, key []byte) (map[string]Facts, error) {
	if len(key) < seal.MinKeyLen {
		return nil, seal.ErrShortKey
	}
	out := map[string]Facts{}
	for _, name := range names {
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out[name] = Facts{}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading secret %s/%s: %w", namespace, name, err)
		}
		if out[name], err = SecretFacts(key, s); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Local says where a cluster's own management plane is.
type Local struct {
	Cluster, Namespace string
	// Release is the MP's Helm release name (default mp).
	Release string
	// Names are the exported secrets; the checks' own secrets (CheckedSecrets) are read too.
	Names []string
	Key   []byte
	// Releases, if set, reads the release (a long-lived Reader remembers where it is); else a
	// fresh one does.
	Releases *release.Reader
}

// LocalSite gathers a cluster's facts live: its secrets and its deployed Helm release's values.
func LocalSite(ctx context.Context, cs kubernetes.Interface, l Local) (Site, error) {
	names := slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(l.Names), CheckedSecrets()...))))
	secrets, err := Gather(ctx, cs, l.Namespace, names, l.Key)
	if err != nil {
		return Site{}, fmt.Errorf("cluster %s: %w", l.Cluster, err)
	}
	site := Site{Cluster: l.Cluster, Namespace: l.Namespace, Secrets: secrets}
	rels := l.Releases
	if rels == nil {
		rels = release.NewReader(cs, l.Namespace, cmp.Or(l.Release, "mp"))
	}
	rel, err := rels.Latest(ctx)
	switch {
	case errors.Is(err, release.ErrNotFound):
	case err != nil:
		return Site{}, fmt.Errorf("cluster %s: %w", l.Cluster, err)
	default:
		site.Values = rel.Values
		site.Release = fmt.Sprintf("%s/%s revision %d", rel.Namespace, rel.Name, rel.Revision)
	}
	return site, nil
}
