#!/usr/bin/env bash
# Checks, through kubectl, what a one-node cluster on berth must show (issue 17's
# "What the cluster must show"): each check passes or fails on its own, and the
# last line is "N passed, N failed".
#
# Usage: hack/kubernetes/test-cluster.sh [--up] [--down] [CHECK...]
#   --up     runs hack/cluster.sh up first; --down runs hack/cluster.sh down at the end
#   CHECK    names of checks to run (default: all); --list prints them
# Needs the cluster of hack/cluster.sh and the test images in the local registry
# (busybox, httpd), which berthd reaches through its docker.io mirror.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
: "${BERTH_CLUSTER_DIR:=/var/lib/berth-cluster}"
export KUBECONFIG=$BERTH_CLUSTER_DIR/admin.kubeconfig
bin=$("$here/build.sh" --bin-dir)
export PATH="$bin:$PATH"
ns=berth-test
node=127.0.0.1
busybox=docker.io/library/busybox:latest
httpd=docker.io/library/httpd:latest
crictl=(crictl --runtime-endpoint unix:///run/berth/berth.sock)

up=0 down=0 only=()
for a in "$@"; do
    case "$a" in
        --up) up=1 ;;
        --down) down=1 ;;
        --list) grep -oE '^check_[a-z_]+' "$0" | sed 's/^check_//'; exit 0 ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) only+=("$a") ;;
    esac
done

passed=0 failed=0 failures=()
k() { kubectl -n "$ns" "$@"; }
say() { echo "    $*"; }
# A check fails when it calls fail (which marks it) or returns non-zero.
failmark=$(mktemp)
fail() { echo "    FAIL: $*"; echo x >>"$failmark"; return 1; }

# wait_until SECONDS CMD...: retries CMD every half second.
wait_until() {
    local secs=$1; shift
    local t0=$SECONDS
    until "$@" >/dev/null 2>&1; do
        [ $((SECONDS - t0)) -ge "$secs" ] && return 1
        sleep 0.5
    done
}
# wait_eq SECONDS WANT CMD...: retries until CMD prints WANT.
wait_eq() {
    local secs=$1 want=$2; shift 2
    local t0=$SECONDS
    until [ "$("$@" 2>/dev/null)" = "$want" ]; do
        [ $((SECONDS - t0)) -ge "$secs" ] && return 1
        sleep 0.5
    done
}
# wait_ge SECONDS N CMD...: retries until CMD prints a number >= N.
wait_ge() {
    local secs=$1 n=$2; shift 2
    local t0=$SECONDS v
    while :; do
        v=$("$@" 2>/dev/null)
        [ -n "$v" ] && [ "$v" -ge "$n" ] 2>/dev/null && return 0
        [ $((SECONDS - t0)) -ge "$secs" ] && return 1
        sleep 0.5
    done
}
count_web() { k get pods -l app=web --no-headers 2>/dev/null | wc -l; }
jp() { k get "$1" -o jsonpath="$2" 2>/dev/null; }
pod_phase() { jp "pod/$1" '{.status.phase}'; }
pod_ready() { [ "$(jp "pod/$1" '{.status.conditions[?(@.type=="Ready")].status}')" = True ]; }
restarts() { jp "pod/$1" "{.status.containerStatuses[?(@.name==\"${2:-c}\")].restartCount}"; }
wait_ready() { wait_until "${2:-90}" pod_ready "$1" || fail "pod $1 not Ready: $(k get pod "$1" -o wide --no-headers 2>&1)"; }
phase_is() { [ "$(pod_phase "$1")" = "$2" ]; }

# pod NAME YAML-OF-SPEC: a pod in the test namespace, from the spec's YAML body.
pod() {
    local name=$1 spec=$2
    k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, labels: {test: $name}}
spec:
  terminationGracePeriodSeconds: 2
$spec
EOF
}

# --- checks ------------------------------------------------------------------

