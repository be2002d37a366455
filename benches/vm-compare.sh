#!/usr/bin/env bash
# picker and Debian's ustreamer side by side in the forky test VM (issue 14): server CPU per
# delivered client-frame, idle CPU and capture-to-receipt latency, with the stream clients inside
# the VM (so QEMU's network emulation is not measured).
#
#   benches/vm-compare.sh [--deb FILE] [--out DIR]
#   REPEAT=1 SECONDS_PER_RUN=5 benches/vm-compare.sh      # a quick smoke run (~4 min; full: ~15 min)
#
#   --deb FILE  the picker .deb to measure (its /usr/bin/picker); default: build one with
#               packaging/build-deb.sh --suite forky --nocheck
#   --out DIR   where the results go (default: target/bench-results/vm-compare-TIME)
#   --summary DIR  only print the summary of the runs saved in DIR (no VM)
#   REPEAT (3), SECONDS_PER_RUN (15), CLIENTS ("1 5 20"), SERVERS (all three, see below)
#
# Servers, one at a time, in the order of SERVERS, reversed on every other repeat:
#   ustreamer             Debian forky's ustreamer on the kernel's vivid webcam (YUYV)
#   picker-libcamera      picker, source = "libcamera": libcamera's virtual camera
#   picker-test-pattern   picker, source = "test-pattern"
# all at 640x480, JPEG quality 80, 30 fps. Per server: the idle window (no client), then 1, 5
# and 20 clients. The client is benches/vm/client.rs. Prints each stage's time and a summary
# (medians over the repeats, ratios picker/ustreamer); everything is also saved in the output
# directory (runs.jsonl, summary.md, the servers' logs). picker's CPU is also given for its own
# threads alone (by thread name; the rest of the process is libcamera's threads, among them the
# virtual camera's software rendering, which a real camera does in hardware), with the
# ratios of that to ustreamer, and the CPU per thread name at the most clients (whole 10 ms
# ticks per thread: the split is good to about one tick per thread over a window).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=packaging/vm/lib.sh
source "$repo/packaging/vm/lib.sh"
# shellcheck source=packaging/chroot-lib.sh
source "$repo/packaging/chroot-lib.sh"

