package pgcopy

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// snapshot is the source's transaction whose snapshot every stream imports: all of them see the
// database as it was at one instant.
type snapshot struct {
	tx     pgx.Tx
	id     string
	origin Origin
	locale locale
	owner  string // the source database's owner
}

// locale is the source database's encoding and collation, given to the new database.
type locale struct{ Encoding, Collate, Ctype string }

func openSnapshot(ctx context.Context, c *pgx.Conn) (*snapshot, error) {
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("opening the source snapshot: %w", err)
	}
	s := &snapshot{tx: tx}
	err = tx.QueryRow(ctx, `SELECT pg_export_snapshot(),
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_flush_lsn() END::text,
       pg_encoding_to_char(d.encoding), d.datcollate, d.datctype, pg_get_userbyid(d.datdba)
  FROM pg_database d WHERE d.datname = current_database()`).Scan(&s.id, &s.origin.LSN, &s.locale.Encoding, &s.locale.Collate, &s.locale.Ctype, &s.owner)
	if err != nil {
		tx.Rollback(context.Background())
		return nil, fmt.Errorf("exporting the source snapshot: %w", err)
	}
	// The system identifier needs pg_control_system(), which a non-superuser may lack: optional.
	if _, err := tx.Exec(ctx, "SAVEPOINT sysid"); err != nil {
		tx.Rollback(context.Background())
		return nil, fmt.Errorf("source snapshot: %w", err)
	}
	if err := tx.QueryRow(ctx, "SELECT system_identifier::text FROM pg_control_system()").Scan(&s.origin.SystemID); err != nil {
		if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT sysid"); err != nil {
			tx.Rollback(context.Background())
			return nil, fmt.Errorf("source snapshot: %w", err)
		}
	}
	return s, nil
}

// join opens a transaction on c that sees the snapshot.
func (s *snapshot) join(ctx context.Context, c *pgx.Conn) (pgx.Tx, error) {
	tx, err := c.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("opening a source stream: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET TRANSACTION SNAPSHOT '"+s.id+"'"); err != nil {
		tx.Rollback(context.Background())
		return nil, fmt.Errorf("importing the snapshot: %w", err)
	}
	return tx, nil
}
