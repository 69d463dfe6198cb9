// Package pgcopy copies one PostgreSQL database into another server: a consistent snapshot of
// the source (REPEATABLE READ, exported to every stream), the schema recreated from the catalog,
// the rows in parallel binary COPY streams, then a verification that reads the target back. The
// copy is built in a new database that replaces the target by a rename only once verified, so an
// error at any step leaves the target as it was. It imports only pgx and internal/redact.
package pgcopy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/mpha-dev/mpha/internal/redact"
)

// Decisions a caller may want to tell apart.
var (
	// ErrInRecovery: the target server is a standby; writing into it is refused.
	ErrInRecovery = errors.New("the target server is in recovery (a standby)")
	// ErrBusy: sessions are connected to the target database and Force is not set.
	ErrBusy = errors.New("the target database has active sessions")
	// ErrMismatch: the target read back differs from the source; the target was not replaced.
	ErrMismatch = errors.New("verification failed")
	// ErrSameDatabase: the source and the target are one server, so one database (the name is
	// the same on both sides); refused even with Force, before the target is touched.
	ErrSameDatabase = errors.New("the source and the target are the same database")
)

// DefaultDatabase is TSB's database (dataStore.postgres.name).
const DefaultDatabase = "tsb"

// Options configure a Sync.
type Options struct {
	// Database is the database copied, on both servers (default tsb). The DSNs name the servers
	// and the credentials; their database names are ignored.
	Database string
	// Jobs is the number of parallel streams (default 4).
	Jobs int
	// ChunkSize, when set, splits a table larger than this, and far larger than the rest, into
	// page ranges copied in parallel (default 0: no split). A split pays only where both servers
	// have cores to spare for several COPYs of one table: each range goes through COPY's query
	// form and loads without FREEZE. On 2 cores, splitting made a 1 GiB copy 26% slower
	// (bench/results).
	ChunkSize int64
	// Force terminates the sessions connected to the target database instead of refusing.
	Force bool
	// ReadBack verifies by reading every loaded table back through the client and comparing it
	// with the rows sent, besides the servers' own digests (slower: the target sends its whole
	// database once more).
	ReadBack bool
	// SchemaOnly recreates the schema (tables, indexes, constraints, sequences with their values,
	// views, triggers, grants) without the rows, and records no import: the target of a logical
	// replication subscription, whose initial copy brings the rows (internal/pgrepl).
	SchemaOnly bool
	// Progress, when set, is called about once a second and at each phase.
	Progress func(Progress)
	// ProgressInterval is how often Progress is called during a phase (default 1s).
	ProgressInterval time.Duration
	Logger           *slog.Logger
	// Now is the clock of the import record (default time.Now).
	Now func() time.Time
}

