#!/usr/bin/env bash
# Installs berth's release binaries into /usr/local/bin, a default
# /etc/berth/berth.toml and, where none exists, a CNI bridge network
# (/etc/cni/net.d/10-berth.conflist); with systemd running, the berthd unit.
# Existing config files are kept. Run hack/build.sh (or hack/setup.sh) first.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT_DIR"
[ "$(id -u)" = 0 ] || die "run as root"
for b in berth berthd berth-runtime berth-shim; do
    [ -x "target/release/$b" ] || die "target/release/$b is missing: run hack/build.sh"
    install -m 0755 "target/release/$b" "/usr/local/bin/$b"
done
log "installed berth, berthd, berth-runtime, berth-shim in /usr/local/bin"
if [ ! -f /etc/berth/berth.toml ]; then
    install -d -m 0755 /etc/berth
    /usr/local/bin/berthd config default >/etc/berth/berth.toml
    log "wrote /etc/berth/berth.toml (berthd config default)"
fi
install -d -m 0755 /etc/cni/net.d
if ! ls /etc/cni/net.d/*.conf* /etc/cni/net.d/*.json >/dev/null 2>&1; then
    install -m 0644 contrib/10-berth.conflist /etc/cni/net.d/10-berth.conflist
    log "wrote /etc/cni/net.d/10-berth.conflist (bridge berth0, 10.88.0.0/16)"
fi
if [ -d /run/systemd/system ]; then
    install -m 0644 contrib/berthd.service /etc/systemd/system/berthd.service
    systemctl daemon-reload
    log "installed berthd.service: systemctl enable --now berthd"
fi
