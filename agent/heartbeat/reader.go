package heartbeat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/notify"
)

// DefaultLookupTimeout bounds one Reader lookup (ReaderOptions.Timeout), so that a caller whose
// context has no deadline (a preflight, the follow-through) does not wait on NATS forever.
const DefaultLookupTimeout = 5 * time.Second

// What a Reader's errors wrap, for the callers' decisions.
var (
	// ErrNoHeartbeat: the cluster has no heartbeat in the stream (never sent one, or it aged out).
	ErrNoHeartbeat = errors.New("no heartbeat")
	// ErrMalformed: the last message on the cluster's heartbeat subject is not a heartbeat of
	// that cluster that mpha can read. The Beat returned with it still says when it was stored.
	ErrMalformed = errors.New("malformed heartbeat")
	// ErrStale: the last heartbeat is older than the caller allows (Reader.Recent).
	ErrStale = errors.New("heartbeat too old")
)

// streams is what a Reader needs of a jetstream.JetStream.
type streams interface {
	Stream(ctx context.Context, name string) (jetstream.Stream, error)
}

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	// Timeout bounds each lookup (default DefaultLookupTimeout); a shorter deadline of the
	// caller's context wins.
	Timeout time.Duration
	// Now is the clock Recent ages heartbeats with (default time.Now).
	Now func() time.Time
}

// Reader reads a pair's heartbeats back from its stream: the last message on a cluster's
// heartbeat subject, stamped with the time the stream stored it (the NATS server's clock, not the
// sender's). It is the one way mpha reads a heartbeat: the standby's watch, the follow-through's
// Flux revisions, the database check and `mpha status` all go through it. Safe for concurrent use.
type Reader struct {
	js   streams
	subj event.Subjects
	opts ReaderOptions
}

// Beat is a cluster's last heartbeat as the stream holds it.
type Beat struct {
	// ID is the CloudEvent's id; empty when the message is malformed.
	ID string
	// At is when the stream stored the message.
	At time.Time
	// Heartbeat is the event's data; zero when the message is malformed.
	Heartbeat event.Heartbeat
}

// Age is how old b is at now; never negative, though the NATS server's clock may run ahead.
func (b Beat) Age(now time.Time) time.Duration { return max(now.Sub(b.At), 0) }

// NewReader reads pair's heartbeats through js.
func NewReader(js streams, pair string, opts ReaderOptions) (*Reader, error) {
	subj, err := event.NewSubjects(pair)
	if err != nil {
		return nil, fmt.Errorf("heartbeat reader: %w", err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultLookupTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Reader{js: js, subj: subj, opts: opts}, nil
}

// Last returns cluster's last heartbeat. A cluster with none is ErrNoHeartbeat; a message that
// does not decode as a heartbeat (agent/event's checks), or that names another cluster, is
// ErrMalformed with the Beat's At set; a pair without a stream wraps jetstream.ErrStreamNotFound.
func (r *Reader) Last(ctx context.Context, cluster string) (Beat, error) {
	subject, err := r.subj.Heartbeat(cluster)
	if err != nil {
		return Beat{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	st, err := r.js.Stream(ctx, r.subj.Stream())
	if err != nil {
		return Beat{}, fmt.Errorf("heartbeats of %s: stream %s: %w", cluster, r.subj.Stream(), err)
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return Beat{}, fmt.Errorf("%w from %s", ErrNoHeartbeat, cluster)
	}
	if err != nil {
		return Beat{}, fmt.Errorf("last heartbeat of %s: %w", cluster, err)
	}
	b := Beat{At: m.Time}
	e, err := event.Decode(m.Data, event.TypeHeartbeat)
	if err != nil {
		return b, fmt.Errorf("%w on %s: %w", ErrMalformed, subject, err)
	}
	var hb event.Heartbeat
	// encoding/json's error names the field and the type, never the value; the SDK's DataAs
	// would quote the whole payload, up to event.MaxPayload of whatever was published.
	if err := json.Unmarshal(e.Data(), &hb); err != nil {
		return b, fmt.Errorf("%w on %s: data: %w", ErrMalformed, subject, err)
	}
	if hb.Cluster != cluster {
		return b, fmt.Errorf("%w on %s: it says it is from %q", ErrMalformed, subject, hb.Cluster)
	}
	b.ID, b.Heartbeat = e.ID(), hb
	return b, nil
}

// Recent is Last, but a heartbeat older than maxAge is ErrStale. Age is judged before content:
// an old malformed message is stale, as the peer that sent it is silent either way.
func (r *Reader) Recent(ctx context.Context, cluster string, maxAge time.Duration) (Beat, error) {
	b, err := r.Last(ctx, cluster)
	if err != nil && !errors.Is(err, ErrMalformed) {
		return b, err
	}
	if age := b.Age(r.opts.Now()); age > maxAge {
		return b, fmt.Errorf("%w: the last heartbeat of %s is %s old, over %s", ErrStale, cluster, age.Round(time.Second), maxAge)
	}
	return b, err
}

// Arrivals notifies b each time a heartbeat of any cluster of the pair is published, until ctx
// ends: a core NATS subscription to the stream's heartbeat subjects, so that a caller waiting on
// a peer's report (the follow-through) reads the stream again at once.
func Arrivals(ctx context.Context, nc *nats.Conn, subj event.Subjects, b *notify.Broadcast) error {
	sub, err := nc.Subscribe(subj.Heartbeats(), func(*nats.Msg) { b.Notify() })
	if err != nil {
		return fmt.Errorf("subscribing to %s: %w", subj.Heartbeats(), err)
	}
	<-ctx.Done()
	_ = sub.Unsubscribe()
	return nil
}