check_node() {
    local ver ready
    ready=$(kubectl get node "$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')
    ver=$(kubectl get node "$node" -o jsonpath='{.status.nodeInfo.containerRuntimeVersion}')
    kubectl get node -o wide | sed 's/^/    /'
    [ "$ready" = True ] || fail "node Ready=$ready"
    [[ "$ver" == berth://* ]] || fail "runtime version $ver"
}

check_deployment() {
    k apply -f - >/dev/null <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy: {rollingUpdate: {maxUnavailable: 1, maxSurge: 1}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: httpd
        image: $httpd
        imagePullPolicy: IfNotPresent
        ports: [{containerPort: 80}]
        readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
EOF
    k rollout status deploy/web --timeout=120s >/dev/null || fail "deployment web not rolled out"
    k wait --for=condition=Available deploy/web --timeout=60s >/dev/null || fail "web not Available"
    [ "$(jp deploy/web '{.status.availableReplicas}')" = 3 ] || fail "availableReplicas $(jp deploy/web '{.status.availableReplicas}')"
    k get pods -l app=web -o wide --no-headers | sed 's/^/    /'
}

check_rolling_update() {
    wait_eq 60 3 jp deploy/web '{.status.availableReplicas}' || check_deployment || return 1
    local before after
    before=$(k get pods -l app=web -o jsonpath='{.items[*].metadata.name}')
    k set env deploy/web ROLLOUT=2 >/dev/null || return 1
    k rollout status deploy/web --timeout=120s >/dev/null || fail "rollout did not finish"
    wait_eq 60 3 count_web || fail "old pods stayed"
    after=$(k get pods -l app=web -o jsonpath='{.items[*].metadata.name}')
    local p
    for p in $after; do
        [[ " $before " == *" $p "* ]] && { fail "pod $p was not replaced"; return 1; }
    done
    say "replaced: $before -> $after"
}

check_service() {
    wait_eq 60 3 jp deploy/web '{.status.availableReplicas}' || check_deployment || return 1
    k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 8080, targetPort: 80}]
EOF
    local ip; ip=$(jp svc/web '{.spec.clusterIP}')
    say "ClusterIP $ip"
    wait_until 30 curl -fsS --max-time 2 "http://$ip:8080/" || fail "no answer on $ip:8080 from the host"
    curl -fsS --max-time 2 "http://$ip:8080/" | grep -q "hello from berth" || fail "unexpected body"
    # From a pod, through the bridge (br_netfilter) and kube-proxy's rules.
    pod svc-client "  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}"
    wait_ready svc-client || return 1
    # (busybox-static's wget segfaults on this host, in a pod or not: nc instead.)
    local get="printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $ip 8080 | grep -q 'hello from berth'"
    wait_until 30 k exec svc-client -- sh -c "$get" \
        || fail "no answer on $ip:8080 from a pod: $(k exec svc-client -- sh -c "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $ip 8080" 2>&1)"
}

check_logs() {
    pod logger "  restartPolicy: Always
  containers:
  - name: c
    image: $busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'echo start \$(cat /proc/sys/kernel/random/uuid); i=0; while [ \$i -lt 4 ]; do echo line \$i; i=\$((i+1)); sleep 1; done; exit 3']"
    wait_until 60 phase_is logger Running || fail "logger not running" || return 1
    wait_until 20 sh -c "kubectl -n $ns logs logger | grep -q 'line 1'" || fail "logs: $(k logs logger 2>&1)"
    local first; first=$(k logs logger --timestamps 2>&1); first=${first%%$'\n'*}
    grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z start' <<<"$first" || fail "--timestamps: $first"
    timeout 15 kubectl -n "$ns" logs -f logger >"$BERTH_CLUSTER_DIR/logs/test-follow.log" 2>&1
    grep -q 'line 3' "$BERTH_CLUSTER_DIR/logs/test-follow.log" || fail "logs -f did not follow to the end: $(cat "$BERTH_CLUSTER_DIR/logs/test-follow.log")"
    wait_ge 60 1 restarts logger || fail "logger did not restart"
    local prev; prev=$(k logs logger --previous 2>&1)
    grep -q 'line 3' <<<"$prev" || fail "--previous: $prev"
    [ "$(jp pod/logger '{.status.containerStatuses[0].lastState.terminated.exitCode}')" = 3 ] \
        || fail "lastState exit code $(jp pod/logger '{.status.containerStatuses[0].lastState.terminated.exitCode}')"
}

shell_pod() {
    k get pod shell >/dev/null 2>&1 && return 0
    pod shell "  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}
  - {name: cat, image: $busybox, imagePullPolicy: IfNotPresent, command: [cat], stdin: true, stdinOnce: false}"
}

check_exec() {
    shell_pod; wait_ready shell || return 1
    [ "$(k exec shell -c c -- echo hello)" = hello ] || fail "exec echo"
    k exec shell -c c -- sh -c 'exit 7'; local rc=$?
    [ "$rc" = 7 ] || fail "exec exit code $rc, want 7"
    [ "$(echo piped | k exec -i shell -c c -- cat)" = piped ] || fail "exec -i"
    # -it through a pty (script gives kubectl a terminal).
    local out
    out=$(script -qec "kubectl -n $ns exec -it shell -c c -- sh -c 'tty; stty size'" /dev/null </dev/null 2>&1 | tr -d '\r')
    grep -q '/dev/pts/' <<<"$out" || fail "exec -it has no tty: $out"
}

check_attach() {
    shell_pod; wait_ready shell || return 1
    # The cat container echoes its stdin to stdout: attach, write, read it back.
    local out
    out=$( (echo attached-line; sleep 3) | timeout 10 kubectl -n "$ns" attach -i shell -c cat 2>/dev/null)
    grep -q attached-line <<<"$out" || fail "attach -i: '$out'"
}

check_port_forward() {
    pod pf "  containers:
  - {name: c, image: $httpd, imagePullPolicy: IfNotPresent}"
    wait_ready pf || return 1
    local port=18080
    kubectl -n "$ns" port-forward pod/pf "$port:80" >"$BERTH_CLUSTER_DIR/logs/test-pf.log" 2>&1 &
    local pfpid=$!
    local ok=0
    wait_until 20 curl -fsS --max-time 2 "http://127.0.0.1:$port/" && ok=1
    kill "$pfpid" 2>/dev/null; wait "$pfpid" 2>/dev/null
    [ "$ok" = 1 ] || fail "port-forward: $(cat "$BERTH_CLUSTER_DIR/logs/test-pf.log")"
}

check_cp() {
    shell_pod; wait_ready shell || return 1
    local t; t=$(mktemp -d)
    echo "to the pod $$" >"$t/in.txt"
    k cp "$t/in.txt" shell:/tmp/in.txt -c c >/dev/null 2>&1 || fail "cp to the pod"
    [ "$(k exec shell -c c -- cat /tmp/in.txt)" = "to the pod $$" ] || fail "cp in: content"
    k exec shell -c c -- sh -c 'echo from the pod > /tmp/out.txt'
    k cp shell:/tmp/out.txt "$t/out.txt" -c c >/dev/null 2>&1 || fail "cp from the pod"
    [ "$(cat "$t/out.txt" 2>/dev/null)" = "from the pod" ] || fail "cp out: content"
    rm -rf "$t"
}

check_probes() {
    pod probes "  containers:
  - name: c
    image: $httpd
    imagePullPolicy: IfNotPresent
    startupProbe: {tcpSocket: {port: 80}, periodSeconds: 1, failureThreshold: 30}
    readinessProbe: {httpGet: {path: /, port: 80}, periodSeconds: 1}
    livenessProbe: {exec: {command: [sh, -c, 'test -f /www/index.html']}, periodSeconds: 2}"
    wait_ready probes || return 1
    # A readiness probe that fails: not Ready, not restarted.
    pod unready "  containers:
  - name: c
    image: $busybox
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    readinessProbe: {exec: {command: ['false']}, periodSeconds: 1}"
    # A failing liveness probe restarts the container.
    pod liveness "  containers:
  - name: c
    image: $httpd
    imagePullPolicy: IfNotPresent
    livenessProbe: {httpGet: {path: /missing, port: 80}, periodSeconds: 1, failureThreshold: 2}"
    wait_ge 60 1 restarts liveness || fail "liveness restartCount $(restarts liveness)"
    k get events --field-selector involvedObject.name=liveness 2>/dev/null | grep -q 'Liveness probe failed' \
        || fail "no 'Liveness probe failed' event"
    wait_until 30 phase_is unready Running || fail "unready not running"
    pod_ready unready && fail "unready is Ready"
    [ "$(restarts unready)" = 0 ] || fail "unready restarted"
    [ "$(restarts probes)" = 0 ] || fail "probes restarted"
}

check_init_containers() {
    pod init "  initContainers:
  - {name: first, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo one > /work/order']}
  - {name: second, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo two >> /work/order']}
  - {name: sidecar, image: $busybox, imagePullPolicy: IfNotPresent, restartPolicy: Always, command: [sh, -c, 'echo sidecar >> /work/order; sleep 3600']}
  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo main >> /work/order; sleep 3600'], volumeMounts: [{name: w, mountPath: /work}]}
  volumes: [{name: w, emptyDir: {}}]"
    # The init containers mount the volume too.
    k get pod init -o json | jq '.spec.initContainers[].volumeMounts=[{"name":"w","mountPath":"/work"}]' \
        | k replace --force -f - >/dev/null 2>&1
    wait_ready init || return 1
    local order; order=$(k exec init -c c -- cat /work/order | tr '\n' ' ')
    [ "$order" = "one two sidecar main " ] || fail "order: $order"
    [ "$(jp pod/init '{.status.initContainerStatuses[?(@.name=="sidecar")].started}')" = true ] || fail "sidecar not running"
}

crashloop_backoff_event() {
    k get events --field-selector involvedObject.name=crashloop,reason=BackOff -o name | grep -q .
}
check_restart_policies() {
    pod onfailure "  restartPolicy: OnFailure
  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'if [ -f /tmp/x ]; then exit 0; fi; exit 1']}"
    pod never "  restartPolicy: Never
  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'exit 4']}"
    pod crashloop "  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo crashing; exit 42']}"
    pod succeeds "  restartPolicy: OnFailure
  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'exit 0']}"
    wait_until 60 phase_is never Failed || fail "never: phase $(pod_phase never)"
    [ "$(jp pod/never '{.status.containerStatuses[0].state.terminated.exitCode}')" = 4 ] || fail "never: exit code"
    [ "$(restarts never)" = 0 ] || fail "never restarted"
    wait_until 60 phase_is succeeds Succeeded || fail "succeeds: phase $(pod_phase succeeds)"
    wait_ge 60 1 restarts onfailure || fail "onfailure did not restart"
    # kubelet 1.37 requeues a pod in back-off only when the back-off ends, so the
    # Waiting/CrashLoopBackOff state is rarely published between two restarts (the
    # container's Terminated state stays): the back-off shows in kubelet's BackOff
    # event, and the exit code and reason in the container's state.
    wait_ge 90 2 restarts crashloop || fail "crashloop restartCount $(restarts crashloop)"
    wait_until 30 crashloop_backoff_event || fail "no BackOff event for crashloop"
    local st; st=$(jp pod/crashloop '{.status.containerStatuses[0].state.waiting.reason}')
    say "crashloop: restartCount $(restarts crashloop), waiting reason '${st}'"
    local last; last=$(jp pod/crashloop '{.status.containerStatuses[0].lastState.terminated.exitCode}/{.status.containerStatuses[0].lastState.terminated.reason}')
    [ "$last" = 42/Error ] || fail "crashloop lastState $last"
}

