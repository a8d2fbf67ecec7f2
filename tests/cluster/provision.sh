#!/bin/sh
# tests/cluster/provision.sh - make a machine a DPR cluster node.
#
# Runs as root inside the node's root file system: in a test node before it
# boots (cluster.py runs it chrooted into the node's overlay root), or in a
# Vagrant VM (vagrant/ runs it as the provisioner). It only writes files and
# unit symlinks, so it works the same with or without a running systemd.
#
#   provision.sh [--node] [--stage DIR] [--src DIR] [--hostname NAME]
#                [--machine-id ID] [--cluster NAME] [--no-apt]
#
#   --node          a test node of tests/cluster/ (booted with
#                   --unit=dpr-node.target): never runs apt-get, does not touch
#                   multi-user.target, does not start anything.
#   --stage DIR     copy DIR, a tree made by `make install DESTDIR=DIR`, to /.
#   --src DIR       build and install from a source tree: make -C DIR install.
#   --hostname, --machine-id   write /etc/hostname, /etc/machine-id.
#   --cluster NAME  the cluster name published in TXT records (default dprt).
#   --no-apt        fail instead of installing missing packages.
#
# What it sets up:
#   dpr-node.target         the node's minimal boot target: dbus, avahi-daemon,
#                           dpr-test-echo and, once installed, dpr-agent.
#   dpr-test-echo.service   a placeholder service of ours: a TCP echo server on
#                           port 7777, published over mDNS as _dpr-test-echo._tcp.
# Idempotent: running it again gives the same result.
set -eu

node=0
stage=
src=
hostname=
machine_id=
cluster=dprt
apt=1
while [ $# -gt 0 ]; do
    case $1 in
    --node) node=1 apt=0 ;;
    --stage) stage=$2; shift ;;
    --src) src=$2; shift ;;
    --hostname) hostname=$2; shift ;;
    --machine-id) machine_id=$2; shift ;;
    --cluster) cluster=$2; shift ;;
    --no-apt) apt=0 ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "provision.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

say() { echo "provision: $*"; }

# --- packages ----------------------------------------------------------------
# Runtime packages of a node. (Build dependencies come from `make deps`.)
PACKAGES="systemd dbus avahi-daemon avahi-utils iproute2 python3"
missing=
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    if [ "$apt" = 1 ]; then
        say "installing$missing"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        # shellcheck disable=SC2086 # a list of package names
        apt-get install -y --no-install-recommends $missing
    else
        echo "provision.sh: missing packages:$missing (install them on the host: apt-get install$missing)" >&2
        exit 1
    fi
fi

# --- identity ----------------------------------------------------------------
if [ -n "$hostname" ]; then
    echo "$hostname" >/etc/hostname
    if [ "$node" = 0 ] && [ -d /run/systemd/system ]; then
        hostnamectl set-hostname "$hostname" || true
    fi
fi
if [ -n "$machine_id" ]; then
    echo "$machine_id" >/etc/machine-id
fi

# --- the build ---------------------------------------------------------------
if [ -n "$stage" ]; then
    say "installing the build from $stage"
    # tar, not cp -a: existing directories (/, /usr, ...) keep their owner
    # and mode whatever those of the staging tree are.
    tar -C "$stage" -cf - . | tar -C / -xf - --no-overwrite-dir --no-same-owner
fi
if [ -n "$src" ]; then
    say "building and installing from $src"
    make -C "$src" install
fi
if [ -d /usr/local/lib ]; then
    ldconfig
fi
# the users and groups (make install's sysusers.d file, the package's postinst
# does the same): the dpr group, and the dpr-cachestore user the cache-store
# instances run as
for f in /usr/local/lib/sysusers.d/dpr-cluster.conf /usr/lib/sysusers.d/dpr-cluster.conf; do
    if [ -f "$f" ]; then
        systemd-sysusers "$f"
    fi
