"""Fixtures for the tests of the Python package (python-dpr): the DPR client
(dpr.Client against real dpr-finder and dpr-kv processes, the `cluster`
fixture of tests/conftest.py) and the management API and dprctl (against the
real dpr-agent; the pure spec and CLI tests need nothing). Every process a
test starts is killed by PID when the test ends, also when it fails. The
agent runs without systemd here: validation, plan, apply-recording, status,
delete, events, nodes and permissions are tested; unit behaviour is tested
inside real systemd nodes (tests/cluster).

Run: PYTHONPATH=python-dpr /usr/bin/python3 -m pytest -q tests/python-dpr
(without PYTHONPATH the source tree's python-dpr/ is used as well).
"""
import importlib.util
import os
import shutil
import sys
import tempfile

import pytest

import dprtest

if importlib.util.find_spec("dpr") is None:
    sys.path.insert(0, dprtest.PYDIR)


@pytest.fixture
def cluster(cluster):
    """tests/conftest.py's cluster (a running dpr-finder; start shards with
    cluster.start_shards(n)), once libdpr.so loads."""
    import dpr._libdpr
    try:
        dpr._libdpr.get_lib()
    except dpr._libdpr.LibdprNotFound as e:
        pytest.fail(str(e), pytrace=False)
    return cluster


@pytest.fixture
def cluster3(cluster):
    cluster.start_shards(3)
    return cluster


class Agent:
    """A dpr-agent in a temporary directory of its own (mode 0755 so that a
    test can connect as another user): agent.conf, the control socket, state
    and instance directories, and the agent's log."""

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
        self.finder_port = dprtest.free_port()
        # the agent only records these (no cache-store runs without systemd)
        self.port_min, self.port_max = dprtest.free_port_range(50)
        impls = impls if impls is not None else {"dpr-kv": dprtest.KV}
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
        self.procs = dprtest.Procs()  # every run, for the sanitizer check at the end

    def start(self):
        self.proc = self.procs.add(dprtest.AgentProc(self.conf, self.log, self.socket,
                                                     self.dir, cwd=self.dir))
        self.proc.wait_ready()
        return self

    def stop(self):
        if self.proc is not None:
            self.proc.stop()

    def cleanup(self):
        try:
            self.procs.stop_all()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def make_agent():
    """make_agent(**kw) -> a started Agent (see Agent for the options)."""
    dprtest.need(dprtest.AGENT, skip=True)
    made = []

    def make(start=True, **kw):
        a = Agent(**kw)
        made.append(a)
        if start:
            a.start()
        return a

    yield make
    errors = []
    for a in made:
        try:
            a.cleanup()
        except AssertionError as e:
            errors.append(str(e))
    assert not errors, "\n\n".join(errors)


@pytest.fixture
def agent(make_agent):
    """A running dpr-agent of cluster "demo" with a temporary config."""
    return make_agent()
