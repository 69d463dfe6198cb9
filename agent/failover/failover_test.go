package failover_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"code.gitea.io/sdk/gitea"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/agent/failover/failovertest"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// A valid request becomes one branch holding exactly the four files of §5 with the contract's
// trailers, and one pull request whose body has the plan, the preflight table and the roll-back;
// its statuses arrive in order. A second request while it is open is answered with the same pull
// request and pushes nothing.
func TestRequestOpensOnePullRequest(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{gitea: true})
	r.startAgent(t, func(o *failover.Options) {
		o.Preflight = failover.PreflightFunc(func(context.Context, string, string) ([]event.Check, error) {
			return []event.Check{{Name: "signing-key-kid", Result: "pass", Evidence: "kid k-2026 on both"},
				{Name: "values-drift", Result: "warn", Evidence: "spec.hub differs"}}, nil
		})
	})
	r.publish(t, request(t, "ev-1", planned("west")))
	got := r.waitPhase(t, "ev-1", event.PhaseProposed, time.Minute)
	if p := failovertest.Phases(got); p != "accepted,preflight,proposed" {
		t.Errorf("phases %s", p)
	}
	proposed := got[len(got)-1]
	if proposed.Epoch != 8 || proposed.Branch != "mpha/failover/ev-1" || !strings.HasPrefix(proposed.PR, r.gitea.URL) {
		t.Errorf("proposed: %+v", proposed)
	}
	if checks := got[1].Checks; len(checks) != 3 || checks[0].Name != "epoch" || checks[2].Result != "warn" {
		t.Errorf("preflight checks: %+v", checks)
	}

	// Exactly the four files changed, on the branch only, with the trailers.
	branches, err := r.repo.Branches(r.ctx, "mpha/", "mpha/pair.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(branches) != 1 || branches[0].Name != "mpha/failover/ev-1" || branches[0].Commit != proposed.Commit {
		t.Fatalf("branches: %+v", branches)
	}
	l := r.layout
	if changed := r.changedFiles(t, r.base, proposed.Commit); !slices.Equal(changed, []string{
		l.Role("east"), l.Role("west"), l.FloatingDNS(), l.Pair(),
	}) {
		t.Errorf("changed files %v", changed)
	}
	tr := trailer.Parse(branches[0].Message)
	want := map[string]string{
		trailer.Kind: "failover", trailer.Event: "ev-1", trailer.Epoch: "8", trailer.From: "east", trailer.To: "west",
		trailer.Mode: "planned", trailer.RequestedBy: "alice@example.com", trailer.Reason: "east region degraded", trailer.Preflight: "warn",
	}
	for k, v := range want {
		if got, _ := trailer.Get(tr, k); got != v {
			t.Errorf("trailer %s: %q, want %q", k, got, v)
		}
	}
	if snap, err := r.repo.Read(r.ctx, l.Pair()); err != nil || snap.Commit != r.base {
		t.Errorf("main moved: %s, %v", snap.Commit, err)
	}

	prs := r.pullRequests(t)
	if len(prs) != 1 {
		t.Fatalf("%d pull requests", len(prs))
	}
	pr := prs[0]
	if pr.HTMLURL != proposed.PR || pr.Head.Ref != "mpha/failover/ev-1" || pr.Base.Ref != "main" ||
		pr.Title != "Fail over tsb-mp from east to west (epoch 8)" {
		t.Errorf("pull request %s %s→%s %q", pr.HTMLURL, pr.Head.Ref, pr.Base.Ref, pr.Title)
	}
	for _, s := range []string{"| signing-key-kid | pass | kid k-2026 on both |", "| values-drift | warn | spec.hub differs |",
		"active east → west, epoch 7 → 8", "CNAME → mp2.tsb.example.com", "Roll back:"} {
		if !strings.Contains(pr.Body, s) {
			t.Errorf("PR body lacks %q:\n%s", s, pr.Body)
		}
	}

	// A second request while this one is open gets the open pull request.
	r.publish(t, request(t, "ev-2", planned("west")))
	second := r.waitPhase(t, "ev-2", event.PhaseProposed, time.Minute)
	if p := failovertest.Phases(second); p != "proposed" || second[0].PR != proposed.PR || !strings.Contains(second[0].Message, "already open") {
		t.Errorf("second request: %+v", second)
	}
	if n := len(r.pullRequests(t)); n != 1 {
		t.Errorf("%d pull requests after the second request", n)
	}
	if bs, _ := r.repo.Branches(r.ctx, "mpha/"); len(bs) != 1 {
		t.Errorf("branches after the second request: %+v", bs)
	}
	r.noCredentials(t, r.gitea.Token, r.gitea.Password)
}

