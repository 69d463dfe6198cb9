package plan_test

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/golden"
)

func layout(t *testing.T) gitops.Layout {
	t.Helper()
	l, err := gitops.NewLayout("mpha")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func workloads() []role.Workload {
	return []role.Workload{
		{Name: "tsb", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "tsb"}}},
		{Name: "iam", Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "iam"}}},
	}
}

// current is the repository as the values loop leaves it: east active with 2 replicas, west standby
// restoring every 15 minutes.
func current(t *testing.T) map[string][]byte {
	t.Helper()
	l := layout(t)
	pair, err := os.ReadFile("../testdata/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	east, err := role.Active("tsb", 2, workloads(), nil).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	west, err := role.Standby("tsb", workloads(), &role.Restore{Name: "tsb-restore", Schedule: "*/15 * * * *"}, false).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{l.Pair(): pair, l.Role("east"): east, l.Role("west"): west}
}

func request() plan.Request {
	return plan.Request{Event: "ev-42", To: "west", Mode: plan.ModePlanned, RequestedBy: "alice@example.com",
		Reason: "east region degraded\nsee INC-1", Preflight: plan.PreflightPass, At: time.Date(2026, 11, 22, 9, 30, 0, 0, time.UTC)}
}

func TestBuild(t *testing.T) {
	l := layout(t)
	p, err := plan.Build(current(t), request(), plan.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	if p.Branch != "mpha/failover/ev-42" || p.From != "east" || p.To != "west" || p.Epoch != 8 || p.FloatingTo != "mp2.tsb.example.com" {
		t.Errorf("plan: %+v", p)
	}
	if len(p.Change.Files) != 4 || len(p.Change.Delete) != 0 {
		t.Errorf("want exactly the four files of §5, got %d", len(p.Change.Files))
	}
	pair, err := gitops.ParsePair(p.Change.Files[l.Pair()])
	if err != nil {
		t.Fatal(err)
	}
	if pair.Active != "west" || pair.Epoch != 8 || pair.LastFailover.Event != "ev-42" || pair.LastFailover.From != "east" {
		t.Errorf("pair.yaml: %+v", pair)
	}
	east, _ := role.Parse(p.Change.Files[l.Role("east")])
	west, _ := role.Parse(p.Change.Files[l.Role("west")])
	if east.Replicas != 0 || len(east.Deployments) != 2 {
		t.Errorf("old active: %+v", east)
	}
	// The new active gets the old active's count back; its restore job stops.
	if west.Replicas != 2 || west.Restore == nil || !west.RestoreSuspended {
		t.Errorf("new active: %+v", west)
	}
	tr, err := trailer.Format("", p.Change.Trailers)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Mpha-Kind: failover", "Mpha-Event: ev-42", "Mpha-Epoch: 8", "Mpha-From: east", "Mpha-To: west",
		"Mpha-Mode: planned", "Mpha-Requested-By: alice@example.com", "Mpha-Reason: east region degraded see INC-1", "Mpha-Preflight: pass"} {
		if !strings.Contains(tr, want+"\n") {
			t.Errorf("trailers lack %q:\n%s", want, tr)
		}
	}
	golden.Assert(t, "testdata/floating.golden.yaml", p.Change.Files[l.FloatingDNS()])
	golden.Assert(t, "testdata/message.golden.txt", []byte(p.Change.Message))
	// The fence: the commit goes through while pair.yaml is at epoch 7, not once it moved on.
	if err := p.Change.Check(l.Pair(), current(t)[l.Pair()]); err != nil {
		t.Errorf("fence refused the epoch it was planned at: %v", err)
	}
	if err := p.Change.Check(l.Pair(), p.Change.Files[l.Pair()]); err != nil {
		t.Errorf("fence on a branch that already holds this plan (a redelivery): %v", err)
	}
	other := request()
	other.Event = "ev-43"
	p2, err := plan.Build(current(t), other, plan.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Change.Check(l.Pair(), p2.Change.Files[l.Pair()]); !errors.Is(err, plan.ErrStale) {
		t.Errorf("fence on epoch 8 from another failover: %v", err)
	}
	if err := p.Change.Check(l.FloatingDNS(), []byte("kind: DNSEndpoint\n")); !errors.Is(err, gitops.ErrNotOwned) {
		t.Errorf("a hand-written floating.yaml: %v", err)
	}
}

// Admit is the one check of a request against pair.yaml (the agent's and the CLI's).
func TestAdmit(t *testing.T) {
	l := layout(t)
	pair, err := plan.ReadPair(current(t), l)
	if err != nil {
		t.Fatal(err)
	}
	seven, six, eight := int64(7), int64(6), int64(8)
	tests := []struct {
		name     string
		to       string
		expected *int64
		want     string
		isErr    error
	}{
		{"no expected epoch", "west", nil, "", nil},
		{"the current epoch", "west", &seven, "", nil},
		{"stale epoch", "west", &six, "expects epoch 6, pair.yaml is at 7", plan.ErrStale},
		{"an epoch from the future", "west", &eight, "expects epoch 8, pair.yaml is at 7", plan.ErrStale},
		{"already active", "east", &seven, "east is the active cluster of tsb-mp at epoch 7", plan.ErrAlreadyActive},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := plan.Admit(pair, tc.to, tc.expected)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, tc.isErr) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := plan.ReadPair(map[string][]byte{}, l); err == nil || !strings.Contains(err.Error(), "mpha/pair.yaml is not in the repository") {
		t.Errorf("ReadPair without pair.yaml: %v", err)
	}
}

func TestBuildRefuses(t *testing.T) {
	l := layout(t)
	tests := []struct {
		name  string
		edit  func(*plan.Request, map[string][]byte)
		want  string
		isErr error
	}{
		{"unknown cluster", func(r *plan.Request, _ map[string][]byte) { r.To = "north" }, `cluster "north" is not in pair tsb-mp`, nil},
		{"bad event id", func(r *plan.Request, _ map[string][]byte) { r.Event = "../../main" }, `event id "../../main"`, nil},
		{"bad mode", func(r *plan.Request, _ map[string][]byte) { r.Mode = "yolo" }, `mode "yolo"`, nil},
		{"bad preflight", func(r *plan.Request, _ map[string][]byte) { r.Preflight = "" }, `preflight ""`, nil},
		{"no pair.yaml", func(_ *plan.Request, c map[string][]byte) { delete(c, "mpha/pair.yaml") }, "mpha/pair.yaml is not in the repository", nil},
		{"hand-edited role", func(_ *plan.Request, c map[string][]byte) {
			c["mpha/clusters/east/mp/role.yaml"] = []byte("kind: Deployment\n")
		}, "mpha/clusters/east/mp/role.yaml", gitops.ErrNotOwned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, cur := request(), current(t)
			tc.edit(&req, cur)
			_, err := plan.Build(cur, req, plan.Options{Layout: l})
			if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.isErr != nil && !errors.Is(err, tc.isErr)) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// The failed site's role.yaml may be missing: the other side's selectors stand in (same
// operator), and a drill goes to its own branch.
func TestBuildWithoutTheOldActivesRole(t *testing.T) {
	l := layout(t)
	cur := current(t)
	delete(cur, l.Role("east"))
	req := request()
	req.Mode = plan.ModeDrill
	p, err := plan.Build(cur, req, plan.Options{Layout: l})
	if err != nil {
		t.Fatal(err)
	}
	east, err := role.Parse(p.Change.Files[l.Role("east")])
	if err != nil {
		t.Fatal(err)
	}
	if len(east.Deployments) != 2 || east.Replicas != 0 || east.Restore != nil {
		t.Errorf("old active from the standby's selectors: %+v", east)
	}
	if p.Branch != "mpha/drill/ev-42" || !strings.HasPrefix(p.Change.Message, "Drill: ") {
		t.Errorf("drill: branch %s, message %q", p.Branch, p.Change.Message)
	}
}

// The checks go into the commit message as a table, and forced ones into the Mpha-Forced trailer.
func TestBuildWithChecks(t *testing.T) {
	req := request()
	req.Mode, req.Preflight = plan.ModeEmergency, plan.PreflightForced
	req.Checks = []plan.Check{
		{Name: "signing-key-kid", Result: "pass", Evidence: "kid k1 on both"},
		{Name: "database", Result: "forced", Evidence: "replica lag 2m | over 30s\nsecond line"},
		{Name: "root-ca", Result: "forced", Evidence: strings.Repeat("é", 400)},
	}
	p, err := plan.Build(current(t), req, plan.Options{Layout: layout(t)})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := trailer.Get(p.Change.Trailers, trailer.Forced); got != "database,root-ca" {
		t.Errorf("Mpha-Forced: %q", got)
	}
	msg := p.Change.Message
	for _, want := range []string{"Preflight: forced", "| signing-key-kid | pass | kid k1 on both |",
		"| database | forced | replica lag 2m \\| over 30s second line |", "database,root-ca were forced"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message lacks %q:\n%s", want, msg)
		}
	}
	for _, line := range strings.Split(msg, "\n") {
		if len(line) > 400 {
			t.Errorf("line of %d bytes: evidence is not capped", len(line))
		}
	}
	req.Checks, req.Mode, req.Preflight = req.Checks[:1], plan.ModePlanned, plan.PreflightPass
	p, err = plan.Build(current(t), req, plan.Options{Layout: layout(t)})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := trailer.Get(p.Change.Trailers, trailer.Forced); ok {
		t.Error("Mpha-Forced on a failover that forced nothing")
	}
}
