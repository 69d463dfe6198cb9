package pgcopy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrUnsupported means the source holds a kind of object the copy does not recreate; the copy
// refuses before it touches the target rather than leave something out.
var ErrUnsupported = errors.New("unsupported objects in the source database")

// userObjects filters the namespace n to user schemas, and the object o of class cls to what is
// not part of an extension (an extension recreates its own objects).
const userNamespace = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'`

func notExtensionMember(cls, oid string) string {
	return fmt.Sprintf(`NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '%s'::regclass AND e.objid = %s AND e.deptype = 'e')`, cls, oid)
}

// schema is the source database's objects, as DDL for the target, in the order they are made:
// pre-data before the rows, post-data (indexes, keys, views, triggers) after them.
type schema struct {
	Schemas    []string // CREATE SCHEMA
	Extensions []string // CREATE EXTENSION
	Enums      []string // CREATE TYPE ... AS ENUM
	Functions  []string // CREATE FUNCTION / PROCEDURE
	Sequences  []sequence
	Tables     []*table
	Checks     []string // ALTER TABLE ... ADD CONSTRAINT ... CHECK (pre-data: checked as rows arrive)
	OwnedBy    []string // ALTER SEQUENCE ... OWNED BY
	Attach     []string // ALTER TABLE ... ADD CONSTRAINT ... USING INDEX: keys made of the indexes built
	Foreign    []foreignKey
	Views      []string
	Triggers   []string
	Owners     []string // ALTER ... OWNER TO %[1]s (formatted with the target's owner)
	Grants     []grant
}

type table struct {
	OID      uint32
	Name     string // qualified and quoted
	Columns  []column
	Size     int64 // bytes on disk at the source (heap and TOAST), to schedule the large tables first
	Pages    int64 // heap pages, to split a large table into ranges
	Unlogged bool
	// DigestColumns are the columns the digest hashes (digestQuery): some cast to text.
	DigestColumns string
	// Indexes are built as soon as the table's rows are in: CREATE INDEX (primary and unique keys
	// as plain unique indexes, which lock only against writes, so that they build side by side
	// and with the verification), and exclusion constraints.
	Indexes []string
}

type column struct {
	Name, Type, Collation, Default, Identity, Generated string
	NotNull                                             bool
}

type sequence struct {
	Name, Type            string
	Start, Inc, Min, Max  int64
	Cache                 int64
	Cycle                 bool
	Identity              bool // made by its table's identity column
	LastValue             int64
	IsCalled              bool
	ownerRel, ownerAttnum int64
}

// foreignKey is added NOT VALID (instant, no lock order to deadlock on) and validated after.
type foreignKey struct {
	Table, Name, Def string
	Validate         bool
}

// grant is one privilege of the source, granted again on the target when its grantee exists there.
type grant struct {
	Kind, Object, Grantee, Privilege string
	Grantable                        bool
}

// readSchema reads the catalog through tx, which holds the snapshot, and locks every table
// against DDL until tx ends (as pg_dump does).
func readSchema(ctx context.Context, tx pgx.Tx) (*schema, error) {
	s := &schema{}
	steps := []struct {
		what string
		f    func(context.Context, pgx.Tx) error
	}{
		{"schemas", s.readSchemas}, {"extensions", s.readExtensions}, {"enum types", s.readEnums},
		{"functions", s.readFunctions}, {"tables", s.readTables}, {"columns", s.readColumns},
		{"sequences", s.readSequences}, {"constraints", s.readConstraints}, {"indexes", s.readIndexes},
		{"views", s.readViews}, {"triggers", s.readTriggers}, {"owners", s.readOwners}, {"grants", s.readGrants},
		{"column types' hash functions", s.readDigestColumns},
	}
	for _, st := range steps {
		if err := st.f(ctx, tx); err != nil {
			return nil, fmt.Errorf("reading the source's %s: %w", st.what, err)
		}
	}
	return s, nil
}

