#!/usr/bin/env bash
# What a Go process holds in memory before it does anything: peak RSS of programs that only
# import a library (bench/rssfloor), beside `mpha version` and the agent's idle RSS's floor. Built
# as the image builds mpha (static, stripped). Prints a table; ~1 min (the builds).
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(mktemp -d); trap 'rm -rf "$out"' EXIT
build() { CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$out/$1" "$2"; }
build plain ./bench/rssfloor/plain
build leaderelection ./bench/rssfloor/leaderelection
build dynamic ./bench/rssfloor/dynamic
build mpha ./cmd/mpha
peak() { # best of 3: the page cache is warm after the first
	local best=
	for _ in 1 2 3; do
		kb=$(/usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1)
		if [ -z "$best" ] || [ "$kb" -lt "$best" ]; then best=$kb; fi
	done
	echo "$best"
}
echo "== rss-floor: peak RSS of a process that only imports (static, stripped builds; best of 3)"
printf '%-52s %10s %12s\n' program "binary MiB" "peak RSS MiB"
row() {
	local name=$1; shift
	kb=$(peak "$@")
	awk -v n="$name" -v b="$(stat -c %s "$1")" -v kb="$kb" 'BEGIN { printf "%-52s %10.1f %12.1f\n", n, b / 1048576, kb / 1024 }'
}
row "fmt only" "$out/plain"
row "k8s.io/client-go/tools/leaderelection" "$out/leaderelection"
row "client-go dynamic + cache + core/v1" "$out/dynamic"
row "mpha version" "$out/mpha" version
