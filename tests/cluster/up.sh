#!/usr/bin/env bash
# Brings up the single-node e2e cluster (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, containerd + runc, kubelet, kube-proxy, kube-router's NetworkPolicy
# firewall), loads the project's images, and waits until the node is Ready.
# Idempotent: a cluster that is already up is left as it is. Undo with down.sh.
# Prints the admin kubeconfig path on stdout.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
. "$CLUSTER_DIR/pki.sh"
need_root

LOGS="$STATE_DIR/logs"
ADMIN_KUBECONFIG="$STATE_DIR/kubeconfig/admin.kubeconfig"
SECCOMP_PROFILE_NAME="sandbox-controller/runner-seccomp.json"
# Host settings the cluster needs or that kubelet/kube-proxy change; saved once, put
# back by down.sh.
SYSCTLS=(net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables
         net.bridge.bridge-nf-call-ip6tables net.ipv4.conf.all.route_localnet
         vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
         kernel.keys.root_maxkeys kernel.keys.root_maxbytes)

running() { daemon_pid "$1" >/dev/null; }

any_running() {
    local f
    for f in "$PIDS"/*.pid; do
        [ -e "$f" ] && running "$(basename "$f" .pid)" && return 0
    done
    return 1
}

# start NAME COMMAND...: a daemon in its own session, logging to $LOGS/NAME.log.
start() {
    local name="$1"; shift
    if running "$name"; then return; fi
    log "starting $name"
    setsid "$@" >>"$LOGS/$name.log" 2>&1 < /dev/null &
    record_pid "$name" $!
}

# Fails fast, with the log's tail, when a daemon died while we wait for it.
wait_daemon() {
    local name="$1" timeout="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        if ! running "$name"; then
            tail -n 30 "$LOGS/$name.log" >&2
            die "$name exited (log: $LOGS/$name.log)"
        fi
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$LOGS/$name.log" >&2; die "$name not ready after ${timeout}s"; }
        sleep 0.3
    done
}

apiserver_ready() { "${KUBECTL[@]}" get --raw /readyz >/dev/null 2>&1; }

host_setup() {
    if [ ! -f "$STATE_DIR/sysctl.saved" ]; then
        local k
        for k in "${SYSCTLS[@]}"; do
            [ -e "/proc/sys/${k//./\/}" ] && echo "$k=$(sysctl -n "$k")"
        done > "$STATE_DIR/sysctl.saved.tmp"
        mv "$STATE_DIR/sysctl.saved.tmp" "$STATE_DIR/sysctl.saved"
    fi
    # Pod -> ClusterIP is DNAT'ed then routed back onto the bridge (needs forwarding);
    # bridged pod traffic must pass iptables for kube-proxy and kube-router to see it.
    sysctl -q -w net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1

    # The pod bridge exists before kubelet starts: its address is the node IP (kubelet
    # refuses a loopback node IP) and the CNI bridge plugin adopts it.
    if ! ip link show "$POD_BRIDGE" >/dev/null 2>&1; then
        ip link add "$POD_BRIDGE" type bridge
    fi
    ip addr replace "$POD_BRIDGE_IP/${POD_CIDR#*/}" dev "$POD_BRIDGE"
    ip link set "$POD_BRIDGE" up

    # Nothing from a pod leaves this machine: forwarding is needed only between pods
    # on the bridge. mangle/FORWARD runs before kube-proxy's and kube-router's filter
    # rules, so neither can accept such a packet first.
    if ! iptables -t mangle -nL SANDBOX-E2E-EGRESS >/dev/null 2>&1; then
        iptables -t mangle -N SANDBOX-E2E-EGRESS
        iptables -t mangle -A SANDBOX-E2E-EGRESS -i "$POD_BRIDGE" -o "$POD_BRIDGE" -j RETURN
        iptables -t mangle -A SANDBOX-E2E-EGRESS -i "$POD_BRIDGE" -j DROP
        iptables -t mangle -A SANDBOX-E2E-EGRESS -o "$POD_BRIDGE" ! -i "$POD_BRIDGE" -j DROP
    fi
    iptables -t mangle -C FORWARD -j SANDBOX-E2E-EGRESS 2>/dev/null \
        || iptables -t mangle -I FORWARD 1 -j SANDBOX-E2E-EGRESS
}

