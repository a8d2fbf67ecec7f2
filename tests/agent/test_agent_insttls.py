"""Deployments over TLS (issue 14; docs/tls.md, "Deployments over TLS"): a
host agent with agent.conf's tls section gives every instance one port
that speaks TLS only (DPR_KV_PORT=0, DPR_KV_TLS_PORT), the copies of the
node's certificate, key, CA and CRL (instance_directory/tls), the spec's
tls.clients as --tls-auth-clients, and the finder's TLS port with
--finder-tls. The instances run by hand from their instance files (no
systemd): they register over TLS, the layout driver gives them their
layout over TLS, a session writes over TLS and a capture on lo never sees
its value; a client without a certificate is refused when clients are
required (the refusal in the instance's log) and served when they are
off; plain text is refused. A spec with tls is refused by agents without
TLS. Every process is killed by PID at the end.
"""
import os
import socket
import ssl
import stat
import sys

import pytest
import redis

from capture import Capture
import dprtest
from dprtest import KV, HostAgent, Proc, free_port, wait_for

if dprtest.PYDIR not in sys.path:
    sys.path.insert(0, dprtest.PYDIR)
import dpr  # noqa: E402
from dpr import pki  # noqa: E402

CLUSTER = "demo"


class Instance(Proc):
    """An instance's dpr-kv run from its instance file alone."""

    ready_marker = "listening on "
    stop_signal = 9


@pytest.fixture
def certs(tmp_path):
    d = str(tmp_path / "tls")
    pki.init(d, CLUSTER)
    pki.issue(d, "node", "node1", ips=["127.0.0.1"])
    pki.issue(d, "client", "app")
    return d


def tls_agent(tmp_path, certs):
    conf = ('tls = {{ enabled = true; cert = "{d}/node1.crt"; key = "{d}/node1.key"; '
            'ca = "{d}/ca.crt"; crl = "{d}/ca.crl"; }};\n'.format(d=certs))
    return HostAgent(str(tmp_path / "a"), finder_tls_port=free_port(), extra=conf)


@pytest.fixture
def agent(tmp_path, certs):
    a = tls_agent(tmp_path, certs)
    try:
        yield a.start()
    finally:
        a.procs.stop_all()


def run_instance(a, tmp_path, name):
    env = {k: v for k, v in a.env(name).items() if k.startswith("DPR_")}
    d = str(tmp_path / ("state-" + name))
    os.makedirs(d, exist_ok=True)
    env["DPR_KV_DIR"] = d
    return a.procs.add(Instance([KV], str(tmp_path / (name + ".log")), env=env)).wait_ready()


def ctx_of(certs, client=True):
    return dpr.tls_context(os.path.join(certs, "ca.crt"),
                           os.path.join(certs, "app.crt") if client else None,
                           os.path.join(certs, "app.key") if client else None)


def tls_redis(certs, port, client=True):
    kw = dict(ssl_certfile=os.path.join(certs, "app.crt"),
              ssl_keyfile=os.path.join(certs, "app.key")) if client else {}
    return redis.Redis(host="127.0.0.1", port=port, ssl=True, socket_timeout=10,
                       ssl_ca_certs=os.path.join(certs, "ca.crt"), **kw)


def info(certs, port):
    c = tls_redis(certs, port)
    try:
        return c.info("dpr")
    finally:
        c.close()


SPEC = {"name": CLUSTER, "cachestores": [
    {"name": "kv", "version": "1", "shards": 2},                        # required (default)
    {"name": "open", "version": "1", "shards": 1, "tls": {"clients": "off"}}]}


