#!/usr/bin/python3
"""Virtual machines of the Vagrant box on one machine, for `make vm-test`
(docs/testing-clusters.md, "Vagrant clusters").

A Lab boots N VMs of vagrant/build-box.sh's disk (build/vagrant/box.img)
with plain qemu-system-x86_64 (TCG by default: KVM guests hang on the
machine this was written on; VM_ACCEL=kvm where KVM works), each on a
copy-on-write overlay of the box, all on one Linux bridge that lives in a
network namespace the lab makes (no route out, no NAT). A dnsmasq in the
namespace gives each VM its address by DHCP, as Vagrant's management
network would (the box configures eth0 by DHCP). The calling process enters
the namespace (setns) while the lab is up, so that ssh, python-dpr and the
test reach the VMs directly; it leaves it at teardown.

    with Lab(box, ["node1", "node2", "node3"]) as lab:
        lab["node1"].ssh("systemctl is-active ssh")
        lab["node2"].power_off()             # qemu quits: the VM is gone

Everything of a lab carries the prefix "dprvm-<id>" (namespace, work
directory under /var/tmp); teardown (also from atexit, SIGTERM and SIGHUP;
Ctrl-C ends the `with`) kills the qemu and dnsmasq processes it started
(which also die with the calling process: PR_SET_PDEATHSIG), deletes the
namespace (and so the bridge and the tap devices in it) and the directory.
`vmlab.py leftovers` lists what dead runs left, `vmlab.py cleanup-stale`
removes it. Needs root, qemu-system-x86, qemu-utils, dnsmasq-base,
openssh-client and iproute2.
"""
import atexit
import ctypes
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import dprtest  # noqa: E402  (tests/lib/dprtest.py: wait_for)

PREFIX = "dprvm"
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KEY = os.path.join(ROOT, "vagrant", "vagrant")   # Vagrant's insecure private key
BASE = os.environ.get("DPRVM_BASE", "/var/tmp")
NET = "10.77.0."
HOST_IP = NET + "1"
BRIDGE = "dprvm-br"
CLONE_NEWNET = 0x40000000
_LABS = []


class LabError(Exception):
    """The lab could not do what was asked; the message says why."""


def wait_for(what, fn, timeout=60, interval=0.5):
    return dprtest.wait_for(fn, timeout, what, interval=interval, error=LabError)


def _sh(args, check=True, timeout=60, **kw):
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise LabError("%s exited %d: %s%s" % (" ".join(args), r.returncode, r.stdout, r.stderr))
    return r


