package health_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
)

func suggestionSeed(t testing.TB) []byte {
	t.Helper()
	epoch := int64(7)
	e, err := health.NewSuggestion("mpha://agent/west", "suggested-west-e7-20261122t100020z", health.Suggestion{
		Target: "west", From: "east", Epoch: &epoch, Reason: "health: the MP of east failed 3 probe rounds in a row",
		SuggestedBy: "mpha-agent/west", Since: time.Date(2026, 11, 22, 10, 0, 20, 0, time.UTC),
		Evidence: []string{"floating status: HTTP 503"}, Request: "health-west-e7-20261122t100020z",
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// FuzzDecodeSuggestion: DecodeSuggestion never panics, and a suggestion it accepts, published
// again, decodes to the same data.
func FuzzDecodeSuggestion(f *testing.F) {
	f.Add(suggestionSeed(f))
	f.Add([]byte(`{"specversion":"1.0","id":"x","source":"s","type":"dev.mpha.failover.suggested.v1","data":{"since":"bad"}}`))
	f.Fuzz(func(t *testing.T, payload []byte) {
		e, s, err := health.DecodeSuggestion(payload)
		if err != nil {
			return
		}
		again, err := health.NewSuggestion(e.Source(), e.ID(), s)
		if err != nil {
			t.Fatalf("re-encoding an accepted suggestion: %v", err)
		}
		b, err := event.Encode(again)
		if err != nil {
			t.Fatalf("re-encoding an accepted suggestion: %v", err)
		}
		_, s2, err := health.DecodeSuggestion(b)
		if err != nil {
			t.Fatalf("decoding the re-encoded suggestion: %v", err)
		}
		if diff := cmp.Diff(s, s2); diff != "" {
			t.Fatalf("decode(encode(s)) differs:\n%s", diff)
		}
	})
}

func TestDecodeSuggestionRefusesOtherTypes(t *testing.T) {
	t.Parallel()
	e, err := event.NewHeartbeat("mpha://agent/east", "east-1", event.Heartbeat{Cluster: "east", Role: "active"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := event.Encode(e)
	if _, _, err := health.DecodeSuggestion(b); err == nil {
		t.Error("a heartbeat decoded as a suggestion")
	}
	if _, s, err := health.DecodeSuggestion(suggestionSeed(t)); err != nil || s.Target != "west" || *s.Epoch != 7 {
		t.Errorf("seed: %+v, %v", s, err)
	}
}
