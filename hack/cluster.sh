#!/usr/bin/env bash
# A one-node Kubernetes cluster on loopback, with berthd as the node's runtime.
#
# Usage: hack/cluster.sh up|demo|down|status|restart berthd|kubelet [--kill]
#
# up     builds what is missing (hack/kubernetes/build.sh, hack/build.sh), installs
#        berth (hack/install.sh), generates certificates and keys with openssl, and
#        starts as processes of its own, each PID recorded: etcd, kube-apiserver,
#        kube-controller-manager, kube-scheduler, berthd (/run/berth/berth.sock,
#        images through its registry mirrors from the local registry), kubelet and
#        kube-proxy (iptables). Waits for the node to be Ready.
# down   removes every pod through berthd, stops each process by its PID, and
#        removes what the cluster made: mounts, network namespaces, veths, the
#        KUBE-* iptables chains, the kubepods cgroups, kubelet's and etcd's state.
# demo   a Deployment of 3 httpd replicas, waited for until Available.
# status prints each process and the node.
# restart stops berthd or kubelet (SIGKILL with --kill) and starts it again.
#
# Everything listens on 127.0.0.1. The node is named 127.0.0.1: kubelet refuses a
# loopback --node-ip, but takes an IP given as its hostname for the InternalIP,
# so the apiserver reaches kubelet on loopback too.
# State, certificates, kubeconfigs and logs: $BERTH_CLUSTER_DIR (default
# /var/lib/berth-cluster); logs stay in $BERTH_CLUSTER_DIR/logs after down.
# kubectl: export KUBECONFIG=$BERTH_CLUSTER_DIR/admin.kubeconfig, PATH from `status`.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$BERTH_ROOT_DIR"

: "${BERTH_CLUSTER_DIR:=/var/lib/berth-cluster}"
dir=$BERTH_CLUSTER_DIR
pki=$dir/pki
logs=$dir/logs
pids=$dir/pids
node=127.0.0.1
service_cidr=10.96.0.0/16
kubelet_root=$dir/kubelet
berth_sock=/run/berth/berth.sock
berth_config=$dir/berth.toml
# berthd's store and records: apart from /var/lib/berth, which the CLI and other
# tests on a shared machine also use (a concurrent run wiped it once, under a
# running cluster). The socket and run state stay berthd's defaults (/run/berth).
: "${BERTH_CLUSTER_BERTH_ROOT:=$dir/berth}"
# In start order; stopped in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler berthd kubelet kube-proxy)

bin_dir() { "$BERTH_ROOT_DIR/hack/kubernetes/build.sh" --bin-dir; }

pid_of() { cat "$pids/$1.pid" 2>/dev/null || true; }
alive() {
    local p; p=$(pid_of "$1")
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null
}

# start NAME CMD...: runs CMD in the background with its output in logs/NAME.log.
start() {
    local name=$1; shift
    if alive "$name"; then
        log "$name already running (pid $(pid_of "$name"))"
        return
    fi
    log "starting $name"
    "$@" >>"$logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pids/$name.pid"
}

# wait_for WHAT SECONDS CMD...: retries CMD until it succeeds.
wait_for() {
    local what=$1 secs=$2; shift 2
    local t0=$SECONDS
    until "$@" >/dev/null 2>&1; do
        if [ $((SECONDS - t0)) -ge "$secs" ]; then
            log "timed out after ${secs}s waiting for $what"
            return 1
        fi
        sleep 0.5
    done
    log "$what after $((SECONDS - t0))s"
}

check_alive() {
    alive "$1" && return 0
    echo "--- tail of $logs/$1.log" >&2
    tail -n 30 "$logs/$1.log" >&2 || true
    die "$1 exited"
}

# --- certificates ---------------------------------------------------------------

