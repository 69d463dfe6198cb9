#!/usr/bin/env bash
# The machine packages the tests use: PostgreSQL's server binaries (initdb, postgres,
# pg_basebackup), git (the test Git server execs it), unshare (the sealed-secrets controller runs
# in its own mount namespace), gcc (Gitea's SQLite driver is cgo), ca-certificates (the bundle
# `make image` copies into the container image) and bind9 (named: the rig's DNS server, which
# external-dns updates over RFC2136; on a host run by systemd the package also enables Debian's own
# named on port 53, which the rig does not use: `systemctl disable --now named` if unwanted).
#   tools/deps.sh check     say what is missing, exit 1 if anything is
#   tools/deps.sh install   apt-get install what is missing (idempotent)
#   tools/deps.sh bench     the same for the benchmarks' peers too (pgcopydb: make bench-db)
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v git >/dev/null || missing+=(git)
command -v unshare >/dev/null || missing+=(util-linux)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v make >/dev/null || missing+=(make)
[ -x /usr/sbin/named ] || command -v named >/dev/null || missing+=(bind9)
[ -s /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates) # the image's CA bundle (make image)

if [ "${1:-check}" = bench ]; then
	command -v pgcopydb >/dev/null || missing+=(pgcopydb)
	set -- install
fi

case ${1:-check} in
check)
	if [ ${#missing[@]} -gt 0 ]; then
		echo "missing Debian packages: ${missing[*]}: run \`make deps\`" >&2
		exit 1
	fi
	;;
install)
	[ ${#missing[@]} -eq 0 ] && exit 0
	sudo=""
	[ "$(id -u)" -eq 0 ] || sudo=sudo
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	# postgresql-15 is the server only: the Debian cluster wrapper's default instance is not started.
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
	;;
*) echo "usage: $0 check|install" >&2 && exit 2 ;;
esac
