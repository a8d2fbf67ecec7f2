"""The management API and dprctl against the REAL dpr-agent (build/dpr-agent),
started per test with a temporary config (tests/python-dpr/conftest.py).
Skipped, with the reason, while the binary does not exist.

Without systemd the agent validates, plans, records applies and deletes,
answers status/events/nodes and checks permissions; instances are not
started, so nothing becomes ready here (tests/cluster covers that).
"""
import json
import os
import socket
import subprocess
import threading
import time

import pytest

import dpr.cluster
from dpr.cluster import Plan, Status
from dpr.control import ControlConnection
from dpr.errors import DprError, ProtocolError
from dpr.mgmt_errors import (AgentProtocolError, AgentUnavailable, NotFound,
                             ReadyTimeout, SpecError)
from dpr.spec import CacheStore, ClusterSpec

from dprtest import DPRCTL, PYDIR, PYTHON, ROOT

EXAMPLE = os.path.join(ROOT, "examples", "cluster.yaml")
NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def kv(shards=3, **kw):
    return ClusterSpec("demo", [CacheStore("kv", version="1", shards=shards, **kw)])


def dprctl(agent, *args, input=None, user=None, timeout=30):
    env = dict(os.environ)
    env.pop("DPR_SOCKET", None)
    env["PYTHONPATH"] = PYDIR
    argv = [PYTHON, DPRCTL, "--socket", agent.socket] + list(args)
    if user is not None:
        argv = user + argv
    return subprocess.run(argv, capture_output=True, text=True, env=env, input=input,
                          timeout=timeout)


