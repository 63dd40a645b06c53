# Shared settings for berth's hack scripts; sourced, not run.
# Override any of these in the environment.
BERTH_ROOT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BERTH_REGISTRY_PORT:=5000}"
: "${BERTH_REGISTRY_ADDR:=127.0.0.1:${BERTH_REGISTRY_PORT}}"
: "${BERTH_REGISTRY_DIR:=/var/tmp/berth-registry}"
: "${BERTH_TESTIMAGES_DIR:=${BERTH_ROOT_DIR}/target/testimages}"
export BERTH_REGISTRY_PORT BERTH_REGISTRY_ADDR BERTH_REGISTRY_DIR BERTH_TESTIMAGES_DIR

die() { echo "error: $*" >&2; exit 1; }
log() { echo "==> $*" >&2; }
# Go (for hack/kubernetes/build.sh) from its own tarball lives in /usr/local/go,
# which a non-login shell may not have on PATH.
if [ -d /usr/local/go/bin ] && [[ ":$PATH:" != *:/usr/local/go/bin:* ]]; then
    PATH=$PATH:/usr/local/go/bin
fi
export PATH