# summarize RUNS.JSONL: the markdown summary (medians over the repeats, ratios to ustreamer).
summarize() {
    python3 - "$1" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
repeat = max([r["repeat"] for r in runs] or [0])
seconds = "%.0f" % (statistics.median([r["window_s"] for r in runs]) if runs else 0)
def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None
def f(x, d=1):
    return "-" if x is None else "%.*f" % (d, x)
servers = [s for s in ("ustreamer", "picker-libcamera", "picker-test-pattern") if any(r["server"] == s for r in runs)]
servers += sorted({r["server"] for r in runs} - set(servers))
counts = sorted({r["clients"] for r in runs if r["clients"] > 0})
def sel(s, n):
    return [r for r in runs if r["server"] == s and r["clients"] == n and not r["errors"]]
idle = {s: med([r["cpu_pct"] for r in sel(s, 0)]) for s in servers}
print("### picker and ustreamer in the forky VM (medians of %s repeats x %s s)\n" % (repeat, seconds))
print("| server | clients | CPU us per delivered client-frame | server CPU % | fps per client | latency p50 ms | latency p99 ms | X-Timestamp age p50 ms | JPEG KiB | camera fps | idle CPU % | idle camera fps | vivid kthread CPU % | runs |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
per = {}
for s in servers:
    for n in counts:
        rs = sel(s, n)
        per[s, n] = med([r["cpu_us_per_client_frame"] for r in rs])
        print("| %s | %d | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %d |" % (
            s, n, f(per[s, n]), f(med([r["cpu_pct"] for r in rs])),
            f(med([r["fps_per_client"] for r in rs])),
            f(med([r["latency_ms_p50"] for r in rs]), 2), f(med([r["latency_ms_p99"] for r in rs]), 2),
            f(med([r["xts_age_ms_p50"] for r in rs]), 2),
            f(med([r["jpeg_kib"] for r in rs])), f(med([r.get("camera_fps") for r in rs])), f(idle[s]),
            f(med([r.get("camera_fps") for r in sel(s, 0)])),
            f(med([r["aux_cpu_pct"] for r in rs])) if s == "ustreamer" else "-", len(rs)))
print()
# picker's own threads apart from libcamera's (runs.jsonl from before this split lacks them).
own = {}
pickers = [s for s in servers if s.startswith("picker") and any(r.get("own_cpu_pct") is not None for r in runs if r["server"] == s)]
if pickers:
    print("picker's own threads (camera-owner, camera, encoder, encode-N, tokio workers, main) apart from the rest of its process (libcamera's threads):\n")
    print("| server | clients | own threads: CPU us per client-frame | own threads CPU % | rest CPU % | idle: own CPU % | idle: rest CPU % |")
    print("|---|---|---|---|---|---|---|")
    for s in pickers:
        idle_own = med([r.get("own_cpu_pct") for r in sel(s, 0)])
        idle_all = idle[s]
        own[s, 0] = idle_own
        for n in counts:
            rs = sel(s, n)
            own[s, n] = med([r.get("own_cpu_us_per_client_frame") for r in rs])
            o, a = med([r.get("own_cpu_pct") for r in rs]), med([r["cpu_pct"] for r in rs])
            print("| %s | %d | %s | %s | %s | %s | %s |" % (
                s, n, f(own[s, n]), f(o), f(a - o if a is not None and o is not None else None),
                f(idle_own), f(idle_all - idle_own if idle_all is not None and idle_own is not None else None)))
    print()
    top = max(counts or [0])
    for s in pickers:
        names = {}
        for r in sel(s, top):
            for k, v in (r.get("threads_cpu_pct") or {}).items():
                names.setdefault(k, []).append(v)
        print("%s, %d clients, CPU %% per thread name (median): %s" % (
            s, top, ", ".join("%s %s" % (k, f(med(v))) for k, v in sorted(names.items()))))
    print()
if "ustreamer" in servers:
    print("| ratio to ustreamer | " + " | ".join("CPU per client-frame, %d clients" % n for n in counts) + " | idle CPU |")
    print("|---|" + "---|" * (len(counts) + 1))
    for s in servers:
        if s == "ustreamer":
            continue
        cells = []
        for n in counts:
            a, b = per.get((s, n)), per.get(("ustreamer", n))
            cells.append(f(a / b, 2) if a and b else "-")
        a, b = idle.get(s), idle.get("ustreamer")
        cells.append(f(a / b, 3) if a is not None and b else "-")
        print("| %s / ustreamer | %s |" % (s, " | ".join(cells)))
        if s in pickers:
            cells = []
            for n in counts:
                a, b = own.get((s, n)), per.get(("ustreamer", n))
                cells.append(f(a / b, 2) if a and b else "-")
            a, b = own.get((s, 0)), idle.get("ustreamer")
            cells.append(f(a / b, 3) if a is not None and b else "-")
            print("| %s, own threads only / ustreamer | %s |" % (s, " | ".join(cells)))
    print()
    # Repeat by repeat: the servers of one repeat ran minutes apart, the repeats up to
    # half an hour apart, and the host's load drifts; the ratio within a repeat is the fairer one.
    print("Ratios repeat by repeat (CPU per client-frame; idle CPU), median [each repeat]:\n")
    print("| ratio | " + " | ".join("%d clients" % n for n in counts) + " | idle |")
    print("|---|" + "---|" * (len(counts) + 1))
    reps = sorted({r["repeat"] for r in runs})
    def one(s, n, rep, key):
        v = [r[key] for r in sel(s, n) if r["repeat"] == rep and r[key] is not None]
        return v[0] if v else None
    for s in servers:
        if s == "ustreamer":
            continue
        cells = []
        for n in counts + [0]:
            key = "cpu_us_per_client_frame" if n else "cpu_pct"
            rs = []
            for rep in reps:
                a, b = one(s, n, rep, key), one("ustreamer", n, rep, key)
                if a is not None and b:
                    rs.append(a / b)
            cells.append("%s [%s]" % (f(med(rs), 2), " ".join(f(x, 2) for x in rs)) if rs else "-")
        print("| %s / ustreamer | %s |" % (s, " | ".join(cells)))
    print()
clocks = sorted({(r["server"], r["latency_clock"]) for r in runs if r["latency_clock"]})
print("Latency clocks: " + "; ".join("%s: %s" % c for c in clocks) + ".")
send = med([r.get("send_age_ms_p50") for r in runs if r["server"] == "ustreamer" and r["clients"] > 0])
print("Latency = receipt of a part's last byte - its capture time on the clock named. X-Timestamp age = receipt - "
      "the X-Timestamp header (CLOCK_REALTIME): ustreamer writes its send time there, picker on libcamera the time "
      "its camera thread took the completed request, picker's test pattern the drawing time. "
      "Receipt - X-UStreamer-Send-Time(stamp) on CLOCK_MONOTONIC, p50: %s ms (small and positive: ustreamer's "
      "times are on CLOCK_MONOTONIC)." % f(send, 2))
neg = sum(r["latency_negative"] for r in runs)
errs = [(r["server"], r["repeat"], r["clients"], r["errors"]) for r in runs if r["errors"]]
print("Negative latencies: %d. Runs with client errors: %s." % (neg, errs or "none"))
busy = {s: med([r["vm_busy_pct"] for r in runs if r["server"] == s and r["clients"] == max(counts or [0])]) for s in servers}
loads = [r["host_load"] for r in runs if r.get("host_load") is not None]
if loads:
    print("Host load average (1 min) during the runs: median %s, max %s." % (f(med(loads), 2), f(max(loads), 2)))
print("VM CPU busy (all vCPUs) at %s clients, median: %s." % (max(counts or [0]), ", ".join("%s %s%%" % (s, f(busy[s], 0)) for s in servers)))
PY
}

deb="" out=""
while (($#)); do
    case "$1" in
        --deb) deb=$(realpath "$2"); shift 2 ;;
        --out) out=$2; shift 2 ;;
        --summary) summarize "$2/runs.jsonl"; exit ;;
        -h | --help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "vm-compare: unknown argument: $1" >&2; exit 2 ;;
    esac
