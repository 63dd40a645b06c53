#!/usr/bin/env bash
# berth's main job, offline: run a container from the busybox image in the local
# registry that hack/setup.sh filled, with no daemon.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$BERTH_ROOT_DIR/target/release/berth" run --rm "localhost:${BERTH_REGISTRY_PORT}/library/busybox:latest" echo hello from berth
