package event_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/readiness"
)

// withData returns a request envelope whose data is validData with one key set to raw JSON (or
// removed when raw is "").
func withData(t *testing.T, key, raw string) []byte {
	t.Helper()
	data := strings.TrimSuffix(validData, "}")
	if raw == "" {
		return envelope(t, nil, strings.Replace(validData, fmt.Sprintf(`"%s":`, key), `"removed":`, 1))
	}
	return envelope(t, nil, data+fmt.Sprintf(`,%q:%s}`, key, raw))
}

func request(t *testing.T, edit func(*event.FailoverRequest)) []byte {
	t.Helper()
	r := validRequest()
	edit(&r)
	return encode(t, requestEvent(t, r))
}

func TestDecodeRequestRejects(t *testing.T) {
	t.Parallel()
	signer := testKey(1)
	tests := []struct {
		name    string
		payload []byte
		v       func(*event.Validation)
		reason  string
		detail  string // a substring Detail must hold: it names the problem
	}{
		{"1 MiB", padded(t, 1<<20), nil, event.ReasonOversized, "1048576 bytes, over the 65536-byte limit"},
		{"one byte over the limit", padded(t, event.MaxPayload+1), nil, event.ReasonOversized, "65537 bytes"},
		{"truncated JSON", []byte(`{"specversion":"1.0","id":`), nil, event.ReasonNotJSON, "invalid JSON at byte"},
		{"binary", []byte{0xff, 0xfe, 0x00, 0x01}, nil, event.ReasonNotJSON, "invalid JSON at byte 1"},
		{"empty", nil, nil, event.ReasonNotJSON, "invalid JSON"},
		{"a JSON array", []byte(`[1,2]`), nil, event.ReasonNotCloudEvent, "JSON object, got an array"},
		{"JSON null", []byte(`null`), nil, event.ReasonNotCloudEvent, "got null"},
		{"no specversion", envelope(t, func(a map[string]any) { delete(a, "specversion") }, validData), nil, event.ReasonNotCloudEvent, `"specversion" is required`},
		{"specversion 0.3", envelope(t, func(a map[string]any) { a["specversion"] = "0.3" }, validData), nil, event.ReasonNotCloudEvent, `specversion "0.3", want "1.0"`},
		{"no id", envelope(t, func(a map[string]any) { delete(a, "id") }, validData), nil, event.ReasonNotCloudEvent, `"id" is required`},
		{"empty source", envelope(t, func(a map[string]any) { a["source"] = " " }, validData), nil, event.ReasonNotCloudEvent, `"source" is required and empty`},
		{"no type", envelope(t, func(a map[string]any) { delete(a, "type") }, validData), nil, event.ReasonNotCloudEvent, `"type" is required`},
		{"id a number", envelope(t, func(a map[string]any) { a["id"] = 7 }, validData), nil, event.ReasonNotCloudEvent, `"id" must be a string, got a number`},
		{"time not RFC 3339", envelope(t, func(a map[string]any) { a["time"] = "yesterday" }, validData), nil, event.ReasonNotCloudEvent, "RFC3339"},
		{"data_base64 a number", envelope(t, func(a map[string]any) { a["data_base64"] = 1 }, ""), nil, event.ReasonNotCloudEvent, `"data_base64" must be a string`},
		{"data and data_base64", envelope(t, func(a map[string]any) { a["data_base64"] = "e30=" }, validData), nil, event.ReasonNotCloudEvent, "both present"},
		{"extension an object", envelope(t, func(a map[string]any) { a["trace"] = map[string]int{"a": 1} }, validData), nil, event.ReasonNotCloudEvent, `extension "trace" must be a string`},
		{"attribute name with capitals", envelope(t, func(a map[string]any) { a["Target"] = "west" }, validData), nil, event.ReasonNotCloudEvent, `attribute name "Target"`},
		{"a heartbeat", envelope(t, func(a map[string]any) { a["type"] = event.TypeHeartbeat }, validData), nil, event.ReasonWrongType, `type "dev.mpha.heartbeat.v1", want "dev.mpha.failover.requested.v1"`},
		{"id with a slash", envelope(t, func(a map[string]any) { a["id"] = "../main" }, validData), nil, event.ReasonBadID, `event id "../main"`},
		{"id ending in .lock", envelope(t, func(a map[string]any) { a["id"] = "abc.lock" }, validData), nil, event.ReasonBadID, ".lock"},
		{"id too long", envelope(t, func(a map[string]any) { a["id"] = strings.Repeat("a", 129) }, validData), nil, event.ReasonBadID, "129 bytes, over 128"},
		{"unsigned when required", request(t, func(*event.FailoverRequest) {}), func(v *event.Validation) { v.RequireSigned, v.TrustedKeys = true, trusted(t, signer) }, event.ReasonUnsigned, "extension mphasig is missing"},
		{"text data", envelope(t, func(a map[string]any) { a["datacontenttype"] = "text/plain"; a["data"] = "west please" }, ""), nil, event.ReasonNotJSON, `datacontenttype "text/plain"`},
		{"data an array", envelope(t, nil, `["west"]`), nil, event.ReasonNotJSON, "data must be a JSON object, got an array"},
		{"data_base64 not JSON", envelope(t, func(a map[string]any) { a["data_base64"] = "d2VzdA==" }, ""), nil, event.ReasonNotJSON, "data must be a JSON object, got invalid JSON"},
		{"no data", envelope(t, nil, ""), nil, event.ReasonMissingField, "no data"},
		{"no target", withData(t, "target", ""), nil, event.ReasonMissingField, "data.target is required"},
		{"target null", withData(t, "target", "null"), nil, event.ReasonMissingField, "data.target is required"},
		{"no mode", withData(t, "mode", ""), nil, event.ReasonMissingField, "data.mode is required"},
		{"no reason", withData(t, "reason", ""), nil, event.ReasonMissingField, "data.reason is required"},
		{"no requestedBy", withData(t, "requestedBy", ""), nil, event.ReasonMissingField, "data.requestedBy is required"},
		{"target a number", withData(t, "target", "5"), nil, event.ReasonBadField, "data.target must be a string, got a number"},
		{"expectedEpoch a string", withData(t, "expectedEpoch", `"4"`), nil, event.ReasonBadField, "data.expectedEpoch must be an integer, got a string"},
		{"expectedEpoch a fraction", withData(t, "expectedEpoch", `4.5`), nil, event.ReasonBadField, "data.expectedEpoch must be an integer"},
		{"dryRun a string", withData(t, "dryRun", `"yes"`), nil, event.ReasonBadField, "data.dryRun must be a boolean"},
		{"force a string", withData(t, "force", `"root-ca"`), nil, event.ReasonBadField, "data.force must be a list of check names"},
		{"two-line reason", request(t, func(r *event.FailoverRequest) { r.Reason = "a\nMpha-Epoch: 99" }), nil, event.ReasonBadField, "data.reason must be one printable line"},
		{"padded requestedBy", request(t, func(r *event.FailoverRequest) { r.RequestedBy = " alice" }), nil, event.ReasonBadField, "data.requestedBy"},
		{"long reason", request(t, func(r *event.FailoverRequest) { r.Reason = strings.Repeat("x", 257) }), nil, event.ReasonBadField, "at most 256 bytes"},
		{"unknown target", request(t, func(r *event.FailoverRequest) { r.Target = "north" }), nil, event.ReasonUnknownTarget, `target "north" is not a cluster of the pair (east, west)`},
		{"target differs in case", request(t, func(r *event.FailoverRequest) { r.Target = "West" }), nil, event.ReasonUnknownTarget, `"West"`},
		{"bad mode", request(t, func(r *event.FailoverRequest) { r.Mode = "yolo" }), nil, event.ReasonBadMode, `mode "yolo": want planned, emergency or drill`},
		{"stale epoch", request(t, func(r *event.FailoverRequest) { r.ExpectedEpoch = epoch(3) }), nil, event.ReasonStaleEpoch, "expectedEpoch 3 is stale: the pair is at epoch 4"},
		{"negative epoch", request(t, func(r *event.FailoverRequest) { r.ExpectedEpoch = epoch(-1) }), nil, event.ReasonStaleEpoch, "expectedEpoch -1"},
		{"force when planned", request(t, func(r *event.FailoverRequest) { r.Force = []string{"root-ca"} }), nil, event.ReasonForceWithoutEmergency, "needs mode emergency; mode is planned"},
		{"force in a drill", request(t, func(r *event.FailoverRequest) { r.Mode, r.Force = event.ModeDrill, []string{"database"} }), nil, event.ReasonForceWithoutEmergency, "mode is drill"},
		{"force an unknown check", request(t, func(r *event.FailoverRequest) {
			r.Mode, r.Force = event.ModeEmergency, []string{"database", "everything"}
		}), nil, event.ReasonUnknownCheck, `force names "everything", which is not a check (signing-key-kid, jwks-kid,`},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		seen[tc.reason] = true
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			v := pair()
			if tc.v != nil {
				tc.v(&v)
			}
			_, err := event.DecodeRequest(tc.payload, v)
			rerr := asReject(t, err)
			if rerr.Reason != tc.reason || !strings.Contains(rerr.Detail, tc.detail) {
				t.Errorf("got %s: %s\nwant %s with detail containing %q", rerr.Reason, rerr.Detail, tc.reason, tc.detail)
			}
		})
	}
	for _, r := range event.Reasons() {
		if !seen[r] && r != event.ReasonBadSignature && !slices.Contains(event.HandlerReasons(), r) { // bad signatures: TestSignatures
			t.Errorf("no case for reason %s", r)
		}
	}
}

