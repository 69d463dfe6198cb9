package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/mpha-dev/mpha/agent/database"
	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/agent/health"
	"github.com/mpha-dev/mpha/agent/heartbeat"
	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/internal/natsconn"
	"github.com/mpha-dev/mpha/internal/redact"
)

// Status's time limits: Git gets three attempts (about 2 s of backoff), NATS one connection and
// one lookup per cluster within natsStatusTimeout.
var statusGitBackoff = wait.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 3}

const natsStatusTimeout = 10 * time.Second

type statusOptions struct {
	repo         repoFlags
	pair, output string
	nats         natsconn.Options
}

// newStatusCommand shows a pair at a glance: pair.yaml from Git, each cluster's last heartbeat
// from NATS.
func newStatusCommand(o *globalOptions) *cobra.Command {
	so := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status [--repo URL|PATH] [--nats-url URL]",
		Short: "Show the pair's state from Git and each cluster's last heartbeat from NATS",
		Long: `Reads pair.yaml from the GitOps repository (name, active cluster, epoch, floating FQDN, clusters,
last failover) and, from the pair's JetStream stream MPHA_<PAIR>, the last heartbeat of each
cluster with its age, the role and epoch it reported and its agent's version. A cluster that never
sent one shows "never"; a heartbeat whose role or epoch disagrees with Git gets a note. Then the
failover suggestions still open (the health monitor's or the alert bridge's, made since the last
failover at the current epoch) with their evidence and the request each published, if any.

--repo is a clone URL or a local checkout (default: the current directory). Git credentials come
from MPHA_GIT_USERNAME and MPHA_GIT_PASSWORD (a token goes in the password; the user defaults to
"git"); over plain http:// only with --insecure-http-credentials.
NATS flags are also read from MPHA_NATS_* (MPHA_NATS_PASSWORD, MPHA_NATS_TOKEN, ...).

Exit status: 0 when pair.yaml was read, even if NATS was not configured or unreachable: then the
heartbeats show "unknown" and a warning goes to stderr (and into the JSON's nats.error). 1 when
pair.yaml could not be read or the flags are wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := so.validate(); err != nil {
				return err
			}
			return runStatus(cmd.Context(), o, so, time.Now())
		},
	}
	f := cmd.Flags()
	so.repo.bind(f)
	so.repo.backoff = statusGitBackoff
	f.StringVar(&so.pair, "pair", "", "the pair's name in NATS (default: pair.yaml's name)")
	so.nats.BindFlags(f)
	f.StringVarP(&so.output, "output", "o", "table", "table|json")
	return cmd
}

func (so *statusOptions) validate() error {
	switch {
	case so.output != "table" && so.output != "json":
		return fmt.Errorf("--output %q: want table or json", so.output)
	}
	if err := checkNames(pairFlag("pair", so.pair, false)); err != nil {
		return err
	}
	if so.nats.URL != "" || so.nats.Auth() != "none" || so.nats.TLS() {
		return so.nats.Validate() // NATS is optional, but flags given for it must make sense
	}
	return nil
}

// statusReport is what status prints; -o json prints it as is.
type statusReport struct {
	Repo   string       `json:"repo"`
	Branch string       `json:"branch"`
	Commit string       `json:"commit"`
	Pair   *gitops.Pair `json:"pair"`
	NATS   natsStatus   `json:"nats"`
	// Clusters follow pair.yaml's order.
	Clusters []clusterStatus `json:"clusters"`
	// Suggestions are the failover suggestions still open (health.Open), oldest first.
	Suggestions []health.Published `json:"suggestions"`
}

// natsStatus says whether NATS answered (Reachable) and what went wrong if anything did.
type natsStatus struct {
	URL       string `json:"url,omitempty"`
	Stream    string `json:"stream"`
	Reachable bool   `json:"reachable"`
	Error     string `json:"error,omitempty"`
}

type clusterStatus struct {
	Name   string `json:"name"`
	MPFQDN string `json:"mpFQDN"`
	// Role is the cluster's role as pair.yaml says it.
	Role string `json:"role"`
	// Heartbeat is the last one in the stream: absent when the cluster never sent one, or when
	// NATS could not be read (nats.reachable is then false).
	Heartbeat *heartbeatStatus `json:"heartbeat,omitempty"`
	// Notes list where the heartbeat disagrees with Git.
	Notes []string `json:"notes,omitempty"`
}

type heartbeatStatus struct {
	ID string `json:"id,omitempty"`
	// At is when the stream stored it; AgeSeconds how long before this status.
	At         time.Time        `json:"at"`
	AgeSeconds float64          `json:"ageSeconds"`
	Data       *event.Heartbeat `json:"data,omitempty"`
	// Error says why the message is not a heartbeat mpha can read.
	Error string `json:"error,omitempty"`
}

func runStatus(ctx context.Context, o *globalOptions, so *statusOptions, now time.Time) error {
	pair, commit, err := readPair(ctx, o, &so.repo)
	if err != nil {
		return err
	}
	rep := statusReport{Repo: redact.String(so.repo.repo), Branch: so.repo.branch, Commit: commit, Pair: pair}
	name := so.pair
	if name == "" {
		name = pair.Name
	} else if name != pair.Name {
		fmt.Fprintf(o.stderr, "warning: --pair %s, but pair.yaml names the pair %s\n", name, pair.Name)
	}
	subjects, err := event.NewSubjects(name)
	if err != nil {
		return err
	}
	rep.NATS = natsStatus{URL: redact.String(so.nats.URL), Stream: subjects.Stream()}
	heartbeats, suggestions, err := readNATS(ctx, so.nats, subjects, pair)
	rep.Suggestions = suggestions
	// A missing stream is an answer: no agent ever sent anything, every cluster is "never".
	rep.NATS.Reachable = heartbeats != nil || errors.Is(err, jetstream.ErrStreamNotFound)
	if err != nil {
		rep.NATS.Error = err.Error()
		if rep.NATS.Reachable {
			fmt.Fprintf(o.stderr, "warning: %v\n", err)
		} else {
			fmt.Fprintf(o.stderr, "warning: heartbeats unknown: %v\n", err)
		}
	}
	for _, c := range pair.Clusters {
		last, ok := heartbeats[c.Name]
		rep.Clusters = append(rep.Clusters, clusterRow(pair, c, last, ok, now))
	}
	if so.output == "json" {
		enc := json.NewEncoder(o.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return printPairStatus(o.stdout, rep)
}

// readPair reads and parses pair.yaml from the branch (or the checkout).
func readPair(ctx context.Context, o *globalOptions, rf *repoFlags) (*gitops.Pair, string, error) {
	layout, err := rf.layout()
	if err != nil {
		return nil, "", fmt.Errorf("--root: %w", err)
	}
	rf.logger = o.logger
	files, commit, err := rf.read(ctx, layout.Pair())
	if err != nil {
		return nil, "", err
	}
	b, ok := files[layout.Pair()]
	if !ok {
		return nil, "", &noPairError{path: layout.Pair(), repo: redact.String(rf.repo), source: commit}
	}
	p, err := gitops.ParsePair(b)
	if err != nil {
		return nil, "", fmt.Errorf("%s at %s: %w", layout.Pair(), commit, err)
	}
	return p, commit, nil
}

// noPairError: the repository has no pair.yaml (where --root says).
type noPairError struct{ path, repo, source string }

func (e *noPairError) Error() string {
	return fmt.Sprintf("%s is not in %s (%s): is --root right?", e.path, e.repo, e.source)
}

// lastHeartbeat is a cluster's last heartbeat message; err (heartbeat.ErrMalformed) says why it
// is not one mpha can read, and then only beat.At is set.
type lastHeartbeat struct {
	beat heartbeat.Beat
	err  error
}

// readNATS returns the last heartbeat message of each cluster that sent one (an empty, non-nil
// map when none did) and the failover suggestions still open (since the last failover, at the
// pair's epoch), or an error when NATS could not be asked or has no stream for the pair
// (jetstream.ErrStreamNotFound).
func readNATS(ctx context.Context, opts natsconn.Options, s event.Subjects, p *gitops.Pair) (map[string]lastHeartbeat, []health.Published, error) {
	if opts.URL == "" {
		return nil, nil, errors.New("no NATS URL (--nats-url or MPHA_NATS_URL)")
	}
	ctx, cancel := context.WithTimeout(ctx, natsStatusTimeout)
	defer cancel()
	opts.Name = "mpha status"
	nc, err := natsconn.Connect(ctx, opts, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("NATS unreachable: %w", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, nil, fmt.Errorf("JetStream: %w", err)
	}
	beats, err := heartbeat.NewReader(js, s.Pair(), heartbeat.ReaderOptions{})
	if err != nil {
		return nil, nil, err
	}
	last := map[string]lastHeartbeat{}
	for _, c := range p.Clusters {
		b, err := beats.Last(ctx, c.Name)
		switch {
		case errors.Is(err, heartbeat.ErrNoHeartbeat):
		case err == nil || errors.Is(err, heartbeat.ErrMalformed):
			last[c.Name] = lastHeartbeat{beat: b, err: err}
		case errors.Is(err, jetstream.ErrStreamNotFound):
			return nil, nil, fmt.Errorf("no agent of pair %s has created its stream yet: %w", s.Pair(), err)
		default:
			return nil, nil, err
		}
	}
	var since time.Time
	if p.LastFailover != nil {
		since = p.LastFailover.At
	}
	open, err := health.Open(ctx, js, s, p.Epoch, since)
	return last, open, err
}

// clusterRow is one cluster's line: its role in Git and its last heartbeat (ok false if none).
func clusterRow(p *gitops.Pair, c gitops.ClusterRef, last lastHeartbeat, ok bool, now time.Time) clusterStatus {
	role := heartbeat.RoleStandby
	if p.Active == c.Name {
		role = heartbeat.RoleActive
	}
	row := clusterStatus{Name: c.Name, MPFQDN: c.MPFQDN, Role: role}
	if !ok {
		return row
	}
	hs := &heartbeatStatus{At: last.beat.At.UTC(), AgeSeconds: last.beat.Age(now).Seconds()}
	row.Heartbeat = hs
	if last.err != nil {
		hs.Error = last.err.Error()
		return row
	}
	hb := last.beat.Heartbeat
	hs.ID, hs.Data = last.beat.ID, &hb
	if hb.Role != role {
		row.Notes = append(row.Notes, fmt.Sprintf("reports %s, Git says %s", hb.Role, role))
	}
	if hb.Epoch != p.Epoch {
		row.Notes = append(row.Notes, fmt.Sprintf("at epoch %d, Git at %d", hb.Epoch, p.Epoch))
	}
	return row
}

func printPairStatus(w io.Writer, rep statusReport) error {
	p := rep.Pair
	last := "none"
	if f := p.LastFailover; f != nil {
		last = fmt.Sprintf("%s → %s at %s (event %s)", f.From, f.To, f.At.UTC().Format(time.RFC3339), f.Event)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Pair:\t%s (stream %s)\n", p.Name, rep.NATS.Stream)
	fmt.Fprintf(tw, "Active:\t%s\n", p.Active)
	fmt.Fprintf(tw, "Epoch:\t%d\n", p.Epoch)
	fmt.Fprintf(tw, "Floating FQDN:\t%s\n", p.FloatingFQDN)
	fmt.Fprintf(tw, "Last failover:\t%s\n", last)
	fmt.Fprintf(tw, "Git:\t%s %s@%s\n", rep.Repo, rep.Branch, shortCommit(rep.Commit))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing the status: %w", err)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "CLUSTER\tROLE\tMP FQDN\tLAST HEARTBEAT\tAGE\tREPORTED\tEPOCH\tVERSION\tDATABASE\tNOTES\n")
	for _, c := range rep.Clusters {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.Name, c.Role, c.MPFQDN, heartbeatColumns(c, rep.NATS.Reachable))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("printing the status: %w", err)
	}
	printSuggestions(w, rep)
	return nil
}

// printSuggestions lists the open failover suggestions with their evidence, and the request
// each one published, if any.
func printSuggestions(w io.Writer, rep statusReport) {
	fmt.Fprintln(w)
	switch {
	case !rep.NATS.Reachable:
		fmt.Fprintln(w, "Open failover suggestions: unknown")
		return
	case len(rep.Suggestions) == 0:
		fmt.Fprintln(w, "Open failover suggestions: none")
		return
	}
	fmt.Fprintf(w, "Open failover suggestions (since the last failover, at epoch %d):\n", rep.Pair.Epoch)
	for _, sg := range rep.Suggestions {
		from := sg.From
		if from == "" {
			from = "?"
		}
		fmt.Fprintf(w, "  %s  %s → %s  by %s (outage since %s): %s\n", sg.At.Format(time.RFC3339), from, sg.Target, sg.SuggestedBy,
			sg.Since.UTC().Format(time.RFC3339), sg.Reason)
		for _, e := range sg.Evidence {
			fmt.Fprintf(w, "      evidence: %s\n", e)
		}
		if sg.Request != "" {
			fmt.Fprintf(w, "      request: %s (mpha audit shows what became of it)\n", sg.Request)
		} else {
			fmt.Fprintf(w, "      to act on it: mpha failover request --to %s --mode emergency --reason '...'\n", sg.Target)
		}
	}
}

// heartbeatColumns are a cluster's LAST HEARTBEAT to NOTES columns.
func heartbeatColumns(c clusterStatus, reachable bool) string {
	hs := c.Heartbeat
	switch {
	case !reachable:
		return "unknown\t\t\t\t\t\t"
	case hs == nil:
		return "never\t\t\t\t\t\t"
	}
	age := (time.Duration(hs.AgeSeconds * float64(time.Second))).Round(time.Second).String()
	at := hs.At.Format(time.RFC3339)
	if hs.Data == nil {
		return fmt.Sprintf("%s\t%s\t\t\t\t\tunreadable: %s", at, age, hs.Error)
	}
	d := hs.Data
	return fmt.Sprintf("%s\t%s\t%s\t%d\t%s\t%s\t%s", at, age, d.Role, d.Epoch, d.AgentVersion, databaseColumn(d.Postgres), strings.Join(c.Notes, "; "))
}

// databaseColumn is a heartbeat's database in a few words: its role, a replica's or a logical
// subscriber's lag, an import's time.
func databaseColumn(pg *event.PostgresStatus) string {
	if pg == nil {
		return "-"
	}
	s := pg.Role
	if pg.Replication != "" {
		s = "logical " + pg.Replication
	}
	if pg.LagBytes != nil {
		s += " " + database.FormatBytes(*pg.LagBytes) + " behind"
		if pg.LagSeconds != nil && *pg.LagSeconds > 0 {
			s += fmt.Sprintf(" (%.1fs)", *pg.LagSeconds)
		}
	}
	if pg.ImportedAt != nil && pg.Replication == "" {
		s += " imported " + pg.ImportedAt.UTC().Format(time.RFC3339)
	}
	return s
}

func shortCommit(c string) string {
	if len(c) > 12 {
		return c[:12]
	}
	return c
}
