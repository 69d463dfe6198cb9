package testrig_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

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

// StartNATSWith's authentication and TLS: the right credentials connect (and reach JetStream),
// none are refused.
func TestNATSWithAuthAndTLS(t *testing.T) {
	integration(t)
	nk, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	nkPub, _ := nk.PublicKey()
	tests := []struct {
		name string
		opts testrig.NATSOptions
		good func(n *testrig.NATS) []nats.Option
	}{
		{"user", testrig.NATSOptions{Users: []*server.User{{Username: "agent", Password: "s3cret"}}},
			func(*testrig.NATS) []nats.Option { return []nats.Option{nats.UserInfo("agent", "s3cret")} }},
		{"nkey", testrig.NATSOptions{Nkeys: []*server.NkeyUser{{Nkey: nkPub}}},
			func(*testrig.NATS) []nats.Option {
				return []nats.Option{nats.Nkey(nkPub, func(nonce []byte) ([]byte, error) { return nk.Sign(nonce) })}
			}},
		{"token", testrig.NATSOptions{Token: "t0ken"},
			func(*testrig.NATS) []nats.Option { return []nats.Option{nats.Token("t0ken")} }},
		{"operator", testrig.NATSOptions{Operator: true},
			func(n *testrig.NATS) []nats.Option { return []nats.Option{nats.UserCredentials(n.CredsFile)} }},
		{"tls", testrig.NATSOptions{TLS: true},
			func(n *testrig.NATS) []nats.Option { return []nats.Option{nats.RootCAs(n.CAFile)} }},
		{"mutual tls", testrig.NATSOptions{TLS: true, VerifyClients: true},
			func(n *testrig.NATS) []nats.Option {
				return []nats.Option{nats.RootCAs(n.CAFile), nats.ClientCert(n.ClientCertFile, n.ClientKeyFile)}
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			n := testrig.StartNATSWith(t, tc.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			nc, err := nats.Connect(n.URL, tc.good(n)...)
			if err != nil {
				t.Fatalf("with the right credentials: %v", err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "RIG", Subjects: []string{"rig.>"}}); err != nil {
				t.Fatalf("JetStream: %v", err)
			}
			if _, err := js.Publish(ctx, "rig.x", []byte("x")); err != nil {
				t.Fatalf("JetStream publish: %v", err)
			}
			var none []nats.Option
			if tc.opts.TLS {
				none = append(none, nats.Timeout(5*time.Second)) // no CA: the rig's certificate is unknown
			}
			if nc, err := nats.Connect(n.URL, none...); err == nil {
				nc.Close()
				t.Fatal("connected without credentials")
			}
			n.Restart(t) // the generated credentials survive a restart
			nc2, err := nats.Connect(n.URL, tc.good(n)...)
			if err != nil {
				t.Fatalf("after a restart: %v", err)
			}
			nc2.Close()
		})
	}
}
