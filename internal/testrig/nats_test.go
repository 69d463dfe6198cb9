package testrig_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/internal/testrig"
)

// Messages published to a file-backed stream survive a server restart and reach a durable
// consumer afterwards; the client reconnects by itself.
func TestNATSJetStreamSurvivesRestart(t *testing.T) {
	integration(t)
	t.Parallel()
	n := testrig.StartNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: "MPHA_RIG", Subjects: []string{"mpha.rig.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "agent", AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, "mpha.rig.failover.requested", fmt.Appendf(nil, "m%d", i), jetstream.WithMsgID(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	ack, err := js.Publish(ctx, "mpha.rig.failover.requested", []byte("dup"), jetstream.WithMsgID("0"))
	if err != nil || !ack.Duplicate {
		t.Fatalf("republishing id 0: ack %+v, err %v; want a duplicate", ack, err)
	}

	n.Restart(t)

	js2, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var cons jetstream.Consumer
	testrig.Eventually(t, "the durable consumer after the restart", 30*time.Second, func(ctx context.Context) error {
		cons, err = js2.Consumer(ctx, "MPHA_RIG", "agent") // the client reconnects in the background
		return err
	})
	batch, err := cons.Fetch(3, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for m := range batch.Messages() {
		got = append(got, string(m.Data()))
		if err := m.Ack(); err != nil {
			t.Error(err)
		}
	}
	if want := []string{"m0", "m1", "m2"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart consumed %q, want %q", got, want)
	}
}
