#!/usr/bin/env bash
# Builds the Kubernetes tools berth is tested under, from the modules pinned in
# this folder's go.mod/go.sum, into a cache outside the source tree:
#
#   $BERTH_K8S_CACHE/<key>/bin/{kubelet,kube-apiserver,kube-controller-manager,
#       kube-scheduler,kube-proxy,kubectl,etcd,crictl,critest}   (and e2e.test with --all)
#
# <key> is a hash of go.mod, go.sum, this script and the Go version, so a change
# of pins (or of how they are built) builds anew and an unchanged one reuses the
# binaries. Go's module and build caches live under $BERTH_GO_CACHE, kept across
# runs, so even a new key recompiles only what changed.
#
# Usage: build.sh [--all] [--bin-dir]
#   --all      also e2e.test (go test -c k8s.io/kubernetes/test/e2e)
#   --bin-dir  print the bin directory for the current pins and exit (builds nothing)
# The last line printed on stdout is the bin directory. Build times are appended
# to <key>/build-times.txt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

: "${BERTH_K8S_CACHE:=/var/cache/berth/kubernetes}"
: "${BERTH_GO_CACHE:=/var/cache/berth/go}"
export GOMODCACHE="$BERTH_GO_CACHE/mod" GOCACHE="$BERTH_GO_CACHE/build"
# The pins need Go 1.26.6 (cri-tools); an older local Go fetches that toolchain
# from the module proxy rather than failing.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}"
export GOFLAGS="-mod=readonly -buildvcs=false" CGO_ENABLED=0

all=0 print_only=0
for a in "$@"; do
    case "$a" in
        --all) all=1 ;;
        --bin-dir) print_only=1 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "unknown argument: $a" >&2; exit 2 ;;
    esac
done

cd "$here"
command -v go >/dev/null || { echo "error: go is not on PATH" >&2; exit 1; }
gover=$(go env GOVERSION)
key=$(cat go.mod go.sum build.sh <(echo "$gover") | sha256sum | cut -c1-16)
out="$BERTH_K8S_CACHE/$key"
bin="$out/bin"
if [ "$print_only" = 1 ]; then echo "$bin"; exit 0; fi
mkdir -p "$bin" "$GOMODCACHE" "$GOCACHE"

modver() { go list -m -f '{{if .Replace}}{{.Replace.Version}}{{else}}{{.Version}}{{end}}' "$1"; }
k8s_ver=$(modver k8s.io/kubernetes)
cri_ver=$(modver sigs.k8s.io/cri-tools)
etcd_ver=$(modver go.etcd.io/etcd/server/v3)
minor=${k8s_ver#v1.}; minor=${minor%%.*}
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)
# What Kubernetes' own build stamps (hack/lib/version.sh): kubelet reports it to the
# apiserver, and kubectl and the e2e framework compare versions.
k8s_ldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X $p.gitVersion=$k8s_ver -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    k8s_ldflags+=" -X $p.gitCommit=module-$k8s_ver -X $p.gitTreeState=clean -X $p.buildDate=$now"
done
cri_ldflags="-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$cri_ver"
etcd_ldflags="-s -w"

# build NAME GO-ARGS... PACKAGE: runs `go GO-ARGS -o bin/NAME PACKAGE` at the lowest
# priority (the machine's cores are shared) unless bin/NAME exists; records the time.
build() {
    local name=$1; shift
    if [ -x "$bin/$name" ]; then
        echo "==> $name: cached ($bin/$name)" >&2
        return 0
    fi
    echo "==> building $name" >&2
    local t0=$SECONDS pkg=${*: -1} args=("${@:1:$#-1}")
    nice -n 19 go "${args[@]}" -o "$bin/$name.tmp" "$pkg"
    mv "$bin/$name.tmp" "$bin/$name"
    local dt=$((SECONDS - t0))
    echo "$(date -u +%FT%TZ) $name ${dt}s go=$gover cores=$(nproc)" >>"$out/build-times.txt"
    echo "==> $name built in ${dt}s" >&2
}

# Download once (the only step that needs the network), then build from the cache.
t0=$SECONDS
nice -n 19 go mod download
echo "==> modules ready in $((SECONDS - t0))s ($GOMODCACHE)" >&2

for c in kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl; do
    build "$c" build -trimpath -ldflags "$k8s_ldflags" "k8s.io/kubernetes/cmd/$c"
done
build etcd build -trimpath -ldflags "$etcd_ldflags" go.etcd.io/etcd/server/v3
build crictl build -trimpath -ldflags "$cri_ldflags" sigs.k8s.io/cri-tools/cmd/crictl
build critest test -c -trimpath -ldflags "$cri_ldflags" sigs.k8s.io/cri-tools/cmd/critest
if [ "$all" = 1 ]; then
    build e2e.test test -c -trimpath -ldflags "$k8s_ldflags" k8s.io/kubernetes/test/e2e
fi
cat >"$out/versions.txt" <<EOF
kubernetes $k8s_ver
cri-tools $cri_ver
etcd $etcd_ver
go $gover
EOF
echo "$bin"
