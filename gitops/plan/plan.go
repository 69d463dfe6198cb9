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
	"time"

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
	// ErrStale: the request, or the plan, was made at another epoch than pair.yaml holds.
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
	// RequestedBy and Reason go into the commit message and its trailers.
	RequestedBy string
	Reason      string
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
	// Namespace of the MP (default tsb) and of the DNSEndpoint (default mpha). The floating
	// record's TTL is not an option: it is pair.yaml's (gitops.Pair.RecordTTL), the same for
	// both agents.
	Namespace, DNSNamespace string
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

// Admit is the one check of a request against pair.yaml as read (docs/design.md §6): the target
// is not the active cluster already, and pair.yaml is at the epoch the request expects, if it
// names one. The agent admits a request before it accepts it (its preflight then reports the
// epoch check passed), `mpha failover plan` before it builds; Build plans an admitted request and
// does not check again. The commit's own fence (the epoch on the branch head) is Build's.
func Admit(pair *gitops.Pair, to string, expectedEpoch *int64) error {
	if to == pair.Active {
		return fmt.Errorf("%w: %s is the active cluster of %s at epoch %d", ErrAlreadyActive, to, pair.Name, pair.Epoch)
	}
	if expectedEpoch != nil && *expectedEpoch != pair.Epoch {
		return fmt.Errorf("%w: the request expects epoch %d, pair.yaml is at %d", ErrStale, *expectedEpoch, pair.Epoch)
	}
	return nil
}

// ReadPair is pair.yaml among the files read (Inputs).
func ReadPair(current map[string][]byte, l gitops.Layout) (*gitops.Pair, error) {
	raw, ok := current[l.Pair()]
	if !ok {
		return nil, fmt.Errorf("%s is not in the repository", l.Pair())
	}
	pair, err := gitops.ParsePair(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.Pair(), err)
	}
	return pair, nil
}

// Build plans the failover of an admitted request (Admit) from the current files (Inputs):
// pair.yaml and both clusters' role.yaml (absent ones nil). pair.yaml is edited, not rewritten:
// its author's comments and layout stay. Each step of the plan is one function (buildSteps).
func Build(current map[string][]byte, req Request, opts Options) (*Plan, error) {
	d := &draft{current: current, req: req, opts: opts, files: map[string][]byte{}}
	for _, step := range buildSteps() {
		if err := step(d); err != nil {
			return nil, err
		}
	}
	return d.plan, nil
}

// draft is a plan in the making: what Build read and what its steps have written so far.
type draft struct {
	current map[string][]byte
	req     Request
	opts    Options
	pair    *gitops.Pair      // pair.yaml as read
	to      gitops.ClusterRef // the target's entry in it
	files   map[string][]byte // what the commit writes
	plan    *Plan
}

// step is one step of Build: it reads the draft and adds to it.
type step func(*draft) error

// buildSteps are Build's steps in order: check the request, read pair.yaml, then write each file
// of docs/design.md §5 and the commit that carries them.
func buildSteps() []step {
	return []step{checkRequest, readPair, writePair, writeRoles, writeFloating, writeCommit}
}

// checkRequest refuses a request Build cannot name a branch or a trailer for, and fills in the
// options' defaults.
func checkRequest(d *draft) error {
	req := d.req
	if d.opts.Layout == (gitops.Layout{}) {
		return errors.New("a repository layout is required")
	}
	if !eventRE.MatchString(req.Event) {
		return fmt.Errorf("event id %q: want 1-128 characters of [A-Za-z0-9._-]", req.Event)
	}
	switch req.Mode {
	case ModePlanned, ModeEmergency, ModeDrill:
	default:
		return fmt.Errorf("mode %q: want %s, %s or %s", req.Mode, ModePlanned, ModeEmergency, ModeDrill)
	}
	switch req.Preflight {
	case PreflightPass, PreflightWarn, PreflightForced:
	default:
		return fmt.Errorf("preflight %q: want %s, %s or %s", req.Preflight, PreflightPass, PreflightWarn, PreflightForced)
	}
	if d.opts.Namespace == "" {
		d.opts.Namespace = role.DefaultNamespace
	}
	if d.opts.DNSNamespace == "" {
		d.opts.DNSNamespace = "mpha"
	}
	return nil
}

// readPair reads pair.yaml and the target's entry in it, and starts the plan.
func readPair(d *draft) error {
	pair, err := ReadPair(d.current, d.opts.Layout)
	if err != nil {
		return err
	}
	to, ok := member(pair, d.req.To)
	if !ok {
		return fmt.Errorf("cluster %q is not in pair %s", d.req.To, pair.Name)
	}
	d.pair, d.to = pair, to
	d.plan = &Plan{Branch: Branch(d.req.Mode, d.req.Event), From: pair.Active, To: d.req.To, Epoch: pair.Epoch + 1, FloatingTo: to.MPFQDN}
	return nil
}

// writePair edits pair.yaml: the new active, epoch+1, lastFailover.
func writePair(d *draft) error {
	l, p := d.opts.Layout, d.plan
	next := *d.pair
	next.Active, next.Epoch = p.To, p.Epoch
	next.LastFailover = &gitops.Failover{Event: d.req.Event, From: p.From, To: p.To, At: d.req.At.UTC().Truncate(time.Second)}
	b, err := gitops.EditPair(d.current[l.Pair()], &next)
	if err != nil {
		return fmt.Errorf("%s: %w", l.Pair(), err)
	}
	d.files[l.Pair()] = b
	p.Summary = append(p.Summary, fmt.Sprintf("%s: active %s → %s, epoch %d → %d", l.Pair(), p.From, p.To, d.pair.Epoch, p.Epoch))
	return nil
}

