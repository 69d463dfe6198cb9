// Package failover is the agent's answer to failover.requested events (docs/design.md §5–§7): it
// consumes them from JetStream, validates them against pair.yaml, runs the preflight checks,
// pushes the one fenced failover commit, opens the pull request, publishes failover.status for
// each phase, and follows the change until the new active answers. A request is acked only once
// its branch is pushed or its refusal published; everything it does before that is idempotent, so
// a crash means a redelivery that finds the branch and pull request it left.
package failover

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/plan"
)

// How a failover reaches the branch Flux reads (forge.mode).
const (
	// ModePR pushes the branch and opens a pull request: merging it is the approval.
	ModePR = "pr"
	// ModeBranch pushes the branch only; someone merges it by other means.
	ModeBranch = "branch"
	// ModeDirect commits onto the base branch: no review.
	ModeDirect = "direct"
)

// Repo is what the handler needs of the Git repository (a *gitrepo.Writer).
type Repo interface {
	Read(ctx context.Context, paths ...string) (gitrepo.Snapshot, error)
	Apply(ctx context.Context, ch gitops.Change) (gitrepo.Result, error)
	Branches(ctx context.Context, prefix string, paths ...string) ([]gitrepo.Branch, error)
}

// PullRequests is what the handler needs of a forge (a forge.Forge).
type PullRequests interface {
	Propose(ctx context.Context, p forge.Proposal) (forge.PullRequest, error)
	Open(ctx context.Context, base, prefix string) ([]forge.PullRequest, error)
	Get(ctx context.Context, number int) (forge.PullRequest, error)
	SetStatus(ctx context.Context, sha string, s forge.CommitStatus) error
}

// Options configure a Handler.
type Options struct {
	// Cluster is this agent's cluster; it handles the requests that target it. Pair names the
	// stream and subjects.
	Cluster, Pair string
	Layout        gitops.Layout
	// Namespace of the MP, DNSNamespace of the DNSEndpoint: see plan.Options. The floating
	// record's TTL is pair.yaml's.
	Namespace, DNSNamespace string
	// Base is the branch Flux reads (default main): pull requests go into it.
	Base string
	// Mode is ModePR (default when Forge is set), ModeBranch or ModeDirect.
	Mode  string
	Forge PullRequests
	// RequireSigned refuses unsigned requests; TrustedKeys verify signatures.
	RequireSigned bool
	TrustedKeys   []event.TrustedKey
	// Preflight runs the readiness checks; nil runs only the epoch check.
	Preflight Preflight
	// Prepare, when set, runs once a request is accepted and before its checks: the moment to
	// bring the target's data in step with the active's (the database sync of independent
	// databases), so that the checks judge the result. See prepare.
	Prepare PrepareFunc
	// Consumer configures the durable consumer (default durable "agent-<cluster>").
	Consumer event.ConsumerOptions
	// Follow configures the follow-through after a failover is proposed.
	Follow FollowOptions
	// Registerer receives the handler's metrics; nil registers them nowhere.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Handler answers failover requests. Build it with New; Run consumes.
type Handler struct {
	opts Options
	js   jetstream.JetStream
	repo Repo
	subj event.Subjects
	log  *slog.Logger
	done *answers
	m    *metrics

	mu        sync.Mutex
	following map[string]bool
	followWG  sync.WaitGroup
	// hook, when set by tests, is called at named points of handling (see export_test.go).
	hook func(point string)
}

// New validates opts and returns a Handler.
func New(js jetstream.JetStream, repo Repo, opts Options) (*Handler, error) {
	if err := gitops.ValidateClusterName(opts.Cluster); err != nil {
		return nil, fmt.Errorf("failover handler: cluster: %w", err)
	}
	subj, err := event.NewSubjects(opts.Pair)
	if err != nil {
		return nil, fmt.Errorf("failover handler: %w", err)
	}
	if opts.Layout == (gitops.Layout{}) {
		return nil, errors.New("failover handler: a repository layout is required")
	}
	if js == nil || repo == nil {
		return nil, errors.New("failover handler: JetStream and the repository are required")
	}
	if opts.Mode == "" {
		opts.Mode = ModeBranch
		if opts.Forge != nil {
			opts.Mode = ModePR
		}
	}
	switch opts.Mode {
	case ModePR:
		if opts.Forge == nil {
			return nil, errors.New("failover handler: mode pr needs a forge (forge.kind)")
		}
	case ModeBranch, ModeDirect:
	default:
		return nil, fmt.Errorf("failover handler: mode %q: want %s, %s or %s", opts.Mode, ModePR, ModeBranch, ModeDirect)
	}
	if opts.Base == "" {
		opts.Base = "main"
	}
	if opts.Consumer.Durable == "" {
		opts.Consumer.Durable = "agent-" + opts.Cluster
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Follow.defaults()
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Handler{
		opts: opts, js: js, repo: repo, subj: subj, done: newAnswers(1024), m: newMetrics(opts.Registerer),
		log: log.With("cluster", opts.Cluster, "pair", opts.Pair), following: map[string]bool{},
	}, nil
}

// Run ensures the stream and the durable consumer, resumes following the failovers still open
// for this cluster, and handles requests one at a time until ctx ends.
func (h *Handler) Run(ctx context.Context) error {
	if _, err := event.EnsureStream(ctx, h.js, h.opts.Pair); err != nil {
		return err
	}
	cons, err := event.EnsureConsumer(ctx, h.js, h.opts.Pair, h.opts.Consumer)
	if err != nil {
		return err
	}
	h.resume(ctx)
	it, err := cons.Messages()
	if err != nil {
		return fmt.Errorf("consuming %s: %w", h.subj.Requested(), err)
	}
	go func() { <-ctx.Done(); it.Stop() }()
	defer h.followWG.Wait()
	h.log.Info("handling failover requests", "subject", h.subj.Requested(), "mode", h.opts.Mode)
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) || ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			h.log.Warn("receiving failover requests", "error", err)
			continue
		}
		h.process(ctx, msg)
	}
}

