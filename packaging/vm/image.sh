#!/usr/bin/env bash
# Builds (or reuses) the forky VM image the end-to-end tests boot: systemd, ssh, libcamera
# 0.7 with its virtual camera configured, and every runtime dependency of picker's .deb
# preinstalled so that `apt install ./picker_*.deb` works offline inside the VM.
#
#   packaging/vm/image.sh        prints the image directory (disk.img, vmlinuz, initrd.img, id_ed25519)
#
# Cached under /var/cache/picker-build/vm-<hash of this script>, built in a temp dir and
# renamed into place, so an interrupted build never leaves a half image. Takes ~5 minutes.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache_root=${PICKER_CACHE:-/var/cache/picker-build}
key=$(sha256sum "$here/image.sh" | cut -c1-12)
dir=$cache_root/vm-forky-$key
if [[ -f $dir/disk.img && -f $dir/vmlinuz && -f $dir/initrd.img ]]; then
    echo "$dir"
    exit 0
fi

mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
mirror=${mirror:-http://deb.debian.org/debian}
command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
command -v mkfs.ext4 >/dev/null || apt-get install -y -qq e2fsprogs >/dev/null

mkdir -p "$cache_root"
tmp=$(mktemp -d "$cache_root/.vm-build.XXXXXX")
cleanup() {
    for m in proc sys dev; do umount -l "$tmp/rootfs/$m" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
rootfs=$tmp/rootfs

# Runtime dependencies of picker (libcamera0.7, libturbojpeg0 and what they pull in), the
# tools the tests use inside the VM (curl, ss), and a bootable, ssh-reachable system.
pkgs=systemd-sysv,udev,kmod,dracut,linux-image-amd64,openssh-server,iproute2,curl,ca-certificates,passwd,procps,libcamera0.7,libturbojpeg0,libcamera-tools
echo "vm image: debootstrap forky ($mirror) into $rootfs" >&2
debootstrap --variant=minbase --include="$pkgs" forky "$rootfs" "$mirror" \
    /usr/share/debootstrap/scripts/sid >"$tmp/debootstrap.log" 2>&1 || {
    tail -30 "$tmp/debootstrap.log" >&2
    exit 1
}

# libcamera's virtual pipeline handler: a real libcamera camera without hardware.
mkdir -p "$rootfs/usr/share/libcamera/pipeline/virtual"
cat >"$rootfs/usr/share/libcamera/pipeline/virtual/virtual.yaml" <<'YAML'
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
YAML
# The virtual camera allocates frame buffers from udmabuf.
echo udmabuf >"$rootfs/etc/modules-load.d/udmabuf.conf"

echo picker-vm >"$rootfs/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 picker-vm\n' >"$rootfs/etc/hosts"
mkdir -p "$rootfs/etc/systemd/network"
printf '[Match]\nName=en*\n[Network]\nDHCP=yes\n' >"$rootfs/etc/systemd/network/20-wired.network"
ln -sf /usr/lib/systemd/system/systemd-networkd.service \
    "$rootfs/etc/systemd/system/multi-user.target.wants/systemd-networkd.service"
ln -sf /usr/lib/systemd/system/serial-getty@.service \
    "$rootfs/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service" 2>/dev/null || true
printf '/dev/vda / ext4 rw 0 1\n' >"$rootfs/etc/fstab"

ssh-keygen -q -t ed25519 -N '' -f "$tmp/id_ed25519"
install -d -m 0700 "$rootfs/root/.ssh"
install -m 0600 "$tmp/id_ed25519.pub" "$rootfs/root/.ssh/authorized_keys"
# An ordinary user, not in group picker, for the permission tests.
chroot "$rootfs" useradd --create-home alice

# The initrd must find a virtio root disk.
kver=$(ls "$rootfs/lib/modules" | head -1)
mount -t proc proc "$rootfs/proc"
mount -t sysfs sys "$rootfs/sys"
mount --bind /dev "$rootfs/dev"
chroot "$rootfs" dracut --force --no-hostonly --add-drivers "virtio_blk virtio_pci virtio_net ext4" \
    "/boot/initrd.img-$kver" "$kver" >"$tmp/dracut.log" 2>&1 || {
    tail -20 "$tmp/dracut.log" >&2
    exit 1
}
for m in proc sys dev; do umount -l "$rootfs/$m"; done
cp "$rootfs/boot/vmlinuz-$kver" "$tmp/vmlinuz"
cp "$rootfs/boot/initrd.img-$kver" "$tmp/initrd.img"
chroot "$rootfs" apt-get clean
mkfs.ext4 -q -F -d "$rootfs" "$tmp/disk.img" 4G
rm -rf "$rootfs"

mkdir -p "$(dirname "$dir")"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
echo "vm image: built $dir" >&2
echo "$dir"