write_configs() {
    mkdir -p "$STATE_DIR/cni/net.d" "$STATE_DIR/cni/ipam" "$STATE_DIR/containerd" \
        "$STATE_DIR/kubelet/seccomp/$(dirname "$SECCOMP_PROFILE_NAME")" "$STATE_DIR/config"
    cat > "$STATE_DIR/cni/net.d/10-e2e.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "e2e",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$POD_BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$STATE_DIR/cni/ipam",
        "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_BRIDGE_IP"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
EOF

    cat > "$STATE_DIR/containerd/config.toml" <<EOF
version = 4
root = '$STATE_DIR/containerd/root'
state = '$STATE_DIR/containerd/state'
temp = '$STATE_DIR/containerd/tmp'
imports = []

[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      # Built here (images.sh pause): there is no registry to pull one from.
      sandbox = 'localhost/sandbox-controller/pause:1'

  [plugins.'io.containerd.cri.v1.runtime']
    # This machine's bounding set lacks CAP_SYS_RESOURCE: without this every pod
    # fails writing oom_score_adj below containerd's own.
    restrict_oom_score_adj = true
    netns_mounts_under_state_dir = true
    cdi_spec_dirs = []
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$RUNC_BIN/runc'
        Root = '$STATE_DIR/runc'
        SystemdCgroup = false
    # The RuntimeClass gvisor's handler (start_addons): gVisor's shim, found beside
    # containerd's on PATH, runs each pod in its own user-space kernel.
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc]
      runtime_type = 'io.containerd.runsc.v1'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runsc.options]
        TypeUrl = 'io.containerd.runsc.v1.options'
        ConfigPath = '$STATE_DIR/containerd/runsc.toml'
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['/usr/lib/cni']
      conf_dir = '$STATE_DIR/cni/net.d'

  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
    stream_server_port = '0'

  [plugins.'io.containerd.internal.v1.opt']
    path = '$STATE_DIR/containerd/opt'

  [plugins.'io.containerd.nri.v1.nri']
    disable = true

  [plugins.'io.containerd.server.v1.grpc']
    address = '$CONTAINERD_SOCK'

  [plugins.'io.containerd.server.v1.ttrpc']
    address = '$CONTAINERD_SOCK.ttrpc'
EOF

    # Options of gVisor's shim; [runsc_config] holds runsc's own flags.
    cat > "$STATE_DIR/containerd/runsc.toml" <<EOF
binary_name = '$GVISOR_BIN/runsc'
root = '$STATE_DIR/runsc'
[runsc_config]
  debug-log = '$LOGS/runsc/'
EOF

    # Pods must not reach a resolver outside this machine; with no nameserver line the
    # resolver library asks 127.0.0.1 inside the pod's own network namespace.
    echo "options ndots:1" > "$STATE_DIR/config/resolv.conf"

    cat > "$STATE_DIR/config/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
cgroupDriver: cgroupfs
# This machine is cgroup v1 (hybrid); kubelet >= 1.35 refuses it unless told.
failCgroupV1: false
failSwapOn: false
podLogsDir: $STATE_DIR/pod-logs
volumePluginDir: $STATE_DIR/kubelet-plugins
resolvConf: $STATE_DIR/config/resolv.conf
clusterDomain: cluster.local
# CoreDNS (start_addons) answers at this Service address, as in any cluster.
clusterDNS: [$CLUSTER_DNS_IP]
maxPods: 50
serializeImagePulls: false
# Images are imported, never pulled: never garbage-collect them, never evict for disk.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
EOF

    cat > "$STATE_DIR/config/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
hostnameOverride: $NODE_NAME
clusterCIDR: $POD_CIDR
clientConnection: {kubeconfig: $STATE_DIR/kubeconfig/kube-proxy.kubeconfig}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
# NodePorts only on the node (bridge) address; no localhost NodePorts, so kube-proxy
# leaves route_localnet alone. Zero conntrack values leave the host's settings as-is.
nodePortAddresses: ["$POD_BRIDGE_IP/32"]
iptables: {localhostNodePorts: false}
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

    cp "$REPO_ROOT/helm/seccomp/runner-seccomp.json" "$STATE_DIR/kubelet/seccomp/$SECCOMP_PROFILE_NAME"
}