// process handles one delivery and settles it: ack when done, a delayed nak to retry. A handler
// stopped mid-way (ctx ended) settles nothing, so the request is redelivered.
func (h *Handler) process(ctx context.Context, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		h.log.Error("a request without JetStream metadata; dropping it", "error", err)
		_ = msg.Term()
		return
	}
	stop := keepAlive(ctx, msg, h.opts.Consumer.AckWait)
	err = h.handle(ctx, msg, meta)
	stop()
	if ctx.Err() != nil {
		return
	}
	if err != nil {
		delay := retryDelay(meta.NumDelivered)
		h.log.Warn("failover request not done; retrying", "delivery", meta.NumDelivered, "in", delay, "error", err)
		if nerr := msg.NakWithDelay(delay); nerr != nil {
			h.log.Warn("nak", "error", nerr)
		}
		return
	}
	if err := msg.DoubleAck(ctx); err != nil {
		// Not acked: the request comes back and finds its branch.
		h.log.Warn("ack", "error", err)
	}
}

// keepAlive tells JetStream the request is being worked on while a Git outage is ridden out.
func keepAlive(ctx context.Context, msg jetstream.Msg, ackWait time.Duration) func() {
	if ackWait <= 0 {
		ackWait = event.DefaultAckWait
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(ackWait / 3)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				_ = msg.InProgress()
			}
		}
	}()
	return cancel
}

// retryDelay grows with the deliveries: 1 s, 2 s, 4 s … up to a minute.
func retryDelay(delivered uint64) time.Duration {
	d := time.Second << min(delivered-1, 6)
	return min(d, time.Minute)
}

