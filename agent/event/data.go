package event

import "time"

// Mode is how a failover is asked for (docs/design.md §6).
type Mode string

// The modes: planned is refused on any failing check; emergency may force named checks; drill
// writes to a drill branch and never touches the real pair.
const (
	ModePlanned   Mode = "planned"
	ModeEmergency Mode = "emergency"
	ModeDrill     Mode = "drill"
)

// Modes lists the valid modes.
func Modes() []Mode { return []Mode{ModePlanned, ModeEmergency, ModeDrill} }

// Phase is where a failover stands in failover.status events (docs/design.md §6).
type Phase string

// The phases, in the order a successful failover passes them; rejected and failed end one.
const (
	PhaseAccepted  Phase = "accepted"
	PhaseRejected  Phase = "rejected"
	PhasePreflight Phase = "preflight"
	PhaseProposed  Phase = "proposed"
	PhaseMerged    Phase = "merged"
	PhaseApplied   Phase = "applied"
	PhaseVerified  Phase = "verified"
	PhaseFailed    Phase = "failed"
)

// Phases lists the phases.
func Phases() []Phase {
	return []Phase{
		PhaseAccepted, PhaseRejected, PhasePreflight, PhaseProposed,
		PhaseMerged, PhaseApplied, PhaseVerified, PhaseFailed,
	}
}

// CheckNames lists the preflight checks of docs/design.md §7, the names `force` may use. The
// readiness checks (agent/readiness.Checks) are a subset; event cannot import readiness (it would
// drag Kubernetes clients into every event reader), so a test keeps the two lists in step.
func CheckNames() []string {
	return []string{
		"signing-key-kid", "jwks-kid", "secrets-in-sync", "root-ca",
		"database", "standby-ready", "epoch", "values-drift", "secrets-managed",
	}
}

// FailoverRequest is the data of a failover.requested event.
type FailoverRequest struct {
	// Target is the cluster that should become active; its agent handles the request.
	Target string `json:"target"`
	// ExpectedEpoch, when set, is the pair.yaml epoch the requester saw; a lower one than the
	// current epoch is stale and refused (the fence of docs/design.md §6).
	ExpectedEpoch *int64 `json:"expectedEpoch,omitempty"`
	Mode          Mode   `json:"mode"`
	// Reason and RequestedBy become the Mpha-Reason and Mpha-Requested-By trailers: one line each.
	Reason      string `json:"reason"`
	RequestedBy string `json:"requestedBy"`
	// DryRun publishes the plan and its diff without pushing.
	DryRun bool `json:"dryRun,omitempty"`
	// Force names checks whose failure an emergency failover overrides.
	Force []string `json:"force,omitempty"`
}

// FailoverStatus is the data of a failover.status event.
type FailoverStatus struct {
	// Event is the id of the failover.requested event this reports on.
	Event string `json:"event"`
	Phase Phase  `json:"phase"`
	Epoch int64  `json:"epoch,omitempty"`
	// PR is the pull request's URL; Branch the branch holding the failover commit (in branch
	// mode the only pointer), Commit that commit, or the merge that brought it in once merged.
	PR      string  `json:"pr,omitempty"`
	Branch  string  `json:"branch,omitempty"`
	Commit  string  `json:"commit,omitempty"`
	Checks  []Check `json:"checks,omitempty"`
	Message string  `json:"message,omitempty"`
	// Reason is the refusal's reason code when Phase is rejected (the DLQ's too).
	Reason string `json:"reason,omitempty"`
	// DryRun marks the answer to a dryRun request: Plan and Diff say what would be pushed.
	DryRun bool     `json:"dryRun,omitempty"`
	Plan   []string `json:"plan,omitempty"`
	Diff   string   `json:"diff,omitempty"`
	// Steps are actions the agent took on the way, with their outcome (promoting the standby's
	// database once merged).
	Steps []Step `json:"steps,omitempty"`
}

// Step is one action of a failover's follow-through and its outcome.
type Step struct {
	Name string `json:"name"`
	// Result is done, skipped or failed.
	Result string `json:"result"`
	Detail string `json:"detail,omitempty"`
}

// Step results.
const (
	StepDone    = "done"
	StepSkipped = "skipped"
	StepFailed  = "failed"
)

// Check is one preflight check's verdict in a status event.
type Check struct {
	Name string `json:"name"`
	// Result is pass, warn or fail, or forced when an emergency overrode a failure.
	Result   string `json:"result"`
	Evidence string `json:"evidence,omitempty"`
}

// Heartbeat is the data of a heartbeat event: what each agent knows of its site. Every field but
// Cluster and Role is optional, and readers ignore fields they do not know, so it can grow.
type Heartbeat struct {
	Cluster string `json:"cluster"`
	// Role is active or standby, as pair.yaml says at Epoch.
	Role         string `json:"role"`
	Epoch        int64  `json:"epoch"`
	AgentVersion string `json:"agentVersion,omitempty"`
	// MP is the management plane's health as this agent probes it.
	MP *MPHealth `json:"mp,omitempty"`
	// Kids maps a TSB secret's name to the kid it holds (signing key, JWKS).
	Kids map[string]string `json:"kids,omitempty"`
	// CAFingerprints are the SHA-256 fingerprints of the root CA certificates in use.
	CAFingerprints []string        `json:"caFingerprints,omitempty"`
	Postgres       *PostgresStatus `json:"postgres,omitempty"`
	// FluxRevision is the revision the cluster's Flux Kustomization last applied
	// (main@sha1:<hash>): how the peer learns that a merged failover reached this site.
	FluxRevision string `json:"fluxRevision,omitempty"`
}

// MPHealth is the management plane's health.
type MPHealth struct {
	Healthy bool   `json:"healthy"`
	Detail  string `json:"detail,omitempty"`
}

// PostgresStatus is the management plane database as this site sees it.
type PostgresStatus struct {
	// Role is primary, replica or shared.
	Role string `json:"role,omitempty"`
	LSN  string `json:"lsn,omitempty"`
	// LagSeconds is the replica's replay lag; nil when not a replica or unknown.
	LagSeconds *float64 `json:"lagSeconds,omitempty"`
	// SystemID is the server's system identifier (pg_control_system): equal on a primary and its
	// streaming replicas, so the peer can tell which server this site uses.
	SystemID string `json:"systemID,omitempty"`
	// LagBytes is the replica's WAL received but not yet replayed; nil when not a replica.
	LagBytes *int64 `json:"lagBytes,omitempty"`
	// ImportedAt is when the database was last replaced by a verified `mpha db sync`.
	ImportedAt *time.Time `json:"importedAt,omitempty"`
	// Replication is the site's part in mpha's logical replication (publisher or subscriber);
	// a subscriber's LagBytes and LagSeconds are its subscription's.
	Replication string `json:"replication,omitempty"`
}

// Rejected is the data of a rejected event on the dead-letter subject: which message an agent
// refused and why. It quotes no payload: Event, Subject and Detail are capped and scrubbed (see
// Reject), since whoever reads the DLQ may not be whoever could read the request.
type Rejected struct {
	// Event is the refused event's id, or its Nats-Msg-Id when it could not be decoded.
	Event   string `json:"event,omitempty"`
	Subject string `json:"subject"`
	// Reason is a RejectError reason code; Detail says what was wrong.
	Reason string `json:"reason"`
	Detail string `json:"detail"`
}
