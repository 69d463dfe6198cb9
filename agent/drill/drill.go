// Package drill runs a game day: a planned failover of the pair to its standby that really
// happens (the pull request approved and merged by whoever runs the drill), verified from the
// clients' side, then the failback, verified again, and a report committed to Git
// (mpha/drills/<date>-<id>.md) with each phase's time, the outage the clients saw, the database's
// RPO as the agents reported it, the preflight's evidence and the pull requests. A drill never
// starts while the preflight fails, and fails back by itself when the failover fails once merged.
package drill

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/forge"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/trailer"
)

// Kind is the Mpha-Kind trailer of a drill's report commit.
const Kind = "drill-report"

// Verdicts of a drill.
const (
	Passed  = "passed"
	Aborted = "aborted" // nothing moved: the preflight failed, or the failover never merged
	Failed  = "failed"
)

// Repo is what a drill needs of the repository (a *gitrepo.Writer).
type Repo interface {
	Read(ctx context.Context, paths ...string) (gitrepo.Snapshot, error)
	Apply(ctx context.Context, ch gitops.Change) (gitrepo.Result, error)
}

// Options configure a drill.
type Options struct {
	// ID names the drill (default drill-<UTC time>); its requests are <ID>-over and <ID>-back.
	ID     string
	Layout gitops.Layout
	Repo   Repo
	JS     jetstream.JetStream
	// Forge, when set, approves and merges each pull request as the one who runs the drill;
	// nil waits for people to merge them.
	Forge forge.Forge
	// Probe is one client's request through the floating name; it returns who answered (an
	// address) or an error. Nil: no client-side measure.
	Probe         func(ctx context.Context) (string, error)
	ProbeInterval time.Duration
	// Who maps what Probe returns to a cluster (from the MPs' addresses).
	Who func(answer string) string
	// RequestedBy is who runs the drill; Signer signs the requests when the agents require it.
	RequestedBy string
	Signer      ed25519.PrivateKey
	// LegTimeout bounds each leg, from the request to verified (default 15m).
	LegTimeout time.Duration
	Logger     *slog.Logger
	Now        func() time.Time
}

// Report is what a drill did and saw.
type Report struct {
	ID, Pair, RequestedBy string
	// From is the active when the drill started, To the standby it failed over to and back from.
	From, To         string
	Started, Ended   time.Time
	Verdict, Summary string
	// Readiness is the preflight's verdicts before the drill (a dry run).
	Readiness []event.Check
	Legs      []*Leg
	// Path and Commit are where the report was committed.
	Path, Commit string
}

// Leg is one failover of the drill.
type Leg struct {
	Name, Event, To, PR string
	Requested           time.Time
	// Phases are the statuses the target's agent published, with when they arrived.
	Phases []Phase
	// Outage is the longest time the clients got no answer during the leg; Switched how long
	// after the merge the clients were first answered by the target; Probes counts them.
	Outage, Switched time.Duration
	Probes, Failed   int
	// Waited is how long the leg waited for its target's preflight to pass (the failback waits
	// for the old active to be re-seeded).
	Waited time.Duration
	// WaitedFor is the last refusal while it waited.
	WaitedFor string
	Err       string
}

// Phase is one status and when it arrived.
type Phase struct {
	At     time.Time
	Status event.FailoverStatus
}

// At is when the leg first reached phase p (zero if never).
func (l *Leg) At(p event.Phase) time.Time {
	for _, ph := range l.Phases {
		if ph.Status.Phase == p {
			return ph.At
		}
	}
	return time.Time{}
}

// Steps are the steps the agent reported (the database's sync or promotion: the RPO).
func (l *Leg) Steps() []event.Step {
	var out []event.Step
	for _, ph := range l.Phases {
		out = append(out, ph.Status.Steps...)
	}
	return out
}

// Checks are the preflight's verdicts for the leg.
func (l *Leg) Checks() []event.Check {
	for _, ph := range l.Phases {
		if ph.Status.Phase == event.PhasePreflight && len(ph.Status.Checks) > 0 {
			return ph.Status.Checks
		}
	}
	return nil
}

// ErrNotReady: the preflight fails, so the drill did not start.
var ErrNotReady = errors.New("the preflight fails: the drill did not start")

