#!/bin/sh
# vagrant/build-box.sh - builds a Vagrant box of Debian 12 (bookworm) for the
# libvirt provider from Debian packages only, for machines that cannot
# download one (docs/testing-clusters.md, "Vagrant clusters").
#
#   sudo vagrant/build-box.sh [OUT_DIR]        (default: build/vagrant)
#
# Writes OUT_DIR/dpr-bookworm.box (a tar of box.img, metadata.json and a
# Vagrantfile: what `vagrant box add` takes) and OUT_DIR/box.img (the same
# qcow2 disk, for tests/vm/ that runs it with plain qemu). Steps:
# debootstrap of bookworm from the mirror apt uses (or $DEBIAN_MIRROR), with
# systemd, openssh-server, linux-image-cloud-amd64, GRUB, ifupdown (eth0 by
# DHCP, as Vagrant expects), sudo, python3 and the libraries the dpr-cluster
# package depends on (so that the .deb installs without a network); user
# vagrant (password vagrant, sudo without password) with Vagrant's
# well-known insecure public key; then mkfs.ext4 -d puts the tree into the
# first partition of a raw disk (no loop device, no mount), one boot of the
# disk in qemu (TCG) installs GRUB from inside the guest, and qemu-img makes
# the qcow2. Needs root for debootstrap (file owners), debootstrap,
# qemu-system-x86, qemu-utils, fdisk (sfdisk) and e2fsprogs.
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/../build/vagrant}
SIZE_MB=${BOX_SIZE_MB:-4096}
SUITE=bookworm
# the runtime dependencies of dpr-cluster and libdpr0 (dpkg-deb -f *.deb Depends)
DEB_DEPS=dbus,python3,python3-hiredis,python3-yaml,libuv1,libconfig9,libjansson4,libhiredis0.14,libavahi-client3,libnl-3-200,libnl-route-3-200,libraft2,libssl3,libsystemd0,libcap2,liblz4-1,avahi-daemon
PACKAGES=systemd,systemd-sysv,udev,openssh-server,linux-image-cloud-amd64,grub-pc-bin,grub2-common,initramfs-tools,ifupdown,isc-dhcp-client,iproute2,iputils-ping,netbase,sudo,rsync,procps,less,$DEB_DEPS

die() { echo "build-box: $*" >&2; exit 1; }

mirror() {
    if [ -n "${DEBIAN_MIRROR:-}" ]; then echo "$DEBIAN_MIRROR"; return; fi
    m=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -n1)
    [ -n "$m" ] || m=$(awk '$1 == "deb" && $2 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
    echo "${m:-http://deb.debian.org/debian}"
}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap)"
for t in debootstrap qemu-system-x86_64 qemu-img sfdisk mkfs.ext4; do
    command -v "$t" >/dev/null || die "$t is missing (make vm-deps)"
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# (not under build/: the Makefile reads every *.d there)
WORK=$(mktemp -d "${TMPDIR:-/var/tmp}/dpr-vagrant-box.XXXXXX")
cleanup() { rm -rf "$WORK"; }
trap cleanup EXIT
trap 'exit 130' INT TERM HUP
ROOT=$WORK/root
start=$(date +%s)

echo "build-box: debootstrap $SUITE from $(mirror)"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$ROOT" "$(mirror)" \
    > "$WORK/debootstrap.log" 2>&1 || { tail -n 30 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
echo "build-box: debootstrap took $(( $(date +%s) - start )) s"

