#!/usr/bin/env bash
# berth's main job, offline: run a container from the busybox image in the local
# registry. Until `berth run` exists this pulls the image with skopeo, unpacks its
# layers into a bundle and runs it with berth-runtime.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
bin="$BERTH_ROOT_DIR/target/release"

work=$(mktemp -d /tmp/berth-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
skopeo copy --quiet --src-tls-verify=false \
    "docker://$BERTH_REGISTRY_ADDR/library/busybox:latest" "oci:$work/image:latest"
manifest=$(jq -r '.manifests[0].digest' "$work/image/index.json" | cut -d: -f2)
mkdir -p "$work/bundle/rootfs"
for layer in $(jq -r '.layers[].digest' "$work/image/blobs/sha256/$manifest" | cut -d: -f2); do
    tar -xzf "$work/image/blobs/sha256/$layer" -C "$work/bundle/rootfs"
done
cd "$work/bundle"
"$bin/berth-runtime" spec
jq '.process.terminal = false | .process.args = ["echo", "hello from berth"]' config.json >config.tmp
mv config.tmp config.json
"$bin/berth-runtime" run "berth-demo-$$"
