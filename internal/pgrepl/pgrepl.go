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
// it, or adds the tables made since (a TSB upgrade's). A table without a primary key is set to
// REPLICA IDENTITY FULL first, else publishing it would make its UPDATEs and DELETEs fail. It
// returns the tables it added (all of them when it created the publication). The role must own
// the tables (the MP's role does).
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
	// A published table without a replica identity refuses UPDATE and DELETE on the publisher:
	// the MP's own writes would fail. Such a table is identified by its whole row.
	keyless, err := column(ctx, c, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
   AND (c.relreplident = 'n' OR (c.relreplident = 'd' AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))`)
	if err != nil {
		return nil, fmt.Errorf("listing the tables without a replica identity: %w", err)
	}
	for _, t := range keyless {
		if _, err := c.Exec(ctx, "ALTER TABLE "+t+" REPLICA IDENTITY FULL"); err != nil {
			return nil, fmt.Errorf("identifying %s's rows for replication: %w", t, redact.Error(err))
		}
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
//
// It returns how many sequences it set.
func Promote(ctx context.Context, subscriberDSN, publisherDSN, name string) (int, error) {
	c, err := connect(ctx, subscriberDSN)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	if err := unsubscribe(ctx, c, name); err != nil {
		return 0, err
	}
	peer := map[string]int64{}
	if pc, err := connect(ctx, publisherDSN); err == nil {
		peer, err = sequenceValues(ctx, pc)
		pc.Close(context.Background())
		if err != nil {
			return 0, fmt.Errorf("reading the publisher's sequences: %w", err)
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
func advanceSequences(ctx context.Context, c *pgx.Conn, peer map[string]int64) (int, error) {
	own, err := sequenceValues(ctx, c)
	if err != nil {
		return 0, fmt.Errorf("reading the sequences: %w", err)
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
		return 0, fmt.Errorf("reading what the sequences feed: %w", err)
	}
	type feed struct{ seq, table, col string }
	feeds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (feed, error) {
		var f feed
		return f, r.Scan(&f.seq, &f.table, &f.col)
	})
	if err != nil {
		return 0, fmt.Errorf("reading what the sequences feed: %w", err)
	}
	next := map[string]int64{}
	for name, v := range own {
		next[name] = max(v, peer[name])
	}
	for _, f := range feeds {
		var m *int64
		if err := c.QueryRow(ctx, "SELECT max("+f.col+")::int8 FROM "+f.table).Scan(&m); err != nil {
			return 0, fmt.Errorf("reading the largest %s of %s: %w", f.col, f.table, err)
		}
		if m != nil {
			next[f.seq] = max(next[f.seq], *m)
		}
	}
	for name, v := range next {
		if _, err := c.Exec(ctx, "SELECT setval($1::regclass, $2, true)", name, v); err != nil {
			return 0, fmt.Errorf("advancing %s to %d: %w", name, v, err)
		}
	}
	return len(next), nil
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

// Published says whether the database of dsn has publication name.
func Published(ctx context.Context, dsn, name string) (bool, error) {
	c, err := connect(ctx, dsn)
	if err != nil {
		return false, err
	}
	defer c.Close(context.Background())
	var ok bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)", name).Scan(&ok); err != nil {
		return false, fmt.Errorf("reading publication %s: %w", name, err)
	}
	return ok, nil
}

// Subscription is a subscription's state on its subscriber.
type Subscription struct {
	Exists, Enabled bool
	// Streaming says its apply worker runs; ReceivedLSN (the publisher's WAL position it last
	// received) and LastMessage are that worker's, "" and nil without one.
	Streaming   bool
	ReceivedLSN string
	LastMessage *time.Time
	// Tables it follows; Synced says each finished its initial copy.
	Tables []string
	Synced bool
}

// ReadSubscription reads subscription name on the database of dsn.
func ReadSubscription(ctx context.Context, dsn, name string) (Subscription, error) {
	var s Subscription
	c, err := connect(ctx, dsn)
	if err != nil {
		return s, err
	}
	defer c.Close(context.Background())
	var received *string
	err = c.QueryRow(ctx, `SELECT s.subenabled, w.pid IS NOT NULL, w.received_lsn::text, w.last_msg_receipt_time
  FROM pg_subscription s LEFT JOIN pg_stat_subscription w ON w.subid = s.oid AND w.relid IS NULL
 WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, name).
		Scan(&s.Enabled, &s.Streaming, &received, &s.LastMessage)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, nil
	}
	if err != nil {
		return s, fmt.Errorf("reading subscription %s: %w", name, err)
	}
	s.Exists = true
	if received != nil {
		s.ReceivedLSN = *received
	}
	rows, err := c.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), r.srsubstate = 'r'
  FROM pg_subscription_rel r JOIN pg_subscription s ON s.oid = r.srsubid JOIN pg_class c ON c.oid = r.srrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE s.subname = $1 ORDER BY 1`, name)
	if err != nil {
		return s, fmt.Errorf("reading the tables of subscription %s: %w", name, err)
	}
	s.Synced = true
	for rows.Next() {
		var t string
		var ready bool
		if err := rows.Scan(&t, &ready); err != nil {
			return s, fmt.Errorf("reading the tables of subscription %s: %w", name, err)
		}
		s.Tables = append(s.Tables, t)
		s.Synced = s.Synced && ready
	}
	return s, rows.Err()
}

// Unsubscribe drops subscription name from the database of dsn, and its slot on the publisher
// when the publisher answers (else the slot is left for DropSlot). Dropping none is no error.
func Unsubscribe(ctx context.Context, dsn, name string) error {
	c, err := connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer c.Close(context.Background())
	return unsubscribe(ctx, c, name)
}

func unsubscribe(ctx context.Context, c *pgx.Conn, name string) error {
	var exists bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_subscription WHERE subname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("reading subscription %s: %w", name, err)
	}
	if !exists {
		return nil
	}
	id := pgx.Identifier{name}.Sanitize()
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
	return nil
}

// SchemaDrift lists how the subscriber's tables differ from what publication pub publishes: a
// table or a column (with its type) the publisher has and the subscriber lacks or types
// otherwise. Logical replication carries rows, not DDL: a TSB upgrade's migration on the active
// must reach the standby's schema first, or its apply worker fails on the first such row.
// It also returns the tables pub publishes.
func SchemaDrift(ctx context.Context, publisherDSN, subscriberDSN, pub string) (tables, drift []string, err error) {
	const columns = `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), a.attname, format_type(a.atttypid, a.atttypmod)
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
   AND (quote_ident(n.nspname) || '.' || quote_ident(c.relname)) = ANY($1)`
	pc, err := connect(ctx, publisherDSN)
	if err != nil {
		return nil, nil, err
	}
	defer pc.Close(context.Background())
	tables, err = column(ctx, pc, `SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_publication_tables WHERE pubname = $1`, pub)
	if err != nil {
		return nil, nil, fmt.Errorf("reading publication %s: %w", pub, err)
	}
	want, err := tableColumns(ctx, pc, columns, tables)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the publisher's columns: %w", err)
	}
	sc, err := connect(ctx, subscriberDSN)
	if err != nil {
		return nil, nil, err
	}
	defer sc.Close(context.Background())
	have, err := tableColumns(ctx, sc, columns, tables)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the subscriber's columns: %w", err)
	}
	for _, t := range tables {
		cols, ok := have[t]
		if !ok {
			drift = append(drift, t+" is missing")
			continue
		}
		for col, typ := range want[t] {
			switch got, ok := cols[col]; {
			case !ok:
				drift = append(drift, t+"."+col+" is missing")
			case got != typ:
				drift = append(drift, fmt.Sprintf("%s.%s is %s, not %s", t, col, got, typ))
			}
		}
	}
	slices.Sort(drift)
	return tables, drift, nil
}

func tableColumns(ctx context.Context, c *pgx.Conn, q string, tables []string) (map[string]map[string]string, error) {
	rows, err := c.Query(ctx, q, tables)
	if err != nil {
		return nil, err
	}
	out := map[string]map[string]string{}
	for rows.Next() {
		var t, col, typ string
		if err := rows.Scan(&t, &col, &typ); err != nil {
			return nil, err
		}
		if out[t] == nil {
			out[t] = map[string]string{}
		}
		out[t][col] = typ
	}
	return out, rows.Err()
}

// Slot is one of the publisher's replication slots.
type Slot struct {
	Name string
	// Active says a subscriber streams from it now.
	Active bool
	// Retained is the WAL it keeps from being recycled, in bytes.
	Retained int64
}

// Slots lists the logical slots of the server of dsn whose names start with prefix.
func Slots(ctx context.Context, dsn, prefix string) ([]Slot, error) {
	c, err := connect(ctx, dsn)
	if err != nil {
		return nil, err
	}
	defer c.Close(context.Background())
	rows, err := c.Query(ctx, `SELECT slot_name::text, active, coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::int8
  FROM pg_replication_slots WHERE slot_type = 'logical' AND starts_with(slot_name::text, $1) ORDER BY 1`, prefix)
	if err != nil {
		return nil, fmt.Errorf("listing replication slots: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Slot, error) {
		var s Slot
		return s, r.Scan(&s.Name, &s.Active, &s.Retained)
	})
}

// Fence makes the database of dsn refuse writes from every new transaction
// (default_transaction_read_only) and ends the sessions of the role that connects (the MP's):
// what the old active's MP would still write after a failover can no longer land there, so the
// subscriber that is promoted holds everything the old active ever committed. It returns how
// many sessions it ended. A subscription's replacement of the database (pgcopy) makes a new
// database without the setting.
func Fence(ctx context.Context, dsn string) (int, error) {
	c, err := connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(context.Background())
	var db string
	if err := c.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		return 0, fmt.Errorf("reading the database's name: %w", err)
	}
	if _, err := c.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{db}.Sanitize()+" SET default_transaction_read_only = on"); err != nil {
		return 0, fmt.Errorf("making %s read-only: %w", db, redact.Error(err))
	}
	var ended int
	err = c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
 WHERE datname = current_database() AND pid <> pg_backend_pid() AND backend_type = 'client backend'
   AND (usename = current_user OR (SELECT rolsuper FROM pg_roles WHERE rolname = current_user))`).Scan(&ended)
	if err != nil {
		return 0, fmt.Errorf("ending the sessions on %s: %w", db, redact.Error(err))
	}
	return ended, nil
}

