#!/usr/bin/python3
"""Real systemd nodes on one machine, for tests (docs/testing-clusters.md).

A node is systemd running as PID 1 of its own PID, mount, UTS, IPC, network
and cgroup namespaces, over an overlay of the host's root file system (upper
layer on disk or on a tmpfs, private /run and /tmp, its own /etc/hostname and
/etc/machine-id). It boots dpr-node.target: dbus, avahi-daemon and our
services. Nodes are joined by a Linux bridge that lives in a network namespace
of the cluster, through veth pairs; their addresses exist only inside these
namespaces (no route out, no NAT), so nothing reaches the host's network.

    with Cluster(2) as c:                      # boots node1, node2
        c[0].run("systemctl is-active dbus")
        c[1].power_cut(); c[1].boot()          # power cut, then boot again
                                               # on the same upper layer
Everything the harness creates carries the prefix "dprt-<id>" (network
namespace, cgroup, mounts, state directory under /var/tmp), so that
`cluster.py cleanup-stale` finds and removes what a killed run left behind.
Node processes die with the harness even on SIGKILL (PR_SET_PDEATHSIG on the
namespace launcher); atexit and SIGTERM/SIGHUP handlers tear clusters down.

Needs root, util-linux (unshare, nsenter, setpriv), iproute2, systemd, dbus,
avahi-daemon, avahi-utils and overlayfs + cgroup2 in the kernel.

Command line (as root):
    cluster.py up [N]              boot N nodes, print how to enter them, wait
                                   for Ctrl-C, tear down
    cluster.py ls                  clusters of ours on this machine
    cluster.py enter ID NODE [CMD] a shell (or CMD) inside a running node
    cluster.py leftovers           everything of ours that exists right now
    cluster.py cleanup-stale [--all]
                                   remove what dead runs left behind (--all:
                                   also clusters whose owner is still alive)
"""

import atexit
import glob
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib"))
import dprtest  # noqa: E402  (tests/lib/dprtest.py: wait_for)

PREFIX = "dprt"
HERE = os.path.dirname(os.path.abspath(__file__))
NODE_INIT = os.path.join(HERE, "node-init.sh")
PROVISION = os.path.join(HERE, "provision.sh")
BASE = os.environ.get("DPRT_BASE", "/var/tmp")
NODE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
BRIDGE = PREFIX + "-br"
# IPv4 and IPv6 (ULA fd64:7072:7400::/48, "dprt" in ASCII) prefixes used on
# the bridge. They exist only inside the cluster's namespaces; every cluster
# has its own isolated bridge, so clusters may reuse them.
NET4 = "10.213.0."
NET6 = "fd64:7072:7400::"
REQUIRED_TOOLS = ["unshare", "nsenter", "setpriv", "ip", "mount", "umount",
                  "chroot", "pivot_root"]
REQUIRED_FILES = ["/lib/systemd/systemd", "/usr/bin/dbus-daemon",
                  "/usr/sbin/avahi-daemon", "/usr/bin/avahi-browse",
                  "/usr/bin/systemctl"]


class HarnessError(Exception):
    """The harness could not do what was asked; the message says why."""


class NodeCommandError(HarnessError):
    def __init__(self, node, cmd, result):
        self.node, self.cmd, self.result = node, cmd, result
        super().__init__("%s: %r exited %s\nstdout: %s\nstderr: %s" % (
            node, cmd, result.returncode, result.stdout.strip(), result.stderr.strip()))


# --- helpers -----------------------------------------------------------------

def wait_for(what, fn, timeout=20, interval=0.2):
    """Poll fn() until it returns something true and return that; raise
    HarnessError after timeout seconds. (Used by the tests and examples/demo.py;
    dprtest.wait_for with the description first and the harness's error.)"""
    return dprtest.wait_for(fn, timeout, what, interval=interval, error=HarnessError)


def _clean_env(extra=None):
    env = {"PATH": NODE_PATH, "LANG": "C.UTF-8", "HOME": "/root",
           "TERM": os.environ.get("TERM", "dumb"), "SYSTEMD_PAGER": "",
           "SYSTEMD_COLORS": "0"}
    env.update(extra or {})
    return env


def _sh(args, check=True, timeout=60, input=None, env=None):
    """Run a host command; raise HarnessError with its output on failure."""
    try:
        r = subprocess.run(args, input=input, capture_output=True, text=True,
                           timeout=timeout, env=env or _clean_env())
    except subprocess.TimeoutExpired as e:
        raise HarnessError("timed out after %ss: %s" % (timeout, shlex.join(args))) from e
    if check and r.returncode != 0:
        raise HarnessError("%s exited %d: %s%s" % (shlex.join(args), r.returncode,
                                                  r.stdout, r.stderr))
    return r


