package gitops_test

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
)

// userPair is pair.yaml as a person writes it: comments above, beside and below the keys, a
// blank line, keys in their own order.
const userPair = `# The pair's state: who is active, the epoch, the FQDNs.
# Written once by hand, then by failovers.
apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp

clusters:           # the two sites
  - name: east
    mpFQDN: mp1.tsb.example.com
  - name: west
    mpFQDN: mp2.tsb.example.com
floatingFQDN: active.tsb.example.com
# who serves now
active: east   # set by failovers
epoch: 7
# end of pair
`

// failover is what a failover to to at epoch sets.
func failover(t *testing.T, raw, to string, epoch int64) *gitops.Pair {
	t.Helper()
	p, err := gitops.ParsePair([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	next := *p
	next.Active, next.Epoch = to, epoch
	next.LastFailover = &gitops.Failover{Event: "ev-42", From: p.Active, To: to, At: time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)}
	return &next
}

// A failover edits active, epoch and lastFailover where they stand; every other byte stays.
func TestEditPair(t *testing.T) {
	t.Parallel()
	flow, err := os.ReadFile("testdata/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, want string
	}{{
		name: "no lastFailover: appended; comments and key order kept, spacing yaml.v3's",
		in:   userPair,
		want: `# The pair's state: who is active, the epoch, the FQDNs.
# Written once by hand, then by failovers.
apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
clusters: # the two sites
  - name: east
    mpFQDN: mp1.tsb.example.com
  - name: west
    mpFQDN: mp2.tsb.example.com
floatingFQDN: active.tsb.example.com
# who serves now
active: west # set by failovers
epoch: 8
# end of pair

lastFailover:
  event: ev-42
  from: east
  to: west
  at: "2026-11-22T09:30:00Z"
`,
	}, {
		name: "flow mapping lastFailover: its values replaced",
		in:   string(flow),
		want: strings.NewReplacer("active: east", "active: west", "epoch: 7", "epoch: 8",
			`{event: ev-41, from: west, to: east, at: "2026-11-20T10:02:00Z"}`,
			`{event: ev-42, from: east, to: west, at: "2026-11-22T09:30:00Z"}`).Replace(string(flow)),
	}, {
		name: "block lastFailover, quoted values keep their quotes",
		in: "apiVersion: mpha.dev/v1alpha1\nkind: Pair\nname: tsb-mp\nfloatingFQDN: f.example.com\n" +
			"clusters: [{name: east, mpFQDN: a.example.com}, {name: west, mpFQDN: b.example.com}]\n" +
			"active: \"east\"\nepoch: 7\nlastFailover:\n  at: '2026-11-20T10:02:00Z'\n  event: \"ev-41\"\n  from: west\n  to: east\n",
		want: "apiVersion: mpha.dev/v1alpha1\nkind: Pair\nname: tsb-mp\nfloatingFQDN: f.example.com\n" +
			"clusters: [{name: east, mpFQDN: a.example.com}, {name: west, mpFQDN: b.example.com}]\n" +
			"active: \"west\"\nepoch: 8\nlastFailover:\n  at: '2026-11-22T09:30:00Z'\n  event: \"ev-42\"\n  from: east\n  to: west\n",
	}, {
		name: "a quoted value in a flow mapping keeps its quotes",
		in:   strings.Replace(string(flow), "event: ev-41", "event: \"évé-41\"", 1),
		want: strings.NewReplacer("active: east", "active: west", "epoch: 7", "epoch: 8",
			`{event: ev-41, from: west, to: east, at: "2026-11-20T10:02:00Z"}`,
			`{event: "ev-42", from: east, to: west, at: "2026-11-22T09:30:00Z"}`).Replace(string(flow)),
	}, {
		name: "no newline at the end",
		in:   "apiVersion: mpha.dev/v1alpha1\nkind: Pair\nname: p\nfloatingFQDN: f\nclusters:\n- {name: east, mpFQDN: a}\n- {name: west, mpFQDN: b}\nactive: east\nepoch: 0",
		want: "apiVersion: mpha.dev/v1alpha1\nkind: Pair\nname: p\nfloatingFQDN: f\nclusters:\n  - {name: east, mpFQDN: a}\n  - {name: west, mpFQDN: b}\nactive: west\nepoch: 1\n" +
			"lastFailover:\n  event: ev-42\n  from: east\n  to: west\n  at: \"2026-11-22T09:30:00Z\"\n",
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, _ := gitops.ParsePair([]byte(tc.in))
			next := failover(t, tc.in, "west", p.Epoch+1)
			got, err := gitops.EditPair([]byte(tc.in), next)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, string(got)); diff != "" {
				t.Errorf("edited pair.yaml (-want +got):\n%s", diff)
			}
			// Editing again to the same state changes nothing, byte for byte.
			again, err := gitops.EditPair(got, next)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("a no-op edit changed the file (%v):\n%s", err, again)
			}
		})
	}
}