func (o *Options) defaults() {
	if o.Database == "" {
		o.Database = DefaultDatabase
	}
	if o.Jobs <= 0 {
		o.Jobs = 4
	}
	if o.ProgressInterval <= 0 {
		o.ProgressInterval = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Progress is how far a Sync got.
type Progress struct {
	// Phase is schema, data (tables still copying; others already indexing or verifying),
	// indexes, verify, constraints, swap, done.
	Phase              string
	Tables, TablesDone int
	Rows, Bytes        int64
	Elapsed            time.Duration
}

// Result is what a Sync copied and verified.
type Result struct {
	Database string
	// Source identifies the snapshot: the server's system identifier and its WAL position.
	Source Origin
	Tables []TableResult
	// Rows and Bytes (binary COPY stream) over all tables.
	Rows, Bytes int64
	At          time.Time
	// Duration runs until the copy replaced the target; Total also counts the drop of the
	// replaced database after (the cleanup phase).
	Duration, Total time.Duration
	// Warnings are what was not carried over (a grant to a role the target lacks).
	Warnings []string
	// Phases are where the time went, in order: schema, copy, indexes, verify, constraints,
	// publish, cleanup.
	Phases []Phase
}

// Phase is how long one step of a Sync took. Copy, indexes and verify overlap (each table goes
// through them while others are still copying): Wall runs from the step's first task's start to
// its last one's end, and Busy adds its tasks' times up over all streams.
type Phase struct {
	Name       string
	Wall, Busy time.Duration
}

func (p Phase) String() string {
	s := fmt.Sprintf("%s %.1fs", p.Name, p.Wall.Seconds())
	if p.Busy > p.Wall+p.Wall/20 {
		s += fmt.Sprintf(" (busy %.1fs)", p.Busy.Seconds())
	}
	return s
}

// PhaseSummary is the phases on one line.
func (r *Result) PhaseSummary() string {
	parts := make([]string, len(r.Phases))
	for i, p := range r.Phases {
		parts[i] = p.String()
	}
	return strings.Join(parts, ", ")
}

// timings collects the phases' spans; tasks of several streams add to the same phase.
type timings struct {
	mu    sync.Mutex
	spans map[string]*span
}

type span struct {
	first, last time.Time
	busy        time.Duration
}

func (t *timings) add(name string, start, end time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.spans == nil {
		t.spans = map[string]*span{}
	}
	sp, ok := t.spans[name]
	if !ok {
		sp = &span{first: start, last: end}
		t.spans[name] = sp
	}
	sp.first, sp.last = minTime(sp.first, start), maxTime(sp.last, end)
	sp.busy += end.Sub(start)
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// phases lists the spans in the pipeline's order.
func (t *timings) phases() []Phase {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []Phase
	for _, name := range []string{"schema", kindCopy, kindIndex, kindVerify, "constraints", "publish", "cleanup"} {
		if sp, ok := t.spans[name]; ok {
			out = append(out, Phase{Name: name, Wall: sp.last.Sub(sp.first), Busy: sp.busy})
		}
	}
	return out
}

// Origin identifies where and when a copy was taken.
type Origin struct {
	SystemID string `json:"systemID,omitempty"`
	LSN      string `json:"lsn,omitempty"`
}

// TableResult is one table's verified copy.
type TableResult struct {
	Name     string
	Rows     int64
	Bytes    int64
	Checksum string
}

// Sync copies opts.Database from the server of from into the server of to (libpq DSNs) and
// verifies it. The target database is replaced only after the copy is verified.
func Sync(ctx context.Context, from, to string, opts Options) (*Result, error) {
	opts.defaults()
	src, err := connConfig(from, opts.Database)
	if err != nil {
		return nil, fmt.Errorf("source: %w", err)
	}
	dst, err := connConfig(to, opts.Database)
	if err != nil {
		return nil, fmt.Errorf("target: %w", err)
	}
	s := &syncer{opts: opts, keys: newKeys(), seed: newSeed(), src: src, dst: dst, start: time.Now()}
	res, err := s.run(ctx)
	return res, redact.Error(err)
}

func connConfig(dsn, db string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parsing the DSN: %w", redact.Error(err))
	}
	cfg.Database = db
	cfg.RuntimeParams["application_name"] = "mpha-db-sync"
	for k, v := range textSettings {
		cfg.RuntimeParams[k] = v
	}
	return cfg, nil
}

// syncer is one Sync's state.
type syncer struct {
	opts     Options
	keys     keys
	seed     seed
	src, dst *pgx.ConnConfig
	start    time.Time

	phase      atomic.Value // string
	tables     int
	tablesDone atomic.Int64
	rows       atomic.Int64
	bytes      atomic.Int64
	mu         sync.Mutex
	warnings   []string
	timings    timings
}

func (s *syncer) run(ctx context.Context) (*Result, error) {
	// The source first: it must answer, be another server than the target, and hold only what
	// the copy can make, before anything on the target is touched (its lock, its leftovers).
	s.setPhase("schema")
	schemaStart := time.Now()
	marker := "mpha-db-sync source " + randomSuffix() + randomSuffix()
	srcCfg := s.src.Copy()
	srcCfg.RuntimeParams["application_name"] = marker
	var (
		srcConn, admin   *pgx.Conn
		srcErr, adminErr error
		wg               sync.WaitGroup
	)
	wg.Go(func() { srcConn, srcErr = connect(ctx, srcCfg, "") })
	wg.Go(func() { admin, adminErr = connect(ctx, s.dst, "postgres") })
	wg.Wait()
	for _, c := range []*pgx.Conn{srcConn, admin} {
		if c != nil {
			defer c.Close(context.Background())
		}
	}
	if srcErr != nil { // the source's failure first, whatever the target's
		return nil, fmt.Errorf("connecting to the source: %w", srcErr)
	}
	if adminErr != nil {
		return nil, fmt.Errorf("connecting to the target server: %w", adminErr)
	}
	if err := sameServer(ctx, admin, marker, s.opts.Database); err != nil {
		return nil, err
	}
	snap, err := openSnapshot(ctx, srcConn)
	if err != nil {
		return nil, err
	}
	defer snap.tx.Rollback(context.Background())
	if err := refuseUnsupported(ctx, snap.tx); err != nil {
		return nil, err
	}

	// The source is fit. Its schema is read while the target is made ready and every stream
	// connects: connections and CREATE DATABASE cost round trips, not the servers' work.
	var (
		sc      *schema
		tgt     *target
		streams []pgx.Tx
		conns   []*pgx.Conn
	)
	tmp := s.opts.Database + "_mpha_" + randomSuffix()
	created := false
	defer func() {
		for _, tx := range streams {
			tx.Rollback(context.Background())
			tx.Conn().Close(context.Background())
		}
		closeAll(conns)
	}()
	s.mark("source checked")
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		sc, err = readSchema(gctx, snap.tx)
		s.mark("schema read")
		return err
	})
	g.Go(func() (err error) {
		streams, err = s.sourceStreams(gctx, snap)
		s.mark("source streams open")
		return err
	})
	g.Go(func() (err error) {
		if tgt, err = s.prepareTarget(gctx, admin, snap, tmp); err != nil {
			return err
		}
		s.mark("target ready")
		created = true
		conns, err = s.targetConns(gctx, tmp)
		s.mark("target streams open")
		return err
	})
	if err := g.Wait(); err != nil {
		if created {
			dropDatabase(admin, tmp, s.opts.Logger)
		}
		if tgt != nil {
			tgt.restore(admin, s.opts.Database, snap.locale, s.opts.Logger)
		}
		return nil, err
	}
	s.tables = len(sc.Tables)

	stop := s.report(ctx)
	states, err := s.build(ctx, sc, streams, conns, tgt, schemaStart)
	stop()
	closeAll(conns)
	conns = nil
	publish := time.Now()
	if err == nil {
		err = s.record(ctx, admin, tmp, snap, tgt)
	}
	var old string
	if err == nil {
		s.setPhase("swap")
		old, err = swap(ctx, admin, s.opts.Database, tmp, tgt.exists, s.opts.Force)
	}
	if err != nil {
		dropDatabase(admin, tmp, s.opts.Logger)
		tgt.restore(admin, s.opts.Database, snap.locale, s.opts.Logger)
		return nil, err
	}
	s.timings.add("publish", publish, time.Now())
	published := time.Now()
	if old != "" {
		// After the copy is in place: DROP DATABASE waits for a checkpoint, which writes out
		// what the load left in the buffers.
		s.setPhase("cleanup")
		if _, err := admin.Exec(ctx, dropDatabaseSQL(old)); err != nil {
			s.warn(fmt.Sprintf("the replaced database %s could not be dropped; drop it by hand: %v", old, redact.Error(err)))
		}
		s.timings.add("cleanup", published, time.Now())
	}
	s.setPhase("done")
	s.emit()
	res := s.result(sc, states, snap.origin, published)
	s.opts.Logger.Info("db sync done", "database", res.Database, "tables", len(res.Tables), "rows", res.Rows,
		"bytes", res.Bytes, "seconds", res.Duration.Seconds(), "phases", res.PhaseSummary())
	return res, nil
}

