package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/failover"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/gitrepo"
	"github.com/mpha-dev/mpha/gitops/plan"
	"github.com/mpha-dev/mpha/internal/natsconn"
	"github.com/mpha-dev/mpha/internal/redact"
)

// Exit statuses of `failover request` besides 0 (proposed, or the phase waited for) and 1 (mpha
// could not ask: flags, NATS).
const (
	exitRefused  = 3 // the agent refused the request (rejected): the reason is printed
	exitFailed   = 4 // accepted, then failed (e.g. closed without merging, not verified)
	exitNoAnswer = 5 // no answer within --timeout: is the target's agent running?
)

// requestEndedError carries a request's end as the process's exit status.
type requestEndedError struct {
	code int
	msg  string
}

func (e *requestEndedError) Error() string { return e.msg }

// ExitCode is the process's exit status for this error.
func (e *requestEndedError) ExitCode() int { return e.code }

func newFailoverCommand(o *globalOptions) *cobra.Command {
	cmd := &cobra.Command{Use: "failover", Short: "Ask for a failover, or see what one would change"}
	cmd.AddCommand(newFailoverRequestCommand(o), newFailoverPlanCommand(o), newFailoverKeygenCommand(o))
	return cmd
}

type requestOptions struct {
	nats                    natsconn.Options
	repo                    repoFlags
	pair, to, mode, reason  string
	requestedBy, id, output string
	signKey, wait           string
	force                   []string
	dryRun                  bool
	expectedEpoch           int64
	timeout                 time.Duration
}