// handle decides one delivery; nil means settle it (done or refused), an error means retry.
func (h *Handler) handle(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata) error {
	payload := msg.Data()
	// A request answered before (a duplicate, a redelivery of an acked request) is answered again
	// from memory: no Git round trip per copy.
	if e, err := event.Decode(payload, event.TypeFailoverRequested); err == nil {
		if st, ok := h.done.get(e.ID()); ok {
			return h.publishStatus(ctx, st)
		}
	}
	st, err := h.readState(ctx)
	if err != nil {
		return err
	}
	req, err := event.DecodeRequest(payload, event.Validation{
		Clusters: st.clusters(), Epoch: st.pair.Epoch, RequireSigned: h.opts.RequireSigned, TrustedKeys: h.opts.TrustedKeys,
	})
	var rerr *event.RejectError
	if errors.As(err, &rerr) {
		return h.refuse(ctx, msg.Subject(), requestID(payload, msg), payload, rerr, nil)
	}
	if err != nil {
		return err
	}
	if req.Data.Target != h.opts.Cluster {
		return nil // the target's agent answers it
	}
	h.call("decoded")
	err = h.answer(ctx, st, req, msg.Subject(), payload)
	if err != nil && ctx.Err() == nil && h.lastDelivery(meta) {
		// JetStream would drop it silently after this delivery: refuse it instead, so the
		// requester and the DLQ learn that it was given up.
		return h.refuse(ctx, msg.Subject(), req.Event.ID(), payload, &event.RejectError{Reason: event.ReasonRetriesExhausted,
			Detail: fmt.Sprintf("gave up after %d deliveries: %v", meta.NumDelivered, err)}, nil)
	}
	return err
}

func (h *Handler) lastDelivery(meta *jetstream.MsgMetadata) bool {
	n := h.opts.Consumer.MaxDeliver
	if n == 0 {
		n = event.DefaultMaxDeliver
	}
	return n > 0 && meta.NumDelivered >= uint64(n)
}

// requestID is the id a rejection names: the event's, else the Nats-Msg-Id, else none.
func requestID(payload []byte, msg jetstream.Msg) string {
	if e, err := event.Decode(payload, event.TypeFailoverRequested); err == nil {
		return e.ID()
	}
	if msg.Headers() != nil {
		return msg.Headers().Get("Nats-Msg-Id")
	}
	return ""
}