def _setns(path):
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            e = ctypes.get_errno()
            raise LabError("setns %s: %s" % (path, os.strerror(e)))
    finally:
        os.close(fd)


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the lab's process dies, even
    of SIGKILL (PR_SET_PDEATHSIG survives the exec of nice and qemu)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class VM:
    """One VM: its overlay disk, tap device, MAC, address and qemu."""

    def __init__(self, lab, index, name):
        self.lab, self.index, self.name = lab, index, name
        self.ip = NET + str(10 + index)
        self.mac = "52:54:00:77:00:%02x" % (10 + index)
        self.tap = "dprvm-tap%d" % index
        self.disk = os.path.join(lab.dir, name + ".qcow2")
        self.console = os.path.join(lab.dir, name + ".console")
        self.qmp = os.path.join(lab.dir, name + ".qmp")
        self.proc = None

    def __repr__(self):
        return "<VM %s %s>" % (self.name, self.ip)

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def boot(self):
        if not os.path.exists(self.disk):
            _sh(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", self.lab.box,
                 self.disk])
        accel = os.environ.get("VM_ACCEL", "tcg")
        cmd = ["nice", "-n", "10", "qemu-system-x86_64", "-name", "%s-%s" % (self.lab.id, self.name),
               "-machine", "q35,accel=" + accel, "-m", str(self.lab.memory), "-smp", "1",
               "-drive", "file=%s,format=qcow2,if=virtio" % self.disk,
               "-netdev", "tap,id=n0,ifname=%s,script=no,downscript=no" % self.tap,
               "-device", "virtio-net-pci,netdev=n0,mac=" + self.mac,
               "-display", "none", "-serial", "file:" + self.console,
               "-qmp", "unix:%s,server=on,wait=off" % self.qmp, "-no-reboot"]
        with open(os.path.join(self.lab.dir, self.name + ".qemu.log"), "w") as err:
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=err, preexec_fn=_die_with_parent)
        self.booted_at = time.monotonic()

    def wait_ssh(self, timeout=600):
        def up():
            if not self.running:
                raise LabError("%s: qemu exited %s; console:\n%s" % (
                    self.name, self.proc.returncode, self.console_tail()))
            return self.ssh("true", check=False, timeout=20).returncode == 0
        wait_for("ssh on %s" % self.name, up, timeout, interval=2)
        return time.monotonic() - self.booted_at

    def console_tail(self, n=40):
        try:
            with open(self.console, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def ssh(self, cmd, check=True, timeout=120, input=None):
        """Runs cmd (a shell line) as root in the VM over ssh as user vagrant."""
        args = ["ssh", "-i", self.lab.key, "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
                "-o", "ConnectTimeout=10", "-o", "BatchMode=yes",
                "vagrant@" + self.ip, "sudo", "sh", "-c", _quote(cmd)]
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=timeout, input=input)
        except subprocess.TimeoutExpired:
            if check:
                raise LabError("%s: timed out after %ss: %s" % (self.name, timeout, cmd))
            return subprocess.CompletedProcess(args, 255, "", "timeout")
        if check and r.returncode != 0:
            raise LabError("%s: %r exited %d\nstdout: %s\nstderr: %s" % (
                self.name, cmd, r.returncode, r.stdout, r.stderr))
        return r

    def copy(self, files, dest):
        _sh(["scp", "-q", "-i", self.lab.key, "-o", "StrictHostKeyChecking=no",
             "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"] + list(files) +
            ["vagrant@%s:%s" % (self.ip, dest)], timeout=300)

    def power_off(self):
        """Pulls the plug: qemu quits at once (QMP quit, else SIGKILL)."""
        if not self.running:
            return
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(self.qmp)
            for c in ("qmp_capabilities", "quit"):
                s.sendall((json.dumps({"execute": c}) + "\n").encode())
            s.recv(4096)
            s.close()
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def _quote(s):
    return "'" + s.replace("'", "'\\''") + "'"


