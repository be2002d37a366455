#!/usr/bin/env bash
# Cross-builds Raspberry Pi's libcamera (the fork Raspberry Pi OS trixie ships, vendored as a
# tarball with its own debian/) for arm64 in the cached Debian trixie chroot, and caches the
# packages picker builds and runs against: libcamera0.7, libcamera-dev, libcamera-ipa, with
# Raspberry Pi OS's exact names and version (0.7.0+rpt20260205-1).
#
#   packaging/rpios/libcamera.sh [--tarball FILE] [--print-path] [--rebuild] [--locate]
#
#   --tarball     the vendored source (default: libcamera_0.7.0+rpt20260205.orig-with-debian.tar.xz
#                 in $PICKER_VENDOR, in shared/vendor beside the clone or its parent, or in
#                 /work/shared/vendor, where this workplace keeps it)
#   --locate      only print where the vendored tarball is; exit 3 if it is nowhere
#   --print-path  print the directory holding the .deb files on stdout (all else goes to stderr)
#   --rebuild     build again even if the cache holds a complete build
#
# The result lives in /var/cache/picker-build/rpios-libcamera/KEY (PICKER_BUILD_CACHE moves it),
# KEY being a hash of the tarball's sha256 and of this script: the slow build (tens of minutes on
# two cores) happens once per machine. It is built in a temporary directory and renamed into place
# only when complete; concurrent calls wait for each other (flock). Needs root.
#
# What differs from Raspberry Pi OS's own build, and why (the changes are made to the unpacked
# copy in the throw-away chroot layer; the vendored tarball stays as it is):
#   -Drpi-awb-nn=disabled   its Build-Depends libtensorflow-lite-dev is not in Debian trixie; it
#                           only drops the optional neural-network AWB algorithm from the IPA
#                           module, nothing of the library's ABI or the IPA interface.
#   profile pkg.libcamera.libonly (ours): builds only the three packages picker needs. No
#                           GStreamer plugin, V4L2 compatibility layer, Python bindings, qcam,
#                           cam or tests (their packages are left out of debian/control). The
#                           pipelines are Raspberry Pi OS's own: rpi/vc4, rpi/pisp and uvcvideo
#                           (USB cameras on a Pi; one small pipeline handler, no IPA).
#   ipa_verify under QEMU   the package build verifies each IPA module's signature with the
#                           freshly built ipa_verify; in a cross build that arm64 binary runs
#                           under the host's qemu-aarch64-static, bound into the chroot.
# The IPA modules are signed with a key made during the build and embedded in this build's
# libcamera.so, as in every build of libcamera: the packages only fit each other, like
# Raspberry Pi OS's do.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
# shellcheck source=packaging/chroot-lib.sh
source "$repo/packaging/chroot-lib.sh"

name=libcamera_0.7.0+rpt20260205.orig-with-debian.tar.xz
# The vendored tarball's hash as recorded in shared/vendor/README.md: another tarball is an error.
want_sha=c5f80ccbb367f03ae7f739d9013f868963e20fecf15b1af62a1e28122fc892b9
version=0.7.0+rpt20260205-1

tarball="" print=0 rebuild=0 locate=0
while (($#)); do
    case "$1" in
        --tarball) tarball=$2; shift 2 ;;
        --print-path) print=1; shift ;;
        --rebuild) rebuild=1; shift ;;
        --locate) locate=1; shift ;;
        -h | --help) sed -n '2,32p' "$0"; exit 0 ;;
        *) echo "rpios/libcamera: unknown argument: $1" >&2; exit 2 ;;
    esac
done
if [[ -z $tarball ]]; then
    places=(${PICKER_VENDOR:+"$PICKER_VENDOR"} "$repo/../shared/vendor" "$repo/../../shared/vendor"
        /work/shared/vendor)
    for d in "${places[@]}"; do
        [[ -f $d/$name ]] && { tarball=$d/$name; break; }
    done
    [[ -n $tarball ]] || {
        echo "rpios/libcamera: no $name in any of: ${places[*]}" >&2
        exit $((locate ? 3 : 2))
    }