// answer takes a valid request for this cluster to its branch, pull request or refusal.
func (h *Handler) answer(ctx context.Context, st *state, req event.Request, subject string, payload []byte) error {
	id, d := req.Event.ID(), req.Data
	if lf := st.pair.LastFailover; lf != nil && lf.Event == id && d.Mode != event.ModeDrill {
		merged := event.FailoverStatus{Event: id, Phase: event.PhaseMerged, Epoch: st.pair.Epoch, Commit: st.commit,
			Message: "this failover is merged: " + st.pair.Active + " is active"}
		if err := h.finish(ctx, merged); err != nil {
			return err
		}
		if h.opts.Now().Sub(lf.At) < h.opts.Follow.ApplyTimeout {
			h.follow(ctx, merged, &gate{from: lf.From}) // a crash may have cut the follow-through short
		}
		return nil
	}
	prefix := plan.Branch(string(d.Mode), "")
	branches, err := h.repo.Branches(ctx, prefix, h.opts.Layout.Pair())
	if err != nil {
		return err
	}
	own := plan.Branch(string(d.Mode), id)
	for _, b := range branches {
		if b.Name == own && !d.DryRun {
			return h.propose(ctx, req, b, st.pair.Active, nil) // pushed before: a redelivery
		}
	}
	if err := plan.Admit(st.pair, d.Target, d.ExpectedEpoch); err != nil {
		return h.refuse(ctx, subject, id, payload, planRejection(err), nil)
	}
	if d.Mode != event.ModeDrill && !d.DryRun {
		open, err := h.openFailover(ctx, st, branches)
		if err != nil {
			return err
		}
		if open != nil {
			open.Event = id
			return h.finish(ctx, *open)
		}
	}
	if err := h.publishStatus(ctx, event.FailoverStatus{Event: id, Phase: event.PhaseAccepted, Epoch: st.pair.Epoch}); err != nil {
		return err
	}
	if err := h.prepare(ctx, st, req); err != nil {
		var rerr *event.RejectError
		if errors.As(err, &rerr) {
			return h.refuse(ctx, subject, id, payload, rerr, nil)
		}
		return err
	}
	checks, summary, rerr, err := h.preflight(ctx, st, req)
	if err != nil {
		return err
	}
	if err := h.publishStatus(ctx, event.FailoverStatus{Event: id, Phase: event.PhasePreflight, Epoch: st.pair.Epoch, Checks: checks}); err != nil {
		return err
	}
	if rerr != nil {
		return h.refuse(ctx, subject, id, payload, rerr, checks)
	}
	p, err := plan.Build(st.files, plan.Request{
		Event: id, To: d.Target, Mode: string(d.Mode), RequestedBy: d.RequestedBy,
		Reason: d.Reason, Preflight: summary, Checks: planChecks(checks), At: h.opts.Now(),
	}, plan.Options{Layout: h.opts.Layout, Namespace: h.opts.Namespace, DNSNamespace: h.opts.DNSNamespace})
	if err != nil {
		return h.refuse(ctx, subject, id, payload, planRejection(err), checks)
	}
	if d.DryRun {
		diff, err := Diff(st.files, p.Change)
		if err != nil {
			return err
		}
		return h.finish(ctx, event.FailoverStatus{Event: id, Phase: event.PhaseProposed, Epoch: p.Epoch, DryRun: true,
			Checks: checks, Plan: append(p.Summary, p.Warnings...), Diff: diff, Branch: p.Branch,
			Message: "dry run: nothing pushed"})
	}
	ch := p.Change
	if h.opts.Mode == ModeDirect && d.Mode != event.ModeDrill {
		ch.Branch = h.opts.Base
	}
	res, err := h.repo.Apply(ctx, ch)
	var conflict *gitrepo.ConflictError
	if errors.As(err, &conflict) {
		return h.refuse(ctx, subject, id, payload, planRejection(err), checks)
	}
	if err != nil {
		return err
	}
	h.call("pushed")
	msg, _ := CommitMessage(ch)
	return h.propose(ctx, req, gitrepo.Branch{Name: ch.Branch, Commit: res.Commit, Message: msg,
		Files: map[string][]byte{h.opts.Layout.Pair(): ch.Files[h.opts.Layout.Pair()]}}, p.From, checks)
}

// propose finishes a pushed failover: the pull request (pr mode) with its preflight status (from
// checks, or run again on a redelivery), then the proposed status (merged in direct mode), then
// the follow-through. It is what a redelivery repeats.
func (h *Handler) propose(ctx context.Context, req event.Request, b gitrepo.Branch, from string, checks []event.Check) error {
	id, d := req.Event.ID(), req.Data
	epoch := epochOf(b.Files[h.opts.Layout.Pair()])
	st := event.FailoverStatus{Event: id, Phase: event.PhaseProposed, Epoch: epoch, Branch: b.Name, Commit: b.Commit}
	g := &gate{from: from, epoch: epoch, force: d.Force}
	switch {
	case d.Mode == event.ModeDrill:
		st.Message = "drill: the failover commit is on " + b.Name + "; it is never proposed for merging"
	case h.opts.Mode == ModeDirect:
		st.Phase, st.Branch = event.PhaseMerged, h.opts.Base
		st.Message = "committed onto " + h.opts.Base + " (direct mode)"
	case h.opts.Mode == ModeBranch:
		st.Message = "branch " + b.Name + " pushed; merge it into " + h.opts.Base + " to fail over"
	default:
		pr, err := h.opts.Forge.Propose(ctx, h.proposalFor(b))
		if err != nil {
			return fmt.Errorf("opening the pull request for %s: %w", b.Name, err)
		}
		st.PR = pr.URL
		st.Message = fmt.Sprintf("pull request #%d: merge it to fail over", pr.Number)
		h.call("pr-opened")
		if checks != nil {
			h.setGate(ctx, g, b.Commit, pr.URL, checks)
		} else if s, err := h.readPair(ctx); err == nil { // a redelivery: check again
			h.recheck(ctx, g, b.Commit, pr.URL, s.pair.Epoch)
		}
	}
	if err := h.finish(ctx, st); err != nil {
		return err
	}
	if d.Mode != event.ModeDrill {
		h.follow(ctx, st, g)
	}
	return nil
}