// prepareTarget inspects the target, refuses one it must not replace, takes the sync's lock,
// drops the leftovers of killed syncs and an existing but empty target (before the load, while
// the checkpoint its drop waits for has little to write), and creates the database tmp the copy
// is built in. After a failure it returns the target as found, if it got that far.
func (s *syncer) prepareTarget(ctx context.Context, admin *pgx.Conn, snap *snapshot, tmp string) (*target, error) {
	tgt, err := inspectTarget(ctx, admin, s.opts.Database)
	if err != nil {
		return nil, err
	}
	if err := tgt.refusal(s.opts.Force); err != nil {
		return nil, err
	}
	if err := lockTarget(ctx, admin, s.opts.Database); err != nil {
		return nil, err
	}
	warnings, err := dropLeftovers(ctx, admin, s.opts.Database, s.opts.Logger)
	if err != nil {
		return nil, err
	}
	for _, w := range warnings {
		s.warn(w)
	}
	// From here on a failure returns the target too: restore makes an empty one dropped again.
	if err := tgt.dropIfEmpty(ctx, admin, s.opts.Database, s.opts.Force); err != nil {
		return tgt, err
	}
	if err := tgt.adoptOwner(ctx, admin, snap.owner); err != nil {
		return tgt, err
	}
	if err := createDatabase(ctx, admin, tmp, tgt.owner, snap.locale); err != nil {
		return tgt, err
	}
	return tgt, nil
}

