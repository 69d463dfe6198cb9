package event_test

import (
	"errors"
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/agent/event"
)

// secretRun is what scrub withholds when it mixes letters and digits; no Detail may hold one.
var secretRun = regexp.MustCompile(`[A-Za-z0-9+/=_]{24,}`)

// FuzzDecodeRequest: no payload panics; a refusal is a *RejectError with a known reason and a
// short detail that repeats nothing secret-looking; an accepted request satisfies every rule and
// survives encode → decode unchanged.
func FuzzDecodeRequest(f *testing.F) {
	alice := testKey(1)
	e := requestEvent(f, validRequest())
	f.Add(encode(f, e), false)
	if err := event.Sign(&e, alice); err != nil {
		f.Fatal(err)
	}
	f.Add(encode(f, e), true)
	emergency := validRequest()
	emergency.Mode, emergency.Force, emergency.DryRun = event.ModeEmergency, []string{"database", "root-ca"}, true
	f.Add(encode(f, requestEvent(f, emergency)), false)
	for _, seed := range []string{
		`{"specversion":"1.0","id":"a","source":"s","type":"dev.mpha.failover.requested.v1","data_base64":"eyJ0YXJnZXQiOiJ3ZXN0In0="}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"dev.mpha.failover.requested.v1","data_base64":1}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"dev.mpha.failover.requested.v1","datacontenttype":"text/plain","data":"x"}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"dev.mpha.failover.requested.v1","data":{"target":"west","mode":"drill","reason":"r","requestedBy":"b","expectedEpoch":99}}`,
		`{"data":{"target":"east"},"specversion":"1.0","specversion":"1.0"}`,
		`{"specversion":"1.0","id":"a","source":"s","type":"dev.mpha.failover.requested.v1","mphasig":"AAAA","mphakey":"x","data":{}}`,
		`[]`, `null`, `{"specversion":`, "",
	} {
		f.Add([]byte(seed), false)
	}
	v := event.Validation{Clusters: []string{"east", "west"}, Epoch: 4, TrustedKeys: trusted(f, alice)}
	f.Fuzz(func(t *testing.T, payload []byte, requireSigned bool) {
		v := v
		v.RequireSigned = requireSigned
		req, err := event.DecodeRequest(payload, v)
		if err != nil {
			checkRejection(t, err)
			return
		}
		checkAccepted(t, req, v)
		again, err := event.DecodeRequest(encode(t, req.Event), v)
		if err != nil {
			t.Fatalf("accepted, then refused once re-encoded: %v\n%q", err, payload)
		}
		if diff := cmp.Diff(req.Data, again.Data); diff != "" || again.SignedBy != req.SignedBy {
			t.Errorf("encode → decode changed the request (-first +second):\n%s\nsigned by %q, then %q", diff, req.SignedBy, again.SignedBy)
		}
	})
}

func checkRejection(t *testing.T, err error) {
	t.Helper()
	var rerr *event.RejectError
	if !errors.As(err, &rerr) {
		t.Fatalf("error %v (%T) is not a *RejectError", err, err)
	}
	if !slices.Contains(event.Reasons(), rerr.Reason) || rerr.Detail == "" || len(rerr.Detail) > 512 {
		t.Fatalf("reason %q, detail of %d bytes: %q", rerr.Reason, len(rerr.Detail), rerr.Detail)
	}
	for _, run := range secretRun.FindAllString(rerr.Detail, -1) {
		if regexp.MustCompile(`[0-9]`).MatchString(run) && regexp.MustCompile(`[A-Za-z]`).MatchString(run) {
			t.Fatalf("detail repeats a secret-looking %q: %q", run, rerr.Detail)
		}
	}
	if _, err := event.NewRejected("mpha://agent/west", "rejected-1", event.Rejected{Subject: "s", Reason: rerr.Reason, Detail: rerr.Detail}); err != nil {
		t.Fatalf("the rejection of it cannot be built: %v", err)
	}
}

func checkAccepted(t *testing.T, req event.Request, v event.Validation) {
	t.Helper()
	d := req.Data
	switch {
	case !slices.Contains(v.Clusters, d.Target):
		t.Fatalf("accepted target %q", d.Target)
	case !slices.Contains(event.Modes(), d.Mode):
		t.Fatalf("accepted mode %q", d.Mode)
	case d.ExpectedEpoch != nil && *d.ExpectedEpoch < v.Epoch:
		t.Fatalf("accepted stale epoch %d", *d.ExpectedEpoch)
	case len(d.Force) > 0 && d.Mode != event.ModeEmergency:
		t.Fatalf("accepted force in mode %s", d.Mode)
	case d.Reason == "" || d.RequestedBy == "":
		t.Fatalf("accepted without reason or requester: %+v", d)
	case event.ValidateID(req.Event.ID()) != nil:
		t.Fatalf("accepted id %q", req.Event.ID())
	case v.RequireSigned && req.SignedBy == "":
		t.Fatal("accepted unsigned while signatures are required")
	}
	for _, c := range d.Force {
		if !slices.Contains(event.CheckNames(), c) {
			t.Fatalf("accepted force %q", c)
		}
	}
}
