package pgcopy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mpha-dev/mpha/internal/redact"
)

// target is the target server and database as found before the copy.
type target struct {
	exists     bool
	owner      string // the database's owner, or the connecting role for a new database
	inRecovery bool
	sessions   []string
	acl        []grant // the database's grants to others than its owner
	aclSet     bool    // the database has explicit grants (PUBLIC's defaults may be revoked)
	// droppedEmpty: the target existed, empty, and was dropped before the load.
	droppedEmpty bool
}

// sameServer refuses a target server that is the source's: it asks the target whether it
// lists the source session, whose application_name is the random marker. pg_stat_activity shows
// every session of a server, and its application_name to any role, whatever the address each
// DSN reaches the server by (a socket, 127.0.0.1, a Service, a proxy). Comparing DSNs cannot
// tell, and comparing system identifiers would also match a promoted clone of the source
// (pg_basebackup keeps the identifier), which is a distinct server.
func sameServer(ctx context.Context, admin *pgx.Conn, marker, db string) error {
	var same bool
	if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1)", marker).Scan(&same); err != nil {
		return fmt.Errorf("comparing the target server with the source: %w", err)
	}
	if same {
		return fmt.Errorf("%w: the target server lists this sync's source session, so both DSNs reach one server, where %s would be replaced by itself; nothing was changed", ErrSameDatabase, db)
	}
	return nil
}

func inspectTarget(ctx context.Context, c *pgx.Conn, db string) (*target, error) {
	t := &target{}
	if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_user").Scan(&t.inRecovery, &t.owner); err != nil {
		return nil, fmt.Errorf("inspecting the target server: %w", err)
	}
	err := c.QueryRow(ctx, `SELECT r.rolname, d.datacl IS NOT NULL FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba
 WHERE d.datname = $1`, db).Scan(&t.owner, &t.aclSet)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return t, nil
	case err != nil:
		return nil, fmt.Errorf("inspecting the target database: %w", err)
	}
	t.exists = true
	rows, err := c.Query(ctx, `SELECT coalesce(usename, '?') || '@' || coalesce(host(client_addr), 'local') ||
       coalesce(' (' || nullif(application_name, '') || ')', '')
  FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() ORDER BY 1`, db)
	if err != nil {
		return nil, fmt.Errorf("listing the target's sessions: %w", err)
	}
	if t.sessions, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, fmt.Errorf("listing the target's sessions: %w", err)
	}
	rows, err = c.Query(ctx, `SELECT 'DATABASE', '', coalesce(r.rolname, ''), a.privilege_type, a.is_grantable
  FROM pg_database d, aclexplode(d.datacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
 WHERE d.datname = $1 AND a.grantee <> d.datdba ORDER BY 3, 4`, db)
	if err != nil {
		return nil, fmt.Errorf("reading the target database's grants: %w", err)
	}
	t.acl, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		return g, r.Scan(&g.Kind, &g.Object, &g.Grantee, &g.Privilege, &g.Grantable)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the target database's grants: %w", err)
	}
	return t, nil
}

// adoptOwner makes a new target database the source's owner's when that role exists on the
// target (the MP's role, tsb); an existing database keeps its owner.
func (t *target) adoptOwner(ctx context.Context, c *pgx.Conn, owner string) error {
	if t.exists || t.droppedEmpty {
		return nil
	}
	var ok bool
	if err := c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", owner).Scan(&ok); err != nil {
		return fmt.Errorf("looking up role %s on the target: %w", owner, err)
	}
	if ok {
		t.owner = owner
	}
	return nil
}

// refusal says why the copy must not write into this target.
func (t *target) refusal(force bool) error {
	if t.inRecovery {
		return fmt.Errorf("%w: promote it or sync into its primary", ErrInRecovery)
	}
	if len(t.sessions) > 0 && !force {
		return fmt.Errorf("%w: %s; scale tsb and iam to 0 first, or pass --force to terminate them",
			ErrBusy, strings.Join(t.sessions, ", "))
	}
	return nil
}

func createDatabase(ctx context.Context, c *pgx.Conn, name, owner string, l locale) error {
	if _, err := c.Exec(ctx, createDatabaseSQL(name, owner, l)); err != nil {
		return fmt.Errorf("creating the database %s on the target: %w", name, err)
	}
	return nil
}

// createDatabaseSQL makes an empty database owned by owner with the source's encoding and locale.
func createDatabaseSQL(name, owner string, l locale) string {
	return fmt.Sprintf("CREATE DATABASE %s OWNER %s TEMPLATE template0 ENCODING %s LC_COLLATE %s LC_CTYPE %s",
		pgx.Identifier{name}.Sanitize(), pgx.Identifier{owner}.Sanitize(), literal(l.Encoding), literal(l.Collate), literal(l.Ctype))
}

// dropDatabaseSQL drops name, ending its sessions.
func dropDatabaseSQL(name string) string {
	return "DROP DATABASE IF EXISTS " + pgx.Identifier{name}.Sanitize() + " WITH (FORCE)"
}