dead_crashloop_containers() {
    "${crictl[@]}" ps -a -q --state exited --label io.kubernetes.pod.name=crashloop \
        --label io.kubernetes.pod.namespace="$ns" 2>/dev/null | wc -l
}
few_dead_crashloop() { [ "$(dead_crashloop_containers)" -le 1 ]; }
check_container_gc() {
    # kubelet keeps one dead container per container (maxPerPodContainer) and
    # removes the rest through berthd's RemoveContainer, once a minute.
    k get pod crashloop >/dev/null 2>&1 || check_restart_policies || return 1
    wait_ge 120 3 restarts crashloop || fail "crashloop restartCount $(restarts crashloop)" || return 1
    wait_until 90 few_dead_crashloop || fail "$(dead_crashloop_containers) exited containers of crashloop left"
    say "restartCount $(restarts crashloop), exited containers in berthd: $(dead_crashloop_containers)"
}

check_oom() {
    pod oom "  containers:
  - name: c
    image: $busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'sleep 1; tail /dev/zero']
    resources: {limits: {memory: 32Mi}, requests: {memory: 32Mi}}"
    wait_eq 90 OOMKilled jp pod/oom '{.status.containerStatuses[0].lastState.terminated.reason}' \
        || fail "oom: $(jp pod/oom '{.status.containerStatuses[0]}')"
    [ "$(jp pod/oom '{.status.containerStatuses[0].lastState.terminated.exitCode}')" = 137 ] || fail "oom exit code"
}

