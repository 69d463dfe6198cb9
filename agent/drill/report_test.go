package drill

import (
	"context"
	"testing"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/golden"
)

// A passed game day's report, as committed: the readiness, each leg's phases from its request,
// the clients' outage and switch, the database's step (the RPO), the evidence, the pull
// requests; the failback's wait for the old active.
func TestMarkdown(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	checks := []event.Check{{Name: "epoch", Result: "pass", Evidence: "pair.yaml at epoch 8"},
		{Name: "database", Result: "pass", Evidence: "logical subscription mpha_west | 0 B behind"}}
	leg := func(name, id, to, pr string, start float64, rpo string) *Leg {
		l := &Leg{Name: name, Event: id, To: to, PR: pr, Requested: at(start), Outage: 1200 * time.Millisecond, Switched: 2300 * time.Millisecond,
			Probes: 60, Failed: 5}
		for i, ph := range []event.Phase{event.PhaseAccepted, event.PhasePreflight, event.PhaseProposed, event.PhaseMerged} {
			st := event.FailoverStatus{Event: id, Phase: ph}
			if ph == event.PhasePreflight {
				st.Checks = checks
			}
			l.Phases = append(l.Phases, Phase{At: at(start + float64(i)), Status: st})
		}
		l.Phases = append(l.Phases, Phase{At: at(start + 3.5), Status: event.FailoverStatus{Event: id, Phase: event.PhaseMerged,
			Steps: []event.Step{{Name: "promote-subscription", Result: "done", Detail: rpo}}}},
			Phase{At: at(start + 5), Status: event.FailoverStatus{Event: id, Phase: event.PhaseApplied}},
			Phase{At: at(start + 6.25), Status: event.FailoverStatus{Event: id, Phase: event.PhaseVerified}})
		return l
	}
	back := leg("failback to east", "gd-1-back", "east", "http://forge/fleet/pulls/8", 20, "received everything it committed: RPO 0")
	back.Waited, back.WaitedFor = 7*time.Second, "failing checks: database (logical replication: 127.0.0.1:5432/tsb has no subscription mpha_east yet)"
	r := &Report{ID: "gd-1", Pair: "tsb-mp", RequestedBy: "alice", From: "east", To: "west", Started: t0, Ended: at(30),
		Verdict: Passed, Summary: "failed over to west and back to east", Readiness: checks,
		Legs: []*Leg{leg("failover to west", "gd-1-over", "west", "http://forge/fleet/pulls/7", 1, "received everything it committed: RPO 0"), back}}
	golden.Assert(t, "testdata/passed.golden.md", []byte(Markdown(r)))
}

// The clients' figures come from the probes within the leg: the longest time without an
// answer, and when the target first answered after the merge.
func TestSummarise(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
	o := &Options{Probe: func(context.Context) (string, error) { return "", nil }, ProbeInterval: 200 * time.Millisecond}
	p := &prober{o: o}
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	p.probes = []probe{{ms(0), "east"}, {ms(200), "east"}, {ms(400), ""}, {ms(600), ""}, {ms(800), ""}, {ms(1000), "west"}, {ms(1200), "east"}, {ms(1400), "west"}}
	l := &Leg{To: "west", Requested: t0, Phases: []Phase{{At: ms(300), Status: event.FailoverStatus{Phase: event.PhaseMerged}}}}
	p.summarise(l, 0)
	if l.Probes != 8 || l.Failed != 3 || l.Outage != 600*time.Millisecond || l.Switched != 700*time.Millisecond {
		t.Errorf("leg %+v: want 8 probes, 3 failed, outage 600ms, switched 700ms", l)
	}
}
