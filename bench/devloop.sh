#!/usr/bin/env bash
# Prints the developer-loop figures the README quotes: a no-op `make tools` (everything cached)
# and a warm `make test-short`. The rig's start-up times and memory come from the Go benchmark
# BenchmarkRigStart (internal/testrig), which `make bench` runs first.
set -euo pipefail
cd "$(dirname "$0")/.."

measure() { # label command...
	local start end
	start=$(date +%s.%N)
	"${@:2}" >/dev/null 2>&1
	end=$(date +%s.%N)
	awk -v l="$1" -v s="$start" -v e="$end" 'BEGIN { printf "%-28s %6.2f s\n", l, e - s }'
}

echo "== developer loop (warm caches)"
measure "make tools (no-op)" make tools
measure "make test-short" make test-short
