// Package readiness holds the checks that say whether the standby management plane could take over
// (docs/design.md §7, tsb-mp-ha.md §9): signing-key and JWKS kids, keyed digests of the exported
// secrets, one root CA with the floating FQDN in the leaf SANs and no self-signed issuer, and
// undrifted standby values. Evaluate is pure: it compares the facts of the two sites. Gathering
// facts (gitops/seal reads them from a Secret or from a SealedSecret the active committed; here
// they are fetched from a cluster or from Git) and the agent's Monitor live beside it. Evidence never holds a secret value or an unkeyed hash of one: only names,
// kids, keyed digests' verdicts, public certificate fingerprints and value paths.
// It imports gitops and agent/release, never cmd.
package readiness

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/mpha-dev/mpha/gitops/seal"
)

// Status is a check's verdict.
type Status string

// The verdicts, best first.
const (
	Pass Status = "pass"
	Warn Status = "warn"
	Fail Status = "fail"
)

// Statuses lists the verdicts, best first.
func Statuses() []Status { return []Status{Pass, Warn, Fail} }

// rank orders the verdicts; an unknown one ranks as a failure.
func (s Status) rank() int {
	if i := slices.Index(Statuses(), s); i >= 0 {
		return i
	}
	return len(Statuses())
}

// Worse returns the worse of s and o.
func (s Status) Worse(o Status) Status {
	if o.rank() > s.rank() {
		return o
	}
	return s
}

// Check names (docs/design.md §7).
const (
	SigningKeyKid = "signing-key-kid"
	JWKSKid       = "jwks-kid"
	SecretsInSync = "secrets-in-sync"
	RootCA        = "root-ca"
	ValuesDrift   = "values-drift"
	// SecretsManaged: the exported secrets each site holds live may be replaced by SealedSecrets.
	SecretsManaged = "secrets-managed"
)

// Checks lists the checks in the order Evaluate returns them.
func Checks() []string {
	return []string{SigningKeyKid, JWKSKid, SecretsInSync, RootCA, ValuesDrift, SecretsManaged}
}

// Describe says in one line what check compares, for help texts ("" for a name that is no
// check of Evaluate). A test keeps it in step with Checks.
func Describe(check string) string {
	switch check {
	case SigningKeyKid:
		return seal.SigningKeySecret + " has the same kid on both sites"
	case JWKSKid:
		return seal.JWKSSecret + " has the same kid on both sites"
	case SecretsInSync:
		return "every exported secret is on both sites, with equal keyed digests"
	case RootCA:
		return "one CA in " + TSBCertsSecret + " and " + XCPCentralSecret + " on both, the floating FQDN in the leaf SANs, no " + SelfSignedPath
	case ValuesDrift:
		return "the standby's Helm values are those rendered now from the active's release"
	case SecretsManaged:
		return "sealed-secrets may replace the exported secrets each site holds (warns, never fails)"
	}
	return ""
}

// The TSB secrets the root-ca check reads (tsb-mp-ha.md §2); the kid checks read
// seal.SigningKeySecret and seal.JWKSSecret, whose kids are among the facts seal reads.
const (
	TSBCertsSecret   = "tsb-certs"
	XCPCentralSecret = "xcp-central-cert"
)

// CheckedSecrets are the secrets the checks read besides the exported ones.
func CheckedSecrets() []string {
	return []string{seal.SigningKeySecret, seal.JWKSSecret, TSBCertsSecret, XCPCentralSecret}
}

// Result is one check's verdict with evidence a person can act on.
type Result struct {
	Check    string `json:"check"`
	Status   Status `json:"status"`
	Evidence string `json:"evidence"`
}

// Report is a round of checks: what the readiness ConfigMap and `mpha doctor -o json` hold.
type Report struct {
	Active  string `json:"active"`
	Standby string `json:"standby"`
	// Status is the worst of the checks'.
	Status Status   `json:"status"`
	Checks []Result `json:"checks"`
	// At is when the round ran (empty from doctor).
	At *time.Time `json:"at,omitempty"`
}

