#!/usr/bin/env bash
# `mpha db sync` against pg_dump | psql, pg_dump -Fd -j | pg_restore -j and pgcopydb clone, on
# generated TSB-shaped databases of 200 MiB, 1 GiB and 5 GiB (two rig Postgres servers per size),
# each copy checked against the source by an independent oracle, beside the floor (the largest
# table copied alone plus its largest index). ~30 min and ~25 GiB of disk on 2 cores.
# MPHA_BENCH_SIZES (MiB, comma-separated), MPHA_BENCH_ROUNDS, MPHA_BENCH_JOBS tune it.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== mpha db sync vs pg_dump and pgcopydb (same data, same run)"
go test -tags dbsyncbench -count=1 -timeout 3h -run TestDBSyncVersusPeers ./bench/dbsync/ -v 2>&1 |
	grep -v -e '^=== RUN' -e '^--- PASS' -e '^PASS' -e '^ok ' -e '^    --- PASS'
