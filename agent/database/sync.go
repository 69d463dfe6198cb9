package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/mpha-dev/mpha/agent/event"
	"github.com/mpha-dev/mpha/internal/pgcopy"
	"github.com/mpha-dev/mpha/internal/redact"
)

// StepSync names the database sync before a failover in status events.
const StepSync = "sync-database"

// SyncOptions configure the sync of independent databases before a failover
// (postgres.syncOnFailover). The target's agent runs it: Self is its database, the copy's target;
// Peer the active's, the copy's source.
type SyncOptions struct {
	// Topology as configured: Independent syncs; Auto syncs when Detect says independent (a
	// promoted replica and its old primary are independent too); any other skips.
	Topology   Topology
	Self, Peer string
	// Database is copied (default tsb); Jobs parallel streams (pgcopy's default).
	Database string
	Jobs     int
	// Retries bounds how often a target busy with a session is tried again, RetryDelay apart
	// (default 5 and 1s): the agents' own probes connect for a moment.
	Retries    int
	RetryDelay time.Duration
	Logger     *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

func (o *SyncOptions) defaults() {
	if o.Database == "" {
		o.Database = pgcopy.DefaultDatabase
	}
	if o.Retries <= 0 {
		o.Retries = 5
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// BeforeFailover is the failover's Prepare step for independent databases: it copies the
// active's database into this site's with pgcopy (a consistent snapshot, verified by checksums,
// the target replaced only once verified), so the new active starts from the active's data.
// pgcopy records the verified import on the target database, where the database check reads its
// age (maxImportAge) right after.
//
//	request    active's database   outcome
//	any        -                   skipped unless the topology is (detected) independent
//	planned    reachable           synced, or failed: the failover is refused
//	planned    unreachable         failed: the failover is refused
//	emergency  reachable           synced, or failed: refused unless force names database
//	emergency  unreachable         skipped: the last verified import's age is in the status
//
// It has failover.PrepareFunc's signature (assignable to it) without importing agent/failover.
func BeforeFailover(o SyncOptions) func(ctx context.Context, req event.FailoverRequest, from string) (event.Step, error) {
	o.defaults()
	return func(ctx context.Context, req event.FailoverRequest, from string) (event.Step, error) {
		self, peer := Describe(o.Self), Describe(o.Peer)
		source, perr := Probe(ctx, o.Peer)
		if o.Topology != Independent {
			target, err := Probe(ctx, o.Self)
			if err != nil {
				return o.failed(req, "this site's database: "+err.Error())
			}
			topology, err := o.topology(source, target)
			if err != nil {
				return o.failed(req, err.Error())
			}
			if topology != Independent {
				return event.Step{Name: StepSync, Result: event.StepSkipped,
					Detail: fmt.Sprintf("the databases are %s (%s, %s): nothing to copy", topology, peer, self)}, nil
			}
		}
		if perr != nil {
			if req.Mode == event.ModeEmergency {
				return event.Step{Name: StepSync, Result: event.StepSkipped, Detail: fmt.Sprintf(
					"the active's database (%s) is unreachable: %s; not copied: %s", from, perr.Error(), o.lastImport(ctx))}, nil
			}
			return o.failed(req, fmt.Sprintf("the active's database (%s) is unreachable: %s", from, perr.Error()))
		}
		res, err := o.sync(ctx)
		if err != nil {
			return o.failed(req, fmt.Sprintf("copying %s from %s into %s: %s", o.Database, peer, self, redact.String(err.Error())))
		}
		o.Logger.Info("synced the database before the failover", "from", peer, "to", self, "tables", len(res.Tables), "rows", res.Rows,
			"duration", res.Duration)
		return event.Step{Name: StepSync, Result: event.StepDone, Detail: fmt.Sprintf(
			"copied %s from %s (%s) into %s and verified it: %d tables, %d rows, row counts and checksums equal, in %s; source system %s at LSN %s",
			o.Database, peer, from, self, len(res.Tables), res.Rows, res.Duration.Round(time.Millisecond), res.Source.SystemID, res.Source.LSN)}, nil
	}
}

// topology is the configured topology, or the detected one for Auto; an unreachable active
// (source nil) with a primary here is independent.
func (o *SyncOptions) topology(source, target *Server) (Topology, error) {
	if o.Topology != Auto && o.Topology != "" {
		return o.Topology, nil
	}
	return Detect(source, target)
}

// sync runs pgcopy, trying again while the target has a session (ErrBusy): pgcopy refuses
// rather than end sessions, and the standby's MP is at 0, so a session is a passing probe.
func (o *SyncOptions) sync(ctx context.Context) (*pgcopy.Result, error) {
	for attempt := 1; ; attempt++ {
		res, err := pgcopy.Sync(ctx, o.Peer, o.Self, pgcopy.Options{Database: o.Database, Jobs: o.Jobs, Logger: o.Logger, Now: o.Now})
		if err == nil || !errors.Is(err, pgcopy.ErrBusy) || attempt >= o.Retries {
			return res, err
		}
		o.Logger.Info("the target database is busy; trying the sync again", "attempt", attempt, "error", redact.String(err.Error()))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(o.RetryDelay):
		}
	}
}

// lastImport says what this site's database holds instead: its last verified import and age.
func (o *SyncOptions) lastImport(ctx context.Context) string {
	rec, err := importRecord(ctx, o.Self, o.Database)
	switch {
	case errors.Is(err, pgcopy.ErrNoRecord):
		return Describe(o.Self) + " was never replaced by a verified import"
	case err != nil:
		return "the last import into " + Describe(o.Self) + " is unknown: " + redact.String(err.Error())
	}
	return fmt.Sprintf("%s keeps its last verified import, of %s (%s), from system %s at LSN %s",
		Describe(o.Self), ago(o.Now().Sub(rec.At)), rec.At.Format(time.RFC3339), rec.Source.SystemID, rec.Source.LSN)
}

// failed ends the step as failed: the failover stops, unless it is an emergency that forces the
// database check, which then goes on with this site's database as it is.
func (o *SyncOptions) failed(req event.FailoverRequest, detail string) (event.Step, error) {
	step := event.Step{Name: StepSync, Result: event.StepFailed, Detail: detail}
	if req.Mode == event.ModeEmergency && slices.Contains(req.Force, CheckName) {
		step.Detail += "; the emergency forces the database check: going on with this site's database as it is"
		return step, nil
	}
	return step, errors.New(detail)
}