// refuseUnsupported lists what the copy would leave out: materialized views, partitioned and
// foreign tables, inheritance, rules, row policies, domains, composite and range types, aggregates,
// large objects.
func refuseUnsupported(ctx context.Context, tx pgx.Tx) error {
	q := `
SELECT 'relation ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' of kind ' || c.relkind::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE ` + userNamespace + ` AND c.relkind IN ('m', 'p', 'f', 'c') AND ` + notExtensionMember("pg_class", "c.oid") + `
UNION ALL
SELECT 'inheritance of ' || i.inhrelid::regclass::text FROM pg_inherits i
UNION ALL
SELECT 'rule ' || r.rulename || ' on ' || r.ev_class::regclass::text FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
  JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ` + userNamespace + ` AND r.rulename <> '_RETURN'
UNION ALL
SELECT 'policy ' || p.polname || ' on ' || p.polrelid::regclass::text FROM pg_policy p
UNION ALL
SELECT 'type ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname) || ' of kind ' || t.typtype::text
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE ` + userNamespace + ` AND t.typtype IN ('d', 'r', 'm') AND ` + notExtensionMember("pg_type", "t.oid") + `
UNION ALL
SELECT 'routine ' || p.oid::regprocedure::text || ' of kind ' || p.prokind::text
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE ` + userNamespace + ` AND p.prokind IN ('a', 'w') AND ` + notExtensionMember("pg_proc", "p.oid")
	found, err := strings1(ctx, tx, q)
	if err != nil {
		return fmt.Errorf("looking for unsupported objects: %w", err)
	}
	// Large objects live outside the tables (pg_largeobject, with OIDs of their own); TSB keeps
	// everything in plain tables, so the copy refuses them rather than leave them out.
	var lobs int64
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM pg_largeobject_metadata").Scan(&lobs); err != nil {
		return fmt.Errorf("counting large objects: %w", err)
	}
	if lobs > 0 {
		found = append(found, fmt.Sprintf("the source has %d large objects; mpha db sync does not copy them", lobs))
	}
	if len(found) > 0 {
		return fmt.Errorf("%w: %s", ErrUnsupported, strings.Join(found, "; "))
	}
	return nil
}

func (s *schema) readSchemas(ctx context.Context, tx pgx.Tx) (err error) {
	s.Schemas, err = strings1(ctx, tx, `SELECT 'CREATE SCHEMA IF NOT EXISTS ' || quote_ident(n.nspname)
  FROM pg_namespace n WHERE `+userNamespace+` AND n.nspname <> 'public' AND `+notExtensionMember("pg_namespace", "n.oid")+` ORDER BY 1`)
	return err
}

func (s *schema) readExtensions(ctx context.Context, tx pgx.Tx) (err error) {
	s.Extensions, err = strings1(ctx, tx, `SELECT 'CREATE EXTENSION IF NOT EXISTS ' || quote_ident(x.extname) || ' WITH SCHEMA ' || quote_ident(n.nspname)
  FROM pg_extension x JOIN pg_namespace n ON n.oid = x.extnamespace WHERE x.extname <> 'plpgsql' ORDER BY x.oid`)
	return err
}

func (s *schema) readEnums(ctx context.Context, tx pgx.Tx) (err error) {
	s.Enums, err = strings1(ctx, tx, `SELECT 'CREATE TYPE ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname) || ' AS ENUM (' ||
       coalesce((SELECT string_agg(quote_literal(e.enumlabel), ', ' ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid), '') || ')'
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE `+userNamespace+` AND t.typtype = 'e' AND `+notExtensionMember("pg_type", "t.oid")+` ORDER BY t.oid`)
	return err
}

func (s *schema) readFunctions(ctx context.Context, tx pgx.Tx) (err error) {
	s.Functions, err = strings1(ctx, tx, `SELECT pg_get_functiondef(p.oid) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE `+userNamespace+` AND p.prokind IN ('f', 'p') AND `+notExtensionMember("pg_proc", "p.oid")+` ORDER BY p.oid`)
	return err
}