done
REPEAT=${REPEAT:-3}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-15}
CLIENTS=${CLIENTS:-1 5 20}
SERVERS=${SERVERS:-ustreamer picker-libcamera picker-test-pattern}
read -ra clients <<<"$CLIENTS"
read -ra servers <<<"$SERVERS"
out=${out:-$repo/target/bench-results/vm-compare-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(realpath "$out")
work=$(mktemp -d /tmp/picker-vm-compare.XXXXXX)
trap 'vm_stop >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP
exec > >(tee -a "$out/output.txt") 2>&1

t_all=$SECONDS
stage_t0=$SECONDS stage_name=""
stage() { # stage NAME: ends the previous stage (printing its time), starts NAME
    if [[ -n $stage_name ]]; then echo "=== $stage_name: $((SECONDS - stage_t0)) s"; fi
    stage_name=$1 stage_t0=$SECONDS
    [[ -z $1 ]] || echo "=== $1 ..."
}
die() { echo "vm-compare: $*" >&2; exit 1; }

echo "vm-compare: REPEAT=$REPEAT SECONDS_PER_RUN=$SECONDS_PER_RUN CLIENTS=\"$CLIENTS\" SERVERS=\"$SERVERS\""
echo "vm-compare: results in $out; host load average: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- what goes into the VM ----------------------------------------------------------------
stage "picker .deb"
if [[ -z $deb ]]; then
    "$repo/packaging/build-deb.sh" --suite forky --nocheck --out "$work/deb" >"$work/build-deb.log" 2>&1 ||
        { tail -n 40 "$work/build-deb.log"; die "packaging/build-deb.sh failed"; }
    deb=$(find "$work/deb" -name 'picker_*_amd64.deb' | head -n1)
fi
[[ -f $deb ]] || die "no picker .deb: $deb"
dpkg-deb -x "$deb" "$work/picker-deb"
[[ -x $work/picker-deb/usr/bin/picker ]] || die "$deb has no /usr/bin/picker"
echo "picker: $deb ($(dpkg-deb -f "$deb" Version)), sha256 $(sha256sum <"$work/picker-deb/usr/bin/picker" | cut -c1-16)"

# Debian's ustreamer from forky, fetched once into the cache; its dependencies (libevent,
# libjpeg62-turbo, libbsd0) are already in the VM image, so dpkg -i works there offline.
stage "ustreamer .deb"
udir=$PICKER_CACHE/bench/forky
mkdir -p "$udir"
ust=$(find "$udir" -name 'ustreamer_*_amd64.deb' | sort -V | tail -n1)
if [[ -z $ust ]]; then
    "$repo/packaging/in-chroot.sh" forky -- sh -c "cd '$udir' && apt-get download -q ustreamer" \
        >"$work/ustreamer-download.log" 2>&1 ||
        { cat "$work/ustreamer-download.log"; die "apt-get download ustreamer in the forky chroot failed"; }
    ust=$(find "$udir" -name 'ustreamer_*_amd64.deb' | sort -V | tail -n1)
fi
[[ -f $ust ]] || die "no ustreamer .deb in $udir"
echo "ustreamer: $ust"

stage "client (rustc -O benches/vm/client.rs)"
command -v rustc >/dev/null || die "rustc is needed to build the client (see README.md)"
rustc --edition 2021 -O -o "$work/client" "$here/vm/client.rs"

# --- the VM ---------------------------------------------------------------------------------
stage "boot the forky VM"
# shellcheck disable=SC2119 # vm_start's optional argument is an image, not ours
vm_start >"$work/boot.log" 2>&1 || { tail -n 30 "$work/boot.log"; die "the VM did not boot"; }
cat "$work/boot.log"

stage "set up the VM"
vm_copy_in "$work/picker-deb/usr/bin/picker" "$work/client" "$ust" /root/
# vivid: one instance with a video capture node only (no output, VBI, radio, SDR, touch or
# metadata nodes), so /dev/video0 is its webcam input.
# shellcheck disable=SC2016 # expanded in the VM
vm_run --timeout 300 '
    set -e
    dpkg -i /root/ustreamer_*.deb >/root/dpkg.log 2>&1 || { cat /root/dpkg.log; exit 1; }
    modprobe vivid n_devs=1 node_types=0x1
    for i in $(seq 50); do [ -e /dev/video0 ] && break; sleep 0.2; done
    ls -l /dev/video*
    echo "vivid: $(cat /sys/class/video4linux/video0/name)"
    # 640x480 among the virtual camera sizes, so picker gets the size it asks for.
    cat >/usr/share/libcamera/pipeline/virtual/virtual.yaml <<YAML
%YAML 1.1
---
"Virtual0":
  supported_formats:
    - width: 1920
      height: 1080
    - width: 640
      height: 480
  test_pattern: "bars"
  location: "CameraLocationFront"
  model: "Virtual Video Device"
YAML
    for src in libcamera test-pattern; do
        cat >/root/picker-$src.toml <<TOML
[camera]
source = "$src"
framerate = 30
crop = "none"
[stream]
bind = "127.0.0.1"
port = 8000
width = 640
height = 480
quality = 80
[still]
socket = "/run/pk-bench/still.sock"
width = 640
height = 480
TOML
    done
    echo "VM: $(nproc) CPUs, kernel $(uname -r), $(ustreamer --version 2>&1 | head -n1) (ustreamer)"
    grep -m1 "model name" /proc/cpuinfo' || die "setting up the VM failed"

# --- one server -------------------------------------------------------------------------------
port_of() { case $1 in ustreamer) echo 8080 ;; *) echo 8000 ;; esac; }
# The PID listening on a port in the VM (ustreamer names its main thread "main", so not pgrep).
# shellcheck disable=SC2016 # expanded in the VM
listener='ss -Hltnp "sport = :$port" | sed -n "s/.*pid=\([0-9]*\).*/\1/p" | head -n1'
# stop_port PORT: stops whatever listens on PORT in the VM (TERM, then KILL after 10 s).
stop_port() {
    vm_run --timeout 60 "port=$1; pid=\$($listener); [ -n \"\$pid\" ] || exit 0
        kill -TERM \$pid
        for i in \$(seq 100); do kill -0 \$pid 2>/dev/null || exit 0; sleep 0.1; done
        kill -KILL \$pid; sleep 0.5" || true
}
# start_server NAME: starts it in the VM, waits until it serves, prints its PID.
start_server() {
    local port cmd ready
    port=$(port_of "$1")
    case $1 in
    ustreamer)
        cmd="ustreamer --device /dev/video0 --input 0 --format YUYV --resolution 640x480 \
            --desired-fps 30 --quality 80 --encoder CPU --host 127.0.0.1 --port $port --tcp-nodelay"
        ready="curl -sf -m 5 -o /dev/null http://127.0.0.1:$port/snapshot"
        ;;
    picker-libcamera | picker-test-pattern)
        cmd="/root/picker --config /root/picker-${1#picker-}.toml"
        ready="grep -q ' ready' /root/server.log"
        ;;
    *) die "unknown server: $1" ;;
    esac
    stop_port "$port" # a server left over from a failed start
    vm_run --timeout 180 "port=$port
        setsid $cmd </dev/null >/root/server.log 2>&1 &
        for i in \$(seq 400); do
            $ready && break
            kill -0 \$! 2>/dev/null || break
            sleep 0.3
        done
        $ready || { cat /root/server.log >&2; exit 1; }
        pid=\$($listener)
        [ -n \"\$pid\" ] || { echo no process listens on port $port >&2; exit 1; }
        echo \$pid"
}
url_of() {
    case $1 in
    # extra_headers: the grab (capture) time per part; its X-Timestamp is the send time.
    ustreamer) echo "127.0.0.1:$(port_of "$1")/stream?extra_headers=1" ;;
    *) echo "127.0.0.1:$(port_of "$1")/stream.mjpg" ;;
    esac
}
# Where the client reads the camera's frame rate: ustreamer's /state (captured_fps), picker's
# /metrics (picker_frames_captured_total).
frames_url_of() {
    case $1 in
    ustreamer) echo "127.0.0.1:$(port_of "$1")/state" ;;
    *) echo "127.0.0.1:$(port_of "$1")/metrics" ;;
    esac
}

