# shellcheck shell=bash
# Shared by chroot.sh, in-chroot.sh and vm/image.sh (sourced, not run): where the caches live,
# which mirror to use, and chroot_run, which runs a command in a chroot inside a private mount
# and PID namespace. Mounts made there (proc, sys, dev, binds, an overlay) belong to that namespace
# only, so they vanish when the command ends, however it ends (error, Ctrl-C, kill -9 of the
# caller): nothing leaks onto the host and an interrupted run never leaves a busy directory behind.

# Outside the clone: CI starts from a fresh clone, and the chroots and images are large.
PICKER_CACHE=${PICKER_BUILD_CACHE:-/var/cache/picker-build}

# The mirror this host already uses (deb822 sources), so builds go where the host's apt goes.
picker_mirror() {
    local uri
    uri=$(sed -n 's/^URIs:[[:space:]]*\(.*\/debian\)\/\?[[:space:]]*$/\1/p' \
        /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n1)
    echo "${uri:-http://deb.debian.org/debian}"
}

# picker_key FILE...: short hash of the files plus stdin (extra strings such as suite, mirror).
picker_key() {
    { cat "$@"; cat; } | sha256sum | cut -c1-16
}

# picker_packages FILE SUITE: the packages FILE lists for SUITE ("all:" lines and "SUITE:" lines).
picker_packages() {
    awk -v suite="$2" '
        /^[[:space:]]*(#|$)/ { next }
        {
            split($1, s, ":"); n = split(s[1], suites, ",")
            for (i = 1; i <= n; i++) if (suites[i] == "all" || suites[i] == suite) {
                for (j = 2; j <= NF; j++) print $j
                break
            }
        }' "$1"
}

# picker_sources ROOT SUITE MIRROR: apt sources of the chroot. trixie gets its updates and
# security suites as well (point-release fixes, newer rustc-web); forky is testing, no such split.
picker_sources() {
    local root=$1 suite=$2 mirror=$3 suites=$2 sec=""
    if [[ $suite != forky && $suite != sid ]]; then
        suites="$suite $suite-updates"
        sec="${mirror%/debian}/debian-security"
    fi
    rm -f "$root/etc/apt/sources.list"
    {
        printf 'Types: deb\nURIs: %s\nSuites: %s\nComponents: main\n' "$mirror" "$suites"
        printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        if [[ -n $sec ]]; then
            printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\n' "$sec" "$suite"
            printf 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n'
        fi
    } >"$root/etc/apt/sources.list.d/debian.sources"
    # Minimal installs everywhere (also for apt-get build-dep run later by build-deb.sh), and no
    # daemons started by maintainer scripts inside a chroot.
    printf 'APT::Install-Recommends "0";\nAPT::Install-Suggests "0";\n' \
        >"$root/etc/apt/apt.conf.d/90picker-minimal"
    # The registry this host reaches may serve a frozen snapshot whose Release files have
    # expired (seen: forky "invalid since 17d"); the host's apt is configured the same way.
    printf 'Acquire::Check-Valid-Until "false";\n' >"$root/etc/apt/apt.conf.d/90picker-valid-until"
    # No translated package descriptions: megabytes of downloads nobody reads here.
    printf 'Acquire::Languages "none";\n' >"$root/etc/apt/apt.conf.d/90picker-no-translations"
    printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
    chmod 0755 "$root/usr/sbin/policy-rc.d"
}

# picker_debootstrap DIR SUITE MIRROR [EXTRA_ARGS...]: debootstrap into DIR in a private mount
# namespace (debootstrap mounts proc/sys in the target; an interrupted run must not leave them
# mounted on the host). .debs are kept in $PICKER_CACHE/debs/SUITE for the next bootstrap.
picker_debootstrap() {
    local dir=$1 suite=$2 mirror=$3 script=()
    shift 3
    # A fresh machine has no debootstrap: install it here, where it is first needed, so every
    # script that builds a chroot or an image works there too (CI starts on fresh machines).
    if ! command -v debootstrap >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
    fi
    # debootstrap of bookworm knows trixie, not forky: forky is bootstrapped like sid.
    [[ -e /usr/share/debootstrap/scripts/$suite ]] || script=(/usr/share/debootstrap/scripts/sid)
    mkdir -p "$PICKER_CACHE/debs/$suite/partial"
    # Under the download cache's lock: two debootstraps of one suite would race on its files.
    flock -w 1800 "$PICKER_CACHE/debs/$suite.lock" \
        unshare --mount --propagation private --fork --kill-child -- \
        debootstrap --variant=minbase --components=main --cache-dir="$PICKER_CACHE/debs/$suite" \
        "$@" "$suite" "$dir" "$mirror" "${script[@]}"
}

# chroot_run [--overlay] [--apt-cache SUITE] [--bind SRC:DST]... [--env K=V]... [--cwd DIR] ROOT -- CMD...
#   --overlay  the command's writes go to a throw-away layer (overlayfs), ROOT stays as it was
#   --apt-cache  apt's /var/cache/apt/archives shows the shared download cache
#              $PICKER_CACHE/debs/SUITE, so a package is fetched once for all chroots and images
#              of the suite. It is an overlay (apt's lock file and partial downloads private to
#              the run, so concurrent runs never wait on each other or clash); the .debs the run
#              fetched are moved into the cache afterwards.
#   --bind     bind-mount host SRC at DST inside the chroot
#   --env      environment of CMD (which otherwise gets only HOME, PATH, LANG, TERM, proxies)
#   --cwd      working directory of CMD inside the chroot (default /)
# stdin, stdout and stderr pass through; the exit status is CMD's.
chroot_run() {
    local overlay=0 cwd=/ root tmp="" rc=0 v apt=""
    local binds=() envs=(HOME=/root LANG=C.UTF-8 "TERM=${TERM:-dumb}" DEBIAN_FRONTEND=noninteractive
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
    # Proxies, if the host needs them to reach the registries.
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        [[ -n ${!v:-} ]] && envs+=("$v=${!v}")
    done
    while (($#)); do
        case "$1" in
            --overlay) overlay=1; shift ;;
            --apt-cache) apt=$PICKER_CACHE/debs/$2; shift 2 ;;
            --bind) binds+=("$2"); shift 2 ;;
            --env) envs+=("$2"); shift 2 ;;
            --cwd) cwd=$2; shift 2 ;;
            --) shift; break ;;
            *) root=$1; shift ;;
        esac
    done
    [[ -d ${root:-} ]] || { echo "chroot_run: no chroot at '${root:-}'" >&2; return 2; }
    # Upper layers (and overlayfs work dirs) on the cache's file system, not in a tmpfs.
    if ((overlay)) || [[ -n $apt ]]; then
        mkdir -p "$PICKER_CACHE/tmp"
        # Layers of runs killed with -9 (no cleanup ran) a day or more ago.
        find "$PICKER_CACHE/tmp" -mindepth 1 -maxdepth 1 -name 'overlay.*' -mmin +1440 \
            -exec rm -rf --one-file-system {} + 2>/dev/null || true
        tmp=$(mktemp -d "$PICKER_CACHE/tmp/overlay.XXXXXX")
    fi
    [[ -z $apt ]] || mkdir -p "$apt/partial"
    # --kill-child: if this shell is killed, the whole process tree in the namespace dies with it.
    unshare --mount --propagation private --pid --fork --kill-child -- \
        bash -c "$_chroot_setup" chroot-setup "$root" "$tmp" "$overlay" "$cwd" "$apt" \
        "${#binds[@]}" "${binds[@]}" "${#envs[@]}" "${envs[@]}" "$@" || rc=$?
    # The overlays' mounts died with the namespace; their upper layers are plain files now.
    if [[ -n $tmp ]]; then
        if [[ -n $apt && -d $tmp/apt-upper ]]; then
            find "$tmp/apt-upper" -maxdepth 1 -type f -name '*.deb' -exec mv -n -t "$apt" {} + || true
        fi
        rm -rf --one-file-system "$tmp"
    fi
    return "$rc"
}

