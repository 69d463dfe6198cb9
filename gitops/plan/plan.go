// Package plan builds the failover commit of docs/design.md §5 (a contract) from the
// repository's current files alone — a failover must never need the failed site: pair.yaml gets
// the new active, epoch+1 and lastFailover; the old active's role.yaml becomes a demoted standby
// (tsb/iam at 0, restore suspended); the new active's role.yaml scales tsb/iam up with its restore
// job suspended; dns/floating.yaml points the floating FQDN at the new active. It is pure: the
// caller reads the files and applies the Change.
package plan

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mpha-dev/mpha/gitops"
	"github.com/mpha-dev/mpha/gitops/role"
	"github.com/mpha-dev/mpha/gitops/trailer"
	"github.com/mpha-dev/mpha/internal/canonyaml"
)

// Modes of a failover request (docs/design.md §6).
const (
	ModePlanned   = "planned"
	ModeEmergency = "emergency"
	ModeDrill     = "drill"
)

// Preflight summaries for the Mpha-Preflight trailer.
const (
	PreflightPass   = "pass"
	PreflightWarn   = "warn"
	PreflightForced = "forced"
)

// Errors a caller turns into a refusal.
var (
	// ErrStale: the request was planned against an older epoch than pair.yaml holds.
	ErrStale = errors.New("stale epoch")
	// ErrAlreadyActive: the target is already the active cluster.
	ErrAlreadyActive = errors.New("the target is already active")
)

// Request is what the failover is asked to do.
type Request struct {
	// Event is the request's CloudEvent id: the idempotency key and the branch's last segment.
	Event string
	To    string
	Mode  string
	// ExpectedEpoch, if set, must equal pair.yaml's epoch.
	ExpectedEpoch *int64
	RequestedBy   string
	Reason        string
	// Preflight is the summary of the checks (pass, warn or forced); Checks are their verdicts,
	// written into the commit message (and so into the pull request).
	Preflight string
	Checks    []Check
	At        time.Time
}

// Check is one preflight check's verdict: Result is pass, warn, fail or forced.
type Check struct {
	Name, Result, Evidence string
}

// Options are the repository's conventions.
type Options struct {
	Layout gitops.Layout
	// Namespace of the MP (default tsb) and of the DNSEndpoint (default mpha).
	Namespace, DNSNamespace string
	// TTL of the floating CNAME (default 60s): it bounds how long clients keep the old answer.
	TTL time.Duration
}

// Plan is the failover commit.
type Plan struct {
	Branch     string
	From, To   string
	Epoch      int64 // the new epoch
	Change     gitops.Change
	Warnings   []string
	Summary    []string // one line per file, for the PR body
	FloatingTo string
}

var eventRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// Branch is where the failover for event is proposed: mpha/failover/<event>, or mpha/drill/<event>
// for a drill (which never touches the branch Flux reads).
func Branch(mode, event string) string {
	if mode == ModeDrill {
		return "mpha/drill/" + event
	}
	return "mpha/failover/" + event
}

// Inputs are the paths Build reads, for Writer.Read: pair.yaml, the clusters' folders (their
// role.yaml) and the floating DNSEndpoint, which Build does not need but a diff of the plan does.
func Inputs(l gitops.Layout) []string {
	return []string{l.Pair(), l.Root() + "/clusters/**", l.FloatingDNS()}
}

