#!/usr/bin/env bash
# Builds (or reuses) the forky VM image the end-to-end tests boot: systemd, ssh, libcamera 0.7
# with its virtual camera configured, and every runtime dependency of picker's .deb preinstalled,
# so that `apt install ./picker_*.deb` works offline inside the VM.
#
#   packaging/vm/image.sh [--rebuild]
#
# Prints the image directory on stdout: disk.img (ext4, raw, 5G sparse; boot a copy-on-write
# overlay of it, see lib.sh), vmlinuz, initrd.img, id_ed25519 (root's ssh key). Cached in
# /var/cache/picker-build/vm/forky-KEY, KEY a hash of this script, the mirror and the ssh key
# (kept in /var/cache/picker-build/vm/ssh, made once); built in a temporary directory and renamed
# into place, so an interrupted build never leaves a half image; concurrent calls wait for each
# other. About 5 minutes from nothing, less when the forky build chroot already fetched the .debs.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../chroot-lib.sh
source "$here/../chroot-lib.sh"

rebuild=0
case "${1:-}" in
    "") ;;
    --rebuild) rebuild=1 ;;
    -h | --help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "image.sh: unknown argument: $1" >&2; exit 2 ;;
esac

# A bootable, ssh-reachable forky; libcamera's runtime and `cam` (libcamera-tools); picker's
# runtime dependencies (libcamera0.7, libturbojpeg0: its shlibs; systemd for the sysusers file);
# what the tests run inside the VM (curl, ip, pgrep, sudo, useradd); python3 and python3-numpy,
# the Depends and Recommends of python3-picker-client, so that it too installs offline. dracut
# builds the initrd (forky's default; it must find the virtio disk, see below).
pkgs=(systemd-sysv udev kmod dracut linux-image-amd64 openssh-server
    libcamera0.7 libcamera-tools libturbojpeg0
    ca-certificates curl iproute2 procps adduser passwd sudo
    python3 python3-numpy)

# stdout carries only the image directory (callers do VM_DIR=$(image.sh)); everything else,
# including what the tools print (mkfs.ext4 -d talks on stdout even with -q), goes to stderr.
exec 3>&1 1>&2

mirror=$(picker_mirror)
vmcache=$PICKER_CACHE/vm
mkdir -p "$vmcache"
exec 9>"$vmcache/.lock"
flock -w 3600 9 || { echo "image.sh: timed out waiting for $vmcache/.lock" >&2; exit 1; }

# root's ssh key: one for all images, so a rebuilt image takes the same key.
if [[ ! -f $vmcache/ssh/id_ed25519 ]]; then
    mkdir -p "$vmcache/ssh"
    rm -f "$vmcache/ssh/id_ed25519.new" "$vmcache/ssh/id_ed25519.new.pub"
    ssh-keygen -q -t ed25519 -N '' -C picker-vm-root -f "$vmcache/ssh/id_ed25519.new"
    mv "$vmcache/ssh/id_ed25519.new.pub" "$vmcache/ssh/id_ed25519.pub"
    mv "$vmcache/ssh/id_ed25519.new" "$vmcache/ssh/id_ed25519"
fi
key=$(picker_key "$here/image.sh" "$vmcache/ssh/id_ed25519.pub" <<<"forky $mirror")
dir=$vmcache/forky-$key

if ((rebuild)) || [[ ! -e $dir/.ready ]]; then
    t0=$SECONDS
    # Half-built images of killed runs: we hold the lock, nobody is building one now.
    for old in "$vmcache"/.build-*; do [[ ! -d $old ]] || rm -rf --one-file-system "$old"; done
    tmp=$vmcache/.build-forky-$key.$$
    rootfs=$tmp/rootfs
    log=$tmp/build.log # kept in the image directory
    mkdir -p "$tmp"
    trap 'rm -rf --one-file-system "$tmp"' EXIT
    # bash skips the EXIT trap when a signal kills it: turn the usual ones into an exit.
    trap 'exit 130' INT TERM HUP
    echo "image.sh: building the forky VM image ($mirror) into $dir" >&2
    picker_debootstrap "$rootfs" forky "$mirror" >>"$log" 2>&1 || { tail -n 30 "$log" >&2; exit 1; }
    picker_sources "$rootfs" forky "$mirror"

    # No docs, man pages or translations: a smaller image is a faster mkfs and boot.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90picker-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