check_hooks() {
    # postStart writes a file the main process waits for; preStop logs and the
    # TERM trap follows it, within the grace period.
    k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: hooks}
spec:
  terminationGracePeriodSeconds: 10
  containers:
  - name: c
    image: $busybox
    imagePullPolicy: IfNotPresent
    command: [sh, -c, 'trap "echo term >> /shared/order; exit 0" TERM; while [ ! -f /tmp/poststart ]; do sleep 0.1; done; echo started >> /shared/order; while true; do sleep 0.2; done']
    lifecycle:
      postStart: {exec: {command: [sh, -c, 'touch /tmp/poststart']}}
      preStop: {exec: {command: [sh, -c, 'echo prestop >> /shared/order; sleep 1']}}
    volumeMounts: [{name: s, mountPath: /shared}]
  volumes: [{name: s, hostPath: {path: $BERTH_CLUSTER_DIR/hooks-test, type: DirectoryOrCreate}}]
EOF
    rm -f "$BERTH_CLUSTER_DIR/hooks-test/order"
    wait_ready hooks || return 1
    wait_until 20 grep -q started "$BERTH_CLUSTER_DIR/hooks-test/order" || fail "postStart did not run"
    local t0=$SECONDS
    k delete pod hooks --wait=true --timeout=60s >/dev/null || fail "delete hooks"
    local order; order=$(tr '\n' ' ' <"$BERTH_CLUSTER_DIR/hooks-test/order" 2>/dev/null)
    say "order: $order ($((SECONDS - t0))s to delete)"
    [ "$order" = "started prestop term " ] || fail "hook order: $order"
    rm -rf "$BERTH_CLUSTER_DIR/hooks-test"
    # A process that ignores TERM is killed at the end of its grace period.
    pod grace "  terminationGracePeriodSeconds: 3
  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'trap \"\" TERM; while true; do sleep 0.2; done']}"
    wait_ready grace || return 1
    t0=$SECONDS
    k delete pod grace --wait=true --timeout=60s >/dev/null
    local dt=$((SECONDS - t0))
    say "grace 3s: deleted in ${dt}s"
    [ "$dt" -ge 3 ] && [ "$dt" -le 15 ] || fail "grace period not honoured: ${dt}s"
}

