package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/mpha-dev/mpha/agent/heartbeat"
)

var kustomizations = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}

// FluxRevision reads the revision a Flux Kustomization in this cluster last applied.
func FluxRevision(dyn dynamic.Interface, namespace, name string) func(ctx context.Context) (string, error) {
	return func(ctx context.Context) (string, error) {
		k, err := dyn.Resource(kustomizations).Namespace(namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return "", fmt.Errorf("reading Kustomization %s/%s: %w", namespace, name, err)
		}
		rev, _, _ := unstructured.NestedString(k.Object, "status", "lastAppliedRevision")
		if rev == "" {
			return "", fmt.Errorf("the Kustomization %s/%s has applied nothing yet", namespace, name)
		}
		return rev, nil
	}
}

// recentHeartbeats reads a cluster's last heartbeat, refusing one older than maxAge (a
// *heartbeat.Reader).
type recentHeartbeats interface {
	Recent(ctx context.Context, cluster string, maxAge time.Duration) (heartbeat.Beat, error)
}

// HeartbeatRevision reads the Flux revision a cluster reported in its last heartbeat. A cluster
// whose last heartbeat is older than maxAge, or that never sent one, is ErrUnreachable.
func HeartbeatRevision(beats recentHeartbeats, maxAge time.Duration) RevisionSource {
	return func(ctx context.Context, cluster string) (string, error) {
		b, err := beats.Recent(ctx, cluster, maxAge)
		if errors.Is(err, heartbeat.ErrNoHeartbeat) || errors.Is(err, heartbeat.ErrStale) {
			return "", fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		if err != nil {
			return "", err
		}
		if b.Heartbeat.FluxRevision == "" {
			return "", fmt.Errorf("the heartbeat of %s reports no Flux revision", cluster)
		}
		return b.Heartbeat.FluxRevision, nil
	}
}

// Revisions asks own for this cluster and peers for the others.
func Revisions(self string, own func(ctx context.Context) (string, error), peers RevisionSource) RevisionSource {
	return func(ctx context.Context, cluster string) (string, error) {
		if cluster == self {
			return own(ctx)
		}
		return peers(ctx, cluster)
	}
}