// finish publishes a request's answer and remembers it for duplicates.
func (h *Handler) finish(ctx context.Context, st event.FailoverStatus) error {
	if err := h.publishStatus(ctx, st); err != nil {
		return err
	}
	h.call("answered")
	h.done.put(st.Event, st)
	return nil
}

// refuse publishes the refusal to the DLQ and, when the request has a usable id, a rejected status.
func (h *Handler) refuse(ctx context.Context, subject, id string, payload []byte, rerr *event.RejectError, checks []event.Check) error {
	if _, err := event.Reject(ctx, h.js, event.Refused{
		Pair: h.opts.Pair, Source: h.source(), Subject: subject, EventID: id, Payload: payload,
	}, rerr); err != nil {
		return err
	}
	h.log.Info("failover request refused", "event", id, "reason", rerr.Reason, "detail", rerr.Detail)
	h.m.refused.WithLabelValues(rerr.Reason).Inc()
	if event.ValidateID(id) != nil {
		return nil
	}
	return h.finish(ctx, event.FailoverStatus{Event: id, Phase: event.PhaseRejected, Reason: rerr.Reason, Message: rerr.Detail, Checks: checks})
}

func (h *Handler) source() string { return "mpha://agent/" + h.opts.Cluster }

// publishStatus publishes st with an id made of the request's and the phase, so that publishing
// it again (a redelivery) is dropped by the stream's duplicate window.
func (h *Handler) publishStatus(ctx context.Context, st event.FailoverStatus) error {
	phase := string(st.Phase)
	if st.DryRun {
		phase = "dry-run"
	}
	for _, step := range st.Steps {
		phase += "." + step.Name // a step's report is a status of its own, not a duplicate
	}
	e, err := event.NewFailoverStatus(h.source(), statusID(st.Event, phase), st)
	if err != nil {
		return err
	}
	ack, err := event.Publish(ctx, h.js, h.subj.Status(), e)
	if err != nil {
		return err
	}
	if ack.Duplicate {
		return nil // published before: a redelivery or a copy
	}
	h.log.Info("failover status", "event", st.Event, "phase", st.Phase, "pr", st.PR, "branch", st.Branch)
	if len(st.Steps) == 0 { // a step's report repeats its phase: count the phase once
		h.m.status(st, h.opts.Now())
	}
	return nil
}

// statusID is "<request id>.<phase>", hashed when that would be too long.
func statusID(id, phase string) string {
	s := id + "." + phase
	if len(s) <= event.MaxIDLength {
		return s
	}
	sum := sha256.Sum256([]byte(id))
	return "s-" + hex.EncodeToString(sum[:20]) + "." + phase
}

func (h *Handler) call(point string) {
	if h.hook != nil {
		h.hook(point)
	}
}

// planRejection maps a plan or fence error to a refusal.
func planRejection(err error) *event.RejectError {
	switch {
	case errors.Is(err, plan.ErrStale):
		return &event.RejectError{Reason: event.ReasonStaleEpoch, Detail: err.Error()}
	case errors.Is(err, plan.ErrAlreadyActive):
		return &event.RejectError{Reason: event.ReasonAlreadyActive, Detail: err.Error()}
	default:
		return &event.RejectError{Reason: event.ReasonPlanFailed, Detail: err.Error()}
	}
}

// forgePR is a forge's pull request.
type forgePR = forge.PullRequest

// proposalFor makes the pull request of a failover branch from its commit message: the subject
// is the title; the body (plan, preflight table, roll-back) and the trailers are the description.
func (h *Handler) proposalFor(b gitrepo.Branch) forge.Proposal {
	title, body, _ := strings.Cut(strings.TrimSpace(b.Message), "\n")
	return forge.Proposal{Branch: b.Name, Base: h.opts.Base, Title: title, Body: strings.TrimSpace(body)}
}