class Lab:
    def __init__(self, box, names, memory=768):
        if not os.path.exists(box):
            raise LabError("no box disk %s (vagrant/build-box.sh)" % box)
        self.box = os.path.abspath(box)
        self.id = "%s-%s" % (PREFIX, secrets.token_hex(3))
        self.dir = os.path.join(BASE, self.id)
        self.netns = self.id
        self.memory = memory
        self.vms = [VM(self, i + 1, n) for i, n in enumerate(names)]
        self.dnsmasq = None
        self._home_ns = None
        self._up = False

    def __getitem__(self, name):
        for vm in self.vms:
            if vm.name == name:
                return vm
        raise KeyError(name)

    def __iter__(self):
        return iter(self.vms)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.teardown()

    def start(self):
        _install_handlers()
        _LABS.append(self)
        self._up = True
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "owner"), "w") as f:
            f.write(str(os.getpid()))
        self.key = os.path.join(self.dir, "key")
        shutil.copy(KEY, self.key)
        os.chmod(self.key, 0o600)
        ns = self.netns
        _sh(["ip", "netns", "add", ns])
        _sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        _sh(["ip", "-n", ns, "link", "add", BRIDGE, "type", "bridge"])
        _sh(["ip", "-n", ns, "addr", "add", HOST_IP + "/24", "dev", BRIDGE])
        _sh(["ip", "-n", ns, "link", "set", BRIDGE, "up"])
        for vm in self.vms:
            _sh(["ip", "-n", ns, "tuntap", "add", "dev", vm.tap, "mode", "tap"])
            _sh(["ip", "-n", ns, "link", "set", vm.tap, "master", BRIDGE, "up"])
        self._home_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        _setns("/run/netns/" + ns)
        hosts = []
        for vm in self.vms:
            hosts += ["--dhcp-host=%s,%s,%s" % (vm.mac, vm.ip, vm.name)]
        # DHCP only (port=0: no DNS), no router nor DNS server handed out;
        # as root (a change of user would clear PR_SET_PDEATHSIG)
        self.dnsmasq = subprocess.Popen(
            ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
             "--user=root", "--group=root",
             "--interface=" + BRIDGE, "--bind-interfaces", "--except-interface=lo",
             "--dhcp-range=%s100,%s199,255.255.255.0,12h" % (NET, NET),
             "--dhcp-option=3", "--dhcp-option=6", "--dhcp-authoritative",
             "--dhcp-leasefile=" + os.path.join(self.dir, "leases"),
             "--pid-file=", "--log-facility=" + os.path.join(self.dir, "dnsmasq.log"),
             "--log-dhcp"] + hosts,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent)
        for vm in self.vms:
            vm.boot()

    def teardown(self):
        if not self._up:
            return
        self._up = False
        for vm in self.vms:
            vm.kill()
        if self.dnsmasq is not None and self.dnsmasq.poll() is None:
            self.dnsmasq.kill()
            self.dnsmasq.wait()
        if self._home_ns is not None:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.setns(self._home_ns, CLONE_NEWNET)
            os.close(self._home_ns)
            self._home_ns = None
        _sh(["ip", "netns", "del", self.netns], check=False)
        if os.environ.get("DPRVM_KEEP") != "1":
            shutil.rmtree(self.dir, ignore_errors=True)
        if self in _LABS:
            _LABS.remove(self)


def _teardown_all():
    for lab in list(_LABS):
        lab.teardown()


def _on_signal(signum, frame):
    _teardown_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


_HANDLERS = False


def _install_handlers():
    global _HANDLERS
    if _HANDLERS:
        return
    _HANDLERS = True
    atexit.register(_teardown_all)
    for s in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(s) in (signal.SIG_DFL, None):
            signal.signal(s, _on_signal)


def leftovers():
    """(namespaces, directories) of labs whose owner process is gone."""
    def dead(d):
        try:
            with open(os.path.join(d, "owner")) as f:
                pid = int(f.read())
            os.kill(pid, 0)
            return False
        except (OSError, ValueError):
            return True
    dirs = [d for d in glob.glob(os.path.join(BASE, PREFIX + "-*")) if dead(d)]
    alive = {os.path.basename(d) for d in glob.glob(os.path.join(BASE, PREFIX + "-*"))} - \
        {os.path.basename(d) for d in dirs}
    out = _sh(["ip", "netns", "list"]).stdout.split("\n")
    nss = [line.split()[0] for line in out if line.startswith(PREFIX + "-")]
    return [n for n in nss if n not in alive], dirs


def cleanup_stale():
    nss, dirs = leftovers()
    for d in dirs:
        # processes of the dead run (qemu, dnsmasq): their arguments name files in d
        mark = (d + "/").encode()
        for p in glob.glob("/proc/[0-9]*/cmdline"):
            try:
                with open(p, "rb") as f:
                    argv = f.read().split(b"\0")
                if any(mark in a for a in argv):
                    os.kill(int(p.split("/")[2]), signal.SIGKILL)
            except (OSError, ValueError):
                continue
        shutil.rmtree(d, ignore_errors=True)
    for n in nss:
        _sh(["ip", "netns", "del", n], check=False)
    return nss, dirs


if __name__ == "__main__":
    if sys.argv[1:] == ["leftovers"]:
        print(json.dumps(leftovers()))
    elif sys.argv[1:] == ["cleanup-stale"]:
        print(json.dumps(cleanup_stale()))
    else:
        sys.exit("usage: vmlab.py leftovers|cleanup-stale")
