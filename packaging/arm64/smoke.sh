#!/usr/bin/env bash
# Smoke test of the arm64 package on this (x86_64) machine, under QEMU user-mode emulation.
#
#   packaging/arm64/smoke.sh [--deb FILE] [--sysroot DIR] [--local-debs DIR] [--keep]
#
#   --deb      the package (default: the newest target/deb/picker_*_arm64.deb)
#   --sysroot  an arm64 root holding the package's runtime libraries; default: built from the
#              package's own Depends (see below), cached under /var/cache/picker-build/arm64-sysroot
#   --local-debs  packages of the system beyond Debian's: Raspberry Pi's libcamera
#              (packaging/rpios/libcamera.sh --print-path). The root is then Debian trixie plus
#              these, standing in for Raspberry Pi OS, and the rpios steps run (see below).
#   --keep     keep the work directory (logs, extracted package, instruction traces)
#
# What a Raspberry Pi user installs is what runs here: the .deb is unpacked into a root that
# holds only the arm64 packages its Depends pull in (resolved by apt from Debian trixie, arm64,
# inside the trixie build chroot, packaging/chroot.sh), so a missing shlibs dependency fails the
# test instead of being hidden by libraries a build chroot happens to have. The binaries run
# with `qemu-aarch64-static -L <root>`; no binfmt_misc registration is needed or made.
#
# Steps, each printed as PASS or FAIL (the exit status is non-zero if any fails). With
# --local-debs, first:
#   rpios    apt: `apt-get install -s` of the package with Raspberry Pi's libcamera0.N and
#            libcamera-ipa given beside it (arm64, the Debian trixie archive for the rest) plans
#            no libcamera package but those; the Depends name the local libcamera0.N at a
#            version it satisfies. libcamera: picker with source = "libcamera" and
#            LIBCAMERA_LOG_LEVELS=*:DEBUG starts libcamera, whose log shows the rpi/vc4 and
#            rpi/pisp pipeline handlers registered and both Raspberry Pi IPA modules loaded (from
#            the root's own IPA directory), finds no camera, and picker exits 1 with its
#            "no camera found: libcamera lists no cameras" error.
# Then, for every package:
#   package  Architecture arm64, an AArch64 ELF, NEEDED libturbojpeg.so.0, segments aligned for
#            16 KiB-page kernels (Raspberry Pi 5), Depends libturbojpeg0
#   simd     Debian's arm64 libturbojpeg carries libjpeg-turbo's aarch64 SIMD dispatcher
#   run      picker --version; picker check-config on the shipped /etc/picker/picker.toml
#   service  test-pattern source on 127.0.0.1 and a free port, socket in a temp dir: a frame of
#            /stream.mjpg decoded by ffmpeg (512x512 RGB), a still over the Unix socket
#            (/still.rgb, 786432 bytes), SIGTERM -> exit 0 and the socket file removed
#   neon     the NEON kernels of libjpeg-turbo run while picker encodes: QEMU's translation log
#            (-d in_asm) of libturbojpeg's code holds the instructions only those kernels use
#            (sqdmulh of the fast forward DCT, tbl/cmtst/clz of the Huffman encoder, umull of
#            quantization), and a control run with JSIMD_FORCENONE=1 (libjpeg-turbo's switch
#            to its plain C code) holds none of them: the control proves the check discriminates

# `cond && pass ... || fail ...` is safe here: pass only prints.
# shellcheck disable=SC2015
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

deb="" sysroot="" keep=0 local_dir=""
while (($#)); do
    case "$1" in
        --deb) deb=$2; shift 2 ;;
        --sysroot) sysroot=$2; shift 2 ;;
        --local-debs) local_dir=$(cd "$2" && pwd); shift 2 ;;
        --keep) keep=1; shift ;;
        -h | --help) sed -n '2,42p' "$0"; exit 0 ;;
        *) echo "smoke-arm64: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [[ -z $deb ]]; then
    deb=$(find "$repo/target/deb" -maxdepth 1 -name 'picker_*_arm64.deb' -printf '%T@ %p\n' 2>/dev/null |
        sort -rn | head -n1 | cut -d' ' -f2-)
    [[ -n $deb ]] || { echo "smoke-arm64: no target/deb/picker_*_arm64.deb; build it: packaging/arm64/build.sh" >&2; exit 2; }
