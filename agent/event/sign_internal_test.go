package event

import (
	"strings"
	"testing"
	"time"
)

// The signing string is a contract other signers implement: this is the example of its doc comment.
func TestSigningStringLayout(t *testing.T) {
	t.Parallel()
	e, err := NewFailoverRequest("mpha://cli/alice", "1b4e28ba-2fa1-11d2-883f-0016d3cca427", FailoverRequest{
		Target: "west", Mode: ModePlanned, Reason: "r", RequestedBy: "a",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.SetTime(time.Date(2026, 8, 1, 10, 0, 0, 0, time.UTC))
	want := strings.Join([]string{
		"mpha-signature-v1",
		"specversion=3:1.0",
		"id=36:1b4e28ba-2fa1-11d2-883f-0016d3cca427",
		"source=16:mpha://cli/alice",
		"type=30:dev.mpha.failover.requested.v1",
		"subject=0:",
		"time=20:2026-08-01T10:00:00Z",
		"datacontenttype=16:application/json",
		"dataschema=0:",
		"mphakey=16:3f0c5e2b9a7d4c11",
		`data=65:{"target":"west","mode":"planned","reason":"r","requestedBy":"a"}`,
	}, "\n") + "\n"
	if got := string(signingString(e, "3f0c5e2b9a7d4c11")); got != want {
		t.Errorf("signing string:\n%s\nwant (as documented on signingString):\n%s", got, want)
	}
}
