package health

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
)

// An outage, round by round (N = Failures, M = Recoveries):
//
//	round verdict   down streak          up streak          outage
//	down            +1 (first: since)    0                  suggest once when down streak = N
//	unreachable     0                    0                  goes on if suggested, else forgotten
//	healthy         0                    +1                 ends when suggested and up streak = M;
//	                                                        forgotten at once if not suggested
//	skipped / new active or epoch: everything starts afresh.

// track starts afresh when pair.yaml names another active or epoch (a failover happened).
func (m *Monitor) track(pair *gitops.Pair) {
	if m.st.active == pair.Active && m.st.epoch == pair.Epoch {
		return
	}
	if m.st.suggested {
		m.log.Info("the active changed; the outage suggestion is closed", "active", pair.Active, "epoch", pair.Epoch)
	}
	m.st = outage{active: pair.Active, epoch: pair.Epoch}
	m.metrics.suggested.WithLabelValues(m.opts.Cluster).Set(0)
}

// record counts the round into the outage, sets the metrics and logs a change of verdict.
func (m *Monitor) record(r *Round) {
	s := &m.st
	switch r.Verdict {
	case VerdictDown:
		s.up = 0
		s.down++
		if s.since.IsZero() {
			s.since = m.opts.Now()
		}
	case VerdictUnreachable:
		s.down, s.up = 0, 0
		if !s.suggested {
			s.since = time.Time{}
		}
	case VerdictHealthy:
		s.down = 0
		s.up++
		if s.suggested && s.up >= m.opts.Recoveries {
			m.log.Info("the active MP recovered; the outage is over", "active", r.Active, "epoch", r.Epoch,
				"healthyRounds", s.up, "since", s.since)
			*s = outage{active: s.active, epoch: s.epoch, up: s.up, verdict: s.verdict}
			m.metrics.suggested.WithLabelValues(m.opts.Cluster).Set(0)
		}
		if !s.suggested {
			s.since = time.Time{}
		}
	}
	r.Down = s.down
	m.metrics.round(r.Active, *r)
	m.logVerdict(r)
}

// logVerdict logs at Info when the verdict changes, at Debug otherwise.
func (m *Monitor) logVerdict(r *Round) {
	attrs := []any{"active", r.Active, "epoch", r.Epoch, "verdict", r.Verdict}
	if failed := failures(r.Results); len(failed) > 0 {
		attrs = append(attrs, "failed", strings.Join(failed, "; "))
	}
	if r.Peer.Seen || r.Peer.Problem != "" {
		attrs = append(attrs, "peerHeartbeat", peerText(r.Peer))
	}
	switch {
	case r.Verdict == m.st.verdict:
		m.log.Debug("health round", attrs...)
	case r.Verdict == VerdictDown:
		m.log.Warn("the active MP does not answer", attrs...)
	case r.Verdict == VerdictSkipped:
		m.log.Info("this cluster is the active one: nothing to probe", attrs...)
	case r.Verdict == VerdictUnreachable:
		m.log.Warn("cannot reach the active MP, but its agent reports it healthy; not counting this as down", attrs...)
	default:
		m.log.Info("health verdict changed", append(attrs, "was", m.st.verdict)...)
	}
	m.st.verdict = r.Verdict
}

