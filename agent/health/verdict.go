package health

import (
	"time"

	"github.com/mpha-dev/mpha/agent/event"
)

// Verdict is what a round concludes about the active management plane.
type Verdict string

// The verdicts. Only down counts towards a suggestion; unreachable ("I cannot reach it") neither
// counts towards one nor towards the recovery that ends an outage.
const (
	// VerdictHealthy: every probe passed on at least one target.
	VerdictHealthy Verdict = "healthy"
	// VerdictDown: no target passed, and the active agent does not say otherwise.
	VerdictDown Verdict = "down"
	// VerdictUnreachable: no target passed, but the active agent's fresh heartbeat reports its
	// MP healthy: the fault is between here and there (tsb-mp-ha.md §6, "connectivity error").
	VerdictUnreachable Verdict = "unreachable"
	// VerdictSkipped: pair.yaml says this cluster is the active one; nothing was probed.
	VerdictSkipped Verdict = "skipped"
)

// Peer is what the active cluster's agent last said of its MP, as the round read it.
type Peer struct {
	// Seen: a heartbeat was read. Age is how old it was; Fresh, whether within the allowed age.
	Seen  bool          `json:"seen"`
	Age   time.Duration `json:"age,omitempty"`
	Fresh bool          `json:"fresh,omitempty"`
	// MP is the heartbeat's MP health; nil when the agent does not report it.
	MP *event.MPHealth `json:"mp,omitempty"`
	// Problem says why no heartbeat was read.
	Problem string `json:"problem,omitempty"`
}

// vouches says whether the peer's word counts as evidence that its MP is up.
func (p Peer) vouches() bool { return p.Seen && p.Fresh && p.MP != nil && p.MP.Healthy }

// Decide is a round's verdict from whether some target passed every probe and what the active's
// agent said:
//
//	reachable  peer heartbeat                  verdict
//	yes        (not read)                      healthy
//	no         fresh, MP healthy               unreachable
//	no         fresh, MP unhealthy             down
//	no         fresh, no MP health in it       down
//	no         stale, missing or unreadable    down
func Decide(reachable bool, peer Peer) Verdict {
	switch {
	case reachable:
		return VerdictHealthy
	case peer.vouches():
		return VerdictUnreachable
	}
	return VerdictDown
}

// reachable says whether some target passed every probe sent to it.
func reachable(results []Result) bool {
	passed := map[string]bool{}
	for _, r := range results {
		key := r.Target + " " + r.URL
		if r.Target != TargetURL {
			key = r.Target
		}
		if ok, seen := passed[key]; !seen || ok {
			passed[key] = r.OK()
		}
	}
	for _, ok := range passed {
		if ok {
			return true
		}
	}
	return false
}
