package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/mpha-dev/mpha/agent/event"
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

// HeartbeatRevision reads the Flux revision a cluster reported in its last heartbeat. A cluster
// whose last heartbeat is older than maxAge, or that never sent one, is ErrUnreachable.
func HeartbeatRevision(js jetstream.JetStream, pair string, maxAge time.Duration) RevisionSource {
	return func(ctx context.Context, cluster string) (string, error) {
		hb, _, err := LastHeartbeat(ctx, js, pair, cluster, maxAge)
		if err != nil {
			return "", err
		}
		if hb.FluxRevision == "" {
			return "", fmt.Errorf("the heartbeat of %s reports no Flux revision", cluster)
		}
		return hb.FluxRevision, nil
	}
}

// LastHeartbeat reads a cluster's last heartbeat and when it was sent. A cluster whose last
// heartbeat is older than maxAge, or that never sent one, is ErrUnreachable.
func LastHeartbeat(ctx context.Context, js jetstream.JetStream, pair, cluster string, maxAge time.Duration) (event.Heartbeat, time.Time, error) {
	var hb event.Heartbeat
	subj, err := event.NewSubjects(pair)
	if err != nil {
		return hb, time.Time{}, err
	}
	subject, err := subj.Heartbeat(cluster)
	if err != nil {
		return hb, time.Time{}, err
	}
	st, err := js.Stream(ctx, subj.Stream())
	if err != nil {
		return hb, time.Time{}, fmt.Errorf("heartbeats of %s: %w", cluster, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return hb, time.Time{}, fmt.Errorf("%w: %s never sent a heartbeat", ErrUnreachable, cluster)
	}
	if err != nil {
		return hb, time.Time{}, fmt.Errorf("heartbeats of %s: %w", cluster, err)
	}
	if age := time.Since(m.Time); age > maxAge {
		return hb, m.Time, fmt.Errorf("%w: the last heartbeat of %s is %s old", ErrUnreachable, cluster, age.Round(time.Second))
	}
	e, err := event.Decode(m.Data, event.TypeHeartbeat)
	if err != nil {
		return hb, m.Time, fmt.Errorf("heartbeat of %s: %w", cluster, err)
	}
	if err := e.DataAs(&hb); err != nil {
		return hb, m.Time, fmt.Errorf("heartbeat of %s: %w", cluster, err)
	}
	return hb, m.Time, nil
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