# cert NAME CN ORG SANS: a key and a certificate signed by the cluster CA.
cert() {
    local name=$1 cn=$2 org=$3 sans=$4
    [ -f "$pki/$name.crt" ] && return
    openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
    local subj="/CN=$cn"
    [ -n "$org" ] && subj="/O=$org$subj"
    openssl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr" 2>/dev/null
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=serverAuth,clientAuth"
        [ -n "$sans" ] && echo "subjectAltName=$sans"
    } >"$pki/$name.ext"
    openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" \
        -CAcreateserial -days 365 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt" 2>/dev/null
    rm -f "$pki/$name.csr" "$pki/$name.ext"
}

make_pki() {
    mkdir -p "$pki"
    chmod 0700 "$pki"
    if [ ! -f "$pki/ca.crt" ]; then
        openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
        openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=berth-cluster-ca" -days 365 -sha256 \
            -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
            -out "$pki/ca.crt" 2>/dev/null
    fi
    if [ ! -f "$pki/sa.key" ]; then
        openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
        openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
    fi
    local svc_ip=10.96.0.1
    cert apiserver kube-apiserver "" \
        "IP:127.0.0.1,IP:$svc_ip,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
    cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters ""
    cert admin kubernetes-admin system:masters ""
    cert controller-manager system:kube-controller-manager "" ""
    cert scheduler system:kube-scheduler "" ""
    cert kube-proxy system:kube-proxy "" ""
    cert kubelet-client "system:node:$node" system:nodes ""
    cert kubelet-serving "system:node:$node" system:nodes "IP:127.0.0.1,DNS:localhost"
}

# kubeconfig NAME CERT: a kubeconfig for the apiserver with CERT's client identity.
kubeconfig() {
    cat >"$dir/$1.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: berth
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: $pki/ca.crt
users:
- name: $1
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: berth
  context: {cluster: berth, user: $1}
current-context: berth
EOF
}

# --- the node's network ------------------------------------------------------------

