// Package pgrepl keeps a standby MP's database current by PostgreSQL logical replication: a
// publication of the MP's tables on the active's server, a subscription to it on the standby's,
// their lag, and the promotion that turns the subscriber into a database that takes writes (its
// subscription stopped, every sequence advanced past the publisher's, which logical replication
// in PostgreSQL 15 does not carry). It imports only pgx and internal/redact.
package pgrepl

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mpha-dev/mpha/internal/redact"
)

// userTables lists the ordinary tables outside the system schemas, qualified and quoted.
const userTables = `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname NOT LIKE 'pg\_%' ORDER BY 1`

// Publish makes the publication name on the database of dsn hold every user table: it creates
// it, or adds the tables made since (a TSB upgrade's). It returns the tables it added (all of them
// when it created the publication). The role must own the tables (the MP's role does).
func Publish(ctx context.Context, dsn, name string) ([]string, error) {
	c, err := connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	tables, err := column(ctx, c, userTables)
	if err != nil {
		return nil, fmt.Errorf("listing the tables to publish: %w", err)
	}
	published, err := column(ctx, c, `SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_publication_tables WHERE pubname = $1`, name)
	if err != nil {
		return nil, fmt.Errorf("reading publication %s: %w", name, err)
	}
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", name).Scan(&exists); err != nil {
		return nil, fmt.Errorf("reading publication %s: %w", name, err)
	}
	var missing []string
	for _, t := range tables {
		if !slices.Contains(published, t) {
			missing = append(missing, t)
		}
	}
	id := pgx.Identifier{name}.Sanitize()
	switch {
	case !exists && len(tables) == 0:
		_, err = c.Exec(ctx, "CREATE PUBLICATION "+id)
	case !exists:
		_, err = c.Exec(ctx, "CREATE PUBLICATION "+id+" FOR TABLE "+join(tables))
	case len(missing) > 0:
		_, err = c.Exec(ctx, "ALTER PUBLICATION "+id+" ADD TABLE "+join(missing))
	}
	if err != nil {
		return nil, fmt.Errorf("publishing the tables as %s: %w", name, redact.Error(err))
	}
	return missing, nil
}

// Subscribe makes the subscription name on the database of dsn follow publication pub through
// publisher (a libpq connection string the subscriber's server uses): it creates it (the rows
// already published are copied first, then the changes stream), or refreshes it so that the
// tables published since are copied and followed. The schema must be there (pgcopy's); the role
// must be allowed to create subscriptions (a superuser in PostgreSQL 15), and publisher's role
// needs REPLICATION and read access to the tables.
func Subscribe(ctx context.Context, dsn, name, publisher, pub string) error {
	c, err := connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("reading subscription %s: %w", name, err)
	}
	id := pgx.Identifier{name}.Sanitize()
	if exists {
		if _, err := c.Exec(ctx, "ALTER SUBSCRIPTION "+id+" REFRESH PUBLICATION"); err != nil {
			return fmt.Errorf("refreshing subscription %s: %w", name, redact.Error(err))
		}
		return nil
	}
	q := fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s", id, literal(publisher), pgx.Identifier{pub}.Sanitize())
	if _, err := c.Exec(ctx, q); err != nil {
		return fmt.Errorf("creating subscription %s: %w", name, redact.Error(err))
	}
	return nil
}

// Lag is how far a subscriber is behind its publisher.
type Lag struct {
	// Bytes is the publisher's WAL position minus what the subscription's slot confirmed.
	Bytes int64
	// Seconds is how long ago the subscriber last heard from the publisher, when it is behind
	// (0 when caught up).
	Seconds float64
	// Synced says every table finished its initial copy.
	Synced bool
}

// ErrNoSlot: the publisher has no slot for the subscription (it was never made, or dropped).
var ErrNoSlot = errors.New("no replication slot for the subscription on the publisher")

// MeasureLag reads the lag of subscription name: bytes from the publisher (its slot, which the
// subscription names after itself), time and the tables' state from the subscriber.
func MeasureLag(ctx context.Context, publisherDSN, subscriberDSN, name string) (Lag, error) {
	var l Lag
	pc, err := connect(ctx, publisherDSN)
	if err != nil {
		return l, err
	}
	defer pc.Close(context.Background())
	err = pc.QueryRow(ctx, `SELECT pg_wal_lsn_diff(pg_current_wal_flush_lsn(), confirmed_flush_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $1`, name).Scan(&l.Bytes)
	if errors.Is(err, pgx.ErrNoRows) {
		return l, fmt.Errorf("%w %s", ErrNoSlot, name)
	}
	if err != nil {
		return l, fmt.Errorf("reading slot %s: %w", name, err)
	}
	l.Bytes = max(l.Bytes, 0)
	sc, err := connect(ctx, subscriberDSN)
	if err != nil {
		return l, err
	}
	defer sc.Close(context.Background())
	var last *time.Time
	err = sc.QueryRow(ctx, `SELECT (SELECT max(last_msg_receipt_time) FROM pg_stat_subscription WHERE subname = $1),
       NOT EXISTS (SELECT 1 FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid WHERE s.subname = $1 AND r.srsubstate <> 'r')`,
		name).Scan(&last, &l.Synced)
	if err != nil {
		return l, fmt.Errorf("reading subscription %s: %w", name, err)
	}
	if l.Bytes > 0 && last != nil {
		l.Seconds = time.Since(*last).Seconds()
	}
	return l, nil
}

