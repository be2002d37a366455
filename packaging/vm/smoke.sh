#!/usr/bin/env bash
# Proves the VM infrastructure end to end, without picker: builds (or reuses) the forky image,
# boots it under QEMU TCG, and captures from libcamera's virtual camera with libcamera's own `cam`
# on two 512x512 streams (viewfinder + video, the configuration picker asks for).
#
#   packaging/vm/smoke.sh [--keep]
#
# Prints timings and PASS/FAIL per check; exits 1 if any failed. --keep leaves the VM running
# (ssh: source packaging/vm/lib.sh, then vm_ssh; stop it with vm_stop or kill the printed pid).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

keep=0
[[ ${1:-} == --keep ]] && keep=1
failures=0
pass() { printf 'PASS  %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    [[ -z ${2:-} ]] || printf '%s\n' "$2" | sed 's/^/      /'
    failures=$((failures + 1))
}
indent() { sed 's/^/      /'; }
cleanup() {
    if ((keep)); then
        echo "VM left running: qemu pid $(cat "$VM_RUN/qemu.pid" 2>/dev/null), ssh port $VM_SSH_PORT"
    else
        vm_stop
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

t0=$SECONDS
image=$("$here/image.sh")
echo "image: $image ($((SECONDS - t0)) s)"

t0=$SECONDS
if vm_start "$image"; then
    pass "boot to ssh ($((SECONDS - t0)) s)"
else
    fail "boot to ssh ($((SECONDS - t0)) s)"
    exit 1
fi

# What the virtual camera needs from the kernel: a dma-buf allocator, /dev/udmabuf (built into
# forky's kernel; a module elsewhere, then loaded by /etc/modules-load.d/udmabuf.conf).
# shellcheck disable=SC2016 # expanded in the VM
if out=$(vm_run --timeout 30 'uname -r; grep -w udmabuf /lib/modules/$(uname -r)/modules.builtin;
        lsmod | grep -w udmabuf; ls -l /dev/udmabuf /dev/dma_heap/* 2>&1; test -c /dev/udmabuf'); then
    pass "/dev/udmabuf present" && indent <<<"$out"
else
    fail "/dev/udmabuf present" "$out"
fi

t0=$SECONDS
if out=$(vm_run --timeout 60 'cam -l 2>&1') && grep -q '^1: ' <<<"$out"; then
    pass "cam -l lists a camera ($((SECONDS - t0)) s)"
else
    fail "cam -l lists a camera ($((SECONDS - t0)) s)"
fi
indent <<<"$out"

# 5 requests, each filling a buffer of both streams: expect frames on stream0 and stream1.
t0=$SECONDS
cmd='cam -c1 -C5 -s role=viewfinder,width=512,height=512 -s role=video,width=512,height=512'
out=$(vm_run --timeout 120 "$cmd 2>&1") || true
s0=$(grep -c 'stream0 seq:' <<<"$out" || true)
s1=$(grep -c 'stream1 seq:' <<<"$out" || true)
if ((s0 >= 5 && s1 >= 5)) && grep -q 'NV12\|512x512' <<<"$out"; then
    pass "$cmd: $s0 frames on stream0, $s1 on stream1 ($((SECONDS - t0)) s)"
else
    fail "$cmd: $s0 frames on stream0, $s1 on stream1 ($((SECONDS - t0)) s)"
fi
indent <<<"$out" | tail -n 20

if ((failures)); then
    echo "smoke: $failures check(s) FAILED"
    exit 1
fi
echo "smoke: all checks PASS"
