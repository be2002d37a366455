#!/usr/bin/env bash
# Cross-builds the arm64 package (what a Raspberry Pi user installs) on this x86_64 machine and,
# unless --no-smoke, smoke-tests it under QEMU user-mode emulation (packaging/arm64/smoke.sh).
#
#   packaging/arm64/build.sh [--rpios] [--out DIR] [--no-smoke]
#
#   --rpios  the Raspberry Pi OS trixie package (picker_*+rpios13_arm64.deb): built against
#            Raspberry Pi's libcamera (packaging/rpios/libcamera.sh, cross-built once per machine
#            and cached), smoke-tested in a root of Debian trixie plus those libcamera packages,
#            with the rpios steps of smoke.sh (apt's plan, the Pi pipeline handlers, no camera)
#
# The build is packaging/build-deb.sh --suite trixie --arch arm64: `dpkg-buildpackage -aarm64 -b`
# in the cached trixie chroot with crossbuild-essential-arm64, the arm64 Build-Depends
# (libcamera-dev:arm64, libturbojpeg0-dev:arm64, libstd-rust-web-dev:arm64) and Debian's own
# rustc running on the build machine; debian/rules is the one cross-aware build of every
# architecture (build profiles cross,nocheck). Prints the time of each stage (chroot, libcamera
# for --rpios, build, smoke).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

out=$repo/target/deb smoke=1 rpios=0
while (($#)); do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --no-smoke) smoke=0; shift ;;
        --rpios) rpios=1; shift ;;
        -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "arm64/build: unknown argument: $1" >&2; exit 2 ;;
    esac
done

t=$SECONDS
"$repo/packaging/chroot.sh" trixie
t_chroot=$((SECONDS - t))

t_lib=- variant=(--suite trixie --arch arm64) smoke_args=()
if ((rpios)); then
    t=$SECONDS
    libdir=$("$repo/packaging/rpios/libcamera.sh" --print-path)
    t_lib=$((SECONDS - t))
    variant=(--rpios) smoke_args=(--local-debs "$libdir")
fi

t=$SECONDS
# Only this build's package: build-deb.sh copies into $out, which may hold older ones.
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
# --nocheck: a cross build runs no tests (dh_auto_test skips them; the binaries can't run on the
# build machine), so the nocheck profile spares installing their clients (ffmpeg, curl: some 180
# packages). The smoke test below is the arm64 run.
"$repo/packaging/build-deb.sh" "${variant[@]}" --nocheck --out "$out"
t_build=$((SECONDS - t))
pattern='picker_*_arm64.deb'
((rpios)) && pattern='picker_*+rpios13_arm64.deb'
deb=$(find "$out" -maxdepth 1 -name "$pattern" -newer "$stamp" | head -n1)
[[ -n $deb ]] || { echo "arm64/build: build-deb.sh made no picker_*_arm64.deb in $out" >&2; exit 1; }

rc=0 t_smoke=-
if ((smoke)); then
    t=$SECONDS
    "$here/smoke.sh" --deb "$deb" "${smoke_args[@]}" || rc=$?
    t_smoke=$((SECONDS - t))
fi
echo "arm64/build: $deb; chroot ${t_chroot} s, libcamera ${t_lib} s, build ${t_build} s, smoke ${t_smoke} s"
exit "$rc"
