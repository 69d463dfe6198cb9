package release

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Reading by name. Helm numbers revisions 1, 2, 3, … and deletes the oldest beyond its history
// limit, so the Secrets that exist are a run lo..hi. Without list, hi is found by probing:
//
//	warm: get the newest revision seen; if it exists, get the next ones until one is missing.
//	cold: get 1, 1+stride, 1+2·stride, … until one exists (or a get is forbidden: the end of the
//	      Role's resourceNames), then walk up one by one as when warm.
//
// A stride of 5 lands in any run of 5 or more revisions: Helm's --history-max defaults to 10,
// Flux's helm-controller keeps 5. A walk up that reaches a forbidden name stops with
// ErrRevisionLimit rather than read an old revision as the newest.
const probeStride = 5

// maxProbe bounds the cold search when no get is ever forbidden (RBAC grants get on every Secret
// but not list).
const maxProbe = 10000

type probe int

const (
	missing probe = iota
	found
	forbidden
)

func (r *Reader) get(ctx context.Context, rev int) (*corev1.Secret, probe, error) {
	name := SecretName(r.name, rev)
	s, err := r.cs.CoreV1().Secrets(r.namespace).Get(ctx, name, metav1.GetOptions{})
	switch {
	case err == nil:
		return s, found, nil
	case apierrors.IsNotFound(err):
		return nil, missing, nil
	case apierrors.IsForbidden(err):
		return nil, forbidden, nil
	default:
		return nil, missing, fmt.Errorf("reading Helm release secret %s/%s: %w", r.namespace, name, err)
	}
}

// newestByName finds the newest revision's Secret and remembers its number.
func (r *Reader) newestByName(ctx context.Context) (*corev1.Secret, error) {
	var cur *corev1.Secret
	start := 0
	if r.newest > 0 {
		s, p, err := r.get(ctx, r.newest)
		if err != nil {
			return nil, err
		}
		if p == found {
			cur, start = s, r.newest
		}
	}
	for rev := 1; start == 0 && rev <= maxProbe; rev += probeStride {
		s, p, err := r.get(ctx, rev)
		if err != nil {
			return nil, err
		}
		if p == forbidden {
			if rev == 1 {
				return nil, fmt.Errorf("helm release %s/%s: reading %s is forbidden: the agent's Role must grant get on the release's Secrets",
					r.namespace, r.name, SecretName(r.name, 1))
			}
			break
		}
		if p == found {
			cur, start = s, rev
		}
	}
	if start == 0 {
		r.newest = 0
		return nil, fmt.Errorf("helm release %s/%s: %w", r.namespace, r.name, ErrNotFound)
	}
	for rev := start + 1; ; rev++ {
		s, p, err := r.get(ctx, rev)
		if err != nil {
			return nil, err
		}
		if p == forbidden {
			r.newest = rev - 1
			return nil, fmt.Errorf("helm release %s/%s: revision %d (%s) is the newest this agent may read: %w; raise the chart's rbac.helmReleaseRevisions",
				r.namespace, r.name, rev-1, SecretName(r.name, rev-1), ErrRevisionLimit)
		}
		if p == missing {
			r.newest = rev - 1
			return cur, nil
		}
		cur = s
	}
}

// deployedByName walks down from the newest revision to the newest deployed one.
func (r *Reader) deployedByName(ctx context.Context) (*corev1.Secret, error) {
	s, err := r.newestByName(ctx)
	if err != nil {
		return nil, err
	}
	for rev := r.newest; rev >= 1; rev-- {
		if rev != r.newest {
			var p probe
			if s, p, err = r.get(ctx, rev); err != nil {
				return nil, err
			}
			if p != found {
				break // below the oldest revision Helm kept
			}
		}
		if s.Labels["status"] == "deployed" {
			return s, nil
		}
	}
	return nil, fmt.Errorf("helm release %s/%s: %w", r.namespace, r.name, ErrNotFound)
}
