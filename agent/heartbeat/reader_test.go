package heartbeat_test

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/heartbeat"
)

// A Reader on the real NATS: no heartbeat yet is ErrNoHeartbeat; the last one published comes
// back with its id and the stream's time; aged by a clock an hour ahead, Recent calls it stale
// and says how old; a pair without a stream says so.
func TestReaderLast(t *testing.T) {
	integration(t)
	t.Parallel()
	_, js := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := heartbeat.NewReader(js, pairName, heartbeat.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}

	for _, read := range []func() (heartbeat.Beat, error){
		func() (heartbeat.Beat, error) { return r.Last(ctx, "east") },
		func() (heartbeat.Beat, error) { return r.Recent(ctx, "east", time.Hour) },
	} {
		b, err := read()
		if !errors.Is(err, heartbeat.ErrNoHeartbeat) || err.Error() != "no heartbeat from east" || !b.At.IsZero() {
			t.Errorf("before any heartbeat: %+v, %v; want ErrNoHeartbeat from east", b, err)
		}
	}

	before := time.Now()
	p := &heartbeat.Publisher{Cluster: "east", Subjects: subjects(t), Pair: &staticPair{p: parsePair(t, "east", 3)}, JS: js}
	sent, err := p.Beat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Last(ctx, "east")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sent, b.Heartbeat); diff != "" {
		t.Errorf("heartbeat read (-sent +read):\n%s", diff)
	}
	if !strings.HasPrefix(b.ID, "east-") || b.At.Before(before.Add(-time.Second)) || b.At.After(time.Now().Add(time.Second)) {
		t.Errorf("id %q at %s, want east-… stored after %s", b.ID, b.At, before)
	}
	if _, err := r.Recent(ctx, "east", time.Minute); err != nil {
		t.Errorf("a fresh heartbeat: %v", err)
	}
	if _, err := r.Last(ctx, "west"); !errors.Is(err, heartbeat.ErrNoHeartbeat) {
		t.Errorf("west, who sent none: %v", err)
	}

	// An hour later by the reader's clock.
	later, err := heartbeat.NewReader(js, pairName, heartbeat.ReaderOptions{Now: func() time.Time { return b.At.Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	old, err := later.Recent(ctx, "east", time.Minute)
	if !errors.Is(err, heartbeat.ErrStale) || err.Error() != "heartbeat too old: the last heartbeat of east is 1h0m0s old, over 1m0s" {
		t.Errorf("an hour-old heartbeat within a minute: %v", err)
	}
	if old.Age(b.At.Add(time.Hour)) != time.Hour || old.Heartbeat.Cluster != "east" {
		t.Errorf("stale beat %+v, age %s; want east's, an hour old", old, old.Age(b.At.Add(time.Hour)))
	}
	if _, err := later.Recent(ctx, "east", 2*time.Hour); err != nil {
		t.Errorf("an hour-old heartbeat within two hours: %v", err)
	}
	if got := b.Age(b.At.Add(-time.Minute)); got != 0 {
		t.Errorf("age before the stream's time = %s, want 0 (clocks apart)", got)
	}

	other, err := heartbeat.NewReader(js, "other-pair", heartbeat.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Last(ctx, "east"); !errors.Is(err, jetstream.ErrStreamNotFound) || !strings.Contains(err.Error(), "MPHA_OTHER_PAIR") {
		t.Errorf("a pair without a stream: %v", err)
	}
	if _, err := r.Last(ctx, "East_1"); err == nil {
		t.Error("a cluster that is no subject token was read")
	}
	if _, err := heartbeat.NewReader(js, "Not A Pair", heartbeat.ReaderOptions{}); err == nil {
		t.Error("a reader for an invalid pair name was made")
	}
}

// Whatever sits on a heartbeat subject and is not that cluster's heartbeat is ErrMalformed, with
// the subject named and the time it was stored; when old, Recent calls it stale first.
func TestReaderMalformed(t *testing.T) {
	integration(t)
	t.Parallel()
	_, js := startNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	heartbeatOf := func(cluster string, data any) []byte {
		e, err := event.NewHeartbeat("mpha://agent/"+cluster, "hb-1", event.Heartbeat{Cluster: cluster, Role: "active", Epoch: 1})
		if err != nil {
			t.Fatal(err)
		}
		if data != nil {
			if err := e.SetData("application/json", data); err != nil {
				t.Fatal(err)
			}
		}
		b, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	status, err := event.NewFailoverStatus("mpha://agent/east", "st-1", event.FailoverStatus{Event: "ev-1", Phase: event.PhaseAccepted, Epoch: 1})
	if err != nil {
		t.Fatal(err)
	}
	statusJSON, err := status.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	r, err := heartbeat.NewReader(js, pairName, heartbeat.ReaderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cluster string
		payload       []byte
		want          string
	}{
		{"not JSON", "east", []byte("not json"), `^malformed heartbeat on mpha\.tsb-mp\.heartbeat\.east: .*JSON`},
		{"another event type", "east", statusJSON, `^malformed heartbeat on mpha\.tsb-mp\.heartbeat\.east: event rejected \(wrong-type\): type "dev\.mpha\.failover\.status\.v1"`},
		{"data of the wrong shape", "east", heartbeatOf("east", map[string]any{"cluster": "east", "epoch": "seven"}),
			`^malformed heartbeat on mpha\.tsb-mp\.heartbeat\.east: data: json: cannot unmarshal string into Go struct field Heartbeat\.epoch of type int64$`},
		{"another cluster's heartbeat", "west", heartbeatOf("east", nil),
			`^malformed heartbeat on mpha\.tsb-mp\.heartbeat\.west: it says it is from "east"$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := js.Publish(ctx, "mpha.tsb-mp.heartbeat."+tc.cluster, tc.payload); err != nil {
				t.Fatal(err)
			}
			b, err := r.Last(ctx, tc.cluster)
			if !errors.Is(err, heartbeat.ErrMalformed) || !regexp.MustCompile(tc.want).MatchString(err.Error()) {
				t.Errorf("err = %v, want ErrMalformed matching %s", err, tc.want)
			}
			if b.At.IsZero() || b.ID != "" || b.Heartbeat.Cluster != "" {
				t.Errorf("beat %+v: want only the time it was stored", b)
			}
			if _, err := r.Recent(ctx, tc.cluster, time.Hour); !errors.Is(err, heartbeat.ErrMalformed) {
				t.Errorf("Recent of a fresh malformed message: %v", err)
			}
			later, err := heartbeat.NewReader(js, pairName, heartbeat.ReaderOptions{Now: func() time.Time { return b.At.Add(time.Hour) }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := later.Recent(ctx, tc.cluster, time.Minute); !errors.Is(err, heartbeat.ErrStale) {
				t.Errorf("Recent of an old malformed message: %v, want ErrStale", err)
			}
		})
	}
}

// A lookup with NATS gone ends within the reader's timeout even when the caller's context has
// no deadline (jetstream's own default would wait 5 s).
func TestReaderTimeout(t *testing.T) {
	integration(t)
	t.Parallel()
	n, js := startNATS(t)
	r, err := heartbeat.NewReader(js, pairName, heartbeat.ReaderOptions{Timeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	n.Stop()
	start := time.Now()
	_, err = r.Last(context.Background(), "east")
	if elapsed := time.Since(start); err == nil || elapsed > 2*time.Second {
		t.Errorf("with NATS down: %v after %s, want an error within 2s", err, elapsed)
	}
}
