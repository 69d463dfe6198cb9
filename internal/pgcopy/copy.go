package pgcopy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
)

// chunk is a part of a table one stream copies: all of it, or a range of its pages (a TID range
// scan reads only those), so that one large table (TSB's audit_log) uses every stream.
type chunk struct {
	t     *table
	where string // "" for the whole table
	size  int64
	whole bool
}

// chunks splits into page ranges the tables larger than size that are also far larger than the
// rest (over twice a stream's fair share of the whole): a range is copied through the slower
// query form of COPY and loads without FREEZE, so it only pays where one table would otherwise
// keep a stream busy long after the others ran out of work. Largest work first.
func (sc *schema) chunks(size int64, streams int) []chunk {
	var total int64
	for _, t := range sc.Tables {
		total += t.Size
	}
	var out []chunk
	for _, t := range sc.Tables {
		n := int64(1)
		if size > 0 && t.Size > size && t.Pages > 1 && streams > 1 && t.Size > 2*total/int64(streams) {
			n = min((t.Size+size-1)/size, t.Pages, int64(streams))
		}
		if n == 1 {
			out = append(out, chunk{t: t, size: t.Size, whole: true})
			continue
		}
		ranges := pageRanges(t.Pages, n)
		for _, where := range ranges {
			out = append(out, chunk{t: t, where: where, size: t.Size / n})
		}
	}
	slices.SortStableFunc(out, func(a, b chunk) int {
		switch {
		case a.size > b.size:
			return -1
		case a.size < b.size:
			return 1
		}
		return 0
	})
	return out
}

// pageRanges splits pages into n ranges (the last one open, for rows past the last page read).
func pageRanges(pages, n int64) []string {
	if n <= 1 || pages <= 1 {
		return []string{""}
	}
	var out []string
	step := (pages + n - 1) / n
	for lo := int64(0); lo < pages; lo += step {
		where := fmt.Sprintf("ctid >= '(%d,0)'::tid", lo)
		if lo+step < pages {
			where += fmt.Sprintf(" AND ctid < '(%d,0)'::tid", lo+step)
		}
		out = append(out, where)
	}
	return out
}

// copied is what COPY counted of one chunk: rows out of the source and into the target, the bytes
// of the stream, and (ReadBack) the client's digest of the rows sent.
type copied struct {
	sent, loaded, bytes int64
	stream              Digest
}

// copyChunk streams one chunk from src into dst. A whole table is loaded in the transaction that
// truncates it, so COPY FREEZE writes its rows frozen (no hint-bit rewrite when they are first
// read).
func (s *syncer) copyChunk(ctx context.Context, src pgx.Tx, dst *pgx.Conn, c chunk) (copied, error) {
	out := "COPY " + c.t.copyTarget() + " TO STDOUT (FORMAT binary)"
	if c.where != "" {
		out = "COPY (SELECT " + c.t.copyColumns() + " FROM " + c.t.Name + " WHERE " + c.where + ") TO STDOUT (FORMAT binary)"
	}
	in := "COPY " + c.t.copyTarget() + " FROM STDIN (FORMAT binary)"
	if c.whole {
		in = "COPY " + c.t.copyTarget() + " FROM STDIN (FORMAT binary, FREEZE)"
		if _, err := dst.Exec(ctx, "BEGIN; TRUNCATE "+c.t.Name); err != nil {
			return copied{}, err
		}
	}
	var res copied
	var g *digester
	pr, pw := io.Pipe()
	srcErr := make(chan error, 1)
	go func() {
		// PostgreSQL sends a message per row: hand the load side large blocks, not rows.
		bw := bufio.NewWriterSize(pw, 256<<10)
		var sink io.Writer = io.MultiWriter(counter{n: &s.bytes, own: &res.bytes}, bw)
		if s.opts.ReadBack {
			g = newDigester(s.keys)
			sink = io.MultiWriter(g, sink)
		}
		tag, err := src.Conn().PgConn().CopyTo(ctx, sink, out)
		if err == nil {
			res.sent = tag.RowsAffected()
			err = bw.Flush()
		}
		pw.CloseWithError(err)
		srcErr <- err
	}()
	tag, err := dst.PgConn().CopyFrom(ctx, pr, in)
	res.loaded = tag.RowsAffected()
	pr.CloseWithError(io.ErrClosedPipe) // unblock the reader's writes if the load stopped first
	if e := <-srcErr; e != nil {
		err = fmt.Errorf("reading the source: %w", e)
	}
	if err == nil && c.whole {
		_, err = dst.Exec(ctx, "COMMIT")
	}
	if err != nil {
		if c.whole && !dst.IsClosed() {
			_, _ = dst.Exec(context.Background(), "ROLLBACK")
		}
		return copied{}, err
	}
	if g != nil {
		if res.stream, err = g.digest(); err != nil {
			return copied{}, err
		}
	}
	return res, nil
}

