#!/usr/bin/env bash
# Tears down what up.sh started and removes $STATE_DIR completely: pods are stopped
# through CRI first (so CNI removes their veths and addresses), then every daemon is
# stopped by its pid file, leftover mounts and cgroups are removed, iptables, ipsets,
# the pod bridge and the host sysctls are put back. Safe to run twice, or after a
# crash half-way through up.sh. The build cache is kept.
set -uo pipefail
. "$(dirname "$0")/lib.sh"
need_root

# stop SECONDS NAME...: SIGTERM to all of them at once, then SIGKILL after SECONDS; by pid file,
# never by process name. up.sh started each in a session of its own, so the signal goes
# to its process group (socat's forked children too). Their state is deleted
# afterwards, so nothing needs more grace.
stop() {
    local grace="$1" name pid pids=()
    shift
    for name in "$@"; do
        if pid=$(daemon_pid "$name"); then
            log "stopping $name ($pid)"
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null
            pids+=("$pid")
        fi
        rm -f "$PIDS/$name.pid"
    done
    local alive
    for _ in $(seq 1 $((grace * 4))); do
        alive=""
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && { alive=1; break; }; done
        [ -n "$alive" ] || return 0
        sleep 0.25
    done
    for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null; done
    return 0
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
    [ -x "$CRICTL_BIN/crictl" ] && containerd_answers || return 0
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

# Deletes every chain named KUBE-* or CNI-* (kubelet's, kube-proxy's, kube-router's,
# the CNI plugins') and every rule that jumps to one; no other Kubernetes runs here.
remove_chains() {
    local cmd="$1" table line chain chains
    for table in filter nat mangle raw; do
        "$cmd-save" -t "$table" >/dev/null 2>&1 || continue
        "$cmd-save" -t "$table" | grep -E -- '^-A .* -j (KUBE|CNI)-' | grep -vE '^-A (KUBE|CNI)-' |
            while read -r line; do
                eval "$cmd -t $table -D ${line#-A }" 2>/dev/null || true
            done
        chains="$("$cmd-save" -t "$table" | sed -n 's/^:\(\(KUBE\|CNI\)-[^ ]*\) .*/\1/p')"
        for chain in $chains; do "$cmd" -t "$table" -F "$chain" 2>/dev/null; done
        for chain in $chains; do "$cmd" -t "$table" -X "$chain" 2>/dev/null; done
    done
}

cleanup_network() {
    if [ -x "$K8S_BIN/kube-proxy" ]; then
        "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true
    fi
    # kube-router 2.1's --cleanup-config panics without a cluster: remove its rules here.
    remove_chains iptables
    remove_chains ip6tables
    local set
    for set in $(ipset list -n 2>/dev/null | grep -E '^(inet6:)?KUBE-'); do
        ipset destroy "$set" 2>/dev/null || log "warning: ipset $set still in use"
    done
    while iptables -t mangle -D FORWARD -j SANDBOX-E2E-EGRESS 2>/dev/null; do :; done
    iptables -t mangle -F SANDBOX-E2E-EGRESS 2>/dev/null
    iptables -t mangle -X SANDBOX-E2E-EGRESS 2>/dev/null
    ip link show "$POD_BRIDGE" >/dev/null 2>&1 && ip link delete "$POD_BRIDGE"
    if [ -f "$STATE_DIR/sysctl.saved" ]; then
        local kv
        while read -r kv; do sysctl -q -w "$kv" >/dev/null || true; done < "$STATE_DIR/sysctl.saved"
    fi
}

# A few paths are fixed in kubelet, containerd and libcni whatever their root/state
# directories: remove what they left there, and the directories only when empty.
remove_fixed_paths() {
    find /var/log/containers -maxdepth 1 -lname "$STATE_DIR/*" -delete 2>/dev/null
    rm -f /var/lib/kubelet/device-plugins/kubelet.sock
    rmdir /var/log/containers /var/lib/kubelet/device-plugins /var/lib/kubelet \
        /run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni 2>/dev/null
    return 0
}

main() {
    [ -d "$STATE_DIR" ] || { log "nothing to tear down ($STATE_DIR does not exist)"; return 0; }
    local start=$SECONDS
    stop 10 kubelet
    remove_pods
    # The apiserver's graceful shutdown waits for clients that are going away too.
    stop 3 kube-router kube-proxy kube-scheduler kube-controller-manager apiserver-relay \
        kube-apiserver etcd
    stop 3 containerd
    kill_pod_processes
    unmount_state
    remove_cgroups
    cleanup_network
    remove_fixed_paths
    rm -rf "$STATE_DIR"
    local left; left="$(state_processes | tr '\n' ' ')"
    [ -z "$left" ] || log "warning: processes still running: $left"
    log "cluster down in $((SECONDS - start))s"
}

main "$@"