def raw(agent, data, read_lines=1, timeout=5.0):
    """Sends bytes on a fresh connection and returns the reply lines (parsed)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(agent.socket)
    buf = b""
    try:
        s.sendall(data)
        while buf.count(b"\n") < read_lines:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    return [json.loads(line) for line in buf.splitlines() if line.strip()]


# --- connecting -------------------------------------------------------------------

def test_connect_by_argument_and_environment(agent, monkeypatch):
    with dpr.cluster.connect(agent.socket) as c:
        st = c.status()
    assert isinstance(st, Status)
    assert st.cluster == "demo" and st.node == "node1"
    assert st.deployments == [] and isinstance(st.generation, int)
    monkeypatch.setenv("DPR_SOCKET", agent.socket)
    with dpr.cluster.connect() as c:
        assert c.socket_path == agent.socket
        assert c.status().cluster == "demo"


def test_many_requests_on_one_connection(agent):
    with dpr.cluster.connect(agent.socket) as c:
        for _ in range(20):
            assert c.status().cluster == "demo"
        assert c.nodes()[0].name == "node1"


def test_nodes(agent):
    with dpr.cluster.connect(agent.socket) as c:
        nodes = c.nodes()
    assert len(nodes) == 1
    n = nodes[0]
    assert n.name == "node1" and n.is_self and n.leader and n.state == "up"


# --- plan / apply / status / delete ------------------------------------------------

def test_plan_changes_nothing(agent):
    spec = ClusterSpec.from_file(EXAMPLE)
    with dpr.cluster.connect(agent.socket) as c:
        g0 = c.status().generation
        p = c.plan(spec)
        assert isinstance(p, Plan) and p.dry_run
        assert p.created == ["kv-0", "kv-1", "kv-2", "sessions-0", "sessions-1", "sessions-2"]
        assert p.updated == p.deleted == p.unchanged == []
        assert p.generation == g0
        d = c.apply(spec, dry_run=True)
        assert (d.created, d.generation) == (p.created, g0)
        st = c.status()
        assert st.deployments == [] and st.generation == g0


def test_apply_status_reapply_delete(agent):
    spec = ClusterSpec.from_file(EXAMPLE)
    with dpr.cluster.connect(agent.socket) as c:
        g0 = c.status().generation
        p = c.apply(spec)
        assert p.created == ["kv-0", "kv-1", "kv-2", "sessions-0", "sessions-1", "sessions-2"]
        assert p.changed and p.generation == g0 + 1

        st = c.status()
        assert st.generation == g0 + 1
        assert [d.name for d in st.deployments] == ["kv", "sessions"]
        k = st.deployment("kv")
        assert (k.impl, k.version, k.shards, k.checkpoint_interval_ms) == ("dpr-kv", "1", 3, 100)
        assert [i.name for i in k.instances] == ["kv-0", "kv-1", "kv-2"]
        assert [i.shard for i in k.instances] == [0, 1, 2]
        assert [i.unit for i in k.instances] == ["dpr-cachestore@kv-%d.service" % i
                                                 for i in range(3)]
        s = st.deployment("sessions")
        assert (s.checkpoint_interval_ms, s.max_clients) == (250, 1000)
        insts = st.instances
        assert len({i.worker for i in insts}) == 6 and all(isinstance(i.worker, int)
                                                            for i in insts)
        eps = [i.endpoint for i in insts]
        assert len(set(eps)) == 6
        for ep in eps:
            host, port = ep.rsplit(":", 1)
            assert host == "127.0.0.1" and agent.port_min <= int(port) <= agent.port_max
        assert all(i.node == "node1" for i in insts)
        assert not any(i.ready for i in insts)  # no systemd here

        # one deployment only
        one = c.status("kv")
        assert [d.name for d in one.deployments] == ["kv"]
        assert one.deployment("kv").endpoints == k.endpoints

        # the same spec again: nothing to do, same generation
        again = c.apply(spec)
        assert not again.changed and again.generation == g0 + 1
        assert again.unchanged == p.created

        # delete
        dp = c.delete("sessions")
        assert dp.deleted == ["sessions-0", "sessions-1", "sessions-2"]
        assert dp.generation == g0 + 2
        with pytest.raises(NotFound) as ei:
            c.status("sessions")
        assert ei.value.code == "not_found" and "sessions" in str(ei.value)
        with pytest.raises(NotFound):
            c.delete("sessions")
        assert [d.name for d in c.status().deployments] == ["kv"]
        # kv kept its identities
        assert c.status("kv").deployment("kv").endpoints == k.endpoints


def test_scale_and_update_keep_identities(agent):
    with dpr.cluster.connect(agent.socket) as c:
        c.apply(kv(3))
        before = {i.name: (i.worker, i.endpoint) for i in c.status().instances}
        p = c.plan(kv(4, checkpoint_interval_ms=50))
        assert p.created == ["kv-3"] and p.updated == ["kv-0", "kv-1", "kv-2"]
        g = c.apply(kv(4, checkpoint_interval_ms=50)).generation
        st = c.status("kv")
        d = st.deployment("kv")
        assert d.shards == 4 and d.checkpoint_interval_ms == 50 and st.generation == g
        after = {i.name: (i.worker, i.endpoint) for i in d.instances}
        for name, ident in before.items():
            assert after[name] == ident
        assert after["kv-3"][0] not in {w for w, _ in before.values()}
        # the shard count changed: a resize (its keys move), which runs until
        # the shards have moved them; no instance runs here (no systemd), so
        # it stays in progress and another count is refused meanwhile
        assert [(r["deployment"], r["from"], r["to"]) for r in p.resizes] == [("kv", 3, 4)]
        assert d.resizing and d.layout["resize"]["to"] == 4 and not d.is_ready
        with pytest.raises(SpecError, match=r"cachestores\[0\]\.shards: deployment 'kv' "
                           r"is being resized from 3 to 4 shards"):
            c.apply(kv(2, checkpoint_interval_ms=50))
        # a version change is an update
        p = c.apply(ClusterSpec("demo", [CacheStore("kv", version="2", shards=4,
                                                    checkpoint_interval_ms=50)]))
        assert p.updated == ["kv-0", "kv-1", "kv-2", "kv-3"] and p.resizes == []
        # an empty spec deletes everything (the resize with it)
        p = c.apply(ClusterSpec("demo", []))
        assert p.deleted == ["kv-0", "kv-1", "kv-2", "kv-3"]
        assert c.status().deployments == []


def test_state_survives_agent_restart(make_agent):
    a = make_agent()
    with dpr.cluster.connect(a.socket) as c:
        c.apply(kv(3))
        st = c.status()
    a.stop()
    a.start()
    with dpr.cluster.connect(a.socket) as c:
        st2 = c.status()
        assert st2.generation == st.generation
        assert [(i.name, i.worker, i.endpoint) for i in st2.instances] == \
            [(i.name, i.worker, i.endpoint) for i in st.instances]
        assert not c.apply(kv(3)).changed


# --- errors ------------------------------------------------------------------------

def test_agent_only_rules(agent):
    """Rules only the agent can check: its cluster name, its implementations."""
    with dpr.cluster.connect(agent.socket) as c:
        with pytest.raises(SpecError) as ei:
            c.apply(ClusterSpec("other", [CacheStore("kv", version="1", shards=1)]))
        assert ei.value.code == "spec_invalid"
        assert ei.value.problems == [("name", "must be this agent's cluster name 'demo' "
                                              "(got 'other')")]
        with pytest.raises(SpecError) as ei:
            c.plan(ClusterSpec("demo", [CacheStore("kv", impl="redis", version="1",
                                                   shards=1)]))
        assert ei.value.problems == [("cachestores[0].impl", "unknown implementation 'redis' "
                                                             "(this agent knows: dpr-kv)")]
        assert c.status().deployments == []


BAD_SPECS = [
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 0}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": -2}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1025}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": "3"}]},
    {"name": "demo", "cachestores": [{"name": "Kv_1", "version": "1", "shards": 1}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1, "shard": 1}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": 1, "shards": 1}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "a b", "shards": 1}]},
    {"name": "demo", "cachestores": [{"name": "kv", "shards": 1}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "checkpoint_interval_ms": 5, "max_clients": 0}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1},
                                     {"name": "kv", "version": "1", "shards": 2}, 7]},
    # maxmemory: a size in bytes or as in Redis, 0 or 1mb..16384gb
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "maxmemory": "1.5gb"}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "maxmemory": "1tb"}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "maxmemory": 1000}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "maxmemory": "16385gb"}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "maxmemory": "99999999999999999999"}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "maxmemory": -1}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "maxmemory": True}]},
    # checkpoint_mode: log or full
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "checkpoint_mode": "fast"}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "checkpoint_mode": 1}]},
    # tls: {"clients": required|optional|off} (the shape is checked first)
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "tls": {"clients": "yes"}}]},
    {"name": "demo", "cachestores": [{"name": "kv", "version": "1", "shards": 1,
                                      "tls": []}]},
    {"name": "demo", "cachestores": {}},
    {"name": "demo"},
    {"name": "demo", "cachestores": [], "extra": True},
    {"cachestores": []},
]


@pytest.mark.parametrize("bad", BAD_SPECS)
def test_client_checks_mirror_the_agent(agent, bad):
    """The client-side check reports the same paths, in the same order, as the
    agent, and messages that start the same way (the client may add a hint)."""
    with pytest.raises(SpecError) as client:
        ClusterSpec.from_dict(bad)
    with dpr.cluster.connect(agent.socket) as c:
        g = c.status().generation
        with pytest.raises(SpecError) as srv:
            c.apply(bad, validate=False)
        assert c.status().generation == g and c.status().deployments == []
    cp, sp = client.value.problems, srv.value.problems
    assert [p for p, _ in cp] == [p for p, _ in sp], (cp, sp)
    for (_, cm), (_, sm) in zip(cp, sp):
        stem = sm.split(" (")[0]
        assert cm.startswith(stem), (cm, sm)


def test_nothing_changes_after_an_invalid_spec(agent):
    with dpr.cluster.connect(agent.socket) as c:
        c.apply(kv(3))
        st = c.status()
        bad = kv(3).to_dict()
        bad["cachestores"].append({"name": "b", "version": "1", "shards": 0})
        with pytest.raises(SpecError):
            c.apply(bad, validate=False)
        st2 = c.status()
        assert st2.generation == st.generation
        assert [d.name for d in st2.deployments] == ["kv"]


def test_protocol_errors(agent):
    with ControlConnection(agent.socket) as conn:
        with pytest.raises(AgentProtocolError) as ei:
            conn.request("frobnicate", {})
        assert ei.value.code == "bad_request" and isinstance(ei.value, ProtocolError)
        with pytest.raises(AgentProtocolError) as ei:
            conn.request("status", {"bogus": 1})
        assert ei.value.code == "bad_request"
        with pytest.raises(AgentProtocolError):
            conn.request("delete", {})
        # the connection is usable again afterwards
        assert conn.request("status", {})["cluster"] == "demo"
    r = raw(agent, b'{"v": 2, "id": "x", "op": "status"}\n')
    assert r[0]["ok"] is False and r[0]["error"]["code"] == "unsupported_version"
    assert r[0]["id"] == "x"
    r = raw(agent, b'this is not json\n')
    assert r[0]["ok"] is False and r[0]["error"]["code"] == "bad_request"
    r = raw(agent, b'[1, 2]\n')
    assert r[0]["error"]["code"] == "bad_request"
    # the id is copied, whatever JSON it is; several requests are answered in order
    r = raw(agent, b'{"v":1,"id":{"a":[1]},"op":"nodes"}\n{"v":1,"id":2,"op":"status"}\n',
            read_lines=2)
    assert [x["id"] for x in r] == [{"a": [1]}, 2] and all(x["ok"] for x in r)


def test_overlong_line_is_refused(agent):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(agent.socket)
    try:
        try:
            s.sendall(b"x" * (1024 * 1024 + 10))
        except (BrokenPipeError, ConnectionResetError):
            pass
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    lines = [json.loads(x) for x in buf.splitlines() if x.strip()]
    assert lines and lines[0]["error"]["code"] == "bad_request"


def test_agent_gone(make_agent):
    a = make_agent()
    c = dpr.cluster.connect(a.socket)
    try:
        assert c.status().cluster == "demo"
        a.stop()
        with pytest.raises(AgentUnavailable) as ei:
            c.status()
        assert isinstance(ei.value, DprError)
        msg = str(ei.value)
        assert a.socket in msg
    finally:
        c.close()
    with pytest.raises(AgentUnavailable) as ei:
        dpr.cluster.connect(a.socket)
    assert "is dpr-agent running? (systemctl status dpr-agent)" in str(ei.value)


# --- events and waiting -------------------------------------------------------------

def test_events_stream(agent):
    with dpr.cluster.connect(agent.socket) as c:
        with c.events() as stream:
            c.apply(kv(2))
            c.delete("kv")
            seen = []
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and not {"apply", "delete"} <= {e.type
                                                                               for e in seen}:
                ev = stream.next(1.0)
                if ev is not None:
                    seen.append(ev)
        types = [e.type for e in seen]
        assert "apply" in types and "delete" in types, types
        ap = next(e for e in seen if e.type == "apply")
        assert ap["plan"]["created"] == ["kv-0", "kv-1"]
        seqs = [e.seq for e in seen]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert all(isinstance(e.time, str) for e in seen)


def test_wait_ready_times_out_without_systemd(agent):
    with dpr.cluster.connect(agent.socket) as c:
        c.apply(kv(2))
        seen = []
        t0 = time.monotonic()
        with pytest.raises(ReadyTimeout) as ei:
            c.wait_ready("kv", timeout=1.0, progress=seen.append)
        assert 0.9 < time.monotonic() - t0 < 5
        e = ei.value
        assert [i.name for i in e.not_ready] == ["kv-0", "kv-1"]
        assert str(e).startswith("not ready after 1s: kv: 0/2 ready; not ready: kv-0, kv-1 ("
                                 "unknown, last error: ")
        assert "the agent cannot reach systemd" in str(e)
        assert e.status.systemd_connected is False
        assert seen and isinstance(seen[0], Status)
        # also by polling
        with pytest.raises(ReadyTimeout):
            c.wait_ready(["kv"], timeout=0.3, use_events=False)
        with pytest.raises(NotFound):
            c.wait_ready("nope", timeout=5)


def test_wait_ready_with_no_deployments_returns(agent):
    with dpr.cluster.connect(agent.socket) as c:
        assert c.wait_ready(timeout=2).deployments == []


def test_client_helper(agent):
    """cluster.client(name): a dpr.Client on the deployment's endpoints in shard
    order and the finder's address, in the deployment's DPR domain (its name)
    (built only: nothing runs without systemd)."""
    import dpr
    with dpr.cluster.connect(agent.socket) as c:
        with pytest.raises(NotFound):
            c.client("kv")
        c.apply(kv(3))
        st = c.status("kv")
        client = c.client("kv", timeout=1.0)
    assert isinstance(client, dpr.Client)
    assert client.shards == st.deployment("kv").endpoints
    assert client.finder == st.finder.address == "127.0.0.1:%d" % agent.finder_port
    assert client.timeout == 1.0
    assert client.domain == "kv"
    # nothing registered with the finder yet: no domain, no world-line
    assert st.finder.domains == [] and st.deployment("kv").domain == "kv"
    assert st.world_lines == {"kv": None} and st.cuts == {"kv": [None, None, None]}


# --- permission ----------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="running a client as nobody "
                                "(setpriv) needs root")


def _as_nobody(agent, code, groups=None):
    user = ["setpriv", "--reuid=65534", "--regid=65534"]
    user += ["--groups=%s" % ",".join(map(str, groups))] if groups else ["--clear-groups"]
    env = dict(os.environ)
    env["PYTHONPATH"] = PYDIR
    env.pop("DPR_SOCKET", None)
    return subprocess.run(user + [PYTHON, "-c", code, agent.socket], capture_output=True,
                          text=True, env=env, timeout=30, cwd="/")


CHECK = """
import sys, dpr.cluster
from dpr.mgmt_errors import PermissionDenied
try:
    with dpr.cluster.connect(sys.argv[1]) as c:
        print("served", c.status().cluster)
