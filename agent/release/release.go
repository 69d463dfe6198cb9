// Package release reads the active management plane's Helm release from its cluster with Helm's
// own storage driver: the latest deployed revision's chart, version and user-supplied values.
package release

import (
	"context"
	"fmt"
	"strconv"

	hrelease "helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// Release is what mpha needs of a Helm release.
type Release struct {
	Name, Namespace string
	// Revision is the Helm revision; Secret names the Secret it was read from.
	Revision int
	Secret   string
	// Chart and Version come from the chart's metadata; AppVersion too, when set.
	Chart, Version, AppVersion string
	// Values are the user-supplied values (`helm get values`), not the chart's defaults merged in.
	Values map[string]any
}

// Selector picks the Secrets of every revision of release name (Helm's labels).
func Selector(name string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{"owner": "helm", "name": name})
}

// Latest returns the newest deployed revision of release name in namespace. The Secrets are
// listed by Helm's labels and the chosen one decoded with Helm's storage driver, so an error
// names the Secret it came from. No deployed revision is an error wrapping ErrNotFound.
func Latest(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*Release, error) {
	sel := labels.SelectorFromSet(labels.Set{"owner": "helm", "name": name, "status": "deployed"})
	list, err := cs.CoreV1().Secrets(namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing Helm release %s/%s: %w", namespace, name, err)
	}
	best, bestRev := "", -1
	for _, s := range list.Items {
		rev, err := strconv.Atoi(s.Labels["version"])
		if err != nil {
			return nil, fmt.Errorf("helm release secret %s/%s: label version %q is not a number", namespace, s.Name, s.Labels["version"])
		}
		if rev > bestRev {
			best, bestRev = s.Name, rev
		}
	}
	if best == "" {
		return nil, fmt.Errorf("helm release %s/%s: %w", namespace, name, ErrNotFound)
	}
	rel, err := decode(cs, namespace, name, best, bestRev)
	if err != nil {
		return nil, err
	}
	if rel.Chart == nil || rel.Chart.Metadata == nil {
		return nil, fmt.Errorf("helm release secret %s/%s: the release has no chart metadata", namespace, best)
	}
	vals := rel.Config
	if vals == nil {
		vals = map[string]any{}
	}
	return &Release{
		Name: rel.Name, Namespace: namespace, Revision: rel.Version, Secret: best,
		Chart: rel.Chart.Metadata.Name, Version: rel.Chart.Metadata.Version, AppVersion: rel.Chart.Metadata.AppVersion,
		Values: vals,
	}, nil
}

// decode reads one revision through Helm's driver. Not Secrets.Get: in Helm v3.22 it dereferences
// a nil release when the data does not decode (a panic). Query on the revision's own labels
// decodes the same Secret and reports a bad one through Log instead.
func decode(cs kubernetes.Interface, namespace, name, secret string, rev int) (*hrelease.Release, error) {
	d := driver.NewSecrets(cs.CoreV1().Secrets(namespace))
	var decodeErr string
	d.Log = func(format string, v ...any) { decodeErr = fmt.Sprintf(format, v...) }
	rels, err := d.Query(map[string]string{"owner": "helm", "name": name, "status": "deployed", "version": strconv.Itoa(rev)})
	if err != nil {
		return nil, fmt.Errorf("reading Helm release secret %s/%s: %w", namespace, secret, err)
	}
	if len(rels) != 1 {
		if decodeErr == "" {
			decodeErr = fmt.Sprintf("%d releases carry its labels", len(rels))
		}
		return nil, fmt.Errorf("decoding Helm release secret %s/%s: %s", namespace, secret, decodeErr)
	}
	return rels[0], nil
}

// ErrNotFound means the release has no deployed revision.
var ErrNotFound = driver.ErrReleaseNotFound
