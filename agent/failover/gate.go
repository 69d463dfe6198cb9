package failover

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/readiness"
	"github.com/mpha-dev/mpha/gitops/forge"
)

// StatusContext is the commit status the target's agent keeps on a failover pull request's head:
// success while the preflight holds, failure once it stops holding. Branch protection that
// requires it makes the forge itself refuse a merge the preflight would refuse.
const StatusContext = "mpha/preflight"

// gate is what the commit status of one open failover pull request is judged on.
type gate struct {
	// from is the active when the failover was proposed; epoch the failover commit's (the base
	// must still be at epoch-1); force the checks an emergency forced.
	from  string
	epoch int64
	force []string
	// last is the status set last ("" before the first), so that an unchanged verdict is not
	// sent again.
	last string
}

// gateChecks re-runs the preflight for the open pull request: the base branch's epoch as just
// read (another failover merged meanwhile makes this one stale), then the readiness checks, as
// the target's agent sees them now.
func (h *Handler) gateChecks(ctx context.Context, g *gate, baseEpoch int64) ([]event.Check, error) {
	c := event.Check{Name: "epoch", Result: string(readiness.Pass),
		Evidence: fmt.Sprintf("%s at epoch %d, which this pull request moves to %d", h.opts.Base, baseEpoch, g.epoch)}
	if baseEpoch != g.epoch-1 {
		c.Result, c.Evidence = string(readiness.Fail), fmt.Sprintf("stale: %s is at epoch %d, this pull request was built at %d", h.opts.Base, baseEpoch, g.epoch-1)
	}
	checks := []event.Check{c}
	if h.opts.Preflight != nil {
		more, err := h.opts.Preflight.Run(ctx, g.from, h.opts.Cluster)
		if err != nil {
			return nil, err
		}
		checks = append(checks, more...)
	}
	return checks, nil
}

// gateStatus is the commit status for checks: failure when one fails that the request did not
// force, else success, with the evidence of what fails or the tally of what holds.
func gateStatus(checks []event.Check, force []string, prURL string) forge.CommitStatus {
	var failing []string
	pass, warn, forced := 0, 0, 0
	for _, c := range checks {
		switch c.Result {
		case string(readiness.Fail):
			if slices.Contains(force, c.Name) {
				forced++
				continue
			}
			failing = append(failing, c.Name+" ("+c.Evidence+")")
		case resultForced:
			forced++
		case string(readiness.Warn):
			warn++
		default:
			pass++
		}
	}
	st := forge.CommitStatus{Context: StatusContext, State: forge.StatusSuccess, TargetURL: prURL,
		Description: fmt.Sprintf("preflight holds: %d pass, %d warn", pass, warn)}
	if forced > 0 {
		st.Description += fmt.Sprintf(", %d forced by the emergency", forced)
	}
	if len(failing) > 0 {
		st.State, st.Description = forge.StatusFailure, "preflight fails, do not merge: "+strings.Join(failing, "; ")
	}
	return st
}

// recheck runs the preflight again for the open pull request against the base's epoch as just
// read, and sets its status.
func (h *Handler) recheck(ctx context.Context, g *gate, sha, prURL string, baseEpoch int64) {
	checks, err := h.gateChecks(ctx, g, baseEpoch)
	if err != nil {
		h.log.Warn("cannot re-run the preflight of an open pull request", "pr", prURL, "error", err)
		return
	}
	h.setGate(ctx, g, sha, prURL, checks)
}

// setGate sets the pull request's status from checks, unless it is the one set last. A forge
// that refuses is logged: the next look tries again.
func (h *Handler) setGate(ctx context.Context, g *gate, sha, prURL string, checks []event.Check) {
	if h.opts.Mode != ModePR || h.opts.Forge == nil || sha == "" {
		return
	}
	st := gateStatus(checks, g.force, prURL)
	key := string(st.State) + " " + st.Description
	if key == g.last {
		return
	}
	if err := h.opts.Forge.SetStatus(ctx, sha, st); err != nil {
		h.log.Warn("cannot set the pull request's preflight status", "pr", prURL, "state", st.State, "error", err)
		return
	}
	if g.last != "" || st.State != forge.StatusSuccess {
		h.log.Info("the pull request's preflight status changed", "pr", prURL, "state", st.State, "description", st.Description)
	}
	g.last = key
}