func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// dropDatabase removes the unfinished copy on a connection of its own (ctx may be over, and the
// admin connection with it).
func dropDatabase(admin *pgx.Conn, name string, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := admin.Config().Copy()
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err == nil {
		defer c.Close(context.Background())
		_, err = c.Exec(ctx, dropDatabaseSQL(name))
	}
	if err != nil {
		log.Warn("the unfinished copy could not be dropped; drop it by hand", "database", name, "error", err)
	}
}

// RecordPrefix starts the comment a Sync leaves on the database it made (COMMENT ON DATABASE):
// the import record the database check reads for the age of the last verified import.
const RecordPrefix = "mpha-sync "

// Record is the import record of a verified copy.
type Record struct {
	At       time.Time `json:"at"`
	Source   Origin    `json:"source"`
	Tables   int       `json:"tables"`
	Rows     int64     `json:"rows"`
	Verified bool      `json:"verified"`
}

// ErrNoRecord: the database carries no import record (it was never synced by mpha).
var ErrNoRecord = errors.New("no import record")

// ReadRecord reads the import record of database db through any connection to its server.
func ReadRecord(ctx context.Context, c *pgx.Conn, db string) (*Record, error) {
	var comment *string
	err := c.QueryRow(ctx, "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", db).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: no database %s", ErrNoRecord, db)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the import record of %s: %w", db, err)
	}
	if comment == nil || !strings.HasPrefix(*comment, RecordPrefix) {
		return nil, fmt.Errorf("%w on database %s", ErrNoRecord, db)
	}
	var r Record
	if err := json.Unmarshal([]byte(strings.TrimPrefix(*comment, RecordPrefix)), &r); err != nil {
		return nil, fmt.Errorf("the import record of %s: %w", db, err)
	}
	return &r, nil
}

// record gives the new database the old one's grants and the import record.
func (s *syncer) record(ctx context.Context, admin *pgx.Conn, tmp string, snap *snapshot, tgt *target) error {
	db := pgx.Identifier{tmp}.Sanitize()
	stmts := tgt.grants(tmp)
	if s.opts.SchemaOnly { // no rows: no import to record, which the database check would trust
		return wrapIf(execAll(ctx, admin, stmts), "granting on the new database")
	}
	rec := Record{At: s.opts.Now().UTC(), Source: snap.origin, Tables: s.tables, Rows: s.rows.Load(), Verified: true}
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	stmts = append(stmts, "COMMENT ON DATABASE "+db+" IS "+literal(RecordPrefix+string(b)))
	if err := execAll(ctx, admin, stmts); err != nil {
		return fmt.Errorf("recording the import: %w", err)
	}
	return nil
}

// swap puts the verified copy tmp in the place of db: db is renamed aside, tmp renamed to db (or
// db renamed back if that fails). It returns the name db was renamed to, for the caller to drop
// once the copy is in place ("" when there was none).
func swap(ctx context.Context, admin *pgx.Conn, db, tmp string, exists, force bool) (string, error) {
	name, tmpName := pgx.Identifier{db}.Sanitize(), pgx.Identifier{tmp}.Sanitize()
	if !exists {
		if _, err := admin.Exec(ctx, "ALTER DATABASE "+tmpName+" RENAME TO "+name); err != nil {
			return "", fmt.Errorf("renaming the copy to %s: %w", db, err)
		}
		return "", nil
	}
	old := db + "_mpha_old_" + randomSuffix()
	oldName := pgx.Identifier{old}.Sanitize()
	var err error
	for attempt := 0; attempt < 5; attempt++ {
		if force {
			if _, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", db); err != nil {
				return "", fmt.Errorf("terminating the sessions of %s: %w", db, err)
			}
		}
		if _, err = admin.Exec(ctx, "ALTER DATABASE "+name+" RENAME TO "+oldName); err == nil {
			break
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55006" { // object_in_use
			return "", fmt.Errorf("renaming %s aside: %w", db, err)
		}
		if !force {
			return "", fmt.Errorf("%w: a session connected to %s while copying; pass --force to terminate it", ErrBusy, db)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return "", fmt.Errorf("renaming %s aside: %w", db, err)
	}
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+tmpName+" RENAME TO "+name); err != nil {
		if _, back := admin.Exec(context.Background(), "ALTER DATABASE "+oldName+" RENAME TO "+name); back != nil {
			return "", fmt.Errorf("renaming the copy to %s: %w; and renaming %s back to %s: %v", db, err, old, db, back)
		}
		return "", fmt.Errorf("renaming the copy to %s: %w", db, err)
	}
	return old, nil
}

