package event_test

import (
	"strings"
	"testing"

	"github.com/mpha-dev/mpha/agent/event"
)

func TestSubjects(t *testing.T) {
	t.Parallel()
	s, err := event.NewSubjects("tsb-mp")
	if err != nil {
		t.Fatal(err)
	}
	hb, err := s.Heartbeat("east")
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		s.Stream():     "MPHA_TSB_MP",
		s.All():        "mpha.tsb-mp.>",
		s.Requested():  "mpha.tsb-mp.failover.requested",
		s.Status():     "mpha.tsb-mp.failover.status",
		s.DLQ():        "mpha.tsb-mp.dlq",
		hb:             "mpha.tsb-mp.heartbeat.east",
		s.Heartbeats(): "mpha.tsb-mp.heartbeat.*",
		s.Pair():       "tsb-mp",
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}
}

func TestSubjectsRefuseBadNames(t *testing.T) {
	t.Parallel()
	for _, pair := range []string{"", "tsb.mp", "tsb>", "TSB", "a*", "with space", strings.Repeat("a", 64), "-x"} {
		if _, err := event.NewSubjects(pair); err == nil || !strings.Contains(err.Error(), "pair") {
			t.Errorf("NewSubjects(%q): %v, want an error naming the pair", pair, err)
		}
		if _, err := event.StreamConfig(pair); err == nil {
			t.Errorf("StreamConfig(%q) succeeded", pair)
		}
	}
	s, _ := event.NewSubjects("tsb-mp")
	for _, cluster := range []string{"", "east.1", "*", ">", "East"} {
		if _, err := s.Heartbeat(cluster); err == nil {
			t.Errorf("Heartbeat(%q) succeeded", cluster)
		}
	}
}

func TestValidateID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{testID, "a", "cli-20260801T100000Z-7", "A.b_c-1", strings.Repeat("x", 128)} {
		if err := event.ValidateID(id); err != nil {
			t.Errorf("ValidateID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "-a", ".a", "a..b", "a.", "a.lock", "a/b", "a b", "a:b", "a~1", "a^", "é", strings.Repeat("x", 129)} {
		if err := event.ValidateID(id); err == nil {
			t.Errorf("ValidateID(%q) accepted it", id)
		}
	}
}

func TestConstructorsRefuseBadIDs(t *testing.T) {
	t.Parallel()
	if _, err := event.NewFailoverStatus("mpha://agent/west", "a/b", event.FailoverStatus{Event: testID, Phase: event.PhaseAccepted}); err == nil {
		t.Error("NewFailoverStatus accepted id a/b")
	}
	if _, err := event.NewHeartbeat("", "hb-1", event.Heartbeat{Cluster: "east"}); err == nil {
		t.Error("NewHeartbeat accepted an empty source")
	}
}

// The DLQ never carries more than a capped, scrubbed account of what it refused.
func TestNewRejectedCapsAndScrubs(t *testing.T) {
	t.Parallel()
	e, err := event.NewRejected("mpha://agent/west", "rejected-1", event.Rejected{
		Event:   "not/an id " + strings.Repeat("x", 500),
		Subject: "mpha.tsb-mp.failover.requested\x00" + strings.Repeat("y", 500),
		Reason:  event.ReasonNotJSON,
		Detail:  "token=ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5 " + strings.Repeat("z ", 1000),
	})
	if err != nil {
		t.Fatal(err)
	}
	var r event.Rejected
	if err := e.DataAs(&r); err != nil {
		t.Fatal(err)
	}
	if len(r.Event) > event.MaxIDLength || len(r.Subject) > 256 || len(r.Detail) > 512 {
		t.Errorf("not capped: event %d, subject %d, detail %d bytes", len(r.Event), len(r.Subject), len(r.Detail))
	}
	if strings.Contains(r.Detail, "aB3dE5") || strings.Contains(r.Subject, "\x00") {
		t.Errorf("not scrubbed: %+v", r)
	}
	if !strings.HasPrefix(r.Subject, `mpha.tsb-mp.failover.requested\x00`) || r.Reason != event.ReasonNotJSON {
		t.Errorf("subject %q, reason %q", r.Subject, r.Reason)
	}
}
