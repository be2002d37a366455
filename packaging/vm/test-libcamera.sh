#!/usr/bin/env bash
# Proves the libcamera backend on a real libcamera camera: libcamera's virtual pipeline handler
# (colour bars, NV12 only, no ScalerCrop, so the adjusted-format and no-crop paths) in a forky
# VM under QEMU.
#
#   packaging/vm/test-libcamera.sh [--binary FILE | --deb FILE]
#
# Without an option it builds picker with the libcamera feature in the cached forky chroot
# (packaging/in-chroot.sh forky --host-toolchain -- cargo build --release --features libcamera).
# Then it boots the VM (packaging/vm/lib.sh), runs picker there with source = "libcamera" at
# 512x512 and a still socket, and checks: start and the adjustments logged; /state; from the
# host through the port forward, that /stream.mjpg decodes (ffmpeg) to 512x512 frames of the
# colour bars; that stills arrive over the socket (curl --unix-socket in the VM) with
# the right size, colours and byte order; a missing camera id fails at start naming the cameras;
# SIGTERM stops it promptly; rotation = 180 is reported adjusted; libcamera's log reaches the
# journal with its priorities under systemd; [controls] reported unsupported and /controls on
# the socket only (controls_checks). Prints PASS/FAIL per check; exits 1 if any failed.

# Commands for the VM are single-quoted on purpose: they expand there, not here. vm_start's
# optional argument is an image, not this script's arguments.
# shellcheck disable=SC2016,SC2119
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=packaging/vm/lib.sh
source "$here/lib.sh"

deb="" binary=""
case "${1:-}" in
    --deb) deb=$(realpath "$2") ;;
    --binary) binary=$(realpath "$2") ;;
    "") ;;
    -h | --help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
esac
work=$(mktemp -d /tmp/picker-test-libcamera.XXXXXX)
failures=0
t_start=$SECONDS
pass() { printf 'PASS  %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    [[ -n ${2:-} ]] && printf '%s\n' "$2" | sed 's/^/      /'
    failures=$((failures + 1))
}
indent() { sed 's/^/      /'; }
vm() { vm_run --timeout 90 "$1"; }
trap 'vm_stop >/dev/null 2>&1; rm -rf "$work"' EXIT

