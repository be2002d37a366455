#!/usr/bin/env bash
# Creates, or reuses, the cached Debian build chroot for SUITE (trixie: libcamera 0.4 and Debian's
# Rust; forky: libcamera 0.7) with the packages of packaging/build-deps.txt.
#
#   packaging/chroot.sh SUITE [--print-path] [--rebuild]
#
#   --print-path  print the chroot's directory on stdout (all else goes to stderr)
#   --rebuild     build a fresh chroot even if a cached one exists
#
# The chroot lives in /var/cache/picker-build/chroots/SUITE-KEY (PICKER_BUILD_CACHE moves the
# cache), KEY being a hash of this script, build-deps.txt, the suite and the mirror: change one
# and the next call builds a new chroot, and deletes the old ones of that suite. It is built in a
# temporary directory and renamed into place only when complete, so an interrupted build leaves
# no half chroot behind; concurrent calls wait for each other (flock). Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=chroot-lib.sh
source "$here/chroot-lib.sh"

suite="" print=0 rebuild=0
while (($#)); do
    case "$1" in
        --print-path) print=1; shift ;;
        --rebuild) rebuild=1; shift ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        trixie | forky) suite=$1; shift ;;
        *) echo "chroot.sh: unknown argument: $1 (SUITE is trixie or forky)" >&2; exit 2 ;;
    esac
done
[[ -n $suite ]] || { echo "usage: chroot.sh trixie|forky [--print-path] [--rebuild]" >&2; exit 2; }

mirror=$(picker_mirror)
deps=$here/build-deps.txt
key=$(picker_key "$here/chroot.sh" "$deps" <<<"$suite $mirror")
dir=$PICKER_CACHE/chroots/$suite-$key
ready=$dir/.picker-chroot-ready

build() {
    local t0=$SECONDS pkgs
    # Global, not local: the EXIT trap runs after this function has returned.
    tmp=$PICKER_CACHE/chroots/.build-$suite-$key.$$
    # Never rm -rf across a mount point: --one-file-system, and debootstrap runs in its own
    # mount namespace anyway.
    trap 'rm -rf --one-file-system "$tmp"' EXIT
    # bash skips the EXIT trap when a signal kills it: turn the usual ones into an exit.
    trap 'exit 130' INT TERM HUP
    mapfile -t pkgs < <(picker_packages "$deps" "$suite")
    echo "chroot.sh: building $suite chroot ($mirror) into $dir" >&2
    picker_debootstrap "$tmp" "$suite" "$mirror" >&2
    picker_sources "$tmp" "$suite" "$mirror"
    echo "chroot.sh: installing ${pkgs[*]}" >&2
    chroot_run "$tmp" --apt-cache "$suite" -- sh -c '
        set -e
        apt-get update -q
        apt-get install -y -q --no-install-recommends "$@"
        apt-get -q check' sh "${pkgs[@]}" >&2
    # The host's CA bundle over the chroot's own: the registries may be reached through an
    # interception proxy that only the host trusts (overlay runs copy it in again each time).
    cp /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/ca-certificates.crt"
    # What was installed, for the log and for anyone comparing two chroots.
    # shellcheck disable=SC2016 # dpkg-query's format, not shell
    chroot_run "$tmp" -- dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/.picker-packages"
    date -u +%FT%TZ >"$tmp/.picker-chroot-ready"
    rm -rf --one-file-system "$dir" # a leftover without the ready mark, never a complete one
    mv -T "$tmp" "$dir"
    trap - EXIT INT TERM HUP
    echo "chroot.sh: $suite chroot ready in $((SECONDS - t0)) s" >&2
}

mkdir -p "$PICKER_CACHE/chroots"
if ((rebuild)) || [[ ! -e $ready ]]; then
    # One builder per suite at a time; the others wait, then find the chroot ready.
    exec 9>"$PICKER_CACHE/chroots/.$suite.lock"
    flock -w 3600 9 || { echo "chroot.sh: timed out waiting for the $suite lock" >&2; exit 1; }
    if ((rebuild)) || [[ ! -e $ready ]]; then
        # Half-built chroots of runs that were killed (kill -9, power loss); we hold the lock,
        # so no other run is building one now.
        for old in "$PICKER_CACHE/chroots/.build-$suite"-*; do
            [[ ! -d $old ]] || rm -rf --one-file-system "$old"
        done
        build
        # Chroots of older keys of this suite are stale now.
        for old in "$PICKER_CACHE/chroots/$suite"-*; do
            [[ $old == "$dir" || ! -d $old ]] || rm -rf --one-file-system "$old"
        done
    fi
    exec 9>&-
fi
if ((print)); then
    echo "$dir"
else
    echo "chroot.sh: $suite chroot: $dir" >&2
fi
