#!/usr/bin/env bash
# Makes the cluster's CA, certificates, service-account key and kubeconfigs with
# openssl, under $STATE_DIR/pki and $STATE_DIR/kubeconfig. Idempotent: existing files
# are kept. Sourced by up.sh (uses its variables), or run alone.
set -euo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKI="$STATE_DIR/pki"
KCFG="$STATE_DIR/kubeconfig"
DAYS=30

key() { [ -f "$PKI/$1.key" ] || openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }

# cert NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
cert() {
    local name="$1" subj="$2" eku="$3" san="${4:-}"
    [ -f "$PKI/$name.crt" ] && return
    key "$name"
    local ext="$PKI/$name.ext"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        echo "extendedKeyUsage=$eku"
        [ -z "$san" ] || echo "subjectAltName=$san"
    } > "$ext"
    openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" \
        -CAcreateserial -days "$DAYS" -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$ext"
}

# kubeconfig NAME CERT   (a client certificate; paths, not embedded data)
kubeconfig() {
    cat > "$KCFG/$1.kubeconfig" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster:
    certificate-authority: $PKI/ca.crt
    server: https://127.0.0.1:$APISERVER_PORT
users:
- name: $1
  user:
    client-certificate: $PKI/$2.crt
    client-key: $PKI/$2.key
contexts:
- name: e2e
  context: {cluster: e2e, user: $1}
current-context: e2e
KUBECONFIG
}

make_pki() {
    mkdir -p "$PKI" "$KCFG"
    chmod 700 "$PKI"
    if [ ! -f "$PKI/ca.crt" ]; then
        key ca
        openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=sandbox-controller-e2e-ca" \
            -days "$DAYS" -addext "basicConstraints=critical,CA:TRUE" \
            -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$PKI/ca.crt" 2>/dev/null
    fi
    [ -f "$PKI/sa.key" ] || {
        openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
        openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    }
    cert apiserver "/CN=kube-apiserver" serverAuth \
        "DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$APISERVER_SERVICE_IP,IP:$POD_BRIDGE_IP"
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" clientAuth
    cert kubelet "/CN=localhost" serverAuth "DNS:$NODE_NAME,IP:127.0.0.1"
    cert kubelet-client "/O=system:nodes/CN=system:node:$NODE_NAME" clientAuth
    cert admin "/O=system:masters/CN=e2e-admin" clientAuth
    cert controller-manager "/CN=system:kube-controller-manager" clientAuth
    cert scheduler "/CN=system:kube-scheduler" clientAuth
    cert kube-proxy "/CN=system:kube-proxy" clientAuth
    # kube-router's NetworkPolicy controller is bound to its own ClusterRole (up.sh).
    cert kube-router "/CN=system:kube-router" clientAuth
    local c
    for c in admin controller-manager scheduler kube-proxy kube-router; do kubeconfig "$c" "$c"; done
    kubeconfig kubelet kubelet-client
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    make_pki
fi