// dropIfEmpty drops an existing target that holds no relations, functions or types of its own
// (a database created for the MP that never ran): dropped now, its drop's checkpoint has little to
// write; after the load, it would write out the new copy. restore makes it again if the sync fails.
func (t *target) dropIfEmpty(ctx context.Context, admin *pgx.Conn, db string, force bool) error {
	if !t.exists || (len(t.sessions) > 0 && !force) {
		return nil
	}
	cfg := admin.Config().Copy()
	cfg.Database = db
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil // not ours to judge: the swap replaces it as any other
	}
	var empty bool
	err = c.QueryRow(ctx, `SELECT NOT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE `+userNamespace+`)
   AND NOT EXISTS (SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE `+userNamespace+`)
   AND NOT EXISTS (SELECT 1 FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE `+userNamespace+`)`).Scan(&empty)
	c.Close(context.Background())
	if err != nil || !empty {
		return nil
	}
	if _, err := admin.Exec(ctx, dropDatabaseSQL(db)); err != nil {
		return fmt.Errorf("dropping the empty target %s before the load: %w", db, err)
	}
	t.exists, t.droppedEmpty = false, true
	return nil
}

// restore makes an empty target dropped before the load again, with its owner and grants, after a
// failed sync: the target is left as it was found.
func (t *target) restore(admin *pgx.Conn, db string, l locale, log *slog.Logger) {
	if !t.droppedEmpty {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stmts := append([]string{createDatabaseSQL(db, t.owner, l)}, t.grants(db)...)
	if err := execAll(ctx, admin, stmts); err != nil {
		log.Warn("the empty target dropped before the load could not be made again; create it by hand", "database", db, "error", redact.Error(err))
	}
}

// grants are the target database's grants to others than its owner, for the database name.
func (t *target) grants(name string) []string {
	db := pgx.Identifier{name}.Sanitize()
	var stmts []string
	if t.aclSet {
		stmts = append(stmts, "REVOKE ALL ON DATABASE "+db+" FROM PUBLIC")
	}
	for _, g := range t.acl {
		to := "PUBLIC"
		if g.Grantee != "" {
			to = pgx.Identifier{g.Grantee}.Sanitize()
		}
		q := fmt.Sprintf("GRANT %s ON DATABASE %s TO %s", g.Privilege, db, to)
		if g.Grantable {
			q += " WITH GRANT OPTION"
		}
		stmts = append(stmts, q)
	}
	return stmts
}

// ErrConcurrent: another Sync of the same database into the same server is running.
var ErrConcurrent = errors.New("another mpha db sync of this database is running on the target server")

// lockTarget takes a session lock on the target server (in the admin connection's database) for
// syncing db, so that two syncs of one database never build side by side and a leftover found
// while holding it belongs to no running sync.
func lockTarget(ctx context.Context, admin *pgx.Conn, db string) error {
	var ok bool
	if err := admin.QueryRow(ctx, "SELECT pg_try_advisory_lock(hashtextextended('mpha db sync ' || $1, 0))", db).Scan(&ok); err != nil {
		return fmt.Errorf("locking the target server for the sync: %w", err)
	}
	if !ok {
		return fmt.Errorf("%w (%s)", ErrConcurrent, db)
	}
	return nil
}

// dropLeftovers drops the unfinished copies (<db>_mpha_ and 8 hex digits) that a sync killed
// mid-copy left behind: only those, and only when nobody is connected to them. The databases a
// sync renames aside while swapping (<db>_mpha_old_...) hold the previous data; they are named
// in a warning, never dropped. The caller holds the lock of lockTarget.
func dropLeftovers(ctx context.Context, admin *pgx.Conn, db string, log *slog.Logger) ([]string, error) {
	rows, err := admin.Query(ctx, `SELECT d.datname, d.datname ~ ('^' || $2 || '_mpha_[0-9a-f]{8}$'),
       EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.datid = d.oid)
  FROM pg_database d WHERE starts_with(d.datname, $1) ORDER BY 1`, db+"_mpha_", regexpQuote(db))
	if err != nil {
		return nil, fmt.Errorf("looking for leftovers of earlier syncs: %w", err)
	}
	type found struct {
		name            string
		copy, connected bool
	}
	all, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (found, error) {
		var f found
		return f, r.Scan(&f.name, &f.copy, &f.connected)
	})
	if err != nil {
		return nil, fmt.Errorf("looking for leftovers of earlier syncs: %w", err)
	}
	var warnings []string
	for _, f := range all {
		switch {
		case !f.copy:
			warnings = append(warnings, fmt.Sprintf("database %s looks like the previous %s renamed aside by an interrupted sync; it is kept: rename it back or drop it by hand", f.name, db))
		case f.connected:
			warnings = append(warnings, fmt.Sprintf("leftover %s of an interrupted sync has sessions; it is kept", f.name))
		default:
			// Without FORCE: a session that connected since the look fails the drop, not itself.
			if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{f.name}.Sanitize()); err != nil {
				warnings = append(warnings, fmt.Sprintf("leftover %s of an interrupted sync could not be dropped: %v", f.name, err))
				continue
			}
			log.Info("dropped the leftover of an interrupted sync", "database", f.name)
		}
	}
	return warnings, nil
}

// regexpQuote escapes s for a POSIX regular expression in Postgres.
func regexpQuote(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`\.^$*+?()[]{}|`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
