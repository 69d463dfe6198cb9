package health_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/internal/testrig"
)

// A healthy active MP: every probe passes on both targets, round after round, and nothing is
// suggested.
func TestHealthyMPSuggestsNothing(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	m, reg := r.monitor(t, r.options())
	for i := range 5 {
		round := r.round(t, m)
		if round.Verdict != health.VerdictHealthy || len(round.Results) != 4 {
			t.Fatalf("round %d: %s with %d results: %s", i+1, round.Verdict, len(round.Results), errorsOf(round.Results))
		}
		for _, res := range round.Results {
			if !res.OK() || res.Status != 200 {
				t.Errorf("round %d: %s (%s)", i+1, res, res.URL)
			}
		}
	}
	if s := r.suggestions(t); len(s) != 0 {
		t.Errorf("suggestions: %+v", s)
	}
	if got := metric(t, reg, "mpha_active_mp_up", "active", "east"); got != 1 {
		t.Errorf("mpha_active_mp_up = %v", got)
	}
	if got := metric(t, reg, "mpha_failover_suggested", "cluster", "west"); got != 0 {
		t.Errorf("mpha_failover_suggested = %v", got)
	}
	if n := r.floating.denied.Load() + r.instance.denied.Load(); n != 0 {
		t.Errorf("%d probes were refused for their credentials", n)
	}
}

// The floating FQDN failing while east's own FQDN answers is not an MP outage.
func TestOneTargetPassingIsHealthy(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	m, reg := r.monitor(t, r.options())
	r.floating.down.Store(true)
	round := r.round(t, m)
	if round.Verdict != health.VerdictHealthy {
		t.Fatalf("verdict %s: %s", round.Verdict, errorsOf(round.Results))
	}
	if got := metric(t, reg, "mpha_active_mp_probe_failures_total", "target", "floating"); got != 2 {
		t.Errorf("floating probe failures = %v, want 2", got)
	}
	if got := metric(t, reg, "mpha_active_mp_probe_failures_total", "target", "instance"); got != -1 {
		t.Errorf("instance probe failures = %v, want none", got)
	}
}

// What a failed probe says, for each way it fails; none of them counts as a pass.
func TestProbeFailures(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	tests := []struct {
		name  string
		edit  func(*health.Options)
		setup func()
		want  string
	}{
		{"wrong password", func(o *health.Options) { o.Credentials.Password = "wrong" }, nil, "HTTP 401 (check the probe credentials)"},
		{"no credentials", func(o *health.Options) { o.Credentials = health.Credentials{} }, nil, "HTTP 401"},
		{"unknown CA", func(o *health.Options) { o.CABundle = nil }, nil, "certificate"},
		{"login page", nil, func() { r.floating.html.Store(true); r.instance.html.Store(true) }, "not JSON"},
		{"front-envoy without upstream", nil, func() { r.floating.down.Store(true); r.instance.down.Store(true) }, "HTTP 503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := r.options()
			if tt.edit != nil {
				tt.edit(&opts)
			}
			if tt.setup != nil {
				tt.setup()
			}
			m, _ := r.monitor(t, opts)
			round := r.round(t, m)
			if round.Verdict != health.VerdictDown {
				t.Errorf("verdict %s", round.Verdict)
			}
			for _, res := range round.Results {
				if res.OK() || !strings.Contains(res.Error, tt.want) {
					t.Errorf("%s: want an error with %q", res, tt.want)
				}
			}
		})
	}
}

