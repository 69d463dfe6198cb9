package pgcopy

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// The kinds of work in the pipeline, which are also the names of their phases.
const (
	kindCopy   = "copy"
	kindIndex  = "indexes"
	kindVerify = "verify"
)

// verifyRange is about the least a stream reads back of a table split over several streams
// (or the chunk size, when smaller).
const verifyRange = 32 << 20

// work is one task of the pipeline, run on one stream: a chunk to copy, an index to build, or a
// range of the new table to read back.
type work struct {
	kind  string
	t     *table
	c     chunk  // copy
	sql   string // index
	where string // verify: a page range of the new table, or "" for all of it
	size  int64  // bytes, to run the large work first
}

// tableState is how far one table got through the pipeline.
type tableState struct {
	copyLeft, verifyLeft int
	source, target       Digest
}

// pipeline runs each table through copy, then its index builds and its verification side by
// side, while other tables are still copying: a table's indexes and read-back need only its own
// rows, and nothing changes the rows after they are loaded (the keys, foreign keys and triggers
// come after, and read or add no rows). So the streams stay busy until the last table is done,
// instead of waiting at the end of each phase for the slowest stream.
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
func (s *syncer) runPipeline(ctx context.Context, snap *snapshot, sc *schema, conns []*pgx.Conn) (map[string]Digest, error) {
	p := &pipeline{s: s, dst: conns, left: map[string]int{}, state: map[*table]*tableState{}}
	p.cond = sync.NewCond(&p.mu)
	defer func() {
		for _, tx := range p.src {
			tx.Rollback(context.Background())
			tx.Conn().Close(context.Background())
		}
	}()
	for range conns {
		c, err := connect(ctx, s.src, "")
		if err != nil {
			return nil, fmt.Errorf("connecting a source stream: %w", err)
		}
		tx, err := snap.join(ctx, c)
		if err != nil {
			c.Close(context.Background())
			return nil, err
		}
		p.src = append(p.src, tx)
	}
	for _, t := range sc.Tables {
		p.state[t] = &tableState{}
	}
	for _, c := range sc.chunks(s.opts.ChunkSize) {
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
	digests := make(map[string]Digest, len(p.state))
	for t, st := range p.state {
		digests[t.Name] = st.source
	}
	return digests, nil
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

// next takes the largest ready work (a copy before other work of the same size); false when all
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

func better(a, b work) bool {
	if c := cmp.Compare(a.size, b.size); c != 0 {
		return c > 0
	}
	return a.kind == kindCopy && b.kind != kindCopy
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
		var err error
		var d Digest
		switch job.kind {
		case kindCopy:
			d, err = p.s.copyChunk(ctx, p.src[w], p.dst[w], job.c)
			if err != nil {
				err = fmt.Errorf("copying %s: %w", job.t.Name, err)
			}
		case kindIndex:
			if _, err = p.dst[w].Exec(ctx, job.sql); err != nil {
				err = fmt.Errorf("creating indexes: %s: %w", abbreviate(job.sql), err)
			}
		case kindVerify:
			d, err = p.readBack(ctx, p.dst[w], job)
		}
		p.s.timings.add(job.kind, start, time.Now())
		if err != nil {
			p.fail(err)
			cancel()
			return
		}
		var follow []work
		if job.kind == kindCopy {
			p.s.rows.Add(d.Rows)
			follow, err = p.copied(ctx, p.dst[w], job, d)
			if err != nil {
				p.fail(err)
				cancel()
				return
			}
		}
		p.mu.Lock()
		switch job.kind {
		case kindCopy:
			for _, f := range follow {
				p.push(f)
			}
		case kindVerify:
			p.verified(job.t, d)
		}
		p.left[job.kind]--
		phase := p.phaseNow()
		p.cond.Broadcast()
		p.mu.Unlock()
		if old, _ := p.s.phase.Load().(string); old != phase {
			p.s.setPhase(phase)
		}
	}
}

// copied adds a chunk's digest; once the table's last chunk is in, it returns the table's index
// builds and the ranges that read it back.
func (p *pipeline) copied(ctx context.Context, c *pgx.Conn, job work, d Digest) ([]work, error) {
	p.mu.Lock()
	st := p.state[job.t]
	st.source.Add(d)
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
	// A large table is read back in page ranges on every stream, however it was copied (a whole
	// table in one stream is loaded frozen): the ranges are of its own pages, which need not be
	// where the source had the rows.
	ranges := []string{""}
	if n := min(int64(p.s.opts.Jobs), job.t.Size/min(verifyRange, p.s.opts.ChunkSize)); n > 1 {
		var pages int64
		if err := c.QueryRow(ctx, "SELECT pg_relation_size($1::regclass) / current_setting('block_size')::int8", job.t.Name).Scan(&pages); err != nil {
			return nil, fmt.Errorf("sizing %s: %w", job.t.Name, err)
		}
		ranges = pageRanges(pages, n)
	}
	p.mu.Lock()
	st.verifyLeft = len(ranges)
	p.mu.Unlock()
	for _, where := range ranges {
		out = append(out, work{kind: kindVerify, t: job.t, where: where, size: job.t.Size / int64(len(ranges))})
	}
	return out, nil
}

// readBack digests one range of the new table as the target reads it.
func (p *pipeline) readBack(ctx context.Context, c *pgx.Conn, job work) (Digest, error) {
	cols := job.t.copyColumns()
	q := "COPY " + job.t.Name + " (" + cols + ") TO STDOUT (FORMAT binary)"
	if job.where != "" {
		q = "COPY (SELECT " + cols + " FROM " + job.t.Name + " WHERE " + job.where + ") TO STDOUT (FORMAT binary)"
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

// verified adds a range's digest and, with the table's last, compares it with the source's.
// The caller holds mu.
func (p *pipeline) verified(t *table, d Digest) {
	st := p.state[t]
	st.target.Add(d)
	st.verifyLeft--
	if st.verifyLeft == 0 && !st.target.Equal(st.source) {
		p.bad = append(p.bad, fmt.Sprintf("%s: source %s, target %s", t.Name, st.source, st.target))
	}
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
