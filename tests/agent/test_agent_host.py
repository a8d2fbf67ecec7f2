"""Host-level tests of dpr-agent: no systemd needed.

Each test starts build/dpr-agent (DPR_BUILD selects the build, e.g.
build/asan) with a configuration of its own: control socket, state and
instance files in a temporary directory, the finder on a free loopback port,
and DBUS_SYSTEM_BUS_ADDRESS pointing at nothing, so the agent runs without
systemd (it records the desired state and reports systemd as unreachable).
Agents are stopped by PID at the end of each test.
"""
import grp
import json
import os
import pwd
import signal
import socket
import subprocess

import shutil
import tempfile

import pytest

import dprtest
from dprtest import AGENT, ROOT

CONF = """\
cluster = "demo";
node = {{ name = "node1"; }};
state_directory = "{d}/state";
control = {{ socket = "{sock}"; group = "{group}"; {control} }};
finder = {{ listen = "127.0.0.1:0"; }};
cachestores = {{
  instance_directory = "{d}/run/instances";
  port_min = 7100;
  port_max = {port_max};
  {cs_extra}
  impls = {{ dpr-kv = "/usr/local/bin/dpr-kv"; other-kv = "/opt/other"; }};
}};
"""


def spec(*deployments, name="demo"):
    return {"name": name, "cachestores": list(deployments)}


def kv(name="kv", shards=3, version="1", **extra):
    d = {"name": name, "impl": "dpr-kv", "version": version, "shards": shards}
    d.update(extra)
    return d