// The MP goes down: no suggestion before the Nth down round, exactly one at it, none after while
// it stays down; the outage ends after N healthy rounds, and a new outage is suggested again.
func TestSuggestsAfterExactlyNDownRounds(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	clk := &clock{now: time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)}
	opts := r.options()
	opts.Failures, opts.Now = 3, clk.Now
	m, reg := r.monitor(t, opts)
	step := func() health.Round { clk.Advance(10 * time.Second); return r.round(t, m) }
	if v := step().Verdict; v != health.VerdictHealthy {
		t.Fatalf("first round: %s", v)
	}
	r.floating.down.Store(true)
	r.instance.down.Store(true)
	for i := 1; i <= 2; i++ {
		round := step()
		if round.Verdict != health.VerdictDown || round.Down != i || round.Suggestion != "" {
			t.Fatalf("down round %d: %+v", i, round)
		}
		if s := r.suggestions(t); len(s) != 0 {
			t.Fatalf("a suggestion after %d down rounds: %+v", i, s)
		}
	}
	round := step()
	if want := "suggested-west-e7-20261122t100020z"; round.Suggestion != want || round.Request != "" {
		t.Fatalf("third down round: suggestion %q request %q, want %q and no request", round.Suggestion, round.Request, want)
	}
	for range 5 {
		if round := step(); round.Suggestion != "" {
			t.Fatalf("another suggestion while the MP stays down: %+v", round)
		}
	}
	sugs := r.suggestions(t)
	if len(sugs) != 1 {
		t.Fatalf("%d suggestions, want 1: %+v", len(sugs), sugs)
	}
	s := sugs[0]
	if s.Target != "west" || s.From != "east" || s.Epoch == nil || *s.Epoch != 7 || s.SuggestedBy != "mpha-agent/west" ||
		!s.Since.Equal(time.Date(2026, 11, 22, 10, 0, 20, 0, time.UTC)) || s.Request != "" {
		t.Errorf("suggestion %+v", s)
	}
	if !strings.Contains(s.Reason, "failed 3 probe rounds") || !strings.Contains(s.Reason, "HTTP 503") || len(s.Evidence) != 4 {
		t.Errorf("reason %q, evidence %q", s.Reason, s.Evidence)
	}
	if got := metric(t, reg, "mpha_failover_suggested", "cluster", "west"); got != 1 {
		t.Errorf("mpha_failover_suggested = %v during the outage", got)
	}
	if got := metric(t, reg, "mpha_active_mp_up", "active", "east"); got != 0 {
		t.Errorf("mpha_active_mp_up = %v during the outage", got)
	}

	// Recovery: N healthy rounds end the outage, not fewer.
	r.floating.down.Store(false)
	r.instance.down.Store(false)
	step()
	step()
	if got := metric(t, reg, "mpha_failover_suggested", "cluster", "west"); got != 1 {
		t.Errorf("mpha_failover_suggested = %v after 2 healthy rounds, want still 1", got)
	}
	step()
	if got := metric(t, reg, "mpha_failover_suggested", "cluster", "west"); got != 0 {
		t.Errorf("mpha_failover_suggested = %v after 3 healthy rounds, want 0", got)
	}

	// A new outage is a new suggestion, with its own id.
	r.floating.down.Store(true)
	r.instance.down.Store(true)
	step()
	step()
	if round := step(); round.Suggestion != "suggested-west-e7-20261122t100210z" {
		t.Errorf("second outage: %+v", round)
	}
	if n := len(r.suggestions(t)); n != 2 {
		t.Errorf("%d suggestions after two outages, want 2", n)
	}
}

// A flapping MP (down, up, down, up, ...) never makes N down rounds in a row: no suggestion.
func TestFlappingSuggestsNothing(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	m, reg := r.monitor(t, r.options())
	for i := range 12 {
		down := i%2 == 0
		r.floating.down.Store(down)
		r.instance.down.Store(down)
		round := r.round(t, m)
		if round.Down > 1 || round.Suggestion != "" {
			t.Fatalf("round %d: %+v", i+1, round)
		}
	}
	if s := r.suggestions(t); len(s) != 0 {
		t.Errorf("suggestions: %+v", s)
	}
	if got := metric(t, reg, "mpha_failover_suggested", "cluster", "west"); got != 0 {
		t.Errorf("mpha_failover_suggested = %v", got)
	}
}

// After a suggestion, a flapping MP does not end the outage (N healthy rounds in a row do), so it
// is never suggested twice.
func TestFlappingAfterSuggestionSuggestsOnce(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	opts := r.options()
	opts.Failures = 2
	m, _ := r.monitor(t, opts)
	set := func(down bool) { r.floating.down.Store(down); r.instance.down.Store(down) }
	set(true)
	r.round(t, m)
	if round := r.round(t, m); round.Suggestion == "" {
		t.Fatalf("no suggestion after 2 down rounds: %+v", round)
	}
	for i := range 10 { // up, down, down, up, down, down, ...: never 2 up in a row
		set(i%3 != 0)
		r.round(t, m)
	}
	if n := len(r.suggestions(t)); n != 1 {
		t.Errorf("%d suggestions, want 1", n)
	}
}