// Build plans the failover from the current files (Inputs): pair.yaml and both clusters'
// role.yaml (absent ones nil). pair.yaml is edited, not rewritten: its author's comments and
// layout stay.
func Build(current map[string][]byte, req Request, opts Options) (*Plan, error) {
	l := opts.Layout
	if l == (gitops.Layout{}) {
		return nil, errors.New("a repository layout is required")
	}
	if !eventRE.MatchString(req.Event) {
		return nil, fmt.Errorf("event id %q: want 1-128 characters of [A-Za-z0-9._-]", req.Event)
	}
	switch req.Mode {
	case ModePlanned, ModeEmergency, ModeDrill:
	default:
		return nil, fmt.Errorf("mode %q: want %s, %s or %s", req.Mode, ModePlanned, ModeEmergency, ModeDrill)
	}
	switch req.Preflight {
	case PreflightPass, PreflightWarn, PreflightForced:
	default:
		return nil, fmt.Errorf("preflight %q: want %s, %s or %s", req.Preflight, PreflightPass, PreflightWarn, PreflightForced)
	}
	raw, ok := current[l.Pair()]
	if !ok {
		return nil, fmt.Errorf("%s is not in the repository", l.Pair())
	}
	pair, err := gitops.ParsePair(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.Pair(), err)
	}
	if req.ExpectedEpoch != nil && *req.ExpectedEpoch != pair.Epoch {
		return nil, fmt.Errorf("%w: the request expects epoch %d, pair.yaml is at %d", ErrStale, *req.ExpectedEpoch, pair.Epoch)
	}
	from := pair.Active
	if req.To == from {
		return nil, fmt.Errorf("%w: %s", ErrAlreadyActive, req.To)
	}
	toRef, ok := member(pair, req.To)
	if !ok {
		return nil, fmt.Errorf("cluster %q is not in pair %s", req.To, pair.Name)
	}
	if opts.Namespace == "" {
		opts.Namespace = role.DefaultNamespace
	}
	if opts.DNSNamespace == "" {
		opts.DNSNamespace = "mpha"
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	p := &Plan{Branch: Branch(req.Mode, req.Event), From: from, To: req.To, Epoch: pair.Epoch + 1, FloatingTo: toRef.MPFQDN}
	files := map[string][]byte{}

	next := *pair
	next.Active, next.Epoch = req.To, pair.Epoch+1
	next.LastFailover = &gitops.Failover{Event: req.Event, From: from, To: req.To, At: req.At.UTC().Truncate(time.Second)}
	if files[l.Pair()], err = gitops.EditPair(raw, &next); err != nil {
		return nil, fmt.Errorf("%s: %w", l.Pair(), err)
	}
	p.Summary = append(p.Summary, fmt.Sprintf("%s: active %s → %s, epoch %d → %d", l.Pair(), from, req.To, pair.Epoch, next.Epoch))

	fromOld, err := parseRole(l.Role(from), current[l.Role(from)])
	if err != nil {
		return nil, err
	}
	toOld, err := parseRole(l.Role(req.To), current[l.Role(req.To)])
	if err != nil {
		return nil, err
	}
	// Both MPs run the same operator: a Deployment's selector known on one side holds on the other.
	deps := func(own, other *role.Role) []role.Workload {
		if own != nil && len(own.Deployments) > 0 {
			return own.Deployments
		}
		if other != nil {
			return other.Deployments
		}
		return nil
	}
	replicas := int32(role.DefaultReplicas)
	if fromOld != nil && fromOld.Replicas > 0 {
		replicas = fromOld.Replicas // the previous active count
	}
	restore := func(r *role.Role) *role.Restore {
		if r == nil {
			return nil
		}
		return r.Restore
	}
	roles := []struct {
		cluster string
		r       role.Role
		what    string
	}{
		{from, role.Standby(opts.Namespace, deps(fromOld, toOld), restore(fromOld), true), standbyWhat(restore(fromOld))},
		{req.To, role.Active(opts.Namespace, replicas, deps(toOld, fromOld), restore(toOld)), fmt.Sprintf("active (tsb/iam at %d, restore suspended)", replicas)},
	}
	for _, x := range roles {
		b, err := x.r.Marshal()
		if errors.Is(err, role.ErrEmpty) {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: no Deployment or restore job known for %s; its role.yaml is not written (scale it by hand or by values)", l.Role(x.cluster), x.cluster))
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("role of %s: %w", x.cluster, err)
		}
		files[l.Role(x.cluster)] = b
		p.Summary = append(p.Summary, fmt.Sprintf("%s: %s", l.Role(x.cluster), x.what))
	}
	if files[l.FloatingDNS()], err = dnsEndpoint(pair.FloatingFQDN, toRef.MPFQDN, opts); err != nil {
		return nil, err
	}
	p.Summary = append(p.Summary, fmt.Sprintf("%s: %s CNAME → %s (TTL %s)", l.FloatingDNS(), pair.FloatingFQDN, toRef.MPFQDN, opts.TTL))

	p.Change = gitops.Change{
		Branch:  p.Branch,
		Files:   files,
		Message: message(pair.Name, p, req),
		Trailers: []trailer.Trailer{
			{Key: trailer.Kind, Value: "failover"},
			{Key: trailer.Event, Value: req.Event},
			{Key: trailer.Epoch, Value: strconv.FormatInt(p.Epoch, 10)},
			{Key: trailer.From, Value: from},
			{Key: trailer.To, Value: req.To},
			{Key: trailer.Mode, Value: req.Mode},
			{Key: trailer.RequestedBy, Value: oneLine(req.RequestedBy, "unknown")},
			{Key: trailer.Reason, Value: oneLine(req.Reason, "none given")},
			{Key: trailer.Preflight, Value: req.Preflight},
		},
		Check: fence(l.Pair(), pair.Epoch, files[l.Pair()]),
	}
	if forced := forcedChecks(req.Checks); forced != "" {
		p.Change.Trailers = append(p.Change.Trailers, trailer.Trailer{Key: trailer.Forced, Value: forced})
	}
	return p, nil
}

