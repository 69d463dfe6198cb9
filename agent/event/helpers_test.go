package event_test

import (
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
)

const (
	testSource = "mpha://cli/alice"
	testID     = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
)

// pair is the validation most cases use: clusters east and west at epoch 4, no signatures.
func pair() event.Validation {
	return event.Validation{Clusters: []string{"east", "west"}, Epoch: 4}
}

func epoch(n int64) *int64 { return &n }

// validRequest is a planned failover to west that passes pair().
func validRequest() event.FailoverRequest {
	return event.FailoverRequest{
		Target: "west", ExpectedEpoch: epoch(4), Mode: event.ModePlanned,
		Reason: "east MP unhealthy since 09:40", RequestedBy: "alice@example.com",
	}
}

// requestEvent builds a failover.requested event of data, with a fixed time.
func requestEvent(t testing.TB, data event.FailoverRequest) event.Event {
	t.Helper()
	e, err := event.NewFailoverRequest(testSource, testID, data)
	if err != nil {
		t.Fatal(err)
	}
	e.SetTime(time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC))
	return e
}

func encode(t testing.TB, e event.Event) []byte {
	t.Helper()
	b, err := event.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// envelope returns a request's JSON with the CloudEvent attributes and data changed by edit, for
// cases the constructors cannot build; data is the raw JSON of the data attribute.
func envelope(t testing.TB, edit func(attrs map[string]any), data string) []byte {
	t.Helper()
	attrs := map[string]any{
		"specversion": "1.0", "id": testID, "source": testSource,
		"type": event.TypeFailoverRequested, "datacontenttype": "application/json",
	}
	if data != "" {
		attrs["data"] = json.RawMessage(data)
	}
	if edit != nil {
		edit(attrs)
	}
	b, err := json.Marshal(attrs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const validData = `{"target":"west","mode":"planned","reason":"drill of the week","requestedBy":"alice"}`

// testKey is a deterministic ed25519 key.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed([]byte(strings.Repeat(string(rune('a'+seed%26)), ed25519.SeedSize)))
}

func trusted(t testing.TB, keys ...ed25519.PrivateKey) []event.TrustedKey {
	t.Helper()
	var out []event.TrustedKey
	for _, k := range keys {
		tk, err := event.ParseTrustedKey(event.FormatTrustedKey(k.Public().(ed25519.PublicKey)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tk)
	}
	return out
}
