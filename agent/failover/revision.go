package failover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mpha-dev/mpha/agent/heartbeat"
)

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
