# In the cgroup v2 test VM (tests/vm/inside.sh): the production install, as docs/install.md
# gives it, offline (the image's wheel house stands in for PyPI), without browsers (the
# VM has no Chromium). Then: active, healthy with cgroup v2 per execution, an execution,
# a memory-capped one reported as such; stopped, nothing of it left.
set -eu
fail() {
    echo "[install-check] FAILED: $*"
    echo "[install-check] /health: $(curl -s -m 30 http://127.0.0.1:8080/health)"
    journalctl -u sandbox-controller --no-pager -l | grep -v controller.access | tail -40
    exit 1
}
work=$(mktemp -d)
tar -C /src --exclude=./.venv --exclude=./.git --exclude=./.state -cf - . | tar -C "$work" -xf -
export PIP_NO_INDEX=1 PIP_FIND_LINKS=/var/cache/wheels PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)
HEALTH_WAIT_S=600 make -C "$work" install INSTALL_BROWSERS=no || fail "make install"
echo "[install-check] make install took $(( $(date +%s) - start ))s"
systemctl is-active -q sandbox-controller || fail "the unit is not active"
token=$(sed -n 's/^AUTH_TOKEN=//p' /etc/sandbox-controller/env)
url=http://127.0.0.1:8080
health=$(curl -sf "$url/health") || fail "/health"
echo "[install-check] /health: $health"
printf '%s\n' "$health" | grep -qF '"limits":"cgroup v2 per execution' || fail "not cgroup v2 per execution"
call() { curl -sf -m 300 -H "Authorization: Bearer $token" -H 'Content-Type: application/json' -d "$1" "$url/execute"; }
ran=$(call '{"code": "print(2 + 2)"}') || fail "an execution"
# printf, not echo: dash's echo turns the answer's \n into a newline.
printf '%s\n' "$ran" | grep -qF '"stdout":"4\n"' || fail "print(2 + 2) said $ran"
# Four children, each under its own address-space limit, together past the execution's
# MEMORY_LIMIT_MB (1024): only the execution's cgroup stops them.
bomb='import os, time\nfor _ in range(4):\n    if os.fork() == 0:\n        try:\n            held = [b\"x\" * (50 << 20) for _ in range(8)]\n        except MemoryError:\n            pass\n        time.sleep(30)\n        os._exit(0)\nfor _ in range(4):\n    os.wait()\n'
capped=$(call "{\"code\": \"$bomb\", \"timeoutMs\": 60000}") || fail "a memory-capped execution"
printf '%s\n' "$capped" | grep -qF '"target":"memory"' || fail "no memory violation in $capped"
unit_cgroup=/sys/fs/cgroup/system.slice/sandbox-controller.service
[ -d "$unit_cgroup" ] || fail "no cgroup of the unit"
echo "[install-check] the unit's cgroup: $(find "$unit_cgroup" -mindepth 1 -maxdepth 2 -type d -printf '%P ')"
systemctl stop sandbox-controller
systemctl is-active -q sandbox-controller && fail "still active after stop"
[ ! -d "$unit_cgroup" ] || fail "the unit's cgroup outlived it: $(find "$unit_cgroup" -name cgroup.procs -exec cat {} +)"
if pgrep -f 'bwrap|-m controller|-m runner' >/dev/null; then fail "processes left: $(pgrep -af 'bwrap|-m controller|-m runner')"; fi
echo "[install-check] passed: installed, healthy on cgroup v2, ran, capped, stopped with nothing left"