// sourceStreams opens one connection per stream, at once, each in the snapshot.
func (s *syncer) sourceStreams(ctx context.Context, snap *snapshot) ([]pgx.Tx, error) {
	txs := make([]pgx.Tx, s.opts.Jobs)
	g, ctx := errgroup.WithContext(ctx)
	for i := range txs {
		g.Go(func() error {
			c, err := connect(ctx, s.src, "")
			if err != nil {
				return fmt.Errorf("connecting a source stream: %w", err)
			}
			if txs[i], err = snap.join(ctx, c); err != nil {
				c.Close(context.Background())
				return err
			}
			return nil
		})
	}
	err := g.Wait()
	var out []pgx.Tx
	for _, tx := range txs {
		if tx == nil {
			continue
		}
		if err != nil {
			tx.Rollback(context.Background())
			tx.Conn().Close(context.Background())
			continue
		}
		out = append(out, tx)
	}
	return out, err
}

// build makes the copy in the new database (conns) and verifies it; it returns each table's
// counts and digests.
func (s *syncer) build(ctx context.Context, sc *schema, streams []pgx.Tx, conns []*pgx.Conn, tgt *target, schemaStart time.Time) (map[string]*tableState, error) {
	if err := execBatch(ctx, conns[0], sc.preData()); err != nil {
		return nil, fmt.Errorf("creating the schema: %w", err)
	}
	s.mark("schema created")
	s.timings.add("schema", schemaStart, time.Now())
	s.setPhase("data")
	states, err := s.runPipeline(ctx, sc, streams, conns)
	if err != nil {
		return nil, err
	}
	s.setPhase("constraints")
	start := time.Now()
	if err := setSequences(ctx, conns[0], sc.Sequences); err != nil {
		return nil, err
	}
	if err := s.postData(ctx, sc, conns, tgt.owner); err != nil {
		return nil, err
	}
	s.timings.add("constraints", start, time.Now())
	return states, nil
}

