#!/usr/bin/env bash
# Installs the Debian packages the e2e cluster needs (idempotent; root).
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

PACKAGES=(
    # building: runc links libseccomp; the pause binary is static C
    gcc libc6-dev libseccomp-dev pkg-config
    # images without a registry or a Docker engine
    mmdebstrap buildah uidmap
    # the cluster: etcd, CNI plugins, what kubelet/kube-proxy/kube-router call
    etcd-server containernetworking-plugins iptables ipset conntrack ethtool
    iproute2 kmod socat util-linux mount procps openssl psmisc
    # a Go toolchain from the module proxy where the machine has none (lib.sh ensure_go)
    curl unzip
)

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's etcd-server package starts a system etcd on 2379; ours runs on its own
# ports under $STATE_DIR, so the packaged service is only stopped if it runs.
if command -v systemctl >/dev/null && systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl stop etcd || true
fi
