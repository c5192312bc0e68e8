# Shared settings and helpers for the e2e cluster scripts; sourced, never run.
# shellcheck shell=bash disable=SC2034  # variables here are used by the scripts that source it

CLUSTER_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_ROOT="$(cd "$CLUSTER_DIR/../.." && pwd)"
# shellcheck source=versions.env
. "$CLUSTER_DIR/versions.env"
# shellcheck source=net.env
. "$CLUSTER_DIR/net.env"

# Built binaries and the Debian base tarball: outside the clone, kept across runs.
CACHE_ROOT="${CLUSTER_CACHE:-/var/cache/sandbox-controller/cluster}"
# Everything the running cluster owns; cluster-down deletes it whole.
STATE_DIR="${CLUSTER_STATE_DIR:-/var/lib/sandbox-controller-cluster}"

export PATH="/usr/local/go/bin:$PATH"
export GOFLAGS="-trimpath -buildvcs=false"

# A Go toolchain for the builds: the machine's when it is new enough to fetch the version
# a module asks for by itself (Go >= 1.21, GOTOOLCHAIN=auto), else Go $GO_VERSION from
# the Go module proxy (golang.org/toolchain), which is all a Debian or Ubuntu machine
# can reach; kept in the cache.
ensure_go() {
    local have minor dir zip arch
    have=$(go env GOVERSION 2>/dev/null || true)
    minor=$(echo "$have" | sed -n 's/^go1\.\([0-9]*\).*/\1/p')
    if [ -n "$minor" ] && [ "$minor" -ge 21 ]; then return; fi
    case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; *) die "no Go for $(uname -m)" ;; esac
    dir="$CACHE_ROOT/go-$GO_VERSION"
    if [ ! -x "$dir/bin/go" ]; then
        log "fetching Go $GO_VERSION from the Go module proxy"
        mkdir -p "$CACHE_ROOT"
        zip="$CACHE_ROOT/go-$GO_VERSION.zip"
        curl -fsSL --retry 3 -o "$zip" \
            "${GOPROXY_URL:-https://proxy.golang.org}/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip"
        rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
        unzip -q "$zip" -d "$dir.tmp"
        mv "$dir.tmp"/golang.org/toolchain@*/ "$dir" && rm -rf "$dir.tmp" "$zip"
    fi
    export PATH="$dir/bin:$PATH"
}

K8S_BIN="$CACHE_ROOT/kubernetes-$KUBERNETES_VERSION"
CONTAINERD_BIN="$CACHE_ROOT/containerd-$CONTAINERD_VERSION"
RUNC_BIN="$CACHE_ROOT/runc-$RUNC_VERSION"
KUBE_ROUTER_BIN="$CACHE_ROOT/kube-router-$KUBE_ROUTER_VERSION"
HELM_BIN="$CACHE_ROOT/helm-$HELM_VERSION"
CRICTL_BIN="$CACHE_ROOT/crictl-$CRICTL_VERSION"
PAUSE_BIN="$CACHE_ROOT/pause-1"
TRAEFIK_BIN="$CACHE_ROOT/traefik-$TRAEFIK_VERSION"
COREDNS_BIN="$CACHE_ROOT/coredns-$COREDNS_VERSION"
GVISOR_BIN="$CACHE_ROOT/gvisor-$GVISOR_VERSION"
BASE_DIR="$CACHE_ROOT/debian-$DEBIAN_SUITE"

log() { printf '[cluster %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root (it starts containerd and kubelet)"; }

# Waits until a command succeeds, up to $1 seconds.
wait_for() {
    local timeout="$1" what="$2"; shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || die "timed out after ${timeout}s waiting for $what"
        sleep 0.5
    done
}

# Daemons' pid files. Each holds a pid and that process's start time (field 22 of
# /proc/PID/stat): a cluster that was killed rather than stopped (its machine's session
# ended) leaves its pid files behind, and a bare pid could by then name another process.
PIDS="$STATE_DIR/pids"
CONTAINERD_SOCK="$STATE_DIR/containerd/containerd.sock"

proc_start_time() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # shellcheck disable=SC2086  # split on purpose; the fields after the command's name
    set -- ${stat##*) }
    echo "${20}"
}

record_pid() { echo "$2 $(proc_start_time "$2" || true)" > "$PIDS/$1.pid"; }

# daemon_pid NAME: prints the pid of the daemon up.sh started as NAME, when it still runs.
daemon_pid() {
    local pid="" start=""
    [ -f "$PIDS/$1.pid" ] || return 1
    read -r pid start < "$PIDS/$1.pid" || true
    [ -n "$start" ] && [ "$(proc_start_time "$pid" 2>/dev/null)" = "$start" ] || return 1
    echo "$pid"
}

# The socket file outlives a killed containerd: ask it instead.
containerd_answers() {
    timeout 10 "$CONTAINERD_BIN/ctr" --address "$CONTAINERD_SOCK" version >/dev/null 2>&1
}

KUBECTL=("$K8S_BIN/kubectl" --kubeconfig "$STATE_DIR/kubeconfig/admin.kubeconfig")
CRICTL=("$CRICTL_BIN/crictl" --runtime-endpoint "unix://$CONTAINERD_SOCK")
