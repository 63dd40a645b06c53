#!/usr/bin/env bash
# critest (cri-tools' CRI validation suite, v1.37.0 from the Go module pinned in
# hack/kubernetes/go.mod) against a berthd of its own (hack/critest/prepare.sh),
# then its streaming specs again over WebSocket. Fails on any failed spec.
#
# One spec is skipped, with its reason: "public image with digest should be
# pulled and removed" pulls gcr.io/k8s-staging-cri-tools/test-image-digest by a
# digest that no image built here can have, and gcr.io is out of reach offline.
#
# Usage: hack/critest/run.sh   (after hack/setup.sh; the berthd is stopped at the end)
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$BERTH_ROOT_DIR"

bin=$("$BERTH_ROOT_DIR/hack/kubernetes/build.sh")
[ -x "$bin/critest" ] || die "critest was not built into $bin"
out=$(mktemp -d)
trap '"$BERTH_ROOT_DIR/hack/critest/prepare.sh" stop >/dev/null 2>&1; rm -rf "$out"' EXIT
"$BERTH_ROOT_DIR/hack/critest/prepare.sh"

sock=unix:///run/berth-critest/berth.sock
skip='public image with digest should be pulled and removed'
run() {  # NAME ARGS...: one critest run, its summary line kept
    local name=$1; shift
    log "critest $("$bin/critest" --version 2>/dev/null | sed -n "s/.*version: //p"): $name"
    local rc=0
    # critest runs from its own directory: it writes nothing into the source tree.
    (cd "$out" && "$bin/critest" --runtime-endpoint "$sock" --image-endpoint "$sock" \
        --ginkgo.no-color "$@" >"$out/$name.log" 2>&1) || rc=$?
    grep -E '^(Ran |SUCCESS|FAIL!|  \[FAIL\])' "$out/$name.log" || true
    if [ "$rc" != 0 ]; then
        grep -A 30 '\[FAILED\]' "$out/$name.log" | head -n 120 || tail -n 60 "$out/$name.log"
        die "critest ($name) failed"
    fi
}
run all --ginkgo.skip "$skip"
run websocket --websocket-exec --websocket-attach --websocket-portforward --ginkgo.focus Streaming
