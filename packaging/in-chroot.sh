#!/usr/bin/env bash
# Runs a command in the cached build chroot of SUITE (made by packaging/chroot.sh if missing),
# with this clone bind-mounted at /src as the working directory.
#
#   packaging/in-chroot.sh SUITE [--host-toolchain] [--persist] [--env K=V]... -- CMD [ARG...]
#
#   --host-toolchain  bind the host's ~/.cargo and ~/.rustup (the rustup toolchain, its crate
#                     cache) and put ~/.cargo/bin first on PATH; target dir
#                     /src/target/chroot-SUITE-host. Without it: Debian's cargo of the chroot
#                     (trixie), CARGO_HOME=/var/cache/picker-build/cargo-home (crate downloads
#                     survive between runs), target dir /src/target/chroot-SUITE-debian.
#   --persist         keep what CMD changes in the chroot (apt-get install...). By default the
#                     chroot is mounted with a throw-away overlay, so it stays exactly what its
#                     cache key says and concurrent runs cannot disturb each other.
#   --env K=V         extra environment for CMD (e.g. --env CARGO_TARGET_DIR=/src/target/x).
#
# Inside the chroot, /var/cache/picker-build is the host's cache directory (build-deb.sh keeps
# cargo's home and build directory there) and apt's downloads go to its debs/SUITE. stdin, stdout
# and stderr pass through; the exit status is CMD's. proc, sys, dev and the binds live in a private
# mount namespace: they are gone when CMD ends, also after a failure or a kill. Needs root.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source=chroot-lib.sh
source "$here/chroot-lib.sh"

usage() { sed -n '5,5p' "$0" | sed 's/^#   /usage: /' >&2; exit 2; }
suite="" host=0 persist=0 extra=()
while (($#)); do
    case "$1" in
        trixie | forky) suite=$1; shift ;;
        --host-toolchain) host=1; shift ;;
        --persist) persist=1; shift ;;
        --env) extra+=(--env "$2"); shift 2 ;;
        --) shift; break ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "in-chroot.sh: unknown argument: $1" >&2; usage ;;
    esac
done
[[ -n $suite && $# -gt 0 ]] || usage

root=$("$here/chroot.sh" "$suite" --print-path)

args=(--cwd /src --bind "$repo:/src" --bind "$PICKER_CACHE:/var/cache/picker-build" --apt-cache "$suite")
((persist)) || args+=(--overlay)
base_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if ((host)); then
    home=${HOME:-/root}
    [[ -x $home/.cargo/bin/cargo ]] || { echo "in-chroot.sh: no rustup toolchain in $home/.cargo" >&2; exit 1; }
    # Bound at /root/... (the chroot's HOME), so rustup's proxies find their toolchains.
    args+=(--bind "$home/.cargo:/root/.cargo" --bind "$home/.rustup:/root/.rustup"
        --env "PATH=/root/.cargo/bin:$base_path" --env CARGO_HOME=/root/.cargo
        --env RUSTUP_HOME=/root/.rustup --env "CARGO_TARGET_DIR=/src/target/chroot-$suite-host")
else
    args+=(--env CARGO_HOME=/var/cache/picker-build/cargo-home
        --env "CARGO_TARGET_DIR=/src/target/chroot-$suite-debian")
fi
# Pass-throughs that change how a build behaves, when the caller set them.
for v in CI CARGO_TERM_COLOR RUST_BACKTRACE RUST_LOG DEB_BUILD_OPTIONS; do
    [[ -z ${!v:-} ]] || args+=(--env "$v=${!v}")
done

chroot_run "$root" "${args[@]}" "${extra[@]}" -- "$@"