# cgroup v1 memory limit of container C of pod P, read on the host.
cgroup_limit() {
    local id; id=$(jp "pod/$1" "{.status.containerStatuses[?(@.name==\"$2\")].containerID}"); id=${id#berth://}
    local f; f=$(find /sys/fs/cgroup/memory/kubepods -type d -name "*$id*" 2>/dev/null | head -n1)
    cat "$f/memory.limit_in_bytes" 2>/dev/null
}

check_resize() {
    pod resize "  containers:
  - name: c
    image: $busybox
    imagePullPolicy: IfNotPresent
    command: [sleep, '3600']
    resizePolicy: [{resourceName: memory, restartPolicy: NotRequired}, {resourceName: cpu, restartPolicy: NotRequired}]
    resources: {limits: {memory: 64Mi, cpu: 500m}, requests: {memory: 64Mi, cpu: 500m}}"
    wait_ready resize || return 1
    local before; before=$(cgroup_limit resize c)
    k patch pod resize --subresource resize --patch \
        '{"spec":{"containers":[{"name":"c","resources":{"limits":{"memory":"96Mi","cpu":"600m"},"requests":{"memory":"96Mi","cpu":"600m"}}}]}}' >/dev/null \
        || fail "patch --subresource resize refused" || return 1
    wait_eq 60 $((96 * 1024 * 1024)) cgroup_limit resize c \
        || fail "memory limit $before -> $(cgroup_limit resize c); status: $(jp pod/resize '{.status.conditions}') $(jp pod/resize '{.status.containerStatuses[0].resources}')"
    [ "$(restarts resize)" = 0 ] || fail "resize restarted the container"
    say "memory.limit_in_bytes $before -> $(cgroup_limit resize c)"
}

ephemeral_running() { [ -n "$(jp pod/shell '{.status.ephemeralContainerStatuses[0].state.running.startedAt}')" ]; }
check_ephemeral() {
    shell_pod; wait_ready shell || return 1
    local out
    out=$(timeout 60 kubectl -n "$ns" debug shell --image="$busybox" --target=c --profile=general \
        --container=dbg --attach=false -- sleep 600 2>&1) || fail "kubectl debug: $out" || return 1
    wait_until 60 ephemeral_running \
        || fail "ephemeral container not running: $(jp pod/shell '{.status.ephemeralContainerStatuses}')" || return 1
    out=$(k exec shell -c dbg -- ps 2>&1)
    grep -q 'sleep 3600' <<<"$out" || fail "the debug container does not see the target's processes: $out"
}

check_image_pull_backoff() {
    pod missing "  containers:
  - {name: c, image: docker.io/library/no-such-image:latest, imagePullPolicy: IfNotPresent}"
    wait_until 60 sh -c "kubectl -n $ns get pod missing -o jsonpath='{.status.containerStatuses[0].state.waiting.reason}' | grep -qE 'ImagePullBackOff|ErrImagePull'" \
        || fail "missing image: $(jp pod/missing '{.status.containerStatuses[0].state}')"
    say "$(jp pod/missing '{.status.containerStatuses[0].state.waiting.reason}: {.status.containerStatuses[0].state.waiting.message}')"
}

check_image_volume() {
    pod imagevol "  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sleep, '3600'], volumeMounts: [{name: img, mountPath: /img}]}
  volumes: [{name: img, image: {reference: $httpd, pullPolicy: IfNotPresent}}]"
    wait_ready imagevol 60 || return 1
    k exec imagevol -- cat /img/www/index.html | grep -q "hello from berth" || fail "image volume content: $(k exec imagevol -- ls /img 2>&1)"
    k exec imagevol -- touch /img/x 2>/dev/null && fail "image volume is writable"
    return 0
}

check_user_namespace() {
    pod userns "  hostUsers: false
  containers:
  - {name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}"
    wait_ready userns 60 || return 1
    local map; map=$(k exec userns -- cat /proc/self/uid_map | tr -s ' ')
    say "uid_map:$map"
    [[ "$map" != " 0 0 4294967295" ]] || fail "not in a user namespace: $map"
}

check_job() {
    k apply -f - >/dev/null <<EOF
apiVersion: batch/v1
kind: Job
metadata: {name: job}
spec:
  completions: 2
  template:
    spec:
      restartPolicy: Never
      containers: [{name: c, image: $busybox, imagePullPolicy: IfNotPresent, command: [sh, -c, 'echo done']}]
EOF
    k wait --for=condition=Complete job/job --timeout=90s >/dev/null || fail "job: $(jp job/job '{.status}')"
}

pod_stats() {
    local pki=$BERTH_CLUSTER_DIR/pki s
    s=$(curl -fsS --cacert "$pki/ca.crt" --cert "$pki/apiserver-kubelet-client.crt" \
        --key "$pki/apiserver-kubelet-client.key" "https://127.0.0.1:10250/stats/summary") || return 1
    jq -c --arg ns "$ns" '.pods[] | select(.podRef.name=="shell" and .podRef.namespace==$ns)
        | {cpu: .cpu.usageCoreNanoSeconds, mem: .memory.workingSetBytes, eph: .["ephemeral-storage"].usedBytes,
           ctr: [.containers[] | {n: .name, cpu: .cpu.usageCoreNanoSeconds, mem: .memory.workingSetBytes, rootfs: .rootfs.usedBytes, logs: .logs.usedBytes}]}' <<<"$s"
}
stats_complete() {
    pod_stats | jq -e '.cpu > 0 and .mem > 0 and .eph > 0 and ([.ctr[] | .cpu > 0 and .mem > 0 and .rootfs > 0] | all)' >/dev/null
}
check_stats_summary() {
    shell_pod; wait_ready shell || return 1
    # The apiserver's node proxy (kubectl get --raw /api/v1/nodes/NODE/proxy/stats/summary)
    # refuses loopback addresses ("address not allowed"), and this node's address is
    # 127.0.0.1: ask kubelet itself, as the apiserver would, with its kubelet-client
    # certificate. Pod-level figures come from cadvisor's housekeeping: give it time.
    wait_until 60 stats_complete || fail "missing figures: $(pod_stats 2>&1)"
    say "$(pod_stats)"
}

# --- faults: berthd killed, kubelet restarted -------------------------------------

# "name restartCount containerID" of each web pod, sorted.
web_state() {
    k get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.name} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].containerID}{"\n"}{end}' | sort
}
all_web_ready() {
    [ "$(k get pods -l app=web -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c True)" = 3 ] \
        && [ "$(count_web)" = 3 ]
}
# Shims berthd runs against what it reports: one per running container and per
# ready pod (its pause); anything else leaked.
shim_census() {
    local shims ctrs pods
    shims=$(pgrep -c -f '^/usr/local/bin/berth-shim .*--state-dir /run/berth/shims/' || true)
    # A created container's init waits under its shim for StartContainer.
    ctrs=$( ("${crictl[@]}" ps -q --state running; "${crictl[@]}" ps -q --state created) 2>/dev/null | wc -l)
    pods=$("${crictl[@]}" pods -q --state ready 2>/dev/null | wc -l)
    echo "$shims shims, $ctrs running or created containers, $pods ready pods"
    [ "$shims" = $((ctrs + pods)) ]
}

