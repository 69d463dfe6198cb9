// Package dbsync holds the benchmark of `mpha db sync` against pg_dump | psql and pg_dump -Fd -j
// | pg_restore -j on the same generated database (≥ 1 GiB). It is built only with the tag
// dbsyncbench (bench/dbsync.sh, run by `make bench`): it takes minutes and gigabytes, too much
// for `make test`.
package dbsync