// A tag, a null or partial lastFailover: the values are right, and the comments and key order
// survive.
func TestEditPairReencodes(t *testing.T) {
	t.Parallel()
	for name, in := range map[string]string{
		"tagged active":     strings.Replace(userPair, "active: east", "active: !!str east", 1),
		"null lastFailover": userPair + "lastFailover: null\n",
		"partial mapping":   userPair + "lastFailover: {event: ev-1}\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			next := failover(t, in, "west", 8)
			got, err := gitops.EditPair([]byte(in), next)
			if err != nil {
				t.Fatal(err)
			}
			p, err := gitops.ParsePair(got)
			if err != nil {
				t.Fatalf("%v\n%s", err, got)
			}
			if p.Active != "west" || p.Epoch != 8 || p.LastFailover == nil || p.LastFailover.Event != "ev-42" || !p.LastFailover.At.Equal(next.LastFailover.At) {
				t.Errorf("edited pair: %+v\n%s", p, got)
			}
			s := string(got)
			for _, want := range []string{"# Written once by hand, then by failovers.", "# the two sites", "# set by failovers", "# end of pair"} {
				if !strings.Contains(s, want) {
					t.Errorf("comment %q lost:\n%s", want, s)
				}
			}
			if order := topKeys(t, got); strings.Join(order, ",") != "apiVersion,kind,name,clusters,floatingFQDN,active,epoch,lastFailover" {
				t.Errorf("key order %v:\n%s", order, s)
			}
		})
	}
}

func TestEditPairRefuses(t *testing.T) {
	t.Parallel()
	withFailover, err := os.ReadFile("testdata/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		in   string
		edit func(*gitops.Pair)
		want string
	}{
		{"renamed", userPair, func(p *gitops.Pair) { p.Name = "other" }, "only active, epoch and lastFailover may change"},
		{"another cluster", userPair, func(p *gitops.Pair) { p.Clusters[1].MPFQDN = "x" }, "only active, epoch and lastFailover may change"},
		{"TTL set", userPair, func(p *gitops.Pair) { p.FloatingTTL = &metav1.Duration{Duration: time.Minute} }, "only active, epoch and lastFailover may change"},
		{"TTL changed", string(withFailover), func(p *gitops.Pair) { p.FloatingTTL = &metav1.Duration{Duration: 2 * time.Second} }, "only active, epoch and lastFailover may change"},
		{"TTL dropped", string(withFailover), func(p *gitops.Pair) { p.FloatingTTL = nil }, "only active, epoch and lastFailover may change"},
		{"a stranger active", userPair, func(p *gitops.Pair) { p.Active = "north" }, `active: "north" is not one of the clusters`},
		{"lastFailover removed", string(withFailover), func(p *gitops.Pair) { p.LastFailover = nil }, "replaced, not removed"},
		{"broken input", "kind: Pair\n", func(*gitops.Pair) {}, "pair.yaml"},
	}
	for _, tc := range tests {
		p, err := gitops.ParsePair([]byte(tc.in))
		if err != nil {
			p, _ = gitops.ParsePair([]byte(userPair))
		}
		next := *p
		next.Clusters = append([]gitops.ClusterRef(nil), p.Clusters...)
		tc.edit(&next)
		if _, err := gitops.EditPair([]byte(tc.in), &next); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// Marshal writes a new pair.yaml: one header, the struct's key order; a failover then edits it
// without a second header.
func TestMarshalPair(t *testing.T) {
	t.Parallel()
	p, err := gitops.ParsePair([]byte(userPair))
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	want := gitops.PairHeader + `apiVersion: mpha.dev/v1alpha1
kind: Pair
name: tsb-mp
floatingFQDN: active.tsb.example.com
clusters:
  - name: east
    mpFQDN: mp1.tsb.example.com
  - name: west
    mpFQDN: mp2.tsb.example.com
active: east
epoch: 7
`
	if diff := cmp.Diff(want, string(b)); diff != "" {
		t.Errorf("Marshal (-want +got):\n%s", diff)
	}
	edited, err := gitops.EditPair(b, failover(t, string(b), "west", 8))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(edited), "#"); n != 1 || !strings.HasPrefix(string(edited), gitops.PairHeader) {
		t.Errorf("want the one header, got %d comments:\n%s", n, edited)
	}
	// floatingTTL, written last by its author, goes beside the name it is the TTL of.
	p, err = gitops.ParsePair([]byte(userPair + "floatingTTL: 1m\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b, err = p.Marshal(); err != nil {
		t.Fatal(err)
	}
	if want := "floatingFQDN: active.tsb.example.com\nfloatingTTL: 1m0s\nclusters:\n"; !strings.Contains(string(b), want) {
		t.Errorf("Marshal with floatingTTL: want %q in\n%s", want, b)
	}
}

// topKeys lists the keys of pair.yaml's top-level mapping in file order.
func topKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for i, n := range doc.Content[0].Content {
		if i%2 == 0 {
			keys = append(keys, n.Value)
		}
	}
	return keys
}