// writeRoles writes both role.yaml: the old active a demoted standby (tsb/iam at 0, restore
// suspended), the new active scaled up with its restore job suspended. A role with nothing to
// scale is left out, with a warning.
func writeRoles(d *draft) error {
	l, p := d.opts.Layout, d.plan
	fromOld, err := parseRole(l.Role(p.From), d.current[l.Role(p.From)])
	if err != nil {
		return err
	}
	toOld, err := parseRole(l.Role(p.To), d.current[l.Role(p.To)])
	if err != nil {
		return err
	}
	replicas := int32(role.DefaultReplicas)
	if fromOld != nil && fromOld.Replicas > 0 {
		replicas = fromOld.Replicas // the previous active count
	}
	roles := []struct {
		cluster string
		r       role.Role
		what    string
	}{
		{p.From, role.Standby(d.opts.Namespace, deployments(fromOld, toOld), restoreOf(fromOld), true), standbyWhat(restoreOf(fromOld))},
		{p.To, role.Active(d.opts.Namespace, replicas, deployments(toOld, fromOld), restoreOf(toOld)), fmt.Sprintf("active (tsb/iam at %d, restore suspended)", replicas)},
	}
	for _, x := range roles {
		b, err := x.r.Marshal()
		if errors.Is(err, role.ErrEmpty) {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: no Deployment or restore job known for %s; its role.yaml is not written (scale it by hand or by values)", l.Role(x.cluster), x.cluster))
			continue
		}
		if err != nil {
			return fmt.Errorf("role of %s: %w", x.cluster, err)
		}
		d.files[l.Role(x.cluster)] = b
		p.Summary = append(p.Summary, fmt.Sprintf("%s: %s", l.Role(x.cluster), x.what))
	}
	return nil
}

// writeFloating points the floating FQDN at the new active, with pair.yaml's TTL.
func writeFloating(d *draft) error {
	l, p := d.opts.Layout, d.plan
	ttl := d.pair.RecordTTL()
	b, err := dnsEndpoint(d.pair.FloatingFQDN, d.to.MPFQDN, ttl, d.opts.DNSNamespace)
	if err != nil {
		return err
	}
	d.files[l.FloatingDNS()] = b
	p.Summary = append(p.Summary, fmt.Sprintf("%s: %s CNAME → %s (TTL %s)", l.FloatingDNS(), d.pair.FloatingFQDN, d.to.MPFQDN, ttl))
	return nil
}

// writeCommit is the Change: the files, the message with the preflight table, the trailers, and
// the fence on pair.yaml's epoch.
func writeCommit(d *draft) error {
	l, p, req := d.opts.Layout, d.plan, d.req
	p.Change = gitops.Change{
		Branch:  p.Branch,
		Files:   d.files,
		Message: message(d.pair.Name, p, req),
		Trailers: []trailer.Trailer{
			{Key: trailer.Kind, Value: "failover"},
			{Key: trailer.Event, Value: req.Event},
			{Key: trailer.Epoch, Value: strconv.FormatInt(p.Epoch, 10)},
			{Key: trailer.From, Value: p.From},
			{Key: trailer.To, Value: p.To},
			{Key: trailer.Mode, Value: req.Mode},
			{Key: trailer.RequestedBy, Value: oneLine(req.RequestedBy, "unknown")},
			{Key: trailer.Reason, Value: oneLine(req.Reason, "none given")},
			{Key: trailer.Preflight, Value: req.Preflight},
		},
		Check: fence(l.Pair(), d.pair.Epoch, d.files[l.Pair()]),
	}
	if forced := forcedChecks(req.Checks); forced != "" {
		p.Change.Trailers = append(p.Change.Trailers, trailer.Trailer{Key: trailer.Forced, Value: forced})
	}
	return nil
}

// deployments are own's Deployments, else other's: both MPs run the same operator, so a
// Deployment's selector known on one side holds on the other.
func deployments(own, other *role.Role) []role.Workload {
	if own != nil && len(own.Deployments) > 0 {
		return own.Deployments
	}
	if other != nil {
		return other.Deployments
	}
	return nil
}

func restoreOf(r *role.Role) *role.Restore {
	if r == nil {
		return nil
	}
	return r.Restore
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

// dnsEndpoint is external-dns's DNSEndpoint: the floating FQDN as a CNAME to the active MP.
func dnsEndpoint(floating, target string, ttl time.Duration, namespace string) ([]byte, error) {
	obj := map[string]any{
		"apiVersion": "externaldns.k8s.io/v1alpha1",
		"kind":       "DNSEndpoint",
		"metadata": map[string]any{
			"name": "mpha-floating", "namespace": namespace,
			"labels": map[string]any{gitops.ManagedByLabel: gitops.ManagedByValue},
		},
		"spec": map[string]any{"endpoints": []any{map[string]any{
			"dnsName": floating, "recordType": "CNAME", "targets": []any{target},
			"recordTTL": int64(ttl / time.Second),
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
