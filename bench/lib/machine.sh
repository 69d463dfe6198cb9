#!/usr/bin/env bash
# The head of a results file: the date and the machine the figures were measured on.
set -euo pipefail
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD 2>/dev/null || commit="$commit (with uncommitted changes)"
printf '# mpha benchmarks, %s\n\n' "$(date -u '+%Y-%m-%d %H:%M UTC')"
printf '| machine | |\n|---|---|\n'
printf '| host | %s |\n' "$(hostname -s)"
printf '| CPU | %s, %s cores |\n' "${cpu:-unknown}" "$(nproc)"
printf '| memory | %s |\n' "$mem"
printf '| kernel | %s |\n' "$(uname -sr)"
printf '| Go | %s |\n' "$(go env GOVERSION)"
printf '| mpha commit | %s |\n' "$commit"
printf '| load average at start | %s |\n\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
printf '%s\n\n' 'The output of `make bench`: the Go benchmarks (ns/op per operation, B/op heap allocated per operation), then each bench/*.sh (bench/README.md says what each measures).'