func newFailoverRequestCommand(o *globalOptions) *cobra.Command {
	ro := &requestOptions{}
	cmd := &cobra.Command{
		Use:   "request --to CLUSTER --reason TEXT",
		Short: "Publish a failover request and wait for the target agent's answer",
		Long: `Publishes a failover.requested event (docs/design.md §6) for the pair and waits for the
target cluster's agent to answer on failover.status. It prints each phase as it arrives and, at
the end, the pull request (or branch) to merge, or the refusal and its reason.

--mode planned is refused on any failing preflight check; --mode emergency may --force named
checks; --mode drill writes a drill branch and never touches the real pair (a rehearsal of the
commit; a game day that really fails over and back is ` + "`mpha drill run`" + `). --dry-run shows the
plan and its diff without pushing. --expected-epoch fences the request: it is refused once the
pair moved past that epoch. Requests are signed with --sign-key (a PKCS#8 PEM ed25519 key) when
the agents require signatures.

The event id is the idempotency key: asking again with the same --id gets the same answer.

The pair (its NATS stream and subjects) is the one pair.yaml names: in --repo (a clone URL or a
checkout, as for ` + "`mpha status`" + `), or in the current directory when it is a checkout. --pair
names it without reading Git, and is refused when pair.yaml names another; with neither and no
pair.yaml here, the pair is ` + defaultPair + `.

Exit status: 0 answered (proposed, or the phase --wait names); 1 could not ask; 3 refused;
4 failed after being accepted; 5 no answer within --timeout.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The names given are checked before Git is read; event checks them all again,
			// pair.yaml's name included, before anything is sent.
			if err := checkNames(clusterFlag("to", ro.to, true), pairFlag("pair", ro.pair, false)); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), ro.timeout)
			defer cancel()
			pair, err := ro.pairName(ctx, cmd, o)
			if err != nil {
				return err
			}
			ro.pair = pair
			return runFailoverRequest(ctx, o, ro)
		},
	}
	f := cmd.Flags()
	ro.nats.BindFlags(f)
	ro.repo.bind(f)
	ro.repo.backoff = statusGitBackoff
	f.StringVar(&ro.pair, "pair", "", "the pair's name: its NATS stream and subjects (default: pair.yaml's name, from --repo)")
	f.StringVar(&ro.to, "to", "", "the cluster that should become active (required)")
	f.StringVar(&ro.mode, "mode", string(event.ModePlanned), "planned | emergency | drill")
	f.StringVar(&ro.reason, "reason", "", "why (required): it goes into the commit, the PR and the audit")
	f.StringVar(&ro.requestedBy, "requested-by", "", "who asks (default: the local user name)")
	f.StringVar(&ro.id, "id", "", "the event id, the idempotency key (default: a random one)")
	f.StringSliceVar(&ro.force, "force", nil, "checks whose failure an emergency overrides (comma-separated)")
	f.BoolVar(&ro.dryRun, "dry-run", false, "show the plan and its diff; push nothing")
	f.Int64Var(&ro.expectedEpoch, "expected-epoch", -1, "refuse unless pair.yaml is at this epoch (-1: no fence)")
	f.StringVar(&ro.signKey, "sign-key", "", "PKCS#8 PEM ed25519 private key that signs the request")
	f.StringVar(&ro.wait, "wait", string(event.PhaseProposed), "the phase to wait for: proposed | merged | applied | verified")
	f.DurationVar(&ro.timeout, "timeout", 2*time.Minute, "how long to wait for the answer")
	f.StringVarP(&ro.output, "output", "o", "text", "text | json (every status received, at the end)")
	return cmd
}

// defaultPair is the pair asked when neither --pair nor a pair.yaml names one: the name the
// examples and the chart's values use.
const defaultPair = "tsb-mp"

// pairName is the pair to ask: --pair alone is taken as given; otherwise pair.yaml's name, from
// --repo or from a checkout in the current directory, which --pair must then agree with.
func (ro *requestOptions) pairName(ctx context.Context, cmd *cobra.Command, o *globalOptions) (string, error) {
	f := cmd.Flags()
	pairGiven, repoGiven := f.Changed("pair"), f.Changed("repo")
	if pairGiven && !repoGiven {
		return ro.pair, nil
	}
	p, source, err := readPair(ctx, o, &ro.repo)
	var none *noPairError
	switch {
	case errors.As(err, &none) && !repoGiven:
		fmt.Fprintf(o.stderr, "note: no --pair, no --repo, and no %s in the current directory: asking pair %s\n", none.path, defaultPair)
		return defaultPair, nil
	case err != nil:
		return "", fmt.Errorf("reading the pair's name: %w", err)
	case pairGiven && ro.pair != p.Name:
		return "", fmt.Errorf("--pair %s, but pair.yaml in %s (%s) names the pair %s: drop --pair, or check --repo", ro.pair, redact.String(ro.repo.repo), source, p.Name)
	}
	return p.Name, nil
}

// event checks the flags, all before anything is sent, and builds the request.
func (ro *requestOptions) event() (event.Event, error) {
	if err := checkNames(clusterFlag("to", ro.to, true), pairFlag("pair", ro.pair, true)); err != nil {
		return event.Event{}, err
	}
	if strings.TrimSpace(ro.reason) == "" {
		return event.Event{}, errors.New("--reason is required")
	}
	if !slices.Contains(event.Modes(), event.Mode(ro.mode)) {
		return event.Event{}, fmt.Errorf("--mode %s: want planned, emergency or drill", gitops.Quote(ro.mode))
	}
	for _, c := range ro.force {
		if !slices.Contains(event.CheckNames(), c) {
			return event.Event{}, fmt.Errorf("--force %s: not a check (%s)", gitops.Quote(c), strings.Join(event.CheckNames(), ", "))
		}
	}
	switch event.Phase(ro.wait) {
	case event.PhaseProposed, event.PhaseMerged, event.PhaseApplied, event.PhaseVerified:
	default:
		return event.Event{}, fmt.Errorf("--wait %q: want proposed, merged, applied or verified", ro.wait)
	}
	if ro.output != "text" && ro.output != "json" {
		return event.Event{}, fmt.Errorf("--output %q: want text or json", ro.output)
	}
	if ro.requestedBy == "" {
		ro.requestedBy = "unknown"
		if u, err := user.Current(); err == nil {
			ro.requestedBy = u.Username
		}
	}
	if ro.id == "" {
		b := make([]byte, 8)
		_, _ = rand.Read(b)
		ro.id = "cli-" + time.Now().UTC().Format("20060102T150405") + "-" + hex.EncodeToString(b)
	}
	data := event.FailoverRequest{Target: ro.to, Mode: event.Mode(ro.mode), Reason: ro.reason,
		RequestedBy: ro.requestedBy, DryRun: ro.dryRun, Force: ro.force}
	if ro.expectedEpoch >= 0 {
		data.ExpectedEpoch = &ro.expectedEpoch
	}
	e, err := event.NewFailoverRequest("mpha://cli/"+ro.requestedBy, ro.id, data)
	if err != nil {
		return e, err
	}
	e.SetTime(time.Now().UTC())
	if ro.signKey != "" {
		key, err := readSigningKey(ro.signKey)
		if err != nil {
			return e, err
		}
		if err := event.Sign(&e, key); err != nil {
			return e, err
		}
	}
	return e, nil
}

func runFailoverRequest(ctx context.Context, o *globalOptions, ro *requestOptions) error {
	e, err := ro.event()
	if err != nil {
		return err
	}
	subj, err := event.NewSubjects(ro.pair)
	if err != nil {
		return err
	}
	ro.nats.Name = "mpha cli " + ro.requestedBy
	nc, err := natsconn.Connect(ctx, ro.nats, o.logger)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("jetstream: %w", err)
	}
	// Watch before asking, from a little earlier: a request asked again with the same id finds
	// the answer already given.
	start := time.Now().Add(-event.DuplicateWindow)
	cons, err := js.OrderedConsumer(ctx, subj.Stream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj.Status()}, DeliverPolicy: jetstream.DeliverByStartTimePolicy, OptStartTime: &start,
	})
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s not found: no agent of pair %s has started on this NATS", subj.Stream(), ro.pair)
	}
	if err != nil {
		return fmt.Errorf("watching %s: %w", subj.Status(), err)
	}
	if _, err := event.Publish(ctx, js, subj.Requested(), e); err != nil {
		return err
	}
	if ro.output == "text" {
		fmt.Fprintf(o.stdout, "requested failover %s of %s to %s (%s)\n", e.ID(), ro.pair, ro.to, ro.mode)
	}
	seen, end := waitAnswer(ctx, cons, e.ID(), event.Phase(ro.wait), func(st event.FailoverStatus) {
		if ro.output == "text" {
			printFailoverStatus(o.stdout, st)
		}
	})
	if ro.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		if seen == nil {
			seen = []event.FailoverStatus{}
		}
		if err := enc.Encode(seen); err != nil {
			return err
		}
	}
	return end
}

// waitAnswer reads the statuses of request id until it reaches want, ends, or ctx ends.
func waitAnswer(ctx context.Context, cons jetstream.Consumer, id string, want event.Phase, each func(event.FailoverStatus)) ([]event.FailoverStatus, error) {
	it, err := cons.Messages()
	if err != nil {
		return nil, fmt.Errorf("reading statuses: %w", err)
	}
	go func() { <-ctx.Done(); it.Stop() }()
	var seen []event.FailoverStatus
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return seen, &requestEndedError{exitNoAnswer, fmt.Sprintf("no %s answer to %s in time: is the target cluster's agent running?", want, id)}
			}
			return seen, fmt.Errorf("reading statuses: %w", err)
		}
		st, ok := statusOf(msg.Data(), id)
		if !ok {
			continue
		}
		seen = append(seen, st)
		each(st)
		switch {
		case st.Phase == event.PhaseRejected:
			it.Stop()
			return seen, &requestEndedError{exitRefused, fmt.Sprintf("refused (%s): %s", st.Reason, st.Message)}
		case st.Phase == event.PhaseFailed:
			it.Stop()
			return seen, &requestEndedError{exitFailed, "failed: " + st.Message}
		case st.Phase == want, reached(st, want):
			it.Stop()
			return seen, nil
		}
	}
}

// reached reports a status that answers for want: a dry run or a drill ends at proposed, and a
// failover committed directly is merged at once.
func reached(st event.FailoverStatus, want event.Phase) bool {
	order := []event.Phase{event.PhaseProposed, event.PhaseMerged, event.PhaseApplied, event.PhaseVerified}
	rank := func(p event.Phase) int {
		for i, q := range order {
			if p == q {
				return i
			}
		}
		return -1
	}
	if st.DryRun || strings.HasPrefix(st.Branch, plan.Branch(plan.ModeDrill, "")) {
		return st.Phase == event.PhaseProposed
	}
	return rank(st.Phase) >= 0 && rank(st.Phase) >= rank(want)
}

func statusOf(data []byte, id string) (event.FailoverStatus, bool) {
	e, err := event.Decode(data, event.TypeFailoverStatus)
	if err != nil {
		return event.FailoverStatus{}, false
	}
	var st event.FailoverStatus
	if err := e.DataAs(&st); err != nil || st.Event != id {
		return event.FailoverStatus{}, false
	}
	return st, true
}

func printFailoverStatus(w io.Writer, st event.FailoverStatus) {
	line := string(st.Phase)
	switch {
	case st.PR != "":
		line += ": pull request " + st.PR
	case st.Branch != "" && st.Phase != event.PhaseRejected:
		line += ": branch " + st.Branch
	}
	if st.Reason != "" {
		line += " (" + st.Reason + ")"
	}
	if st.Message != "" {
		line += " — " + st.Message
	}
	fmt.Fprintln(w, line)
	if len(st.Checks) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, c := range st.Checks {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Name, c.Result, c.Evidence)
		}
		tw.Flush()
	}
	for _, p := range st.Plan {
		fmt.Fprintln(w, "  "+p)
	}
	if st.Diff != "" {
		fmt.Fprint(w, st.Diff)
	}
}

// readSigningKey reads a PKCS#8 PEM ed25519 private key (openssl genpkey -algorithm ed25519).
func readSigningKey(file string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("signing key: %w", err)
	}
	k, err := event.ParseSigningKey(b)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", file, err)
	}
	return k, nil
}

type planOptions struct {
	repo                repoFlags
	to, mode, output    string
	reason, requestedBy string
}

func newFailoverPlanCommand(o *globalOptions) *cobra.Command {
	po := &planOptions{}
	cmd := &cobra.Command{
		Use:   "plan --to CLUSTER [--repo URL|PATH]",
		Short: "Render the failover commit from the repository, locally (no NATS, nothing pushed)",
		Long: `Builds the failover commit of docs/design.md §5 exactly as the target's agent would from the
repository's current files (pair.yaml and the clusters' role.yaml), and prints what it changes,
the diff and the commit message with its trailers. No preflight checks run: they need the clusters.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runFailoverPlan(cmd.Context(), o, po)
		},
	}
	f := cmd.Flags()
	po.repo.bind(f)
	f.StringVar(&po.to, "to", "", "the cluster that should become active (required)")
	f.StringVar(&po.mode, "mode", plan.ModePlanned, "planned | emergency | drill")
	f.StringVar(&po.reason, "reason", "plan preview", "the reason the commit would carry")
	f.StringVar(&po.requestedBy, "requested-by", "mpha failover plan", "who the commit would name")
	f.StringVarP(&po.output, "output", "o", "text", "text | json")
	return cmd
}

