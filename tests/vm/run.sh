#!/usr/bin/env bash
# Boots the cgroup v2 test VM (tests/vm/image.sh) and runs tests/vm/inside.sh in it,
# against this clone, shared read-only; prints what the run printed and exits with its
# exit code.  QEMU's software emulation: the KVM these machines offer is a paravirtual
# one that cannot boot a stock Debian kernel, and code runs some ten times slower, so
# only what must be proven on cgroup v2 runs here (inside.sh says what).
# Every write inside goes to a throwaway overlay of the image: nothing survives a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
image=$(tests/vm/image.sh)
out=$(mktemp -d /tmp/vm-out.XXXXXX)
trap 'rm -rf "$out"' EXIT
log="$out/console.log"
[ -z "${VM_ONLY:-}" ] || echo "$VM_ONLY" > "$out/only"  # inside.sh: one part alone
start=$SECONDS
echo "[vm $(date +%H:%M:%S)] booting Debian 13 (cgroup v2) under QEMU; the run's output follows at its end" >&2
status=0
timeout "${VM_TIMEOUT_S:-1800}" nice -n "${VM_NICE:-5}" qemu-system-x86_64 \
    -accel tcg,thread=single -cpu max -smp 2 -m 4096 \
    -display none -monitor none -serial "file:$log" -no-reboot -nic none \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 quiet panic=-1" \
    -drive "file=$image/rootfs.img,if=virtio,format=raw,snapshot=on" \
    -virtfs "local,path=$PWD,mount_tag=src,security_model=none,readonly=on" \
    -virtfs "local,path=$out,mount_tag=out,security_model=none" || status=$?
tr -d '\r' < "$log" | sed -n '/\[inside\]/,$p' >&2
if [ "$status" != 0 ]; then
    tail -50 "$log" >&2
    echo "[vm] QEMU failed or timed out (exit $status)" >&2
    exit 1
fi
rc=$(cat "$out/rc" 2>/dev/null || echo "no exit code: the run did not finish")
echo "[vm $(date +%H:%M:%S)] the v2 tier took $((SECONDS - start))s, exit code $rc" >&2
[ "$rc" = 0 ]
