package event_test

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
)

func signed(t *testing.T, key ed25519.PrivateKey, edit func(e *event.Event)) []byte {
	t.Helper()
	e := requestEvent(t, validRequest())
	if edit != nil {
		edit(&e)
	}
	if err := event.Sign(&e, key); err != nil {
		t.Fatal(err)
	}
	return encode(t, e)
}

func TestSignatures(t *testing.T) {
	t.Parallel()
	alice, bob, mallory := testKey(1), testKey(2), testKey(3)
	good := signed(t, alice, nil)
	required := event.Validation{Clusters: []string{"east", "west"}, Epoch: 4, RequireSigned: true, TrustedKeys: trusted(t, alice, bob)}
	optional := required
	optional.RequireSigned = false
	none := pair()
	tests := []struct {
		name    string
		payload []byte
		v       event.Validation
		reason  string // "" = accepted
		detail  string
		by      string
	}{
		{"signed, required", good, required, "", "", event.KeyID(alice.Public().(ed25519.PublicKey))},
		{"signed by the second key", signed(t, bob, nil), required, "", "", event.KeyID(bob.Public().(ed25519.PublicKey))},
		{"signed, not required", good, optional, "", "", event.KeyID(alice.Public().(ed25519.PublicKey))},
		{"signed, no keys configured", good, none, "", "", ""},
		{"unsigned, not required", encode(t, requestEvent(t, validRequest())), optional, "", "", ""},
		{"unsigned, required", encode(t, requestEvent(t, validRequest())), required, event.ReasonUnsigned, "mphasig is missing", ""},
		{"an untrusted key", signed(t, mallory, nil), required, event.ReasonBadSignature, "is not a trusted key", ""},
		{"an untrusted key, signatures optional", signed(t, mallory, nil), optional, event.ReasonBadSignature, "is not a trusted key", ""},
		{"tampered data", bytes.Replace(good, []byte(`"target":"west"`), []byte(`"target":"east"`), 1), required, event.ReasonBadSignature, "does not match the event", ""},
		{"tampered data, signatures optional", bytes.Replace(good, []byte(`"mode":"planned"`), []byte(`"mode":"drill"`), 1), optional, event.ReasonBadSignature, "does not match", ""},
		{"tampered id", bytes.Replace(good, []byte(testID), []byte("replayed-1"), 1), required, event.ReasonBadSignature, "does not match", ""},
		{"tampered time", bytes.Replace(good, []byte("2026-08-01T10:00:00Z"), []byte("2026-08-02T10:00:00Z"), 1), required, event.ReasonBadSignature, "does not match", ""},
		{"tampered source", bytes.Replace(good, []byte(testSource), []byte("mpha://cli/mallory"), 1), required, event.ReasonBadSignature, "does not match", ""},
		{"data re-spaced", bytes.Replace(good, []byte(`"target":"west"`), []byte(`"target": "west"`), 1), required, event.ReasonBadSignature, "does not match", ""},
		{"key id swapped", swapKeyID(t, good, bob), required, event.ReasonBadSignature, "does not match", ""},
		{"signature not base64", setExt(t, good, "mphasig", "not base64!"), required, event.ReasonBadSignature, "standard base64 of a 64-byte ed25519 signature", ""},
		{"signature too short", setExt(t, good, "mphasig", base64.StdEncoding.EncodeToString([]byte("short"))), required, event.ReasonBadSignature, "64-byte", ""},
		{"signature a number", setExt(t, good, "mphasig", 12), required, event.ReasonBadSignature, "standard base64", ""},
		{"no key id", setExt(t, good, "mphakey", nil), required, event.ReasonBadSignature, "mphakey is missing", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := event.DecodeRequest(tc.payload, tc.v)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("rejected: %v", err)
				}
				if got.SignedBy != tc.by {
					t.Errorf("SignedBy %q, want %q", got.SignedBy, tc.by)
				}
				return
			}
			rerr := asReject(t, err)
			if rerr.Reason != tc.reason || !strings.Contains(rerr.Detail, tc.detail) {
				t.Errorf("got %s: %s\nwant %s with detail containing %q", rerr.Reason, rerr.Detail, tc.reason, tc.detail)
			}
		})
	}
}

