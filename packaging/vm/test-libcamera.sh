#!/usr/bin/env bash
# Proves the libcamera backend on a real libcamera camera: libcamera's virtual pipeline
# handler (colour bars, NV12 only, no ScalerCrop) in a forky VM under QEMU.
#
#   packaging/vm/test-libcamera.sh [--deb FILE]
#
# Takes the picker binary from the forky .deb (built with the libcamera feature; built here
# with packaging/build-deb.sh unless --deb is given), runs it in the VM with
# source = "libcamera", and checks from the host, through the port forward, that the stream
# decodes to 512x512 frames of the colour-bar pattern, and in the VM that stills arrive over
# the socket. Prints PASS/FAIL per check; exits 1 if any failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=packaging/vm/lib.sh
source "$here/lib.sh"

deb=""
[[ ${1:-} == --deb ]] && deb=$(realpath "$2")
work=$(mktemp -d /tmp/picker-test-libcamera.XXXXXX)
failures=0
pass() { printf 'PASS  %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    [[ -n ${2:-} ]] && printf '%s\n' "$2" | sed 's/^/      /'
    failures=$((failures + 1))
}
vm() { vm_run --timeout 90 "$1"; }
trap 'vm_stop >/dev/null 2>&1; rm -rf "$work"' EXIT

if [[ -z $deb ]]; then
    if timeout 3600 "$repo/packaging/build-deb.sh" --suite forky --nocheck --out "$work/deb" >"$work/build.log" 2>&1; then
        deb=$(ls "$work"/deb/picker_*_amd64.deb)
        pass "build the forky .deb (libcamera feature)"
    else
        fail "build the forky .deb" "$(tail -30 "$work/build.log")"
        exit 1
    fi
fi
dpkg-deb -x "$deb" "$work/x" && pass "binary from $(basename "$deb")" || { fail "unpack $deb"; exit 1; }

if vm_start >"$work/boot.log" 2>&1; then pass "boot the forky VM"; else fail "boot the forky VM" "$(tail -20 "$work/boot.log")"; exit 1; fi
port=$(vm_host_port 8000)

timeout 120 vm_copy_in "$work/x/usr/bin/picker" /root/picker || fail "copy picker into the VM"
vm 'cat >/root/picker.toml <<TOML
[camera]
source = "libcamera"
[stream]
port = 8000
[still]
socket = "/run/pk/still.sock"
TOML
(/root/picker --config /root/picker.toml >/root/picker.log 2>&1 &)
for i in $(seq 120); do grep -q " ready " /root/picker.log && exit 0; pgrep -x picker >/dev/null || break; sleep 0.5; done
cat /root/picker.log; exit 1' >"$work/start.log" 2>&1 &&
    pass "picker starts with source = \"libcamera\" and reports ready" ||
    { fail "picker starts with the virtual camera" "$(tail -20 "$work/start.log")"; exit 1; }
vm 'grep -v "^\[" /root/picker.log' | sed 's/^/      log: /'

state=$(curl -s -m 20 "http://127.0.0.1:$port/state")
if python3 -c '
import json, sys
s = json.loads(sys.argv[1])
assert s["source"] == "libcamera" and s["online"] is True, s
assert s["stream"]["width"] == 512 and s["stream"]["height"] == 512, s
assert s["crop"] == "unsupported", s        # the virtual camera has no ScalerCrop
assert any("NV12" in a for a in s["adjustments"]), s   # RGB888/YUV420 asked, NV12 given
' "$state"; then pass "/state: libcamera online, 512x512, crop unsupported, NV12 adjustment reported"; else fail "/state" "$state"; fi

# Three frames through the port forward, decoded by ffmpeg on the host.
if timeout 90 ffmpeg -nostdin -v error -i "http://127.0.0.1:$port/stream.mjpg" -frames:v 3 \
    -f rawvideo -pix_fmt rgb24 "$work/frames.rgb" && [[ $(stat -c %s "$work/frames.rgb") -eq $((3 * 512 * 512 * 3)) ]]; then
    pass "host decodes 3 frames of 512x512 from /stream.mjpg"
else
    fail "host decodes 3 frames of 512x512 from /stream.mjpg"
fi
# libcamera's "bars" pattern: eight vertical bars, white yellow cyan green magenta red blue black.
if python3 - "$work/frames.rgb" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
w = 512
row = data[(256 * w) * 3:(257 * w) * 3]           # the middle row of the first frame
want = ["white", "yellow", "cyan", "green", "magenta", "red", "blue", "black"]
def name(r, g, b):
    hi = lambda v: v > 128
    return {(1,1,1): "white", (1,1,0): "yellow", (0,1,1): "cyan", (0,1,0): "green",
            (1,0,1): "magenta", (1,0,0): "red", (0,0,1): "blue", (0,0,0): "black"}[(hi(r), hi(g), hi(b))]
got = [name(*row[(x * w // 8 + w // 16) * 3:(x * w // 8 + w // 16) * 3 + 3]) for x in range(8)]
print("      bars:", " ".join(got))
sys.exit(0 if got == want else 1)
PY
then pass "the frames show libcamera's colour bars"; else fail "the frames show libcamera's colour bars"; fi

out=$(vm 'curl -s -m 20 --unix-socket /run/pk/still.sock http://picker/still.rgb | wc -c; curl -s -m 20 --unix-socket /run/pk/still.sock http://picker/still.png | head -c 24 | od -An -tx1 | tr -d " \n"')
rgb=$(echo "$out" | head -1)
png=$(echo "$out" | tail -1)
[[ $rgb == 786432 ]] && pass "still over the socket: /still.rgb is 512*512*3 bytes" || fail "/still.rgb size" "$out"
# PNG signature, IHDR, width 512 (0x200), height 512.
[[ $png == 89504e470d0a1a0a0000000d4948445200000200000002* ]] && pass "still over the socket: /still.png is a 512x512 PNG" || fail "/still.png" "$png"

if vm 'pkill -TERM -x picker; for i in $(seq 20); do pgrep -x picker >/dev/null || exit 0; sleep 0.1; done; exit 1'; then
    pass "SIGTERM stops picker and the camera within 2 s"
else
    fail "SIGTERM stops picker"
fi

((failures)) && { echo "test-libcamera: $failures check(s) FAILED"; exit 1; }
echo "test-libcamera: all checks PASS"