def test_a_tls_deployment_end_to_end(agent, certs, tmp_path):
    a = agent
    a.call("apply", {"spec": SPEC})
    deps = a.deployments()
    assert deps["kv"]["tls"] == {"clients": "required"}
    assert deps["open"]["tls"] == {"clients": "off"}
    ports = {}
    for name in ("kv-0", "kv-1", "open-0"):
        inst = a.instance(name)
        port = int(inst["endpoint"].rsplit(":", 1)[1])
        ports[name] = port
        assert inst["tls"] == ("off" if name == "open-0" else "required"), inst
        env = a.env(name)
        assert env["DPR_KV_PORT"] == "0" and env["DPR_KV_TLS_PORT"] == str(port), env
        assert env["DPR_KV_TLS_AUTH_CLIENTS"] == ("no" if name == "open-0" else "yes")
        assert env["DPR_KV_FINDER_TLS"] == "yes"
        assert env["DPR_KV_FINDER"] == "127.0.0.1:%d" % a.finder_tls_port
        assert env["DPR_KV_TLS_CRL_FILE"].endswith("/run/instances/tls/ca.crl")
    # the copies: the node's files, the key never readable by others
    tdir = os.path.join(a.base, "run", "instances", "tls")
    with open(os.path.join(certs, "node1.key"), "rb") as f, \
            open(os.path.join(tdir, "node.key"), "rb") as g:
        assert f.read() == g.read()
    assert stat.S_IMODE(os.stat(os.path.join(tdir, "node.key")).st_mode) & 0o007 == 0
    assert stat.S_IMODE(os.stat(tdir).st_mode) & 0o007 == 0

    cap = Capture() if os.geteuid() == 0 else None
    try:
        procs = {n: run_instance(a, tmp_path, n) for n in ports}
        for n, p in procs.items():
            assert "(TLS, client certificates: %s)" % ("no" if n == "open-0" else "yes") \
                in p.output(), p.output()
            assert "listening on 127.0.0.1:%d\n" % ports[n] not in p.output()  # no plain port
        # the layout driver gives each deployment its layout over TLS
        for n, p in ports.items():
            wait_for(lambda p=p: int(info(certs, p).get("dpr_layout_epoch", 0)) >= 1,
                     timeout=30, what="%s's layout (over TLS)" % n)
        # a session writes over TLS (the finder's TLS port too)
        canary = "tlsvalue%d" % (os.getpid() % 100000)
        client = dpr.Client(["127.0.0.1:%d" % ports["kv-0"], "127.0.0.1:%d" % ports["kv-1"]],
                            "127.0.0.1:%d" % a.finder_tls_port, domain="kv",
                            ssl_context=ctx_of(certs))
        with client.session() as s:
            for i in range(20):
                s.set("k%d" % i, canary)
            assert s.get("k7") == canary.encode()
        client.close()
    finally:
        if cap:
            cap.stop()
    if cap:
        seen = b"".join(b"".join(cap.tcp_payloads(p)) for p in ports.values())
        assert seen, "no traffic on the instances' ports"
        assert canary.encode() not in seen and b"DPR.LAYOUT" not in seen
        assert b"DPR.WORKER" not in b"".join(cap.tcp_payloads(a.finder_tls_port))
    assert "TLS refused" not in a.log(), a.log()

    # found through the agent's status (the finder's TLS port); a dprs:// URL
    with dpr.cluster.connect(a.sock) as cl:
        assert cl.status().finder.tls_address == "127.0.0.1:%d" % a.finder_tls_port
        with pytest.raises(ValueError, match="speaks TLS only"):
            cl.client("kv")
        client = cl.client("kv", ssl_context=ctx_of(certs))
    assert client.finder == "127.0.0.1:%d" % a.finder_tls_port
    with client.session() as s:
        s.set("via-status", canary)
    client.close()
    client = dpr.Client.from_url("dprs://127.0.0.1:%d/?shards=%s&ca=%s&cert=%s&key=%s" % (
        a.finder_tls_port, ",".join("127.0.0.1:%d" % ports[n] for n in ("kv-0", "kv-1")),
        *(os.path.join(certs, f) for f in ("ca.crt", "app.crt", "app.key"))), domain="kv")
    with client.session() as s:
        assert s.get("k7") == canary.encode() and s.get("via-status") == canary.encode()
    client.close()

    # clients required: no certificate, refused (logged); off: served
    c = tls_redis(certs, ports["kv-0"], client=False)
    with pytest.raises((redis.exceptions.ConnectionError, ssl.SSLError, OSError)):
        c.ping()
    c.close()
    wait_for(lambda: "peer did not return a certificate" in procs["kv-0"].output(),
             timeout=10, what="the refusal in kv-0's log")
    c = tls_redis(certs, ports["open-0"], client=False)
    assert c.ping() is True
    c.close()
    # plain text: refused
    s = socket.create_connection(("127.0.0.1", ports["open-0"]), timeout=10)
    s.sendall(b"*1\r\n$4\r\nPING\r\n")
    try:
        got = s.recv(100)
    except OSError:
        got = b""
    s.close()
    assert b"PONG" not in got
    wait_for(lambda: "wrong version number" in procs["open-0"].output(), timeout=10,
             what="the plain client's refusal in open-0's log")


