#!/usr/bin/env bash
# Builds the picker .deb the Debian way (dpkg-buildpackage -b with debian/) inside a cached Debian
# chroot, copies the packages to an output directory and runs lintian on them: picker_*_ARCH.deb
# and, from the same source, the Python client python3-picker-client_*_all.deb.
#
#   packaging/build-deb.sh [--suite forky|trixie] [--arch amd64|arm64] [--rpios] [--out DIR] [--nocheck]
#
#   --suite   forky (default; libcamera 0.7, built with this machine's rustup toolchain) or
#             trixie (libcamera 0.4, Debian's rustc-web 1.96)
#   --arch    amd64 (default) or arm64 (cross-built: dpkg-buildpackage -aarm64, Debian's rustc
#             and libstd-rust-dev:arm64; trixie only, as rustup cannot fetch other targets here)
#   --rpios   the Raspberry Pi OS trixie package: arm64, in the trixie chroot, against Raspberry
#             Pi's libcamera (packaging/rpios/libcamera.sh builds it once per machine) instead of
#             Debian's; version suffix +rpios13, Depends libcamera0.7 (>= 0.7.0+rpt...) as
#             Raspberry Pi OS satisfies it (build profile pkg.picker.rpios, see debian/rules)
#   --out     where the .deb files go (default: target/deb/ in the repository)
#   --nocheck skip the tests during the build (DEB_BUILD_OPTIONS=nocheck)
#
# The source is the working tree (tracked and untracked files, minus what .gitignore ignores),
# so uncommitted changes are built too. The chroot (packaging/chroot.sh), the crate download
# cache and cargo's build directory live under /var/cache/picker-build and survive between runs:
# a rebuild after a small change takes a minute or two instead of a full build.
# Exit status: non-zero if the build fails or lintian reports an error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

suite=forky
arch=amd64
out=$repo/target/deb
nocheck=0
rpios=0
while (($#)); do
    case "$1" in
        --suite) suite=$2; shift 2 ;;
        --arch) arch=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --nocheck) nocheck=1; shift ;;
        --rpios) rpios=1; shift ;;
        -h | --help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "build-deb: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if ((rpios)); then
    [[ $suite$arch == forkyamd64 || $suite$arch == trixiearm64 ]] ||
        { echo "build-deb: --rpios is the trixie arm64 build: no --suite/--arch with it" >&2; exit 2; }
    suite=trixie arch=arm64
fi
case "$suite" in forky | trixie) ;; *) echo "build-deb: --suite must be forky or trixie" >&2; exit 2 ;; esac
case "$arch" in amd64 | arm64) ;; *) echo "build-deb: --arch must be amd64 or arm64" >&2; exit 2 ;; esac
build_arch=$(dpkg --print-architecture)

chroot_args=()
dpkg_args=(-b -us -uc)
profiles=()
if [[ $suite == forky ]]; then
    # forky's libcamera with the rustup toolchain bound in; the build profile drops Debian's
    # cargo/rustc from the build dependencies (see debian/control).
    chroot_args+=(--host-toolchain)
    profiles+=(pkg.picker.host-toolchain)
fi
apt_arch=()
if [[ $arch != "$build_arch" ]]; then
    if [[ $suite == forky ]]; then
        echo "build-deb: cross builds need Debian's rustc (--suite trixie): rustup has no $arch target here" >&2
        exit 2
    fi
    dpkg_args+=("-a$arch")
    apt_arch=(-a "$arch")
    profiles+=(cross)
fi
if ((nocheck)); then
    profiles+=(nocheck)
