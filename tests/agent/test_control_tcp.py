"""The control API over TCP (control.listen, control.remote_access;
docs/control-api.md, "Over TCP"): dpr-agent without systemd, as in
test_agent_host.py, with a TCP listener on a free loopback port besides its
control socket.

What is checked:
- the same protocol as on the Unix socket: status, nodes, events, plan and
  apply with dry_run are served over TCP; garbage, unknown ops and long
  lines get exactly the replies the Unix socket gives;
- read-only (the default): apply, delete and node_remove get a
  permission_denied reply with the request's id, the connection stays open,
  nothing changes; with remote_access = "full" they are served;
- limits: TCP callers count toward control.max_connections, never take
  root's slots, are held to control.max_connections_per_user per IP address
  (all their connections together), are cut by control.idle_timeout_ms and
  by control.max_input_bytes (before root's connections) like local ones;
- the log says where it listens and how, warns about "full", and the Unix
  socket is served as before.
"""
import json
import os
import socket
import time

import dprtest
from test_agent_host import Agent, Conn, error_of, kv, needs_root, result_of, run_as, spec
from test_agent_host import stop_every_agent  # noqa: F401 (autouse: stops every Agent)
from test_control_abuse import read_end

MIB = 1024 * 1024
VERBOSE = "log = { verbose = true; };\n"


