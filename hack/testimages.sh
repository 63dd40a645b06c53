#!/usr/bin/env bash
# Builds berth's test images (hack/testimages) as OCI layouts and pushes them to the
# local registry as $BERTH_REGISTRY_ADDR/library/<name>:latest with skopeo.
# Usage: hack/testimages.sh [--if-missing]
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT_DIR"

"$BERTH_ROOT_DIR/hack/registry.sh" start

# The catalogue's source, hashed: a changed catalogue means images to rebuild.
catalogue=$(cat hack/testimages/src/*.rs | sha256sum | cut -d' ' -f1)
if [ "${1:-}" = "--if-missing" ] && [ -f "$BERTH_TESTIMAGES_DIR/digests.tsv" ] \
    && [ "$(cat "$BERTH_TESTIMAGES_DIR/catalogue" 2>/dev/null)" = "$catalogue" ]; then
    missing=0
    [ -f "$BERTH_TESTIMAGES_DIR/big/digests.tsv" ] || missing=1
    while IFS=$'\t' read -r name tag digest; do
        got=$(skopeo inspect --raw --tls-verify=false "docker://$BERTH_REGISTRY_ADDR/library/$name:$tag" 2>/dev/null | sha256sum | cut -d' ' -f1) || true
        [ "sha256:$got" = "$digest" ] || { missing=1; break; }
    done < <(cat "$BERTH_TESTIMAGES_DIR/digests.tsv" "$BERTH_TESTIMAGES_DIR/big/digests.tsv" 2>/dev/null)
    if [ "$missing" = 0 ]; then
        log "test images already in the registry"
        exit 0
    fi
fi

log "building test images into $BERTH_TESTIMAGES_DIR"
cargo run --quiet --release -p berth-testimages -- --busybox /bin/busybox --out "$BERTH_TESTIMAGES_DIR"

while IFS=$'\t' read -r name tag digest; do
    log "pushing library/$name:$tag ($digest)"
    skopeo copy --quiet --all --preserve-digests --dest-tls-verify=false \
        "oci:$BERTH_TESTIMAGES_DIR/$name:$tag" "docker://$BERTH_REGISTRY_ADDR/library/$name:$tag"
done <"$BERTH_TESTIMAGES_DIR/digests.tsv"

# The large image of the pull benchmark, which the fault and load tests pull too
# (a full disk during a pull, berthd's answers during a large pull): 260 MiB in
# 8 layers, the same bytes on every machine (a seeded generator).
log "building library/bench-big:latest (260 MiB, 8 layers)"
rm -rf "$BERTH_TESTIMAGES_DIR/big"
cargo run --quiet --release -p berth-testimages -- --big 260:8 --out "$BERTH_TESTIMAGES_DIR/big" >/dev/null
big_digest=$(cut -f3 "$BERTH_TESTIMAGES_DIR/big/digests.tsv")
skopeo copy --quiet --preserve-digests --dest-tls-verify=false \
    "oci:$BERTH_TESTIMAGES_DIR/big/big:latest" "docker://$BERTH_REGISTRY_ADDR/library/bench-big:latest"
printf 'bench-big\tlatest\t%s\n' "$big_digest" >"$BERTH_TESTIMAGES_DIR/big/digests.tsv"
echo "$catalogue" >"$BERTH_TESTIMAGES_DIR/catalogue"