func standbyWhat(r *role.Restore) string {
	if r == nil {
		return "standby (tsb/iam at 0)"
	}
	return "standby (tsb/iam at 0, " + r.Name + " suspended until re-seeded)"
}

// fence refuses to commit onto a head whose pair.yaml moved on: the epoch is the fence that makes
// a request planned against epoch N fail once N+1 is merged. A branch that already holds this
// very plan (a redelivered request) passes: the writer then finds nothing to commit. The other
// files are mpha's, written whole, so they must carry its header; pair.yaml is its author's and
// carries none, which is why it is edited and fenced by its epoch instead.
func fence(pairPath string, epoch int64, want []byte) func(string, []byte) error {
	return func(path string, cur []byte) error {
		if path != pairPath {
			return gitops.CheckOwned(path, cur)
		}
		if bytes.Equal(cur, want) {
			return nil
		}
		p, err := gitops.ParsePair(cur)
		if err != nil {
			return fmt.Errorf("%s on the branch head: %w", path, err)
		}
		if p.Epoch != epoch {
			return fmt.Errorf("%w: planned at epoch %d, the branch is at %d", ErrStale, epoch, p.Epoch)
		}
		return nil
	}
}

func member(p *gitops.Pair, name string) (gitops.ClusterRef, bool) {
	for _, c := range p.Clusters {
		if c.Name == name {
			return c, true
		}
	}
	return gitops.ClusterRef{}, false
}

func parseRole(path string, b []byte) (*role.Role, error) {
	if b == nil {
		return nil, nil
	}
	r, err := role.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &r, nil
}

// oneLine makes s a trailer value: one line, no surrounding space, not empty.
func oneLine(s, empty string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return empty
	}
	return s
}

func message(pairName string, p *Plan, req Request) string {
	var b strings.Builder
	verb := "Fail over"
	if req.Mode == ModeDrill {
		verb = "Drill: fail over"
	}
	fmt.Fprintf(&b, "%s %s from %s to %s (epoch %d)\n\n", verb, pairName, p.From, p.To, p.Epoch)
	fmt.Fprintf(&b, "Requested by %s (%s): %s\n\n", oneLine(req.RequestedBy, "unknown"), req.Mode, oneLine(req.Reason, "no reason given"))
	for _, s := range p.Summary {
		b.WriteString("- " + s + "\n")
	}
	for _, w := range p.Warnings {
		b.WriteString("- warning: " + w + "\n")
	}
	if len(req.Checks) > 0 {
		fmt.Fprintf(&b, "\nPreflight: %s\n\n| check | result | evidence |\n|---|---|---|\n", req.Preflight)
		for _, c := range req.Checks {
			fmt.Fprintf(&b, "| %s | %s | %s |\n", cell(c.Name), cell(c.Result), cell(c.Evidence))
		}
		if forced := forcedChecks(req.Checks); forced != "" {
			fmt.Fprintf(&b, "\nEmergency: the failing checks %s were forced by the requester.\n", forced)
		}
	}
	fmt.Fprintf(&b, "\nRoll back: revert this commit (or fail over back to %s with a new request).\n", p.From)
	return b.String()
}

// maxEvidence caps one check's evidence in the commit message.
const maxEvidence = 300

// cell makes s one Markdown table cell: one line, no pipes, capped.
func cell(s string) string {
	s = strings.ReplaceAll(oneLine(s, "-"), "|", "\\|")
	if len(s) > maxEvidence {
		cut := maxEvidence
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// forcedChecks lists the checks an emergency overrode, for the Mpha-Forced trailer.
func forcedChecks(checks []Check) string {
	var names []string
	for _, c := range checks {
		if c.Result == PreflightForced {
			names = append(names, c.Name)
		}
	}
	return strings.Join(names, ",")
}

// dnsEndpoint is external-dns's DNSEndpoint: the floating FQDN as a CNAME to the active MP.
func dnsEndpoint(floating, target string, opts Options) ([]byte, error) {
	obj := map[string]any{
		"apiVersion": "externaldns.k8s.io/v1alpha1",
		"kind":       "DNSEndpoint",
		"metadata": map[string]any{
			"name": "mpha-floating", "namespace": opts.DNSNamespace,
			"labels": map[string]any{gitops.ManagedByLabel: gitops.ManagedByValue},
		},
		"spec": map[string]any{"endpoints": []any{map[string]any{
			"dnsName": floating, "recordType": "CNAME", "targets": []any{target},
			"recordTTL": int64(opts.TTL / time.Second),
		}}},
	}
	b, err := canonyaml.Marshal(obj)
	if err != nil {
		return nil, fmt.Errorf("rendering the DNSEndpoint: %w", err)
	}
	var out bytes.Buffer
	out.WriteString(gitops.Header)
	out.Write(b)
	return out.Bytes(), nil
}