def _write(path, data):
    with open(path, "w") as f:
        f.write(data)


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return default


def _proc_starttime(pid):
    stat = _read("/proc/%d/stat" % pid)
    if stat is None:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_alive(pid, starttime=None):
    """pid exists and is not a zombie (and started at starttime, if given)."""
    stat = _read("/proc/%d/stat" % pid)
    if stat is None:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return False
    return starttime is None or fields[19] == starttime


def _mounts():
    """(mount point, source, fstype) from this process's mountinfo."""
    out = []
    for line in (_read("/proc/self/mountinfo") or "").splitlines():
        left, right = line.split(" - ", 1)
        point = left.split()[4].encode().decode("unicode_escape")
        fstype, source = right.split()[:2]
        out.append((point, source, fstype))
    return out


def cgroup2_root():
    """Where the unified (v2) cgroup hierarchy is mounted; mounts it at
    /run/dprt-cgroup2 when the host has none (cgroup v1 only)."""
    points = [p for p, _, t in _mounts() if t == "cgroup2"]
    for pref in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if pref in points:
            return pref
    if points:
        return points[0]
    own = "/run/%s-cgroup2" % PREFIX
    os.makedirs(own, exist_ok=True)
    _sh(["mount", "-t", "cgroup2", PREFIX + "-cgroup2", own])
    return own


def _own_cgroup():
    for line in (_read("/proc/self/cgroup") or "").splitlines():
        if line.startswith("0::"):
            return line[3:]
    return "/"


def _cgroup_pids(path):
    pids = []
    for dirpath, _, files in os.walk(path):
        if "cgroup.procs" in files:
            for s in (_read(os.path.join(dirpath, "cgroup.procs")) or "").split():
                pids.append(int(s))
    return pids


def _cgroup_kill(path, timeout=10):
    """SIGKILL every process in a cgroup subtree, wait, remove the subtree."""
    if not os.path.isdir(path):
        return
    deadline = time.monotonic() + timeout
    while True:
        pids = _cgroup_pids(path)
        if not pids:
            break
        if os.path.exists(os.path.join(path, "cgroup.kill")):
            try:
                _write(os.path.join(path, "cgroup.kill"), "1")
            except OSError:
                pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() > deadline:
            raise HarnessError("processes survive SIGKILL in %s: %s" % (path, pids))
        time.sleep(0.05)
    for dirpath, _, _ in sorted(os.walk(path), key=lambda w: -w[0].count("/")):
        for _ in range(100):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:  # EBUSY until the last zombie is reaped
                time.sleep(0.05)
        else:
            raise HarnessError("cannot remove cgroup %s" % dirpath)


def preflight():
    """Raise HarnessError naming what is missing for real systemd nodes."""
    problems = []
    if os.geteuid() != 0:
        problems.append("must run as root")
    for t in REQUIRED_TOOLS:
        if not shutil.which(t, path=NODE_PATH):
            problems.append("missing command %s (util-linux / iproute2)" % t)
    for f in REQUIRED_FILES:
        if not os.path.exists(f):
            problems.append("missing %s (apt-get install systemd dbus avahi-daemon avahi-utils)" % f)
    fs = _read("/proc/filesystems") or ""
    if "overlay" not in fs and os.geteuid() == 0:
        subprocess.run(["modprobe", "overlay"], capture_output=True)
        fs = _read("/proc/filesystems") or ""
    for need in ("overlay", "cgroup2"):
        if need not in fs:
            problems.append("kernel lacks the %s file system" % need)
    for sub in ("/usr", "/etc", "/var"):
        # The overlay's lower layer is the root file system alone.
        if any(p == sub for p, _, _ in _mounts()):
            problems.append("%s is a separate mount; the node overlay only sees the root file system" % sub)
    if problems:
        raise HarnessError("real systemd nodes unavailable: " + "; ".join(problems))


# --- nodes -------------------------------------------------------------------

