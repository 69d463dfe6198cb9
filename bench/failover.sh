#!/usr/bin/env bash
# Failover latency (request → proposed / merged / applied / verified, p50/p99 over
# MPHA_BENCH_FAILOVERS failovers, default 50), secret rotation → commit (MPHA_BENCH_ROTATIONS,
# default 20) and both agents' RSS and CPU idle (MPHA_BENCH_IDLE, default 60s) and under a burst,
# on the e2e drill's two-cluster rig with short Flux intervals (test/e2e/bench_test.go).
# About 10 min on a 2-core machine: ~8 s per failover, plus the rig, the idle minute and the rotations.
set -euo pipefail
cd "$(dirname "$0")/.."
report=$(mktemp) log=$(mktemp)
trap 'rm -f "$report" "$log"' EXIT
if ! MPHA_BENCH_REPORT=$report go test -tags e2e,bench -count=1 -timeout 180m -run '^TestBenchFailover$' ./test/e2e/ >"$log" 2>&1; then
	cat "$log"
	echo "== failover benchmark FAILED (tables so far above)"
	exit 1
fi
cat "$report"