// NewReport sums results up.
func NewReport(active, standby string, results []Result) Report {
	r := Report{Active: active, Standby: standby, Status: Pass, Checks: results}
	for _, c := range results {
		r.Status = r.Status.Worse(c.Status)
	}
	return r
}

// Marshal encodes the report as indented JSON.
func (r Report) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding readiness report: %w", err)
	}
	return append(b, '\n'), nil
}

// Site is what is known of one cluster's management plane.
type Site struct {
	// Cluster names the site; Role ("active" or "standby") is filled in by Evaluate.
	Cluster string
	role    string
	// Namespace is the MP's namespace, when the facts are live (for the fixes evidence names).
	Namespace string
	// Secrets holds each secret's facts by name. A name that is not in the map is unknown (as
	// opposed to a Facts with Present false: known to be absent).
	Secrets map[string]seal.Facts
	// SecretsUnknown, when set, says why none of this site's secrets can be known here.
	SecretsUnknown string
	// Values are the user-supplied values of the deployed MP Helm release; nil when none is
	// deployed. Release names it for evidence ("tsb/mp revision 3").
	Values  map[string]any
	Release string
	// ValuesUnknown, when set, says why this site's values cannot be known here.
	ValuesUnknown string
	// Via, when set, says where the facts come from when not from the cluster itself
	// ("as exported to Git").
	Via string
}

// name is how evidence names the site: "west (standby)", "east (active, as exported to Git)".
func (s Site) name() string {
	if s.Via != "" {
		return fmt.Sprintf("%s (%s, %s)", s.Cluster, s.role, s.Via)
	}
	return fmt.Sprintf("%s (%s)", s.Cluster, s.role)
}

// facts returns the facts of secret name and whether they are known; when not, why.
func (s Site) facts(name string) (seal.Facts, bool, string) {
	if s.SecretsUnknown != "" {
		return seal.Facts{}, false, s.SecretsUnknown
	}
	f, ok := s.Secrets[name]
	if !ok {
		return seal.Facts{}, false, fmt.Sprintf("%s is not exported from %s", name, s.name())
	}
	return f, true, ""
}

// Input is everything Evaluate compares.
type Input struct {
	Active, Standby Site
	// FloatingFQDN is the pair's floating name (pair.yaml); "" when unknown.
	FloatingFQDN string
	// Rendered are the standby values rendered now from the active's release (or read from the
	// HelmRelease the active committed for the standby); nil when unknown, RenderedUnknown says why.
	Rendered        map[string]any
	RenderedUnknown string
	// Names are the exported secrets (secrets.names) that secrets-in-sync compares.
	Names []string
}

// Evaluate runs every check on in, in the order of Checks.
func Evaluate(in Input) []Result {
	in.Active.role, in.Standby.role = "active", "standby"
	return []Result{
		kidCheck(SigningKeyKid, seal.SigningKeySecret, in),
		kidCheck(JWKSKid, seal.JWKSSecret, in),
		syncCheck(in),
		rootCACheck(in),
		driftCheck(in),
		managedCheck(in),
	}
}

// verdict gathers a check's findings: the worst status wins and the evidence lists them all.
type verdict struct {
	status Status
	notes  []string
}

func (v *verdict) add(s Status, format string, args ...any) {
	if v.status == "" {
		v.status = s
	}
	v.status = v.status.Worse(s)
	v.notes = append(v.notes, fmt.Sprintf(format, args...))
}

func (v *verdict) result(check, passNote string) Result {
	if len(v.notes) == 0 {
		return Result{Check: check, Status: Pass, Evidence: passNote}
	}
	return Result{Check: check, Status: v.status, Evidence: strings.Join(v.notes, "; ")}
}

// list formats names for evidence: "a, b and c".
func list(names []string) string {
	switch len(names) {
	case 0:
		return "none"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
