#!/usr/bin/env bash
# Proves the Debian package in a forky VM (QEMU, libcamera's virtual camera): every command the
# README tells a user to type, run verbatim, plus what the unit promises (READY, watchdog,
# socket permissions, config errors, remove/purge), and the Python client package
# (python3-picker-client, found beside the picker .deb) taking a still as a member of group picker.
#
#   packaging/vm/test-deb.sh [--deb FILE] [--keep]
#
# Without --deb it builds the packages first (packaging/build-deb.sh --suite forky). --keep leaves
# the VM running afterwards for a look around (see packaging/vm/lib.sh for ssh). Prints PASS or
# FAIL per step and exits 1 if any step failed. Every command has a timeout.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=packaging/vm/lib.sh
source "$here/lib.sh"

deb=""
keep=0
while (($#)); do
    case "$1" in
        --deb) deb=$(realpath "$2"); shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/picker-test-deb.XXXXXX)
failures=0
t_start=$SECONDS

pass() { printf 'PASS  %s\n' "$1"; }
fail() {
    printf 'FAIL  %s\n' "$1"
    shift
    (($#)) && printf '      %s\n' "$@"
    failures=$((failures + 1))
}
# step NAME CMD...: runs CMD (a shell function or command), PASS if it succeeds.
step() {
    local name=$1
    shift
    local t0=$SECONDS out
    if out=$("$@" 2>&1); then
        pass "$name ($((SECONDS - t0))s)"
        [[ -n $out ]] && tail -n 2 <<<"$out" | sed 's/^/      /'
    else
        fail "$name ($((SECONDS - t0))s)" "${out//$'\n'/$'\n'      }"
    fi
}
# with_timeout SECS CMD...: CMD (also a shell function, run in a subshell) killed with its
# children after SECS; status 124 then. For lib.sh's functions without a time limit of their own.
with_timeout() {
    local t=$1 pid i
    shift
    "$@" &
    pid=$!
    for ((i = 0; i < t * 10; i++)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            wait "$pid"
            return
        fi
        sleep 0.1
    done
    kill_tree "$pid"
    wait "$pid" 2>/dev/null
    echo "timed out after ${t}s: $*" >&2
    return 124
}
kill_tree() {
    local child
    for child in $(ps -o pid= --ppid "$1"); do kill_tree "$child"; done
    kill "$1" 2>/dev/null
}
# vm [--timeout SECS] CMD...: a shell command line in the VM as root (lib.sh's vm_run: killed
# after SECS, default 60).
vm() {
    local t=60
    if [[ "$1" == --timeout ]]; then t=$2; shift 2; fi
    vm_run --timeout "$t" "$*"
}

cleanup() {
    if ((keep)); then
        echo "VM left running (--keep)"
    else
        vm_stop >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# --- build -------------------------------------------------------------------------------------
if [[ -z "$deb" ]]; then
    t0=$SECONDS
    if timeout 3600 "$repo/packaging/build-deb.sh" --suite forky --out "$work/deb" >"$work/build.log" 2>&1; then
        deb=$(ls "$work"/deb/picker_*_amd64.deb)
        pass "build picker_*.deb in the forky chroot ($((SECONDS - t0))s)"
    else
        fail "build picker_*.deb in the forky chroot ($((SECONDS - t0))s)" "$(tail -30 "$work/build.log")"
        exit 1
    fi
fi
# The Python client, built from the same source by the same packaging.
pydeb=$(ls "$(dirname "$deb")"/python3-picker-client_*_all.deb 2>/dev/null | tail -n1)
if [[ -z $pydeb ]]; then
    fail "python3-picker-client_*_all.deb beside $deb" "build-deb.sh builds it with picker"
    exit 1
fi
echo "      package: $deb"
echo "      package: $pydeb"

# --- boot --------------------------------------------------------------------------------------
t0=$SECONDS
# Not in a subshell (vm_start may set state for the other vm_* functions); lib.sh bounds the boot.
if ! vm_start >"$work/boot.log" 2>&1; then
    fail "boot the forky VM ($((SECONDS - t0))s)" "$(tail -20 "$work/boot.log")"
    exit 1
fi
pass "boot the forky VM ($((SECONDS - t0))s)"
port_a=$(vm_host_port 8000)
port_b=$(vm_host_port 8001)

# --- install -----------------------------------------------------------------------------------
copy_deb() {
    vm 'rm -rf /tmp/deb && mkdir -m 0755 /tmp/deb' &&
        with_timeout 120 vm_copy_in "$deb" "$pydeb" /tmp/deb/ &&
        vm 'chmod 0644 /tmp/deb/*.deb && ls -l /tmp/deb'
}
step "copy the .debs into the VM" copy_deb

# Verbatim, offline: the image has the runtime dependencies but no network.
step "apt install ./picker_*.deb" vm --timeout 300 'cd /tmp/deb && apt install ./picker_*.deb </dev/null'

installed_right() {
    vm 'set -e
        test -x /usr/bin/picker
        grep -q "camera-preview" /usr/share/picker/stream_preview.html
        /usr/bin/picker --version
        dpkg-query -W -f="\${Conffiles}\n" picker | grep -q "^ /etc/picker/picker.toml "
        id picker
        id -nG picker | tr " " "\n" | grep -qx video
        systemctl is-enabled picker'
}
step "package: binary, conffile, embed snippet, user picker in group video, unit enabled" installed_right

# Returns only after READY=1, which picker sends once a frame arrived and the sockets are bound:
# so the socket and the port must answer right away, without any waiting.
enable_now() {
    vm --timeout 120 'systemctl enable --now picker' &&
        vm 'systemctl show -p ActiveState,SubState picker; test "$(systemctl show -P SubState picker)" = running &&
            curl -sS --max-time 5 -o /dev/null --unix-socket /run/picker/still.sock http://picker/still.rgb &&
            curl -sS --max-time 5 -o /dev/null http://127.0.0.1:8000/state'
}
step "systemctl enable --now picker (returns after READY: socket and port answer at once)" enable_now

step "systemctl is-active picker" vm 'systemctl is-active picker'

stream_url_logged() {
    local ip
    ip=$(vm "ip -4 -o route get 1.1.1.1 | sed -n 's/.* src \([0-9.]*\).*/\1/p'") || return 1
    echo "VM address: $ip"
    vm "journalctl -u picker --no-pager | grep -F 'http://$ip:8000/stream.mjpg'"
}
step "journalctl -u picker shows http://<VM address>:8000/stream.mjpg" stream_url_logged

# Decodes 3 frames of the MJPEG stream to raw RGB: 512x512x3 bytes each.
decode_stream() { # PORT [SIZE]: 3 frames of SIZE x SIZE (default 512)
    local port=$1 size=${2:-512} bytes
    bytes=$(timeout 120 ffmpeg -nostdin -v error -i "http://127.0.0.1:$port/stream.mjpg" \
        -frames:v 3 -f rawvideo -pix_fmt rgb24 - | wc -c)
    echo "decoded $bytes bytes"
    ((bytes == 3 * size * size * 3))
}
step "host decodes 3 frames (512x512) from the stream through the port forward" decode_stream "$port_a"

# --- still socket permissions ------------------------------------------------------------------
check_png() { # reads a PNG on stdin, checks signature and 512x512 IHDR
    python3 -c '
import struct, sys
d = sys.stdin.buffer.read()
assert d[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG (%d bytes)" % len(d)
w, h = struct.unpack(">II", d[16:24])
print("PNG %dx%d, %d bytes" % (w, h, len(d)))
assert (w, h) == (512, 512)'
}
still_as() { # user: root or a user name
    local who=$1 cmd='curl -sS --fail --max-time 10 --unix-socket /run/picker/still.sock http://picker/still.png'
    if [[ $who == root ]]; then vm "$cmd"; else vm "runuser -u $who -- $cmd"; fi
}
still_root() { still_as root | check_png; }
still_member() {
    vm 'id bob >/dev/null 2>&1 || useradd --create-home bob; usermod -a -G picker bob; id bob' &&
        still_as bob | check_png
}
still_refused() {
    vm 'stat -c "%A %U:%G %n" /run/picker /run/picker/still.sock; id alice'
    if still_as alice >/dev/null; then
        echo "alice got a still"
        return 1
    fi
    echo "refused, as it should be"
}
step "still over the socket as root" still_root
step "still over the socket as bob (member of group picker)" still_member
step "still over the socket refused for alice (ordinary user)" still_refused
step "socket picker:picker 0660 in /run/picker (0750)" vm \
    'test "$(stat -c "%a %U %G" /run/picker/still.sock)" = "660 picker picker" &&
     test "$(stat -c "%a %U %G" /run/picker)" = "750 picker picker"'

# --- the Python client -------------------------------------------------------------------------
# Installed beside picker, offline (the image has python3 and python3-numpy), into the system's
# dist-packages; a still from python3 -c as bob (group picker, added above), as a robot takes it.
step "apt install ./python3-picker-client_*.deb" vm --timeout 300 \
    'cd /tmp/deb && apt install ./python3-picker-client_*.deb </dev/null &&
     dpkg -L python3-picker-client | grep -x /usr/lib/python3/dist-packages/picker_client/__init__.py'
python_still_member() {
    vm "runuser -u bob -- python3 -c 'import picker_client
f = picker_client.Camera().capture(fresh=True)
print(f, f.array.shape, f.array.dtype, picker_client.__file__)
assert f.array.shape == (512, 512, 3) and str(f.array.dtype) == \"uint8\"'"
}
python_still_refused() {
    # alice is not in group picker: the client says which group and which socket.
    local out
    out=$(vm "runuser -u alice -- python3 -c 'import picker_client
try:
    picker_client.Camera().still()
except picker_client.PermissionError as e:
    print(e)
    raise SystemExit(3)'")
    local rc=$?
    echo "$out"
    ((rc == 3)) && grep -q "group picker" <<<"$out" && grep -q /run/picker/still.sock <<<"$out"
}
step "python3 -c: Camera().capture(fresh=True) as bob (group picker): 512x512x3 uint8" python_still_member
step "python3 -c as alice: picker_client.PermissionError naming group picker and the socket" python_still_refused

# --- port change -------------------------------------------------------------------------------
change_port() {
    vm "sed -i 's/^port = 8000\$/port = 8001/' /etc/picker/picker.toml && grep -n '^port' /etc/picker/picker.toml" &&
        vm --timeout 120 'systemctl restart picker' &&
        vm 'systemctl is-active picker'
}
old_port_refuses() {
    # In the VM: connection refused (curl exit 7). Through the forward: no HTTP answer.
    vm 'curl -sS --max-time 5 -o /dev/null http://127.0.0.1:8000/; test $? -eq 7' &&
        ! timeout 10 curl -sS --max-time 5 -o /dev/null "http://127.0.0.1:$port_a/"
}
step "port 8000 -> 8001 in /etc/picker/picker.toml, systemctl restart picker" change_port
step "new port 8001 streams (host decodes 3 frames)" decode_stream "$port_b"
step "old port 8000 refuses" old_port_refuses

# --- watchdog ----------------------------------------------------------------------------------
watchdog_restart() {
    local pid0 n0 pid n
    pid0=$(vm 'systemctl show -P MainPID picker') && n0=$(vm 'systemctl show -P NRestarts picker') || return 1
    echo "before: MainPID=$pid0 NRestarts=$n0; kill -STOP $pid0"
    vm "kill -STOP $pid0" || return 1
    for _ in $(seq 60); do # WatchdogSec=10s, then SIGABRT, restart, READY: well within 60 s
        sleep 2
        pid=$(vm 'systemctl show -P MainPID picker') n=$(vm 'systemctl show -P NRestarts picker')
        if [[ $pid != "$pid0" && $pid != 0 && $n -gt $n0 ]] && vm 'systemctl is-active picker' >/dev/null; then
            echo "after: MainPID=$pid NRestarts=$n"
            vm "journalctl -u picker --no-pager -n 50 | grep -i watchdog"
            return 0
        fi
    done
    echo "no restart: MainPID=$pid NRestarts=$n"
    return 1
}
step "kill -STOP the main PID: the watchdog restarts picker" watchdog_restart

# --- broken config -----------------------------------------------------------------------------
broken_config() {
    local line since
    vm 'cp /etc/picker/picker.toml /root/picker.toml.good' || return 1
    line=$(vm "grep -n '^port' /etc/picker/picker.toml | cut -d: -f1") || return 1
    vm "sed -i 's/^port = 8001\$/port = \"8001/' /etc/picker/picker.toml" || return 1
    echo "line $line is now: $(vm "sed -n ${line}p /etc/picker/picker.toml")"
    since=$(vm 'date +%s')
    if vm --timeout 120 'systemctl restart picker'; then
        echo "systemctl restart picker succeeded with a broken config"
        return 1
    fi
    echo "systemctl restart picker failed, as it should"
    # picker names the place as FILE:LINE:COLUMN.
    vm "journalctl -u picker --no-pager --since @$since | grep -E 'picker\\.toml:$line:|line $line\\b'"
}
restore_config() {
    vm 'cp /root/picker.toml.good /etc/picker/picker.toml' &&
        vm --timeout 120 'systemctl restart picker' && vm 'systemctl is-active picker'
}
step "broken TOML: systemctl restart picker fails, journal names the line" broken_config
step "fixed TOML: systemctl restart picker works again" restore_config

# --- reload ------------------------------------------------------------------------------------
# `systemctl reload picker` checks the file before the SIGHUP: a broken one fails the reload
# (non-zero exit, the journal names the line) and the running service keeps its config and
# its clients; a good one is applied without a restart.
reload_broken() {
    local pid0 pid line since
    pid0=$(vm 'systemctl show -P MainPID picker') || return 1
    vm 'cp /etc/picker/picker.toml /root/picker.toml.good' || return 1
    line=$(vm "grep -n '^quality' /etc/picker/picker.toml | cut -d: -f1") || return 1
    vm "sed -i 's/^quality = .*\$/quality = \"eighty/' /etc/picker/picker.toml" || return 1
    since=$(vm 'date +%s')
    if vm --timeout 60 'systemctl reload picker'; then
        echo "systemctl reload picker succeeded with a broken config"
        return 1
    fi
    echo "systemctl reload picker failed, as it should"
    pid=$(vm 'systemctl show -P MainPID picker') || return 1
    if [[ $pid != "$pid0" ]]; then
        echo "MainPID changed: $pid0 -> $pid"
        return 1
    fi
    vm 'systemctl is-active picker' &&
        vm "journalctl -u picker --no-pager --since @$since | grep -E 'picker\\.toml:$line:'"
}
reload_good() {
    local pid0 pid since
    pid0=$(vm 'systemctl show -P MainPID picker') || return 1
    vm "cp /root/picker.toml.good /etc/picker/picker.toml &&
        sed -i 's/^quality = .*\$/quality = 33/' /etc/picker/picker.toml" || return 1
    since=$(vm 'date +%s')
    vm --timeout 60 'systemctl reload picker' || return 1
    for _ in $(seq 20); do
        if vm "journalctl -u picker --no-pager --since @$since | grep 'config reloaded.*stream.quality = 33'"; then
            pid=$(vm 'systemctl show -P MainPID picker') || return 1
            [[ $pid == "$pid0" ]] || { echo "MainPID changed: $pid0 -> $pid"; return 1; }
            vm 'cp /root/picker.toml.good /etc/picker/picker.toml'
            return 0
        fi
        sleep 1
    done
    echo "no 'config reloaded ... stream.quality = 33' in the journal"
    return 1
}
step "broken TOML: systemctl reload picker fails, the journal names the line, same PID" reload_broken
step "after the failed reload the running service keeps streaming (host decodes 3 frames)" decode_stream "$port_b"
step "good TOML: systemctl reload picker applies stream.quality = 33 without a restart" reload_good

security_exposure() {
    local out
    out=$(vm 'systemd-analyze security picker.service --no-pager | tail -1') || return 1
    echo "$out"
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]+\.[0-9]+$/) { exit !($i <= 2.0) } exit 1}' <<<"$out"
}
step "systemd-analyze security picker.service: exposure <= 2.0" security_exposure

# --- several cameras, addresses that come later -------------------------------------------------
# Two virtual cameras (the image describes one; the pipeline handler reads this file when a
# process opens the camera manager), two template instances on the two forwarded ports, each
# with its own config, runtime directory and socket. At 256x256: the virtual camera runs at
# ~90 fps whatever rate is asked, and two of them at 512x512 left the TCG VM's two CPUs no time
# to answer ssh (seen: "Connection timed out during banner exchange" for every later step).
two_instances() {
    vm 'systemctl disable --now picker &&
        cat >/usr/share/libcamera/pipeline/virtual/virtual.yaml <<YAML
%YAML 1.1
---
"Virtual0":
  supported_formats:
    - width: 256
      height: 256
  test_pattern: "bars"
  location: "CameraLocationFront"
  model: "Virtual Video Device"
"Virtual1":
  supported_formats:
    - width: 256
      height: 256
  test_pattern: "lines"
  location: "CameraLocationBack"
  model: "Virtual Video Device"
YAML
        for i in 0 1; do
            printf "[camera]\nid = \"Virtual%s\"\n[stream]\nport = 800%s\nwidth = 256\nheight = 256\n[still]\nsocket = \"/run/picker-cam%s/still.sock\"\nwidth = 256\nheight = 256\n" $i $i $i >/etc/picker/cam$i.toml
        done
        cat /etc/picker/cam0.toml /etc/picker/cam1.toml' || return 1
    vm --timeout 180 'systemctl enable --now picker@cam0 picker@cam1' || {
        vm 'journalctl -u picker@cam0 -u picker@cam1 --no-pager -n 40'
        return 1
    }
    vm 'systemctl is-active picker@cam0 picker@cam1 &&
        for i in 0 1; do
            curl -sS --fail --max-time 10 -o /dev/null --unix-socket /run/picker-cam$i/still.sock http://picker/still.rgb || exit 1
            stat -c "%a %U %G %n" /run/picker-cam$i/still.sock
        done'
}
step "two cameras: picker@cam0 and picker@cam1 (own config, port, socket) start" two_instances
step "picker@cam0 streams on 8000 (host decodes 3 frames, 256x256)" decode_stream "$port_a" 256
step "picker@cam1 streams on 8001 (host decodes 3 frames, 256x256)" decode_stream "$port_b" 256

# The units do not wait for network-online.target; picker logs the URL of an address that
# appears after it started (netlink address events).
address_later() {
    vm 'if systemctl show -P After picker.service picker@cam0.service | grep network-online; then exit 1; fi
        ip addr add 192.0.2.50/32 dev lo' || return 1
    for _ in $(seq 20); do
        sleep 1
        if vm 'journalctl -u picker@cam0 --no-pager | grep -F "stream at http://192.0.2.50:8000/stream.mjpg"'; then
            vm 'ip addr del 192.0.2.50/32 dev lo'
            return 0
        fi
    done
    vm 'ip addr del 192.0.2.50/32 dev lo; journalctl -u picker@cam0 --no-pager -n 20'
    return 1
}
step "no network-online.target; an address added later is logged with its stream URL" address_later
# Their configs are the admin's files, not the package's: removed here so that purge leaves nothing.
step "stop the template instances" vm --timeout 120 'systemctl disable --now picker@cam0 picker@cam1 &&
    rm /etc/picker/cam0.toml /etc/picker/cam1.toml'

# --- remove and purge --------------------------------------------------------------------------
remove_keeps_config() {
    vm --timeout 300 'apt remove -y picker </dev/null' &&
        vm 'set -e
            test ! -e /usr/bin/picker
            grep -q "^port = 8001" /etc/picker/picker.toml
            if systemctl is-active picker; then exit 1; fi
            echo "config kept: $(ls -l /etc/picker/picker.toml)"'
}
purge_removes_config() {
    vm --timeout 300 'apt purge -y picker </dev/null' &&
        vm 'set -e
            test ! -e /etc/picker
            test ! -e /run/picker
            left=$(find / -xdev \( -user picker -o -group picker \) -print 2>/dev/null | head)
            test -z "$left" || { echo "left behind: $left"; exit 1; }
            echo "/etc/picker gone, no files of user picker left"'
}
step "apt remove picker keeps /etc/picker/picker.toml" remove_keeps_config
step "apt purge picker removes /etc/picker and the service's files" purge_removes_config

echo
if ((failures)); then
    echo "test-deb: $failures step(s) FAILED ($((SECONDS - t_start))s)"
    exit 1
fi
echo "test-deb: all steps PASS ($((SECONDS - t_start))s)"