# controls_checks: the [controls] table and /controls on a camera that has none of the controls
# (libcamera's virtual camera advertises only FrameDurationLimits and FaceDetectMode): every
# key reported "unsupported" in /state and the log, picker still ready; /controls over the
# still socket (GET, PUT, DELETE; a bad key refused naming it); absent on the TCP port.
controls_checks() {
    local out
    vm 'cp /root/picker.toml /root/controls.toml
        printf "[controls]\nlens-position = 4\nexposure-time = 10000\nanalogue-gain = 2.0\nawb-mode = \"daylight\"\ndenoise = \"fast\"\n" >>/root/controls.toml'
    if vm '(RUST_LOG=info /root/picker --config /root/controls.toml >/root/controls.log 2>&1 &)
        for i in $(seq 240); do
            grep -q " ready" /root/controls.log && exit 0
            pgrep -x picker >/dev/null || break
            sleep 0.5
        done
        cat /root/controls.log; exit 1' >"$work/controls-start.log" 2>&1; then
        pass "[controls] on the virtual camera: picker starts and reports ready"
    else
        fail "[controls] on the virtual camera: picker starts" "$(tail -30 "$work/controls-start.log")"
        return
    fi
    out=$(curl -s -m 20 "http://127.0.0.1:$port/state")
    if python3 -c '
import json, sys
s = json.loads(sys.argv[1])
c = s["controls"]
assert s["online"] is True, s
keys = ["lens-position", "exposure-time", "analogue-gain", "awb-mode", "denoise"]
assert sorted(c) == sorted(keys), c
assert all(c[k]["status"] == "unsupported" and "value" not in c[k] for k in keys), c
print(json.dumps(c))
' "$out" >"$work/controls-state.out" 2>&1; then
        pass "/state: every [controls] key \"unsupported\" on the virtual camera (not an error)"
        indent <"$work/controls-state.out"
    else
        fail "/state reports the controls unsupported" "$(cat "$work/controls-state.out"; echo "$out")"
    fi
    if vm 'grep -q "controls.lens-position = 4.0: unsupported" /root/controls.log &&
           ! grep -v "^\[" /root/controls.log | grep -E " ERROR "'; then
        pass "the log names each unsupported key once, no error"
    else
        fail "the log reports unsupported controls" "$(vm 'grep -v "^\[" /root/controls.log')"
    fi
    sock() { vm "curl -sS -m 20 -w '\n%{http_code}' --unix-socket /run/pk/still.sock $*"; }
    out=$(sock http://picker/controls)
    if [[ ${out##*$'\n'} == 200 ]] && python3 -c '
import json, sys
c = json.loads(sys.argv[1])
assert c["camera"] == {}, c["camera"]        # none of our controls
assert c["config"]["lens-position"] == 4.0, c
' "${out%$'\n'*}"; then
        pass "GET /controls over the socket: the config, and no controls on this camera"
    else
        fail "GET /controls over the socket" "$out"
    fi
    out=$(sock "-X PUT -d '{\"lens-position\": 10, \"brightness\": 0.2}' http://picker/controls")
    if [[ ${out##*$'\n'} == 200 ]] && python3 -c '
import json, sys
c = json.loads(sys.argv[1])
assert c["runtime"] == {"lens-position": 10.0, "brightness": 0.2}, c
assert c["in_force"]["brightness"]["status"] == "unsupported", c
' "${out%$'\n'*}"; then
        pass "PUT /controls over the socket merges (reported unsupported here)"
    else
        fail "PUT /controls over the socket" "$out"
    fi
    out=$(sock "-X PUT -d '{\"lens-positon\": 1}' http://picker/controls")
    if [[ ${out##*$'\n'} == 400 ]] && grep -q 'unknown key "lens-positon"' <<<"$out"; then
        pass "PUT /controls with a misspelt key: 400 naming it"
    else
        fail "PUT /controls with a misspelt key" "$out"
    fi
    out=$(sock "-X DELETE http://picker/controls")
    if [[ ${out##*$'\n'} == 200 ]] && grep -q '"runtime":{}' <<<"$out"; then
        pass "DELETE /controls: back to the config"
    else
        fail "DELETE /controls" "$out"
    fi
    out=$(curl -s -o /dev/null -m 20 -w '%{http_code}' "http://127.0.0.1:$port/controls")
    if [[ $out == 404 ]]; then
        pass "/controls is not on the TCP port (404)"
    else
        fail "/controls is not on the TCP port" "HTTP $out"
    fi
    vm 'pkill -TERM -x picker; for i in $(seq 20); do pgrep -x picker >/dev/null || exit 0; sleep 0.1; done; exit 1' ||
        fail "SIGTERM stops the [controls] picker"
}

# --- the binary --------------------------------------------------------------------------------
if [[ -n $deb ]]; then
    dpkg-deb -x "$deb" "$work/x" || { fail "unpack $deb"; exit 1; }
    binary=$work/x/usr/bin/picker
elif [[ -z $binary ]]; then
    t0=$SECONDS
    if timeout 3600 bash "$repo/packaging/in-chroot.sh" forky --host-toolchain -- \
        cargo build --release --locked --features libcamera >"$work/build.log" 2>&1; then
        binary=$repo/target/chroot-forky-host/release/picker
        pass "cargo build --release --features libcamera in the forky chroot ($((SECONDS - t0))s)"
    else
        fail "cargo build --features libcamera in the forky chroot" "$(tail -30 "$work/build.log")"
        exit 1
    fi
fi
echo "      binary: $binary"

# --- boot and start ----------------------------------------------------------------------------
t0=$SECONDS
if vm_start >"$work/boot.log" 2>&1; then
    pass "boot the forky VM ($((SECONDS - t0))s)"
else
    fail "boot the forky VM" "$(tail -20 "$work/boot.log")"
    exit 1
fi
port=$(vm_host_port 8000)
vm_copy_in "$binary" /root/picker || { fail "copy picker into the VM"; exit 1; }

# The configuration of the proof: the 512x512 sizes, a still socket, the real camera.
vm 'cat >/root/picker.toml <<TOML
[camera]
source = "libcamera"
framerate = 30
crop = "center-square"
rotation = 180
[stream]
port = 8000
width = 512
height = 512
[still]
socket = "/run/pk/still.sock"
width = 512
height = 512
TOML
cat /usr/share/libcamera/pipeline/virtual/virtual.yaml'

# picker probe --json on the virtual camera: parses as the model tests' fixture format and
# matches tests/fixtures/cameras/virtual.json (all but who recorded it). The output is kept in
# target/vm-probe-virtual.json, the file to copy there when libcamera changes.
if vm '/root/picker probe --json --config /root/picker.toml' >"$work/probe.json" 2>"$work/probe.err"; then
    mkdir -p "$repo/target" && cp "$work/probe.json" "$repo/target/vm-probe-virtual.json"
    verdict=$(python3 - "$work/probe.json" "$repo/tests/fixtures/cameras/virtual.json" <<'PY'
import json, os, sys
got = json.load(open(sys.argv[1]))
assert got["format"] == "picker-probe-1", got.get("format")
assert got["outputs"] == {"still": [512, 512], "video": [512, 512]}, got["outputs"]
assert got["streams"], "no streams"
if os.path.exists(sys.argv[2]):
    want = json.load(open(sys.argv[2]))
    for d in (got, want):
        d.pop("recorded_by", None)
    assert got == want, f"differs from the fixture:\n{json.dumps(got)}\n{json.dumps(want)}"
    print("matches tests/fixtures/cameras/virtual.json")
else:
    print("parses (no fixture yet: copy target/vm-probe-virtual.json there)")
PY
    ) && pass "picker probe --json on the virtual camera: $verdict" ||
        fail "picker probe --json on the virtual camera" "$verdict$(cat "$work/probe.json")"
else
    fail "picker probe --json on the virtual camera" "$(cat "$work/probe.err")"
fi

t0=$SECONDS
if vm '(RUST_LOG=info /root/picker --config /root/picker.toml >/root/picker.log 2>&1 &)
    for i in $(seq 240); do
        grep -q " ready" /root/picker.log && exit 0
        pgrep -x picker >/dev/null || break
        sleep 0.5
    done
    cat /root/picker.log; exit 1' >"$work/start.log" 2>&1; then
    pass "picker starts with source = \"libcamera\" and reports ready ($((SECONDS - t0))s)"
else
    fail "picker starts with the virtual camera" "$(tail -30 "$work/start.log")"
    exit 1
fi
# picker's own lines (libcamera's, which start with "[", are left out).
vm 'grep -v "^\[" /root/picker.log' | sed 's/^/      log: /'

adjusted=$(vm 'grep -F "camera adjusted the configuration" /root/picker.log')
if [[ -n $adjusted ]] && grep -q NV12 <<<"$adjusted"; then
    pass "libcamera's adjustments are logged (RGB888/YUV420 asked, NV12 given)"
    indent <<<"$adjusted"
else
    fail "libcamera's adjustments are logged" "$(vm 'cat /root/picker.log')"
fi

state=$(curl -s -m 20 "http://127.0.0.1:$port/state")
if python3 -c '
import json, sys
s = json.loads(sys.argv[1])
assert s["source"] == "libcamera" and s["online"] is True, s
assert s["stream"]["width"] == 512 and s["stream"]["height"] == 512, s
assert s["crop"] == "unsupported", s        # the virtual camera has no ScalerCrop
assert any("NV12" in a for a in s["adjustments"]), s
# The virtual camera cannot flip: rotation = 180 is reported, not silently claimed.
assert any(a.startswith("orientation: asked Rotate180, got Rotate0") for a in s["adjustments"]), s
print(json.dumps({k: s[k] for k in ("online", "source", "fps", "frames", "crop", "adjustments")}))
' "$state" >"$work/state.out" 2>&1; then
    pass "/state: libcamera online, 512x512, crop \"unsupported\", adjustments listed (orientation too)"
    indent <"$work/state.out"
else
    fail "/state" "$(cat "$work/state.out"; echo "$state")"
fi

# --- the stream, decoded on the host -----------------------------------------------------------
# bars.py FILE FORMAT FRAMES: checks that every 512x512 frame in FILE (raw rgb24 or bgr24) shows
# libcamera's colour bars (white yellow cyan green magenta red blue black, 64 px each; the
# virtual camera scrolls them sideways, so any rotation of that order) on rows at 1/4, 1/2, 3/4
# of the height. Prints the bars and their offset per frame.
cat >"$work/bars.py" <<'PY'
import sys
path, fmt, frames = sys.argv[1], sys.argv[2], int(sys.argv[3])
W = H = 512
data = open(path, "rb").read()
assert len(data) == frames * W * H * 3, "%d bytes, want %d" % (len(data), frames * W * H * 3)
BARS = ["white", "yellow", "cyan", "green", "magenta", "red", "blue", "black"]
NAMES = {(1, 1, 1): "white", (1, 1, 0): "yellow", (0, 1, 1): "cyan", (0, 1, 0): "green",
         (1, 0, 1): "magenta", (1, 0, 0): "red", (0, 0, 1): "blue", (0, 0, 0): "black"}
def runs(row):
    out = []
    for x in range(W):
        p = row[x * 3:x * 3 + 3]
        r, g, b = (p[0], p[1], p[2]) if fmt == "rgb" else (p[2], p[1], p[0])
        if max(r, g, b) - min(r, g, b) > 40 and min(r, g, b) > 60 and max(r, g, b) < 200:
            name = None  # a blend at an edge
        else:
            name = NAMES[(r > 128, g > 128, b > 128)]
        if out and out[-1][0] == name:
            out[-1][1] += 1
        else:
            out.append([name, 1, x])
    # Drop edge blends (JPEG and chroma subsampling smear each edge over a few pixels), but
    # keep the runs at the image borders however short: they are the two pieces of the bar
    # the scrolling splits, joined below.
    return [r for r in out if r[0] is not None and (r[1] >= 8 or r[2] == 0 or r[2] + r[1] == W)]
ok = True
for f in range(frames):
    frame = data[f * W * H * 3:(f + 1) * W * H * 3]
    for y in (H // 4, H // 2, 3 * H // 4):
        rs = runs(frame[y * W * 3:(y + 1) * W * 3])
        if len(rs) > 1 and rs[0][0] == rs[-1][0]:   # one bar split by the wrap-around
            rs[0][1] += rs[-1][1]
            rs[0][2] = rs[-1][2]
            rs.pop()
        else:
            # An edge that scrolled onto the border: chroma subsampling blends its two bars
            # into a pixel or two there (red and blue read as black), too short to be a bar.
            rs = [r for r in rs if r[1] >= 3]
        names = [r[0] for r in rs]
        good = (len(names) == 8 and names[0] in BARS
                and all(names[i] == BARS[(BARS.index(names[0]) + i) % 8] for i in range(8))
                and all(abs(r[1] - 64) <= 6 for r in rs))
        if y == H // 2:
            white = [r for r in rs if r[0] == "white"]
            print("      frame %d: %s (white bar at x=%s)" % (f, " ".join("%s:%d" % (r[0], r[1]) for r in rs), white[0][2] if white else "?"))
        if not good:
            print("      frame %d row %d: not the colour bars" % (f, y))
            ok = False
sys.exit(0 if ok else 1)
PY

if timeout 90 ffmpeg -nostdin -v error -i "http://127.0.0.1:$port/stream.mjpg" -frames:v 3 \
    -f rawvideo -pix_fmt rgb24 "$work/frames.rgb" 2>"$work/ffmpeg.err" &&
    [[ $(stat -c %s "$work/frames.rgb") -eq $((3 * 512 * 512 * 3)) ]]; then
    pass "host decodes 3 frames of 512x512 from /stream.mjpg through the port forward"
else
    fail "host decodes 3 frames of 512x512 from /stream.mjpg" "$(cat "$work/ffmpeg.err")"
fi
if python3 "$work/bars.py" "$work/frames.rgb" rgb 3 >"$work/bars.out" 2>&1; then
    pass "the stream shows libcamera's colour bars (8 bars, 64 px each, in order)"
else
    fail "the stream shows libcamera's colour bars"
fi
cat "$work/bars.out"

# ffprobe's view of the stream: codec and size as a browser would see them.
probe=$(timeout 60 ffprobe -v error -select_streams v:0 -show_entries stream=codec_name,width,height \
    -of csv=p=0 "http://127.0.0.1:$port/stream.mjpg" 2>&1)
if [[ $probe == "mjpeg,512,512" ]]; then pass "ffprobe: $probe"; else fail "ffprobe of /stream.mjpg" "$probe"; fi

# --- stills over the socket --------------------------------------------------------------------
still() { # still PATH OUT: fetched in the VM with curl --unix-socket, headers to OUT.h
    vm_run --timeout 60 "curl -sS --fail -m 20 -D /tmp/h --unix-socket /run/pk/still.sock http://picker$1 && cat /tmp/h >&2" \
        >"$2" 2>"$2.h"
}
if still /still.rgb "$work/still.rgb" && [[ $(stat -c %s "$work/still.rgb") -eq $((512 * 512 * 3)) ]]; then
    pass "still over the socket: /still.rgb is 512*512*3 = 786432 bytes"
    grep -i '^x-' "$work/still.rgb.h" | tr -d '\r' | indent
else
    fail "still over the socket: /still.rgb" "$(stat -c %s "$work/still.rgb" 2>&1; cat "$work/still.rgb.h")"
fi
if python3 "$work/bars.py" "$work/still.rgb" rgb 1 >"$work/still.out" 2>&1; then
    pass "/still.rgb shows the colour bars in R,G,B byte order (NV12 still converted)"
else
    fail "/still.rgb shows the colour bars in R,G,B byte order"
fi
cat "$work/still.out"
if still /still.bgr "$work/still.bgr" && python3 "$work/bars.py" "$work/still.bgr" bgr 1 >"$work/bgr.out" 2>&1; then
    pass "/still.bgr shows the colour bars in B,G,R byte order"
else
    fail "/still.bgr shows the colour bars in B,G,R byte order" "$(cat "$work/bgr.out")"
fi
if still /still.png "$work/still.png" && python3 -c '
import struct, sys
d = open(sys.argv[1], "rb").read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
assert struct.unpack(">II", d[16:24]) == (512, 512), struct.unpack(">II", d[16:24])
' "$work/still.png"; then
    pass "/still.png is a 512x512 PNG"
else
    fail "/still.png is a 512x512 PNG"
fi
seq_of() { grep -i '^x-sequence:' "$1.h" | tr -dc 0-9; }
if still /still.rgb "$work/s1" && still "/still.rgb?fresh=1" "$work/s2" &&
    (($(seq_of "$work/s2") > $(seq_of "$work/s1"))); then
    pass "?fresh=1 waits for a newer frame (X-Sequence $(seq_of "$work/s1") -> $(seq_of "$work/s2"))"
else
    fail "?fresh=1 returns a newer frame" "$(cat "$work/s1.h" "$work/s2.h")"
fi

# --- camera buffers: a cached DMA heap, lent not copied, paced (issue 14) ----------------------
# The VM's kernel has the system DMA heap: the virtual camera (no sensor) gets its buffers from
# it, imported. With a stream client and no still, the camera's frames are lent to the encoder:
# the bytes copied grow only by whole frames the owner could not lend (counted apart); a still
# copies its own image once. The virtual camera runs faster than the 30 fps asked: the surplus
# is given back untouched (picker_frames_paced_total), when it shows. Each reading of /metrics
# adds up (frames captured, lent and bytes copied are counted together), so the sums are exact.
heap=$(vm 'grep -F "frame buffers from a cached DMA heap" /root/picker.log')
if grep -q 'heap=/dev/dma_heap/system' <<<"$heap"; then
    pass "frame buffers come from the system DMA heap, imported into libcamera"
    indent <<<"$heap"
else
    fail "frame buffers from the DMA heap" "$(vm 'ls -l /dev/dma_heap; grep -v "^\[" /root/picker.log')"
fi
metrics() { curl -s -m 20 "http://127.0.0.1:$port/metrics" | grep -E "^picker_(frames_(captured|lent|paced|unconsumed)_total|camera_bytes_copied_total|(camera|encode)_frame_seconds_count) "; }
metrics >"$work/m0"
timeout 90 ffmpeg -nostdin -v error -i "http://127.0.0.1:$port/stream.mjpg" -frames:v 30 -f null - 2>"$work/ffmpeg30.err"
metrics >"$work/m1"
still /still.rgb "$work/copy1" >/dev/null 2>&1
metrics >"$work/m2"
if python3 - "$work/m0" "$work/m1" "$work/m2" >"$work/lend.out" 2>&1 <<'PY'
import sys
m = [dict((l.split()[0], float(l.split()[1])) for l in open(p)) for p in sys.argv[1:]]
d = lambda k, a, b: m[b]["picker_" + k] - m[a]["picker_" + k]
captured, lent = d("frames_captured_total", 0, 1), d("frames_lent_total", 0, 1)
copied = d("camera_bytes_copied_total", 0, 1)
print("      stream window: captured %d, lent %d, paced %d, bytes copied %d, encoded frames timed %d"
      % (captured, lent, d("frames_paced_total", 0, 1), copied, d("encode_frame_seconds_count", 0, 1)))
assert captured >= 20 and lent >= 0.75 * captured, "frames not lent"
# NV12 512x512 in one stream: a frame copied whole is its video and its still, 393216 bytes each.
assert copied == (captured - lent) * 2 * 393216, "bytes copied beyond unlendable frames"
still_copy = d("camera_bytes_copied_total", 1, 2)
c2, l2 = d("frames_captured_total", 1, 2), d("frames_lent_total", 1, 2)
print("      one still: bytes copied %d (frames captured %d, lent %d meanwhile)" % (still_copy, c2, l2))
assert still_copy - (c2 - l2) * 2 * 393216 in (0, 393216), "a still copies its own image at most"
print("      totals: " + ", ".join("%s %d" % (k[7:], v) for k, v in sorted(m[2].items())))
PY
then
    pass "stream frames are lent, not copied; a still copies one image (picker_camera_bytes_copied_total)"
    cat "$work/lend.out"
else
    fail "stream frames lent, not copied" "$(cat "$work/lend.out" "$work/ffmpeg30.err")"
fi

# --- stop, and a camera that is not there ------------------------------------------------------
# The bound is the camera's stop grace (2 s) plus the service's join (3 s) and some slack for
# TCG under load: a bound against hanging, not a speed claim.
if vm 'pkill -TERM -x picker
       for i in $(seq 80); do pgrep -x picker >/dev/null || exit 0; sleep 0.1; done; exit 1'; then
    pass "SIGTERM stops picker and the camera within 8 s"
else
    fail "SIGTERM stops picker within 8 s" "$(vm 'tail -5 /root/picker.log')"
fi
# picker's own lines: no warning beyond the expected adjustments and the missing ScalerCrop;
# libcamera's (they start with "["): no error, e.g. none caused by what picker asks of it.
if vm 'grep -v "^\[" /root/picker.log | grep -E " (ERROR|WARN) " |
           grep -v "camera adjusted the configuration\|no ScalerCrop control"
       grep "^\[" /root/picker.log | grep -E "\] +ERROR "; true' >"$work/warn.out" &&
    [[ ! -s $work/warn.out ]]; then
    pass "no unexpected warnings from picker, no errors from libcamera"
else
    fail "unexpected warnings or errors in the log" "$(cat "$work/warn.out")"
fi
vm 'grep "^\[" /root/picker.log | grep -E "\] +(WARN|ERROR) "' | sed 's/^/      libcamera: /'

# --- libcamera's log in the journal, with its priorities --------------------------------------
# Under systemd (JOURNAL_STREAM set) picker routes libcamera's log to syslog, so journald keeps
# each line's priority. Asked for INFO here, libcamera's INFO lines must arrive at priority 6
# (info) and be absent from `journalctl -p warning`.
journal=$(vm 'systemd-run --unit=pk-journal -p "Environment=LIBCAMERA_LOG_LEVELS=*:INFO" \
        /root/picker --config /root/picker.toml >/dev/null 2>&1
    for i in $(seq 240); do
        journalctl -u pk-journal -o cat -q | grep -q "^ready" && break
        sleep 0.5
    done
    systemctl stop pk-journal
    echo "info: $(journalctl -u pk-journal -p info -q -o json | grep -c "camera_manager.cpp")"
    echo "info-at-6: $(journalctl -u pk-journal -q -o json | grep "camera_manager.cpp" | grep -c "\"PRIORITY\":\"6\"")"
    echo "warning: $(journalctl -u pk-journal -p warning -q -o json | grep -c "camera_manager.cpp")"
    journalctl -u pk-journal -q -o json | grep "camera_manager.cpp" | head -1 | cut -c1-600')
info=$(sed -n 's/^info: //p' <<<"$journal")
at6=$(sed -n 's/^info-at-6: //p' <<<"$journal")
warning=$(sed -n 's/^warning: //p' <<<"$journal")
if [[ ${info:-0} -ge 1 && ${at6:-0} -eq ${info:-x} && ${warning:-1} -eq 0 ]]; then
    pass "libcamera's log lines reach the journal with their priority (INFO at 6, not in -p warning)"
    indent <<<"$journal"
else
    fail "libcamera's log lines in the journal with their priority" "$journal"
fi

missing=$(vm 'sed "s/^\[camera\]/[camera]\nid = \"no-such-camera\"/" /root/picker.toml >/root/missing.toml
    timeout 60 /root/picker --config /root/missing.toml >/root/missing.log 2>&1
    status=$?
    grep -v "^\[" /root/missing.log
    echo "exit status $status"')
if grep -q 'camera "no-such-camera" not found; available cameras: Virtual0' <<<"$missing" &&
    ! grep -q 'exit status 0$' <<<"$missing" && ! grep -q 'exit status 124$' <<<"$missing"; then
    pass "camera.id = \"no-such-camera\": exits non-zero at start, naming the cameras there are"
    tail -n 2 <<<"$missing" | indent
else
    fail "a missing camera fails at start with the list of cameras" "$missing"
fi

# camera.buffers = "driver": the way back from imported buffers; libcamera's own allocator.
driver=$(vm 'sed "s/^\[camera\]/[camera]\nbuffers = \"driver\"/" /root/picker.toml >/root/driver.toml
    (RUST_LOG=info /root/picker --config /root/driver.toml >/root/driver.log 2>&1 &)
    for i in $(seq 240); do grep -q " ready" /root/driver.log && break; sleep 0.5; done
    pkill -TERM -x picker
    for i in $(seq 80); do pgrep -x picker >/dev/null || break; sleep 0.1; done
    grep -v "^\[" /root/driver.log | grep -E "driver|ready|ERROR"')
if grep -q 'camera.buffers = "driver": using the driver' <<<"$driver" && grep -q ' ready' <<<"$driver" &&
    ! grep -q 'ERROR' <<<"$driver"; then
    pass "camera.buffers = \"driver\": libcamera's own buffers, picker ready"
    indent <<<"$driver"
else
    fail "camera.buffers = \"driver\"" "$driver"
fi

# The buffer fallback (issue 20): a camera that cancels every request on picker's heap buffers
# (as a Pi ISP refusing an imported buffer does; PICKER_TEST_REFUSE_HEAP makes that one refusal
# up, the virtual camera takes any buffer) gets libcamera's own buffers, once, and streams.
if vm '(PICKER_TEST_REFUSE_HEAP=1 RUST_LOG=info /root/picker --config /root/picker.toml >/root/fallback.log 2>&1 &)
    for i in $(seq 240); do
        grep -q " ready" /root/fallback.log && exit 0
        pgrep -x picker >/dev/null || break
        sleep 0.5
    done
    exit 1' >/dev/null 2>&1; then
    fb_state=$(curl -s -m 20 "http://127.0.0.1:$port/state")
    fb_frames=$(curl -s -m 20 "http://127.0.0.1:$port/stream.mjpg" --max-time 6 |
        ffprobe -v error -f mjpeg -count_frames -select_streams v:0 \
            -show_entries stream=nb_read_frames,width,height -of csv=p=0 - 2>/dev/null || true)
else
    fb_state="" fb_frames=""
fi
fallback=$(vm 'pkill -TERM -x picker
    for i in $(seq 80); do pgrep -x picker >/dev/null || break; sleep 0.1; done
    grep -v "^\[" /root/fallback.log | grep -E "buffers|ready|ERROR"')
if grep -q '"buffers": *"driver-fallback"' <<<"$fb_state" &&
    grep -q 'starting again on libcamera.s own buffers' <<<"$fallback" &&
    grep -q "restarted on libcamera's own buffers" <<<"$fallback" &&
    awk -F, '$1 == 512 && $2 == 512 && $3 >= 10 {ok = 1} END {exit !ok}' <<<"$fb_frames" &&
    ! grep -q 'ERROR' <<<"$fallback"; then
    pass "heap buffers refused: one fallback to libcamera's own buffers, /state says so, the stream flows ($fb_frames: width,height,frames in 6 s)"
    indent <<<"$fallback"
else
    fail "the buffer fallback streams" "$fallback
/state: $fb_state
ffprobe: $fb_frames"
fi

controls_checks
echo
if ((failures)); then
    echo "test-libcamera: $failures check(s) FAILED ($((SECONDS - t_start))s)"
    exit 1
fi
echo "test-libcamera: all checks PASS ($((SECONDS - t_start))s)"