def test_tls_clients_change_rolls_out(agent, certs, tmp_path):
    """tls.clients reaches the process: a change is an update (rolled out)."""
    a = agent
    a.call("apply", {"spec": {"name": CLUSTER, "cachestores": [
        {"name": "kv", "version": "1", "shards": 1}]}})
    assert a.env("kv-0")["DPR_KV_TLS_AUTH_CLIENTS"] == "yes"
    r = a.call("apply", {"spec": {"name": CLUSTER, "cachestores": [
        {"name": "kv", "version": "1", "shards": 1, "tls": {"clients": "optional"}}]}})
    assert r["plan"]["updated"] == ["kv-0"], r
    # (no systemd here: the roll-out waits to restart it with the new file)
    assert a.instance("kv-0")["outdated"] is True


def test_a_spec_with_tls_is_refused_without_the_agents_tls(tmp_path):
    a = HostAgent(str(tmp_path / "plain")).start()
    try:
        r = a.request("apply", {"spec": {"name": CLUSTER, "cachestores": [
            {"name": "kv", "version": "1", "shards": 1, "tls": {"clients": "off"}}]}})
        assert r["ok"] is False, r
        text = str(r)
        assert "cachestores[0].tls" in text and "the agents do not speak TLS" in text, r
        a.call("apply", {"spec": {"name": CLUSTER, "cachestores": [
            {"name": "kv", "version": "1", "shards": 1}]}})
        assert "TLS" not in open(os.path.join(a.base, "run", "instances", "kv-0.env")).read()
        assert a.instance("kv-0")["tls"] is None
    finally:
        a.procs.stop_all()


def layout_is(a, epoch):
    """Waits until the agent recorded kv's layout epoch, no resize going on."""
    wait_for(lambda: (lambda lay: lay.get("epoch") == epoch and not lay.get("resize"))(
        a.deployments()["kv"].get("layout") or {}), timeout=60,
        what="kv's layout %d given" % epoch)


def test_a_tls_deployment_resizes_over_tls(agent, certs, tmp_path):
    """A resize of a TLS deployment: the layout driver over TLS, the keys
    pushed shard to shard over TLS (DPR.IMPORT never in plain text), all
    read back from the new layout."""
    a = agent
    spec = {"name": CLUSTER, "cachestores": [{"name": "kv", "version": "1", "shards": 2}]}
    a.call("apply", {"spec": spec})
    procs = {n: run_instance(a, tmp_path, n) for n in ("kv-0", "kv-1")}
    ports = {n: int(a.instance(n)["endpoint"].rsplit(":", 1)[1]) for n in procs}
    layout_is(a, 1)
    canary = "moved%d" % (os.getpid() % 100000)
    client = dpr.Client(["127.0.0.1:%d" % ports[n] for n in ("kv-0", "kv-1")],
                        "127.0.0.1:%d" % a.finder_tls_port, domain="kv",
                        ssl_context=ctx_of(certs))
    with client.session() as s:
        for i in range(200):
            s.set("key%d" % i, canary)
        s.wait_committed(timeout=30)
    client.close()
    spec["cachestores"][0]["shards"] = 3
    r = a.call("apply", {"spec": spec})
    assert r["plan"]["resizes"][0]["to"] == 3, r
    cap = Capture() if os.geteuid() == 0 else None
    try:
        procs["kv-2"] = run_instance(a, tmp_path, "kv-2")
        ports["kv-2"] = int(a.instance("kv-2")["endpoint"].rsplit(":", 1)[1])
        layout_is(a, 2)
    finally:
        if cap:
            cap.stop()
    assert "TLS refused" not in a.log(), a.log()
    for n, p in procs.items():
        assert "TLS refused" not in p.output(), p.output()
    # kv-2 took keys from the others (pushed over TLS)
    assert int(info(certs, ports["kv-2"])["dpr_imported_keys"]) > 0
    if cap:
        seen = b"".join(b"".join(cap.tcp_payloads(p)) for p in ports.values())
        assert seen and canary.encode() not in seen and b"DPR.IMPORT" not in seen
    client = dpr.Client(["127.0.0.1:%d" % ports[n] for n in ("kv-0", "kv-1", "kv-2")],
                        "127.0.0.1:%d" % a.finder_tls_port, domain="kv",
                        ssl_context=ctx_of(certs))
    with client.session() as s:
        assert all(s.get("key%d" % i) == canary.encode() for i in range(200))
    client.close()