# --- the system's configuration ---------------------------------------------
echo dpr-box > "$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tdpr-box\n::1\tlocalhost ip6-localhost ip6-loopback\n' > "$ROOT/etc/hosts"
echo 'LABEL=root / ext4 errors=remount-ro 0 1' > "$ROOT/etc/fstab"
# every VM of the box makes its own machine id (and so its own DHCP client id)
: > "$ROOT/etc/machine-id"
rm -f "$ROOT/var/lib/dbus/machine-id"
cat > "$ROOT/etc/network/interfaces" <<'EOT'
# eth0: DHCP (Vagrant's management network; tests/vm: the test's dnsmasq).
# Vagrant writes its private networks below.
source /etc/network/interfaces.d/*
auto lo
iface lo inet loopback
allow-hotplug eth0
iface eth0 inet dhcp
EOT
cat > "$ROOT/etc/default/grub" <<'EOT'
GRUB_DEFAULT=0
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="net.ifnames=0 console=tty0 console=ttyS0,115200"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
EOT
# the host keys are made at first boot: VMs of one box must not share them
rm -f "$ROOT"/etc/ssh/ssh_host_*
mkdir -p "$ROOT/etc/systemd/system/ssh.service.d"
# (before the unit's own `sshd -t`, which fails without keys)
printf '[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n' \
    > "$ROOT/etc/systemd/system/ssh.service.d/host-keys.conf"
echo 'UseDNS no' > "$ROOT/etc/ssh/sshd_config.d/vagrant.conf"

# user vagrant, as Vagrant's base box conventions want it
chroot "$ROOT" /usr/sbin/useradd -m -s /bin/bash -G sudo vagrant
echo 'vagrant:vagrant' | chroot "$ROOT" /usr/sbin/chpasswd
echo 'root:vagrant' | chroot "$ROOT" /usr/sbin/chpasswd
echo 'vagrant ALL=(ALL) NOPASSWD: ALL' > "$ROOT/etc/sudoers.d/vagrant"
chmod 0440 "$ROOT/etc/sudoers.d/vagrant"
install -d -m 0700 -o 1000 -g 1000 "$ROOT/home/vagrant/.ssh"
install -m 0600 -o 1000 -g 1000 "$HERE/vagrant.pub" "$ROOT/home/vagrant/.ssh/authorized_keys"

# installing GRUB happens in the guest (it sees its disk as /dev/vda): this
# runs as init of the first boot, then powers off
cat > "$ROOT/sbin/dpr-box-grub" <<'EOT'
#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin; export PATH
mount -t proc proc /proc; mount -t sysfs sys /sys
mountpoint -q /dev || mount -t devtmpfs dev /dev
grub-install --target=i386-pc /dev/vda && update-grub && echo DPR-BOX-GRUB-OK
rm -f /sbin/dpr-box-grub
sync; mount -o remount,ro / 2>/dev/null; sync
echo o > /proc/sysrq-trigger
sleep 60   # the power-off is asynchronous: init must not exit before it
EOT
chmod 0755 "$ROOT/sbin/dpr-box-grub"
chroot "$ROOT" apt-get clean
rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/log/*.log "$ROOT/debootstrap"
cp "$ROOT"/boot/vmlinuz-* "$WORK/vmlinuz"
cp "$ROOT"/boot/initrd.img-* "$WORK/initrd.img"

# --- the disk: one partition of ext4, filled without mounting ----------------
RAW=$WORK/disk.raw
truncate -s "${SIZE_MB}M" "$RAW"
echo 'start=2048, type=83, bootable' | sfdisk -q "$RAW"
mkfs.ext4 -q -F -L root -E offset=1048576 -d "$ROOT" "$RAW" "$((SIZE_MB - 1))M"
rm -rf "$ROOT"

echo "build-box: installing GRUB from inside the guest (qemu, TCG)"
timeout 600 qemu-system-x86_64 -machine q35,accel=tcg -m 768 -smp 1 -nographic -no-reboot \
    -drive file="$RAW",format=raw,if=virtio -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
    -append "root=/dev/vda1 rw console=ttyS0 panic=-1 init=/sbin/dpr-box-grub" -net none \
    < /dev/null > "$WORK/grub.log" 2>&1 || true
grep -q DPR-BOX-GRUB-OK "$WORK/grub.log" || { tail -n 40 "$WORK/grub.log" >&2; die "installing GRUB failed"; }

# --- the box -----------------------------------------------------------------
qemu-img convert -c -O qcow2 "$RAW" "$WORK/box.img"
rm -f "$RAW"
printf '{"provider": "libvirt", "format": "qcow2", "virtual_size": %d}\n' \
    $(( (SIZE_MB + 1023) / 1024 )) > "$WORK/metadata.json"
cat > "$WORK/Vagrantfile" <<'EOT'
Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
EOT
tar -C "$WORK" -czf "$WORK/dpr-bookworm.box" metadata.json Vagrantfile box.img
mv "$WORK/box.img" "$OUT/box.img"
mv "$WORK/dpr-bookworm.box" "$OUT/dpr-bookworm.box"
echo "build-box: $OUT/dpr-bookworm.box, $OUT/box.img in $(( $(date +%s) - start )) s"
