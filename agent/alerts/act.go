package alerts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/internal/redact"
)

// act counts the notification's alerts and publishes an event for each firing alert a rule
// matches. It stops at the first event it cannot publish; those published stay remembered, so
// Alertmanager's retry publishes only the rest.
func (h *Handler) act(ctx context.Context, msg Message) ([]Outcome, error) {
	ctx, cancel := context.WithTimeout(ctx, h.opts.Timeout)
	defer cancel()
	outcomes := []Outcome{}
	for _, a := range msg.Alerts {
		h.metrics.received.WithLabelValues(a.Status).Inc()
		attrs := []any{"alert", a.Name(), "fingerprint", a.Fingerprint, "startsAt", a.StartsAt, "receiver", msg.Receiver}
		if a.Status != StatusFiring {
			h.log.Info("alert resolved; nothing to do", attrs...)
			continue
		}
		rule, ok := match(h.opts.Rules, a.Labels)
		if !ok {
			h.log.Info("firing alert matches no rule; nothing to do", attrs...)
			continue
		}
		o, err := h.publish(ctx, rule, a)
		if err != nil {
			return nil, err
		}
		outcomes = append(outcomes, o)
		attrs = append(attrs, "action", rule.Action, "target", rule.Target, "event", o.Event)
		if o.Duplicate {
			h.log.Info("alert already acted on; not publishing again", attrs...)
			continue
		}
		h.metrics.events.WithLabelValues(string(rule.Action)).Inc()
		h.log.Warn("alert firing: failover "+pastTense(rule.Action), append(attrs, "mode", rule.Mode)...)
	}
	return outcomes, nil
}

func pastTense(a Action) string {
	if a == ActionRequest {
		return "requested"
	}
	return "suggested"
}

// publish publishes the event of rule for alert a, unless it was published already.
func (h *Handler) publish(ctx context.Context, rule Rule, a Alert) (Outcome, error) {
	id := EventID(rule, a)
	o := Outcome{Alert: a.Name(), Fingerprint: a.Fingerprint, Action: rule.Action, Event: id}
	now := h.opts.Now()
	if h.recent(id, now) {
		o.Duplicate = true
		return o, nil
	}
	e, err := h.event(rule, a, id)
	if err != nil {
		return o, err
	}
	subject := h.subj.Requested()
	if rule.Action == ActionSuggest {
		subject = health.SuggestedSubject(h.subj)
	}
	ack, err := event.Publish(ctx, h.js, subject, e)
	if err != nil {
		return o, fmt.Errorf("alert %s: %w", a.Name(), err)
	}
	o.Duplicate = ack.Duplicate
	h.remember(id, now)
	return o, nil
}

// event builds the suggestion or the request of rule for alert a.
func (h *Handler) event(rule Rule, a Alert, id string) (event.Event, error) {
	source := "mpha://agent/" + h.opts.Cluster + "/alerts"
	by := "alertmanager via mpha-agent/" + h.opts.Cluster
	reason := health.OneLine(redact.String(fmt.Sprintf("alert %s firing since %s: %s", a.Name(),
		a.StartsAt.UTC().Format(time.RFC3339), summary(a))), health.MaxText)
	if rule.Action == ActionSuggest {
		return health.NewSuggestion(source, id, health.Suggestion{Target: rule.Target, Reason: reason,
			SuggestedBy: by, Since: a.StartsAt.UTC(), Evidence: evidence(a)})
	}
	e, err := event.NewFailoverRequest(source, id, event.FailoverRequest{Target: rule.Target, Mode: rule.Mode,
		Reason: reason, RequestedBy: by})
	if err != nil {
		return event.Event{}, err
	}
	e.SetTime(h.opts.Now())
	if h.opts.SigningKey != nil {
		if err := event.Sign(&e, h.opts.SigningKey); err != nil {
			return event.Event{}, err
		}
	}
	return e, nil
}

// EventID is the id of the event rule publishes for alert a: "alert-" for a request, or
// "alert-suggest-" for a suggestion, then the target and 24 hex digits of a hash of the alert's
// fingerprint (its sorted labels if it has none), its start, the action and the target. A
// re-sent notification of the same alert gives the same id; the alert firing anew (a new
// startsAt) gives another.
func EventID(rule Rule, a Alert) string {
	key := a.Fingerprint
	if key == "" {
		for _, k := range slices.Sorted(maps.Keys(a.Labels)) {
			key += fmt.Sprintf("%d:%s%d:%s", len(k), k, len(a.Labels[k]), a.Labels[k])
		}
	}
	h := sha256.New()
	for _, part := range []string{key, a.StartsAt.UTC().Format(time.RFC3339Nano), string(rule.Action), rule.Target} {
		fmt.Fprintf(h, "%d:%s", len(part), part)
	}
	prefix := "alert-"
	if rule.Action == ActionSuggest {
		prefix = "alert-suggest-"
	}
	return prefix + rule.Target + "-" + hex.EncodeToString(h.Sum(nil))[:24]
}

// summary is the alert's summary annotation, else its description, else nothing to say.
func summary(a Alert) string {
	for _, k := range []string{"summary", "description"} {
		if s := strings.TrimSpace(a.Annotations[k]); s != "" {
			return s
		}
	}
	return "no summary"
}

// evidence lists what a suggestion shows of the alert, one short line each.
func evidence(a Alert) []string {
	out := []string{"alertname=" + a.Name(), "fingerprint=" + a.Fingerprint,
		"startsAt=" + a.StartsAt.UTC().Format(time.RFC3339)}
	for _, k := range []string{"cluster", "severity", "instance"} {
		if v, ok := a.Labels[k]; ok {
			out = append(out, k+"="+v)
		}
	}
	if a.GeneratorURL != "" {
		out = append(out, "generatorURL="+a.GeneratorURL)
	}
	for i, s := range out {
		out[i] = health.OneLine(redact.String(s), health.MaxText)
	}
	return out
}

// recent says whether id was published within Remember.
func (h *Handler) recent(id string, now time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	at, ok := h.seen[id]
	return ok && now.Sub(at) < h.opts.Remember
}

// remember records id as published at now, forgetting expired ids (and, past maxRemembered, the
// oldest) first.
func (h *Handler) remember(id string, now time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for k, at := range h.seen {
		if now.Sub(at) >= h.opts.Remember {
			delete(h.seen, k)
		}
	}
	for len(h.seen) >= maxRemembered {
		oldest := ""
		for k, at := range h.seen {
			if oldest == "" || at.Before(h.seen[oldest]) {
				oldest = k
			}
		}
		delete(h.seen, oldest)
	}
	h.seen[id] = now
}
