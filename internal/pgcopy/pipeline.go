package pgcopy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The kinds of work in the pipeline. copy, indexes and verify are also the names of their
// phases; a source digest is timed with verify.
const (
	kindCopy   = "copy"
	kindIndex  = "indexes"
	kindVerify = "verify"
	kindDigest = "source digest"
)

// verifyRange is about the least a stream reads back of a table split over several streams
// (or the chunk size, when smaller).
const verifyRange = 32 << 20

// work is one task of the pipeline, run on one stream: a chunk to copy, an index to build, a
// table to digest on the source (in the snapshot) or on the target, or a range of the new table to
// read back.
type work struct {
	kind     string
	t        *table
	c        chunk  // copy
	sql      string // index
	readBack bool   // verify: read a range back through the client instead of the target's digest
	where    string // read-back: a page range of the new table, or "" for all of it
	size     int64  // bytes, to run the large work first
}

// tableState is how far one table got through the pipeline.
type tableState struct {
	copyLeft, verifyLeft int
	// sent and loaded are the rows COPY counted out of the source and into the target.
	sent, loaded, bytes int64
	// source and target are the servers' own digests.
	source, target *serverDigest
	// stream and readBack are the client's digests of the rows sent and read back (ReadBack).
	stream, readBack Digest
	checked          bool
}

// pipeline runs each table through copy, then its index builds and its verification side by
// side, while other tables are still copying: a table's indexes and digest need only its own
// rows, and nothing changes the rows after they are loaded (the keys, foreign keys and triggers
// come after, and read or add no rows). The source digests every table in the snapshot
// meanwhile. So the streams stay busy until the last table is done, instead of waiting at the
// end of each phase for the slowest stream.
type pipeline struct {
	s     *syncer
	src   []pgx.Tx
	dst   []*pgx.Conn
	mu    sync.Mutex
	cond  *sync.Cond
	ready []work
	left  map[string]int // queued or running, by kind
	err   error
	state map[*table]*tableState
	bad   []string
}

// runPipeline copies, indexes and verifies every table on one source stream (in the snapshot)
// and one target connection per worker; it returns each table's digest.
func (s *syncer) runPipeline(ctx context.Context, sc *schema, streams []pgx.Tx, conns []*pgx.Conn) (map[string]*tableState, error) {
	p := &pipeline{s: s, src: streams, dst: conns, left: map[string]int{}, state: map[*table]*tableState{}}
	p.cond = sync.NewCond(&p.mu)
	for _, t := range sc.Tables {
		if s.opts.SchemaOnly { // the indexes only: nothing to copy or verify
			p.state[t] = &tableState{checked: true, source: &serverDigest{}}
			for _, q := range t.Indexes {
				p.push(work{kind: kindIndex, t: t, sql: q, size: t.Size})
			}
			continue
		}
		p.state[t] = &tableState{verifyLeft: 1}
		// Off the critical path (the target's copy, indexes and digest are on it): after every
		// copy, beside the index builds, where it slows no copy down.
		p.push(work{kind: kindDigest, t: t, size: t.Size})
	}
	for _, c := range sc.chunks(s.opts.ChunkSize, len(conns)) {
		if s.opts.SchemaOnly {
			break
		}
		p.state[c.t].copyLeft++
		p.push(work{kind: kindCopy, t: c.t, c: c, size: c.size})
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { p.fail(ctx.Err()) })
	defer stop()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() { p.worker(ctx, cancel, w) })
	}
	wg.Wait()
	if p.err != nil {
		return nil, p.err
	}
	if len(p.bad) > 0 {
		slices.Sort(p.bad)
		return nil, fmt.Errorf("%w: %s", ErrMismatch, strings.Join(p.bad, "; "))
	}
	out := make(map[string]*tableState, len(p.state))
	for t, st := range p.state {
		if !st.checked {
			return nil, fmt.Errorf("%w: %s was not verified", ErrMismatch, t.Name)
		}
		out[t.Name] = st
	}
	return out, nil
}

