#!/usr/bin/env bash
# README command 1: on a fresh Debian 12 machine, as root, with no internet beyond
# Debian's mirror and crates.io: install what berth needs, build the release
# binaries, fill the local registry with the test images, and run berth's main job.
# Usage: hack/setup.sh [--no-demo]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT_DIR"

demo=1
[ "${1:-}" = "--no-demo" ] && demo=0

[ "$(id -u)" = 0 ] || die "run as root: berth creates namespaces, cgroups and mounts"
command -v cargo >/dev/null || die "cargo is not installed: berth needs a Rust toolchain (1.88 or newer) on PATH"

# What berth builds and tests with. busybox-static is the test images' base;
# docker-registry and skopeo serve and push them; runc, crun and containerd are
# the side-by-side baselines for benchmarks, never part of berth.
packages=(
    build-essential pkg-config libseccomp-dev protobuf-compiler
    busybox-static docker-registry skopeo curl jq
    containernetworking-plugins iproute2 iptables util-linux procps
    runc crun containerd hyperfine time python3 apache2-utils
    openssl conntrack
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || die "package $p did not install"
done
# Debian's docker-registry package ships a service on :5000 with auth; berth runs
# its own instance on loopback, so keep the packaged one stopped.
if [ -x /etc/init.d/docker-registry ]; then
    /etc/init.d/docker-registry stop >/dev/null 2>&1 || true
fi

log "building release binaries"
"$BERTH_ROOT_DIR/hack/build.sh"

"$BERTH_ROOT_DIR/hack/testimages.sh" --if-missing

# kubelet, the control plane, kubectl, etcd, crictl and critest, from the Go modules
# pinned in hack/kubernetes/go.mod, for the test command's one-node cluster: built
# once into /var/cache/berth/kubernetes and reused while the pins stay.
log "building the Kubernetes tools (hack/kubernetes/build.sh; cached)"
"$BERTH_ROOT_DIR/hack/kubernetes/build.sh" >/dev/null

if [ "$demo" = 1 ]; then
    "$BERTH_ROOT_DIR/hack/demo.sh"
fi
