package failover

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// ErrUnreachable is what a RevisionSource returns for a site it cannot hear from: the failed
// site may be down, and that does not fail the follow-through.
var ErrUnreachable = errors.New("site unreachable")

// RevisionSource reports the revision a cluster's Flux last applied (main@sha1:<hash>).
type RevisionSource func(ctx context.Context, cluster string) (string, error)

// FollowOptions configure the follow-through after a failover is proposed (docs/design.md §6):
// merged when the commit reaches the base branch, applied when both clusters' Flux applied it
// (or the failed site is unreachable), verified when the new active answers.
type FollowOptions struct {
	// Disabled stops at proposed (tests, or a CLI that follows by itself).
	Disabled bool
	// Interval between looks at Flux when nothing woke the follow-through (default 5s: a safety
	// net, see Wake), and at most between probes of the new active; MergeInterval between looks
	// at pair.yaml while the pull request waits for review (default 30s).
	Interval, MergeInterval time.Duration
	// Wake, if set, subscribes to what may show Flux's progress (this cluster's Kustomization
	// changing, a peer's heartbeat arriving): the applied phase looks again at once instead of
	// at the next Interval. It returns the channel and the function that ends the subscription.
	Wake func() (<-chan struct{}, func())
	// Nudge, if set, runs once after the merge's own steps (OnMerged), before the wait for
	// Flux: it asks this cluster's Flux to reconcile now rather than at its interval.
	Nudge func(ctx context.Context)
	// MergeTimeout bounds the wait for a merge (default 7 days: review takes what it takes);
	// ApplyTimeout the wait for Flux, VerifyTimeout the wait for the new active (30 min each).
	MergeTimeout, ApplyTimeout, VerifyTimeout time.Duration
	// Revision reports a cluster's applied revision; nil skips the applied phase.
	Revision RevisionSource
	// ProbeURL is what must answer 2xx for verified (default https://<floating FQDN>:8443/, the
	// TSB front envoy through the floating name); Client makes the requests.
	ProbeURL string
	Client   *http.Client
	// OnMerged, when set, runs once per follow-through right after the merge is seen (before
	// waiting for Flux): the moment to promote the standby's database before the new MP's
	// writers start. Its step is published in a merged status; an error also ends the
	// follow-through as failed. Drills and dry runs are never followed, so never reach it.
	OnMerged func(ctx context.Context, st event.FailoverStatus) (event.Step, error)
}

func (o *FollowOptions) defaults() {
	if o.Interval <= 0 {
		o.Interval = 5 * time.Second
	}
	if o.MergeInterval <= 0 {
		o.MergeInterval = 30 * time.Second
	}
	if o.MergeTimeout <= 0 {
		o.MergeTimeout = 7 * 24 * time.Hour
	}
	if o.ApplyTimeout <= 0 {
		o.ApplyTimeout = 30 * time.Minute
	}
	if o.VerifyTimeout <= 0 {
		o.VerifyTimeout = 30 * time.Minute
	}
	if o.Client == nil {
		o.Client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS12},
		}}
	}
}

// follow starts the follow-through of a proposed (or merged) failover once per request.
func (h *Handler) follow(ctx context.Context, st event.FailoverStatus, g *gate) {
	if h.opts.Follow.Disabled {
		return
	}
	h.mu.Lock()
	if h.following[st.Event] {
		h.mu.Unlock()
		return
	}
	h.following[st.Event] = true
	h.mu.Unlock()
	h.followWG.Add(1)
	go func() {
		defer h.followWG.Done()
		defer func() { h.mu.Lock(); delete(h.following, st.Event); h.mu.Unlock() }()
		if err := h.followThrough(ctx, st, g); err != nil && ctx.Err() == nil {
			h.log.Warn("failover follow-through ended", "event", st.Event, "error", err)
			_ = h.publishStatus(ctx, event.FailoverStatus{Event: st.Event, Phase: event.PhaseFailed, Epoch: st.Epoch,
				PR: st.PR, Branch: st.Branch, Message: err.Error()})
		}
	}()
}