fi
# Raspberry Pi's libcamera packages, as the chroot sees them (the cache is bound at the same path).
rpios_debs="" rpios_suffix=""
if ((rpios)); then
    profiles+=(pkg.picker.rpios)
    host_cache=${PICKER_BUILD_CACHE:-/var/cache/picker-build}
    echo "build-deb: Raspberry Pi's libcamera (packaging/rpios/libcamera.sh)" >&2
    rpios_dir=$("$here/rpios/libcamera.sh" --print-path)
    rpios_debs=/var/cache/picker-build/${rpios_dir#"$host_cache"/}
    # Raspberry Pi OS 13 is Debian 13 (trixie) plus Raspberry Pi's packages.
    rpios_suffix=+rpios13
fi
if ((${#profiles[@]})); then
    dpkg_args+=("-P$(IFS=,; echo "${profiles[*]}")")
fi

build_opts="parallel=$(nproc)"
((nocheck)) && build_opts+=" nocheck"

t0=$SECONDS
echo "build-deb: chroot $suite" >&2
"$here/chroot.sh" "$suite"

# Inside the chroot: unpack the source fresh, install the build dependencies (they differ per
# suite, arch and profile, so apt works them out from debian/control), build, lint.
cache=/var/cache/picker-build
tag=$suite-$arch${chroot_args:+-host}${rpios_suffix:+-rpios}
script=$(
    cat <<EOF
set -euo pipefail
shopt -s nullglob
exec 3>&1 1>&2  # stdout carries the tar of the results; everything else goes to stderr
rm -rf /build/picker && mkdir -p /build/picker/src
tar -x -C /build/picker/src
export DEBIAN_FRONTEND=noninteractive
# apt's progress is noise, but on a failure its last line ("E: Sub-process /usr/bin/dpkg returned
# an error code") is not the cause: dpkg says that on its own output. So keep the output aside
# and show its tail, with the free space (a full disk is one such cause), when a step fails.
quiet() {
    "\$@" >/tmp/build-deb-step.log 2>&1 && return
    local rc=\$?
    echo "build-deb: failed (exit \$rc) in the chroot: \$*" >&2
    tail -n 40 /tmp/build-deb-step.log >&2
    df -h / /var/cache/picker-build >&2 || true
    exit \$rc
}
if [ -n "${apt_arch[*]}" ]; then dpkg --add-architecture $arch; fi
apt-get update -qq
# apt-get build-dep does not add the cross compilers (sbuild would).
if [ -n "${apt_arch[*]}" ]; then quiet apt-get install -y -qq --no-install-recommends crossbuild-essential-$arch; fi
# --rpios: Raspberry Pi's libcamera in place of Debian's before build-dep looks (local packages;
# apt resolves what they need from Debian trixie). The changelog entry gives the version suffix,
# as sbuild's --append-to-version does.
if [ -n "$rpios_debs" ]; then
    quiet apt-get install -y -qq --no-install-recommends $rpios_debs/libcamera0.*_$arch.deb \
        $rpios_debs/libcamera-ipa_*_$arch.deb $rpios_debs/libcamera-dev_*_$arch.deb
    cd /build/picker/src
    v=\$(dpkg-parsechangelog -SVersion) m=\$(dpkg-parsechangelog -SMaintainer)
    lv=\$(dpkg-query -W -f='\${Version}' libcamera-dev:$arch)
    { printf 'picker (%s) trixie; urgency=medium\n\n' "\$v$rpios_suffix"
      printf '  * Raspberry Pi OS trixie build (Raspberry Pi libcamera %s).\n\n' "\$lv"
      printf ' -- %s  %s\n\n' "\$m" "\$(date -R)"
      cat debian/changelog; } >debian/changelog.new
    mv debian/changelog.new debian/changelog
    cd /
fi
quiet apt-get build-dep -y -qq --no-install-recommends ${apt_arch[*]} ${profiles:+-P $(IFS=,; echo "${profiles[*]}")} /build/picker/src
command -v lintian >/dev/null || quiet apt-get install -y -qq --no-install-recommends lintian
cd /build/picker/src
export CARGO_HOME=$cache/cargo-home CARGO_TARGET_DIR=$cache/cargo-target/$tag
export DEB_BUILD_OPTIONS="$build_opts"
mkdir -p "\$CARGO_HOME" "\$CARGO_TARGET_DIR"
dpkg-buildpackage ${dpkg_args[*]}
cd /build/picker
echo "lintian:"
lintian --fail-on error --display-info --tag-display-limit 0 picker_*.deb python3-picker-client_*.deb
tar -c picker_*.deb picker-dbgsym_*deb python3-picker-client_*.deb picker_*.buildinfo picker_*.changes >&3
EOF
)

mkdir -p "$out"
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
(cd "$repo" && git ls-files -z --cached --others --exclude-standard | tar --null -T - -c) |
    "$here/in-chroot.sh" "$suite" "${chroot_args[@]}" -- bash -c "$script" >"$staging/out.tar"
tar -x -C "$out" -f "$staging/out.tar"
echo "build-deb: $(cd "$out" && echo $(ls picker_*_"$arch".deb python3-picker-client_*_all.deb)) in $out ($((SECONDS - t0)) s)" >&2