func (o *Options) defaults() error {
	if o.Repo == nil || o.JS == nil {
		return errors.New("a drill needs the repository and NATS")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.ID == "" {
		o.ID = "drill-" + o.Now().UTC().Format("20060102t150405")
	}
	if o.LegTimeout <= 0 {
		o.LegTimeout = 15 * time.Minute
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 200 * time.Millisecond
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Who == nil {
		o.Who = func(s string) string { return s }
	}
	if o.RequestedBy == "" {
		o.RequestedBy = "mpha drill"
	}
	return nil
}

// Run runs the drill and commits its report, whatever the verdict. It returns the report, and
// ErrNotReady or the error that failed it.
func Run(ctx context.Context, o Options) (*Report, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	snap, err := o.Repo.Read(ctx, o.Layout.Pair())
	if err != nil {
		return nil, fmt.Errorf("reading pair.yaml: %w", err)
	}
	pair, err := gitops.ParsePair(snap.Files[o.Layout.Pair()])
	if err != nil {
		return nil, err
	}
	standby, err := pair.Peer(pair.Active)
	if err != nil {
		return nil, err
	}
	subj, err := event.NewSubjects(pair.Name)
	if err != nil {
		return nil, err
	}
	r := &Report{ID: o.ID, Pair: pair.Name, RequestedBy: o.RequestedBy, From: pair.Active, To: standby, Started: o.Now()}
	w, err := watch(ctx, o.JS, subj, r.Started, o.Now)
	if err != nil {
		return nil, err
	}
	defer w.stop()
	p := &prober{o: &o}
	if o.Probe != nil {
		pctx, stop := context.WithCancel(ctx)
		defer stop()
		go p.run(pctx)
	}
	d := &runner{o: &o, subj: subj, w: w, p: p}
	runErr := d.drill(ctx, r)
	r.Ended = o.Now()
	if err := commit(ctx, &o, r); err != nil {
		return r, errors.Join(runErr, err)
	}
	return r, runErr
}

type runner struct {
	o    *Options
	subj event.Subjects
	w    *watcher
	p    *prober
}

// drill is the game day: readiness, over, back.
func (d *runner) drill(ctx context.Context, r *Report) error {
	dry, err := d.ask(ctx, d.o.ID+"-ready", r.To, true)
	if err != nil {
		r.Verdict, r.Summary = Aborted, "the readiness dry run got no answer: "+err.Error()
		return err
	}
	last := dry[len(dry)-1]
	for _, ph := range dry {
		if len(ph.Status.Checks) > 0 {
			r.Readiness = ph.Status.Checks
		}
	}
	if last.Status.Phase == event.PhaseRejected {
		r.Verdict, r.Summary = Aborted, fmt.Sprintf("the preflight of a failover to %s fails (%s): nothing was changed", r.To, last.Status.Message)
		return ErrNotReady
	}
	over := &Leg{Name: "failover to " + r.To, Event: d.o.ID + "-over", To: r.To}
	r.Legs = append(r.Legs, over)
	if err := d.leg(ctx, over); err != nil {
		over.Err = err.Error()
		if over.At(event.PhaseMerged).IsZero() {
			r.Verdict, r.Summary = Aborted, fmt.Sprintf("the failover to %s did not merge (%s): nothing moved", r.To, err)
			return err
		}
		d.o.Logger.Warn("the drill's failover failed once merged: failing back", "error", err)
	}
	back := &Leg{Name: "failback to " + r.From, Event: d.o.ID + "-back", To: r.From}
	r.Legs = append(r.Legs, back)
	backErr := d.ready(ctx, back)
	if backErr == nil {
		backErr = d.leg(ctx, back)
	}
	if backErr != nil {
		back.Err = backErr.Error()
	}
	switch {
	case backErr != nil:
		r.Verdict, r.Summary = Failed, fmt.Sprintf("the failback to %s failed (%s): fail back by hand (docs/runbook.md §5)", r.From, backErr)
		return backErr
	case over.Err != "":
		r.Verdict, r.Summary = Failed, fmt.Sprintf("the failover to %s failed once merged (%s); the drill failed back to %s", r.To, over.Err, r.From)
		return errors.New(over.Err)
	}
	r.Verdict = Passed
	r.Summary = fmt.Sprintf("failed over to %s and back to %s; the clients' longest outage %s and %s", r.To, r.From,
		over.Outage.Round(100*time.Millisecond), back.Outage.Round(100*time.Millisecond))
	return nil
}

// readyInterval paces the dry runs that wait for the old active to be ready to fail back to.
const readyInterval = 3 * time.Second

// ready waits until a failover to l.To would pass its preflight (a dry run every readyInterval,
// for at most LegTimeout): the old active is re-seeded (its database subscribed or copied, its
// secrets and values rendered by the new active) only after the failover.
func (d *runner) ready(ctx context.Context, l *Leg) error {
	ctx, cancel := context.WithTimeout(ctx, d.o.LegTimeout)
	defer cancel()
	start := d.o.Now()
	for attempt := 1; ; attempt++ {
		phases, err := d.ask(ctx, fmt.Sprintf("%s-ready-%d", l.Event, attempt), l.To, true)
		if err != nil {
			return fmt.Errorf("waiting for %s to be ready: %w", l.To, err)
		}
		last := phases[len(phases)-1].Status
		if last.Phase != event.PhaseRejected {
			l.Waited = d.o.Now().Sub(start)
			return nil
		}
		l.WaitedFor = last.Message
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s was not ready to take over within %s: %s", l.To, d.o.LegTimeout, last.Message)
		case <-time.After(readyInterval):
		}
	}
}

// leg runs one planned failover to l.To through to verified, merging its pull request when the
// drill has a forge.
func (d *runner) leg(ctx context.Context, l *Leg) error {
	ctx, cancel := context.WithTimeout(ctx, d.o.LegTimeout)
	defer cancel()
	l.Requested = d.o.Now()
	mark := d.p.mark()
	defer func() { d.p.summarise(l, mark) }()
	if err := d.publish(ctx, l.Event, l.To, false); err != nil {
		return err
	}
	collect := func(ph Phase) { l.Phases = append(l.Phases, ph) }
	handed := 0
	proposed, err := d.w.wait(ctx, l.Event, event.PhaseProposed, &handed, collect)
	if err != nil {
		return err
	}
	l.PR = proposed.Status.PR
	if d.o.Forge != nil && l.PR != "" && proposed.Status.Phase == event.PhaseProposed {
		if err := d.merge(ctx, l); err != nil {
			return err
		}
	}
	if _, err = d.w.wait(ctx, l.Event, event.PhaseVerified, &handed, collect); err != nil {
		return err
	}
	// The agent verified through its own probe; the clients' view ends when one of them is
	// answered by the new active (their DNS caches the old answer for up to its TTL).
	d.p.waitFor(ctx, l.To, mark, clientGrace)
	return nil
}

// clientGrace bounds how long after verified a leg waits for the drill's client to be answered
// by the new active.
const clientGrace = 30 * time.Second

// merge approves and merges the leg's pull request as the drill's runner.
func (d *runner) merge(ctx context.Context, l *Leg) error {
	n, err := strconv.Atoi(l.PR[strings.LastIndex(l.PR, "/")+1:])
	if err != nil {
		return fmt.Errorf("pull request %s: %w", l.PR, err)
	}
	pr, err := d.o.Forge.Get(ctx, n)
	if err != nil {
		return err
	}
	if err := d.o.Forge.Approve(ctx, n, pr.Head, fmt.Sprintf("Game day %s: approved by %s, who runs the drill", d.o.ID, d.o.RequestedBy)); err != nil {
		return err
	}
	return d.o.Forge.Merge(ctx, n, fmt.Sprintf("Merge %s (game day %s)", l.Name, d.o.ID))
}

// ask publishes a request (a dry run when dry) and returns its statuses up to the answer.
func (d *runner) ask(ctx context.Context, id, to string, dry bool) ([]Phase, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := d.publish(ctx, id, to, dry); err != nil {
		return nil, err
	}
	var out []Phase
	handed := 0
	_, err := d.w.wait(ctx, id, event.PhaseProposed, &handed, func(ph Phase) { out = append(out, ph) })
	var refused *refusedError
	if errors.As(err, &refused) {
		return out, nil
	}
	return out, err
}

func (d *runner) publish(ctx context.Context, id, to string, dry bool) error {
	reason := "game day " + d.o.ID + ": a drill that fails over and back"
	if dry {
		reason = "game day " + d.o.ID + ": readiness"
	}
	e, err := event.NewFailoverRequest("mpha://drill/"+d.o.RequestedBy, id, event.FailoverRequest{Target: to, Mode: event.ModePlanned,
		Reason: reason, RequestedBy: d.o.RequestedBy, DryRun: dry})
	if err != nil {
		return err
	}
	e.SetTime(d.o.Now().UTC())
	if d.o.Signer != nil {
		if err := event.Sign(&e, d.o.Signer); err != nil {
			return err
		}
	}
	_, err = event.Publish(ctx, d.o.JS, d.subj.Requested(), e)
	return err
}

// watcher reads the pair's failover statuses from the drill's start, by request.
type watcher struct {
	mu      sync.Mutex
	changed chan struct{}
	seen    map[string][]Phase
	stop    func()
	now     func() time.Time
}

type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func watch(ctx context.Context, js jetstream.JetStream, subj event.Subjects, from time.Time, now func() time.Time) (*watcher, error) {
	start := from.Add(-time.Second)
	cons, err := js.OrderedConsumer(ctx, subj.Stream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj.Status()}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start})
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", subj.Status(), err)
	}
	w := &watcher{changed: make(chan struct{}), seen: map[string][]Phase{}, now: now}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		e, err := event.Decode(msg.Data(), event.TypeFailoverStatus)
		if err != nil {
			return
		}
		var st event.FailoverStatus
		if e.DataAs(&st) != nil {
			return
		}
		w.mu.Lock()
		w.seen[st.Event] = append(w.seen[st.Event], Phase{At: w.now(), Status: st})
		close(w.changed)
		w.changed = make(chan struct{})
		w.mu.Unlock()
	})
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", subj.Status(), err)
	}
	w.stop = cc.Stop
	return w, nil
}

