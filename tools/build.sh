#!/usr/bin/env bash
# Builds the real components the tests run (kube-apiserver, etcd, nats-server, Flux source- and
# kustomize-controller, the sealed-secrets controller, Gitea, external-dns) and staticcheck into
# bin/, each from its own module under tools/ at the version pinned there: their Kubernetes library
# versions conflict, so they cannot share one go.mod, and the product's go.mod never sees them.
#
# Built binaries are kept in a machine-wide cache ($MPHA_TOOLS_CACHE, default ~/.cache/mpha-tools)
# keyed by a hash of the module's go.mod, go.sum, its build recipe and the Go version, so a fresh clone
# (CI) links them into bin/ in milliseconds and a second `make tools` is a no-op.
#
# usage: tools/build.sh [name...]   (default: all)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
bin=${MPHA_BIN:-$root/bin}
cache=${MPHA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mpha-tools}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local
mkdir -p "$bin" "$cache"

# key NAME: what a tool's build depends on: its module's go.mod and go.sum, its recipe below, Go.
key() {
	{ cat "$here/$1/go.mod" "$here/$1/go.sum" 2>/dev/null; declare -f "build_$1"; go env GOVERSION; } |
		sha256sum | cut -c1-16
}

# modroot DIR MODULE: where the module cache holds MODULE's files (for CRDs and assets).
modroot() { (cd "$here/$1" && go list -m -f '{{.Dir}}' "$2"); }