class Conn:
    """One control connection: newline-delimited JSON."""

    def __init__(self, path, timeout=5.0):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send_raw(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def call(self, op, args=None, id=None, **extra):
        req = {"v": 1, "op": op}
        if args is not None:
            req["args"] = args
        if id is not None:
            req["id"] = id
        req.update(extra)
        self.send_raw(json.dumps(req).encode() + b"\n")
        return self.line()

    def closed(self):
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


_CREATED = []


class Agent:
    def __init__(self, base, group="users", port_max=7199, extra_conf="", control="",
                 cs_extra=""):
        _CREATED.append(self)
        self.base = str(base)
        os.makedirs(self.base, exist_ok=True)
        self.conf = os.path.join(self.base, "agent.conf")
        # the socket's directory must be reachable by other users (pytest's
        # temporary directories are not): a short one of its own
        self.sockdir = tempfile.mkdtemp(prefix="dpr-agent-test-")
        os.chmod(self.sockdir, 0o755)
        self.sock = os.path.join(self.sockdir, "agent.sock")
        with open(self.conf, "w") as f:
            f.write(CONF.format(d=self.base, sock=self.sock, group=group, port_max=port_max,
                                control=control, cs_extra=cs_extra) + extra_conf)
        self.state = os.path.join(self.base, "state", "agent.json")
        self.instances = os.path.join(self.base, "run", "instances")
        self.proc = None     # the dprtest.AgentProc of the last start
        self.procs = dprtest.Procs()
        self.logs = []

    def start(self, wait=True):
        log = os.path.join(self.base, "agent-%d.log" % len(self.logs))
        self.logs.append(log)
        self.proc = self.procs.add(dprtest.AgentProc(self.conf, log, self.sock, self.base))
        if wait:
            self.proc.wait_ready()
        return self

    def log(self, i=-1):
        with open(self.logs[i], "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_exit(self, timeout=10.0):
        return self.proc.wait_exit(timeout)

    def connect(self):
        return Conn(self.sock)

    def call(self, op, args=None, **kw):
        c = self.connect()
        try:
            return c.call(op, args, **kw)
        finally:
            c.close()

    def stop(self, sig=signal.SIGTERM):
        """Stops the agent (sig, then SIGKILL), removes the socket's
        directory, fails on sanitizer reports in any of its logs."""
        if self.proc is not None:
            self.proc.stop(sig)
        shutil.rmtree(self.sockdir, ignore_errors=True)
        self.procs.stop_all()


@pytest.fixture(autouse=True)
def stop_every_agent():
    """Whatever a test started or created is stopped and removed, also when
    it fails."""
    yield
    while _CREATED:
        _CREATED.pop().stop()


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path / "a").start()
    yield a
    a.stop()
    assert a.proc.returncode == 0, a.log()


def error_of(reply):
    assert reply["v"] == 1 and reply["ok"] is False, reply
    return reply["error"]


def result_of(reply):
    assert reply["v"] == 1 and reply["ok"] is True, reply
    return reply["result"]


def file_bytes(path):
    with open(path, "rb") as f:
        return f.read()


# --- plan / apply / status / delete ------------------------------------------------

def test_plan_changes_nothing(agent):
    r = result_of(agent.call("plan", {"spec": spec(kv())}, id="p1"))
    assert r["generation"] == 0
    assert r["plan"] == {"created": ["kv-0", "kv-1", "kv-2"], "updated": [], "deleted": [],
                         "unchanged": [], "resizes": []}
    s = result_of(agent.call("status"))
    assert s["generation"] == 0 and s["deployments"] == []
    assert not os.path.exists(agent.state)
    # dry_run is plan
    r = result_of(agent.call("apply", {"spec": spec(kv()), "dry_run": True}))
    assert r["generation"] == 0 and r["plan"]["created"] == ["kv-0", "kv-1", "kv-2"]


def test_apply_is_idempotent(agent):
    c = agent.connect()
    r = c.call("apply", {"spec": spec(kv(), kv("b", shards=1))}, id=1)
    assert r["id"] == 1
    r = result_of(r)
    assert r["generation"] == 1
    assert r["plan"]["created"] == ["b-0", "kv-0", "kv-1", "kv-2"]
    assert "systemd is not reachable" in r["warnings"][0]
    saved = file_bytes(agent.state)
    r = result_of(c.call("apply", {"spec": spec(kv(), kv("b", shards=1))}, id=2))
    assert r["generation"] == 1
    assert r["plan"] == {"created": [], "updated": [], "deleted": [],
                         "unchanged": ["b-0", "kv-0", "kv-1", "kv-2"], "resizes": []}
    assert json.loads(file_bytes(agent.state))["generation"] == json.loads(saved)["generation"]
    # a change bumps the generation; unchanged instances keep ids and ports
    before = {i["name"]: (i["worker"], i["endpoint"])
              for d in result_of(c.call("status"))["deployments"] for i in d["instances"]}
    r = result_of(c.call("apply", {"spec": spec(kv(shards=4, checkpoint_interval_ms=50),
                                                 kv("b", shards=1))}))
    assert r["generation"] == 2
    # kv's shards change: a resize (its keys move: docs/operations.md)
    assert r["plan"] == {"created": ["kv-3"], "updated": ["kv-0", "kv-1", "kv-2"],
                         "deleted": [], "unchanged": ["b-0"],
                         "resizes": [{"deployment": "kv", "from": 3, "to": 4, "epoch": 1,
                                      "moves": 0.25}]}
    s = result_of(c.call("status"))
    after = {i["name"]: (i["worker"], i["endpoint"]) for d in s["deployments"]
             for i in d["instances"]}
    for name, alloc in before.items():
        assert after[name] == alloc
    assert after["kv-3"][0] == 5 and after["kv-3"][1] == "127.0.0.1:7104"
    c.close()


def test_status_shape(agent):
    result_of(agent.call("apply", {"spec": spec(kv(shards=2))}))
    s = result_of(agent.call("status"))
    assert s["cluster"] == "demo" and s["node"] == "node1" and s["generation"] == 1
    assert s["finder"]["address"].startswith("127.0.0.1:")
    assert s["finder"]["domains"] == []     # nothing registered yet
    assert "world_line" not in s["finder"]  # one per deployment instead
    assert s["systemd"]["connected"] is False
    (d,) = s["deployments"]
    assert d["name"] == "kv" and d["impl"] == "dpr-kv" and d["version"] == "1"
    assert d["shards"] == 2 and d["checkpoint_interval_ms"] == 100 and d["ready"] == 0
    assert d["max_clients"] == 10000
    # its DPR domain: not in the finder until its first instance registers
    assert d["domain"] == "kv" and d["world_line"] is None and d["max_version"] is None
    assert d["cut"] == [None, None]
    i0 = d["instances"][0]
    assert i0["name"] == "kv-0" and i0["unit"] == "dpr-cachestore@kv-0.service"
    assert i0["worker"] == 1 and i0["endpoint"] == "127.0.0.1:7100" and i0["node"] == "node1"
    assert i0["ready"] is False and i0["active_state"] is None and i0["restarts"] is None
    assert i0["durable_version"] is None and i0["cut"] is None and i0["world_line"] is None
    assert "system bus" in i0["last_error"]
    one = result_of(agent.call("status", {"name": "kv"}))
    assert [d["name"] for d in one["deployments"]] == ["kv"]
    assert error_of(agent.call("status", {"name": "nope"}))["code"] == "not_found"


def test_instance_files(agent):
    result_of(agent.call("apply", {"spec": spec(kv(shards=2, checkpoint_interval_ms=250,
                                                   max_clients=7))}))
    finder = result_of(agent.call("status"))["finder"]["address"]
    with open(os.path.join(agent.instances, "kv-1.env")) as f:
        env = dict(line.split("=", 1) for line in f.read().splitlines()
                   if line and not line.startswith("#"))
    assert env["DPR_CS_EXEC"] == "/usr/local/bin/dpr-kv"
    assert env["DPR_KV_LISTEN"] == "127.0.0.1:7101"
    assert env["DPR_KV_FINDER"] == finder
    assert env["DPR_KV_WORKER"] == "2"
    assert env["DPR_KV_CHECKPOINT_INTERVAL_MS"] == "250"
    assert env["DPR_KV_MAX_CLIENTS"] == "7"
    assert env["DPR_INSTANCE"] == "kv-1" and env["DPR_VERSION"] == "1"
    # the deployment is its DPR domain
    assert env["DPR_DOMAIN"] == env["DPR_KV_DOMAIN"] == "kv"


def test_delete(agent):
    assert error_of(agent.call("delete", {"name": "kv"}, id=9))["code"] == "not_found"
    result_of(agent.call("apply", {"spec": spec(kv(shards=2), kv("b", shards=1))}))
    r = result_of(agent.call("delete", {"name": "kv"}))
    assert r["generation"] == 2
    assert r["plan"]["deleted"] == ["kv-0", "kv-1"] and r["plan"]["unchanged"] == ["b-0"]
    s = result_of(agent.call("status"))
    assert [d["name"] for d in s["deployments"]] == ["b"]
    # without systemd the deleted instances wait to be stopped
    assert s["retiring"] == ["kv-0", "kv-1"]
    assert error_of(agent.call("delete", {"name": "kv"}))["code"] == "not_found"
    # an empty list deletes everything
    r = result_of(agent.call("apply", {"spec": spec()}))
    assert r["plan"]["deleted"] == ["b-0"] and r["generation"] == 3


def test_nodes(agent):
    r = result_of(agent.call("nodes"))
    # one node without Raft: the cluster of itself
    assert r == {"nodes": [{"name": "node1", "address": "127.0.0.1", "self": True,
                            "leader": True, "state": "up", "role": "single"}]}


# --- invalid specs: every problem, nothing changed -----------------------------------

@pytest.mark.parametrize("bad, paths", [
    (spec(kv(impl="nope")), ["cachestores[0].impl"]),
    (spec(kv(shards=0)), ["cachestores[0].shards"]),
    (spec(kv(shards=-3)), ["cachestores[0].shards"]),
    (spec(kv(shards=1025)), ["cachestores[0].shards"]),
    (spec(kv(shards="3")), ["cachestores[0].shards"]),
    (spec(kv(name="Bad_Name")), ["cachestores[0].name"]),
    (spec(kv(name="a" * 33)), ["cachestores[0].name"]),
    (spec(kv(name="kv-")), ["cachestores[0].name"]),
    (spec(kv(), kv()), ["cachestores[1].name"]),
    (spec(kv(shard=3)), ["cachestores[0].shard"]),
    (dict(spec(kv()), extra=True), ["extra"]),
    (spec(kv(version="")), ["cachestores[0].version"]),
    (spec(kv(version="1 2")), ["cachestores[0].version"]),
    (spec(kv(checkpoint_interval_ms=5)), ["cachestores[0].checkpoint_interval_ms"]),
    (spec(kv(max_clients=0)), ["cachestores[0].max_clients"]),
    (spec(kv(), name="other"), ["name"]),
    ({"name": "demo"}, ["cachestores"]),
    (spec(kv(name="Bad", impl="nope", shards=0, color="red")),
     ["cachestores[0].name", "cachestores[0].impl", "cachestores[0].shards",
      "cachestores[0].color"]),
])
def test_invalid_specs_change_nothing(agent, bad, paths):
    result_of(agent.call("apply", {"spec": spec(kv("keep", shards=1))}))
    saved = file_bytes(agent.state)
    envs = sorted(os.listdir(agent.instances))
    for op, args in (("plan", {"spec": bad}), ("apply", {"spec": bad})):
        e = error_of(agent.call(op, args, id="x"))
        assert e["code"] == "spec_invalid", e
        assert sorted(d["path"] for d in e["details"]) == sorted(paths), e
        assert all(d["message"] for d in e["details"])
    assert file_bytes(agent.state) == saved
    assert sorted(os.listdir(agent.instances)) == envs
    s = result_of(agent.call("status"))
    assert s["generation"] == 1 and [d["name"] for d in s["deployments"]] == ["keep"]


def test_port_range_exhausted(tmp_path):
    a = Agent(tmp_path / "a", port_max=7102).start()
    try:
        e = error_of(a.call("apply", {"spec": spec(kv(shards=4))}))
        assert e["code"] == "spec_invalid" and e["details"][0]["path"] == "cachestores"
        assert "7100..7102" in e["details"][0]["message"]
        assert result_of(a.call("apply", {"spec": spec(kv(shards=3))}))["generation"] == 1
    finally:
        a.stop()


# --- protocol errors -----------------------------------------------------------------

def test_protocol_errors_keep_the_connection(agent):
    c = agent.connect()
    c.send_raw(b"this is not json\n")
    assert error_of(c.line())["code"] == "bad_request"
    c.send_raw(b"[1, 2]\n")
    assert error_of(c.line())["code"] == "bad_request"
    assert error_of(c.call("status", v=2, id=5))["code"] == "unsupported_version"
    assert error_of(c.call("reboot", id=6))["code"] == "bad_request"
    assert error_of(c.call("status", {"nam": "kv"}))["code"] == "bad_request"
    assert error_of(c.call("apply", {}))["code"] == "bad_request"
    assert error_of(c.call("status", color="red"))["code"] == "bad_request"
    c.send_raw(b"\n\r\n")  # blank lines are ignored
    r = c.call("nodes", id={"any": ["json"]})
    assert r["ok"] and r["id"] == {"any": ["json"]}
    # several requests in one write are answered in order
    c.send_raw(b"".join(json.dumps({"v": 1, "op": "nodes", "id": i}).encode() + b"\n"
                        for i in range(20)))
    assert [c.line()["id"] for _ in range(20)] == list(range(20))
    c.close()


def test_line_limit(agent):
    c = agent.connect()
    c.sock.settimeout(10)
    big = b'{"v":1,"op":"status","id":"' + b"x" * (1024 * 1024 + 10) + b'"}\n'
    try:
        c.send_raw(big)
    except (BrokenPipeError, ConnectionResetError):
        pass
    e = error_of(c.line())
    assert e["code"] == "bad_request" and "1 MiB" in e["message"]
    assert c.closed()
    c.close()
    # just under the limit is fine
    c = agent.connect()
    ok = json.dumps({"v": 1, "op": "nodes", "id": "y" * (1024 * 1024 - 100)}).encode() + b"\n"
    c.send_raw(ok)
    assert c.line()["ok"] is True
    c.close()


# --- who may connect -------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (setpriv)")


def run_as(agent, uid_name, groups, request):
    """Runs a tiny client as another user; returns its output line."""
    client = ("import json,socket,sys\n"
              "s=socket.socket(socket.AF_UNIX)\n"
              "s.connect(sys.argv[1])\n"
              "try:\n"
              "    s.sendall(sys.argv[2].encode()+b'\\n')\n"
              "except BrokenPipeError:\n"
              "    pass  # refused at accept: its error line is there to read\n"
              "print(s.makefile().readline().strip())\n"
              "s.settimeout(1)\n"
              "try:\n"
              "    print('closed' if s.recv(1)==b'' else 'open')\n"
              "except ConnectionResetError:\n"
              "    print('closed')  # closed with our request unread\n"
              "except socket.timeout:\n"
              "    print('open')\n")
    cmd = ["setpriv", "--reuid=" + uid_name, "--regid=nogroup"]
    cmd += ["--groups=" + ",".join(str(g) for g in groups)] if groups else ["--clear-groups"]
    cmd += ["/usr/bin/python3", "-c", client, agent.sock, json.dumps(request)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


@needs_root
def test_permission_denied_for_others(agent):
    lines = run_as(agent, "nobody", [], {"v": 1, "op": "status", "id": 3})
    reply = json.loads(lines[0])
    e = error_of(reply)
    # refused at accept, before anything is read: the line answers no request
    assert e["code"] == "permission_denied" and "id" not in reply
    assert lines[1] == "closed"
    # a member of the control group (a supplementary group of the caller) is served
    users = grp.getgrnam("users").gr_gid
    lines = run_as(agent, "nobody", [users], {"v": 1, "op": "nodes"})
    assert json.loads(lines[0])["ok"] is True
    assert lines[1] == "open"
    assert "refused" in agent.log()


@needs_root
def test_missing_group_means_root_only(tmp_path):
    a = Agent(tmp_path / "a", group="no-such-group-dpr").start()
    try:
        assert "does not exist" in a.log()
        lines = run_as(a, "nobody", [grp.getgrnam("users").gr_gid], {"v": 1, "op": "nodes"})
        assert error_of(json.loads(lines[0]))["code"] == "permission_denied"
        assert result_of(a.call("nodes"))
    finally:
        a.stop()


# --- events ------------------------------------------------------------------------------

def test_events_stream(agent):
    ev = agent.connect()
    r = result_of(ev.call("events", id="e"))
    assert r == {"stream": "events"}
    result_of(agent.call("apply", {"spec": spec(kv(shards=1))}))
    result_of(agent.call("apply", {"spec": spec(kv(shards=1))}))  # unchanged: no event
    result_of(agent.call("delete", {"name": "kv"}))
    e1, e2 = ev.line(), ev.line()
    assert e1["v"] == 1 and e2["v"] == 1
    a, d = e1["event"], e2["event"]
    assert a["type"] == "apply" and a["generation"] == 1 and a["plan"]["created"] == ["kv-0"]
    assert d["type"] == "delete" and d["name"] == "kv" and d["plan"]["deleted"] == ["kv-0"]
    assert d["seq"] > a["seq"] and a["time"].endswith("Z")
    # requests after `events` are not answered: it is a stream
    ev.send_raw(b'{"v":1,"op":"nodes"}\n')
    ev.sock.settimeout(0.3)
    with pytest.raises(socket.timeout):
        ev.line()
    ev.close()


def test_slow_event_reader_is_disconnected(agent):
    ev = agent.connect()
    ev.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    result_of(ev.call("events"))
    # many events, never read: the agent must drop this client, not block
    c = agent.connect()
    # events of ~4 KiB (plans naming 99 instances with long names), 2.4 MiB in all
    big = [kv(("d%d" % i) * 11 + "x" * (32 - 22 - len(str(i))), shards=33) for i in range(3)]
    for i in range(600):
        for d in big:
            d["version"] = "v%d" % i
        assert c.call("apply", {"spec": spec(*big)})["ok"]
        if i % 20 == 0 and "does not keep up" in agent.log():
            break
    assert "does not keep up" in agent.log()
    assert result_of(c.call("nodes"))  # the agent still serves
    c.close()
    ev.sock.settimeout(5)
    data = b""
    try:
        while True:
            chunk = ev.sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    assert len(data) < 4 * 1024 * 1024
    ev.close()


# --- restarts and damaged state -----------------------------------------------------------

def test_kill_9_and_restart_keeps_state(tmp_path):
    a = Agent(tmp_path / "a").start()
    try:
        result_of(a.call("apply", {"spec": spec(kv(shards=2), kv("b", shards=1))}))
        result_of(a.call("delete", {"name": "b"}))
        before = result_of(a.call("status"))
        a.proc.kill()
        a.start()
        after = result_of(a.call("status"))
        for key in ("generation", "deployments", "retiring"):
            assert after[key] == before[key], key
        # allocations continue after the old ones: ids are never reused
        r = result_of(a.call("apply", {"spec": spec(kv(shards=3))}))
        assert r["generation"] == 3 and r["plan"]["created"] == ["kv-2"]
        st = result_of(a.call("status"))["deployments"][0]["instances"]
        assert st[2]["worker"] == 4 and st[2]["endpoint"] == "127.0.0.1:7103"
        assert "state loaded: generation 2" in a.log()
    finally:
        a.stop()


def test_corrupt_state_is_a_clear_error(tmp_path):
    a = Agent(tmp_path / "a").start()
    result_of(a.call("apply", {"spec": spec(kv(shards=2))}))
    a.stop()
    good = file_bytes(a.state)
    for damaged in (good[: len(good) // 2], good.replace(b'"port": 7101', b'"port": 7100'),
                    b"", b"{}"):
        with open(a.state, "wb") as f:
            f.write(damaged)
        a.start(wait=False)
        assert a.wait_exit() == 1
        log = a.log()
        assert a.state in log and "is damaged" in log and "refusing to start" in log, log
        assert file_bytes(a.state) == damaged  # never reset
        assert not os.path.exists(a.sock)
    with open(a.state, "wb") as f:
        f.write(good)
    a.start()
    assert result_of(a.call("status"))["generation"] == 1
    a.stop()


def test_state_of_another_cluster(tmp_path):
    a = Agent(tmp_path / "a").start()
    result_of(a.call("apply", {"spec": spec(kv(shards=1))}))
    a.stop()
    with open(a.conf) as f:
        text = f.read()
    with open(a.conf, "w") as f:
        f.write(text.replace('cluster = "demo"', 'cluster = "other"'))
    a.start(wait=False)
    assert a.wait_exit() == 1
    assert "belongs to cluster 'demo'" in a.log()


def test_second_agent_on_the_same_state_is_refused(tmp_path):
    a = Agent(tmp_path / "a").start()
    try:
        b = Agent(tmp_path / "a")
        b.logs = []
        b.start(wait=False)
        assert b.wait_exit() == 1
        assert "another dpr-agent" in b.log()
        b.stop()
        assert result_of(a.call("nodes"))  # the first one is unharmed
    finally:
        a.stop()


def test_sigterm_removes_the_socket(tmp_path):
    a = Agent(tmp_path / "a").start()
    assert os.path.exists(a.sock)
    a.stop()
    assert a.proc.returncode == 0
    assert not os.path.exists(a.sock)
    assert "stopped" in a.log()


# --- the configuration -------------------------------------------------------------------

def check_config(path):
    return subprocess.run([AGENT, "--check-config", path], capture_output=True, text=True,
                          timeout=20)


def test_check_config_ok(tmp_path):
    a = Agent(tmp_path / "a")
    r = check_config(a.conf)
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr
    r = check_config(os.path.join(ROOT, "conf", "agent.conf"))
    assert r.returncode == 0, r.stderr


def test_check_config_reports_every_error_with_its_line(tmp_path):
    path = str(tmp_path / "bad.conf")
    with open(path, "w") as f:
        f.write('cluster = "Demo";\n'                      # 1
                'node = { name = "a b"; };\n'              # 2
                'control = { sokcet = "/x"; };\n'          # 3
                'finder = { listen = "nowhere"; };\n'      # 4
                'cachestores = {\n'                        # 5
                '  port_min = 0;\n'                        # 6
                '  impls = { dpr-kv = "kv"; };\n'          # 7
                '};\n')
    r = check_config(path)
    assert r.returncode == 1
    lines = r.stderr.splitlines()
    for n, needle in ((1, "cluster"), (2, "node.name"), (3, "control.sokcet"),
                      (4, "finder.listen"), (6, "port_min"), (7, "impls.dpr-kv")):
        assert any(line.startswith("%s:%d: " % (path, n)) and needle in line for line in lines), \
            (n, needle, r.stderr)
    # a syntax error names its line
    with open(path, "w") as f:
        f.write('cluster = "demo";\n\nnode = { name = ; };\n')
    r = check_config(path)
    assert r.returncode == 1 and "%s:3: syntax error" % path in r.stderr
    # a missing file
    r = check_config(str(tmp_path / "missing.conf"))
    assert r.returncode == 1 and "No such file" in r.stderr


def test_bad_config_refuses_to_start(tmp_path):
    a = Agent(tmp_path / "a")
    with open(a.conf, "a") as f:
        f.write("typo = 1;\n")
    a.start(wait=False)
    assert a.wait_exit() == 1
    assert "unknown setting 'typo'" in a.log()


def test_usage():
    r = subprocess.run([AGENT, "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--check-config" in r.stdout
    r = subprocess.run([AGENT, "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2


# --- issue 8: finder tokens and the finder's address ----------------------------------------

def env_file(agent, name):
    with open(os.path.join(agent.instances, name + ".env")) as f:
        return dict(line.split("=", 1) for line in f.read().splitlines()
                    if line and not line.startswith("#"))


def finder_request(port, *args, host="127.0.0.1"):
    """One RESP request to the finder over a plain TCP connection (anyone on
    the network); the first line of the reply."""
    req = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        req += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(req)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def test_instances_get_finder_tokens(tmp_path):
    """Every instance gets a token of its own in its instance file (mode
    0600) and in agent.json (0600); the hosted finder refuses an
    unauthenticated DPR.WORKER.ADD for a running instance (started here by
    hand from its instance file, as its unit would); the token survives
    agent restarts and updates."""
    dprtest.need(dprtest.KV)
    a = Agent(tmp_path / "a").start()
    result_of(a.call("apply", {"spec": spec(kv(shards=2))}))
    tokens = {}
    for name in ("kv-0", "kv-1"):
        path = os.path.join(a.instances, name + ".env")
        assert os.stat(path).st_mode & 0o7777 == 0o600
        env = env_file(a, name)
        tok = env["DPR_KV_FINDER_TOKEN"]
        assert len(tok) == 32 and all(c in "0123456789abcdef" for c in tok)
        assert env["DPR_FINDER_TOKEN"] == tok
        tokens[name] = tok
    assert tokens["kv-0"] != tokens["kv-1"]
    assert os.stat(a.state).st_mode & 0o7777 == 0o600
    recorded = {i["name"]: i["token"] for i in json.loads(file_bytes(a.state))["instances"]}
    assert recorded == tokens
    # the status shows no token
    assert "token" not in json.dumps(result_of(a.call("status")))

    # kv-0 runs (what its unit would start: its instance file's variables)
    env = env_file(a, "kv-0")
    env["DPR_KV_LISTEN"] = "127.0.0.1:0"      # not the allocated port: tests run in parallel
    env["STATE_DIRECTORY"] = str(tmp_path / "kv-0")
    kvp = a.procs.add(dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]),
                                 str(tmp_path / "kv-0"), str(tmp_path / "kv-0.log"),
                                 env={k: v for k, v in env.items() if k.startswith("DPR_")}))
    kvp.wait_ready()
    assert "with a registration token" in kvp.output()
    port = int(env["DPR_KV_FINDER"].rsplit(":", 1)[1])
    worker = env["DPR_KV_WORKER"]
    s = result_of(a.call("status"))
    assert s["deployments"][0]["world_line"] == 1
    assert [(d["name"], d["world_line"], d["workers"]) for d in s["finder"]["domains"]] == \
        [("kv", 1, 1)]
    for args in ((), ("guess",), (tokens["kv-1"],)):
        reply = finder_request(port, "DPR.WORKER.ADD", "kv", worker, *args)
        assert reply == (b"-ERR worker %s is registered by its owner: DPR.WORKER.ADD needs its "
                         b"token" % worker.encode()), reply
        reply = finder_request(port, "DPR.WORKER.REMOVE", "kv", worker, *args)
        assert reply.startswith(b"-ERR worker %s is registered by its owner" % worker.encode())
    assert result_of(a.call("status"))["deployments"][0]["world_line"] == 1
    assert kvp.info()["dpr_world_line"] == 1 and kvp.alive()
    assert "refused: worker %s is registered by its owner" % worker in a.log()
    assert tokens["kv-0"] not in a.log()

    # an agent restart and an update keep the tokens
    a.stop()
    a.start()
    result_of(a.call("apply", {"spec": spec(kv(shards=3, checkpoint_interval_ms=50))}))
    assert env_file(a, "kv-0")["DPR_KV_FINDER_TOKEN"] == tokens["kv-0"]
    assert env_file(a, "kv-1")["DPR_KV_FINDER_TOKEN"] == tokens["kv-1"]
    assert env_file(a, "kv-2")["DPR_KV_FINDER_TOKEN"] not in tokens.values()
    kvp.stop()
    a.stop()


def test_state_from_before_tokens_gets_tokens(tmp_path):
    """An agent.json written before tokens (no "token" fields) loads: each
    instance gets a token, saved before the instance files carry it."""
    a = Agent(tmp_path / "a").start()
    result_of(a.call("apply", {"spec": spec(kv(shards=2))}))
    a.stop()
    st = json.loads(file_bytes(a.state))
    for rec in st["instances"]:
        del rec["token"]
    with open(a.state, "w") as f:
        json.dump(st, f)
    for name in ("kv-0", "kv-1"):   # instance files as the old agent wrote them
        path = os.path.join(a.instances, name + ".env")
        with open(path) as f:
            text = "".join(l for l in f if "TOKEN" not in l)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o644)
    a.start()
    saved = {i["name"]: i["token"] for i in json.loads(file_bytes(a.state))["instances"]}
    assert len(saved) == 2 and all(len(t) == 32 for t in saved.values())
    for name in ("kv-0", "kv-1"):
        assert env_file(a, name)["DPR_KV_FINDER_TOKEN"] == saved[name]
        assert os.stat(os.path.join(a.instances, name + ".env")).st_mode & 0o7777 == 0o600
    assert "got one" in a.log()
    a.stop()
    a.start()   # the same tokens after another restart
    assert {i["name"]: i["token"]
            for i in json.loads(file_bytes(a.state))["instances"]} == saved
    a.stop()


def test_wildcard_finder_listen_binds_node_address(tmp_path):
    """finder.listen with a wildcard host listens on node.address only (here
    127.0.0.2), not on every address of the machine; the log says so."""
    for wildcard in ("0.0.0.0:0", "*:0", "[::]:0"):
        a = Agent(tmp_path / ("a" + str(len(wildcard))))
        with open(a.conf) as f:
            text = f.read()
        text = text.replace('node = { name = "node1"; };',
                            'node = { name = "node1"; address = "127.0.0.2"; };')
        text = text.replace('finder = { listen = "127.0.0.1:0"; };',
                            'finder = { listen = "%s"; };' % wildcard)
        with open(a.conf, "w") as f:
            f.write(text)
        a.start()
        address = result_of(a.call("status"))["finder"]["address"]
        assert address.startswith("127.0.0.2:"), address
        port = int(address.rsplit(":", 1)[1])
        assert finder_request(port, "PING", host="127.0.0.2") == b"+PONG"
        # 127.0.0.1 is another address of this machine: nothing listens there
        with pytest.raises(ConnectionRefusedError):
            finder_request(port, "PING", host="127.0.0.1")
        log = a.log()
        assert ("finder listening on 127.0.0.2:%d only: finder.listen %s has a wildcard host"
                % (port, wildcard)) in log, log
        a.stop()
