// Package release reads the active management plane's Helm release from its cluster: the latest
// deployed revision's chart, version and user-supplied values, decoded as Helm's storage driver
// stores them.
//
// Where RBAC allows, the revisions are found by listing Secrets by Helm's labels. The agent's
// chart grants less: `get` on the revision Secrets by name (sh.helm.release.v1.<release>.v<N>,
// N = 1..rbac.helmReleaseRevisions) and no `list`, which would expose every Secret of the MP's
// namespace. A Reader whose list is forbidden reads by name instead (see probe.go).
package release

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	hrelease "helm.sh/helm/v3/pkg/release"
	"helm.sh/helm/v3/pkg/storage/driver"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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

// Head is a release's newest revision (of any status): what changes when Helm acts.
type Head struct {
	Revision int
	Status   string
}

// ErrNotFound means the release has no deployed revision.
var ErrNotFound = driver.ErrReleaseNotFound

// ErrRevisionLimit means the reader may get revision Secrets by name only up to a revision that
// exists: newer ones may exist that it cannot see (raise the chart's rbac.helmReleaseRevisions).
var ErrRevisionLimit = errors.New("the newest revision this agent may read exists; newer ones may too")

// Selector picks the Secrets of every revision of release name (Helm's labels).
func Selector(name string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{"owner": "helm", "name": name})
}

// SecretName is the Secret Helm stores revision rev of release name in.
func SecretName(name string, rev int) string {
	return "sh.helm.release.v1." + name + ".v" + strconv.Itoa(rev)
}

// Latest returns the newest deployed revision of release name in namespace. No deployed revision
// is an error wrapping ErrNotFound. A long-lived caller keeps a Reader instead.
func Latest(ctx context.Context, cs kubernetes.Interface, namespace, name string) (*Release, error) {
	return NewReader(cs, namespace, name).Latest(ctx)
}

// Reader reads one release. It remembers whether listing is forbidden and the newest revision it
// saw, so reading by name costs two requests once warm. Safe for concurrent use.
type Reader struct {
	cs              kubernetes.Interface
	namespace, name string

	mu     sync.Mutex
	byName bool // a list was forbidden: read by name from now on
	newest int  // the newest revision seen by name (0: none yet)
}

// NewReader reads release name in namespace through cs.
func NewReader(cs kubernetes.Interface, namespace, name string) *Reader {
	return &Reader{cs: cs, namespace: namespace, name: name}
}

// Latest returns the newest deployed revision; none is an error wrapping ErrNotFound.
func (r *Reader) Latest(ctx context.Context) (*Release, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var s *corev1.Secret
	var err error
	if !r.byName {
		s, err = r.listDeployed(ctx)
		if apierrors.IsForbidden(err) {
			r.byName = true
		}
	}
	if r.byName {
		s, err = r.deployedByName(ctx)
	}
	if err != nil {
		return nil, err
	}
	return r.decode(s)
}

// Head returns the newest revision of any status; no revision at all wraps ErrNotFound.
func (r *Reader) Head(ctx context.Context) (Head, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.byName {
		h, err := r.listHead(ctx)
		if !apierrors.IsForbidden(err) {
			return h, err
		}
		r.byName = true
	}
	s, err := r.newestByName(ctx)
	if err != nil {
		return Head{}, err
	}
	return Head{Revision: r.newest, Status: s.Labels["status"]}, nil
}

func (r *Reader) list(ctx context.Context, set labels.Set) ([]corev1.Secret, error) {
	list, err := r.cs.CoreV1().Secrets(r.namespace).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(set).String()})
	if err != nil {
		return nil, fmt.Errorf("listing Helm release %s/%s: %w", r.namespace, r.name, err)
	}
	return list.Items, nil
}

// newestOf picks the Secret with the highest version label.
func (r *Reader) newestOf(items []corev1.Secret) (*corev1.Secret, error) {
	var best *corev1.Secret
	bestRev := -1
	for i, s := range items {
		rev, err := strconv.Atoi(s.Labels["version"])
		if err != nil {
			return nil, fmt.Errorf("helm release secret %s/%s: label version %q is not a number", r.namespace, s.Name, s.Labels["version"])
		}
		if rev > bestRev {
			best, bestRev = &items[i], rev
		}
	}
	return best, nil
}

func (r *Reader) listDeployed(ctx context.Context) (*corev1.Secret, error) {
	items, err := r.list(ctx, labels.Set{"owner": "helm", "name": r.name, "status": "deployed"})
	if err != nil {
		return nil, err
	}
	best, err := r.newestOf(items)
	if err != nil {
		return nil, err
	}
	if best == nil {
		return nil, fmt.Errorf("helm release %s/%s: %w", r.namespace, r.name, ErrNotFound)
	}
	return best, nil
}

func (r *Reader) listHead(ctx context.Context) (Head, error) {
	items, err := r.list(ctx, labels.Set{"owner": "helm", "name": r.name})
	if err != nil {
		return Head{}, err
	}
	best, err := r.newestOf(items)
	if err != nil {
		return Head{}, err
	}
	if best == nil {
		return Head{}, fmt.Errorf("helm release %s/%s: %w", r.namespace, r.name, ErrNotFound)
	}
	rev, _ := strconv.Atoi(best.Labels["version"])
	return Head{Revision: rev, Status: best.Labels["status"]}, nil
}

// decode reads a revision Secret as Helm's storage driver writes it: base64 of (usually gzipped)
// JSON. Not the driver's Secrets.Get: in Helm v3.22 it dereferences a nil release when the data
// does not decode (a panic); here a bad Secret is an error that names it.
func (r *Reader) decode(s *corev1.Secret) (*Release, error) {
	bad := func(what string, err error) error {
		return fmt.Errorf("decoding Helm release secret %s/%s: %s: %w", r.namespace, s.Name, what, err)
	}
	b, err := base64.StdEncoding.DecodeString(string(s.Data["release"]))
	if err != nil {
		return nil, bad("base64", err)
	}
	if len(b) > 3 && bytes.Equal(b[:3], []byte{0x1f, 0x8b, 0x08}) {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			return nil, bad("gzip", err)
		}
		if b, err = io.ReadAll(io.LimitReader(zr, maxRelease)); err != nil {
			return nil, bad("gzip", err)
		}
	}
	var rel hrelease.Release
	if err := json.Unmarshal(b, &rel); err != nil {
		return nil, bad("json", err)
	}
	if rel.Chart == nil || rel.Chart.Metadata == nil {
		return nil, fmt.Errorf("helm release secret %s/%s: the release has no chart metadata", r.namespace, s.Name)
	}
	vals := rel.Config
	if vals == nil {
		vals = map[string]any{}
	}
	return &Release{
		Name: rel.Name, Namespace: r.namespace, Revision: rel.Version, Secret: s.Name,
		Chart: rel.Chart.Metadata.Name, Version: rel.Chart.Metadata.Version, AppVersion: rel.Chart.Metadata.AppVersion,
		Values: vals,
	}, nil
}

// maxRelease bounds a decompressed release (Kubernetes caps a Secret at 1 MiB; gzip of JSON
// rarely exceeds 20:1).
const maxRelease = 64 << 20