func asReject(t *testing.T, err error) *event.RejectError {
	t.Helper()
	var rerr *event.RejectError
	if !errors.As(err, &rerr) {
		t.Fatalf("got error %v (%T), want a *RejectError", err, err)
	}
	return rerr
}

// padded is a valid request whose data carries an unknown field that makes the payload size bytes.
func padded(t *testing.T, size int) []byte {
	t.Helper()
	b := envelope(t, nil, `{"target":"west","mode":"planned","reason":"r","requestedBy":"a","pad":""}`)
	if size < len(b) {
		t.Fatalf("cannot pad %d bytes to %d", len(b), size)
	}
	return bytes.Replace(b, []byte(`"pad":""`), []byte(`"pad":"`+strings.Repeat("x", size-len(b))+`"`), 1)
}

func TestDecodeRequestAtTheLimit(t *testing.T) {
	t.Parallel()
	b := padded(t, event.MaxPayload)
	if len(b) != event.MaxPayload {
		t.Fatalf("padded to %d bytes", len(b))
	}
	if _, err := event.DecodeRequest(b, pair()); err != nil {
		t.Errorf("a request of exactly MaxPayload bytes: %v", err)
	}
}

func TestDecodeRequestRoundTrip(t *testing.T) {
	t.Parallel()
	for _, want := range []event.FailoverRequest{
		validRequest(),
		{Target: "east", Mode: event.ModeEmergency, Reason: "west gone", RequestedBy: "pagerduty", DryRun: true, Force: event.CheckNames()},
		{Target: "west", Mode: event.ModeDrill, Reason: "weekly drill", RequestedBy: "cron", ExpectedEpoch: epoch(9)},
	} {
		got, err := event.DecodeRequest(encode(t, requestEvent(t, want)), pair())
		if err != nil {
			t.Fatalf("%+v: %v", want, err)
		}
		if diff := cmp.Diff(want, got.Data); diff != "" {
			t.Errorf("data changed (-want +got):\n%s", diff)
		}
		if got.Event.ID() != testID || got.Event.Source() != testSource || got.SignedBy != "" {
			t.Errorf("event %s from %s signed by %q", got.Event.ID(), got.Event.Source(), got.SignedBy)
		}
	}
}