class Node:
    """One systemd node. Addresses: ip4 (10.213.0.N/24), ip6 (ULA /64)."""

    def __init__(self, cluster, index, name):
        if len(name) > 9 or not name.replace("-", "").isalnum() or name == "sup":
            raise HarnessError("bad node name %r (<= 9 alphanumerics, not 'sup')" % name)
        self.cluster = cluster
        self.index = index
        self.name = name
        self.hostname = name
        self.ip4 = NET4 + str(index)
        self.ip6 = NET6 + str(index)
        self.mac = "02:64:70:72:%02x:%02x" % (index >> 8, index & 0xff)
        self.dir = os.path.join(cluster.dir, name)
        self.upper = os.path.join(self.dir, "upper")
        self.cgroup = os.path.join(cluster.cgroup, name)
        self.veth = "%s-%s" % (PREFIX, name)          # bridge side, in the cluster netns
        self.launcher = None                           # Popen: setpriv -> unshare
        self.pid1 = None                               # host PID of the node's systemd
        self.boots = 0
        self.boot_seconds = None
        self.failed_units = ""
        self.provisioned = False

    def __repr__(self):
        return "<Node %s/%s pid1=%s>" % (self.cluster.id, self.name, self.pid1)

    def __str__(self):
        return "%s/%s" % (self.cluster.id, self.name)

    # -- life cycle --

    def provision(self, stage=None, extra_args=()):
        """Run provision.sh chrooted into the node's root (node not running)."""
        if self.running:
            raise HarnessError("%s: provision before boot (or after power_cut)" % self)
        share = self.cluster.share
        args = ["/bin/sh", "/run/dprt-bind/provision.sh", "--node",
                "--hostname", self.hostname, "--machine-id", self.machine_id,
                "--cluster", self.cluster.id]
        if stage:
            args += ["--stage", "/run/dprt-bind/stage"]
        args += list(extra_args)
        r = _sh(["unshare", "--mount", "--fork", "--", "/bin/sh", NODE_INIT, "chroot", self.dir]
                + args, env=_clean_env({"DPRT_BIND": share}), timeout=300, check=False)
        if r.returncode != 0:
            raise HarnessError("%s: provisioning failed (%d):\n%s%s" % (
                self, r.returncode, r.stdout, r.stderr))
        self.provisioned = True
        return r.stdout

    @property
    def machine_id(self):
        path = os.path.join(self.dir, "machine-id")
        mid = _read(path)
        if not mid:
            mid = uuid.uuid4().hex
            os.makedirs(self.dir, exist_ok=True)
            _write(path, mid + "\n")
        return mid.strip()

    @property
    def running(self):
        return self.launcher is not None and self.launcher.poll() is None

    def start(self):
        """Launch the node (returns once systemd is exec'd; see wait_booted)."""
        if self.running:
            raise HarnessError("%s is already running" % self)
        if not self.provisioned:
            self.provision(self.cluster.stage, self.cluster.provision_args)
        c = self.cluster
        _cgroup_kill(self.cgroup)            # what a previous boot left
        os.makedirs(self.cgroup)
        fifo = os.path.join(self.dir, "go")
        if os.path.exists(fifo):
            os.unlink(fifo)
        os.mkfifo(fifo, 0o600)
        launch = ["/bin/sh", "-c", 'echo $$ >"$0/cgroup.procs" && exec "$@"', self.cgroup,
                  "setpriv", "--pdeathsig", "KILL",
                  "unshare", "--pid", "--mount", "--uts", "--ipc", "--net", "--cgroup",
                  "--fork", "--kill-child=SIGKILL", "--",
                  "/bin/sh", NODE_INIT, "boot", self.dir, self.hostname]
        self._t0 = time.monotonic()
        self._open_console()
        log = open(os.path.join(self.dir, "init.log"), "ab")
        self.launcher = subprocess.Popen(
            launch, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=_clean_env({"DPRT_CONSOLE": os.ttyname(self._console[1])}),
            start_new_session=True)
        log.close()
        try:
            child = self._wait_child()
            # The launcher (unshare, waiting for the node) leaves the node's
            # cgroup, so that only the node's processes are in it.
            _write(os.path.join(c.cgroup, "sup", "cgroup.procs"), str(self.launcher.pid))
            self._plug_network(child)
            self._go(fifo)
        except BaseException:
            self._kill()
            raise
        self.pid1 = child
        _write(os.path.join(self.dir, "pid1"), "%d\n" % child)
        self.boots += 1

    def _go(self, fifo, timeout=10):
        """Write "go" into the FIFO node-init.sh waits on (without blocking
        forever if it died before opening it)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                break
            except OSError:            # ENXIO: no reader yet
                if self.launcher.poll() is not None or time.monotonic() > deadline:
                    raise HarnessError("%s: node-init.sh did not wait for the network:\n%s" % (
                        self, self.init_log()))
                time.sleep(0.01)
        try:
            os.write(fd, b"go\n")
        finally:
            os.close(fd)

    def _open_console(self):
        """A pty for the node's /dev/console; a thread copies it to console.log."""
        master, slave = os.openpty()
        self._console = (master, slave)
        out = open(os.path.join(self.dir, "console.log"), "ab", buffering=0)

        def pump():  # owns master: reads until every slave is closed (EIO)
            try:
                while True:
                    try:
                        data = os.read(master, 65536)
                    except OSError:
                        break
                    if not data:
                        break
                    out.write(data.replace(b"\r\n", b"\n"))
            finally:
                out.close()
                os.close(master)

        threading.Thread(target=pump, name="console-" + self.name, daemon=True).start()

    def _close_console(self):
        """Close our slave end; with the node gone the pump thread ends."""
        console, self._console = getattr(self, "_console", None), None
        if console:
            os.close(console[1])

    def _wait_child(self, timeout=10):
        path = "/proc/%d/task/%d/children" % (self.launcher.pid, self.launcher.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.launcher.poll() is not None:
                raise HarnessError("%s: launcher exited %s:\n%s" % (
                    self, self.launcher.returncode, self.init_log()))
            kids = (_read(path) or "").split()
            try:
                if kids and os.readlink("/proc/%s/ns/pid" % kids[0]) != os.readlink("/proc/self/ns/pid"):
                    return int(kids[0])
            except OSError:
                pass
            time.sleep(0.01)
        raise HarnessError("%s: namespace launcher did not start" % self)

    def _plug_network(self, child):
        ns = self.cluster.netns
        peer = self.veth + "-p"
        _sh(["ip", "-n", ns, "link", "del", self.veth], check=False)
        _sh(["ip", "-n", ns, "link", "add", self.veth, "type", "veth", "peer", "name", peer])
        _sh(["ip", "-n", ns, "link", "set", peer, "address", self.mac, "netns", str(child)])
        _sh(["ip", "-n", ns, "link", "set", self.veth, "master", BRIDGE, "up"])
        batch = "\n".join([
            "link set lo up",
            "link set %s name eth0" % peer,
            "addr add %s/24 dev eth0" % self.ip4,
            "addr add %s/64 dev eth0 nodad" % self.ip6,
            "link set eth0 up",
        ]) + "\n"
        _sh(["nsenter", "--net=/proc/%d/ns/net" % child, "ip", "-b", "-"], input=batch)

    def wait_booted(self, timeout=60):
        """Wait until `systemctl is-system-running --wait` answers; return
        the state: "running", or "degraded" with the failed units in
        self.failed_units. Raise with the console's tail otherwise."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            if not self.running:
                raise HarnessError("%s died while booting:\n%s\n%s" % (
                    self, self.init_log(), self.console()[-4000:]))
            try:
                r = self.run("systemctl is-system-running --wait", check=False,
                             timeout=max(1, deadline - time.monotonic()))
            except HarnessError:
                break
            state = r.stdout.strip()
            if state in ("running", "degraded"):
                self.boot_seconds = time.monotonic() - self._t0
                self.failed_units = self.run("systemctl --failed --no-legend --plain",
                                             check=False).stdout.strip()
                return state
            time.sleep(0.05)
        jobs = self.run("systemctl list-jobs --no-pager", check=False).stdout if self.running else ""
        raise HarnessError("%s did not finish booting in %ss (state %r); jobs:\n%s\nconsole:\n%s" % (
            self, timeout, state, jobs, self.console()[-4000:]))

    def boot(self, timeout=60):
        self.start()
        return self.wait_booted(timeout)

    def power_cut(self):
        """Kill the node's PID 1 (SIGKILL): every process of the node dies at
        once, its mounts and network namespace vanish. The upper layer stays.
        (Writes the node made are in the host's page cache: a power cut here
        does not lose unsynced data.)"""
        self._kill()

    def shutdown(self, timeout=30):
        """Clean poweroff through systemd; power cut if it takes too long."""
        if self.running:
            self.run("systemctl poweroff --no-block", check=False)
            self._wait_exit(timeout)
        self._kill()

    def reboot(self, clean=False, timeout=60):
        """Stop (power cut, or `systemctl reboot` when clean) and boot again
        on the same upper layer. Returns the new boot's system state."""
        if clean and self.running:
            self.run("systemctl reboot --no-block", check=False)
            self._wait_exit(timeout)
        self._kill()
        return self.boot(timeout)

    def _wait_exit(self, timeout):
        try:
            self.launcher.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    def _kill(self):
        if self.launcher is not None:
            pid1 = self.pid1
            if pid1 and _pid_alive(pid1):
                try:
                    os.kill(pid1, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.launcher.poll() is None:
                try:
                    self.launcher.wait(5)
                except subprocess.TimeoutExpired:
                    self.launcher.kill()
                    self.launcher.wait(5)
        _cgroup_kill(self.cgroup)
        self._close_console()
        self.launcher = None
        self.pid1 = None

    # -- network --

    def partition(self):
        """Cut the node's cable (its bridge port goes down)."""
        _sh(["ip", "-n", self.cluster.netns, "link", "set", self.veth, "down"])

    def heal(self):
        _sh(["ip", "-n", self.cluster.netns, "link", "set", self.veth, "up"])

    # -- inside the node --

    def _nsenter(self, cmd):
        if not self.running or self.pid1 is None:
            raise HarnessError("%s is not running" % self)
        argv = ["/bin/sh", "-c", cmd] if isinstance(cmd, str) else list(cmd)
        return ["nsenter", "-t", str(self.pid1), "-m", "-u", "-i", "-n", "-p", "-C",
                "-r", "-w", "--"] + argv

    def run(self, cmd, check=True, timeout=60, input=None, env=None):
        """Run cmd (a shell string or an argv list) inside the node as root;
        return subprocess.CompletedProcess (text)."""
        args = self._nsenter(cmd)
        try:
            r = subprocess.run(args, input=input, capture_output=True, text=True,
                               timeout=timeout, env=_clean_env(env))
        except subprocess.TimeoutExpired as e:
            raise HarnessError("%s: timed out after %ss: %r" % (self, timeout, cmd)) from e
        if check and r.returncode != 0:
            raise NodeCommandError(self, cmd, r)
        return r

    def spawn(self, cmd, env=None, **kw):
        """Start cmd inside the node in the background; returns a Popen. It
        dies with the node at the latest."""
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        return subprocess.Popen(self._nsenter(cmd), env=_clean_env(env), **kw)

    def systemctl(self, *args, check=True):
        return self.run(["systemctl"] + list(args), check=check).stdout.strip()

    def is_active(self, unit):
        return self.run(["systemctl", "is-active", unit], check=False).stdout.strip()

    def journal(self, unit=None, lines=200):
        args = ["journalctl", "--no-pager", "-b", "-n", str(lines)]
        if unit:
            args += ["-u", unit]
        return self.run(args, check=False).stdout

    def path(self, p):
        """The host path of p inside the running node (via /proc/PID/root)."""
        if self.pid1 is None:
            raise HarnessError("%s is not running" % self)
        return "/proc/%d/root/%s" % (self.pid1, p.lstrip("/"))

    def console(self):
        return _read(os.path.join(self.dir, "console.log"), "")

    def init_log(self):
        return _read(os.path.join(self.dir, "init.log"), "")

    def enter_command(self):
        return "nsenter -t %d -a -r -w /bin/bash -l" % self.pid1 if self.pid1 else None


# --- clusters ----------------------------------------------------------------

_LIVE = set()
_LOCK = threading.Lock()
_HANDLERS_INSTALLED = False


def _teardown_all():
    for c in list(_LIVE):
        try:
            c.teardown()
        except Exception as e:  # noqa: BLE001 - keep cleaning the others
            print("dprt: teardown of %s failed: %s" % (c.id, e), file=sys.stderr)


def _on_signal(signum, frame):
    _teardown_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers():
    global _HANDLERS_INSTALLED
    if _HANDLERS_INSTALLED:
        return
    _HANDLERS_INSTALLED = True
    atexit.register(_teardown_all)
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(s) in (signal.SIG_DFL, None):
                signal.signal(s, _on_signal)


RAFT_CONF = """\
cluster = "demo";
node = {{ name = "{name}"; address = "{ip}";{node_extra} }};
finder = {{ listen = "{ip}:{finder}"; }};
raft = {{ address = "{ip}:{raft}"; peers = [{peers}];
         election_timeout_ms = {election}; heartbeat_timeout_ms = {heartbeat}; }};
"""


class Cluster:
    """N nodes on a private bridge. Arguments:

    n          number of nodes (node1..nodeN), or a list of node names
    stage      a `make install DESTDIR=` tree to install into every node
    upper      "disk" (under $DPRT_BASE, default /var/tmp) or "tmpfs"
    boot       boot the nodes now (else call start())
    keep       keep the state directory after teardown (debugging; also
               with DPRT_KEEP=1)
    provision_args  extra arguments for provision.sh
    """

    def __init__(self, n=1, stage=None, upper="disk", boot=True, keep=None,
                 provision_args=(), timeout=60, base=None):
        if upper not in ("disk", "tmpfs"):
            raise HarnessError("upper must be 'disk' or 'tmpfs'")
        self.id = "%s-%s" % (PREFIX, secrets.token_hex(3))
        self.base = base or BASE
        self.dir = os.path.join(self.base, self.id)
        self.share = os.path.join(self.dir, "share")
        self.netns = self.id
        self.cgroup = None
        self.stage = stage
        self.upper = upper
        self.keep = keep if keep is not None else os.environ.get("DPRT_KEEP") == "1"
        self.provision_args = tuple(provision_args)
        self.timeout = timeout
        names = list(n) if not isinstance(n, int) else ["node%d" % i for i in range(1, n + 1)]
        self._names = names
        self.nodes = []
        self._up = False
        if boot:
            self.start()

    # -- a cluster of agents (docs/operations.md, "A cluster of nodes") --

    FINDER_PORT = 7000
    RAFT_PORT = 7400

    def configure_raft(self, election_ms=300, heartbeat_ms=50, labels=None,
                       max_instances=None, tls=False):
        """Gives every node an agent.conf of one Raft cluster of all nodes
        (each node's finder and Raft on its bridge address, every node in
        raft.peers) and restarts dpr-agent on each. labels / max_instances:
        {node name: [labels] / count} for node.labels / node.max_instances.
        tls: Raft over mutual TLS; a CA made here (self.tls_dir, dpr.pki)
        and each node's certificate in its /etc/dpr/tls/ (the defaults)."""
        peers = ", ".join('"%s:%d"' % (n.ip4, self.RAFT_PORT) for n in self.nodes)
        if tls:
            self._issue_tls()
        for n in self.nodes:
            extra = ""
            if (labels or {}).get(n.name):
                extra += " labels = [%s];" % ", ".join('"%s"' % x for x in labels[n.name])
            if (max_instances or {}).get(n.name):
                extra += " max_instances = %d;" % max_instances[n.name]
            _write(n.path("/etc/dpr/agent.conf"), RAFT_CONF.format(
                name=n.name, ip=n.ip4, finder=self.FINDER_PORT, raft=self.RAFT_PORT,
                peers=peers, election=election_ms, heartbeat=heartbeat_ms, node_extra=extra) +
                ("tls = { enabled = true; };\n" if tls else ""))
        for n in self.nodes:
            n.systemctl("restart", "dpr-agent")

    def _issue_tls(self):
        sys.path.insert(0, os.path.join(os.path.dirname(HERE), "..", "python-dpr"))
        from dpr import pki
        self.tls_dir = os.path.join(self.dir, "tls")
        if not os.path.exists(os.path.join(self.tls_dir, "ca.crt")):
            pki.init(self.tls_dir, "demo")
        for n in self.nodes:
            out = os.path.join(self.tls_dir, n.name)
            pki.issue(self.tls_dir, "node", n.name, out_dir=out, ips=[n.ip4], force=True)
            n.run(["mkdir", "-p", "-m", "0755", "/etc/dpr/tls"])
            for f, mode in ((n.name + ".crt", 0o644), (n.name + ".key", 0o600),
                            ("ca.crt", 0o644)):
                shutil.copy(os.path.join(out, f), n.path("/etc/dpr/tls/" + f))
                os.chmod(n.path("/etc/dpr/tls/" + f), mode)
            shutil.copy(os.path.join(self.tls_dir, "ca.crl"), n.path("/etc/dpr/tls/ca.crl"))

    def raft_leader(self, among=None):
        """The node whose agent serves the finder, when the running nodes
        (or `among`) agree on it; else None."""
        among = among or [n for n in self.nodes if n.running]
        views = []
        for n in among:
            try:
                views.append(json.loads(n.run(["dprctl", "status", "--json"],
                                              check=False).stdout or "{}"))
            except ValueError:
                return None
        serving = [n for n, st in zip(among, views)
                   if st.get("finder", {}).get("served_here")]
        if len(serving) != 1:
            return None
        want = "%s:%d" % (serving[0].ip4, self.RAFT_PORT)
        agree = all((st.get("raft") or {}).get("leader") == want for st in views)
        return serving[0] if agree else None

    def __getitem__(self, i):
        if isinstance(i, str):
            for node in self.nodes:
                if node.name == i:
                    return node
            raise KeyError(i)
        return self.nodes[i]

    def __iter__(self):
        return iter(self.nodes)

    def __len__(self):
        return len(self.nodes)

    def __enter__(self):
        if not self._up:
            self.start()
        return self

    def __exit__(self, *exc):
        self.teardown()

    def start(self):
        preflight()
        with _LOCK:
            _LIVE.add(self)
        _install_handlers()
        self._up = True
        try:
            self._create()
            for i, name in enumerate(self._names, 1):
                self.nodes.append(Node(self, i, name))
            for node in self.nodes:
                node.provision(self.stage, self.provision_args)
            for node in self.nodes:     # launch all, then wait: boots overlap
                node.start()
            for node in self.nodes:
                node.wait_booted(self.timeout)
        except BaseException:
            self.teardown()
            raise
        return self

    def _create(self):
        os.makedirs(self.dir)
        # owner: "PID STARTTIME" - cleanup-stale leaves live owners' clusters alone
        _write(os.path.join(self.dir, "owner"), "%d %s\n" % (os.getpid(), _proc_starttime(os.getpid())))
        if self.upper == "tmpfs":
            _sh(["mount", "-t", "tmpfs", "-o", "mode=700", self.id, self.dir])
            _write(os.path.join(self.dir, "owner"), "%d %s\n" % (os.getpid(), _proc_starttime(os.getpid())))
        os.makedirs(self.share)
        shutil.copy(PROVISION, os.path.join(self.share, "provision.sh"))
        if self.stage:
            shutil.copytree(self.stage, os.path.join(self.share, "stage"), symlinks=True)
        self.cgroup = os.path.join(cgroup2_root(), self.id)
        os.makedirs(os.path.join(self.cgroup, "sup"))
        _sh(["ip", "netns", "add", self.netns])
        _sh(["ip", "-n", self.netns, "-b", "-"], input="\n".join([
            "link set lo up",
            "link add %s type bridge mcast_snooping 0" % BRIDGE,
            "link set %s up" % BRIDGE,
        ]) + "\n")

    def teardown(self):
        """Remove everything of this cluster; safe to call twice."""
        errors = []
        for node in self.nodes:
            try:
                node._kill()
            except Exception as e:  # noqa: BLE001
                errors.append(e)
        try:
            _remove_cluster(self.id, self.base, keep_dir=self.keep)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
        with _LOCK:
            _LIVE.discard(self)
        self._up = False
        if errors:
            raise HarnessError("teardown of %s: %s" % (self.id, "; ".join(map(str, errors))))


# --- finding and removing what is ours ---------------------------------------

def _netns_list():
    r = _sh(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in r.stdout.splitlines() if line.strip()]


def leftovers(cid=None):
    """Everything of ours (or of cluster cid) that exists now: a dict of
    non-empty lists. Empty dict = nothing left."""
    pat = cid or PREFIX + "-"
    found = {"cgroups": [], "processes": []}
    for root in sorted({p for p, _, t in _mounts() if t == "cgroup2"}):
        for cg in sorted(glob.glob(os.path.join(root, pat + "*"))):
            found["cgroups"].append(cg)
            found["processes"] += _cgroup_pids(cg)
    procs = set(found.get("processes", []))
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        cmd = _read("/proc/%s/cmdline" % d, "") or ""
        if NODE_INIT in cmd and pat in cmd:
            procs.add(int(d))
    found["processes"] = sorted(procs)
    found["mounts"] = ["%s (%s %s)" % m for m in _mounts() if pat in m[0] or pat in m[1]]
    found["netns"] = [n for n in _netns_list() if n.startswith(pat)]
    r = _sh(["ip", "-o", "link", "show"], check=False)
    found["links"] = [line.split(":")[1].strip() for line in r.stdout.splitlines()
                      if line.split(":")[1].strip().startswith(PREFIX + "-")]
    found["state_dirs"] = sorted(glob.glob(os.path.join(BASE, pat + "*")))
    return {k: v for k, v in found.items() if v}


def _owner_alive(state_dir):
    owner = _read(os.path.join(state_dir, "owner"))
    if not owner:
        return False
    pid, start = owner.split()
    return _pid_alive(int(pid), start)


def _remove_cluster(cid, base=None, keep_dir=False):
    base = base or BASE
    d = os.path.join(base, cid)
    errors = []
    for root in {p for p, _, t in _mounts() if t == "cgroup2"}:
        path = os.path.join(root, cid)
        if os.path.isdir(path):
            try:
                _cgroup_kill(path)
            except HarnessError as e:
                errors.append(str(e))
    # launchers outside the cgroup (should not exist, but be sure)
    for p in os.listdir("/proc"):
        if p.isdigit():
            cmd = _read("/proc/%s/cmdline" % p, "") or ""
            if NODE_INIT in cmd and ("/" + cid + "/") in cmd:
                try:
                    os.kill(int(p), signal.SIGKILL)
                except ProcessLookupError:
                    pass
    if cid in _netns_list():
        r = _sh(["ip", "netns", "del", cid], check=False)
        if r.returncode != 0:
            errors.append(r.stderr.strip())
    if os.path.exists("/run/netns/" + cid):   # a stale file after a host reboot
        subprocess.run(["umount", "/run/netns/" + cid], capture_output=True)
        try:
            os.unlink("/run/netns/" + cid)
        except OSError:
            pass
    for point, source, _ in sorted(_mounts(), key=lambda m: -len(m[0])):
        if point.startswith(d) or source == cid:
            r = _sh(["umount", "-l", point], check=False)
            if r.returncode != 0:
                errors.append(r.stderr.strip())
    if os.path.isdir(d) and not keep_dir:
        # A dead node's mount namespace is released asynchronously: its
        # overlay root stays a mount point (EBUSY) for a moment.
        deadline = time.monotonic() + 10
        while True:
            failures = []
            shutil.rmtree(d, onerror=lambda f, p, e: failures.append("%s: %s" % (p, e[1])))
            if not os.path.exists(d):
                break
            if time.monotonic() > deadline:
                errors.append("cannot remove %s: %s" % (d, failures[:3]))
                break
            time.sleep(0.05)
    if errors:
        raise HarnessError("; ".join(errors))


def cleanup_stale(all_clusters=False, log=print):
    """Remove clusters of ours whose owner process is gone (or all of them).
    Returns the ids removed."""
    ids = set()
    for path in glob.glob(os.path.join(BASE, PREFIX + "-*")):
        ids.add(os.path.basename(path))
    for n in _netns_list():
        if n.startswith(PREFIX + "-"):
            ids.add(n)
    for root in {p for p, _, t in _mounts() if t == "cgroup2"}:
        for path in glob.glob(os.path.join(root, PREFIX + "-*")):
            if os.path.basename(path) != PREFIX + "-cgroup2":
                ids.add(os.path.basename(path))
    for point, source, _ in _mounts():
        if source.startswith(PREFIX + "-") and point.startswith(BASE + "/" + PREFIX + "-"):
            ids.add(source)
    removed = []
    for cid in sorted(ids):
        if not all_clusters and _owner_alive(os.path.join(BASE, cid)):
            log("keeping %s (its owner is alive; --all removes it)" % cid)
            continue
        log("removing %s" % cid)
        try:
            _remove_cluster(cid)
        except HarnessError as e:
            log("  %s" % e)
        removed.append(cid)
    own = "/run/%s-cgroup2" % PREFIX    # only on hosts without cgroup2
    if any(p == own for p, _, _ in _mounts()) and not glob.glob(own + "/" + PREFIX + "-*"):
        _sh(["umount", own], check=False)
    if os.path.isdir(own) and not any(p == own for p, _, _ in _mounts()):
        os.rmdir(own)
    r = _sh(["ip", "-o", "link", "show"], check=False)
    for line in r.stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name.startswith(PREFIX + "-"):
            log("removing link %s from the root network namespace" % name)
            _sh(["ip", "link", "del", name], check=False)
    return removed


# --- command line ------------------------------------------------------------

def _main(argv):
    import argparse
    ap = argparse.ArgumentParser(prog="cluster.py", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="boot N nodes and wait for Ctrl-C")
    up.add_argument("n", type=int, nargs="?", default=1)
    up.add_argument("--stage", help="a `make install DESTDIR=` tree to install")
    up.add_argument("--tmpfs", action="store_true", help="upper layer on a tmpfs")
    up.add_argument("--keep", action="store_true", help="keep the state directory")
    sub.add_parser("ls", help="clusters of ours on this machine")
    en = sub.add_parser("enter", help="run a shell or a command in a node")
    en.add_argument("id")
    en.add_argument("node")
    en.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("leftovers", help="everything of ours that exists now")
    cs = sub.add_parser("cleanup-stale", help="remove what dead runs left behind")
    cs.add_argument("--all", action="store_true", help="also clusters with a live owner")
    a = ap.parse_args(argv)

    if a.cmd == "up":
        c = Cluster(a.n, stage=a.stage, upper="tmpfs" if a.tmpfs else "disk", keep=a.keep)
        print("cluster %s up (state in %s); Ctrl-C tears it down" % (c.id, c.dir))
        for node in c:
            print("  %-8s %-12s %-20s boot %.2fs   enter: %s" % (
                node.name, node.ip4, node.ip6, node.boot_seconds, node.enter_command()))
        try:
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
        except KeyboardInterrupt:
            pass
        finally:
            c.teardown()
        return 0
    if a.cmd == "ls":
        for d in sorted(glob.glob(os.path.join(BASE, PREFIX + "-*"))):
            alive = _owner_alive(d)
            print("%s  owner %s" % (os.path.basename(d), "alive" if alive else "gone (stale)"))
            for n in sorted(glob.glob(os.path.join(d, "*", "pid1"))):
                pid = int(_read(n).strip())
                state = "running" if _pid_alive(pid) else "down"
                print("  %-10s pid1 %-8d %s" % (os.path.basename(os.path.dirname(n)), pid, state))
        return 0
    if a.cmd == "enter":
        pid = int(_read(os.path.join(BASE, a.id, a.node, "pid1")).strip())
        cmd = a.command or ["/bin/bash", "-l"]
        os.execve("/usr/bin/nsenter", ["nsenter", "-t", str(pid), "-m", "-u", "-i", "-n", "-p",
                                       "-C", "-r", "-w", "--"] + cmd, _clean_env())
    if a.cmd == "leftovers":
        left = leftovers()
        for k, v in left.items():
            print("%s: %s" % (k, " ".join(map(str, v))))
        return 1 if left else 0
    if a.cmd == "cleanup-stale":
        cleanup_stale(all_clusters=a.all)
        return 0
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
