#!/usr/bin/env bash
# Builds (or finds in the cache) every binary the e2e cluster runs:
#   kubernetes  kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#               kube-proxy, kubectl   (k8s.io/kubernetes via ./go/kubernetes)
#   containerd  containerd, containerd-shim-runc-v2, ctr
#   runc        runc (cgo + libseccomp)
#   kube-router kube-router (only its NetworkPolicy firewall is run)
#   crictl      crictl (cluster-down stops pods through CRI, so CNI cleans up)
#   helm        helm
#   traefik     the Ingress controller (github.com/traefik/traefik/v3 via ./go/traefik)
#   coredns     cluster DNS (github.com/coredns/coredns)
#   pause       the sandbox ("pause") binary, from ./pause/pause.c
#   gvisor      runsc and containerd-shim-runsc-v1 (gvisor.dev/gvisor), the `gvisor`
#               RuntimeClass's handler
# Each lands in $CACHE_ROOT/<component>-<version>/ and is marked complete only after a
# successful build, so an interrupted build is redone rather than trusted.
# Usage: build.sh [component...]   (default: all)
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# Runs "$@" to fill a fresh directory, then moves it into place as $1.
build_into() {
    local dest="$1"; shift
    if [ -f "$dest/.complete" ]; then log "cached: $dest"; return; fi
    local tmp="$dest.tmp.$$"
    rm -rf "$tmp"; mkdir -p "$tmp"
    ensure_go
    log "building $(basename "$dest") (cold build; see README for timings)"
    local start=$SECONDS
    "$@" "$tmp"
    date -u +%FT%TZ > "$tmp/.complete"
    rm -rf "$dest"; mv "$tmp" "$dest"
    log "built $(basename "$dest") in $((SECONDS - start))s"
}

build_kubernetes() {
    local out="$1" v="v$KUBERNETES_VERSION" pkg x=""
    local minor="${KUBERNETES_VERSION#*.}"; minor="${minor%%.*}"
    # The same version stamps upstream's hack/lib/version.sh sets: kubelet and the
    # apiserver report them, and version-skew checks compare them.
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        x+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
        x+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    (cd "$CLUSTER_DIR/go/kubernetes" && CGO_ENABLED=0 nice -n 10 go build \
        -ldflags="-s -w$x" -o "$out/" \
        k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
        k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubelet \
        k8s.io/kubernetes/cmd/kube-proxy k8s.io/kubernetes/cmd/kubectl)
}

# `go install module/cmd@version` builds with the module's own go.mod and go.sum.
go_install() {
    local out="$1"; shift
    GOBIN="$out" nice -n 10 go install "$@"
}

build_containerd() {
    local m="github.com/containerd/containerd/v2" v="v$CONTAINERD_VERSION"
    # no_btrfs: the btrfs snapshotter needs btrfs headers and is not used here.
    CGO_ENABLED=0 go_install "$1" -tags no_btrfs \
        -ldflags="-s -w -X $m/version.Version=$v" \
        "$m/cmd/containerd@$v" "$m/cmd/containerd-shim-runc-v2@$v" "$m/cmd/ctr@$v"
}

build_runc() {
    local m="github.com/opencontainers/runc" v="v$RUNC_VERSION"
    CGO_ENABLED=1 go_install "$1" -tags seccomp \
        -ldflags="-s -w -X main.version=$RUNC_VERSION" "$m@$v"
}

build_kube_router() {
    CGO_ENABLED=0 go_install "$1" -ldflags="-s -w" \
        "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$KUBE_ROUTER_VERSION"
}

build_helm() {
    CGO_ENABLED=0 go_install "$1" -ldflags="-s -w" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
}

build_traefik() {
    (cd "$CLUSTER_DIR/go/traefik" && CGO_ENABLED=0 nice -n 10 go build -ldflags="-s -w" \
        -o "$1/" github.com/traefik/traefik/v3/cmd/traefik)
}

build_coredns() {
    # The tools module pins the same version as versions.env (checked, not assumed).
    grep -q "github.com/coredns/coredns v$COREDNS_VERSION\$" "$CLUSTER_DIR/go/coredns/go.mod" \
        || die "go/coredns/go.mod does not require coredns v$COREDNS_VERSION"
    (cd "$CLUSTER_DIR/go/coredns" && CGO_ENABLED=0 nice -n 10 go build -ldflags="-s -w" \
        -o "$1/coredns" .)
}

build_crictl() {
    CGO_ENABLED=0 go_install "$1" -ldflags="-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@v$CRICTL_VERSION"
}

# Built in a copy of the module's source, with its own go.mod and go.sum, because of one
# change: the shim sets its own OOM score to -999, which needs CAP_SYS_RESOURCE, and
# machines like this one (a bounding set without it: see restrict_oom_score_adj in
# up.sh) refuse that, so no pod would start. The copy's shim keeps the score it is
# given (containerd's, raised), as runc's shim does.
build_gvisor() {
    local out="$1" src="$1/src" dir
    dir=$(go mod download -json "gvisor.dev/gvisor@v$GVISOR_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
    [ -d "$dir" ] || die "gvisor.dev/gvisor@v$GVISOR_VERSION: no source from the module proxy"
    cp -r "$dir" "$src" && chmod -R u+w "$src"
    local manager="$src/pkg/shim/v1/manager.go"
    [ "$(grep -c '^[[:space:]]*oomScoreMax = -999$' "$manager")" = 1 ] \
        || die "gvisor: the shim's OOM score is no longer where build.sh expects it"
    sed -i 's/^\([[:space:]]*oomScoreMax = \)-999$/\10/' "$manager"
    (cd "$src" && CGO_ENABLED=0 nice -n 10 go build -ldflags="-s -w" -o "$out/runsc" ./runsc \
        && CGO_ENABLED=0 nice -n 10 go build -ldflags="-s -w" \
            -o "$out/containerd-shim-runsc-v1" ./shim)  # the name containerd looks for
    rm -rf "$src"
}

build_pause() {
    # Static, so the pause image needs nothing but this one file.
    gcc -Os -static -Wall -Werror -o "$1/pause" "$CLUSTER_DIR/pause/pause.c"
    strip "$1/pause"
}

main() {
    local all=(pause runc containerd crictl kubernetes kube-router helm traefik coredns gvisor) c
    [ $# -gt 0 ] || set -- "${all[@]}"
    mkdir -p "$CACHE_ROOT"
    for c in "$@"; do
        case "$c" in
            kubernetes) build_into "$K8S_BIN" build_kubernetes ;;
            containerd) build_into "$CONTAINERD_BIN" build_containerd ;;
            runc) build_into "$RUNC_BIN" build_runc ;;
            kube-router) build_into "$KUBE_ROUTER_BIN" build_kube_router ;;
            crictl) build_into "$CRICTL_BIN" build_crictl ;;
            helm) build_into "$HELM_BIN" build_helm ;;
            traefik) build_into "$TRAEFIK_BIN" build_traefik ;;
            coredns) build_into "$COREDNS_BIN" build_coredns ;;
            pause) build_into "$PAUSE_BIN" build_pause ;;
            gvisor) build_into "$GVISOR_BIN" build_gvisor ;;
            *) die "unknown component: $c" ;;
        esac
    done
}

main "$@"
