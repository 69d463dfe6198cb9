// Package database holds what the agent knows of the management plane's Postgres (docs/design.md
// §8): which topology the two sites' databases form (shared, streaming replica, independent,
// embedded), how far the standby's lags behind the active's, the `database` preflight check that
// turns that into pass/warn/fail with evidence, the heartbeat's Postgres facts, and the
// promotion of a streaming standby once a failover is merged. It reads with pgx and never
// writes, except pg_promote. Evidence and errors name servers as host:port/db, never a DSN.
// The copy itself (`mpha db sync`) is internal/pgcopy.
package database