func (s *schema) readTables(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname),
       pg_relation_size(c.oid) + coalesce(pg_total_relation_size(nullif(c.reltoastrelid, 0)), 0),
       pg_relation_size(c.oid) / current_setting('block_size')::int8, c.relpersistence = 'u'
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE `+userNamespace+` AND c.relkind = 'r' AND `+notExtensionMember("pg_class", "c.oid")+` ORDER BY 2`)
	if err != nil {
		return err
	}
	s.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (*table, error) {
		t := &table{}
		return t, r.Scan(&t.OID, &t.Name, &t.Size, &t.Pages, &t.Unlogged)
	})
	if err != nil {
		return err
	}
	// Lock in name order, as pg_dump does: DDL on the source waits until the copy ends.
	for _, t := range s.Tables {
		if _, err := tx.Exec(ctx, "LOCK TABLE "+t.Name+" IN ACCESS SHARE MODE"); err != nil {
			return fmt.Errorf("locking %s: %w", t.Name, err)
		}
	}
	return nil
}

func (s *schema) tableOIDs() []uint32 {
	oids := make([]uint32, len(s.Tables))
	for i, t := range s.Tables {
		oids[i] = t.OID
	}
	return oids
}

func (s *schema) table(oid uint32) *table {
	for _, t := range s.Tables {
		if t.OID == oid {
			return t
		}
	}
	return nil
}

func (s *schema) readColumns(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT a.attrelid, quote_ident(a.attname), format_type(a.atttypid, a.atttypmod), a.attnotnull,
       coalesce(pg_get_expr(d.adbin, d.adrelid), ''), a.attidentity::text, a.attgenerated::text,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN quote_ident(cn.nspname) || '.' || quote_ident(co.collname) ELSE '' END
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attrelid, a.attnum`, s.tableOIDs())
	if err != nil {
		return err
	}
	var oid uint32
	var c column
	_, err = pgx.ForEachRow(rows, []any{&oid, &c.Name, &c.Type, &c.NotNull, &c.Default, &c.Identity, &c.Generated, &c.Collation}, func() error {
		t := s.table(oid)
		if t == nil {
			return fmt.Errorf("a column of unknown table %d", oid)
		}
		t.Columns = append(t.Columns, c)
		return nil
	})
	return err
}

func (s *schema) readSequences(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT quote_ident(n.nspname) || '.' || quote_ident(c.relname), format_type(q.seqtypid, NULL),
       q.seqstart, q.seqincrement, q.seqmin, q.seqmax, q.seqcache, q.seqcycle,
       coalesce(d.deptype = 'i', false), coalesce(d.refobjid::int8, 0), coalesce(d.refobjsubid::int8, 0)
  FROM pg_sequence q JOIN pg_class c ON c.oid = q.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = q.seqrelid
        AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
 WHERE `+userNamespace+` AND `+notExtensionMember("pg_class", "c.oid")+` ORDER BY 1`)
	if err != nil {
		return err
	}
	s.Sequences, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (sequence, error) {
		var q sequence
		err := r.Scan(&q.Name, &q.Type, &q.Start, &q.Inc, &q.Min, &q.Max, &q.Cache, &q.Cycle, &q.Identity, &q.ownerRel, &q.ownerAttnum)
		return q, err
	})
	if err != nil {
		return err
	}
	for i := range s.Sequences {
		q := &s.Sequences[i]
		// Sequences are not transactional: this is the value now, as pg_dump reads it.
		if err := tx.QueryRow(ctx, "SELECT last_value, is_called FROM "+q.Name).Scan(&q.LastValue, &q.IsCalled); err != nil {
			return fmt.Errorf("reading %s: %w", q.Name, err)
		}
		if q.ownerRel == 0 {
			continue
		}
		t := s.table(uint32(q.ownerRel))
		if t == nil || q.ownerAttnum < 1 {
			continue // owned by a relation that is not copied
		}
		var col string
		if err := tx.QueryRow(ctx, "SELECT quote_ident(attname) FROM pg_attribute WHERE attrelid = $1 AND attnum = $2 AND NOT attisdropped",
			q.ownerRel, q.ownerAttnum).Scan(&col); err != nil {
			return fmt.Errorf("the owner of %s: %w", q.Name, err)
		}
		if q.Identity {
			t.setIdentitySequence(col, q)
			continue
		}
		s.OwnedBy = append(s.OwnedBy, fmt.Sprintf("ALTER SEQUENCE %s OWNED BY %s.%s", q.Name, t.Name, col))
	}
	return nil
}

// setIdentitySequence names the identity column's sequence and its options, so that the target's
// implicit sequence is the same.
func (t *table) setIdentitySequence(col string, q *sequence) {
	for i := range t.Columns {
		if t.Columns[i].Name == col {
			t.Columns[i].Identity += fmt.Sprintf(" (SEQUENCE NAME %s %s)", q.Name, q.options())
		}
	}
}

func (q *sequence) options() string {
	cycle := "NO CYCLE"
	if q.Cycle {
		cycle = "CYCLE"
	}
	return fmt.Sprintf("START WITH %d INCREMENT BY %d MINVALUE %d MAXVALUE %d CACHE %d %s", q.Start, q.Inc, q.Min, q.Max, q.Cache, cycle)
}

func (s *schema) readConstraints(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT c.conrelid, quote_ident(c.conname), c.contype::text, pg_get_constraintdef(c.oid), c.convalidated,
       coalesce(pg_get_indexdef(c.conindid), ''), coalesce(quote_ident(i.relname), ''), c.condeferrable, c.condeferred
  FROM pg_constraint c LEFT JOIN pg_class i ON i.oid = c.conindid
 WHERE c.conrelid = ANY($1) AND c.contype IN ('p', 'u', 'c', 'f', 'x') ORDER BY c.conrelid, c.conname`, s.tableOIDs())
	if err != nil {
		return err
	}
	var (
		oid                             uint32
		name, typ, def, indexDef, index string
		validated, deferrable, deferred bool
	)
	_, err = pgx.ForEachRow(rows, []any{&oid, &name, &typ, &def, &validated, &indexDef, &index, &deferrable, &deferred}, func() error {
		t := s.table(oid)
		if t == nil {
			return fmt.Errorf("constraint %s of unknown table %d", name, oid)
		}
		add := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s", t.Name, name, def)
		switch typ {
		case "c":
			s.Checks = append(s.Checks, add)
		case "f":
			if validated {
				add += " NOT VALID"
			}
			s.Foreign = append(s.Foreign, foreignKey{Table: t.Name, Name: name, Def: add, Validate: validated})
		case "p", "u":
			// The key's index is built like any other, then the key takes it over (no scan: its
			// columns are already NOT NULL for a primary key).
			kind := "UNIQUE"
			if typ == "p" {
				kind = "PRIMARY KEY"
			}
			attach := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s USING INDEX %s", t.Name, name, kind, index)
			if deferrable {
				attach += " DEFERRABLE"
				if deferred {
					attach += " INITIALLY DEFERRED"
				}
			}
			t.Indexes = append(t.Indexes, indexDef)
			s.Attach = append(s.Attach, attach)
		default:
			t.Indexes = append(t.Indexes, add)
		}
		return nil
	})
	return err
}

