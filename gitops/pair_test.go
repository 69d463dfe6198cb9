package gitops_test

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mpha-dev/mpha/gitops"
)

func TestParsePair(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("testdata/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p, err := gitops.ParsePair(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Active != "east" || p.Epoch != 7 || p.LastFailover == nil || p.LastFailover.From != "west" {
		t.Errorf("parsed %+v", p)
	}
	if got := p.RecordTTL(); got != 30*time.Second {
		t.Errorf("RecordTTL() = %s, want floatingTTL's 30s", got)
	}
	for self, want := range map[string]string{"east": "west", "west": "east"} {
		if got, err := p.Peer(self); err != nil || got != want {
			t.Errorf("Peer(%s) = %q, %v; want %q", self, got, err, want)
		}
	}
	if _, err := p.Peer("north"); err == nil {
		t.Error("Peer of a stranger succeeded")
	}
	out, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	again, err := gitops.ParsePair(out)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(p, again); diff != "" {
		t.Errorf("marshal → parse (-first +second):\n%s", diff)
	}
}

// floatingTTL is optional: unset, the record keeps the default TTL; the bounds are accepted.
func TestPairRecordTTL(t *testing.T) {
	t.Parallel()
	good, err := os.ReadFile("testdata/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]time.Duration{
		"":                       gitops.DefaultFloatingTTL,
		"floatingTTL: 1s\n":      time.Second,
		"floatingTTL: 2s\n":      2 * time.Second,
		"floatingTTL: 1m30s\n":   90 * time.Second,
		"floatingTTL: \"24h\"\n": 24 * time.Hour,
		"floatingTTL: null\n":    gitops.DefaultFloatingTTL,
	} {
		b := strings.Replace(string(good), "floatingTTL: 30s # the floating CNAME's TTL\n", in, 1)
		p, err := gitops.ParsePair([]byte(b))
		if err != nil {
			t.Errorf("%q: %v", in, err)
			continue
		}
		if got := p.RecordTTL(); got != want {
			t.Errorf("%q: RecordTTL() = %s, want %s", in, got, want)
		}
	}
	if gitops.DefaultFloatingTTL != time.Minute {
		t.Errorf("the default TTL is %s; docs/design.md §3 and manifests/fleet's dns/floating.yaml say 60s", gitops.DefaultFloatingTTL)
	}
}

func TestParsePairRefuses(t *testing.T) {
	t.Parallel()
	good, _ := os.ReadFile("testdata/pair.yaml")
	tests := []struct{ name, from, to, want string }{
		{"unknown key", "epoch: 7", "epoch: 7\ncolour: red", `unknown field "colour"`},
		{"mis-cased key", "floatingFQDN", "floatingfqdn", `unknown field "floatingfqdn"`},
		{"stranger active", "active: east", "active: north", `active: "north" is not one of the clusters`},
		{"negative epoch", "epoch: 7", "epoch: -1", "epoch: must not be negative"},
		{"same cluster twice", "name: west, mpFQDN", "name: east, mpFQDN", `clusters: both are "east"`},
		{"wrong kind", "kind: Pair", "kind: Couple", "apiVersion/kind"},
		{"TTL not a duration", "floatingTTL: 30s", "floatingTTL: soon", `floatingTTL: invalid duration "soon"`},
		{"TTL a number", "floatingTTL: 30s", "floatingTTL: 30", "floatingTTL"},
		{"TTL zero", "floatingTTL: 30s", "floatingTTL: 0s", "floatingTTL: 0s is out of range: want 1s to 24h0m0s"},
		{"TTL negative", "floatingTTL: 30s", "floatingTTL: -5s", "floatingTTL: -5s is out of range"},
		{"TTL under a second", "floatingTTL: 30s", "floatingTTL: 500ms", "floatingTTL: 500ms is out of range"},
		{"TTL over a day", "floatingTTL: 30s", "floatingTTL: 24h1s", "floatingTTL: 24h0m1s is out of range"},
		{"TTL in fractions", "floatingTTL: 30s", "floatingTTL: 2500ms", "floatingTTL: 2.5s is not a whole number of seconds"},
	}
	for _, tc := range tests {
		_, err := gitops.ParsePair([]byte(strings.Replace(string(good), tc.from, tc.to, 1)))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// FuzzParsePair: no input panics; an accepted pair survives marshal → parse; editing it to its
// own state gives its exact bytes, and a failover edit reads back as that failover.
func FuzzParsePair(f *testing.F) {
	good, err := os.ReadFile("testdata/pair.yaml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte(userPair))
	f.Add([]byte(userPair + "lastFailover: {event: ev-1, from: west, to: east, at: 2026-01-02T03:04:05Z} # the last one\n"))
	f.Add([]byte("# hand-written\n" + strings.Replace(string(good), "epoch: 7", "epoch: 7 # fenced\n\n# more", 1)))
	f.Add([]byte("kind: Pair\nclusters: [{name: a}]"))
	f.Add([]byte(strings.Replace(userPair, "epoch: 7", "epoch: 7\nfloatingTTL: 1m", 1)))
	f.Add([]byte(strings.Replace(userPair, "epoch: 7", "epoch: 7\nfloatingTTL: \"1500ms\"", 1)))
	f.Add([]byte(strings.Replace(userPair, "epoch: 7", "epoch: 7\nfloatingTTL: 86400s # a day", 1)))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := gitops.ParsePair(b)
		if err != nil {
			return
		}
		out, err := p.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := gitops.ParsePair(out)
		if err != nil {
			t.Fatalf("marshalled pair does not parse: %v\n%s", err, out)
		}
		if diff := cmp.Diff(p, again); diff != "" {
			t.Errorf("marshal → parse (-first +second):\n%s", diff)
		}
		same, err := gitops.EditPair(b, p)
		if err != nil || !bytes.Equal(same, b) {
			t.Errorf("a no-op edit changed the file (%v):\n%s", err, same)
		}
		peer, err := p.Peer(p.Active)
		if err != nil {
			t.Fatal(err)
		}
		if p.Epoch == math.MaxInt64 {
			return // no next epoch
		}
		next := *p
		next.Active, next.Epoch = peer, p.Epoch+1
		next.LastFailover = &gitops.Failover{Event: "ev-9", From: p.Active, To: peer, At: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
		edited, err := gitops.EditPair(b, &next)
		if err != nil {
			t.Fatalf("editing: %v\n%s", err, b)
		}
		got, err := gitops.ParsePair(edited)
		if err != nil {
			t.Fatalf("edited pair does not parse: %v\n%s", err, edited)
		}
		if diff := cmp.Diff(&next, got); diff != "" {
			t.Errorf("edit → parse (-want +got):\n%s", diff)
		}
	})
}