// Promote turns the subscriber into a database that takes writes: it stops and drops
// subscription name (the publisher's slot too when the publisher answers; when it does not, the
// slot is left for DropSlot once it is back), then sets every sequence past both its own value
// and the publisher's (read from publisherDSN when it answers) and past the largest value in any
// column it feeds, so that no insert on the new active collides with a replicated row.
func Promote(ctx context.Context, subscriberDSN, publisherDSN, name string) error {
	c, err := connect(ctx, subscriberDSN)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	id := pgx.Identifier{name}.Sanitize()
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("reading subscription %s: %w", name, err)
	}
	if exists {
		if _, err := c.Exec(ctx, "ALTER SUBSCRIPTION "+id+" DISABLE"); err != nil {
			return fmt.Errorf("stopping subscription %s: %w", name, redact.Error(err))
		}
		if _, err := c.Exec(ctx, "DROP SUBSCRIPTION "+id); err != nil {
			// The publisher is gone: keep its slot's name out of the drop and drop locally.
			if _, err2 := c.Exec(ctx, "ALTER SUBSCRIPTION "+id+" SET (slot_name = NONE)"); err2 != nil {
				return fmt.Errorf("dropping subscription %s: %w; detaching its slot: %w", name, redact.Error(err), redact.Error(err2))
			}
			if _, err := c.Exec(ctx, "DROP SUBSCRIPTION "+id); err != nil {
				return fmt.Errorf("dropping subscription %s: %w", name, redact.Error(err))
			}
		}
	}
	peer := map[string]int64{}
	if pc, err := connect(ctx, publisherDSN); err == nil {
		peer, err = sequenceValues(ctx, pc)
		pc.Close(context.Background())
		if err != nil {
			return fmt.Errorf("reading the publisher's sequences: %w", err)
		}
	}
	return advanceSequences(ctx, c, peer)
}

// DropSlot drops the publisher's slot name when no subscriber streams from it: a slot whose
// subscriber is gone keeps WAL on the publisher's disk without bound.
func DropSlot(ctx context.Context, publisherDSN, name string) (bool, error) {
	c, err := connect(ctx, publisherDSN)
	if err != nil {
		return false, err
	}
	defer c.Close(context.Background())
	var dropped bool
	err = c.QueryRow(ctx, `SELECT count(pg_drop_replication_slot(slot_name)) > 0 FROM pg_replication_slots WHERE slot_name = $1 AND NOT active`, name).Scan(&dropped)
	if err != nil {
		return false, fmt.Errorf("dropping slot %s: %w", name, err)
	}
	return dropped, nil
}

// sequenceValues reads every user sequence's last value.
func sequenceValues(ctx context.Context, c *pgx.Conn) (map[string]int64, error) {
	rows, err := c.Query(ctx, `SELECT quote_ident(schemaname) || '.' || quote_ident(sequencename), coalesce(last_value, start_value)
  FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for rows.Next() {
		var name string
		var v int64
		if err := rows.Scan(&name, &v); err != nil {
			return nil, err
		}
		out[name] = v
	}
	return out, rows.Err()
}

// advanceSequences sets each sequence of c's database past its own value, peer's value for it,
// and the largest value in the columns whose default it feeds.
func advanceSequences(ctx context.Context, c *pgx.Conn, peer map[string]int64) error {
	own, err := sequenceValues(ctx, c)
	if err != nil {
		return fmt.Errorf("reading the sequences: %w", err)
	}
	// The columns a sequence feeds: owned-by (serial, identity) and defaults calling nextval.
	rows, err := c.Query(ctx, `SELECT DISTINCT quote_ident(sn.nspname) || '.' || quote_ident(s.relname),
       quote_ident(tn.nspname) || '.' || quote_ident(t.relname), quote_ident(a.attname)
  FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
 WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
UNION
SELECT DISTINCT quote_ident(sn.nspname) || '.' || quote_ident(s.relname),
       quote_ident(tn.nspname) || '.' || quote_ident(t.relname), quote_ident(a.attname)
  FROM pg_attrdef ad JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid AND d.refclassid = 'pg_class'::regclass
  JOIN pg_class s ON s.oid = d.refobjid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace
  JOIN pg_class t ON t.oid = ad.adrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace
  JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = ad.adnum`)
	if err != nil {
		return fmt.Errorf("reading what the sequences feed: %w", err)
	}
	type feed struct{ seq, table, col string }
	feeds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (feed, error) {
		var f feed
		return f, r.Scan(&f.seq, &f.table, &f.col)
	})
	if err != nil {
		return fmt.Errorf("reading what the sequences feed: %w", err)
	}
	next := map[string]int64{}
	for name, v := range own {
		next[name] = max(v, peer[name])
	}
	for _, f := range feeds {
		var m *int64
		if err := c.QueryRow(ctx, "SELECT max("+f.col+")::int8 FROM "+f.table).Scan(&m); err != nil {
			return fmt.Errorf("reading the largest %s of %s: %w", f.col, f.table, err)
		}
		if m != nil {
			next[f.seq] = max(next[f.seq], *m)
		}
	}
	for name, v := range next {
		if _, err := c.Exec(ctx, "SELECT setval($1::regclass, $2, true)", name, v); err != nil {
			return fmt.Errorf("advancing %s to %d: %w", name, v, err)
		}
	}
	return nil
}

func connect(ctx context.Context, dsn string) (*pgx.Conn, error) {
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("connecting: %w", redact.Error(err))
	}
	return c, nil
}

func column(ctx context.Context, c *pgx.Conn, q string, args ...any) ([]string, error) {
	rows, err := c.Query(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

func join(tables []string) string { return strings.Join(tables, ", ") }

// literal quotes s as an SQL string literal (CREATE SUBSCRIPTION takes no parameters).
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
