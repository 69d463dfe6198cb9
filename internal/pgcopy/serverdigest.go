package pgcopy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// serverDigest is a table's rows as one server digests them over its own rows: the count and
// the sum (exact, numeric) of a keyed 64-bit hash of each row. The source's is taken in the
// snapshot, the target's on the loaded table; both servers hash in parallel and nothing is read
// back through the client. Equal digests mean the same multiset of rows up to each type's own
// equality (a numeric's trailing zeros, a jsonb's key order: what the hash opclasses ignore).
type serverDigest struct {
	Rows int64
	Sum  string
}

func (d serverDigest) String() string { return fmt.Sprintf("%d rows, sum %s", d.Rows, d.Sum) }

// seed is the hash key of one sync, drawn for it: the sums say nothing of the rows. One 64-bit
// hash a row (a second one cost 60% more time) leaves a changed row unnoticed with a chance of
// 2^-64.
type seed int64

func newSeed() seed {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return seed(binary.LittleEndian.Uint64(b[:]))
}

// digestQuery hashes each row with its columns' types' own extended hash functions
// (hash_record_extended, as hash partitioning does: stable across servers and versions). A column
// whose type has none (json, point), or whose hash is of something the copy does not carry (an
// enum's is of its OID, which differs between databases), is hashed in its text form, which both
// sides print with the same settings (textSettings).
func digestQuery(t *table) string {
	return "SELECT count(*), coalesce(sum(hash_record_extended(ROW(" + t.DigestColumns + "), $1)), 0)::text FROM " + t.Name
}

// queryer is a source stream (in the snapshot) or a target connection.
type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func digestTable(ctx context.Context, q queryer, t *table, s seed) (serverDigest, error) {
	var d serverDigest
	if err := q.QueryRow(ctx, digestQuery(t), int64(s)).Scan(&d.Rows, &d.Sum); err != nil {
		return d, fmt.Errorf("digesting %s: %w", t.Name, err)
	}
	return d, nil
}

// textSettings make every session print values alike, for the text form of digestQuery.
var textSettings = map[string]string{
	"DateStyle": "ISO, MDY", "IntervalStyle": "postgres", "TimeZone": "UTC", "extra_float_digits": "3", "bytea_output": "hex",
}

// readDigestColumns sets each table's DigestColumns: its columns, cast to text where the
// column's type (an array's element type) has no default hash operator class with an extended
// hash function, or is an enum.
func (s *schema) readDigestColumns(ctx context.Context, tx pgx.Tx) error {
	rows, err := tx.Query(ctx, `
SELECT a.attrelid, string_agg(quote_ident(a.attname) || CASE WHEN e.typtype <> 'e' AND EXISTS (
         SELECT 1 FROM pg_opclass o JOIN pg_am m ON m.oid = o.opcmethod
          WHERE m.amname = 'hash' AND o.opcdefault
            AND (o.opcintype = e.oid
                 OR EXISTS (SELECT 1 FROM pg_cast k WHERE k.castsource = e.oid AND k.casttarget = o.opcintype AND k.castmethod = 'b' AND k.castcontext = 'i'))
            AND EXISTS (SELECT 1 FROM pg_amproc p WHERE p.amprocfamily = o.opcfamily AND p.amprocnum = 2))
       THEN '' ELSE '::text' END, ', ' ORDER BY a.attnum)
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  JOIN pg_type e ON e.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END
 WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped
 GROUP BY a.attrelid`, s.tableOIDs())
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var oid uint32
		var cols string
		if err := rows.Scan(&oid, &cols); err != nil {
			return err
		}
		if t := s.table(oid); t != nil {
			t.DigestColumns = cols
		}
	}
	return rows.Err()
}