// CatchUp waits until subscription name confirmed the publisher's WAL as it is now (its flush
// position when CatchUp starts), polling every interval for at most timeout. It returns the bytes
// still unconfirmed: 0 when caught up.
func CatchUp(ctx context.Context, publisherDSN, name string, interval, timeout time.Duration) (int64, error) {
	c, err := connect(ctx, publisherDSN)
	if err != nil {
		return -1, err
	}
	defer c.Close(context.Background())
	var target string
	if err := c.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&target); err != nil {
		return -1, fmt.Errorf("reading the publisher's WAL position: %w", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		var behind *int64
		err := c.QueryRow(ctx, `SELECT pg_wal_lsn_diff($2::pg_lsn, confirmed_flush_lsn)::int8 FROM pg_replication_slots WHERE slot_name = $1`, name, target).Scan(&behind)
		if errors.Is(err, pgx.ErrNoRows) {
			return -1, fmt.Errorf("%w %s", ErrNoSlot, name)
		}
		if err != nil {
			return -1, fmt.Errorf("reading slot %s: %w", name, err)
		}
		left := int64(-1)
		if behind != nil {
			left = max(*behind, 0)
		}
		if left == 0 || time.Now().After(deadline) {
			return left, nil
		}
		select {
		case <-ctx.Done():
			return left, ctx.Err()
		case <-time.After(interval):
		}
	}
}
