#!/usr/bin/env bash
# Failover latency (request → proposed / merged / applied / verified, p50/p99 over
# MPHA_BENCH_FAILOVERS failovers, default 50), secret rotation → commit (MPHA_BENCH_ROTATIONS,
# default 20) and both agents' RSS and CPU idle (MPHA_BENCH_IDLE, default 60s) and under a burst,
# on the e2e drill's two-cluster rig with short Flux intervals (test/e2e/bench_test.go).
# Takes about a minute per failover on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -tags e2e,bench -count=1 -timeout 180m -run '^TestBenchFailover$' ./test/e2e/ 2>&1 |
	grep -v -e '^PASS$' -e '^ok '