runs=$out/runs.jsonl
: >"$runs"
for ((r = 1; r <= REPEAT; r++)); do
    order=("${servers[@]}")
    if ((r % 2 == 0)); then
        order=()
        for ((i = ${#servers[@]} - 1; i >= 0; i--)); do order+=("${servers[i]}"); done
    fi
    for s in "${order[@]}"; do
        stage "repeat $r/$REPEAT: $s"
        if ! pid=$(start_server "$s" 2>"$work/start.err"); then
            cat "$work/start.err"
            echo "vm-compare: $s did not start; skipped in this repeat"
            stop_port "$(port_of "$s")"
            continue
        fi
        pid=$(tail -n1 <<<"$pid")
        aux=""
        # The kernel thread in which vivid generates the frames: its CPU is shown beside
        # ustreamer's, not added to it (picker's sources run in picker's own process).
        [[ $s != ustreamer ]] || aux=$(vm_run 'pgrep -n vivid' || true)
        # Settle: the first seconds of a server (allocation, the camera's start) are not its
        # steady state.
        vm_run 'sleep 3'
        for n in 0 "${clients[@]}"; do
            line=$(vm_run --timeout $((SECONDS_PER_RUN + 90)) \
                "/root/client --url '$(url_of "$s")' --clients $n --seconds $SECONDS_PER_RUN --pid $pid --frames-url '$(frames_url_of "$s")' ${aux:+--aux-pid $aux}") ||
                { echo "  $s, $n clients: the client failed"; continue; }
            # The host's load average beside each run: under TCG, host contention inflates the
            # CPU time the guest accounts (it sees no steal time).
            printf '{"server": "%s", "repeat": %d, "host_load": %s, %s\n' "$s" "$r" \
                "$(cut -d' ' -f1 /proc/loadavg)" "${line#\{}" >>"$runs"
            python3 -c '
import json, sys
d = json.loads(sys.argv[1])
print("  %-20s %2d clients: cpu %6.1f%% (picker threads %s%%)  %8s us/client-frame  %5.1f fps/client  camera %s fps  lat p50 %s p99 %s ms  vm busy %.0f%%  host load %.1f%s" % (
    sys.argv[2], d["clients"], d["cpu_pct"], d.get("own_cpu_pct"), d["cpu_us_per_client_frame"], d["fps_per_client"],
    d.get("camera_fps"), d["latency_ms_p50"], d["latency_ms_p99"], d["vm_busy_pct"], d.get("host_load", 0),
    ("  ERRORS %s" % d["errors"]) if d["errors"] else ""))' "$(tail -n1 "$runs")" "$s"
        done
        stop_port "$(port_of "$s")"
        vm_run "cat /root/server.log" >"$out/server-$s-r$r.log" 2>&1 || true
        # What the camera made of picker's request (size, format, rate): once is enough.
        if [[ $s == picker-* && $r == 1 ]]; then
            grep -v '^\[' "$out/server-$s-r$r.log" | grep -iE 'adjusted|camera|ready' | head -n 8 | sed 's/^/  log: /' || true
        fi
    done
done
stage "stop the VM"
vm_stop
stage ""

# --- summary ----------------------------------------------------------------------------------
summarize "$runs" >"$out/summary.md"
echo
cat "$out/summary.md"
echo
echo "vm-compare: done in $((SECONDS - t_all)) s; results in $out"