# The pod network is berthd's: the first CNI config in its conf dir. kubelet gets
# the subnet of its host-local range as the node's pod CIDR, so both agree.
cni_conf_dir=/etc/cni/net.d
cni_config() {
    ls "$cni_conf_dir"/*.conflist "$cni_conf_dir"/*.conf "$cni_conf_dir"/*.json 2>/dev/null | sort | head -n1
}
pod_cidr() {
    local f; f=$(cni_config)
    [ -n "$f" ] || die "no CNI config in $cni_conf_dir (hack/install.sh writes one)"
    jq -r '[.. | objects | .subnet? // empty] | first // empty' "$f"
}

start_berthd() {
    start berthd /usr/local/bin/berthd --config "$berth_config"
    wait_for "berthd serving $berth_sock" 30 crictl --runtime-endpoint "unix://$berth_sock" version \
        || check_alive berthd
}
start_kubelet() {
    start kubelet "$bin/kubelet" --config="$dir/kubelet.yaml" --kubeconfig="$dir/kubelet.kubeconfig" \
        --root-dir="$kubelet_root" --hostname-override="$node" --v=2
    wait_for "kubelet healthy" 60 curl -fsS http://127.0.0.1:10248/healthz || check_alive kubelet
}

# restart berthd|kubelet [--kill]: stops one of them (SIGTERM, or SIGKILL with
# --kill, as a crash would) and starts it again, for the fault tests.
restart() {
    local name=${1:-} how=${2:-}
    case "$name" in berthd|kubelet) ;; *) die "restart: berthd or kubelet" ;; esac
    alive "$name" || die "$name is not running"
    bin=$(bin_dir)
    export PATH="$bin:$PATH"
    local p; p=$(pid_of "$name")
    if [ "$how" = --kill ]; then
        kill -KILL "$p"
        while kill -0 "$p" 2>/dev/null; do sleep 0.1; done
        log "killed $name (pid $p) with SIGKILL"
    else
        stop_pid "$name" 30
    fi
    "start_$name"
}

# --- up --------------------------------------------------------------------------

write_configs() {
    local cidr=$1
    cat >"$berth_config" <<EOF
# berthd for hack/cluster.sh: the defaults (berthd config default) but its root,
# and the registries Kubernetes' manifests name served by the local registry.
root = "$BERTH_CLUSTER_BERTH_ROOT"

[registry.mirrors]
"docker.io" = ["$BERTH_REGISTRY_ADDR"]
"registry.k8s.io" = ["$BERTH_REGISTRY_ADDR"]
"gcr.io" = ["$BERTH_REGISTRY_ADDR"]
"quay.io" = ["$BERTH_REGISTRY_ADDR"]
EOF
    cat >"$dir/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroup v1 controllers (hybrid) and no systemd; kubelet 1.35+
# refuses v1 unless told. The cgroup driver comes from berthd (RuntimeConfig).
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$berth_sock
imageServiceEndpoint: unix://$berth_sock
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
tlsCertFile: $pki/kubelet-serving.crt
tlsPrivateKeyFile: $pki/kubelet-serving.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
podCIDR: $cidr
clusterDomain: cluster.local
resolvConf: /etc/resolv.conf
podLogsDir: $dir/pod-logs
cgroupsPerQOS: true
cgroupRoot: /
enforceNodeAllocatable: [pods]
serializeImagePulls: false
# The host's disk is shared: no image GC or evictions triggered by others' files.
imageGCHighThresholdPercent: 95
imageGCLowThresholdPercent: 90
evictionHard:
  memory.available: "100Mi"
  nodefs.available: "2%"
  imagefs.available: "2%"
  nodefs.inodesFree: "2%"
# Leaves the host's kernel settings as they are.
protectKernelDefaults: false
makeIPTablesUtilChains: true
EOF
    cat >"$dir/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: $dir/kube-proxy.kubeconfig
hostnameOverride: "$node"
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $cidr
nodePortAddresses: ["127.0.0.1/32"]
iptables:
  # NodePorts on 127.0.0.1 would need net.ipv4.conf.all.route_localnet=1.
  localhostNodePorts: false
conntrack:
  # Leaves the host's conntrack sysctls alone.
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

record_host() {
    # What the host had before up, for down to compare against.
    mkdir -p "$dir/before"
    [ -f "$dir/before/taken" ] && return
    ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | sort >"$dir/before/links"
    iptables_chains >"$dir/before/chains"
    # Ours (bridge-nf-call-iptables, ip_forward) and kubelet's kernel tunables,
    # which it sets at start (protectKernelDefaults: false).
    for f in net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables net.ipv4.ip_forward \
        vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops \
        kernel.keys.root_maxkeys kernel.keys.root_maxbytes; do
        echo "$f=$(sysctl -n "$f" 2>/dev/null || echo)"
    done >"$dir/before/sysctls"
    touch "$dir/before/taken"
}

up() {
    [ "$(id -u)" = 0 ] || die "run as root"
    for tool in openssl jq iptables conntrack curl; do
        command -v "$tool" >/dev/null || die "$tool is missing: run hack/setup.sh"
    done
    mkdir -p "$dir" "$logs" "$pids" "$kubelet_root" "$dir/pod-logs"

    bin=$(bin_dir)
    if [ ! -x "$bin/kubelet" ] || [ ! -x "$bin/crictl" ]; then
        log "building the Kubernetes binaries (hack/kubernetes/build.sh)"
        "$BERTH_ROOT_DIR/hack/kubernetes/build.sh" >/dev/null
    fi
    export PATH="$bin:$PATH"
    if [ ! -x target/release/berthd ]; then
        log "building berth (hack/build.sh)"
        nice -n 19 "$BERTH_ROOT_DIR/hack/build.sh"
    fi
    "$BERTH_ROOT_DIR/hack/install.sh"
    "$BERTH_ROOT_DIR/hack/registry.sh" status >/dev/null 2>&1 \
        || "$BERTH_ROOT_DIR/hack/registry.sh" start

    record_host
    make_pki
    kubeconfig admin admin
    kubeconfig controller-manager controller-manager
    kubeconfig scheduler scheduler
    kubeconfig kube-proxy kube-proxy
    kubeconfig kubelet kubelet-client
    local cidr; cidr=$(pod_cidr)
    [ -n "$cidr" ] || die "no subnet in $(cni_config)"
    write_configs "$cidr"

    # kubelet asks every container for hugetlb limits (0 for each page size in
    # /sys/kernel/mm/hugepages); berth-runtime fails when the hugetlb controller is
    # not mounted, where containerd (tolerate_missing_hugetlb_controller) skips them.
    # This host leaves the v1 hugetlb controller unmounted: mount it (down unmounts it).
    # docs/kubernetes-gaps.md, gap 2.
    if grep -qw hugetlb /proc/cgroups && ! grep -qE ' cgroup .*hugetlb' /proc/self/mounts \
        && [ ! -e /sys/fs/cgroup/cgroup.controllers ]; then
        mkdir -p /sys/fs/cgroup/hugetlb
        mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
        touch "$dir/before/mounted-hugetlb"
        log "mounted the hugetlb cgroup controller at /sys/fs/cgroup/hugetlb"
    fi

    # Pods on the bridge reach Services through kube-proxy's rules only if bridged
    # traffic goes through iptables (restored by down).
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1

    start etcd "$bin/etcd" --name berth --data-dir "$dir/etcd" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster berth=http://127.0.0.1:2380 --listen-metrics-urls http://127.0.0.1:2381 \
        --log-level warn
    wait_for "etcd healthy" 60 curl -fsS http://127.0.0.1:2381/health || check_alive etcd

    # The kubernetes Service gets no endpoints: endpoints may not be loopback
    # addresses, and the apiserver listens on loopback only.
    start kube-apiserver "$bin/kube-apiserver" \
        --etcd-servers=http://127.0.0.1:2379 \
        --bind-address=127.0.0.1 --secure-port=6443 --advertise-address=127.0.0.1 \
        --endpoint-reconciler-type=none \
        --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
        --client-ca-file="$pki/ca.crt" \
        --kubelet-client-certificate="$pki/apiserver-kubelet-client.crt" \
        --kubelet-client-key="$pki/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority="$pki/ca.crt" \
        --kubelet-preferred-address-types=InternalIP,Hostname \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
        --service-cluster-ip-range="$service_cidr" \
        --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
        --allow-privileged=true --profiling=false
    wait_for "kube-apiserver ready" 120 curl -fsS --cacert "$pki/ca.crt" \
        --cert "$pki/admin.crt" --key "$pki/admin.key" https://127.0.0.1:6443/readyz || check_alive kube-apiserver

    start kube-controller-manager "$bin/kube-controller-manager" \
        --kubeconfig="$dir/controller-manager.kubeconfig" \
        --authentication-kubeconfig="$dir/controller-manager.kubeconfig" \
        --authorization-kubeconfig="$dir/controller-manager.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=10257 --leader-elect=false \
        --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
        --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
        --use-service-account-credentials=true --service-cluster-ip-range="$service_cidr" \
        --allocate-node-cidrs=false --profiling=false
    start kube-scheduler "$bin/kube-scheduler" \
        --kubeconfig="$dir/scheduler.kubeconfig" \
        --authentication-kubeconfig="$dir/scheduler.kubeconfig" \
        --authorization-kubeconfig="$dir/scheduler.kubeconfig" \
        --bind-address=127.0.0.1 --secure-port=10259 --leader-elect=false --profiling=false

    if [ -S "$berth_sock" ] && ! alive berthd; then
        die "$berth_sock is served by a berthd this script did not start"
    fi
    start_berthd
    start_kubelet
    start kube-proxy "$bin/kube-proxy" --config="$dir/kube-proxy.yaml" --v=2

    export KUBECONFIG=$dir/admin.kubeconfig
    wait_for "node $node registered" 120 kubectl get node "$node" || check_alive kubelet
    if ! kubectl wait --for=condition=Ready "node/$node" --timeout=120s >/dev/null; then
        check_alive kubelet
        kubectl describe node "$node" >&2 || true
        die "node $node is not Ready"
    fi
    for c in "${components[@]}"; do check_alive "$c"; done
    kubectl get node -o wide
    log "cluster up: export KUBECONFIG=$dir/admin.kubeconfig PATH=$bin:\$PATH"
}

# --- down ------------------------------------------------------------------------

stop_pid() {  # NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS
    local name=$1 secs=${2:-20} p
    p=$(pid_of "$name")
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then
        kill -TERM "$p" 2>/dev/null || true
        local i
        for ((i = 0; i < secs * 10; i++)); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$p" 2>/dev/null; then
            log "$name (pid $p) did not stop in ${secs}s: SIGKILL"
            kill -KILL "$p" 2>/dev/null || true
            sleep 0.2
        fi
        log "stopped $name (pid $p)"
    fi
    rm -f "$pids/$name.pid"
}

iptables_chains() {  # "table chain" for every chain of iptables, sorted
    local t
    for t in filter nat mangle raw; do
        iptables -t "$t" -S 2>/dev/null | awk -v t="$t" '$1 == "-N" {print t, $2}'
    done | sort
}

# Every iptables chain named KUBE-* (kubelet's and kube-proxy's), in every table,
# with the rules that jump to them.
remove_kube_chains() {
    local ipt
    for ipt in iptables ip6tables; do
        command -v "$ipt" >/dev/null || continue
        local table
        for table in filter nat mangle raw; do
            local rules chains
            rules=$("$ipt" -t "$table" -S 2>/dev/null) || continue
            chains=$(grep -oE '^-N KUBE-[A-Za-z0-9_-]+' <<<"$rules" | cut -d' ' -f2 || true)
            [ -n "$chains" ] || continue
            # Rules in other chains that jump to a KUBE- chain.
            local rule
            while read -r rule; do
                [ -n "$rule" ] || continue
                # shellcheck disable=SC2086
                eval "\"\$ipt\" -t \"\$table\" ${rule/-A /-D }" 2>/dev/null || true
            done < <(grep -E '^-A [^ ]+ .*-j KUBE-' <<<"$rules" | grep -vE '^-A KUBE-' || true)
            local c
            for c in $chains; do "$ipt" -t "$table" -F "$c" 2>/dev/null || true; done
            for c in $chains; do "$ipt" -t "$table" -X "$c" 2>/dev/null || true; done
        done
    done
}

# Removes the cgroups kubelet made (kubepods and its QoS and pod children) in
# every hierarchy, deepest first.
remove_kubepods_cgroups() {
    local root
    for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods; do
        [ -d "$root" ] || continue
        find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$root" ] && log "left $root (busy)"
    done
    return 0
}

down() {
    [ "$(id -u)" = 0 ] || die "run as root"
    bin=$(bin_dir)
    export PATH="$bin:$PATH"
    local crictl=(crictl --runtime-endpoint "unix://$berth_sock" --timeout 60s)

    stop_pid kube-proxy
    stop_pid kubelet 30
    # The pods, through berthd: stops their containers, CNI DEL (veths, IPs, the
    # plugins' iptables rules), network namespaces, mounts.
    if alive berthd; then
        # A restart first: berthd's recovery undoes calls kubelet abandoned
        # (docs/kubernetes-gaps.md, gap 1), which List does not show.
        stop_pid berthd
        start_berthd
        local pods
        pods=$("${crictl[@]}" pods -q 2>/dev/null || true)
        if [ -n "$pods" ]; then
            log "removing $(wc -w <<<"$pods") pods through berthd"
            for p in $pods; do "${crictl[@]}" stopp "$p" >/dev/null 2>&1 || true; done
            for p in $pods; do "${crictl[@]}" rmp -f "$p" >/dev/null 2>&1 || true; done
        fi
        local left; left=$("${crictl[@]}" ps -aq 2>/dev/null || true)
        [ -z "$left" ] || "${crictl[@]}" rm -f $left >/dev/null 2>&1 || true
    fi
    stop_pid berthd
    stop_pid kube-scheduler
    stop_pid kube-controller-manager
    stop_pid kube-apiserver
    stop_pid etcd

    # kubelet's volume mounts (tmpfs for tokens, bind mounts) under its root dir.
    if [ -d "$kubelet_root" ]; then
        grep -o " $kubelet_root[^ ]*" /proc/self/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    fi
    [ -x "$bin/kube-proxy" ] && "$bin/kube-proxy" --cleanup >>"$logs/kube-proxy.log" 2>&1 || true
    remove_kube_chains
    remove_kubepods_cgroups
    # Links the cluster's pods left (veths whose pod went without a CNI DEL).
    if [ -f "$dir/before/links" ]; then
        local l
        for l in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do
            grep -qx "$l" "$dir/before/links" || { ip link del "$l" 2>/dev/null && log "removed veth $l"; } || true
        done
    fi
    # The CNI plugins' shared chains (portmap's CNI-HOSTPORT-*, firewall's
    # CNI-FORWARD/CNI-ADMIN) serve every user of the CNI config on the host (berth
    # run too): they stay, but down says which ones the cluster added.
    if [ -f "$dir/before/chains" ]; then
        local added
        added=$(comm -13 "$dir/before/chains" <(iptables_chains) | tr '\n' ' ')
        [ -z "$added" ] || log "iptables chains added while the cluster ran (left, shared with the CNI config's other users): $added"
    fi
    if [ -f "$dir/before/sysctls" ]; then
        local kv
        while IFS= read -r kv; do
            [ -n "${kv#*=}" ] && sysctl -qw "$kv" 2>/dev/null || true
        done <"$dir/before/sysctls"
    fi
    if [ -f "$dir/before/mounted-hugetlb" ]; then
        umount /sys/fs/cgroup/hugetlb 2>/dev/null && rmdir /sys/fs/cgroup/hugetlb 2>/dev/null \
            && log "unmounted the hugetlb cgroup controller" || log "left /sys/fs/cgroup/hugetlb mounted (busy)"
    fi
    rm -rf "$dir/etcd" "$kubelet_root" "$dir/pod-logs" "$pids" "$dir/before"
    log "cluster down (logs kept in $logs)"
}

status() {
    local bin; bin=$(bin_dir)
    local c rc=0
    for c in "${components[@]}"; do
        if alive "$c"; then
            printf '%-24s running (pid %s)\n' "$c" "$(pid_of "$c")"
        else
            printf '%-24s stopped\n' "$c"
            rc=1
        fi
    done
    if alive kube-apiserver && [ -x "$bin/kubectl" ]; then
        KUBECONFIG=$dir/admin.kubeconfig "$bin/kubectl" get node -o wide || rc=1
    fi
    echo "export KUBECONFIG=$dir/admin.kubeconfig PATH=$bin:\$PATH"
    return $rc
}

# demo: a Deployment of 3 httpd replicas on berth, Available, and its pods.
demo() {
    alive kube-apiserver || die "no cluster: run $0 up"
    local bin; bin=$(bin_dir)
    export KUBECONFIG=$dir/admin.kubeconfig PATH=$bin:$PATH
    kubectl get deployment web >/dev/null 2>&1 \
        || kubectl create deployment web --image=docker.io/library/httpd:latest --replicas=3
    kubectl rollout status deployment/web --timeout=120s
    kubectl get pods -l app=web -o wide
    kubectl get node -o wide
}

case "${1:-}" in
    up) up ;;
    demo) demo ;;
    down) down ;;
    status) status ;;
    restart) shift; restart "$@" ;;
    *) echo "usage: $0 up|demo|down|status|restart berthd|kubelet [--kill]" >&2; exit 2 ;;
esac
