#!/usr/bin/env bash
# `make k8s-up`: the local cluster (up.sh: built or taken from the cache, started, the
# project's images loaded) with the chart installed exactly as a user installs it:
#   helm upgrade --install sandbox ./helm -n sandbox -f helm/local-values.yaml
# then waits until /health answers 200 through the Ingress and prints, as its last two
# lines, SANDBOX_URL=<the Ingress> and SANDBOX_TOKEN_FILE=<a file holding the token>.
# Idempotent; `make k8s-down` removes everything.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
need_root

RELEASE="${SANDBOX_RELEASE:-sandbox}"
NAMESPACE="${SANDBOX_NAMESPACE:-sandbox}"
URL="http://$POD_BRIDGE_IP"
TOKEN_FILE="$STATE_DIR/sandbox-token"
HELM=("$HELM_BIN/helm" --kubeconfig "$STATE_DIR/kubeconfig/admin.kubeconfig")

"$CLUSTER_DIR/up.sh" >/dev/null
start=$SECONDS
log "helm upgrade --install $RELEASE ./helm -n $NAMESPACE -f helm/local-values.yaml"
# SANDBOX_EXTRA_VALUES: more values files (colon-separated) on top, for the e2e tier's
# own settings; a user's k8s-up has none.
extra=()
IFS=: read -r -a files <<< "${SANDBOX_EXTRA_VALUES:-}"
for f in "${files[@]}"; do [ -n "$f" ] && extra+=(-f "$f"); done
"${HELM[@]}" upgrade --install "$RELEASE" "$REPO_ROOT/helm" --namespace "$NAMESPACE" \
    --create-namespace -f "$REPO_ROOT/helm/local-values.yaml" "${extra[@]}" --wait --timeout 5m >/dev/null

# The images keep their tag (local) when rebuilt: roll the controller and the operator
# when one loaded differs from what the running release was started with (warm runner
# pods go with the replica that owns them; warm browser pods are replaced here).
images="$(cat "$STATE_DIR"/images/*sandbox-controller_local.loaded "$STATE_DIR"/images/*sandbox-runner_local.loaded "$STATE_DIR"/images/*sandbox-browser_local.loaded 2>/dev/null || true)"
if [ -f "$STATE_DIR/images/release.images" ] && [ "$(cat "$STATE_DIR/images/release.images")" != "$images" ]; then
    log "new images: restarting the controller and the operator"
    "${KUBECTL[@]}" -n sandbox-browsers delete pods -l sandbox-controller.dev/pool=warm \
        --ignore-not-found >/dev/null
    "${KUBECTL[@]}" -n "$NAMESPACE" rollout restart deployment -l "app.kubernetes.io/instance=$RELEASE" >/dev/null
    "${KUBECTL[@]}" -n "$NAMESPACE" rollout status deployment -l "app.kubernetes.io/instance=$RELEASE" --timeout=5m >/dev/null
fi
echo "$images" > "$STATE_DIR/images/release.images"

(umask 077; "${KUBECTL[@]}" -n "$NAMESPACE" get secret "$RELEASE-sandbox-controller-auth" \
    -o jsonpath='{.data.token}' | base64 -d > "$TOKEN_FILE")
wait_for 180 "/health through the Ingress at $URL" curl -fsS --max-time 5 "$URL/health"
log "installed and healthy in $((SECONDS - start))s"
echo "SANDBOX_URL=$URL"
echo "SANDBOX_TOKEN_FILE=$TOKEN_FILE"
