package health

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
)

// Heartbeats gives the last heartbeat a cluster's agent published and when it was published.
type Heartbeats interface {
	Last(ctx context.Context, cluster string) (event.Heartbeat, time.Time, error)
}

// ErrNoHeartbeat is returned by StreamHeartbeats.Last for a cluster with no heartbeat in the stream.
var ErrNoHeartbeat = errors.New("no heartbeat")

// streams is what StreamHeartbeats needs of a jetstream.JetStream.
type streams interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// StreamHeartbeats reads heartbeats from the pair's stream: the last message on a cluster's
// heartbeat subject, stamped with the time the stream stored it (the NATS server's clock).
type StreamHeartbeats struct {
	js   streams
	subj event.Subjects
}

// NewStreamHeartbeats reads pair's heartbeats through js.
func NewStreamHeartbeats(js streams, pair string) (*StreamHeartbeats, error) {
	subj, err := event.NewSubjects(pair)
	if err != nil {
		return nil, fmt.Errorf("heartbeat reader: %w", err)
	}
	return &StreamHeartbeats{js: js, subj: subj}, nil
}

// Last returns cluster's last heartbeat, or an error wrapping ErrNoHeartbeat if it has none.
func (s *StreamHeartbeats) Last(ctx context.Context, cluster string) (event.Heartbeat, time.Time, error) {
	subject, err := s.subj.Heartbeat(cluster)
	if err != nil {
		return event.Heartbeat{}, time.Time{}, err
	}
	st, err := s.js.Stream(ctx, s.subj.Stream())
	if err != nil {
		return event.Heartbeat{}, time.Time{}, fmt.Errorf("heartbeats of %s: %w", cluster, err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return event.Heartbeat{}, time.Time{}, fmt.Errorf("%w from %s", ErrNoHeartbeat, cluster)
	}
	if err != nil {
		return event.Heartbeat{}, time.Time{}, fmt.Errorf("heartbeats of %s: %w", cluster, err)
	}
	e, err := event.Decode(m.Data, event.TypeHeartbeat)
	if err != nil {
		return event.Heartbeat{}, time.Time{}, fmt.Errorf("heartbeat of %s: %w", cluster, err)
	}
	var hb event.Heartbeat
	if err := e.DataAs(&hb); err != nil {
		return event.Heartbeat{}, time.Time{}, fmt.Errorf("heartbeat of %s: data: %w", cluster, err)
	}
	if hb.Cluster != cluster {
		return event.Heartbeat{}, time.Time{}, fmt.Errorf("heartbeat on %s's subject says it is from %q", cluster, hb.Cluster)
	}
	return hb, m.Time, nil
}
