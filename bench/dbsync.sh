#!/usr/bin/env bash
# `mpha db sync` against pg_dump | psql and pg_dump -Fd -j | pg_restore -j, on one generated
# TSB-shaped database of at least 1 GiB (two rig Postgres servers; takes several minutes and
# ~5 GiB of disk). MPHA_BENCH_AUDIT_ROWS and MPHA_BENCH_JOBS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== mpha db sync vs pg_dump (same data, same run)"
go test -tags dbsyncbench -count=1 -timeout 2h -run TestDBSyncVersusPgDump ./bench/dbsync/ -v 2>&1 |
	grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok '
