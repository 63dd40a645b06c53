#!/usr/bin/env bash
# README command 2: the whole test suite, as root. Formatting and lints first, then
# every unit and integration test; the integration tests run real containers and
# use the local registry and test images (started and pushed here if missing).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT_DIR"

[ "$(id -u)" = 0 ] || die "run as root: the tests create namespaces, cgroups and mounts"
for tool in busybox docker-registry skopeo jq runc containerd htpasswd; do
    command -v "$tool" >/dev/null || die "$tool is missing: run hack/setup.sh first"
done
pkg-config --exists libseccomp || die "libseccomp-dev is missing: run hack/setup.sh first"

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings

"$BERTH_ROOT_DIR/hack/testimages.sh" --if-missing

log "building binaries for the integration tests"
cargo build --workspace --bins --quiet
export BERTH_BIN_DIR="$BERTH_ROOT_DIR/target/debug"

log "cargo test"
cargo test --workspace --no-fail-fast

# The fuzz targets over their regression corpus (fuzz/corpus/): every input once.
# Longer fuzzing: hack/fuzz.sh --seconds N. BERTH_LONG=1 above runs the load tests
# at the issue's sizes (100 pods × 2 containers, 1000 cycles).
if [ "${BERTH_SKIP_FUZZ:-}" != 1 ]; then
    "$BERTH_ROOT_DIR/hack/fuzz.sh" --corpus-only
fi

# critest and the cluster run the release binaries (hack/build.sh rebuilds only
# what changed since hack/setup.sh).
if [ "${BERTH_SKIP_CRITEST:-}" != 1 ] || [ "${BERTH_SKIP_CLUSTER:-}" != 1 ]; then
    log "release binaries for critest and the cluster"
    "$BERTH_ROOT_DIR/hack/build.sh"
fi

# critest v1.37.0 (cri-tools' CRI validation suite, built from its Go module by
# hack/kubernetes/build.sh) against a berthd of its own, and its streaming specs
# over WebSocket.
if [ "${BERTH_SKIP_CRITEST:-}" != 1 ]; then
    "$BERTH_ROOT_DIR/hack/critest/run.sh"
fi

# Kubernetes on berth: kubelet 1.37 and its control plane, built from the Go
# modules pinned in hack/kubernetes/go.mod (cached under /var/cache/berth), run
# as a one-node cluster on loopback (hack/cluster.sh) with berthd as the node's
# runtime; the checks go through kubectl (hack/kubernetes/test-cluster.sh), and
# down leaves the host as it was, also when a check fails.
if [ "${BERTH_SKIP_CLUSTER:-}" != 1 ]; then
    log "the one-node Kubernetes cluster on berth"
    "$BERTH_ROOT_DIR/hack/kubernetes/build.sh" >/dev/null
    trap '"$BERTH_ROOT_DIR/hack/cluster.sh" down' EXIT
    "$BERTH_ROOT_DIR/hack/cluster.sh" up
    "$BERTH_ROOT_DIR/hack/kubernetes/test-cluster.sh"
    trap - EXIT
    "$BERTH_ROOT_DIR/hack/cluster.sh" down
fi