// With autoPropose, the outage also makes one failover.requested event: this cluster, planned, at
// the epoch seen, with an id fixed by the outage, so a monitor that publishes it again (a retry,
// a restarted agent seeing the same outage) adds nothing to the stream.
func TestAutoProposeRequestsOnce(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	start := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	run := func(rounds int) []health.Round {
		clk := &clock{now: start}
		opts := r.options()
		opts.Credentials = health.Credentials{Token: testToken}
		opts.Failures, opts.AutoPropose, opts.Now = 2, true, clk.Now
		m, _ := r.monitor(t, opts)
		var out []health.Round
		for range rounds {
			out = append(out, r.round(t, m))
			clk.Advance(10 * time.Second)
		}
		return out
	}
	r.floating.down.Store(true)
	r.instance.down.Store(true)
	const want = "health-west-e7-20261122t100000z"
	rounds := run(5)
	if rounds[0].Request != "" || rounds[1].Request != want || rounds[1].Suggestion == "" {
		t.Fatalf("rounds 1 and 2: %+v / %+v", rounds[0], rounds[1])
	}
	for _, round := range rounds[2:] {
		if round.Request != "" || round.Suggestion != "" {
			t.Fatalf("published again: %+v", round)
		}
	}
	if again := run(2); again[1].Request != want {
		t.Fatalf("the second monitor's request: %+v", again[1])
	}

	msgs := r.messages(t, r.subj.Requested())
	if len(msgs) != 1 {
		t.Fatalf("%d failover requests in the stream, want 1", len(msgs))
	}
	req, err := event.DecodeRequest(msgs[0].Data, event.Validation{Clusters: []string{"east", "west"}, Epoch: 7})
	if err != nil {
		t.Fatalf("the agent would refuse the request: %v", err)
	}
	d := req.Data
	if req.Event.ID() != want || d.Target != "west" || d.Mode != event.ModePlanned || d.ExpectedEpoch == nil ||
		*d.ExpectedEpoch != 7 || d.RequestedBy != "mpha-agent/west" || d.DryRun || len(d.Force) != 0 {
		t.Errorf("request %s: %+v", req.Event.ID(), d)
	}
	if !strings.Contains(d.Reason, "HTTP 503") || !strings.Contains(d.Reason, "east") {
		t.Errorf("the reason names no failure: %q", d.Reason)
	}
	if s := r.suggestions(t); len(s) != 1 || s[0].Request != want {
		t.Errorf("suggestions: %+v", s)
	}
	if _, err := event.DecodeRequest(msgs[0].Data, event.Validation{Clusters: []string{"east", "west"}, Epoch: 8}); err == nil {
		t.Error("the request is not stale once the epoch moved on")
	}
}

// Probes that fail while the active agent's fresh heartbeat reports its MP healthy mean "I cannot
// reach it": never counted as down. When the heartbeat says unhealthy, or grows stale, it is down.
func TestUnreachableWhenThePeerReportsHealthy(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	r.cut(t, floatingFQDN)
	r.cut(t, eastFQDN)
	r.heartbeat(t, true)
	m, reg := r.monitor(t, r.options())
	for i := range 5 {
		round := r.round(t, m)
		if round.Verdict != health.VerdictUnreachable || round.Down != 0 || round.Suggestion != "" {
			t.Fatalf("round %d: %+v", i+1, round)
		}
		if !round.Peer.Seen || !round.Peer.Fresh || round.Peer.MP == nil || !round.Peer.MP.Healthy {
			t.Fatalf("round %d: peer %+v", i+1, round.Peer)
		}
	}
	if s := r.suggestions(t); len(s) != 0 {
		t.Fatalf("suggestions while unreachable: %+v", s)
	}
	if up, reach := metric(t, reg, "mpha_active_mp_up", "active", "east"), metric(t, reg, "mpha_active_mp_reachable", "active", "east"); up != 1 || reach != 0 {
		t.Errorf("mpha_active_mp_up = %v, mpha_active_mp_reachable = %v; want 1 and 0", up, reach)
	}

	// A stale heartbeat is no evidence.
	stale := r.options()
	stale.Now = func() time.Time { return time.Now().Add(time.Hour) }
	ms, _ := r.monitor(t, stale)
	if round := r.round(t, ms); round.Verdict != health.VerdictDown || round.Peer.Fresh {
		t.Errorf("with a stale heartbeat: %+v", round)
	}

	// The active agent reports its MP unhealthy: down, and suggested after N rounds.
	r.heartbeat(t, false)
	for i := 1; i <= 3; i++ {
		round := r.round(t, m)
		if round.Verdict != health.VerdictDown || round.Down != i || (round.Suggestion != "") != (i == 3) {
			t.Fatalf("round %d after the unhealthy heartbeat: %+v", i, round)
		}
	}
	if s := r.suggestions(t); len(s) != 1 || !strings.Contains(strings.Join(s[0].Evidence, ";"), "connection refused") {
		t.Errorf("suggestions: %+v", s)
	}
}