// Fields and attributes a later version may add are ignored; names are matched exactly.
func TestDecodeRequestIgnoresUnknownFields(t *testing.T) {
	t.Parallel()
	payload := envelope(t, func(a map[string]any) {
		a["traceparent"] = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		a["priority"] = 3
	}, `{"target":"west","mode":"planned","reason":"r","requestedBy":"a","ticket":{"id":"INC-1","urls":["x"]},"Mode":"drill","dryRun":null}`)
	got, err := event.DecodeRequest(payload, pair())
	if err != nil {
		t.Fatal(err)
	}
	want := event.FailoverRequest{Target: "west", Mode: event.ModePlanned, Reason: "r", RequestedBy: "a"}
	if diff := cmp.Diff(want, got.Data); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestDecodeRequestEpochs(t *testing.T) {
	t.Parallel()
	for _, e := range []*int64{nil, epoch(4), epoch(5)} {
		if _, err := event.DecodeRequest(request(t, func(r *event.FailoverRequest) { r.ExpectedEpoch = e }), pair()); err != nil {
			t.Errorf("expectedEpoch %v at epoch 4: %v", e, err)
		}
	}
}

// A rejection's detail never repeats a token, a key or a long value from the event.
func TestRejectDetailWithholdsSecrets(t *testing.T) {
	t.Parallel()
	for _, target := range []string{
		"ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5",
		"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl",
		"password=hunter2",
		"https://bot:s3cret@git.example.com/fleet.git",
		"-----BEGIN PRIVATE KEY-----",
		strings.Repeat("west", 2000),
	} {
		_, err := event.DecodeRequest(request(t, func(r *event.FailoverRequest) { r.Target = target }), pair())
		rerr := asReject(t, err)
		for _, leak := range []string{"aB3dE5fG7hI9", "eyJhbGciOiJIUzI1NiJ9", "hunter2", "s3cret", "PRIVATE KEY", strings.Repeat("west", 30)} {
			if strings.Contains(rerr.Detail, leak) {
				t.Errorf("target %.20q…: detail %q repeats %q", target, rerr.Detail, leak)
			}
		}
		if len(rerr.Detail) > 200 {
			t.Errorf("detail of %d bytes: %q", len(rerr.Detail), rerr.Detail)
		}
	}
}

func TestDecode(t *testing.T) {
	t.Parallel()
	e, err := event.NewHeartbeat("mpha://agent/east", "hb-1", event.Heartbeat{Cluster: "east", Role: "active", Epoch: 4})
	if err != nil {
		t.Fatal(err)
	}
	got, err := event.Decode(encode(t, e), event.TypeHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	var hb event.Heartbeat
	if err := got.DataAs(&hb); err != nil || hb.Cluster != "east" || hb.Epoch != 4 {
		t.Errorf("heartbeat %+v, %v", hb, err)
	}
	_, err = event.Decode(encode(t, e), event.TypeFailoverStatus)
	if rerr := asReject(t, err); rerr.Reason != event.ReasonWrongType {
		t.Errorf("a heartbeat read as a status: %v", rerr)
	}
}

// force may name every preflight check, and the readiness checks are preflight checks.
func TestCheckNamesCoverReadiness(t *testing.T) {
	t.Parallel()
	for _, c := range readiness.Checks() {
		if !slices.Contains(event.CheckNames(), c) {
			t.Errorf("readiness check %s is not in event.CheckNames", c)
		}
	}
}