# fault WHAT: WHAT while the Deployment runs, then while a rollout is in progress.
fault() {
    local what=$1
    wait_eq 60 3 jp deploy/web '{.status.availableReplicas}' || check_deployment || return 1
    wait_until 60 all_web_ready || fail "web not ready before the fault" || return 1
    local before after
    before=$(web_state)
    "${fault_cmd[@]}" >/dev/null 2>&1 || fail "$what failed" || return 1
    sleep 5
    wait_until 60 all_web_ready || fail "web pods not Ready after $what: $(k get pods -l app=web --no-headers)"
    after=$(web_state)
    [ "$before" = "$after" ] || fail "containers changed after $what: before: $before after: $after"
    wait_until 30 shim_census || fail "after $what: $(shim_census)"
    # Again while a rollout runs: the pods running at the fault keep their
    # containers until the rollout deletes them. (A container kubelet created but
    # had not started when it stopped is replaced by the next kubelet, attempt 1:
    # kubelet's rule for Created containers, any runtime; reported, not failed.)
    k set env deploy/web "FAULT_$RANDOM=1" >/dev/null
    sleep 1
    local running_at_fault; running_at_fault=$(web_state | awk '$3 != ""')
    "${fault_cmd[@]}" >/dev/null 2>&1 || fail "$what during the rollout failed" || return 1
    sleep 2
    local now name rc id cur
    now=$(web_state)
    while read -r name rc id; do
        [ -n "$name" ] || continue
        cur=$(awk -v n="$name" '$1 == n {print $2, $3}' <<<"$now")
        [ -z "$cur" ] || [ "$cur" = "$rc $id" ] || fail "$name changed across $what: $rc $id -> $cur"
    done <<<"$running_at_fault"
    k rollout status deploy/web --timeout=120s >/dev/null || fail "rollout did not finish after $what"
    wait_until 60 all_web_ready || fail "web pods not Ready after the rollout: $(k get pods -l app=web --no-headers)"
    say "after the rollout: $(web_state | tr '\n' ';')"
    [ -z "$(k get pods -l app=web -o jsonpath='{.items[*].status.containerStatuses[*].restartCount}' | tr -d ' 01')" ] \
        || fail "restarts after the rollout: $(web_state)"
    wait_until 30 shim_census || fail "after the rollout: $(shim_census)"
    say "$(shim_census)"
}