EOF
    # Written before the kernel is installed, so its postinst builds the right initrd: generic
    # (dracut's host-only mode would look at the build host's disks) and with the virtio disk,
    # network and ext4 drivers, which the Debian kernel has as modules.
    mkdir -p "$rootfs/etc/dracut.conf.d"
    printf 'hostonly="no"\nadd_drivers+=" virtio_pci virtio_blk virtio_net ext4 "\n' \
        >"$rootfs/etc/dracut.conf.d/90picker-vm.conf"

    chroot_run "$rootfs" --apt-cache forky -- sh -c '
        set -e
        apt-get update -q
        apt-get install -y -q --no-install-recommends "$@"' sh "${pkgs[@]}" >>"$log" 2>&1 ||
        { tail -n 40 "$log" >&2; exit 1; }

    # libcamera's virtual pipeline handler: a real libcamera camera without hardware.
    mkdir -p "$rootfs/usr/share/libcamera/pipeline/virtual"
    cat >"$rootfs/usr/share/libcamera/pipeline/virtual/virtual.yaml" <<'EOF'
%YAML 1.1
---
"Virtual0":
  supported_formats:
    - width: 1920
      height: 1080
    - width: 512
      height: 512
  test_pattern: "bars"
  location: "CameraLocationFront"
  model: "Virtual Video Device"
EOF
    # The virtual camera allocates its frame buffers with udmabuf. Built into forky's kernel
    # (7.2: CONFIG_UDMABUF=y, /dev/udmabuf is there at boot); the line keeps it loaded should a
    # later kernel build it as a module.
    echo udmabuf >"$rootfs/etc/modules-load.d/udmabuf.conf"

    echo picker-vm >"$rootfs/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 picker-vm\n' >"$rootfs/etc/hosts"
    printf '/dev/vda / ext4 rw,errors=remount-ro 0 1\n' >"$rootfs/etc/fstab"
    # DHCP from QEMU's user network on the virtio NIC (enp0s*), its DNS forwarder.
    mkdir -p "$rootfs/etc/systemd/network"
    printf '[Match]\nName=en*\n\n[Network]\nDHCP=yes\n' >"$rootfs/etc/systemd/network/20-wired.network"
    echo 'nameserver 10.0.2.3' >"$rootfs/etc/resolv.conf"
    install -d -m 0700 "$rootfs/root/.ssh"
    install -m 0600 "$vmcache/ssh/id_ed25519.pub" "$rootfs/root/.ssh/authorized_keys"

    chroot_run "$rootfs" -- sh -c '
        set -e
        systemctl enable systemd-networkd serial-getty@ttyS0
        # Nothing in the background that competes with the tests for the emulated CPUs.
        systemctl mask apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer \
            systemd-timesyncd.service
        # Root logs in on the serial console without a password: a throw-away test VM, and
        # the console is how one looks into a VM whose ssh does not come up.
        passwd -d root
        # An ordinary user, not in group picker, for the permission tests.
        useradd --create-home --shell /bin/bash alice
        ls /boot' >>"$log" 2>&1 || { tail -n 20 "$log" >&2; exit 1; }
    # Leftovers of the chroot that must not reach the VM: policy-rc.d would stop apt from
    # (re)starting services there (apt remove picker would leave it running).
    rm -f "$rootfs/usr/sbin/policy-rc.d"

    kernels=("$rootfs"/boot/vmlinuz-*)
    ((${#kernels[@]} == 1)) || { echo "image.sh: expected one kernel, got: ${kernels[*]}" >&2; exit 1; }
    kver=${kernels[0]##*/vmlinuz-}
    [[ -f $rootfs/boot/initrd.img-$kver ]] || { echo "image.sh: no initrd for $kver" >&2; exit 1; }
    cp "$rootfs/boot/vmlinuz-$kver" "$tmp/vmlinuz"
    cp "$rootfs/boot/initrd.img-$kver" "$tmp/initrd.img"
    cp "$vmcache/ssh/id_ed25519" "$vmcache/ssh/id_ed25519.pub" "$tmp/"
    # shellcheck disable=SC2016 # dpkg-query's format, not shell
    chroot_run "$rootfs" -- dpkg-query -W -f='${Package} ${Version}\n' >"$tmp/packages.txt"
    # The file system straight from the directory: no loop mount needed.
    mkfs.ext4 -q -F -L picker-root -d "$rootfs" "$tmp/disk.img" 5G >>"$log" 2>&1
    rm -rf --one-file-system "$rootfs"
    echo "kernel $kver, $(wc -l <"$tmp/packages.txt") packages, built $(date -u +%FT%TZ)" >"$tmp/.ready"

    rm -rf --one-file-system "$dir"
    mv -T "$tmp" "$dir"
    trap - EXIT INT TERM HUP
    # Images of older keys are stale now. A VM still running on one keeps its open file.
    for old in "$vmcache"/forky-*; do
        [[ $old == "$dir" ]] || rm -rf --one-file-system "$old"
    done
    echo "image.sh: built in $((SECONDS - t0)) s: $(cat "$dir/.ready")" >&2
fi
exec 9>&-
echo "image.sh: $dir/{disk.img,vmlinuz,initrd.img,id_ed25519}"
echo "$dir" >&3
