package event

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The stream's limits. The duplicate window is the contract's "at least 2 minutes" with room for
// a CLI retrying after its own timeout; age and per-subject caps bound the heartbeats (one per
// cluster every few seconds) without touching pending requests, of which there are a handful.
const (
	DuplicateWindow   = 5 * time.Minute
	StreamMaxAge      = 30 * 24 * time.Hour
	MaxMsgsPerSubject = 10_000
)

// Consumer defaults. AckWait is how long a delivery may be worked on before JetStream redelivers
// it (a handler that takes longer reports progress with Msg.InProgress). MaxDeliver bounds the
// retries of a request that keeps failing for a transient reason; with the handler's growing
// NakWithDelay it spans many minutes, and a request that never succeeds stops instead of
// failing over hours late.
const (
	DefaultAckWait    = time.Minute
	DefaultMaxDeliver = 50
)

// streams is what EnsureStream needs of a jetstream.JetStream.
type streams interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
	CreateOrUpdateStream(ctx context.Context, cfg jetstream.StreamConfig) (jetstream.Stream, error)
}

// consumers is what EnsureConsumer needs of a jetstream.JetStream.
type consumers interface {
	CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error)
}

// publisher is what Publish and Reject need of a jetstream.JetStream.
type publisher interface {
	PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error)
}

// StreamConfig is the configuration of pair's stream (docs/design.md §6): MPHA_<PAIR> capturing
// mpha.<pair>.>, file storage, limits retention, and the duplicate window that makes the
// CloudEvent id (sent as Nats-Msg-Id) an idempotency key.
func StreamConfig(pair string) (jetstream.StreamConfig, error) {
	s, err := NewSubjects(pair)
	if err != nil {
		return jetstream.StreamConfig{}, err
	}
	return jetstream.StreamConfig{
		Name:              s.Stream(),
		Description:       "mpha events of pair " + pair + " (failover requests, status, heartbeats, DLQ)",
		Subjects:          []string{s.All()},
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Discard:           jetstream.DiscardOld,
		Duplicates:        DuplicateWindow,
		MaxAge:            StreamMaxAge,
		MaxMsgsPerSubject: MaxMsgsPerSubject,
		Replicas:          1,
	}, nil
}

// EnsureStream creates pair's stream or updates it to StreamConfig; running it again changes
// nothing. An existing stream keeps its replica count: that is the NATS operator's choice.
func EnsureStream(ctx context.Context, js streams, pair string) (jetstream.Stream, error) {
	cfg, err := StreamConfig(pair)
	if err != nil {
		return nil, fmt.Errorf("ensure stream: %w", err)
	}
	existing, err := js.Stream(ctx, cfg.Name)
	switch {
	case err == nil:
		cfg.Replicas = max(existing.CachedInfo().Config.Replicas, 1)
	case !errors.Is(err, jetstream.ErrStreamNotFound):
		return nil, fmt.Errorf("ensure stream %s: look up: %w", cfg.Name, err)
	}
	st, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return st, nil
}

// ConsumerOptions configure the durable consumer of failover requests.
type ConsumerOptions struct {
	// Durable names the consumer; each agent has its own (e.g. "agent-east").
	Durable string
	// AckWait defaults to DefaultAckWait, MaxDeliver to DefaultMaxDeliver (-1: no limit).
	AckWait    time.Duration
	MaxDeliver int
}

// ConsumerConfig is the configuration of a durable consumer of pair's failover requests: explicit
// acks (a request is acked only once its branch is pushed or its refusal published), and one
// request in flight at a time, since a pair has at most one failover open.
func ConsumerConfig(pair string, opts ConsumerOptions) (jetstream.ConsumerConfig, error) {
	s, err := NewSubjects(pair)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	if opts.Durable == "" {
		return jetstream.ConsumerConfig{}, errors.New("consumer: a durable name is required")
	}
	if opts.AckWait <= 0 {
		opts.AckWait = DefaultAckWait
	}
	if opts.MaxDeliver == 0 {
		opts.MaxDeliver = DefaultMaxDeliver
	}
	return jetstream.ConsumerConfig{
		Durable:       opts.Durable,
		Description:   "mpha failover requests of pair " + pair,
		FilterSubject: s.Requested(),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       opts.AckWait,
		MaxDeliver:    opts.MaxDeliver,
		MaxAckPending: 1,
	}, nil
}

// EnsureConsumer creates the durable consumer of pair's failover requests or updates it to
// ConsumerConfig; running it again changes nothing. The stream must exist (EnsureStream).
func EnsureConsumer(ctx context.Context, js consumers, pair string, opts ConsumerOptions) (jetstream.Consumer, error) {
	cfg, err := ConsumerConfig(pair, opts)
	if err != nil {
		return nil, fmt.Errorf("ensure consumer: %w", err)
	}
	s, _ := NewSubjects(pair) // valid: ConsumerConfig checked it
	c, err := js.CreateOrUpdateConsumer(ctx, s.Stream(), cfg)
	if err != nil {
		return nil, fmt.Errorf("ensure consumer %s on %s: %w", cfg.Durable, s.Stream(), err)
	}
	return c, nil
}

// Publish sends e to subject in JSON structured mode with its id as Nats-Msg-Id, so the stream
// drops a copy published again within DuplicateWindow (the ack then says Duplicate).
func Publish(ctx context.Context, js publisher, subject string, e Event) (*jetstream.PubAck, error) {
	b, err := Encode(e)
	if err != nil {
		return nil, fmt.Errorf("publish to %s: %w", subject, err)
	}
	msg := nats.NewMsg(subject)
	msg.Data = b
	msg.Header.Set("Content-Type", ContentType)
	ack, err := js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID()))
	if err != nil {
		return nil, fmt.Errorf("publish event %s to %s: %w", e.ID(), subject, err)
	}
	return ack, nil
}

// Refused is a message an agent refuses, as Reject reports it.
type Refused struct {
	// Pair whose DLQ gets the rejection.
	Pair string
	// Source is the refusing agent, the rejected event's CloudEvent source.
	Source string
	// Subject the message arrived on, and its event id if known (else its Nats-Msg-Id, or "").
	Subject, EventID string
	// Payload is the message's data. It is never quoted: it only makes the rejection's id, so
	// that refusing a redelivered message again publishes a duplicate the stream drops.
	Payload []byte
}

// Reject publishes a rejected event for r to pair's DLQ subject, with rerr's reason and detail
// (capped and scrubbed by NewRejected).
func Reject(ctx context.Context, js publisher, r Refused, rerr *RejectError) (*jetstream.PubAck, error) {
	if rerr == nil {
		return nil, errors.New("reject: no reason given")
	}
	s, err := NewSubjects(r.Pair)
	if err != nil {
		return nil, fmt.Errorf("reject: %w", err)
	}
	e, err := NewRejected(r.Source, rejectionID(r), Rejected{
		Event: r.EventID, Subject: r.Subject, Reason: rerr.Reason, Detail: rerr.Detail,
	})
	if err != nil {
		return nil, fmt.Errorf("reject: %w", err)
	}
	return Publish(ctx, js, s.DLQ(), e)
}

// rejectionID is "rejected-" and 32 hex digits of a hash of what was refused: the same message
// refused again (a redelivery, or the peer's agent refusing it too) gives the same id.
func rejectionID(r Refused) string {
	h := sha256.New()
	for _, part := range [][]byte{[]byte(r.Subject), []byte(r.EventID), r.Payload} {
		fmt.Fprintf(h, "%d:", len(part))
		h.Write(part)
	}
	return "rejected-" + hex.EncodeToString(h.Sum(nil)[:16])
}