// counter adds the bytes written to n (the progress report's, shared) or own (one stream's).
type counter struct {
	n   *atomic.Int64
	own *int64
}

func (c counter) Write(p []byte) (int, error) {
	if c.n != nil {
		c.n.Add(int64(len(p)))
	}
	if c.own != nil {
		*c.own += int64(len(p))
	}
	return len(p), nil
}

// parallel runs f over items on n workers; the first error cancels the rest and is returned.
func parallel[T any](ctx context.Context, n int, items []T, f func(ctx context.Context, worker int, item T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan T)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for w := range n {
		wg.Go(func() {
			for it := range ch {
				if ctx.Err() != nil {
					continue
				}
				if err := f(ctx, w, it); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
feed:
	for _, it := range items {
		select {
		case ch <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(ch)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// setSequences sets each sequence to the source's value.
func setSequences(ctx context.Context, c *pgx.Conn, seqs []sequence) error {
	for _, q := range seqs {
		if _, err := c.Exec(ctx, "SELECT setval($1::regclass, $2, $3)", q.Name, q.LastValue, q.IsCalled); err != nil {
			return fmt.Errorf("setting %s: %w", q.Name, err)
		}
	}
	return nil
}

// preData is the DDL run before the rows arrive.
func (sc *schema) preData() []string {
	stmts := slices.Concat(sc.Schemas, sc.Extensions, sc.Enums, sc.Functions)
	for _, q := range sc.Sequences {
		if !q.Identity {
			stmts = append(stmts, fmt.Sprintf("CREATE SEQUENCE %s AS %s %s", q.Name, q.Type, q.options()))
		}
	}
	for _, t := range sc.Tables {
		stmts = append(stmts, t.createTable())
	}
	return slices.Concat(stmts, sc.Checks, sc.OwnedBy)
}

// postData turns the unique indexes into keys, adds the foreign keys (NOT VALID one by one, then
// validated in parallel), views, triggers, owners and grants. The indexes are already built.
func (s *syncer) postData(ctx context.Context, sc *schema, conns []*pgx.Conn, owner string) error {
	run := func(ctx context.Context, w int, q string) error {
		if _, err := conns[w].Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", abbreviate(q), err)
		}
		return nil
	}
	if err := execAll(ctx, conns[0], sc.Attach); err != nil {
		return fmt.Errorf("adding keys: %w", err)
	}
	var validate []string
	for _, fk := range sc.Foreign {
		if err := run(ctx, 0, fk.Def); err != nil {
			return fmt.Errorf("adding foreign keys: %w", err)
		}
		if fk.Validate {
			validate = append(validate, "ALTER TABLE "+fk.Table+" VALIDATE CONSTRAINT "+fk.Name)
		}
	}
	if err := parallel(ctx, len(conns), validate, run); err != nil {
		return fmt.Errorf("validating foreign keys: %w", err)
	}
	if err := createViews(ctx, conns[0], sc.Views); err != nil {
		return err
	}
	if err := execAll(ctx, conns[0], sc.Triggers); err != nil {
		return fmt.Errorf("creating triggers: %w", err)
	}
	ident := pgx.Identifier{owner}.Sanitize()
	for _, q := range sc.Owners {
		if err := run(ctx, 0, fmt.Sprintf(q, ident)); err != nil {
			return fmt.Errorf("setting owners: %w", err)
		}
	}
	return s.grant(ctx, conns[0], sc.Grants)
}

// createViews creates views in an order that works: a view whose dependency is not there yet is
// tried again after the others.
func createViews(ctx context.Context, c *pgx.Conn, views []string) error {
	for len(views) > 0 {
		var later []string
		var last error
		for _, v := range views {
			if _, err := c.Exec(ctx, v); err != nil {
				later, last = append(later, v), fmt.Errorf("%s: %w", abbreviate(v), err)
			}
		}
		if len(later) == len(views) {
			return fmt.Errorf("creating views: %w", last)
		}
		views = later
	}
	return nil
}

// grant repeats the source's grants for the grantees that exist on the target.
func (s *syncer) grant(ctx context.Context, c *pgx.Conn, grants []grant) error {
	for _, g := range grants {
		to := "PUBLIC"
		if g.Grantee != "" {
			var ok bool
			if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", g.Grantee).Scan(&ok); err != nil {
				return fmt.Errorf("looking up role %s: %w", g.Grantee, err)
			}
			if !ok {
				s.warn(fmt.Sprintf("%s on %s %s to %s not granted: no such role on the target", g.Privilege, strings.ToLower(g.Kind), g.Object, g.Grantee))
				continue
			}
			to = pgx.Identifier{g.Grantee}.Sanitize()
		}
		q := fmt.Sprintf("GRANT %s ON %s %s TO %s", g.Privilege, g.Kind, g.Object, to)
		if g.Grantable {
			q += " WITH GRANT OPTION"
		}
		if _, err := c.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}