check_fault_berthd_kill() {
    fault_cmd=("$root/hack/cluster.sh" restart berthd --kill)
    fault "kill -9 of berthd"
}

check_fault_kubelet_restart() {
    fault_cmd=("$root/hack/cluster.sh" restart kubelet)
    fault "a kubelet restart"
}

# --- run -----------------------------------------------------------------------

all_checks=(node deployment rolling_update service logs exec attach port_forward cp probes
    init_containers restart_policies container_gc oom hooks resize ephemeral image_pull_backoff image_volume
    user_namespace job stats_summary fault_berthd_kill fault_kubelet_restart)
[ "${#only[@]}" -gt 0 ] && all_checks=("${only[@]}")

if [ "$up" = 1 ]; then "$root/hack/cluster.sh" up || exit 1; fi
kubectl get node "$node" >/dev/null || { echo "no cluster: run hack/cluster.sh up" >&2; exit 1; }
kubectl delete namespace "$ns" --wait=true --timeout=120s >/dev/null 2>&1
kubectl create namespace "$ns" >/dev/null
wait_until 30 k get serviceaccount default || echo "warning: no default service account" >&2

t_all=$SECONDS
for c in "${all_checks[@]}"; do
    t0=$SECONDS
    echo "--- $c"
    : >"$failmark"
    ( "check_$c" ); rc=$?
    if [ "$rc" = 0 ] && [ ! -s "$failmark" ]; then
        passed=$((passed + 1)); echo "ok $c ($((SECONDS - t0))s)"
    else
        failed=$((failed + 1)); failures+=("$c"); echo "not ok $c ($((SECONDS - t0))s)"
    fi
done
echo "--- done in $((SECONDS - t_all))s"
[ "${#failures[@]}" -gt 0 ] && echo "failed: ${failures[*]}"
if [ "${BERTH_KEEP_TEST_NS:-}" != 1 ]; then
    kubectl delete namespace "$ns" --wait=false >/dev/null 2>&1
fi
if [ "$down" = 1 ]; then "$root/hack/cluster.sh" down; fi
rm -f "$failmark"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