func (s *schema) readIndexes(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT i.indrelid, pg_get_indexdef(i.indexrelid) FROM pg_index i
 WHERE i.indrelid = ANY($1) AND NOT EXISTS (SELECT 1 FROM pg_constraint c
       WHERE c.conindid = i.indexrelid AND c.conrelid = i.indrelid AND c.contype IN ('p', 'u', 'x'))
 ORDER BY i.indexrelid`, s.tableOIDs())
	if err != nil {
		return err
	}
	var oid uint32
	var def string
	_, err = pgx.ForEachRow(rows, []any{&oid, &def}, func() error {
		t := s.table(oid)
		if t == nil {
			return fmt.Errorf("an index of unknown table %d", oid)
		}
		t.Indexes = append(t.Indexes, def)
		return nil
	})
	return err
}

func (s *schema) readViews(ctx context.Context, tx pgx.Tx) (err error) {
	s.Views, err = strings1(ctx, tx, `SELECT 'CREATE VIEW ' || quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' AS ' || pg_get_viewdef(c.oid)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE `+userNamespace+` AND c.relkind = 'v' AND `+notExtensionMember("pg_class", "c.oid")+` ORDER BY c.oid`)
	return err
}

func (s *schema) readTriggers(ctx context.Context, tx pgx.Tx) (err error) {
	s.Triggers, err = strings1(ctx, tx, `SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t
 WHERE t.tgrelid = ANY($1) AND NOT t.tgisinternal ORDER BY t.oid`, s.tableOIDs())
	return err
}

// readOwners makes every object the target's owner's: the MP connects as that user (tsb).
func (s *schema) readOwners(ctx context.Context, tx pgx.Tx) (err error) {
	s.Owners, err = strings1(ctx, tx, `SELECT 'ALTER ' || CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END || ' ' ||
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) || ' OWNER TO %[1]s'
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE `+userNamespace+` AND c.relkind IN ('r', 'S', 'v') AND `+notExtensionMember("pg_class", "c.oid")+`
   AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                  AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')) -- owned sequences follow their table