// This cluster being the active one: only its own MP is probed, for its heartbeat; nothing is
// counted towards an outage and nothing suggested.
func TestActiveProbesItsOwnMP(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	opts := r.options()
	opts.Cluster = "east"
	m, reg := r.monitor(t, opts)
	r.floating.down.Store(true) // the floating name is not what the active probes
	round := r.round(t, m)
	if round.Verdict != health.VerdictSkipped || round.Self == nil || !round.Self.Healthy || len(round.Results) != 2 {
		t.Fatalf("round: %+v (%s)", round, errorsOf(round.Results))
	}
	for _, res := range round.Results {
		if res.Target != health.TargetSelf || !strings.Contains(res.URL, eastFQDN) {
			t.Errorf("self probe went to %s %s", res.Target, res.URL)
		}
	}
	if got := m.Self(); got == nil || !got.Healthy {
		t.Errorf("Self() = %+v, want healthy", got)
	}
	if got := metric(t, reg, "mpha_own_mp_up", "", ""); got != 1 {
		t.Errorf("mpha_own_mp_up = %v, want 1", got)
	}
	r.instance.down.Store(true)
	for range 4 {
		if round := r.round(t, m); round.Verdict != health.VerdictSkipped || round.Self == nil || round.Self.Healthy {
			t.Fatalf("round with the MP down: %+v", round)
		}
	}
	self := m.Self()
	if self == nil || self.Healthy || !strings.Contains(self.Detail, "HTTP 503") {
		t.Errorf("Self() = %+v, want unhealthy with the 503", self)
	}
	if got := metric(t, reg, "mpha_own_mp_up", "", ""); got != 0 {
		t.Errorf("mpha_own_mp_up = %v, want 0", got)
	}
	if got := metric(t, reg, "mpha_active_mp_up", "active", "east"); got != -1 {
		t.Errorf("mpha_active_mp_up = %v on the active", got)
	}
	if s := r.suggestions(t); len(s) != 0 {
		t.Errorf("suggestions: %+v", s)
	}
	// SelfURL replaces the FQDN (an in-cluster Service in production; here the other front-envoy).
	r.floating.down.Store(false)
	opts.SelfURL = "https://" + floatingFQDN + ":8443/"
	m2, _ := r.monitor(t, opts)
	round = r.round(t, m2)
	if round.Self == nil || !round.Self.Healthy || !strings.Contains(round.Results[0].URL, floatingFQDN) {
		t.Errorf("with selfURL: %+v (%s)", round.Self, errorsOf(round.Results))
	}
}

// Run probes every Interval, suggests once the MP is down long enough, and returns when stopped.
func TestRun(t *testing.T) {
	t.Parallel()
	r := startRig(t)
	opts := r.options()
	opts.Interval, opts.Failures = 50*time.Millisecond, 2
	m, _ := r.monitor(t, opts)
	r.floating.down.Store(true)
	r.instance.down.Store(true)
	ctx, cancel := context.WithCancel(r.ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	testrig.Eventually(t, "a suggestion", 30*time.Second, func(context.Context) error {
		if len(r.suggestions(t)) == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if n := len(r.suggestions(t)); n != 1 {
		t.Errorf("%d suggestions, want 1", n)
	}
}
