#!/usr/bin/env bash
# The database benchmarks, each against its peers in the same run:
# 1. continual logical replication (mpha's agent code) against PostgreSQL's streaming replica of
#    the same active under a steady write load: lag p50/p99, WAL behind, and the planned
#    failover's promotion and RPO (~2 min). MPHA_BENCH_LAG_RATE (tx/s), MPHA_BENCH_LAG_SECONDS.
# 2. `mpha db sync` against pg_dump | psql, pg_dump -Fd -j | pg_restore -j and pgcopydb clone, on
#    generated TSB-shaped databases of 200 MiB, 1 GiB and 5 GiB (two rig Postgres servers per size),
#    each copy checked against the source by an independent oracle, beside the floor (the largest
#    table copied alone plus its largest index). ~30 min and ~25 GiB of disk on 2 cores.
#    MPHA_BENCH_SIZES (MiB, comma-separated), MPHA_BENCH_ROUNDS, MPHA_BENCH_JOBS tune it.
# MPHA_BENCH_DB=replication or =sync runs one of them.
set -euo pipefail
cd "$(dirname "$0")/.."
filter() { grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^    --- PASS'; }
if [ "${MPHA_BENCH_DB:-}" != sync ]; then
	go test -tags dbsyncbench -count=1 -timeout 1h -run TestReplicationLag ./bench/dbsync/ -v 2>&1 | filter
fi
if [ "${MPHA_BENCH_DB:-}" != replication ]; then
	echo "== mpha db sync vs pg_dump and pgcopydb (same data, same run)"
	go test -tags dbsyncbench -count=1 -timeout 3h -run TestDBSyncVersusPeers ./bench/dbsync/ -v 2>&1 | filter
fi
