#!/usr/bin/env bash
# Prepares this machine for critest, offline: builds the images critest pulls
# (hack/testimages --critest) under their own repository paths and tags, pushes
# them to the local registry (127.0.0.1:5000, mirroring registry.k8s.io, gcr.io and
# docker.io) and to a second one (127.0.0.1:5001, mirroring k8s.gcr.io: its
# pause:3.9 must be a different image), writes a berthd config whose mirrors send
# those registries there, and starts that berthd on /run/berth-critest/berth.sock.
# docs/conformance.md has the critest commands and the results.
#
# Usage: hack/critest/prepare.sh [start|stop]
set -euo pipefail
source "$(dirname "$0")/../lib.sh"
cd "$BERTH_ROOT_DIR"
[ "$(id -u)" = 0 ] || die "run as root"

dir=/run/berth-critest
root=/var/lib/berth-critest
images="$BERTH_ROOT_DIR/target/critest-images"
second_port=5001

stop() {
    if [ -f "$dir/berthd.pid" ]; then
        kill "$(cat "$dir/berthd.pid")" 2>/dev/null || true
        sleep 1
    fi
    pkill -9 -f "berth-shim --id .* --state-dir $dir/" 2>/dev/null || true
    for c in "$dir"/runtime/*; do
        [ -e "$c" ] && "$BERTH_ROOT_DIR/target/release/berth-runtime" --root "$dir/runtime" delete --force "$(basename "$c")" || true
    done
    grep -o " $dir[^ ]*\| $root[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l || true
    ip link del critest0 2>/dev/null || true
    rm -rf "$dir"
    log "critest berthd stopped"
}

if [ "${1:-start}" = stop ]; then
    stop
    # The second registry serves critest alone (the first is the test suite's).
    BERTH_REGISTRY_PORT=$second_port BERTH_REGISTRY_ADDR=127.0.0.1:$second_port \
        BERTH_REGISTRY_DIR=/var/tmp/berth-registry-$second_port \
        "$BERTH_ROOT_DIR/hack/registry.sh" stop
    exit 0
fi

for tool in ldd skopeo ipcmk rustc dpkg-deb; do
    command -v "$tool" >/dev/null || die "$tool is missing: run hack/setup.sh"
done
[ -x target/release/berthd ] || "$BERTH_ROOT_DIR/hack/build.sh"

log "building critest's images into $images"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# A dynamically linked busybox (applets through $PATH), from Debian's package.
(cd "$work" && apt-get download -qq busybox >/dev/null 2>&1) || die "apt-get download busybox failed (run apt-get update)"
dpkg-deb -x "$work"/busybox_*.deb "$work/busybox"
for prog in nnp nginx; do
    rustc --edition 2024 -O -C target-feature=+crt-static -o "$work/$prog" "hack/critest/$prog.rs"
done
rm -rf "$images"
cargo run --quiet --release -p berth-testimages -- --critest --busybox "$work/busybox/bin/busybox" \
    --host-bin "$(command -v pgrep)" --host-bin "$(command -v ipcs)" --nnp "$work/nnp" --nginx "$work/nginx" --out "$images"

"$BERTH_ROOT_DIR/hack/registry.sh" start
BERTH_REGISTRY_PORT=$second_port BERTH_REGISTRY_ADDR=127.0.0.1:$second_port \
    BERTH_REGISTRY_DIR=/var/tmp/berth-registry-$second_port \
    "$BERTH_ROOT_DIR/hack/registry.sh" start
while IFS=$'\t' read -r registry ref layout; do
    port=$BERTH_REGISTRY_PORT
    [ "$registry" = 1 ] && port=$second_port
    log "pushing 127.0.0.1:$port/$ref"
    skopeo copy --quiet --dest-tls-verify=false "oci:$images/$layout:latest" "docker://127.0.0.1:$port/$ref"
done <"$images/critest.tsv"

stop
mkdir -p "$dir/cni"
cat >"$dir/cni/10-critest.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "critest", "plugins": [
  {"type": "bridge", "bridge": "critest0", "isGateway": true, "ipMasq": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.99.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}],
            "dataDir": "$dir/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
cat >"$dir/berth.toml" <<TOML
listen = "$dir/berth.sock"
root = "$root"
state = "$dir"
runtime = "$BERTH_ROOT_DIR/target/release/berth-runtime"
shim = "$BERTH_ROOT_DIR/target/release/berth-shim"

[registry.mirrors]
"registry.k8s.io" = ["127.0.0.1:$BERTH_REGISTRY_PORT"]
"gcr.io" = ["127.0.0.1:$BERTH_REGISTRY_PORT"]
"docker.io" = ["127.0.0.1:$BERTH_REGISTRY_PORT"]
"k8s.gcr.io" = ["127.0.0.1:$second_port"]

[cni]
conf_dir = "$dir/cni"
TOML
rm -rf "$root"
"$BERTH_ROOT_DIR/target/release/berthd" --config "$dir/berth.toml" >"$dir/berthd.log" 2>&1 &
echo $! >"$dir/berthd.pid"
for _ in $(seq 100); do [ -S "$dir/berth.sock" ] && break; sleep 0.05; done
[ -S "$dir/berth.sock" ] || die "berthd did not start: $(tail -3 "$dir/berthd.log")"
log "berthd for critest on unix://$dir/berth.sock (log: $dir/berthd.log); stop with: $0 stop"
