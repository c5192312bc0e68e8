#!/usr/bin/env bash
# Installs local mode as a systemd service (docs/install.md); `make install` runs it as
# root, once the Debian packages and the sandboxes' (and browsers') Python environments
# are in place:
#   /opt/sandbox-controller/venv           the service (this checkout, not editable)
#   /etc/sandbox-controller/env            its settings (made once, with a new AUTH_TOKEN;
#                                          never overwritten)
#   /etc/systemd/system/sandbox-controller.service
# then enables and (re)starts the unit and waits for /health. Idempotent: run it again
# after an update of the checkout.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "deploy/install.sh: run as root (make install)" >&2; exit 1; }
# Where the unit (deploy/systemd/sandbox-controller.service) expects them.
PREFIX=/opt/sandbox-controller
ETC=/etc/sandbox-controller
UNIT_DIR=/etc/systemd/system
SANDBOX_ENV="${SANDBOX_ENV:?the sandboxes interpreter environment (make sandbox-env)}"
BROWSER_ENV="${BROWSER_ENV:-}"
PORT="${PORT:-8080}"
log() { printf '[install] %s\n' "$*" >&2; }

log "the service into $PREFIX/venv"
[ -x "$PREFIX/venv/bin/python" ] || /usr/bin/python3 -m venv "$PREFIX/venv"
# Built from a copy: pip builds a source directory in place, and the checkout may be
# read-only or another user's.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
tar -C . --exclude=./.venv --exclude=./.git --exclude=./.state -cf - . | tar -C "$src" -xf -
"$PREFIX/venv/bin/pip" install -q --no-cache-dir "$src"

mkdir -p "$ETC"
if [ ! -f "$ETC/env" ]; then
    log "settings in $ETC/env (a new AUTH_TOKEN; edit, then systemctl restart sandbox-controller)"
    token=$("$PREFIX/venv/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))')
    (
        umask 077
        {
            echo "# sandbox-controller settings (docs/settings.md): KEY=value, one a line."
            echo "AUTH_TOKEN=$token"
            echo "HOST=127.0.0.1"
            echo "PORT=$PORT"
            echo "SANDBOX_PYTHON=$SANDBOX_ENV/bin/python3"
            if [ -n "$BROWSER_ENV" ]; then
                echo "BROWSER_PYTHON=$BROWSER_ENV/bin/python3"
            else
                echo "# No browser environment was installed: no browser sessions."
                echo "MAX_BROWSER_SESSIONS=0"
                echo "BROWSER_WARM_AGENTS=0"
            fi
        } > "$ETC/env"
    )
fi

log "the unit $UNIT_DIR/sandbox-controller.service"
install -m 644 deploy/systemd/sandbox-controller.service "$UNIT_DIR/"
systemctl daemon-reload
systemctl enable -q sandbox-controller.service
systemctl restart sandbox-controller.service
port=$(sed -n 's/^PORT=//p' "$ETC/env" | tail -1)
health="http://127.0.0.1:${port:-8080}/health"
deadline=$((SECONDS + ${HEALTH_WAIT_S:-120}))
while [ "$SECONDS" -lt "$deadline" ]; do
    if curl -sf -m 10 -o /dev/null "$health"; then
        log "running: curl $health; the token is AUTH_TOKEN in $ETC/env"
        exit 0
    fi
    systemctl is-failed -q sandbox-controller.service && break
    sleep 1
done
log "not healthy: journalctl -u sandbox-controller says why"
systemctl status --no-pager sandbox-controller.service >&2 || true
exit 1