build_kube() {
	local v=v1.34.2 minor=34
	# Without these the server reports "v0.0.0-master+$Format:%H$", which kubectl cannot parse.
	local ld="-s -w -X k8s.io/component-base/version.gitVersion=$v -X k8s.io/component-base/version.gitMajor=1"
	ld="$ld -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
	(cd "$here/kube" && go build -ldflags "$ld" -o "$1/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver)
}

build_etcd() { (cd "$here/etcd" && go build -ldflags '-s -w' -o "$1/etcd" .); }

build_nats() { (cd "$here/nats" && go build -ldflags '-s -w' -o "$1/nats-server" github.com/nats-io/nats-server/v2); }

build_flux() {
	(cd "$here/flux" &&
		go build -ldflags '-s -w' -o "$1/source-controller" github.com/fluxcd/source-controller &&
		go build -ldflags '-s -w' -o "$1/kustomize-controller" github.com/fluxcd/kustomize-controller)
	mkdir -p "$1/crds"
	cp "$(modroot flux github.com/fluxcd/source-controller)"/config/crd/bases/*.yaml "$1/crds/"
	cp "$(modroot flux github.com/fluxcd/kustomize-controller)"/config/crd/bases/*.yaml "$1/crds/"
	chmod -R u+w "$1/crds"
}

build_sealed() {
	(cd "$here/sealed" && go build -ldflags '-s -w' -o "$1/sealed-secrets-controller" github.com/bitnami/sealed-secrets/cmd/controller)
	mkdir -p "$1/crds"
	cp "$(modroot sealed github.com/bitnami/sealed-secrets)"/helm/sealed-secrets/crds/*.yaml "$1/crds/"
	chmod -R u+w "$1/crds"
}

build_gitea() {
	local tags='sqlite sqlite_unlock_notify'
	# main.Version must be set: the Gitea SDK refuses a server whose version is "development".
	(cd "$here/gitea" && CGO_ENABLED=1 go build -tags "$tags" \
		-ldflags "-s -w -X main.Version=1.26.0 -X 'main.Tags=$tags'" -o "$1/gitea" code.gitea.io/gitea)
	# Without the bindata tag Gitea reads options/ (locales, licences) from STATIC_ROOT_PATH at start.
	mkdir -p "$1/gitea-static"
	cp -r "$(modroot gitea code.gitea.io/gitea)/options" "$1/gitea-static/"
	chmod -R u+w "$1/gitea-static"
}

# CRDs of objects mpha writes for controllers the rig does not run: Flux's HelmRelease (the
# standby's MP) and external-dns's DNSEndpoint (the floating FQDN). Stored, never reconciled.
build_crds() {
	local m dir
	mkdir -p "$1/crds"
	for m in github.com/fluxcd/helm-controller@v1.4.0:config/crd/bases/helm.toolkit.fluxcd.io_helmreleases.yaml \
		sigs.k8s.io/external-dns@v0.19.0:config/crd/standard/dnsendpoints.externaldns.k8s.io.yaml; do
		dir=$(cd "$here/flux" && go mod download -json "${m%%:*}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
		[ -n "$dir" ] || { echo "tools: cannot download ${m%%:*}" >&2 && return 1; }
		cp "$dir/${m#*:}" "$1/crds/"
	done
	chmod -R u+w "$1/crds"
}

# external-dns with all its providers (its main imports every cloud SDK, hence the long build); the
# version comes from tools/externaldns/go.mod and must match the DNSEndpoint CRD build_crds copies.
# v0.19.0 needs Go 1.24, so the local toolchain builds it; a version needing a newer Go (v0.23 needs
# 1.27) would set GOTOOLCHAIN=go1.27.x here, for this recipe only.
build_externaldns() {
	local v
	v=$(cd "$here/externaldns" && go list -m -f '{{.Version}}' sigs.k8s.io/external-dns)
	(cd "$here/externaldns" && CGO_ENABLED=0 go build \
		-ldflags "-s -w -X sigs.k8s.io/external-dns/pkg/apis/externaldns.Version=$v" -o "$1/external-dns" sigs.k8s.io/external-dns)
}

build_lint() { (cd "$here/lint" && go build -o "$1/staticcheck" honnef.co/go/tools/cmd/staticcheck); }

# Minutes each tool's cold build took on 2 cores (empty module and build caches; measured
# 2026-12-03), for the progress lines: a newcomer's first `make tools` is long, and says so.
# externaldns: 1.5 min of downloads, then 28 min on the shared machine at load 10-15, i.e. 13 min
# of CPU (user+sys): about 9 min on 2 idle cores.
declare -A cold_minutes=([kube]=17 [etcd]=2 [nats]=1 [flux]=15 [sealed]=3 [gitea]=5 [externaldns]=9 [crds]=1 [lint]=1)

# pending NAME...: those of NAMEs whose build is not in the cache.
pending() {
	local n
	for n in "$@"; do [ -e "$cache/$n-$(key "$n")/.done" ] || echo "$n"; done
}

# minutes NAME...: their cold build time, summed.
minutes() {
	local n m=0
	for n in "$@"; do m=$((m + ${cold_minutes[$n]:-1})); done
	echo "$m"
}

# install NAME: build NAME into the cache unless it is there, then link its files into bin/.
install() {
	local name=$1 k out
	k=$(key "$name")
	out="$cache/$name-$k"
	if [ ! -e "$out/.done" ]; then
		todo=("${todo[@]:1}")
		built=$((built + 1))
		echo "tools: [$built/$total] building $name (about ${cold_minutes[$name]:-1} min cold on 2 cores; then: ${todo[*]:-nothing}, about $(minutes "${todo[@]}") min more)"
		local start=$SECONDS
		rm -rf "$out.tmp" && mkdir -p "$out.tmp"
		# A line a minute while a long build prints nothing, so a person knows it is alive.
		(
			began=$(date +%s)
			while sleep 60; do echo "tools:   … $name: $((($(date +%s) - began) / 60)) min so far"; done
		) &
		ticker=$!
		"build_$name" "$out.tmp"
		kill "$ticker" 2>/dev/null || true
		ticker=
		touch "$out.tmp/.done" && rm -rf "$out" && mv "$out.tmp" "$out"
		# Older builds of the same tool are superseded: keep the cache bounded.
		find "$cache" -maxdepth 1 -name "$name-*" ! -name "$name-$k" -exec rm -rf {} +
		echo "tools: [$built/$total] built $name in $(((SECONDS - start) / 60))m$(((SECONDS - start) % 60))s (all so far: $((SECONDS / 60))m$((SECONDS % 60))s)"
	fi
	# Hard links when the cache shares bin/'s file system, copies otherwise.
	(cd "$out" && find . -type f ! -name .done) | while read -r f; do
		mkdir -p "$bin/$(dirname "$f")"
		if ! cmp -s "$out/$f" "$bin/$f"; then
			ln -f "$out/$f" "$bin/$f" 2>/dev/null || cp -f "$out/$f" "$bin/$f"
		fi
	done
}

all=(kube etcd nats flux sealed gitea externaldns crds lint)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for n in "${names[@]}"; do
	case $n in
	kube | etcd | nats | flux | sealed | gitea | externaldns | crds | lint) ;;
	*) echo "tools: unknown tool $n (known: ${all[*]})" >&2 && exit 2 ;;
	esac
done
mapfile -t todo < <(pending "${names[@]}")
total=${#todo[@]} built=0 ticker=
trap '[ -z "$ticker" ] || kill "$ticker" 2>/dev/null' EXIT
if [ "$total" -gt 0 ]; then
	echo "tools: $total of ${#names[@]} to build from source into $cache: ${todo[*]} (about $(minutes "${todo[@]}") min on 2 cores when cold; later runs link them in a second)"
fi
for n in "${names[@]}"; do install "$n"; done
[ "$total" -eq 0 ] || echo "tools: done in $((SECONDS / 60))m$((SECONDS % 60))s"