done
# the journal's message catalog (make install's dpr-cluster.catalog)
if ls /usr/local/lib/systemd/catalog/*.catalog >/dev/null 2>&1; then
    journalctl --update-catalog
fi

# --- units and files of ours -------------------------------------------------
mkdir -p /etc/systemd/system /usr/local/libexec /etc/avahi/services

cat >/etc/systemd/system/dpr-node.target <<'EOF'
# Installed by tests/cluster/provision.sh.
[Unit]
Description=DPR cluster node (minimal: dbus, avahi-daemon, dpr-agent)
Requires=basic.target
Wants=dbus.service avahi-daemon.service
After=basic.target dbus.service avahi-daemon.service
AllowIsolate=yes
EOF

cat >/usr/local/libexec/dpr-test-echo <<'EOF'
#!/usr/bin/python3
"""dpr-test-echo: a TCP echo server on [::]:PORT (placeholder service of the
DPR test nodes). Tells systemd READY=1 once it listens; exits on SIGTERM."""
import os
import signal
import socket
import socketserver
import sys


class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        for line in self.rfile:
            self.wfile.write(line)


class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
    daemon_threads = True


def notify(msg):
    path = os.environ.get("NOTIFY_SOCKET")
    if path:
        if path.startswith("@"):
            path = "\0" + path[1:]
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(msg.encode(), path)


port = int(sys.argv[1]) if len(sys.argv) > 1 else 7777
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
with Server(("::", port), Echo) as srv:
    notify("READY=1\nSTATUS=listening on port %d" % port)
    srv.serve_forever()
EOF
chmod 0755 /usr/local/libexec/dpr-test-echo

cat >/etc/systemd/system/dpr-test-echo.service <<'EOF'
# Installed by tests/cluster/provision.sh: a placeholder service of ours.
[Unit]
Description=DPR test echo server (placeholder for dpr-agent)
After=network.target

[Service]
Type=notify
ExecStart=/usr/local/libexec/dpr-test-echo 7777
Restart=on-failure
RestartSec=200ms

[Install]
WantedBy=dpr-node.target
EOF

cat >/etc/avahi/services/dpr-test-echo.service <<EOF
<?xml version="1.0" standalone='no'?>
<!DOCTYPE service-group SYSTEM "avahi-service.dtd">
<!-- Installed by tests/cluster/provision.sh -->
<service-group>
  <name replace-wildcards="yes">dpr-test-echo on %h</name>
  <service>
    <type>_dpr-test-echo._tcp</type>
    <port>7777</port>
    <txt-record>cluster=$cluster</txt-record>
  </service>
</service-group>
EOF

# A test node sees the host's /etc: a host that masked dbus or avahi (say, to
# keep avahi off its own network) must not mask them in the node.
if [ "$node" = 1 ]; then
    for u in dbus.service dbus.socket avahi-daemon.service avahi-daemon.socket; do
        if [ "$(readlink "/etc/systemd/system/$u" 2>/dev/null)" = /dev/null ]; then
            rm -f "/etc/systemd/system/$u"
        fi
    done
fi

# The node target wants our services (dpr-agent once `make install` ships it).
mkdir -p /etc/systemd/system/dpr-node.target.wants
wants="dpr-test-echo.service"
for dir in /etc/systemd/system /usr/local/lib/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    if [ -e "$dir/dpr-agent.service" ]; then
        wants="$wants dpr-agent.service"
        break
    fi
done
for u in $wants; do
    for dir in /etc/systemd/system /usr/local/lib/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
        if [ -e "$dir/$u" ]; then
            ln -sfn "$dir/$u" "/etc/systemd/system/dpr-node.target.wants/$u"
            break
        fi
    done
done

if [ "$node" = 1 ]; then
    # A test node boots dpr-node.target (cluster.py also passes --unit=).
    ln -sfn /etc/systemd/system/dpr-node.target /etc/systemd/system/default.target
else
    # A VM boots its normal default target; make it include ours.
    mkdir -p /etc/systemd/system/multi-user.target.wants
    ln -sfn /etc/systemd/system/dpr-node.target /etc/systemd/system/multi-user.target.wants/dpr-node.target
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload
        systemctl restart avahi-daemon.service || true
        systemctl start dpr-node.target
    fi
fi
say "done (units: dpr-node.target, $wants)"