// setExt sets (or, for nil, removes) a top-level attribute of an encoded event.
func setExt(t *testing.T, payload []byte, name string, value any) []byte {
	t.Helper()
	e, err := event.Decode(payload, event.TypeFailoverRequested)
	if err != nil {
		t.Fatal(err)
	}
	e.SetExtension(name, value)
	return encode(t, e)
}

// swapKeyID names other's key in an event signed by someone else.
func swapKeyID(t *testing.T, payload []byte, other ed25519.PrivateKey) []byte {
	t.Helper()
	return setExt(t, payload, event.KeyExtension, event.KeyID(other.Public().(ed25519.PublicKey)))
}

// A signed event survives what JetStream and the SDK do to it: a time in another zone, data
// sent as data_base64, and re-signing.
func TestSignatureSurvivesEncoding(t *testing.T) {
	t.Parallel()
	key := testKey(4)
	v := event.Validation{Clusters: []string{"east", "west"}, Epoch: 4, RequireSigned: true, TrustedKeys: trusted(t, key)}
	zone := time.FixedZone("CEST", 2*3600)
	for name, edit := range map[string]func(*event.Event){
		"time with an offset": func(e *event.Event) { e.SetTime(time.Date(2026, 8, 1, 12, 0, 0, 123456000, zone)) },
		"data_base64":         func(e *event.Event) { _ = e.SetData("application/json", []byte(validData)) },
		"subject and schema": func(e *event.Event) {
			e.SetSubject("west")
			e.SetDataSchema("https://mpha.dev/schema/failover-requested-v1.json")
		},
		"signed twice": func(e *event.Event) {
			if err := event.Sign(e, testKey(9)); err != nil {
				t.Fatal(err)
			}
		},
	} {
		payload := signed(t, key, edit)
		if _, err := event.DecodeRequest(payload, v); err != nil {
			t.Errorf("%s: %v\n%s", name, err, payload)
		}
	}
}

func TestSignErrors(t *testing.T) {
	t.Parallel()
	e := requestEvent(t, validRequest())
	if err := event.Sign(&e, ed25519.PrivateKey("short")); err == nil || !strings.Contains(err.Error(), "private key is 5 bytes") {
		t.Errorf("a short key: %v", err)
	}
	var empty event.Event
	if err := event.Sign(&empty, testKey(1)); err == nil {
		t.Error("signing an event without a context succeeded")
	}
	if _, err := event.Encode(empty); err == nil {
		t.Error("encoding an event without a context succeeded")
	}
}

func TestParseTrustedKey(t *testing.T) {
	t.Parallel()
	pub := testKey(5).Public().(ed25519.PublicKey)
	b64 := base64.StdEncoding.EncodeToString(pub)
	for _, s := range []string{"ed25519:" + b64, "ed25519:" + strings.TrimRight(b64, "="), " ed25519:" + b64 + "\n"} {
		k, err := event.ParseTrustedKey(s)
		if err != nil || !k.Key.Equal(pub) || k.ID != event.KeyID(pub) || len(k.ID) != 16 {
			t.Errorf("ParseTrustedKey(%q) = %+v, %v", s, k, err)
		}
	}
	for s, want := range map[string]string{
		b64:                                  "want ed25519:<base64 public key>",
		"ssh-ed25519:" + b64:                 "want ed25519:",
		"ed25519:not*base64":                 "illegal base64",
		"ed25519:" + b64[:20]:                "15 bytes, an ed25519 public key has 32",
		"ed25519:":                           "0 bytes",
		"ed25519:" + b64 + b64:               "illegal base64",
		"ed25519:" + strings.Repeat("A", 60): "45 bytes",
	} {
		if _, err := event.ParseTrustedKey(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseTrustedKey(%.30q): %v, want an error containing %q", s, err, want)
		}
	}
	keys, err := event.ParseTrustedKeys([]string{event.FormatTrustedKey(pub), "x", "y"})
	if err == nil || keys != nil || !strings.Contains(err.Error(), "[1]") || !strings.Contains(err.Error(), "[2]") {
		t.Errorf("ParseTrustedKeys with two bad keys: %v, %v", keys, err)
	}
}