func (h *Handler) followThrough(ctx context.Context, st event.FailoverStatus, g *gate) error {
	f, from := h.opts.Follow, g.from
	if st.Phase != event.PhaseMerged {
		merged, err := h.waitMerged(ctx, st, g)
		if err != nil {
			return err
		}
		st = merged
		if err := h.publishStatus(ctx, st); err != nil {
			return err
		}
	}
	if err := h.onMerged(ctx, st); err != nil {
		return err
	}
	if f.Nudge != nil {
		f.Nudge(ctx)
	}
	pair, err := h.waitApplied(ctx, st, from)
	if err != nil {
		return err
	}
	url := f.ProbeURL
	if url == "" {
		url = "https://" + pair.FloatingFQDN + ":8443/"
	}
	var last error
	err = h.poll(ctx, min(f.Interval, time.Second), f.VerifyTimeout, nil, func(ctx context.Context) (bool, error) {
		last = probe(ctx, f.Client, url)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the new active did not answer at %s within %s: %v", url, f.VerifyTimeout, last)
	}
	return h.publishStatus(ctx, event.FailoverStatus{Event: st.Event, Phase: event.PhaseVerified, Epoch: st.Epoch,
		PR: st.PR, Branch: st.Branch, Commit: st.Commit, Message: url + " answers: " + h.opts.Cluster + " is the active management plane"})
}

// onMerged runs the OnMerged hook and publishes its step in a merged status of its own.
func (h *Handler) onMerged(ctx context.Context, st event.FailoverStatus) error {
	if h.opts.Follow.OnMerged == nil {
		return nil
	}
	step, err := h.opts.Follow.OnMerged(ctx, st)
	if err != nil && step.Result == "" {
		step.Result, step.Detail = event.StepFailed, err.Error()
	}
	if step.Name == "" {
		step.Name = "on-merged"
	}
	h.log.Info("failover step", "event", st.Event, "step", step.Name, "result", step.Result, "detail", step.Detail)
	msg := step.Name + " " + step.Result
	if step.Detail != "" {
		msg += ": " + step.Detail
	}
	if perr := h.publishStatus(ctx, event.FailoverStatus{Event: st.Event, Phase: event.PhaseMerged, Epoch: st.Epoch, PR: st.PR,
		Branch: st.Branch, Commit: st.Commit, Message: msg, Steps: []event.Step{step}}); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("%s after the merge: %w", step.Name, err)
	}
	return nil
}

// waitMerged waits until pair.yaml on the base branch records this failover. A pull request
// closed without merging, or another failover taking the epoch, ends the wait. While the pull
// request is open, each look runs the preflight again and keeps its status (gate) current.
func (h *Handler) waitMerged(ctx context.Context, st event.FailoverStatus, g *gate) (event.FailoverStatus, error) {
	var merged event.FailoverStatus
	var ended error
	err := h.poll(ctx, h.opts.Follow.MergeInterval, h.opts.Follow.MergeTimeout, nil, func(ctx context.Context) (bool, error) {
		s, err := h.readPair(ctx)
		if err != nil {
			h.log.Debug("waiting for the merge", "event", st.Event, "error", err)
			return false, nil
		}
		if lf := s.pair.LastFailover; lf != nil && lf.Event == st.Event {
			merged = event.FailoverStatus{Event: st.Event, Phase: event.PhaseMerged, Epoch: s.pair.Epoch, PR: st.PR,
				Branch: h.opts.Base, Commit: s.commit, Message: "merged into " + h.opts.Base + ": " + s.pair.Active + " is active"}
			return true, nil
		}
		if s.pair.Epoch >= st.Epoch {
			ended = fmt.Errorf("another change took epoch %d first; this failover is stale", s.pair.Epoch)
			h.recheck(ctx, g, st.Commit, st.PR, s.pair.Epoch)
			return true, nil
		}
		if h.opts.Mode == ModePR && st.PR != "" {
			open, err := h.opts.Forge.Open(ctx, h.opts.Base, plan.Branch(plan.ModePlanned, ""))
			if err == nil && !slices.ContainsFunc(open, func(pr forgePR) bool { return pr.URL == st.PR }) {
				// Merged between the two reads, or closed: the next read of pair.yaml says which.
				if again, err := h.readPair(ctx); err == nil && (again.pair.LastFailover == nil || again.pair.LastFailover.Event != st.Event) {
					ended = fmt.Errorf("pull request %s was closed without merging", st.PR)
					return true, nil
				}
			}
			h.recheck(ctx, g, st.Commit, st.PR, s.pair.Epoch)
		}
		return false, nil
	})
	if err != nil {
		return merged, fmt.Errorf("not merged within %s", h.opts.Follow.MergeTimeout)
	}
	return merged, ended
}