// wait hands each status of id after the first *handed to each (counting them in *handed) and
// returns the first that reaches want (a dry run answers at proposed); a refusal or a failure
// ends it with an error.
func (w *watcher) wait(ctx context.Context, id string, want event.Phase, handed *int, each func(Phase)) (Phase, error) {
	order := map[event.Phase]int{event.PhaseProposed: 1, event.PhaseMerged: 2, event.PhaseApplied: 3, event.PhaseVerified: 4}
	for {
		w.mu.Lock()
		phases, changed := w.seen[id], w.changed
		w.mu.Unlock()
		for *handed < len(phases) {
			ph := phases[*handed]
			*handed++
			each(ph)
			switch st := ph.Status; {
			case st.Phase == event.PhaseRejected:
				return ph, &refusedError{fmt.Sprintf("refused (%s): %s", st.Reason, st.Message)}
			case st.Phase == event.PhaseFailed:
				return ph, errors.New("failed: " + st.Message)
			case order[st.Phase] >= order[want] && order[st.Phase] > 0, st.DryRun && st.Phase == event.PhaseProposed:
				return ph, nil
			}
		}
		select {
		case <-ctx.Done():
			return Phase{}, fmt.Errorf("no %s for %s in time: %w", want, id, ctx.Err())
		case <-changed:
		}
	}
}

