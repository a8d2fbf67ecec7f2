#!/bin/sh
# tests/cluster/node-init.sh - the first process of a test node (see
# docs/testing-clusters.md). cluster.py starts it through
#
#   unshare --pid --mount --uts --ipc --net --cgroup --fork --kill-child \
#       node-init.sh boot STATE HOSTNAME
#
# so it runs as PID 1 of fresh namespaces. It builds the node's root file
# system - an overlay of the host's root with STATE/upper as the writable
# layer - and execs systemd in it. Nothing it mounts is visible outside the
# node's mount namespace; everything disappears with the node's last process.
#
#   node-init.sh chroot STATE CMD...   (used for provisioning, before boot)
#
# mounts the same root in a private mount namespace (the caller provides it
# with unshare --mount) and runs CMD chrooted into it, with the host's
# directory $DPRT_BIND (if set) bound at /run/dprt-bind.
set -eu

mode=$1
state=$2
shift 2
root=$state/root
upper=$state/upper
work=$state/work

mount --make-rprivate /
mkdir -p "$upper" "$work" "$root"
# No index, redirect_dir or xino: the upper layer stays a plain directory
# tree that the next boot (a "reboot") mounts again and that the host may
# read, or edit while the node is down.
mount -t overlay "dprt-root" \
    -o "lowerdir=/,upperdir=$upper,workdir=$work,index=off,redirect_dir=off,xino=off" "$root"

# Fresh kernel file systems. /sys and /proc/sys are read-only, as in
# systemd-nspawn, so the node's systemd leaves global kernel settings
# (sysctl, udev, module loading) alone; /proc/sys/net stays writable since the
# node has a network namespace of its own.
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount --bind "$root/proc/sys/net" "$root/proc/sys/net"
# A boot ID of the node's own (journalctl --list-boots tells boots apart).
cat /proc/sys/kernel/random/uuid >"$state/boot_id"
mount --bind "$state/boot_id" "$root/proc/sys/kernel/random/boot_id"
mount -o remount,bind,ro "$root/proc/sys/kernel/random/boot_id" "$root/proc/sys/kernel/random/boot_id"
mount -o remount,bind,ro "$root/proc/sys" "$root/proc/sys"
if [ -e "$root/proc/sysrq-trigger" ]; then
    mount --bind "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
    mount -o remount,bind,ro "$root/proc/sysrq-trigger" "$root/proc/sysrq-trigger"
fi
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$root/sys"
if [ "$mode" = boot ]; then
    # The cgroup namespace's root is the node's cgroup (cluster.py moved us
    # into it before unshare), so this cgroup2 mount shows only the node's
    # subtree: systemd gets a writable hierarchy of its own.
    mount -t cgroup2 -o nosuid,nodev,noexec cgroup2 "$root/sys/fs/cgroup"
fi

# A small /dev, as systemd expects in a container.
mount -t tmpfs -o mode=755,nosuid,size=4m dprt-dev "$root/dev"
for d in null zero full random urandom tty; do
    : >"$root/dev/$d"
    mount --bind "/dev/$d" "$root/dev/$d"
done
mkdir -p "$root/dev/pts" "$root/dev/shm" "$root/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=620,gid=5,nosuid,noexec devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
# The console: a pseudo-terminal of the harness ($DPRT_CONSOLE), which copies
# what systemd prints there to STATE/console.log.
: >"$root/dev/console"
if [ "$mode" = boot ] && [ -n "${DPRT_CONSOLE:-}" ]; then
    mount --bind "$DPRT_CONSOLE" "$root/dev/console"
else
    mount --bind /dev/null "$root/dev/console"
fi

mount -t tmpfs -o mode=755,nosuid,nodev dprt-run "$root/run"
mount -t tmpfs -o mode=1777,nosuid,nodev dprt-tmp "$root/tmp"

case $mode in
chroot)
    if [ -n "${DPRT_BIND:-}" ]; then
        mkdir -p "$root/run/dprt-bind"
        mount --bind "$DPRT_BIND" "$root/run/dprt-bind"
    fi
    exec chroot "$root" /usr/bin/env -i \
        PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        LANG=C.UTF-8 HOME=/root DEBIAN_FRONTEND=noninteractive "$@"
    ;;
boot) ;;
*)
    echo "node-init.sh: unknown mode $mode" >&2
    exit 2
    ;;
esac

hostname=$1
# Wait until cluster.py has moved the node's network interface in: it writes
# "go" into the FIFO STATE/go.
read -r go <"$state/go" || go=
[ "$go" = go ] || {
    echo "node-init.sh: no go from the harness ($go)" >&2
    exit 1
}
hostname "$hostname"

cd "$root"
mkdir -p .dprt-oldroot
pivot_root . .dprt-oldroot
cd /
umount -l /.dprt-oldroot
rmdir /.dprt-oldroot

# Drop capabilities a test node must not use on the shared kernel (load
# modules, set the clock, raw I/O); keep CAP_SYS_BOOT: reboot(2) in a PID
# namespace only ends that namespace's PID 1.
exec /usr/bin/env -i container=dprt-node \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
    /usr/bin/setpriv --bounding-set=-sys_module,-sys_time,-sys_rawio,-syslog,-wake_alarm,-block_suspend,-mac_admin,-mac_override,-sys_pacct \
    /lib/systemd/systemd --unit=dpr-node.target --show-status=yes