// waitApplied waits until both clusters' Flux applied a revision of the base branch at or after
// the merge. A site that cannot be heard from counts as applied: it is the failed one.
func (h *Handler) waitApplied(ctx context.Context, st event.FailoverStatus, from string) (*gitops.Pair, error) {
	s, err := h.readState(ctx)
	if err != nil {
		return nil, err
	}
	revision := h.opts.Follow.Revision
	if revision == nil {
		return s.pair, nil
	}
	heads := map[string]bool{st.Commit: true, s.commit: true}
	notes := map[string]string{}
	clusters := []string{h.opts.Cluster, from}
	var wake <-chan struct{}
	if h.opts.Follow.Wake != nil {
		ch, stop := h.opts.Follow.Wake()
		defer stop()
		wake = ch
	}
	err = h.poll(ctx, h.opts.Follow.Interval, h.opts.Follow.ApplyTimeout, wake, func(ctx context.Context) (bool, error) {
		if now, err := h.repo.Read(ctx, h.opts.Layout.Pair()); err == nil {
			heads[now.Commit] = true
		}
		for _, c := range clusters {
			if _, ok := notes[c]; ok {
				continue
			}
			rev, err := revision(ctx, c)
			switch {
			case errors.Is(err, ErrUnreachable) && c != h.opts.Cluster:
				notes[c] = c + " unreachable (the failed site)"
			case err != nil:
				h.log.Debug("waiting for Flux", "cluster", c, "error", err)
			case heads[revisionHash(rev)]:
				notes[c] = c + " applied " + rev
			}
		}
		return len(notes) == len(clusters), nil
	})
	if err != nil {
		return nil, fmt.Errorf("not applied by Flux within %s (%v so far)", h.opts.Follow.ApplyTimeout, notes)
	}
	msg := make([]string, 0, len(clusters))
	for _, c := range clusters {
		msg = append(msg, notes[c])
	}
	return s.pair, h.publishStatus(ctx, event.FailoverStatus{Event: st.Event, Phase: event.PhaseApplied, Epoch: st.Epoch,
		PR: st.PR, Branch: st.Branch, Commit: st.Commit, Message: strings.Join(msg, "; ")})
}

// revisionHash takes the commit out of a Flux revision (main@sha1:<hash>, or a bare hash).
func revisionHash(rev string) string {
	if i := strings.LastIndex(rev, ":"); i >= 0 {
		return rev[i+1:]
	}
	return rev
}

// poll calls f every interval, and whenever wake (nil: never) receives, until it is done, it
// errs, ctx ends or timeout passes.
func (h *Handler) poll(ctx context.Context, interval, timeout time.Duration, wake <-chan struct{}, f func(context.Context) (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		done, err := f(ctx)
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-wake:
		}
	}
}

func probe(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// resume follows the failovers to this cluster that a previous run proposed and left open.
func (h *Handler) resume(ctx context.Context) {
	st, err := h.readState(ctx)
	if err != nil {
		h.log.Warn("cannot resume following open failovers", "error", err)
		return
	}
	branches, err := h.repo.Branches(ctx, plan.Branch(plan.ModePlanned, ""), h.opts.Layout.Pair())
	if err != nil {
		h.log.Warn("cannot resume following open failovers", "error", err)
		return
	}
	for _, b := range branches {
		p, err := gitops.ParsePair(b.Files[h.opts.Layout.Pair()])
		if err != nil || p.Epoch != st.pair.Epoch+1 || p.Active != h.opts.Cluster || p.LastFailover == nil {
			continue
		}
		s := event.FailoverStatus{Event: p.LastFailover.Event, Phase: event.PhaseProposed, Epoch: p.Epoch, Branch: b.Name, Commit: b.Commit}
		if h.opts.Mode == ModePR {
			if pr, err := h.opts.Forge.Propose(ctx, h.proposalFor(b)); err == nil {
				s.PR = pr.URL
			}
		}
		h.log.Info("resuming the follow-through of an open failover", "event", s.Event, "branch", b.Name)
		h.follow(ctx, s, &gate{from: st.pair.Active, epoch: p.Epoch, force: forcedChecks(b.Message)})
	}
}

// forcedChecks are the checks an emergency's failover commit says it forced (Mpha-Forced): a
// resumed follow-through keeps counting them as holding in the pull request's status.
func forcedChecks(message string) []string {
	v, ok := trailer.Get(trailer.Parse(message), trailer.Forced)
	if !ok || v == "" {
		return nil
	}
	var out []string
	for _, c := range strings.Split(v, ",") {
		out = append(out, strings.TrimSpace(c))
	}
	return out
}
