#!/usr/bin/env bash
# Tears down what up.sh started and removes $STATE_DIR completely: pods are stopped
# through CRI first (so CNI removes their veths and addresses), then every daemon is
# stopped by its pid file, leftover mounts and cgroups are removed, iptables, ipsets,
# the pod bridge and the host sysctls are put back. Safe to run twice, or after a
# crash half-way through up.sh. The build cache is kept.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_root

PIDS="$STATE_DIR/pids"
SOCK="$STATE_DIR/containerd/containerd.sock"

# stop NAME: SIGTERM, up to 15 s, then SIGKILL; by pid file, never by process name.
stop() {
    local pidfile="$PIDS/$1.pid" pid i
    [ -f "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $1 ($pid)"
        kill -TERM "$pid" 2>/dev/null
        for i in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.3; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    fi
    rm -f "$pidfile"
}

# Processes whose command line names this cluster's containerd (its shims
# carry its socket path): left only if containerd died before reaping them.
state_processes() {
    local p
    for p in /proc/[0-9]*; do
        { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null | grep -qF -- "$STATE_DIR/containerd/" && echo "${p#/proc/}"
    done
}

remove_pods() {
    [ -S "$SOCK" ] && [ -x "$CRICTL_BIN/crictl" ] || return 0
    log "removing pods through CRI"
    timeout 60 "${CRICTL[@]}" rmp --all --force >/dev/null 2>&1 \
        || log "warning: crictl rmp failed; falling back to killing processes"
}

kill_pod_processes() {
    # Container processes live in kubelet's kubepods cgroups.
    local procs
    for procs in $(find /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods \
                        -name cgroup.procs 2>/dev/null); do
        xargs -r kill -KILL < "$procs" 2>/dev/null
    done
    local pid
    for pid in $(state_processes); do kill -KILL "$pid" 2>/dev/null; done
}

unmount_state() {
    local m
    # Deepest first; lazily, since a dying shim may still hold one.
    for m in $(awk -v d="$STATE_DIR" '$2 == d || index($2, d "/") == 1 {print $2}' /proc/self/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || log "warning: could not unmount $m"
    done
}

remove_cgroups() {
    local root
    for root in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
        [ -d "$root" ] || continue
        find "$root" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ -d "$root" ] && log "warning: $root still exists"
    done
}

cleanup_network() {
    if [ -x "$K8S_BIN/kube-proxy" ]; then
        "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    fi
    if [ -x "$KUBE_ROUTER_BIN/kube-router" ]; then
        "$KUBE_ROUTER_BIN/kube-router" --cleanup-config >/dev/null 2>&1 || true
    fi
    while iptables -t mangle -D FORWARD -j SANDBOX-E2E-EGRESS 2>/dev/null; do :; done
    iptables -t mangle -F SANDBOX-E2E-EGRESS 2>/dev/null
    iptables -t mangle -X SANDBOX-E2E-EGRESS 2>/dev/null
    ip link show "$POD_BRIDGE" >/dev/null 2>&1 && ip link delete "$POD_BRIDGE"
    if [ -f "$STATE_DIR/sysctl.saved" ]; then
        local kv
        while read -r kv; do sysctl -q -w "$kv" >/dev/null || true; done < "$STATE_DIR/sysctl.saved"
    fi
}

main() {
    [ -d "$STATE_DIR" ] || { log "nothing to tear down ($STATE_DIR does not exist)"; return 0; }
    local start=$SECONDS
    stop kubelet
    remove_pods
    stop kube-router
    stop kube-proxy
    stop kube-scheduler
    stop kube-controller-manager
    stop kube-apiserver
    stop etcd
    stop containerd
    kill_pod_processes
    unmount_state
    remove_cgroups
    cleanup_network
    find /var/log/containers -maxdepth 1 -lname "$STATE_DIR/*" -delete 2>/dev/null
    # containerd's shims keep their sockets in /run/containerd/s whatever the state dir.
    rmdir /run/containerd/s /run/containerd 2>/dev/null
    rm -rf "$STATE_DIR"
    local left; left="$(state_processes | tr '\n' ' ')"
    [ -z "$left" ] || log "warning: processes still running: $left"
    log "cluster down in $((SECONDS - start))s"
}

main "$@"