except PermissionDenied as e:
    print("denied", e.code, e)
"""


@needs_root
def test_permission_denied_for_others(agent):
    r = _as_nobody(agent, CHECK)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("denied permission_denied "), r.stdout
    assert "dpr" in r.stdout  # names the group to join
    r = dprctl(agent, "status", user=NOBODY)
    assert r.returncode == 1
    assert r.stderr.startswith("dprctl: ") and len(r.stderr.splitlines()) == 1
    assert "group" in r.stderr
    # the event stream says the same (refused at connect, before its request)
    r = dprctl(agent, "events", user=NOBODY)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert r.stderr.startswith("dprctl: ") and "group" in r.stderr, r.stderr


@needs_root
def test_control_group_members_are_served(make_agent):
    import grp
    try:
        gid = grp.getgrnam("adm").gr_gid   # any group nobody is not in
    except KeyError:
        pytest.skip("no group 'adm' on this host")
    a = make_agent(group="adm")
    r = _as_nobody(a, CHECK, groups=[gid])
    assert r.stdout.strip() == "served demo", (r.stdout, r.stderr)
    r = _as_nobody(a, CHECK)
    assert r.stdout.startswith("denied"), (r.stdout, r.stderr)


# --- dprctl ----------------------------------------------------------------------------

def test_dprctl_plan_apply_status_delete(agent):
    r = dprctl(agent, "plan", "-f", EXAMPLE)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("plan against generation ")
    assert lines[0].endswith(": 6 created, 0 updated, 0 deleted, 0 unchanged")
    assert lines[1:] == ["  + %s  (create)" % n for n in
                         ["kv-0", "kv-1", "kv-2", "sessions-0", "sessions-1", "sessions-2"]]
    r = dprctl(agent, "plan", "-f", EXAMPLE, "--detailed-exitcode")
    assert r.returncode == 2, r.stderr  # changes pending

    r = dprctl(agent, "apply", "-f", EXAMPLE, "--dry-run")
    assert r.returncode == 0 and r.stdout.startswith("plan against generation ")

    r = dprctl(agent, "apply", "-f", EXAMPLE)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith("applied, generation ")
    assert "  + kv-0  (created)" in r.stdout
    r = dprctl(agent, "apply", "-f", "-", input=open(EXAMPLE).read())
    assert r.returncode == 0
    assert r.stdout.strip().endswith("0 created, 0 updated, 0 deleted, 6 unchanged — already "
                                     "up to date")
    r = dprctl(agent, "plan", "-f", EXAMPLE, "--detailed-exitcode")
    assert r.returncode == 0 and r.stderr == "", r.stderr  # nothing to do
    # what a plan does to data and clients, said on stderr
    with open(EXAMPLE) as f:
        changed = f.read().replace("shards: 3", "shards: 2", 1)
    r = dprctl(agent, "plan", "-f", "-", "--detailed-exitcode", input=changed)
    assert r.returncode == 2, r.stderr
    assert "dprctl: warning: will delete an instance with its data (checkpoints; " in r.stderr
    assert "go from 3 to 2 shards: keys move" in r.stderr, r.stderr

    r = dprctl(agent, "status")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0].startswith("cluster demo  node node1  generation ")
    assert out[1].startswith("warning: the agent cannot reach systemd (")
    k = next(i for i, line in enumerate(out) if line.startswith("DEPLOYMENT"))
    assert out[k + 1].split()[:5] == ["kv", "dpr-kv", "1", "3", "0/3"]
    assert out[k + 2].split()[:5] == ["sessions", "dpr-kv", "1", "3", "0/3"]
    assert out[k + 3] == ""
    hdr = out[k + 4]
    assert hdr.split()[0] == "INSTANCE"
    rows = out[k + 5:]
    assert [row.split()[0] for row in rows] == ["kv-0", "kv-1", "kv-2", "sessions-0",
                                                "sessions-1", "sessions-2"]
    col = hdr.index("ENDPOINT")
    assert all(row[col:].startswith("127.0.0.1:") for row in rows)

    r = dprctl(agent, "status", "kv", "--json")
    assert r.returncode == 0
    j = json.loads(r.stdout)
    assert [d["name"] for d in j["deployments"]] == ["kv"]

    r = dprctl(agent, "status", "nope")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.startswith("dprctl: ") and "nope" in r.stderr
    assert len(r.stderr.splitlines()) == 1

    # delete: without a terminal to ask on, only with --yes
    r = dprctl(agent, "delete", "sessions")
    assert r.returncode == 1 and "give --yes" in r.stderr, r.stderr
    r = dprctl(agent, "delete", "sessions", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("would delete sessions, generation ")
    assert r.stdout.strip().endswith(": sessions-0 sessions-1 sessions-2")
    r = dprctl(agent, "delete", "sessions", "--yes")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(": sessions-0 sessions-1 sessions-2")
    r = dprctl(agent, "delete", "sessions", "--yes")
    assert r.returncode == 1 and "sessions" in r.stderr
    r = dprctl(agent, "delete", "sessions", "--ignore-not-found")
    assert r.returncode == 0 and "no such deployment" in r.stdout, r.stderr

    r = dprctl(agent, "nodes")
    assert r.returncode == 0
    assert r.stdout.splitlines()[0].split() == ["NODE", "ADDRESS", "SELF", "LEADER", "STATE",
                                                "ROLE", "TERM", "CONTACT", "HEALTH",
                                                "INSTANCES", "LABELS"]
    assert r.stdout.splitlines()[1].split()[:6] == ["node1", "127.0.0.1", "yes", "yes", "up",
                                                    "single"]
    # a single node has no members to remove
    r = dprctl(agent, "nodes", "remove", "node2")
    assert r.returncode == 1 and "not in a cluster of agents" in r.stderr, r.stderr
    r = dprctl(agent, "nodes", "remove")
    assert r.returncode == 2 and "which node?" in r.stderr, r.stderr


def test_dprctl_agent_side_spec_error(agent, tmp_path):
    f = tmp_path / "other.yaml"
    f.write_text("name: other\ncachestores:\n  - name: kv\n    impl: nosuch\n    version: '1'\n"
                 "    shards: 1\n")
    r = dprctl(agent, "apply", "-f", str(f))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        "dprctl: %s: name: must be this agent's cluster name 'demo' (got 'other')" % f,
        "dprctl: %s: cachestores[0].impl: unknown implementation 'nosuch' (this agent knows: "
        "dpr-kv)" % f]


def test_dprctl_wait_shows_progress_and_times_out(agent):
    r = dprctl(agent, "apply", "-f", EXAMPLE, "--wait", "--timeout", "1")
    assert r.returncode == 1
    assert r.stdout.startswith("applied, generation ")
    err = r.stderr.splitlines()
    assert err[0].startswith("[  0.0s] waiting: kv 0/3 ready [kv-0 unknown, kv-1 unknown, ")
    assert err[-1].startswith("dprctl: not ready after 1s: kv: 0/3 ready; not ready: kv-0, "
                              "kv-1, kv-2 (unknown, last error: ")
    assert len(err) == 2


def test_dprctl_events(agent):
    env = dict(os.environ, PYTHONPATH=PYDIR)
    p = subprocess.Popen([PYTHON, DPRCTL, "--socket", agent.socket, "events"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # the stream is open once dprctl said so on stderr
        line = p.stderr.readline()
        assert line.startswith("following events from %s" % agent.socket), line
        with dpr.cluster.connect(agent.socket) as c:
            c.apply(kv(1))
        got = []
        timer = threading.Timer(10, p.kill)
        timer.start()
        try:
            for out in p.stdout:
                got.append(out)
                if " apply " in out:
                    break
        finally:
            timer.cancel()
        assert any(" apply +kv-0" in g for g in got), got
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        p.stdout.close()
        p.stderr.close()


def test_rollout_methods_without_systemd(agent):
    """Roll-outs through Cluster and dprctl (no systemd: nothing runs, so
    updated instances stay outdated and the roll-out stays in progress)."""
    from dpr.mgmt_errors import RolloutHalted  # noqa: F401 (exported)
    with dpr.cluster.connect(agent.socket) as c:
        g1 = c.apply(kv(2)).generation
        d = c.deployment("kv")
        assert [(i.generation, i.running_generation, i.running_version, i.outdated)
                for i in d.instances] == [(g1, g1, "1", False)] * 2
        ro = c.rollout_status("kv")
        assert ro["halted"] is None and ro["can_undo"] is False and ro["targets"] == 2
        assert ro["settings"] == {"min_ready_seconds": 0, "max_unavailable": 1, "partition": 0,
                                  "progress_deadline_seconds": 120, "paused": False}
        with pytest.raises(NotFound, match="nothing to undo"):
            c.rollout_undo("kv")
        g2 = c.apply(ClusterSpec("demo", [CacheStore("kv", version="2", shards=2)])).generation
        d = c.deployment("kv")
        assert [(i.generation, i.running_generation, i.running_version, i.outdated)
                for i in d.instances] == [(g2, g1, "1", True)] * 2
        assert d.rollout_phase == "progressing" and not d.rollout_done and not d.is_ready
        # pause: the spec says so; a change of rollout alone is no new generation
        p = c.rollout_pause("kv")
        assert p.generation == g2 and p.updated == []
        d = c.deployment("kv")
        assert d.rollout_phase == "paused" and d.rollout["paused"] is True
        assert d.raw["rollout"]["settings"]["paused"] is True
        with pytest.raises(ReadyTimeout, match=r"roll-out paused: 0/2 updated; waiting for an "
                                               r"update: kv-0, kv-1"):
            c.wait_ready("kv", timeout=0.5)
        assert c.rollout_resume("kv").generation == g2
        assert c.deployment("kv").rollout_phase == "progressing"
        # undo: back to version 1, which the processes still run
        p = c.rollout_undo("kv")
        assert p.generation == g2 + 1 and p.updated == ["kv-0", "kv-1"]
        d = c.deployment("kv")
        assert d.version == "1" and not any(i.outdated for i in d.instances)
        assert [i.running_generation for i in d.instances] == [g2 + 1] * 2
        assert d.rollout_phase == "done" and d.rollout["can_undo"] is True
        with pytest.raises(NotFound):
            c.rollout_status("nope")
    # dprctl rollout
    out = dprctl(agent, "rollout", "status", "kv")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "kv: roll-out done, 2/2 updated, 2 unavailable"
    out = dprctl(agent, "rollout", "status", "kv", "--json")
    assert json.loads(out.stdout)["phase"] == "done"
    out = dprctl(agent, "rollout", "pause", "kv")
    assert out.returncode == 0 and out.stdout.startswith("kv: rollout pause, generation ")
    out = dprctl(agent, "rollout", "rewind", "kv")
    assert out.returncode == 2 and "invalid choice" in out.stderr
    out = dprctl(agent, "rollout", "undo", "nope")
    assert out.returncode == 1 and "no deployment named 'nope'" in out.stderr


def test_wait_ready_fails_fast_when_a_rollout_halted(monkeypatch):
    """wait_ready raises RolloutHalted with the agent's reason at once."""
    from dpr.mgmt_errors import RolloutHalted
    halted = {"name": "kv", "version": "2", "shards": 1, "layout": {"epoch": 1},
              "rollout": {"phase": "halted", "halted": "kv-0 failed after its update",
                          "updated": 1, "targets": 1, "settings": {"partition": 0}},
              "instances": [{"name": "kv-0", "shard": 0, "ready": False, "outdated": False}]}
    st = Status.from_result({"cluster": "demo", "deployments": [halted]})
    c = dpr.cluster.Cluster.__new__(dpr.cluster.Cluster)
    monkeypatch.setattr(c, "_status_of", lambda names: st, raising=False)
    t0 = time.monotonic()
    with pytest.raises(RolloutHalted) as ei:
        c.wait_ready("kv", timeout=30, use_events=False)
    assert time.monotonic() - t0 < 1
    assert ei.value.deployment == "kv" and ei.value.reason == "kv-0 failed after its update"
    assert str(ei.value) == "kv: roll-out halted: kv-0 failed after its update"
    # a partition: the shards below it may stay outdated
    d = dpr.cluster.Deployment.from_dict(
        {"name": "kv", "shards": 2, "layout": {"epoch": 1},
         "rollout": {"phase": "done", "settings": {"partition": 1}},
         "instances": [{"name": "kv-0", "ready": True, "outdated": True},
                       {"name": "kv-1", "ready": True, "outdated": False}]})
    assert d.rollout_done and d.is_ready
    d.rollout["settings"]["partition"] = 0
    assert not d.rollout_done and not d.is_ready