// noCredentials scans the agent's logs and every event on the stream for each secret.
func (r *rig) noCredentials(t *testing.T, secrets ...string) {
	t.Helper()
	var texts []string
	texts = append(texts, r.logs.String())
	for _, subject := range []string{r.subj.Status(), r.subj.DLQ()} {
		for _, m := range r.messages(t, subject) {
			texts = append(texts, string(m.Data))
		}
	}
	for _, s := range secrets {
		for _, text := range texts {
			if strings.Contains(text, s) {
				t.Errorf("a credential leaked into the logs or events")
			}
		}
	}
}

func (r *rig) pullRequests(t *testing.T) []*gitea.PullRequest {
	t.Helper()
	c, err := gitea.NewClient(r.gitea.URL, gitea.SetToken(r.gitea.Token))
	if err != nil {
		t.Fatal(err)
	}
	prs, _, err := c.ListRepoPullRequests(r.gitea.Admin, "fleet", gitea.ListPullRequestsOptions{State: gitea.StateAll})
	if err != nil {
		t.Fatal(err)
	}
	return prs
}

// changedFiles lists the paths that differ between two commits, sorted.
func (r *rig) changedFiles(t *testing.T, from, to string) []string {
	t.Helper()
	repo, err := cloneAll(r.ctx, r.url, r.auth)
	if err != nil {
		t.Fatal(err)
	}
	a, b := treeOf(t, repo, from), treeOf(t, repo, to)
	changes, err := a.Diff(b)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range changes {
		name := c.To.Name
		if name == "" {
			name = c.From.Name
		}
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// Refused requests go to the DLQ with their reason, get a rejected status when they have an id,
// and push nothing.
func TestRefusalsGoToTheDLQ(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{})
	signer := testKey(1)
	failing := failover.PreflightFunc(func(context.Context, string, string) ([]event.Check, error) {
		return []event.Check{{Name: "database", Result: "fail", Evidence: "replica lag 5m over 30s"}}, nil
	})
	reg := prometheus.NewRegistry()
	for _, cluster := range []string{"west", "east"} {
		r.startAgent(t, func(o *failover.Options) {
			o.Cluster, o.RequireSigned, o.TrustedKeys, o.Preflight = cluster, true, trustedKeys(t, signer), failing
			if cluster == "west" {
				o.Registerer = reg
			}
		})
	}
	type tc struct {
		id, reason string
		payload    []byte
	}
	signed := func(id string, d event.FailoverRequest) []byte {
		e := request(t, id, d)
		if err := event.Sign(&e, signer); err != nil {
			t.Fatal(err)
		}
		b, err := event.Encode(e)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	unsigned, _ := event.Encode(request(t, "unsigned", planned("west")))
	with := func(edit func(*event.FailoverRequest)) event.FailoverRequest {
		d := planned("west")
		edit(&d)
		return d
	}
	cases := []tc{
		{"stale", event.ReasonStaleEpoch, signed("stale", with(func(d *event.FailoverRequest) { d.ExpectedEpoch = epoch(6) }))},
		{"unknown", event.ReasonUnknownTarget, signed("unknown", planned("north"))},
		{"badmode", event.ReasonBadMode, signed("badmode", with(func(d *event.FailoverRequest) { d.Mode = "yolo" }))},
		{"force", event.ReasonForceWithoutEmergency, signed("force", with(func(d *event.FailoverRequest) { d.Force = []string{"database"} }))},
		{"unsigned", event.ReasonUnsigned, unsigned},
		{"", event.ReasonOversized, []byte(`{"x":"` + strings.Repeat("a", 1<<20) + `"}`)},
		{"", event.ReasonNotJSON, []byte("failover west now!")},
		{"active", event.ReasonAlreadyActive, signed("active", planned("east"))},
		{"preflight", event.ReasonPreflightFailed, signed("preflight", planned("west"))},
		{"unforced", event.ReasonPreflightFailed, signed("unforced", with(func(d *event.FailoverRequest) {
			d.Mode, d.Force = event.ModeEmergency, []string{"root-ca"}
		}))},
	}
	for _, c := range cases {
		if _, err := r.js.Publish(r.ctx, r.subj.Requested(), c.payload); err != nil {
			t.Fatalf("%s: %v", c.reason, err)
		}
	}
	var got []event.Rejected
	testrig.Eventually(t, "every request refused", time.Minute, func(context.Context) error {
		got = r.rejections(t)
		if len(got) < len(cases) {
			return fmt.Errorf("%d of %d refused", len(got), len(cases))
		}
		return nil
	})
	// Both agents refuse what is wrong with the request itself; the stream keeps one copy of each
	// (the rejection's id is made of what it refuses). Only east answers the request to east.
	var reasons, wantReasons []string
	for _, rj := range got {
		reasons = append(reasons, rj.Event+":"+rj.Reason)
	}
	for _, c := range cases {
		wantReasons = append(wantReasons, c.id+":"+c.reason)
	}
	slices.Sort(reasons)
	slices.Sort(wantReasons)
	if diff := cmp.Diff(wantReasons, reasons); diff != "" {
		t.Errorf("DLQ event:reason (-want +got):\n%s", diff)
	}
	for _, c := range cases {
		if c.id == "" {
			continue
		}
		sts := r.statuses(t, c.id)
		if len(sts) == 0 || sts[len(sts)-1].Phase != event.PhaseRejected || sts[len(sts)-1].Reason != c.reason {
			t.Errorf("%s: statuses %+v", c.id, sts)
		}
	}
	for _, rj := range got {
		if rj.Event == "preflight" && !strings.Contains(rj.Detail, "database (replica lag 5m over 30s)") {
			t.Errorf("preflight refusal detail: %s", rj.Detail)
		}
	}
	if bs, err := r.repo.Branches(r.ctx, ""); err != nil || len(bs) != 1 || bs[0].Name != "main" {
		t.Errorf("branches after refusals: %+v, %v", bs, err)
	}
	if snap, _ := r.repo.Read(r.ctx, r.layout.Pair()); snap.Commit != r.base {
		t.Errorf("main moved to %s", snap.Commit)
	}

	// west's metrics count its refusals by reason (east refused the request to east).
	for reason, want := range map[string]float64{event.ReasonPreflightFailed: 2, event.ReasonAlreadyActive: 0} {
		if got := counterValue(t, reg, "mpha_failover_rejected_total", reason); got != want {
			t.Errorf("mpha_failover_rejected_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}

	// An emergency that forces the failing check goes through, and says so.
	r.publish(t, mustSigned(t, signer, "forced", with(func(d *event.FailoverRequest) {
		d.Mode, d.Force = event.ModeEmergency, []string{"database"}
	})))
	sts := r.waitPhase(t, "forced", event.PhaseProposed, time.Minute)
	bs, err := r.repo.Branches(r.ctx, "mpha/failover/forced")
	if err != nil || len(bs) != 1 {
		t.Fatalf("forced branch: %+v, %v", bs, err)
	}
	tr := trailer.Parse(bs[0].Message)
	if f, _ := trailer.Get(tr, trailer.Forced); f != "database" {
		t.Errorf("Mpha-Forced %q", f)
	}
	if p, _ := trailer.Get(tr, trailer.Preflight); p != "forced" || !strings.Contains(bs[0].Message, "| database | forced |") {
		t.Errorf("preflight trailer %q, message:\n%s", p, bs[0].Message)
	}
	if sts[len(sts)-1].PR != "" || !strings.Contains(sts[len(sts)-1].Message, "merge it into main") {
		t.Errorf("branch mode answer: %+v", sts[len(sts)-1])
	}
}

// A dry run publishes the plan and its diff and pushes nothing; a drill writes its own branch,
// never main, and opens no pull request.
func TestDryRunAndDrill(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{})
	r.startAgent(t, nil)
	dry := planned("west")
	dry.DryRun = true
	r.publish(t, request(t, "dry", dry))
	sts := r.waitPhase(t, "dry", event.PhaseProposed, time.Minute)
	last := sts[len(sts)-1]
	if !last.DryRun || len(last.Plan) != 4 || !strings.Contains(last.Diff, "\n-active: east\n") || !strings.Contains(last.Diff, "\n+active: west\n") {
		t.Errorf("dry run answer: %+v", last)
	}
	// Diffed against the files the branch holds: floating.yaml changes its target, nothing else
	// (it is no new file; its TTL stays pair.yaml's 30s, not the default), and pair.yaml keeps
	// its author's comment.
	if !strings.Contains(last.Diff, "--- a/mpha/dns/floating.yaml\n+++ b/mpha/dns/floating.yaml\n") ||
		!strings.Contains(last.Diff, "\n-        - mp1.tsb.example.com\n+        - mp2.tsb.example.com\n") || strings.Contains(last.Diff, "\n+      recordTTL") ||
		strings.Contains(last.Diff, "new file mode") || strings.Contains(last.Diff, "\n-#") {
		t.Errorf("dry run diff:\n%s", last.Diff)
	}
	if bs, _ := r.repo.Branches(r.ctx, "mpha/"); len(bs) != 0 {
		t.Errorf("a dry run pushed %+v", bs)
	}

	drill := planned("west")
	drill.Mode = event.ModeDrill
	r.publish(t, request(t, "drill-1", drill))
	sts = r.waitPhase(t, "drill-1", event.PhaseProposed, time.Minute)
	if last := sts[len(sts)-1]; last.Branch != "mpha/drill/drill-1" || last.PR != "" {
		t.Errorf("drill answer: %+v", last)
	}
	bs, err := r.repo.Branches(r.ctx, "mpha/")
	if err != nil || len(bs) != 1 || bs[0].Name != "mpha/drill/drill-1" {
		t.Fatalf("drill branches: %+v, %v", bs, err)
	}
	if m, _ := trailer.Get(trailer.Parse(bs[0].Message), trailer.Mode); m != "drill" {
		t.Errorf("drill Mpha-Mode %q", m)
	}
	if snap, _ := r.repo.Read(r.ctx, r.layout.Pair()); snap.Commit != r.base {
		t.Errorf("a drill moved main to %s", snap.Commit)
	}
}

// Direct mode commits the failover onto main and answers merged; the follow-through then counts
// east, which never sent a heartbeat, as the unreachable failed site, and verifies the new active.
func TestDirectMode(t *testing.T) {
	t.Parallel()
	r, _ := startRig(t, rigOptions{})
	probe := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	t.Cleanup(probe.Close)
	// west's Flux is always current here: it applies whatever main holds.
	current := func(ctx context.Context) (string, error) {
		snap, err := r.repo.Read(ctx, r.layout.Pair())
		return "main@sha1:" + snap.Commit, err
	}
	r.startAgent(t, func(o *failover.Options) {
		o.Mode = failover.ModeDirect
		o.Follow = failover.FollowOptions{Interval: 200 * time.Millisecond, ProbeURL: probe.URL,
			Revision: failover.Revisions("west", current, failover.HeartbeatRevision(r.heartbeats(t), time.Minute))}
	})
	r.publish(t, request(t, "direct-1", planned("west")))
	sts := r.waitPhase(t, "direct-1", event.PhaseVerified, time.Minute)
	if p := failovertest.Phases(sts); p != "accepted,preflight,merged,applied,verified" {
		t.Errorf("phases %s", p)
	}
	if !strings.Contains(sts[3].Message, "east unreachable") {
		t.Errorf("applied: %s", sts[3].Message)
	}
	snap, err := r.repo.Read(r.ctx, r.layout.Pair())
	if err != nil {
		t.Fatal(err)
	}
	p, err := gitops.ParsePair(snap.Files[r.layout.Pair()])
	if err != nil {
		t.Fatal(err)
	}
	if p.Active != "west" || p.Epoch != 8 || sts[2].Commit != snap.Commit {
		t.Errorf("main after a direct failover: active %s epoch %d at %s; status %+v", p.Active, p.Epoch, snap.Commit, sts[2])
	}
	// The same request again (after the stream's duplicate window, say) is answered merged.
	if _, err := r.js.Publish(r.ctx, r.subj.Requested(), mustEncode(t, request(t, "direct-1", planned("west")))); err != nil {
		t.Fatal(err)
	}
	if bs, _ := r.repo.Branches(r.ctx, ""); len(bs) != 1 {
		t.Errorf("branches: %+v", bs)
	}
}

// counterValue is the value of a counter vector's series with the given label value (0 if none).
func counterValue(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
