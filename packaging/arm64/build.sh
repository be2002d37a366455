#!/usr/bin/env bash
# Cross-builds the arm64 package (what a Raspberry Pi user installs) on this x86_64 machine and,
# unless --no-smoke, smoke-tests it under QEMU user-mode emulation (packaging/arm64/smoke.sh).
#
#   packaging/arm64/build.sh [--out DIR] [--no-smoke]
#
# The build is packaging/build-deb.sh --suite trixie --arch arm64: `dpkg-buildpackage -aarm64 -b`
# in the cached trixie chroot with crossbuild-essential-arm64, the arm64 Build-Depends
# (libcamera-dev:arm64, libturbojpeg0-dev:arm64, libstd-rust-web-dev:arm64) and Debian's own
# rustc running on the build machine; debian/rules is the one cross-aware build of every
# architecture (build profiles cross,nocheck). Prints the time of each stage (chroot, build, smoke).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

out=$repo/target/deb smoke=1
while (($#)); do
    case "$1" in
        --out) out=$2; shift 2 ;;
        --no-smoke) smoke=0; shift ;;
        -h | --help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "arm64/build: unknown argument: $1" >&2; exit 2 ;;
    esac
done

t=$SECONDS
"$repo/packaging/chroot.sh" trixie
t_chroot=$((SECONDS - t))

t=$SECONDS
# Only this build's package: build-deb.sh copies into $out, which may hold older ones.
stamp=$(mktemp)
trap 'rm -f "$stamp"' EXIT
# --nocheck: a cross build runs no tests (dh_auto_test skips them; the binaries can't run on the
# build machine), so the nocheck profile spares installing their clients (ffmpeg, curl: some 180
# packages). The smoke test below is the arm64 run.
"$repo/packaging/build-deb.sh" --suite trixie --arch arm64 --nocheck --out "$out"
t_build=$((SECONDS - t))
deb=$(find "$out" -maxdepth 1 -name 'picker_*_arm64.deb' -newer "$stamp" | head -n1)
[[ -n $deb ]] || { echo "arm64/build: build-deb.sh made no picker_*_arm64.deb in $out" >&2; exit 1; }

rc=0 t_smoke=-
if ((smoke)); then
    t=$SECONDS
    "$here/smoke.sh" --deb "$deb" || rc=$?
    t_smoke=$((SECONDS - t))
fi
echo "arm64/build: $deb; chroot ${t_chroot} s, build ${t_build} s, smoke ${t_smoke} s"
exit "$rc"
