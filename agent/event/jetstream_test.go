package event_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/testrig"
)

const testPair = "tsb-mp"

// integration skips a test that starts NATS under -short.
func integration(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts nats-server (skipped under -short)")
	}
}

// jetStream starts a NATS server and connects to it with a client that reconnects by itself.
func jetStream(t *testing.T) (*testrig.NATS, jetstream.JetStream, context.Context) {
	t.Helper()
	n := testrig.StartNATS(t)
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return n, js, ctx
}

func ensure(t *testing.T, ctx context.Context, js jetstream.JetStream) (jetstream.Stream, jetstream.Consumer) {
	t.Helper()
	st, err := event.EnsureStream(ctx, js, testPair)
	if err != nil {
		t.Fatal(err)
	}
	c, err := event.EnsureConsumer(ctx, js, testPair, event.ConsumerOptions{Durable: "agent-west", AckWait: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return st, c
}

func TestEnsureStreamAndConsumerAreIdempotent(t *testing.T) {
	integration(t)
	t.Parallel()
	_, js, ctx := jetStream(t)
	st1, c1 := ensure(t, ctx, js)
	st2, c2 := ensure(t, ctx, js)

	info, err := st2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	if cfg.Name != "MPHA_TSB_MP" || !cmp.Equal(cfg.Subjects, []string{"mpha.tsb-mp.>"}) || cfg.Storage != jetstream.FileStorage ||
		cfg.Duplicates < 2*time.Minute || cfg.Retention != jetstream.LimitsPolicy || cfg.MaxMsgsPerSubject != event.MaxMsgsPerSubject {
		t.Errorf("stream config %+v", cfg)
	}
	if !info.Created.Equal(st1.CachedInfo().Created) {
		t.Errorf("the second EnsureStream re-created the stream (%s, then %s)", st1.CachedInfo().Created, info.Created)
	}
	ci, err := c2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cc := ci.Config
	if cc.Durable != "agent-west" || cc.FilterSubject != "mpha.tsb-mp.failover.requested" || cc.AckPolicy != jetstream.AckExplicitPolicy ||
		cc.AckWait != 10*time.Second || cc.MaxDeliver != event.DefaultMaxDeliver || cc.MaxAckPending != 1 || cc.DeliverPolicy != jetstream.DeliverAllPolicy {
		t.Errorf("consumer config %+v", cc)
	}
	if !ci.Created.Equal(c1.CachedInfo().Created) {
		t.Error("the second EnsureConsumer re-created the consumer")
	}
	names := st2.ConsumerNames(ctx)
	var n int
	for range names.Name() {
		n++
	}
	if n != 1 || names.Err() != nil {
		t.Errorf("%d consumers (%v), want 1", n, names.Err())
	}

	// A changed setting is applied in place.
	c3, err := event.EnsureConsumer(ctx, js, testPair, event.ConsumerOptions{Durable: "agent-west", AckWait: 20 * time.Second, MaxDeliver: 5})
	if err != nil {
		t.Fatal(err)
	}
	if got := c3.CachedInfo().Config; got.AckWait != 20*time.Second || got.MaxDeliver != 5 {
		t.Errorf("updated consumer: AckWait %s, MaxDeliver %d", got.AckWait, got.MaxDeliver)
	}
	if _, err := event.EnsureConsumer(ctx, js, testPair, event.ConsumerOptions{}); err == nil {
		t.Error("a consumer without a durable name was accepted")
	}
}

// The CloudEvent id travels as Nats-Msg-Id: 1000 copies of one event are one message.
func TestPublishDeduplicatesByEventID(t *testing.T) {
	integration(t)
	t.Parallel()
	_, js, ctx := jetStream(t)
	st, _ := ensure(t, ctx, js)
	s, _ := event.NewSubjects(testPair)
	e := requestEvent(t, validRequest())
	start := time.Now()
	for i := range 1000 {
		ack, err := event.Publish(ctx, js, s.Requested(), e)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate != (i > 0) || ack.Sequence != 1 {
			t.Fatalf("copy %d: ack %+v", i, ack)
		}
	}
	t.Logf("1000 publishes of one event in %s", time.Since(start).Round(time.Millisecond))
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("the stream holds %d messages, want 1", info.State.Msgs)
	}
	msg, err := st.GetLastMsgForSubject(ctx, s.Requested())
	if err != nil {
		t.Fatal(err)
	}
	if msg.Header.Get(jetstream.MsgIDHeader) != testID || msg.Header.Get("Content-Type") != event.ContentType {
		t.Errorf("headers %v", msg.Header)
	}
	got, err := event.DecodeRequest(msg.Data, pair())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(validRequest(), got.Data); diff != "" {
		t.Errorf("(-published +stored):\n%s", diff)
	}
}

// A request the agent refuses: consumed, decoded, rejected to the DLQ with its reason, terminated.
// Refusing the redelivered message again adds nothing to the DLQ.
func TestRejectPublishesToTheDLQ(t *testing.T) {
	integration(t)
	t.Parallel()
	_, js, ctx := jetStream(t)
	st, cons := ensure(t, ctx, js)
	s, _ := event.NewSubjects(testPair)
	stale := validRequest()
	stale.ExpectedEpoch = epoch(2)
	if _, err := event.Publish(ctx, js, s.Requested(), requestEvent(t, stale)); err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	_, err = event.DecodeRequest(msg.Data(), pair())
	var rerr *event.RejectError
	if !errors.As(err, &rerr) || rerr.Reason != event.ReasonStaleEpoch {
		t.Fatalf("decoding a stale request: %v", err)
	}
	refused := event.Refused{
		Pair: testPair, Source: "mpha://agent/west", Subject: msg.Subject(),
		EventID: msg.Headers().Get(jetstream.MsgIDHeader), Payload: msg.Data(),
	}
	for i := range 2 {
		ack, err := event.Reject(ctx, js, refused, rerr)
		if err != nil {
			t.Fatal(err)
		}
		if ack.Duplicate != (i > 0) {
			t.Errorf("rejection %d: duplicate %t", i, ack.Duplicate)
		}
	}
	if err := msg.Term(); err != nil {
		t.Fatal(err)
	}

	dlq, err := st.GetLastMsgForSubject(ctx, s.DLQ())
	if err != nil {
		t.Fatal(err)
	}
	e, err := event.Decode(dlq.Data, event.TypeRejected)
	if err != nil {
		t.Fatal(err)
	}
	var got event.Rejected
	if err := e.DataAs(&got); err != nil {
		t.Fatal(err)
	}
	want := event.Rejected{Event: testID, Subject: s.Requested(), Reason: event.ReasonStaleEpoch, Detail: "expectedEpoch 2 is stale: the pair is at epoch 4"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rejection (-want +got):\n%s", diff)
	}
	if dlq.Header.Get(jetstream.MsgIDHeader) != e.ID() || e.Source() != "mpha://agent/west" {
		t.Errorf("rejection %s from %s, Nats-Msg-Id %q", e.ID(), e.Source(), dlq.Header.Get(jetstream.MsgIDHeader))
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(s.DLQ()))
	if err != nil {
		t.Fatal(err)
	}
	if n := info.State.Subjects[s.DLQ()]; n != 1 {
		t.Errorf("%d rejections on the DLQ, want 1", n)
	}
}

// Stream, consumer and an unacknowledged request survive a NATS restart.
func TestStreamAndConsumerSurviveRestart(t *testing.T) {
	integration(t)
	t.Parallel()
	n, js, ctx := jetStream(t)
	ensure(t, ctx, js)
	s, _ := event.NewSubjects(testPair)
	if _, err := event.Publish(ctx, js, s.Requested(), requestEvent(t, validRequest())); err != nil {
		t.Fatal(err)
	}

	n.Restart(t)

	var cons jetstream.Consumer
	testrig.Eventually(t, "the consumer after the restart", 30*time.Second, func(ctx context.Context) error {
		var err error
		cons, err = js.Consumer(ctx, "MPHA_TSB_MP", "agent-west") // the client reconnects in the background
		return err
	})
	if got := cons.CachedInfo().Config; got.FilterSubject != s.Requested() || got.AckWait != 10*time.Second {
		t.Errorf("consumer after the restart: %+v", got)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if req, err := event.DecodeRequest(msg.Data(), pair()); err != nil || req.Event.ID() != testID {
		t.Fatalf("the request after the restart: %+v, %v", req, err)
	}
	if err := msg.DoubleAck(ctx); err != nil {
		t.Fatal(err)
	}
	st, c := ensure(t, ctx, js) // still idempotent on the restarted server
	if st.CachedInfo().State.Msgs != 1 || c.CachedInfo().NumAckPending != 0 {
		t.Errorf("after the restart: %d messages, %d pending acks", st.CachedInfo().State.Msgs, c.CachedInfo().NumAckPending)
	}
	// The duplicate window survives too: the same id is still a duplicate.
	ack, err := event.Publish(ctx, js, s.Requested(), requestEvent(t, validRequest()))
	if err != nil || !ack.Duplicate {
		t.Errorf("republishing after the restart: %+v, %v; want a duplicate", ack, err)
	}
}

// A stream someone changed is put back; one that cannot be (another storage) is an error that
// says which stream.
func TestEnsureStreamRepairsDrift(t *testing.T) {
	integration(t)
	t.Parallel()
	_, js, ctx := jetStream(t)
	cfg, err := event.StreamConfig(testPair)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Duplicates, cfg.MaxAge = 30*time.Second, time.Hour
	if _, err := js.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	st, err := event.EnsureStream(ctx, js, testPair)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().Config; got.Duplicates != event.DuplicateWindow || got.MaxAge != event.StreamMaxAge {
		t.Errorf("after EnsureStream: duplicates %s, max age %s", got.Duplicates, got.MaxAge)
	}

	other, _ := event.StreamConfig("other")
	other.Storage = jetstream.MemoryStorage
	if _, err := js.CreateStream(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := event.EnsureStream(ctx, js, "other"); err == nil || !strings.Contains(err.Error(), "ensure stream MPHA_OTHER") {
		t.Errorf("EnsureStream over a memory stream: %v", err)
	}
}

func TestEnsureStreamRefusesABadPair(t *testing.T) {
	t.Parallel()
	// Refused before any call: a nil client is never used.
	if _, err := event.EnsureStream(context.Background(), nil, "tsb.mp"); err == nil {
		t.Error("EnsureStream accepted pair tsb.mp")
	}
	if _, err := event.Reject(context.Background(), nil, event.Refused{Pair: "tsb.mp"}, &event.RejectError{}); err == nil {
		t.Error("Reject accepted pair tsb.mp")
	}
}