UNION ALL
SELECT 'ALTER SCHEMA ' || quote_ident(n.nspname) || ' OWNER TO %[1]s' FROM pg_namespace n
 WHERE `+userNamespace+` AND n.nspname <> 'public' AND `+notExtensionMember("pg_namespace", "n.oid")+`
UNION ALL
SELECT 'ALTER TYPE ' || quote_ident(n.nspname) || '.' || quote_ident(t.typname) || ' OWNER TO %[1]s'
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE `+userNamespace+` AND t.typtype = 'e' AND `+notExtensionMember("pg_type", "t.oid")+`
UNION ALL
SELECT 'ALTER ROUTINE ' || p.oid::regprocedure::text || ' OWNER TO %[1]s' FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE `+userNamespace+` AND p.prokind IN ('f', 'p') AND `+notExtensionMember("pg_proc", "p.oid")+`
ORDER BY 1`)
	return err
}

// readGrants reads the tables', sequences', views' and schemas' privileges granted to roles
// other than the object's owner (the owner's own come with ownership).
func (s *schema) readGrants(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `SELECT CASE c.relkind WHEN 'S' THEN 'SEQUENCE' ELSE 'TABLE' END,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname), coalesce(r.rolname, ''), a.privilege_type, a.is_grantable
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
  LEFT JOIN pg_roles r ON r.oid = a.grantee
 WHERE `+userNamespace+` AND c.relkind IN ('r', 'S', 'v') AND a.grantee <> c.relowner
UNION ALL
SELECT 'SCHEMA', quote_ident(n.nspname), coalesce(r.rolname, ''), a.privilege_type, a.is_grantable
  FROM pg_namespace n, aclexplode(n.nspacl) a LEFT JOIN pg_roles r ON r.oid = a.grantee
 WHERE `+userNamespace+` AND a.grantee <> n.nspowner AND n.nspname <> 'public'
 ORDER BY 1, 2, 3, 4`)
	if err != nil {
		return err
	}
	s.Grants, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (grant, error) {
		var g grant
		return g, r.Scan(&g.Kind, &g.Object, &g.Grantee, &g.Privilege, &g.Grantable)
	})
	return err
}

// strings1 collects the first column of every row.
func strings1(ctx context.Context, tx pgx.Tx, sql string, args ...any) ([]string, error) {
	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// createTable is the table's CREATE statement, without its constraints but NOT NULL.
func (t *table) createTable() string {
	var b strings.Builder
	b.WriteString("CREATE ")
	if t.Unlogged {
		b.WriteString("UNLOGGED ")
	}
	b.WriteString("TABLE " + t.Name + " (")
	for i, c := range t.Columns {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.Name + " " + c.Type)
		if c.Collation != "" {
			b.WriteString(" COLLATE " + c.Collation)
		}
		switch {
		case c.Generated == "s":
			b.WriteString(" GENERATED ALWAYS AS (" + c.Default + ") STORED")
		case c.Default != "":
			b.WriteString(" DEFAULT " + c.Default)
		}
		switch {
		case strings.HasPrefix(c.Identity, "a"):
			b.WriteString(" GENERATED ALWAYS AS IDENTITY" + c.Identity[1:])
		case strings.HasPrefix(c.Identity, "d"):
			b.WriteString(" GENERATED BY DEFAULT AS IDENTITY" + c.Identity[1:])
		}
		if c.NotNull {
			b.WriteString(" NOT NULL")
		}
	}
	b.WriteString(")")
	return b.String()
}

// copyColumns are the columns COPY moves: all but the generated ones, which the target computes.
func (t *table) copyColumns() string {
	var cols []string
	for _, c := range t.Columns {
		if c.Generated == "" {
			cols = append(cols, c.Name)
		}
	}
	return strings.Join(cols, ", ")
}

// copyTarget is the table and its column list for COPY; a table without columns to copy has no
// list (COPY then moves its zero-column rows, and never the generated columns).
func (t *table) copyTarget() string {
	if cols := t.copyColumns(); cols != "" {
		return t.Name + " (" + cols + ")"
	}
	return t.Name
}
