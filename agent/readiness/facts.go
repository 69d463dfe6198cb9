package readiness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/mpha-dev/mpha/agent/release"
	"github.com/mpha-dev/mpha/gitops/seal"
)

// Gather reads the facts (seal.SecretFacts) of each named Secret in namespace; a Secret that does
// not exist has Facts with Present false.
func Gather(ctx context.Context, cs kubernetes.Interface, namespace string, names []string, key []byte) (map[string]seal.Facts, error) {
	if len(key) < seal.MinKeyLen {
		return nil, seal.ErrShortKey
	}
	out := map[string]seal.Facts{}
	for _, name := range names {
		s, err := cs.CoreV1().Secrets(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			out[name] = seal.Facts{}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading secret %s/%s: %w", namespace, name, err)
		}
		if out[name], err = seal.SecretFacts(key, s); err != nil {
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