fi
[[ -f $deb ]] || { echo "smoke-arm64: no such package: $deb" >&2; exit 2; }
deb=$(cd "$(dirname "$deb")" && pwd)/$(basename "$deb")

t0=$SECONDS
fails=0
pass() { printf 'PASS  %-22s %s\n' "$1" "${2:-}"; }
fail() { printf 'FAIL  %-22s %s\n' "$1" "${2:-}"; fails=$((fails + 1)); }

# Host tools: QEMU user mode, the clients (ffmpeg, curl), readelf, python3 for the trace.
need=()
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v curl >/dev/null || need+=(curl)
command -v readelf >/dev/null || need+=(binutils)
command -v python3 >/dev/null || need+=(python3)
if ((${#need[@]})); then
    echo "smoke-arm64: installing ${need[*]}" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

work=$(mktemp -d /tmp/picker-arm64-smoke.XXXXXX)
svc_pid=""
cleanup() {
    # Only the service this script started, by its PID.
    # svc_pid is timeout(1), which passes SIGTERM on to QEMU.
    if [[ -n $svc_pid ]] && kill -0 "$svc_pid" 2>/dev/null; then
        kill -TERM "$svc_pid" 2>/dev/null || true
        sleep 2
        for child in $(pgrep -P "$svc_pid" || true); do kill -KILL "$child" 2>/dev/null || true; done
        kill -KILL "$svc_pid" 2>/dev/null || true
    fi
    if ((keep)); then echo "smoke-arm64: work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# --- the arm64 runtime root -------------------------------------------------------------------
# The package's Depends minus the sysusers alternative (systemd is no library; the service is
# started directly here), versions dropped: apt resolves their closure for arm64.
depends=$(dpkg-deb -f "$deb" Depends)
mapfile -t libs < <(tr ',' '\n' <<<"$depends" | grep -v -e systemd -e '^\s*$' | sed 's/(.*)//; s/\s//g' | sort -u)
# --local-debs: their runtime packages (not -dev) join the root; apt takes them as given files.
local_debs=() local_names=()
if [[ -n $local_dir ]]; then
    for f in "$local_dir"/*.deb; do
        p=$(dpkg-deb -f "$f" Package)
        [[ $p == *-dev ]] && continue
        local_debs+=("$f") local_names+=("$p")
    done
    ((${#local_debs[@]})) || { echo "smoke-arm64: no runtime packages in $local_dir" >&2; exit 2; }
    mapfile -t libs < <(printf '%s\n' "${libs[@]}" | grep -vxF -f <(printf '%s\n' "${local_names[@]}"))
fi
if [[ -z $sysroot ]]; then
    t_sys=$SECONDS
    cache=${PICKER_BUILD_CACHE:-/var/cache/picker-build}
    chroot_dir=$("$repo/packaging/chroot.sh" trixie --print-path)
    key=$( (printf '%s\n' "${libs[@]}" "$chroot_dir"; cat "${local_debs[@]}" </dev/null) | sha256sum | cut -c1-16)
    # Debian-only roots and roots with local packages are kept apart (CI uses both).
    kind=debian
    [[ -z $local_dir ]] || kind=local
    sysroot=$cache/arm64-sysroot/$kind-$key
    if [[ ! -e $sysroot/.ready ]]; then
        echo "smoke-arm64: arm64 runtime root for: ${libs[*]}" >&2
        # shellcheck source=packaging/chroot-lib.sh
        source "$repo/packaging/chroot-lib.sh"
        debs=$work/debs
        mkdir -p "$debs/partial"
        # A throw-away overlay: the chroot gains no arm64 architecture. An empty dpkg status and
        # APT::Architecture=arm64 make apt resolve the whole closure as for a bare arm64 system.
        local_args=() local_in=()
        if [[ -n $local_dir ]]; then
            local_args=(--bind "$local_dir:/local")
            for f in "${local_debs[@]}"; do local_in+=("/local/$(basename "$f")"); done
        fi
        chroot_run --overlay --bind "$debs:/out" "${local_args[@]}" "$chroot_dir" -- sh -c '
            set -e
            dpkg --add-architecture arm64
            apt-get update -qq
            : >/tmp/status
            apt-get -q -o APT::Architecture=arm64 -o Dir::State::status=/tmp/status \
                -o Dir::Cache::archives=/out -o Debug::NoLocking=1 \
                install -y --download-only --no-install-recommends "$@"' sh "${libs[@]}" "${local_in[@]}" >&2
        # The local packages themselves: apt does not copy given files into its archives.
        ((${#local_debs[@]} == 0)) || cp "${local_debs[@]}" "$debs/"
        rm -rf "$sysroot.tmp" && mkdir -p "$sysroot.tmp"
        # Debian trixie's packages are /usr-merged: the aliases are base-files' job on a system.
        for d in bin lib sbin; do ln -s "usr/$d" "$sysroot.tmp/$d"; done
        for f in "$debs"/*.deb; do dpkg-deb -x "$f" "$sysroot.tmp"; done
        (cd "$debs" && ls ./*.deb) >"$sysroot.tmp/.packages"
        touch "$sysroot.tmp/.ready"
        rm -rf "$sysroot" && mv -T "$sysroot.tmp" "$sysroot"
        # Older roots (other Depends, older chroots) are stale now.
        for old in "$cache/arm64-sysroot/$kind"-*; do
            [[ $old == "$sysroot" ]] || rm -rf --one-file-system "$old"
        done
        echo "smoke-arm64: runtime root ($(wc -l <"$sysroot/.packages") packages) in $((SECONDS - t_sys)) s" >&2
    fi
fi
[[ -e $sysroot/usr/lib/ld-linux-aarch64.so.1 ]] || { echo "smoke-arm64: $sysroot has no arm64 libc" >&2; exit 2; }

# The package on top of a private copy of the root (hard links: cheap, and the cache stays clean).
root=$work/root
cp -al "$sysroot" "$root" 2>/dev/null || { rm -rf "$root"; cp -a "$sysroot" "$root"; } # another filesystem
dpkg-deb -x "$deb" "$root"
bin=$root/usr/bin/picker
qemu=(qemu-aarch64-static -L "$root")

# --- package ----------------------------------------------------------------------------------
arch=$(dpkg-deb -f "$deb" Architecture)
[[ $arch == arm64 ]] && pass package/arch "$(basename "$deb")" || fail package/arch "Architecture: $arch"
machine=$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')
[[ $machine == AArch64 ]] && pass package/elf "$machine" || fail package/elf "Machine: $machine"
needed=$(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
grep -qw 'libturbojpeg\.so\.0' <<<"$needed" && pass package/needed "$needed" || fail package/needed "no libturbojpeg.so.0 in: $needed"
# Raspberry Pi 5 kernels run with 16 KiB pages: every LOAD segment must be aligned to at least
# that (GNU ld's aarch64 default is 64 KiB; a 4 KiB alignment would not start there).
align=$(readelf -lW "$bin" | awk '$1 == "LOAD" { print $NF }' | sort -u | tr '\n' ' ')
bad=$(for a in $align; do ((a >= 0x4000)) || echo "$a"; done)
[[ -n $align && -z $bad ]] && pass package/page-align "LOAD alignment $align(>= 16 KiB pages)" ||
    fail package/page-align "LOAD alignment $align"
grep -qw libturbojpeg0 <<<"$depends" && pass package/depends "$depends" || fail package/depends "$depends"

# --- rpios: Raspberry Pi OS stand-in ----------------------------------------------------------
if [[ -n $local_dir ]]; then
    # apt: what `apt install ./picker_*.deb` plans on a system whose archive has Raspberry Pi's
    # libcamera (given here as files) and Debian trixie for the rest: no other libcamera0.N.
    chroot_dir=$("$repo/packaging/chroot.sh" trixie --print-path)
    # shellcheck source=packaging/chroot-lib.sh
    source "$repo/packaging/chroot-lib.sh"
    plan_in=()
    for f in "${local_debs[@]}"; do plan_in+=("/local/$(basename "$f")"); done
    rc=0
    chroot_run --overlay --bind "$local_dir:/local" --bind "$deb:/pkg/$(basename "$deb")" "$chroot_dir" -- sh -c '
        set -e
        dpkg --add-architecture arm64
        apt-get update -qq
        : >/tmp/status
        apt-get -o APT::Architecture=arm64 -o Dir::State::status=/tmp/status -o Debug::NoLocking=1 \
            install -s --no-install-recommends "$@"' sh "${plan_in[@]}" "/pkg/$(basename "$deb")" \
        >"$work/plan.txt" 2>&1 || rc=$?
    # "Inst NAME (VERSION SOURCE [ARCH])"
    cams=$(awk '$1 == "Inst" && $2 ~ /^libcamera/ { print $2 "=" substr($3, 2) }' "$work/plan.txt" | sort | tr '\n' ' ')
    want=$(for f in "${local_debs[@]}"; do echo "$(dpkg-deb -f "$f" Package)=$(dpkg-deb -f "$f" Version)"; done | sort | tr '\n' ' ')
    picker_inst=$(awk '$1 == "Inst" && $2 ~ /^picker/' "$work/plan.txt")
    [[ $rc == 0 && -n $picker_inst && ${cams//:arm64/} == "$want" ]] &&
        pass rpios/apt "plans libcamera only from Raspberry Pi's: $cams" ||
        fail rpios/apt "exit $rc; libcamera planned: ${cams:-none}, want: $want; $(grep -m3 -e '^E:' -e 'Depends:' "$work/plan.txt" | tr '\n' ' ')"
    # Depends: the local libcamera0.N, versioned, and satisfied by the local package's version.
    lib=$(for f in "${local_debs[@]}"; do echo "$(dpkg-deb -f "$f" Package) $(dpkg-deb -f "$f" Version)"; done |
        awk '$1 ~ /^libcamera0\./')
    dep=$(tr ',' '\n' <<<"$depends" | grep -o 'libcamera0\.[0-9]*[^,]*' || true)
    dep_ver=$(sed -n 's/.*(>= *\([^)]*\)).*/\1/p' <<<"$dep")
    if [[ -n $dep && $(wc -l <<<"$dep") == 1 && ${dep%% *} == "${lib%% *}" && -n $dep_ver ]] &&
        dpkg --compare-versions "${lib#* }" ge "$dep_ver"; then
        pass rpios/depends "$dep, satisfied by $lib"
    else
        fail rpios/depends "Depends on libcamera: '${dep:-none}'; local: '$lib'"
    fi

    # libcamera: Raspberry Pi's libcamera comes up in picker under QEMU and finds no camera.
    cat >"$work/libcamera.toml" <<EOF
[camera]
source = "libcamera"
[stream]
bind = "127.0.0.1"
port = $(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
[still]
socket = "$work/libcamera.sock"
EOF
    rc=0
    LIBCAMERA_LOG_LEVELS='*:DEBUG' timeout -k 5 300 "${qemu[@]}" "$bin" --config "$work/libcamera.toml" \
        >"$work/libcamera.log" 2>&1 || rc=$?
    handlers=$(grep -o "Found registered pipeline handler '[^']*'" "$work/libcamera.log" |
        sed "s/.*'\(.*\)'/\1/" | sort -u | tr '\n' ' ')
    ipas=$(grep -o "Loaded IPA module '[^']*'" "$work/libcamera.log" | sed "s/.*'\(.*\)'/\1/" | sort -u)
    [[ " $handlers" == *" rpi/vc4 "* && " $handlers" == *" rpi/pisp "* ]] &&
        pass rpios/handlers "registered: $handlers" ||
        fail rpios/handlers "registered: '$handlers'; log: $(grep -m3 -e ERROR -e WARN "$work/libcamera.log" | tr '\n' ' ')"
    [[ $(grep -c -e '/ipa_rpi_vc4\.so$' -e '/ipa_rpi_pisp\.so$' <<<"$ipas") == 2 ]] &&
        pass rpios/ipa "loaded: $(tr '\n' ' ' <<<"$ipas")" ||
        fail rpios/ipa "loaded: '$(tr '\n' ' ' <<<"$ipas")'"
    err=$(grep -o 'no camera found: libcamera lists no cameras[^"]*' "$work/libcamera.log" | head -n1)
    [[ $rc == 1 && -n $err ]] && pass rpios/no-camera "exit 1: $err" ||
        fail rpios/no-camera "exit $rc; $(grep -v DEBUG "$work/libcamera.log" | tail -n 3 | tr '\n' ' ')"
fi

# --- simd -------------------------------------------------------------------------------------
# The getenv switches of simd/arm/aarch64/jsimd.c exist only in a WITH_SIMD build for aarch64
# (jsimd_none.c, the no-SIMD build, reads no environment).
tj=$(readlink -f "$root/usr/lib/aarch64-linux-gnu/libturbojpeg.so.0")
tjpkg=$(grep -o 'libturbojpeg0_[^ ]*\.deb' "$sysroot/.packages" 2>/dev/null || basename "$tj")
if strings "$tj" | grep -qx JSIMD_FORCENEON && strings "$tj" | grep -qx JSIMD_FASTST3; then
    pass simd/dispatcher "$tjpkg: aarch64 NEON dispatcher (JSIMD_FORCENEON, JSIMD_FASTST3)"
else
    fail simd/dispatcher "$tjpkg: no aarch64 SIMD dispatcher strings"
fi

# --- run --------------------------------------------------------------------------------------
version=$(dpkg-deb -f "$deb" Version)
version=${version%-*}
version=${version%%+rpios*} # the Raspberry Pi OS build's suffix (build-deb.sh --rpios)
out=$(timeout 60 "${qemu[@]}" "$bin" --version 2>&1) || true
[[ $out == "picker $version" ]] && pass run/version "$out" || fail run/version "want 'picker $version', got: $out"
# The conffile as shipped in the package (config/picker.toml of the source).
rc=0
out=$(timeout 60 "${qemu[@]}" "$bin" check-config --config "$root/etc/picker/picker.toml" 2>&1) || rc=$?
[[ $rc == 0 && $out == ok ]] && pass run/check-config "$out" || fail run/check-config "exit $rc: $out"

# --- service ----------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_service NAME [ENV...]: the service with the test pattern; sets svc_pid, port, sock, log.
start_service() {
    local name=$1 i
    shift
    port=$(free_port)
    sock=$work/$name.sock
    log=$work/$name.log
    cat >"$work/$name.toml" <<EOF
[camera]
source = "test-pattern"
[stream]
bind = "127.0.0.1"
port = $port
[still]
socket = "$sock"
EOF
    local extra=()
    read -r -a extra <<<"${qemu_extra[$name]:-}"
    env "$@" timeout -k 5 300 "${qemu[@]}" "${extra[@]}" "$bin" --config "$work/$name.toml" >"$log" 2>&1 &
    svc_pid=$!
    # READY: sockets bound and the first frame published (the log's "ready" line).
    for ((i = 0; i < 600; i++)); do
        grep -q ' ready ' "$log" && [[ -S $sock ]] && return 0
        kill -0 "$svc_pid" 2>/dev/null || return 1
        sleep 0.1
    done
    return 1
}

# stop_service: SIGTERM, then the exit status (124/137 mean timeout or KILL).
stop_service() {
    local rc=0
    kill -TERM "$svc_pid" 2>/dev/null || true
    wait "$svc_pid" || rc=$?
    svc_pid=""
    return "$rc"
}

declare -A qemu_extra=()
t_svc=$SECONDS
if start_service service; then
    pass service/ready "$((SECONDS - t_svc)) s to READY on 127.0.0.1:$port"
    n=$(timeout 60 ffmpeg -nostdin -loglevel error -i "http://127.0.0.1:$port/stream.mjpg" \
        -frames:v 1 -f rawvideo -pix_fmt rgb24 - 2>"$work/ffmpeg.err" | wc -c)
    [[ $n == 786432 ]] && pass service/stream "one frame of /stream.mjpg decoded: $n bytes (512x512 RGB)" ||
        fail service/stream "decoded $n bytes, want 786432: $(head -c 300 "$work/ffmpeg.err")"
    n=$(timeout 60 curl -sS --max-time 50 --unix-socket "$sock" -D "$work/still.h" -o "$work/still.rgb" \
        -w '%{http_code}' http://picker/still.rgb 2>&1) || true
    size=$(stat -c %s "$work/still.rgb" 2>/dev/null || echo 0)
    [[ $n == 200 && $size == 786432 ]] && pass service/still "/still.rgb over $sock: $size bytes" ||
        fail service/still "HTTP $n, $size bytes, want 786432"
    rc=0
    stop_service || rc=$?
    [[ $rc == 0 && ! -e $sock ]] && pass service/sigterm "exit 0, socket removed" ||
        fail service/sigterm "exit $rc, socket $([[ -e $sock ]] && echo left behind || echo removed)"
else
    fail service/ready "exited, or no READY within 60 s: $(tail -n 5 "$log")"
    stop_service || true
fi

# --- neon -------------------------------------------------------------------------------------
# neon_trace NAME [ENV...]: runs the service with QEMU logging every translated block, takes
# three frames (the encoder only works while somebody watches), and prints the count of each
# NEON-kernel instruction that ran inside libturbojpeg's code.
neon_trace() {
    local name=$1 maps
    shift
    qemu_extra[$name]="-d in_asm,nochain -D $work/$name.trace"
    start_service "$name" "$@" || { stop_service || true; echo "no READY"; return 1; }
    timeout 60 ffmpeg -nostdin -loglevel error -i "http://127.0.0.1:$port/stream.mjpg" \
        -frames:v 3 -f rawvideo -pix_fmt rgb24 - >/dev/null 2>&1 || true
    # qemu-user maps guest code at the same addresses on the host for a 64-bit guest on a
    # 64-bit host (guest_base 0), so the host's view of the mapping bounds libturbojpeg's code.
    # shellcheck disable=SC2009
    maps=$(grep -m1 -o '^[0-9a-f]*-[0-9a-f]* r.*libturbojpeg\.so' "/proc/$(pgrep -P "$svc_pid" -f qemu-aarch64 || echo "$svc_pid")/maps" 2>/dev/null || true)
    stop_service || true
    [[ -n $maps ]] || { echo "libturbojpeg not mapped"; return 1; }
    python3 - "${maps%% *}" "$work/$name.trace" <<'EOF'
import re, sys
lo, hi = (int(x, 16) for x in sys.argv[1].split("-"))
kernel_ops = ["sqdmulh", "tbl", "cmtst", "clz", "umull"]
vector = re.compile(r"\bv\d+\.\d*[bhsd]\b|\{v\d+")
seen, counts = 0, dict.fromkeys(kernel_ops, 0)
for line in open(sys.argv[2], errors="replace"):
    if not line.startswith("0x"):
        continue
    addr, _, rest = line.partition(":")
    if lo <= int(addr, 16) < hi:
        seen += 1
        fields = rest.split()
        if len(fields) >= 2 and fields[1] in counts and vector.search(rest):
            counts[fields[1]] += 1
print(seen, " ".join(f"{k}={v}" for k, v in counts.items()))
EOF
}

simd=$(neon_trace neon) || true
plain=$(neon_trace plain JSIMD_FORCENONE=1) || true
# "<instructions seen in libturbojpeg> sqdmulh=N tbl=N cmtst=N clz=N umull=N"
if [[ $simd =~ ^[0-9]+\  && $plain =~ ^[0-9]+\  ]]; then
    simd_ops=$(tr ' ' '\n' <<<"${simd#* }" | awk -F= '$2 > 0' | wc -l)
    plain_ops=$(tr ' ' '\n' <<<"${plain#* }" | awk -F= '$2 > 0' | wc -l)
    if ((${simd%% *} > 0 && simd_ops == 5 && plain_ops == 0)); then
        pass neon/kernels "default: ${simd#* }; JSIMD_FORCENONE=1: ${plain#* }"
    else
        fail neon/kernels "default: $simd; JSIMD_FORCENONE=1: $plain"
    fi
else
    fail neon/kernels "trace failed: default: $simd; JSIMD_FORCENONE=1: $plain"
fi

echo "smoke-arm64: $((SECONDS - t0)) s, $fails failed"
((fails == 0))