start_control_plane() {
    start etcd etcd --name e2e --data-dir "$STATE_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
        --listen-metrics-urls "" --log-level warn
    wait_daemon etcd 30 curl -fsS "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

    start kube-apiserver "$K8S_BIN/kube-apiserver" \
        --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --bind-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
        --advertise-address "$POD_BRIDGE_IP" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --client-ca-file "$PKI/ca.crt" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" \
        --kubelet-preferred-address-types Hostname \
        --service-account-issuer https://kubernetes.default.svc.cluster.local \
        --service-account-key-file "$PKI/sa.pub" \
        --service-account-signing-key-file "$PKI/sa.key" \
        --authorization-mode Node,RBAC \
        --enable-admission-plugins NodeRestriction \
        --profiling=false
    wait_daemon kube-apiserver 90 apiserver_ready
    # Pods reach the API through the `kubernetes` Service, whose endpoint is the
    # advertised bridge address (endpoints may not be loopback); the apiserver itself
    # stays on 127.0.0.1 and this relay listens on the bridge address only.  nodelay on
    # both sides: without it a request's body, written after its headers, waits for the
    # delayed ACK of the headers (about 40 ms for every write a pod makes to the API).
    start apiserver-relay socat \
        "TCP-LISTEN:$APISERVER_PORT,bind=$POD_BRIDGE_IP,reuseaddr,fork,nodelay" \
        "TCP:127.0.0.1:$APISERVER_PORT,nodelay"

    start kube-controller-manager "$K8S_BIN/kube-controller-manager" \
        --kubeconfig "$STATE_DIR/kubeconfig/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$STATE_DIR/kubeconfig/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$STATE_DIR/kubeconfig/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --use-service-account-credentials \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --service-cluster-ip-range "$SERVICE_CIDR" --profiling=false
    start kube-scheduler "$K8S_BIN/kube-scheduler" \
        --kubeconfig "$STATE_DIR/kubeconfig/scheduler.kubeconfig" \
        --authentication-kubeconfig "$STATE_DIR/kubeconfig/scheduler.kubeconfig" \
        --authorization-kubeconfig "$STATE_DIR/kubeconfig/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

start_node() {
    PATH="$CONTAINERD_BIN:$RUNC_BIN:$GVISOR_BIN:$PATH" start containerd \
        "$CONTAINERD_BIN/containerd" --config "$STATE_DIR/containerd/config.toml"
    wait_daemon containerd 30 containerd_answers

    "$CLUSTER_DIR/images.sh" all

    start kubelet "$K8S_BIN/kubelet" \
        --config "$STATE_DIR/config/kubelet.yaml" \
        --kubeconfig "$STATE_DIR/kubeconfig/kubelet.kubeconfig" \
        --root-dir "$STATE_DIR/kubelet" --cert-dir "$PKI" \
        --hostname-override "$NODE_NAME" --node-ip "$POD_BRIDGE_IP"
    wait_daemon kubelet 90 "${KUBECTL[@]}" wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
}

start_network() {
    "${KUBECTL[@]}" apply -f - >/dev/null <<EOF
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "e2e:kube-router-firewall"}
rules:
- apiGroups: [""]
  resources: [pods, namespaces, nodes, services, endpoints]
  verbs: [get, list, watch]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "e2e:kube-router-firewall"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "e2e:kube-router-firewall"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:kube-router"}
EOF
    start kube-proxy "$K8S_BIN/kube-proxy" --config "$STATE_DIR/config/kube-proxy.yaml"
    wait_daemon kube-proxy 60 curl -fsS http://127.0.0.1:10256/healthz

    # Only the NetworkPolicy controller: pod networking is the CNI bridge and services
    # are kube-proxy's. No health or metrics listener.
    start kube-router "$KUBE_ROUTER_BIN/kube-router" \
        --kubeconfig "$STATE_DIR/kubeconfig/kube-router.kubeconfig" \
        --hostname-override "$NODE_NAME" \
        --run-firewall=true --run-router=false --run-service-proxy=false \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --enable-ipv4=true --enable-ipv6=false \
        --health-port 0 --metrics-port 0
    wait_daemon kube-router 60 iptables -nL KUBE-ROUTER-FORWARD
}

# The cluster's own add-ons, as every real cluster has them: cluster DNS and an Ingress
# controller (manifests/), from images built here (images.sh).
start_addons() {
    local file
    for file in coredns traefik gvisor; do
        sed -e "s/COREDNS_VERSION/$COREDNS_VERSION/; s/TRAEFIK_VERSION/$TRAEFIK_VERSION/" \
            -e "s/CLUSTER_DNS_IP/$CLUSTER_DNS_IP/; s/NODE_IP/$POD_BRIDGE_IP/" \
            "$CLUSTER_DIR/manifests/$file.yaml" | "${KUBECTL[@]}" apply -f - >/dev/null
    done
    wait_for 120 "CoreDNS" "${KUBECTL[@]}" -n kube-system rollout status deploy/coredns --timeout=2s
    wait_for 120 "Traefik" "${KUBECTL[@]}" -n ingress rollout status deploy/traefik --timeout=2s
}

main() {
    local start_time=$SECONDS
    "$CLUSTER_DIR/deps.sh"
    "$CLUSTER_DIR/build.sh"
    if running kube-router && running kubelet && running apiserver-relay && apiserver_ready; then
        "$CLUSTER_DIR/images.sh" all
        start_addons
        log "cluster already up"
        echo "$ADMIN_KUBECONFIG"
        return
    fi
    if [ -d "$PIDS" ] && ! any_running; then
        # Killed rather than stopped (the machine's session ended): its state records
        # containers, mounts and images of daemons that are gone. Start from nothing.
        log "clearing the state of a cluster that was not stopped"
        "$CLUSTER_DIR/down.sh"
    fi
    mkdir -p "$STATE_DIR" "$LOGS" "$PIDS"
    host_setup
    make_pki
    write_configs
    start_control_plane
    start_node
    start_network
    start_addons
    log "cluster up in $((SECONDS - start_time))s; KUBECONFIG=$ADMIN_KUBECONFIG"
    echo "$ADMIN_KUBECONFIG"
}

main "$@"
