#!/usr/bin/env bash
# Shows packaging/vm/lib.sh's boot retry at work: the first boot is made to panic
# (rdinit=/nonexistent: the kernel skips the initramfs, cannot mount the root without its
# modules and panics, "VFS: Unable to mount root fs"; init=/nonexistent panics it too should
# the root mount), and vm_start must boot again and reach ssh, with the panic and the retry
# in its log. Not in CI
# (a panic of its own would cost a boot there for nothing); run by hand after changing lib.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"
trap vm_stop EXIT
log=$(mktemp)
t0=$SECONDS
VM_FIRST_BOOT_APPEND="rdinit=/nonexistent init=/nonexistent" vm_start 2> >(tee "$log" >&2)
sleep 1 # the tee above
grep -q 'Kernel panic' "$log" || { echo "FAIL  the first boot did not panic (no 'Kernel panic' in its log)"; exit 1; }
grep -q 'attempt 2 of 2' "$log" || { echo "FAIL  no retry was announced"; exit 1; }
[[ $(vm_run cat /proc/cmdline) != *nonexistent* ]] || { echo "FAIL  the second boot kept the first boot's arguments"; exit 1; }
echo "PASS  a boot that panicked was retried and reached ssh ($((SECONDS - t0)) s)"
