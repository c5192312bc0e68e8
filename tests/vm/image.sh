#!/usr/bin/env bash
# Builds (or finds in the cache) the cgroup v2 test host: a Debian 13 virtual machine
# made from Debian's own packages (kernel, systemd, bubblewrap, Python), booted by
# tests/vm/run.sh under QEMU's software emulation.
#
# The image holds what does not change with the code: the packages, a Python
# environment with the service's and the tests' dependencies (/opt/venv), and a wheel
# house of the same and of the sandboxes' packages (/var/cache/wheels), with which the
# production install is tested offline.
# The code itself is the clone's, shared into the VM when it boots. Cached under
# $VM_CACHE/debian-13-<key>/, the key a digest of this script, guest/ and pyproject.toml; an
# image is marked complete only once built whole.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "tests/vm/image.sh: must run as root (mmdebstrap)" >&2; exit 1; }

SUITE=trixie
VM_CACHE="${VM_CACHE:-/var/cache/sandbox-controller/vm}"
PACKAGES=(systemd systemd-sysv udev dbus linux-image-amd64 bubblewrap python3 python3-venv
          socat iproute2 util-linux procps ca-certificates kmod make curl unzip)
key=$(cat tests/vm/image.sh tests/vm/guest/* pyproject.toml runner-image/sandbox-requirements.txt \
      | sha256sum | cut -c1-12)
dir="$VM_CACHE/debian-13-$key"
log() { printf '[vm %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# The image's directory is this script's only output: everything else goes to stderr.
exec 3>&1 1>&2
if [ -f "$dir/.complete" ]; then log "cached: $dir"; echo "$dir" >&3; exit 0; fi
command -v mmdebstrap >/dev/null && command -v qemu-system-x86_64 >/dev/null \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        mmdebstrap qemu-system-x86 e2fsprogs
start=$SECONDS
tmp="$dir.tmp.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT

# The Python packages: the service's dependencies and the test runner's, from the one
# place that names them.
/usr/bin/python3 - > "$tmp/requirements.txt" <<'PY'
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
wanted = project["dependencies"] + [
    d for d in project["optional-dependencies"]["dev"] if d.startswith("pytest")
]
print("\n".join(wanted + ["setuptools>=77", "wheel"]))
PY
# The wheel house also holds what `make install` puts in the sandboxes' environment.
{ cat "$tmp/requirements.txt" runner-image/sandbox-requirements.txt; echo pip; } > "$tmp/wheels.txt"

# pip inside the image, with this host's certificate authorities (a proxy of this host's
# may present its own) and none of this host's own pip locations.
PIP_IN_IMAGE=(env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL
              PIP_CERT=/tmp/host-ca.crt SSL_CERT_FILE=/tmp/host-ca.crt /opt/venv/bin/pip --no-cache-dir)

log "mmdebstrap $SUITE with ${#PACKAGES[@]} packages, and the Python environment"
nice -n 10 mmdebstrap --variant=minbase --mode=root --quiet \
    --include="$(IFS=,; echo "${PACKAGES[*]}")" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="cp '$tmp/requirements.txt' '$tmp/wheels.txt' \"\$1/tmp/\"" \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/tmp/host-ca.crt"' \
    --customize-hook='chroot "$1" python3 -m venv /opt/venv' \
    --customize-hook="chroot \"\$1\" ${PIP_IN_IMAGE[*]} install -q -r /tmp/requirements.txt" \
    --customize-hook="chroot \"\$1\" ${PIP_IN_IMAGE[*]} download -q -d /var/cache/wheels -r /tmp/wheels.txt" \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/tmp/*.txt "$1/tmp/host-ca.crt"' \
    --customize-hook="cp '$PWD/tests/vm/guest/vm-run.service' \"\$1/etc/systemd/system/\"" \
    --customize-hook='ln -s /etc/systemd/system/vm-run.service "$1/etc/systemd/system/multi-user.target.wants/"' \
    --customize-hook='echo vm > "$1/etc/hostname"; echo "/dev/vda / ext4 rw 0 1" > "$1/etc/fstab"' \
    --customize-hook='systemctl --root="$1" mask serial-getty@ttyS0.service getty@tty1.service' \
    "$SUITE" "$tmp/root"
cp "$tmp"/root/boot/vmlinuz-* "$tmp/vmlinuz"
cp "$tmp"/root/boot/initrd.img-* "$tmp/initrd.img"
mkfs.ext4 -q -F -L root -d "$tmp/root" "$tmp/rootfs.img" 6G
rm -rf "$tmp/root"
date -u +%FT%TZ > "$tmp/.complete"
rm -rf "$dir" && mv "$tmp" "$dir"
trap - EXIT
# Images of other keys are of other versions of this script or its inputs: gone.
find "$VM_CACHE" -mindepth 1 -maxdepth 1 -name 'debian-13-*' ! -name "debian-13-$key" \
    -exec rm -rf {} +
log "built $dir in $((SECONDS - start))s"
echo "$dir" >&3