# Runs as PID 1 of the new namespaces: mounts, then the command (as a child, not exec, so that
# Ctrl-C, which PID 1 would ignore, still reaches it).
# shellcheck disable=SC2016 # expanded by the inner bash
_chroot_setup='
set -euo pipefail
root=$1 tmp=$2 overlay=$3 cwd=$4 apt=$5; shift 5
binds=("${@:2:$1}"); shift $(($1 + 1))
envs=("${@:2:$1}"); shift $(($1 + 1))
if ((overlay)); then
    mkdir -p "$tmp/upper" "$tmp/work" "$tmp/merged"
    mount -t overlay overlay -o "lowerdir=$root,upperdir=$tmp/upper,workdir=$tmp/work" "$tmp/merged"
    root=$tmp/merged
fi
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
# DNS and the CA bundle of the host: cargo and apt must reach the registries the host reaches.
cp -L /etc/resolv.conf "$root/etc/resolv.conf" 2>/dev/null || true
# The bundle is copied, not bind-mounted: the postinst of ca-certificates renames a new bundle onto
# that path (EBUSY on a mount point). Only into the throw-away layer: a persistent chroot gets
# the host bundle once, after its packages are installed (chroot.sh).
if ((overlay)) && [[ -f /etc/ssl/certs/ca-certificates.crt ]]; then
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
for b in "${binds[@]}"; do
    src=${b%%:*} dst=${b#*:}
    if [[ -d $src ]]; then mkdir -p "$root$dst"; else mkdir -p "$(dirname "$root$dst")"; touch "$root$dst"; fi
    mount --bind "$src" "$root$dst"
done
if [[ -n $apt ]]; then
    mkdir -p "$tmp/apt-upper" "$tmp/apt-work"
    mount -t overlay overlay -o "lowerdir=$apt,upperdir=$tmp/apt-upper,workdir=$tmp/apt-work" \
        "$root/var/cache/apt/archives"
fi
rc=0
chroot "$root" /usr/bin/env -i "${envs[@]}" /bin/sh -c '"'"'cd "$1" && shift && exec "$@"'"'"' sh "$cwd" "$@" || rc=$?
exit "$rc"
'