// planView is `failover plan -o json`.
type planView struct {
	Source   string            `json:"source"`
	Branch   string            `json:"branch"`
	From     string            `json:"from"`
	To       string            `json:"to"`
	Epoch    int64             `json:"epoch"`
	Summary  []string          `json:"summary"`
	Warnings []string          `json:"warnings,omitempty"`
	Files    map[string]string `json:"files"`
	Diff     string            `json:"diff"`
	Message  string            `json:"message"`
}

func runFailoverPlan(ctx context.Context, o *globalOptions, po *planOptions) error {
	if err := checkNames(clusterFlag("to", po.to, true)); err != nil {
		return err
	}
	l, err := po.repo.layout()
	if err != nil {
		return err
	}
	files, source, err := po.repo.read(ctx, plan.Inputs(l)...)
	if err != nil {
		return err
	}
	pair, err := plan.ReadPair(files, l)
	if err != nil {
		return err
	}
	if err := plan.Admit(pair, po.to, nil); err != nil {
		return err
	}
	p, err := plan.Build(files, plan.Request{Event: "preview", To: po.to, Mode: po.mode, RequestedBy: po.requestedBy,
		Reason: po.reason, Preflight: plan.PreflightPass, At: time.Now()}, plan.Options{Layout: l})
	if err != nil {
		return err
	}
	msg, err := failover.CommitMessage(p.Change)
	if err != nil {
		return err
	}
	diff, err := gitrepo.Diff(files, p.Change)
	if err != nil {
		return err
	}
	v := planView{Source: source, Branch: p.Branch, From: p.From, To: p.To, Epoch: p.Epoch, Summary: p.Summary,
		Warnings: p.Warnings, Files: map[string]string{}, Diff: diff, Message: msg}
	for k, b := range p.Change.Files {
		v.Files[k] = string(b)
	}
	if po.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	fmt.Fprintf(o.stdout, "Failover %s → %s (epoch %d), from %s\n\n", v.From, v.To, v.Epoch, v.Source)
	for _, s := range v.Summary {
		fmt.Fprintln(o.stdout, "  "+s)
	}
	for _, w := range v.Warnings {
		fmt.Fprintln(o.stdout, "  warning: "+w)
	}
	fmt.Fprintf(o.stdout, "\n%s\n--- commit message ---\n%s", v.Diff, v.Message)
	return nil
}

// newFailoverKeygenCommand makes a key pair for signing failover requests.
func newFailoverKeygenCommand(o *globalOptions) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Make an ed25519 key for signing failover requests; print the line for nats.trustedKeys",
		Long: `Writes a new ed25519 private key (PKCS#8 PEM, mode 0600) to --out, for
` + "`mpha failover request --sign-key`" + `, and prints its public half as the agents' configuration lists it
under nats.trustedKeys. An existing file is never overwritten.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if out == "" {
				return errors.New("--out is required")
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			der, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return fmt.Errorf("writing the key: %w", err)
			}
			if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
				f.Close()
				return fmt.Errorf("writing the key: %w", err)
			}
			if err := f.Close(); err != nil {
				return fmt.Errorf("writing the key: %w", err)
			}
			fmt.Fprintf(o.stdout, "%s\n", event.FormatTrustedKey(pub))
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "where to write the private key (must not exist)")
	return cmd
}