// push queues w; the caller holds mu or runs before the workers start.
func (p *pipeline) push(w work) {
	p.ready = append(p.ready, w)
	p.left[w.kind]++
}

func (p *pipeline) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.cond.Broadcast()
	p.mu.Unlock()
}

// next takes the best ready work (better); false when all
// is done or the pipeline failed.
func (p *pipeline) next() (work, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.ready) == 0 && p.err == nil && p.busy() {
		p.cond.Wait()
	}
	if p.err != nil || len(p.ready) == 0 {
		return work{}, false
	}
	i := 0
	for j, w := range p.ready[1:] {
		if better(w, p.ready[i]) {
			i = j + 1
		}
	}
	w := p.ready[i]
	p.ready = slices.Delete(p.ready, i, i+1)
	return w, true
}

// better: copies first, largest first; then the other work, largest first.
func better(a, b work) bool {
	if (a.kind == kindCopy) != (b.kind == kindCopy) {
		return a.kind == kindCopy
	}
	return a.size > b.size
}

func (p *pipeline) busy() bool {
	for _, n := range p.left {
		if n > 0 {
			return true
		}
	}
	return false
}

func (p *pipeline) worker(ctx context.Context, cancel context.CancelFunc, w int) {
	for {
		job, ok := p.next()
		if !ok {
			return
		}
		start := time.Now()
		var (
			err error
			cr  copied
			d   Digest
			sd  serverDigest
		)
		switch {
		case job.kind == kindCopy:
			cr, err = p.s.copyChunk(ctx, p.src[w], p.dst[w], job.c)
			if err != nil {
				err = fmt.Errorf("copying %s: %w", job.t.Name, err)
			}
		case job.kind == kindIndex:
			if _, err = p.dst[w].Exec(ctx, job.sql); err != nil {
				err = fmt.Errorf("creating indexes: %s: %w", abbreviate(job.sql), err)
			}
		case job.kind == kindDigest:
			sd, err = digestTable(ctx, p.src[w], job.t, p.s.seed)
			err = wrapIf(err, "on the source")
		case job.readBack:
			d, err = p.readBack(ctx, p.dst[w], job)
		default:
			sd, err = digestTable(ctx, p.dst[w], job.t, p.s.seed)
			err = wrapIf(err, "on the target")
		}
		end := time.Now()
		p.s.timings.add(timedAs(job.kind), start, end)
		p.s.opts.Logger.Debug("db sync task", "stream", w, "kind", job.kind, "table", job.t.Name, "readBack", job.readBack,
			"at", start.Sub(p.s.start).Seconds(), "seconds", end.Sub(start).Seconds())
		if err != nil {
			p.fail(err)
			cancel()
			return
		}
		var follow []work
		if job.kind == kindCopy {
			p.s.rows.Add(cr.loaded)
			follow, err = p.copied(ctx, p.dst[w], job, cr)
			if err != nil {
				p.fail(err)
				cancel()
				return
			}
		}
		p.mu.Lock()
		st := p.state[job.t]
		switch {
		case job.kind == kindCopy:
			for _, f := range follow {
				p.push(f)
			}
		case job.kind == kindDigest:
			st.source = &sd
		case job.readBack:
			st.readBack.Add(d)
			st.verifyLeft--
		case job.kind == kindVerify:
			st.target = &sd
			st.verifyLeft--
		}
		p.check(job.t)
		p.left[job.kind]--
		phase := p.phaseNow()
		p.cond.Broadcast()
		p.mu.Unlock()
		if old, _ := p.s.phase.Load().(string); old != phase {
			p.s.setPhase(phase)
		}
	}
}