// prober asks through the floating name every ProbeInterval, as a client would.
type prober struct {
	o      *Options
	mu     sync.Mutex
	probes []probe
}

type probe struct {
	at  time.Time
	who string // "" when it failed
}

func (p *prober) run(ctx context.Context) {
	t := time.NewTicker(p.o.ProbeInterval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		who, err := p.o.Probe(rctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			who = ""
		}
		p.mu.Lock()
		p.probes = append(p.probes, probe{at: p.o.Now(), who: p.o.Who(who)})
		p.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// waitFor waits until a probe since mark was answered by cluster, at most grace.
func (p *prober) waitFor(ctx context.Context, cluster string, mark int, grace time.Duration) {
	if p.o.Probe == nil {
		return
	}
	deadline := time.After(grace)
	for {
		p.mu.Lock()
		answered := slices.ContainsFunc(p.probes[mark:], func(pr probe) bool { return pr.who == cluster })
		p.mu.Unlock()
		if answered {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			return
		case <-time.After(p.o.ProbeInterval):
		}
	}
}

func (p *prober) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.probes)
}

// summarise sets the leg's client-side figures from the probes since mark: the longest time
// without an answer, and how long after the merge the target first answered.
func (p *prober) summarise(l *Leg, mark int) {
	p.mu.Lock()
	probes := append([]probe(nil), p.probes[mark:]...)
	p.mu.Unlock()
	if p.o.Probe == nil {
		return
	}
	merged := l.At(event.PhaseMerged)
	lastOK := l.Requested
	for _, pr := range probes {
		l.Probes++
		if pr.who == "" {
			l.Failed++
			l.Outage = max(l.Outage, pr.at.Sub(lastOK)) // still without an answer
			continue
		}
		l.Outage = max(l.Outage, pr.at.Sub(lastOK)-p.o.ProbeInterval)
		lastOK = pr.at
		if pr.who == l.To && !merged.IsZero() && l.Switched == 0 && pr.at.After(merged) {
			l.Switched = pr.at.Sub(merged)
		}
	}
	l.Outage = max(l.Outage, 0)
}

// commit writes the report to mpha/drills/<date>-<id>.md.
func commit(ctx context.Context, o *Options, r *Report) error {
	r.Path = o.Layout.DrillReport(r.Started.UTC().Format("2006-01-02"), r.ID)
	res, err := o.Repo.Apply(ctx, gitops.Change{Files: map[string][]byte{r.Path: []byte(Markdown(r))},
		Message: fmt.Sprintf("Drill %s of %s: %s", r.ID, r.Pair, r.Verdict),
		Trailers: []trailer.Trailer{{Key: trailer.Kind, Value: Kind}, {Key: trailer.Event, Value: r.ID},
			{Key: trailer.RequestedBy, Value: r.RequestedBy}}})
	if err != nil {
		return fmt.Errorf("committing the drill's report: %w", err)
	}
	r.Commit = res.Commit
	return nil
}