fi
if ((locate)); then
    echo "$tarball"
    exit 0
fi
[[ -f $tarball ]] || { echo "rpios/libcamera: no such tarball: $tarball" >&2; exit 2; }
tarball=$(cd "$(dirname "$tarball")" && pwd)/$(basename "$tarball")

sha=$(sha256sum "$tarball" | cut -d' ' -f1)
[[ $sha == "$want_sha" ]] || {
    echo "rpios/libcamera: $tarball has sha256 $sha, want $want_sha (shared/vendor/README.md)" >&2
    exit 1
}
key=$(picker_key "$here/libcamera.sh" <<<"$sha")
top=$PICKER_CACHE/rpios-libcamera
dir=$top/$key
ready=$dir/.ready

build() {
    local t0=$SECONDS chroot_dir
    tmp=$top/.build-$key.$$
    trap 'rm -rf --one-file-system "$tmp"' EXIT
    trap 'exit 130' INT TERM HUP
    # The chroot first (it may be built now, by us or by whoever holds its lock).
    chroot_dir=$("$repo/packaging/chroot.sh" trixie --print-path)
    # The ipa_verify step runs the arm64 binary under the host's static QEMU (no binfmt_misc here).
    if ! command -v qemu-aarch64-static >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends qemu-user-static >/dev/null
    fi
    mkdir -p "$tmp"
    echo "rpios/libcamera: building libcamera $version for arm64 into $dir (once per machine)" >&2
    # Low priority: the machine is shared, and this is the longest build of all.
    nice -n 10 bash -c '
        source "$1/packaging/chroot-lib.sh"
        chroot_run --overlay --apt-cache trixie --bind "$2:/vendor/libcamera.tar.xz" \
            --bind "$3:/out" --bind "$(command -v qemu-aarch64-static):/usr/local/bin/qemu-aarch64-static" \
            --env "DEB_BUILD_OPTIONS=nocheck nodoc parallel=$(nproc)" \
            "$4" -- bash -c "$5"' sh "$repo" "$tarball" "$tmp" "$chroot_dir" "$inner" >&2
    (cd "$tmp" && sha256sum ./*.deb) >"$tmp/SHA256SUMS"
    echo "$((SECONDS - t0))" >"$tmp/.build-seconds"
    date -u +%FT%TZ >"$tmp/.ready"
    rm -rf --one-file-system "$dir"
    mv -T "$tmp" "$dir"
    trap - EXIT INT TERM HUP
    echo "rpios/libcamera: built in $((SECONDS - t0)) s: $(cd "$dir" && echo ./*.deb)" >&2
}

# Inside the chroot (throw-away overlay): unpack, adapt (see the header), build-dep, build.
# shellcheck disable=SC2016 # expanded inside the chroot
inner='
set -euo pipefail
profiles=cross,nocheck,nodoc,pkg.libcamera.nopython,pkg.libcamera.noqt,pkg.libcamera.nosdl,pkg.libcamera.libonly
dpkg --add-architecture arm64
apt-get update -qq
apt-get install -y -qq --no-install-recommends crossbuild-essential-arm64 >/dev/null
mkdir -p /build && cd /build
tar -xJf /vendor/libcamera.tar.xz
cd libcamera-*/
# debian/control: no tensorflow-lite (awb-nn off); GStreamer only for the packages we leave out;
# those packages marked with our profile, so dh neither builds nor expects them; the Python
# modules of the code generators run on the build machine (:native: they are not Multi-Arch
# foreign, so a cross build-dep would look for arm64 ones).
sed -i -e "/^ *libtensorflow-lite-dev,$/d" \
    -e "s/^\( *libgstreamer[a-z0-9.-]*-dev\),$/\1 <!pkg.libcamera.libonly>,/" \
    -e "s/^\( *python3-\(jinja2\|yaml\)\),$/\1:native,/" debian/control
awk '\''{ print } /^Package: (libcamera-tools|libcamera-v4l2|gstreamer1\.0-libcamera|python3-libcamera)$/ {
    print "Build-Profiles: <!pkg.libcamera.libonly>" }'\'' debian/control >debian/control.new
mv debian/control.new debian/control
grep -q "^ *libtensorflow-lite-dev" debian/control && { echo "control: tensorflow still there" >&2; exit 1; }
[ "$(grep -c "^Build-Profiles: <!pkg.libcamera.libonly>" debian/control)" = 4 ] || { echo "control: profile not added to 4 packages" >&2; exit 1; }
# debian/rules: awb-nn off; ipa_verify through QEMU when cross-building; the libonly options.
sed -i -e "s/-Drpi-awb-nn=enabled/-Drpi-awb-nn=disabled/" \
    -e "s|^\(\t *\)\(\./obj-\${DEB_HOST_GNU_TYPE}/src/apps/ipa-verify/ipa_verify \$\${IPA_MOD};\)|\1\$(IPA_VERIFY_WRAPPER) \2|" debian/rules
grep -q -- "-Drpi-awb-nn=disabled" debian/rules && grep -q "IPA_VERIFY_WRAPPER) ./obj" debian/rules ||
    { echo "rules: the expected lines were not found" >&2; exit 1; }
cat >>debian/rules <<"RULES"

# --- added by picker packaging/rpios/libcamera.sh ---
ifneq ($(DEB_BUILD_ARCH),$(DEB_HOST_ARCH))
IPA_VERIFY_WRAPPER = qemu-$(DEB_HOST_GNU_CPU)-static
endif
ifneq (,$(filter pkg.libcamera.libonly,$(DEB_BUILD_PROFILES)))
CONFFLAGS := $(filter-out -Dgstreamer=% -Dpycamera=% -Dqcam=% -Dtest=% -Dv4l2=%,$(CONFFLAGS)) \
	-Dgstreamer=disabled -Dpycamera=disabled -Dqcam=disabled -Dtest=false -Dv4l2=disabled \
	-Dcam=disabled -Dlc-compliance=disabled
# ipa_verify, copied to usr/bin for libcamera-tools, stays unpackaged. Without cam and qcam
# nothing else installs into usr/bin: the copy needs the directory made first (an extra
# prerequisite; the recipe itself is unchanged).
override_dh_missing:
	dh_missing --list-missing
execute_before_dh_install-arch: picker-usr-bin
picker-usr-bin:
	mkdir -p debian/tmp/usr/bin
.PHONY: picker-usr-bin
endif
RULES
apt-get build-dep -y -q --no-install-recommends -a arm64 -P "$profiles" . |
    { grep -v -e "^Selecting\|^Preparing\|^Unpacking\|^Setting up\|^Processing\|^(Reading\|^Get:" || true; }
dpkg-buildpackage -aarm64 -B -us -uc -P"$profiles"
cd /build
ls -l ./*.deb
for p in libcamera0.7 libcamera-dev libcamera-ipa; do cp "${p}_"*_arm64.deb /out/; done
'

mkdir -p "$top"
if ((rebuild)) || [[ ! -e $ready ]]; then
    exec 9>"$top/.lock"
    flock -w 7200 9 || { echo "rpios/libcamera: timed out waiting for the build lock" >&2; exit 1; }
    if ((rebuild)) || [[ ! -e $ready ]]; then
        for old in "$top"/.build-*; do [[ ! -d $old ]] || rm -rf --one-file-system "$old"; done
        build
        for old in "$top"/*; do [[ $old == "$dir" || ! -d $old ]] || rm -rf --one-file-system "$old"; done
    fi
    exec 9>&-
fi
if ((print)); then
    echo "$dir"
else
    echo "rpios/libcamera: $(cd "$dir" && echo ./*.deb) in $dir (built in $(cat "$dir/.build-seconds") s)" >&2
fi
