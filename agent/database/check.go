package database

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/pgrepl"
	"github.com/mpha-dev/mpha/internal/redact"
)

// CheckName is the preflight check's name (docs/design.md §7).
const CheckName = "database"

// Check results.
const (
	pass = "pass"
	warn = "warn"
	fail = "fail"
)

// CheckOptions configure the database check, run by the standby's agent (the failover target).
type CheckOptions struct {
	// Topology as configured; Auto detects it.
	Topology Topology
	// Self is this site's DSN (the standby's MP database); Peer the active's, "" when this agent
	// has none. The active's database may be unreachable: then Peer's facts come from PeerStatus.
	Self, Peer string
	PeerStatus PeerStatus
	// Active is the active cluster, whose heartbeat PeerStatus reads (Preflight sets it to the
	// failover's from).
	Active string
	// MaxLag and MaxLagBytes bound a streaming replica's lag; MaxImportAge the age of the last
	// verified import (independent) or of the last tsb-restore run (embedded).
	MaxLag       time.Duration
	MaxLagBytes  int64
	MaxImportAge time.Duration
	// Subscription, with replication logical, is this site's subscription to the active's
	// database (SubscriptionName), read as Subscriber (default Self): its lag is the RPO.
	Subscription, Subscriber string
	// LastRestore reports the embedded topology's last successful tsb-restore run (RestoreJob).
	LastRestore func(ctx context.Context) (time.Time, error)
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Preflight is the database check as a failover preflight source: Preflight(opts).Run checks
// with the failover's from as the active. It satisfies failover.Preflight without importing it:
// the failover uses the database check, never the other way round.
type Preflight CheckOptions

// Run runs Check for a failover from the cluster from.
func (p Preflight) Run(ctx context.Context, from, _ string) ([]event.Check, error) {
	o := CheckOptions(p)
	o.Active = from
	return []event.Check{Check(ctx, o)}, nil
}

// Check judges whether the standby's database holds the active's data within the RPO. It never
// errs: whatever cannot be read fails the check, with what was tried as evidence.
func Check(ctx context.Context, o CheckOptions) event.Check {
	if o.Now == nil {
		o.Now = time.Now
	}
	result, evidence := o.judge(ctx)
	return event.Check{Name: CheckName, Result: result, Evidence: evidence}
}

func (o *CheckOptions) judge(ctx context.Context) (string, string) {
	if o.Topology == Embedded {
		return o.embedded(ctx)
	}
	if o.Self == "" {
		return warn, "no DSN for this site's database is configured (postgres.dsnSecret): not checked"
	}
	self, err := Probe(ctx, o.Self)
	if err != nil {
		return fail, "this site's database: " + err.Error()
	}
	var peer *Server
	var peerNote string
	if o.Peer != "" {
		if peer, err = Probe(ctx, o.Peer); err != nil {
			peerNote = "the active's database: " + err.Error()
		}
	}
	topology := o.Topology
	if topology == Auto || topology == "" {
		if topology, err = Detect(peer, self); err != nil {
			return fail, err.Error()
		}
	}
	switch topology {
	case Shared:
		return o.shared(self, peer, peerNote)
	case Streaming:
		return o.streaming(ctx, self, peer, peerNote)
	case Independent:
		if o.Subscription != "" {
			return o.logical(ctx, self, peer, peerNote)
		}
		return o.independent(ctx, self, peer)
	}
	return fail, fmt.Sprintf("unknown topology %q", topology)
}

func (o *CheckOptions) shared(self, peer *Server, peerNote string) (string, string) {
	if peer == nil {
		if peerNote == "" {
			peerNote = "no DSN for the active's database"
		}
		return warn, fmt.Sprintf("shared database (configured): %s answers as a primary (system %s); cannot compare with the active's (%s)",
			self.Name, self.SystemID, peerNote)
	}
	if t, err := Detect(peer, self); err != nil || t != Shared {
		return fail, fmt.Sprintf("configured as shared, but %s (system %s) and %s (system %s) are not one server",
			peer.Name, peer.SystemID, self.Name, self.SystemID)
	}
	return pass, fmt.Sprintf("shared database: both MPs use %s (system %s, database %s); nothing to copy", self.Name, self.SystemID, self.Database)
}

func (o *CheckOptions) streaming(ctx context.Context, self, peer *Server, peerNote string) (string, string) {
	if !self.InRecovery {
		return fail, fmt.Sprintf("%s is configured as a streaming replica but is a primary (promoted already?)", self.Name)
	}
	activeLSN, from := "", ""
	switch {
	case peer != nil:
		activeLSN, from = peer.LSN, "the active's server "+peer.Name
	case o.PeerStatus != nil:
		st, at, err := o.PeerStatus(ctx, o.Active)
		switch {
		case err != nil:
			peerNote = joinNote(peerNote, "its heartbeat: "+err.Error())
		case st.LSN == "":
			peerNote = joinNote(peerNote, "its heartbeat reports no LSN")
		default:
			activeLSN, from = st.LSN, "the active's heartbeat of "+ago(o.Now().Sub(at))
		}
	}
	receiver := "the WAL receiver is streaming"
	if !self.Receiving {
		receiver = "the WAL receiver is NOT streaming"
	}
	if activeLSN == "" {
		return fail, fmt.Sprintf("streaming replica %s replayed %s (%s), but the active's WAL position is unknown: %s",
			self.Name, self.LSN, receiver, peerNote)
	}
	lag, err := MeasureLag(self, activeLSN)
	if err != nil {
		return fail, err.Error()
	}
	evidence := fmt.Sprintf("streaming replica %s is %s, per %s; %s; limits %s and %s",
		self.Name, lag, from, receiver, FormatBytes(o.MaxLagBytes), o.MaxLag)
	if lag.Bytes > o.MaxLagBytes || lag.Seconds > o.MaxLag.Seconds() {
		return fail, "lag over the RPO: " + evidence
	}
	if lag.Seconds < 0 {
		// A replica that has replayed no transaction since it started (freshly cloned from an
		// idle primary) has no replay time: the bytes alone judge it, and it is not a pass.
		return warn, "lag in seconds unknown, within the bytes limit: " + evidence
	}
	if !self.Receiving {
		return warn, evidence
	}
	return pass, evidence
}

func (o *CheckOptions) independent(ctx context.Context, self, peer *Server) (string, string) {
	rec, err := importRecord(ctx, o.Self, self.Database)
	if errors.Is(err, pgcopy.ErrNoRecord) {
		return fail, fmt.Sprintf("independent databases: %s was never replaced by a verified `mpha db sync`", self.Name)
	}
	if err != nil {
		return fail, err.Error()
	}
	age := o.Now().Sub(rec.At)
	evidence := fmt.Sprintf("independent databases: the last verified import into %s was %s (%s), from system %s at %s, %d tables, %d rows; limit %s",
		self.Name, ago(age), rec.At.Format(time.RFC3339), rec.Source.SystemID, rec.Source.LSN, rec.Tables, rec.Rows, o.MaxImportAge)
	switch {
	case peer != nil && rec.Source.SystemID != "" && rec.Source.SystemID != peer.SystemID:
		return fail, fmt.Sprintf("%s; but the active's server %s is system %s: imported from elsewhere", evidence, peer.Name, peer.SystemID)
	case !rec.Verified || age > o.MaxImportAge:
		return fail, "import older than the RPO: " + evidence
	}
	return pass, evidence
}

// logical judges a logical subscriber's lag: measured on the active's slot when its server
// answers, else from its last heartbeat's WAL position against what the subscription received.
func (o *CheckOptions) logical(ctx context.Context, self, peer *Server, peerNote string) (string, string) {
	subscriber := o.Subscriber
	if subscriber == "" {
		subscriber = o.Self
	}
	sub, err := pgrepl.ReadSubscription(ctx, subscriber, o.Subscription)
	switch {
	case err != nil:
		return fail, "this site's subscription: " + redact.String(err.Error())
	case !sub.Exists:
		return fail, fmt.Sprintf("logical replication: %s has no subscription %s yet (the standby's agent subscribes once the active publishes)", self.Name, o.Subscription)
	case !sub.Synced:
		return fail, fmt.Sprintf("logical replication: subscription %s on %s has not finished its initial copy (%d tables)", o.Subscription, self.Name, len(sub.Tables))
	}
	var lag Lag
	var from string
	if peer != nil {
		l, err := pgrepl.MeasureLag(ctx, o.Peer, subscriber, o.Subscription)
		if err != nil {
			return fail, fmt.Sprintf("logical replication: the active's server %s: %s", peer.Name, redact.String(err.Error()))
		}
		lag, from = Lag{Bytes: l.Bytes, Seconds: l.Seconds}, "its slot on the active's server "+peer.Name
	} else {
		st, at, err := o.heartbeatStatus(ctx)
		if err != nil {
			return fail, fmt.Sprintf("logical replication: the active's WAL position is unknown: %s", joinNote(peerNote, err.Error()))
		}
		received := sub.ReceivedLSN
		if received == "" {
			received = "0/0"
		}
		fake := &Server{LSN: received, Now: o.Now(), ReplayedAt: sub.LastMessage}
		if lag, err = MeasureLag(fake, st.LSN); err != nil {
			return fail, err.Error()
		}
		from = "what it received against the active's heartbeat of " + ago(o.Now().Sub(at))
	}
	worker := "its apply worker is streaming"
	if !sub.Streaming {
		worker = "its apply worker is NOT running"
	}
	evidence := fmt.Sprintf("logical subscription %s on %s is %s behind (%.1f s), per %s; %d tables; %s; limits %s and %s",
		o.Subscription, self.Name, FormatBytes(lag.Bytes), max(lag.Seconds, 0), from, len(sub.Tables), worker, FormatBytes(o.MaxLagBytes), o.MaxLag)
	switch {
	case lag.Bytes > o.MaxLagBytes || lag.Seconds > o.MaxLag.Seconds():
		return fail, "lag over the RPO: " + evidence
	case !sub.Streaming:
		return warn, evidence
	}
	return pass, evidence
}

// heartbeatStatus is the active's Postgres facts from its last heartbeat, with a WAL position.
func (o *CheckOptions) heartbeatStatus(ctx context.Context) (*event.PostgresStatus, time.Time, error) {
	if o.PeerStatus == nil {
		return nil, time.Time{}, errors.New("no heartbeat reader")
	}
	st, at, err := o.PeerStatus(ctx, o.Active)
	switch {
	case err != nil:
		return nil, at, fmt.Errorf("its heartbeat: %w", err)
	case st.LSN == "":
		return nil, at, errors.New("its heartbeat reports no LSN")
	}
	return st, at, nil
}

func (o *CheckOptions) embedded(ctx context.Context) (string, string) {
	if o.LastRestore == nil {
		return warn, "embedded Postgres: the tsb-restore CronJob is not watched: not checked"
	}
	at, err := o.LastRestore(ctx)
	if err != nil {
		return fail, "embedded Postgres: " + err.Error()
	}
	age := o.Now().Sub(at)
	evidence := fmt.Sprintf("embedded Postgres: the last successful tsb-restore run was %s (%s); limit %s", ago(age), at.Format(time.RFC3339), o.MaxImportAge)
	if age > o.MaxImportAge {
		return fail, "restore older than the RPO: " + evidence
	}
	return pass, evidence
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}