class TcpConn(Conn):
    """One control connection over TCP (same framing as Conn)."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=5.0):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if source:
            self.sock.bind((source, 0))
        self.sock.connect((host, port))
        self.buf = b""


def tcp_agent(tmp_path, access=None, control="", listen_host="127.0.0.1", extra_conf=VERBOSE):
    """A started Agent with control.listen on a free port; .port is it."""
    port = dprtest.free_port()
    conf = 'listen = "%s:%d"; ' % (listen_host, port)
    if access:
        conf += 'remote_access = "%s"; ' % access
    a = Agent(tmp_path / "a", control=conf + control, extra_conf=extra_conf).start()
    a.port = port
    dprtest.wait_for(lambda: dprtest.accepts(port), what="the TCP listener")
    return a


def tcp(a, **kw):
    return TcpConn(a.port, **kw)


def tcp_call(a, op, args=None, **kw):
    c = tcp(a)
    try:
        return c.call(op, args, **kw)
    finally:
        c.close()


def generation(a):
    return result_of(a.call("status"))["generation"]


def stop_clean(a):
    a.stop()
    assert a.proc.returncode == 0, a.log()


# --- read-only (the default) ---------------------------------------------------------------

def test_read_operations_are_served_over_tcp(tmp_path):
    a = tcp_agent(tmp_path)
    log = a.log()
    assert ("serving the control API over TCP on 127.0.0.1:%d too, read-only" % a.port) in log
    assert "no authentication" not in log  # the warning is for "full" only
    c = tcp(a)
    ev = tcp(a)
    try:
        st = result_of(c.call("status", id=1))
        assert st["cluster"] == "demo" and st["node"] == "node1" and st["generation"] == 0
        nodes = result_of(c.call("nodes", id=2))["nodes"]
        assert [n["name"] for n in nodes] == ["node1"] and nodes[0]["self"] is True
        plan = result_of(c.call("plan", {"spec": spec(kv(shards=2))}, id=3))
        assert plan["plan"]["created"] == ["kv-0", "kv-1"], plan
        dry = c.call("apply", {"spec": spec(kv(shards=2)), "dry_run": True}, id=4)
        assert dry["id"] == 4 and result_of(dry)["plan"]["created"] == ["kv-0", "kv-1"]
        assert generation(a) == 0 and not os.path.exists(a.state)  # nothing was applied
        assert result_of(ev.call("events", id=5)) == {"stream": "events"}
        # a change made on the Unix socket (root) reaches the TCP event stream
        assert result_of(a.call("apply", {"spec": spec(kv(shards=2))}))["generation"] == 1
        ev.sock.settimeout(30)
        e = ev.line()["event"]
        assert e["type"] == "apply" and e["generation"] == 1
        st = result_of(c.call("status", {"name": "kv"}))
        assert [d["name"] for d in st["deployments"]] == ["kv"] and st["generation"] == 1
    finally:
        c.close()
        ev.close()
    stop_clean(a)


def test_changes_are_refused_over_tcp_when_read_only(tmp_path):
    a = tcp_agent(tmp_path)
    result_of(a.call("apply", {"spec": spec(kv(shards=1))}))
    before = open(a.state, "rb").read()
    c = tcp(a)
    try:
        cases = [("apply", {"spec": spec(kv(shards=3))}, "apply"),
                 ("apply", {"spec": spec(kv(shards=3)), "dry_run": False}, "apply"),
                 ("delete", {"name": "kv"}, "delete"),
                 ("node_remove", {"name": "node2"}, "node_remove")]
        for i, (op, args, name) in enumerate(cases):
            r = c.call(op, args, id=i)
            e = error_of(r)
            assert r["id"] == i  # the normal error reply, answering the request
            assert e["code"] == "permission_denied", e
            assert e["message"] == (
                '%s is refused over TCP: this agent\'s control.remote_access is read-only '
                '(set "full" to allow, only on a trusted network until TLS)' % name), e
        # the connection stays open and is served
        assert result_of(c.call("nodes", id="after"))
        # a bad request is still a bad request (checked before the permission)
        assert error_of(c.call("delete", {}))["code"] == "bad_request"
    finally:
        c.close()
    assert open(a.state, "rb").read() == before and generation(a) == 1
    log = a.log()
    assert "control client 127.0.0.1:" in log and ": apply refused: control.remote_access " \
        "is read-only" in log
    assert ": delete refused" in log and ": node_remove refused" in log
    # the Unix socket is not affected: root changes things as before
    assert result_of(a.call("delete", {"name": "kv"}))["generation"] == 2
    stop_clean(a)


def test_refused_requests_are_logged_at_most_10_a_second(tmp_path):
    a = tcp_agent(tmp_path)
    c = tcp(a)
    try:
        n = 200
        c.send_raw(b"".join(b'{"v":1,"op":"delete","args":{"name":"kv"},"id":%d}\n' % i
                            for i in range(n)))
        c.sock.settimeout(30)
        replies = [c.line() for _ in range(n)]
    finally:
        c.close()
    assert [r["id"] for r in replies] == list(range(n))
    assert all(error_of(r)["code"] == "permission_denied" for r in replies)

    def counted():
        log = a.log().splitlines()
        one = sum(1 for line in log if ": delete refused: control.remote_access" in line)
        more = sum(int(line.split("control socket: ")[1].split()[0]) for line in log
                   if "more requests over TCP refused" in line)
        return one + more == n and (one, more)
    one, more = dprtest.wait_for(counted, what="%d refusals in the log" % n)
    assert one <= 20 and more > 0
    stop_clean(a)


# --- full access -----------------------------------------------------------------------------

def test_full_access_serves_changes_over_tcp(tmp_path):
    a = tcp_agent(tmp_path, access="full")
    log = a.log()
    assert ("serving the control API over TCP on 127.0.0.1:%d too, with full access" % a.port) \
        in log
    warn = [line for line in log.splitlines() if "no authentication" in line]
    assert len(warn) == 1 and "trusted network" in warn[0], log
    c = tcp(a)
    try:
        r = result_of(c.call("apply", {"spec": spec(kv(shards=2))}, id=1))
        assert r["generation"] == 1 and r["plan"]["created"] == ["kv-0", "kv-1"]
        assert generation(a) == 1
        with open(a.state) as f:
            assert json.load(f)["generation"] == 1
        r = result_of(c.call("delete", {"name": "kv"}, id=2))
        assert r["generation"] == 2 and r["plan"]["deleted"] == ["kv-0", "kv-1"]
        # node_remove is served too (and answered as on the Unix socket)
        tcp_reply = c.call("node_remove", {"name": "node2"}, id=3)
        unix_reply = a.call("node_remove", {"name": "node2"}, id=3)
        assert tcp_reply == unix_reply and error_of(tcp_reply)["code"] == "bad_request"
    finally:
        c.close()
    stop_clean(a)


# --- the same protocol ----------------------------------------------------------------------

GARBAGE = [b"this is not json\n",
           b"[1, 2]\n",
           b'{"v":2,"op":"status","id":5}\n',
           b'{"v":1,"op":"reboot","id":6}\n',
           b'{"v":1,"op":"status","args":{"nam":"kv"}}\n',
           b'{"v":1,"op":"apply","args":{}}\n',
           b'{"v":1,"op":"status","color":"red"}\n',
           b'{"v":1,"op":"status","op":"nodes"}\n',
           b'{"v":"1","op":"nodes"}\n',
           b'\xff\xfe{"v":1}\n',
           b"\n\r\n",  # blank lines: no reply
           b'{"v":1,"op":"nodes","id":{"any":["json"]}}\n']


def answers(c, lines):
    out = []
    for line in lines:
        c.send_raw(line)
        if line.strip():
            out.append(c.line())
    return out


def test_garbage_gets_the_same_replies_as_on_the_unix_socket(tmp_path):
    a = tcp_agent(tmp_path)
    u, t = a.connect(), tcp(a)
    try:
        on_unix, on_tcp = answers(u, GARBAGE), answers(t, GARBAGE)
        assert on_tcp == on_unix
        assert [r["ok"] for r in on_tcp] == [False] * 10 + [True]
        codes = [error_of(r)["code"] for r in on_tcp[:10]]
        assert codes == ["bad_request", "bad_request", "unsupported_version"] + \
            ["bad_request"] * 7, codes
        # several requests in one write: answered in order
        t.send_raw(b"".join(b'{"v":1,"op":"nodes","id":%d}\n' % i for i in range(20)))
        assert [t.line()["id"] for _ in range(20)] == list(range(20))
    finally:
        u.close()
        t.close()
    stop_clean(a)


def test_line_limit_over_tcp(tmp_path):
    a = tcp_agent(tmp_path)
    c = tcp(a, timeout=10)
    big = b'{"v":1,"op":"status","id":"' + b"x" * (MIB + 10) + b'"}\n'
    try:
        c.send_raw(big)
    except (BrokenPipeError, ConnectionResetError):
        pass
    e = error_of(c.line())
    assert e == {"code": "bad_request", "message": "request line longer than 1 MiB"}
    assert c.closed()
    c.close()
    c = tcp(a, timeout=10)
    ok = json.dumps({"v": 1, "op": "nodes", "id": "y" * (MIB - 100)}).encode() + b"\n"
    c.send_raw(ok)
    assert c.line()["id"] == "y" * (MIB - 100)
    c.close()
    stop_clean(a)


# --- limits ----------------------------------------------------------------------------------

def test_per_ip_limit_counts_all_connections_of_one_address(tmp_path):
    a = tcp_agent(tmp_path, control="max_connections_per_user = 4;")
    conns = []
    try:
        for _ in range(4):
            c = tcp(a)
            conns.append(c)
            assert result_of(c.call("nodes"))
        over = tcp(a)
        conns.append(over)
        reply, ended = read_end(over)
        e = error_of(reply)
        assert "id" not in reply and ended
        assert e["code"] == "unavailable" and e["message"] == (
            "too many control connections from 127.0.0.1 (control.max_connections_per_user = "
            "4, for all TCP connections from one address); close some and retry"), e
        # another address (127.0.0.2 is loopback too) has a count of its own
        other = tcp(a, source="127.0.0.2")
        conns.append(other)
        assert result_of(other.call("nodes"))
        # root on the Unix socket is not held to the TCP callers' count
        assert result_of(a.call("status"))
        # one closed: a slot for 127.0.0.1 again
        conns[0].close()
        dprtest.wait_for(lambda: tcp_call(a, "nodes").get("ok"), what="a slot for 127.0.0.1")
    finally:
        for c in conns:
            c.close()
    assert "refused: too many control connections from 127.0.0.1" in a.log()
    stop_clean(a)


def test_tcp_callers_never_take_roots_slots(tmp_path):
    a = tcp_agent(tmp_path, control="max_connections = 8; root_reserved_connections = 3;")
    conns = []
    try:
        for _ in range(5):
            c = tcp(a)
            conns.append(c)
            assert result_of(c.call("nodes"))
        c = tcp(a)
        conns.append(c)
        reply, ended = read_end(c)
        e = error_of(reply)
        assert e["code"] == "unavailable" and "kept for root" in e["message"] and ended
        # root gets the 3 kept slots, then the total (which counts the TCP ones) is reached
        for _ in range(3):
            c = a.connect()
            conns.append(c)
            assert result_of(c.call("nodes"))
        c = a.connect()
        conns.append(c)
        e = error_of(c.line())
        assert e["code"] == "unavailable" and "max_connections = 8" in e["message"]
    finally:
        for c in conns:
            c.close()
    dprtest.wait_for(lambda: tcp_call(a, "nodes").get("ok"), what="a slot over TCP")
    stop_clean(a)


def test_idle_and_unfinished_tcp_connections_are_closed(tmp_path):
    a = tcp_agent(tmp_path, control="idle_timeout_ms = 1000;")
    idle, used, partial, ev = (tcp(a) for _ in range(4))
    try:
        assert result_of(used.call("nodes"))
        assert result_of(ev.call("events")) == {"stream": "events"}
        partial.send_raw(b'{"v":1,')
        for c in (idle, used):
            reply, ended = read_end(c)
            e = error_of(reply)
            assert e["code"] == "unavailable" and "idle for 1000 ms" in e["message"], e
            assert "id" not in reply and ended
        reply, ended = read_end(partial)
        e = error_of(reply)
        assert e["code"] == "bad_request" and "not completed within 1000 ms" in e["message"]
        assert ended
        # an event stream is never cut for idleness
        time.sleep(1.5)
        result_of(a.call("apply", {"spec": spec(kv(shards=1))}))
        ev.sock.settimeout(30)
        assert ev.line()["event"]["type"] == "apply"
    finally:
        for c in (idle, used, partial, ev):
            c.close()
    assert "request line not completed within 1000 ms; closing" in a.log()
    stop_clean(a)


def test_input_budget_closes_tcp_holders_before_root(tmp_path):
    # 2 MiB for all connections: root's 1 MiB partial line and a TCP
    # caller's fit; a second TCP caller's makes the agent close a TCP one
    a = tcp_agent(tmp_path, control="max_input_bytes = 2097152;")
    root = a.connect()
    remote = [tcp(a, timeout=30), tcp(a, timeout=30)]
    part = b'{"v":1,"op":"nodes","id":"' + b"y" * (MIB - 100)
    try:
        root.sock.settimeout(30)
        root.send_raw(part)
        time.sleep(0.3)  # root's bytes are buffered first
        for c in remote:
            try:
                c.send_raw(part)
            except (BrokenPipeError, ConnectionResetError):
                pass
            time.sleep(0.3)
        got = []
        for c in remote:
            try:
                c.send_raw(b'"}\n')
            except (BrokenPipeError, ConnectionResetError):
                pass
            got.append(c.line())
        root.send_raw(b'"}\n')
        assert root.line()["id"] == "y" * (MIB - 100)  # root's was kept
    finally:
        root.close()
        for c in remote:
            c.close()
    full = [r for r in got if not r["ok"]]
    assert len(full) == 1, got
    e = error_of(full[0])
    assert e["code"] == "unavailable" and "max_input_bytes = 2097152" in e["message"]
    stop_clean(a)


# --- where it listens ------------------------------------------------------------------------

def test_wildcard_listens_on_every_address(tmp_path):
    a = tcp_agent(tmp_path, listen_host="*")
    log = a.log()
    assert ("over TCP on [::]:%d too" % a.port) in log or \
        ("over TCP on 0.0.0.0:%d too" % a.port) in log, log
    assert result_of(tcp_call(a, "nodes"))
    ipv6 = ("over TCP on [::]:%d" % a.port) in log
    if ipv6:
        c = TcpConn(a.port, host="::1")
        try:
            assert result_of(c.call("nodes"))
        finally:
            c.close()
    # an IPv4 caller of the dual-stack listener is named by its IPv4 address
    dprtest.wait_for(lambda: [line for line in a.log().splitlines()
                              if "control client 127.0.0.1:" in line and
                              "connected over TCP" in line], what="the debug line")
    if ipv6:
        assert "control client [::1]:" in a.log()
    assert "::ffff:" not in a.log()
    stop_clean(a)


def test_a_port_in_use_stops_the_start(tmp_path):
    port = dprtest.free_port()
    busy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", port))
    busy.listen(1)
    try:
        a = Agent(tmp_path / "a", control='listen = "127.0.0.1:%d";' % port).start(wait=False)
        rc = a.wait_exit(30)
        assert rc != 0
        log = a.log()
        assert ("control.listen: cannot listen on 127.0.0.1:%d: address already in use"
                % port) in log, log
        assert not os.path.exists(a.sock)  # the Unix socket was closed again
    finally:
        busy.close()


# --- the Unix socket as before ----------------------------------------------------------------

@needs_root
def test_unix_socket_permissions_unchanged_with_tcp(tmp_path):
    a = tcp_agent(tmp_path)
    lines = run_as(a, "nobody", [], {"v": 1, "op": "status", "id": 3})
    reply = json.loads(lines[0])
    e = error_of(reply)
    assert e["code"] == "permission_denied" and "id" not in reply and "control group" in \
        e["message"]
    assert lines[1] == "closed"
    # root applies on the socket, which is not the TCP callers' business
    assert result_of(a.call("apply", {"spec": spec(kv(shards=1))}))["generation"] == 1
    stop_clean(a)


def test_no_tcp_listener_without_control_listen(tmp_path):
    a = Agent(tmp_path / "a").start()
    assert "over TCP" not in a.log()
    assert result_of(a.call("nodes"))
    stop_clean(a)