func (s *syncer) targetConns(ctx context.Context, db string) ([]*pgx.Conn, error) {
	conns := make([]*pgx.Conn, s.opts.Jobs)
	g, ctx := errgroup.WithContext(ctx)
	for i := range conns {
		g.Go(func() error {
			c, err := connect(ctx, s.dst, db)
			if err != nil {
				return fmt.Errorf("connecting to the new database: %w", err)
			}
			conns[i] = c
			// Durable enough: the rename that publishes the copy commits synchronously, which
			// flushes the WAL of everything before it. Function bodies may name tables made later.
			if _, err := c.Exec(ctx, "SET synchronous_commit = off; SET maintenance_work_mem = '256MB'; SET check_function_bodies = off"); err != nil {
				return fmt.Errorf("setting up a target session: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close(context.Background())
			}
		}
		return nil, err
	}
	return conns, nil
}

// connect opens a connection with an empty search_path, so that every name the catalog
// functions print is qualified and every name executed is read as qualified. db overrides the
// config's database unless empty.
func connect(ctx context.Context, cfg *pgx.ConnConfig, db string) (*pgx.Conn, error) {
	c := cfg.Copy()
	if db != "" {
		c.Database = db
	}
	c.RuntimeParams["search_path"] = ""
	conn, err := pgx.ConnectConfig(ctx, c)
	if err != nil {
		return nil, redact.Error(err)
	}
	return conn, nil
}

func closeAll(conns []*pgx.Conn) {
	for _, c := range conns {
		c.Close(context.Background())
	}
}

func execAll(ctx context.Context, c *pgx.Conn, stmts []string) error {
	for _, q := range stmts {
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", abbreviate(q), err)
		}
	}
	return nil
}

// execBatch runs stmts in one round trip (one implicit transaction); when that fails it runs
// them one by one to name the statement that fails.
func execBatch(ctx context.Context, c *pgx.Conn, stmts []string) error {
	if len(stmts) == 0 {
		return nil
	}
	if _, err := c.Exec(ctx, strings.Join(stmts, ";\n")); err == nil {
		return nil
	}
	return execAll(ctx, c, stmts)
}

// abbreviate keeps error messages to the start of a statement.
func abbreviate(q string) string {
	if len(q) > 120 {
		return q[:120] + "..."
	}
	return q
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// mark logs (debug) when a step of the set-up ended, for a trace of where the time goes.
func (s *syncer) mark(step string) {
	s.opts.Logger.Debug("db sync step", "step", step, "at", time.Since(s.start).Seconds())
}

func (s *syncer) setPhase(p string) {
	s.phase.Store(p)
	s.emit()
}

func (s *syncer) warn(msg string) {
	s.mu.Lock()
	s.warnings = append(s.warnings, msg)
	s.mu.Unlock()
	s.opts.Logger.Warn("db sync", "warning", msg)
}

func (s *syncer) emit() {
	if s.opts.Progress == nil {
		return
	}
	phase, _ := s.phase.Load().(string)
	s.opts.Progress(Progress{Phase: phase, Tables: s.tables, TablesDone: int(s.tablesDone.Load()),
		Rows: s.rows.Load(), Bytes: s.bytes.Load(), Elapsed: time.Since(s.start)})
}

// report calls Progress every interval until the returned stop is called.
func (s *syncer) report(ctx context.Context) (stop func()) {
	if s.opts.Progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.opts.ProgressInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				s.emit()
			}
		}
	}()
	return func() { cancel(); <-done }
}

func (s *syncer) result(sc *schema, states map[string]*tableState, origin Origin, published time.Time) *Result {
	r := &Result{Database: s.opts.Database, Source: origin, At: s.opts.Now().UTC(), Duration: published.Sub(s.start),
		Total: time.Since(s.start), Warnings: s.warnings, Phases: s.timings.phases()}
	for _, t := range sc.Tables {
		st := states[t.Name]
		r.Tables = append(r.Tables, TableResult{Name: t.Name, Rows: st.loaded, Bytes: st.bytes, Checksum: st.source.String()})
		r.Rows += st.loaded
		r.Bytes += st.bytes
	}
	return r
}
