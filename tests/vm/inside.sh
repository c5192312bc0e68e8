# Runs in the cgroup v2 test VM (tests/vm/run.sh), as root, at boot: the clone is at
# /src, read-only. What must be proven on cgroup v2, and nothing else (code runs about
# ten times slower here):
#   1. every test marked `cgroups` (whole-execution limits: memory across children,
#      processes, tmpfs and socket memory counted, the CPU classes, nothing left after a
#      SIGKILL of the service, /health saying cgroup v2), exactly as on the host;
#   2. the production install (`make install`, docs/install.md) as a systemd unit with
#      Delegate=yes: started, healthy with cgroup v2 per execution, an execution, a
#      memory-capped one, stopped leaving nothing (tests/vm/install-check.sh).
set -u
echo "[inside] $(uname -r), cgroup $(stat -fc %T /sys/fs/cgroup): $(cat /sys/fs/cgroup/cgroup.controllers)"
export PYTHONDONTWRITEBYTECODE=1 PYTHONPATH=/src:/src/runner-image:/src/browser-image:/src/client
export SANDBOX_PYTHON=/usr/bin/python3 PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin
export TEST_TIME_SCALE=10  # tests/support.py: every wait of the helpers, ten times as long
cd /src
status=0
# VM_ONLY=install (tests/vm/run.sh passes it on): the install alone, while working on it.
only=$(cat /out/only 2>/dev/null || true)
if [ "$only" != install ]; then
# Slower here: the tests' own timeouts are the host's times ten.
# Only the modules that hold such tests are collected: the others import what the VM
# does not have (Chromium's helpers, schemathesis, CEL).
python -m pytest -p no:cacheprovider -m "cgroups and not chromium" -o timeout=600 \
    $(grep -l 'pytest.mark.cgroups' tests/integration/*.py) || status=1
fi
echo "[inside] the systemd install"
sh /src/tests/vm/install-check.sh || status=1
echo "[inside] done: exit code $status"
exit $status
