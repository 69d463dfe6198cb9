// Package dbsync holds the benchmark of logical replication against a streaming replica
// (TestReplicationLag) and the benchmark of `mpha db sync` against pg_dump | psql, pg_dump -Fd -j |
// pg_restore -j and pgcopydb clone on the same generated databases (200 MiB, 1 GiB, 5 GiB), beside
// the floor of the copy. It is built only with the tag dbsyncbench (bench/dbsync.sh, run by
// `make bench-db`): it takes half an hour and gigabytes, too much for `make test`.
package dbsync
