#!/usr/bin/env bash
# Runs Debian's docker-registry (the distribution v2 registry) on 127.0.0.1 for the
# test images. Usage: hack/registry.sh start|stop|status
# Storage: $BERTH_REGISTRY_DIR (default /var/tmp/berth-registry); port
# $BERTH_REGISTRY_PORT (default 5000). Stopped by the PID it records.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

pidfile="$BERTH_REGISTRY_DIR/registry.pid"

running() {
    [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

healthy() {
    curl -fsS -o /dev/null "http://$BERTH_REGISTRY_ADDR/v2/" 2>/dev/null
}

start() {
    command -v docker-registry >/dev/null || die "docker-registry is not installed: run hack/setup.sh"
    if running && healthy; then
        log "registry already running on $BERTH_REGISTRY_ADDR (pid $(cat "$pidfile"))"
        return
    fi
    mkdir -p "$BERTH_REGISTRY_DIR/storage"
    cat >"$BERTH_REGISTRY_DIR/config.yml" <<YML
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $BERTH_REGISTRY_DIR/storage
  delete:
    enabled: true
http:
  addr: $BERTH_REGISTRY_ADDR
YML
    nohup docker-registry serve "$BERTH_REGISTRY_DIR/config.yml" \
        >"$BERTH_REGISTRY_DIR/registry.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 100); do
        if healthy; then
            log "registry serving on $BERTH_REGISTRY_ADDR (pid $(cat "$pidfile"))"
            return
        fi
        running || break
        sleep 0.1
    done
    cat "$BERTH_REGISTRY_DIR/registry.log" >&2 || true
    die "registry did not come up on $BERTH_REGISTRY_ADDR (is the port in use?)"
}

stop() {
    if running; then
        kill "$(cat "$pidfile")"
        for _ in $(seq 50); do running || break; sleep 0.1; done
        log "registry stopped"
    fi
    rm -f "$pidfile"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) if running && healthy; then echo "running on $BERTH_REGISTRY_ADDR"; else echo "stopped"; exit 1; fi ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