// copied adds a chunk's counts; once the table's last chunk is in, it returns the table's index
// builds and its verification: the target's digest, or the ranges that read it back.
func (p *pipeline) copied(ctx context.Context, c *pgx.Conn, job work, cr copied) ([]work, error) {
	p.mu.Lock()
	st := p.state[job.t]
	st.sent += cr.sent
	st.loaded += cr.loaded
	st.bytes += cr.bytes
	st.stream.Add(cr.stream)
	st.copyLeft--
	last := st.copyLeft == 0
	p.mu.Unlock()
	if !last {
		return nil, nil
	}
	p.s.tablesDone.Add(1)
	var out []work
	for _, q := range job.t.Indexes {
		out = append(out, work{kind: kindIndex, t: job.t, sql: q, size: job.t.Size})
	}
	if !p.s.opts.ReadBack {
		return append(out, work{kind: kindVerify, t: job.t, size: job.t.Size}), nil
	}
	// A large table is read back in page ranges on every stream, however it was copied (a whole
	// table in one stream is loaded frozen): the ranges are of its own pages, which need not be
	// where the source had the rows.
	ranges := []string{""}
	rangeSize := int64(verifyRange)
	if c := p.s.opts.ChunkSize; c > 0 {
		rangeSize = min(rangeSize, c)
	}
	if n := min(int64(p.s.opts.Jobs), job.t.Size/rangeSize); n > 1 {
		var pages int64
		if err := c.QueryRow(ctx, "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8", job.t.Name).Scan(&pages); err != nil {
			return nil, fmt.Errorf("sizing %s: %w", job.t.Name, err)
		}
		ranges = pageRanges(pages, n)
	}
	p.mu.Lock()
	st.verifyLeft = len(ranges) + 1 // and the target's digest
	p.mu.Unlock()
	for _, where := range ranges {
		out = append(out, work{kind: kindVerify, readBack: true, t: job.t, where: where, size: job.t.Size / int64(len(ranges))})
	}
	return append(out, work{kind: kindVerify, t: job.t, size: job.t.Size}), nil
}

// readBack digests one range of the new table as the target reads it.
func (p *pipeline) readBack(ctx context.Context, c *pgx.Conn, job work) (Digest, error) {
	q := "COPY " + job.t.copyTarget() + " TO STDOUT (FORMAT binary)"
	if job.where != "" {
		q = "COPY (SELECT " + job.t.copyColumns() + " FROM " + job.t.Name + " WHERE " + job.where + ") TO STDOUT (FORMAT binary)"
	}
	g := newDigester(p.s.keys)
	if _, err := c.PgConn().CopyTo(ctx, g, q); err != nil {
		return Digest{}, fmt.Errorf("reading %s back: %w", job.t.Name, err)
	}
	d, err := g.digest()
	if err != nil {
		return Digest{}, fmt.Errorf("reading %s back: %w", job.t.Name, err)
	}
	return d, nil
}

// check compares what the table's copy counted and the servers digested, once all of it is in:
// the rows in the snapshot, sent, loaded and on the target are one number, and the two servers'
// digests are equal (with ReadBack, the rows read back are also the rows sent). The caller holds
// mu.
func (p *pipeline) check(t *table) {
	st := p.state[t]
	if st.checked || st.copyLeft > 0 || st.verifyLeft > 0 || st.source == nil || st.target == nil {
		return
	}
	st.checked = true
	switch {
	case st.sent != st.source.Rows:
		p.bad = append(p.bad, fmt.Sprintf("%s: %d rows in the source's snapshot, %d sent", t.Name, st.source.Rows, st.sent))
	case st.loaded != st.sent:
		p.bad = append(p.bad, fmt.Sprintf("%s: %d rows sent, %d loaded", t.Name, st.sent, st.loaded))
	case *st.target != *st.source:
		p.bad = append(p.bad, fmt.Sprintf("%s: source %s, target %s", t.Name, st.source, st.target))
	case p.s.opts.ReadBack && !st.readBack.Equal(st.stream):
		p.bad = append(p.bad, fmt.Sprintf("%s: sent %s, read back %s", t.Name, st.stream, st.readBack))
	}
}

func timedAs(kind string) string {
	if kind == kindDigest {
		return kindVerify
	}
	return kind
}

func wrapIf(err error, where string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", where, err)
}

// phaseNow names the progress after the work still to do. The caller holds mu.
func (p *pipeline) phaseNow() string {
	switch {
	case p.left[kindCopy] > 0:
		return "data"
	case p.left[kindIndex] > 0:
		return "indexes"
	}
	return "verify"
}
