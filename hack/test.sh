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