// act publishes the outage's request (with AutoPropose) and suggestion once the down streak
// reaches Failures. The request goes first, so that a suggestion never names a request that was
// not published; each is marked done only once published, so a failed round retries it.
func (m *Monitor) act(ctx context.Context, pair *gitops.Pair, r *Round) error {
	s := &m.st
	if r.Verdict != VerdictDown || s.down < m.opts.Failures || (s.suggested && (s.requested || !m.opts.AutoPropose)) {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	reason := m.reason(pair.Active, r)
	reqID := m.outageID("health")
	if m.opts.AutoPropose && !s.requested {
		if err := m.request(ctx, pair, reqID, reason); err != nil {
			return err
		}
		s.requested, r.Request = true, reqID
	}
	if s.suggested {
		return nil
	}
	sug := Suggestion{Target: m.opts.Cluster, From: pair.Active, Epoch: &pair.Epoch, Reason: reason,
		SuggestedBy: m.requestedBy(), Since: s.since.UTC(), Evidence: failures(r.Results)}
	if s.requested {
		sug.Request = reqID
	}
	id := m.outageID("suggested")
	e, err := NewSuggestion(m.source(), id, sug)
	if err != nil {
		return err
	}
	if _, err := event.Publish(ctx, m.js, SuggestedSubject(m.subj), e); err != nil {
		return fmt.Errorf("health: suggesting a failover: %w", err)
	}
	s.suggested, r.Suggestion = true, id
	m.metrics.suggested.WithLabelValues(m.opts.Cluster).Set(1)
	attrs := []any{"active", pair.Active, "epoch", pair.Epoch, "event", id, "downRounds", s.down, "since", s.since}
	if sug.Request != "" {
		attrs = append(attrs, "request", sug.Request)
	}
	m.log.Warn("failover suggested: the active MP is down", attrs...)
	return nil
}

// request publishes the outage's failover.requested event: this cluster, planned, at the epoch
// seen (a request made stale by another failover is refused).
func (m *Monitor) request(ctx context.Context, pair *gitops.Pair, id, reason string) error {
	epoch := pair.Epoch
	e, err := event.NewFailoverRequest(m.source(), id, event.FailoverRequest{Target: m.opts.Cluster,
		ExpectedEpoch: &epoch, Mode: event.ModePlanned, Reason: reason, RequestedBy: m.requestedBy()})
	if err != nil {
		return err
	}
	e.SetTime(m.opts.Now())
	if m.opts.SigningKey != nil {
		if err := event.Sign(&e, m.opts.SigningKey); err != nil {
			return err
		}
	}
	if _, err := event.Publish(ctx, m.js, m.subj.Requested(), e); err != nil {
		return fmt.Errorf("health: requesting a failover: %w", err)
	}
	m.log.Warn("failover requested (health.autoPropose): the active MP is down", "active", pair.Active,
		"epoch", pair.Epoch, "event", id)
	return nil
}

// outageID is the outage's event id: kind, this cluster, the epoch and the outage's first down
// round, as in health-west-e7-20261122t100000z. The same outage always gives the same id, so a
// publish retried within the stream's duplicate window is dropped, and the failover agent finds
// the branch of a request it already answered.
func (m *Monitor) outageID(kind string) string {
	return fmt.Sprintf("%s-%s-e%d-%s", kind, m.opts.Cluster, m.st.epoch,
		strings.ToLower(m.st.since.UTC().Format("20060102T150405Z")))
}

// reason is the one-line reason of the suggestion and request, naming the failures.
func (m *Monitor) reason(active string, r *Round) string {
	return OneLine(fmt.Sprintf("health: the MP of %s failed %d probe rounds in a row: %s",
		active, r.Down, strings.Join(failures(r.Results), "; ")), MaxText)
}

func (m *Monitor) source() string { return "mpha://agent/" + m.opts.Cluster }

func (m *Monitor) requestedBy() string { return "mpha-agent/" + m.opts.Cluster }

// failures lists the failed probes, one short line each.
func failures(results []Result) []string {
	var out []string
	for _, r := range results {
		if !r.OK() {
			out = append(out, OneLine(r.String(), MaxText))
		}
	}
	return out
}

func peerText(p Peer) string {
	switch {
	case !p.Seen:
		return p.Problem
	case p.MP == nil:
		return fmt.Sprintf("%s old, no MP health in it", p.Age.Round(time.Second))
	}
	return fmt.Sprintf("%s old, MP healthy=%t", p.Age.Round(time.Second), p.MP.Healthy)
}
