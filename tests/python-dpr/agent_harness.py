"""Starts the real dpr-agent for the management API tests.

Each Agent lives in a temporary directory of its own (mode 0755 so that a
test can connect as another user): agent.conf, the control socket, state and
instance directories, and the agent's log. The process is stopped by its PID
when the test ends, also when it fails.
"""
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("DPR_BUILD", "build")
if not os.path.isabs(BUILD):
    BUILD = os.path.join(ROOT, BUILD)
AGENT = os.environ.get("DPR_AGENT") or os.path.join(BUILD, "dpr-agent")
KV = os.path.join(BUILD, "dpr-kv")
PYDIR = os.path.join(ROOT, "python-dpr")
DPRCTL = os.path.join(PYDIR, "bin", "dprctl")
PYTHON = "/usr/bin/python3"

MISSING = ("%s is missing: the protocol tests need the real dpr-agent (build it with "
           "`make -f Makefile -f agent/build.mk build/dpr-agent`, or set DPR_AGENT)" % AGENT)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_port_range(n=50):
    """n consecutive ports that are free right now (the agent only records
    them here: no cache-store is started without systemd)."""
    for _ in range(50):
        base = free_port()
        if base + n > 65535:
            continue
        ok = True
        for p in range(base, base + n):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                try:
                    s.bind(("127.0.0.1", p))
                except OSError:
                    ok = False
                    break
        if ok:
            return base, base + n - 1
    raise RuntimeError("no free port range")


class Agent:
    def __init__(self, cluster="demo", node="node1", group=None, impls=None, extra=""):
        self.dir = tempfile.mkdtemp(prefix="dpr-mgmt-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        self.cluster = cluster
        self.node = node
        self.socket = os.path.join(self.dir, "agent.sock")
        self.state = os.path.join(self.dir, "state")
        self.instances = os.path.join(self.dir, "instances")
        self.conf = os.path.join(self.dir, "agent.conf")
        self.log = os.path.join(self.dir, "agent.log")
        if group is None and os.geteuid() != 0:
            # not root: let our own primary group use the control socket
            import grp
            group = grp.getgrgid(os.getegid()).gr_name
        self.group = group
        self.finder_port = free_port()
        self.port_min, self.port_max = free_port_range()
        impls = impls if impls is not None else {"dpr-kv": KV}
        group_line = '  group = "%s";\n' % group if group else ""
        impl_lines = "".join('    %s = "%s";\n' % (k, v) for k, v in impls.items())
        with open(self.conf, "w") as f:
            f.write(
                'cluster = "%s";\n'
                'node = {\n  name = "%s";\n  address = "127.0.0.1";\n};\n'
                'state_directory = "%s";\n'
                'control = {\n  socket = "%s";\n%s};\n'
                'finder = {\n  listen = "127.0.0.1:%d";\n};\n'
                'cachestores = {\n  instance_directory = "%s";\n  port_min = %d;\n'
                '  port_max = %d;\n  impls = {\n%s  };\n};\n%s'
                % (cluster, node, self.state, self.socket, group_line, self.finder_port,
                   self.instances, self.port_min, self.port_max, impl_lines, extra))
        self.proc = None
        self._logf = None

    def argv(self):
        return [AGENT, "--config", self.conf]

    def start(self, timeout=15.0):
        self._logf = open(self.log, "ab")
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env.pop("WATCHDOG_USEC", None)
        env.pop("DPR_SOCKET", None)
        env.pop("JOURNAL_STREAM", None)
        # never the host's systemd: a test agent must not start or stop real
        # dpr-cachestore@ units (sd-bus honours this variable)
        env["DBUS_SYSTEM_BUS_ADDRESS"] = "unix:path=%s" % os.path.join(self.dir, "no-bus")
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=self._logf,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.dir)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dpr-agent exited with %s while starting; its log:\n%s"
                                   % (self.proc.returncode, self.read_log()))
            if os.path.exists(self.socket):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    s.connect(self.socket)
                    return self
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("dpr-agent did not open %s within %gs; its log:\n%s"
                           % (self.socket, timeout, self.read_log()))

    def read_log(self):
        try:
            with open(self.log, "rb") as f:
                return f.read().decode("utf-8", "replace")[-6000:]
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM):
        p, self.proc = self.proc, None
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        if self._logf is not None:
            self._logf.close()
            self._logf = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def agent_binary():
    if not os.access(AGENT, os.X_OK):
        pytest.skip(MISSING)
    return AGENT


@pytest.fixture
def make_agent(request):
    """make_agent(**kw) -> a started Agent (see Agent for the options)."""
    agent_binary()
    made = []

    def make(start=True, **kw):
        a = Agent(**kw)
        made.append(a)
        if start:
            a.start()
        return a

    yield make
    failed = getattr(request.node, "rep_call", None)
    for a in made:
        if failed is not None and failed.failed:
            print("---- dpr-agent log (%s)\n%s" % (a.dir, a.read_log()))
        a.cleanup()


@pytest.fixture
def agent(make_agent):
    """A running dpr-agent of cluster "demo" with a temporary config."""
    return make_agent()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
