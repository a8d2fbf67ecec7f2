"""Raft between agents over mutual TLS (issue 14; agent.conf's tls section,
docs/tls.md): three host agents (127.0.0.1-3) with certificates of one
cluster CA elect a leader, replicate the finder's state and fail over;
a plain-text peer, a node certificate of another CA, one naming another
cluster and an application's (client) certificate are refused on the Raft
port with a clear log line and the cluster goes on; a silent connection
is closed; a capture on lo shows a replicated value only without TLS; an
agent whose own certificate names another node does not start; SIGHUP
(systemctl reload)
loads new certificates and a new CRL for new connections, and a revoked
agent's new connections are refused. Every process is killed by PID at the
end; nothing asserts on time.
"""
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys

import pytest
import redis

import certgen
from capture import Capture
import dprtest
from dprtest import AGENT, RaftAgents, wait_for

if dprtest.PYDIR not in sys.path:
    sys.path.insert(0, dprtest.PYDIR)
from dpr import pki  # noqa: E402

CLUSTER = "demo"


def make_pki(d):
    """A CA of CLUSTER with n1..n4, a client app; other/ another CA of the
    same cluster name with its own n1; stranger: of this CA, cluster
    'other'."""
    d = str(d)
    pki.init(d, CLUSTER)
    for n in ("n1", "n2", "n3", "n4"):
        pki.issue(d, "node", n, ips=["127.0.0.%s" % n[1]])
    pki.issue(d, "client", "app")
    other = os.path.join(d, "other")
    pki.init(other, CLUSTER)
    pki.issue(other, "node", "n1")
    certgen.sign_leaf(d, "stranger", "dpr://other/node/stranger", org="other",
                      eku=["server", "client"])
    return d


@pytest.fixture
def certs(tmp_path):
    return make_pki(tmp_path / "tls")


@pytest.fixture
def agents(tmp_path, certs):
    ra = RaftAgents(str(tmp_path), 3, tls=certs)
    try:
        yield ra.start()
    finally:
        ra.close()


def finder_call(a, *args):
    c = redis.Redis(host=a.host, port=a.finder_port, socket_timeout=10)
    try:
        return c.execute_command(*args)
    finally:
        c.close()


def domains(a):
    return [d["name"] for d in a.call("status")["finder"]["domains"]]


def replicated(agents, name):
    """Every running agent shows domain name in the replicated state."""
    for a in agents.running():
        wait_for(lambda a=a: name in domains(a), timeout=20,
                 what="%s's view of domain %s" % (a.node, name))


def test_raft_over_tls_replicates_and_fails_over(agents):
    leader = agents.leader()
    assert finder_call(leader, "DPR.WORKER.ADD", "kv", "1")[0] == 1
    replicated(agents, "kv")
    for a in agents.agents:
        assert "TLS on the links between agents: " in a.log(), a.log()
        assert "TLS refused" not in a.log(), a.log()
    nodes = leader.call("nodes")
    assert len(nodes["nodes"]) == 3 and nodes["raft"]["quorum"] is True
    leader.proc.kill(signal.SIGKILL)
    new = wait_for(lambda: agents.leader() if agents.leader() is not leader else None,
                   timeout=30, what="a new leader")
    assert finder_call(new, "DPR.WORKER.ADD", "kv2", "2")[0] == 1
    leader.start()
    wait_for(lambda: leader.call("nodes")["raft"]["role"] == "follower", timeout=30,
             what="the old leader back as a follower")
    replicated(agents, "kv2")


def _tls_client(certs, cert, key, ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(os.path.join(certs, ca or "ca.crt"))
    ctx.load_cert_chain(os.path.join(certs, cert), os.path.join(certs, key))
    return ctx


def _raft_handshake(id_=99, address="127.0.0.9:1"):
    a = address.encode() + b"\0"
    a += b"\0" * (-len(a) % 8)
    return struct.pack("<QQQ", 1, id_, len(a)) + a


def _try_tls(host, port, ctx):
    """Connects with ctx, sends c-raft's handshake: what the server did
    (the exception or b'' for a close)."""
    s = socket.create_connection((host, port), timeout=10)
    try:
        t = ctx.wrap_socket(s)
        t.sendall(_raft_handshake())
        return t.recv(100)
    except (ssl.SSLError, OSError) as e:
        return e
    finally:
        s.close()


@pytest.mark.parametrize("what,cert,key,ca,why", [
    ("a node of another CA", "other/n1.crt", "other/n1.key", None,
     "certificate verify failed"),
    ("a node of another cluster", "stranger.crt", "stranger.key", None,
     "of cluster 'other', not of cluster 'demo'"),
    ("an application", "app.crt", "app.key", None,
     "is not a node's: only agents speak Raft"),
])
def test_refused_peers_get_nothing_and_the_cluster_goes_on(agents, certs, what, cert, key, ca,
                                                           why):
    leader = agents.leader()
    target = [a for a in agents.agents if a is not leader][0]
    before = len(target.log())
    got = _try_tls(target.host, agents.raft_port, _tls_client(certs, cert, key, ca))
    assert not isinstance(got, bytes) or got == b"", (what, got)
    wait_for(lambda: why in target.log()[before:], timeout=10,
             what="the refusal of %s logged" % what)
    line = [ln for ln in target.log()[before:].splitlines() if why in ln][0]
    assert "raft: TLS refused the connection from 127.0.0.1:" in line, line
    # the cluster is whole: the refused peer is no member
    assert finder_call(leader, "DPR.WORKER.ADD", "kv", "3")[0] == 1
    replicated(agents, "kv")
    assert len(target.call("nodes")["nodes"]) == 3


def test_plain_text_to_the_raft_port_is_refused(agents):
    leader = agents.leader()
    before = len(leader.log())
    s = socket.create_connection((leader.host, agents.raft_port), timeout=10)
    try:
        s.sendall(_raft_handshake() + b"\0" * 64)
        try:
            got = s.recv(100)
        except OSError:
            got = b""
    finally:
        s.close()
    assert not got.startswith(b"\x01\0\0\0"), got  # no plaintext Raft back
    wait_for(lambda: "TLS refused the connection from 127.0.0.1:" in leader.log()[before:],
             timeout=10, what="the refusal logged")
    line = [ln for ln in leader.log()[before:].splitlines() if "TLS refused" in ln][0]
    assert "does not speak TLS" in line or "wrong version number" in line, line
    assert agents.leader() is leader


def test_a_silent_connection_is_closed(agents, certs):
    """A peer that never finishes its handshakes (TLS, or Raft's inside a
    verified TLS connection) holds nothing for long."""
    leader = agents.leader()
    before = len(leader.log())
    silent = socket.create_connection((leader.host, agents.raft_port), timeout=60)
    verified = _tls_client(certs, "n4.crt", "n4.key").wrap_socket(
        socket.create_connection((leader.host, agents.raft_port), timeout=60))
    try:
        assert silent.recv(100) == b""
        try:
            got = verified.recv(100)
        except (ssl.SSLError, OSError):
            got = b""
        assert got == b""
    finally:
        silent.close()
        verified.close()
    lines = [ln for ln in leader.log()[before:].splitlines() if "within 10 s" in ln]
    assert len(lines) == 2, leader.log()[before:]
    assert agents.leader() is leader


@pytest.mark.skipif(os.geteuid() != 0, reason="a capture needs root")
@pytest.mark.parametrize("tls", [True, False])
def test_a_capture_shows_raft_entries_only_without_tls(tmp_path, certs, tls):
    ra = RaftAgents(str(tmp_path), 3, tls=certs if tls else None)
    try:
        ra.start()
        leader = ra.leader()
        cap = Capture()
        try:
            canary = "canary-%d" % os.getpid()
            assert finder_call(leader, "DPR.WORKER.ADD", canary, "1")[0] == 1
            replicated(ra, canary)
        finally:
            cap.stop()
        raft = b"".join(cap.tcp_payloads(ra.raft_port))
        finder = b"".join(cap.tcp_payloads(ra.finder_port))
        assert canary.encode() in finder  # the capture sees plain text
        assert raft  # and Raft's traffic
        assert (canary.encode() in raft) is (not tls)
    finally:
        ra.close()


def test_an_agent_with_another_nodes_certificate_does_not_start(tmp_path, certs):
    conf = tmp_path / "agent.conf"
    tls = ('tls = {{ enabled = true; cert = "{d}/n2.crt"; key = "{d}/n2.key"; '
           'ca = "{d}/ca.crt"; crl = "{d}/ca.crl"; }};\n'.format(d=certs))
    conf.write_text('cluster = "demo";\nnode = { name = "n1"; };\n' + tls)
    r = subprocess.run([AGENT, "--check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0
    assert ("is dpr://demo/node/n2, not this node's dpr://demo/node/n1"
            in r.stdout + r.stderr), r.stdout + r.stderr
    # of another cluster, and a key that is not the certificate's
    conf.write_text('cluster = "prod";\nnode = { name = "n1"; };\n' +
                    tls.replace("n2.", "n1."))
    r = subprocess.run([AGENT, "--check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0 and "not this node's dpr://prod/node/n1" in r.stderr, r.stderr
    conf.write_text('cluster = "demo";\nnode = { name = "n1"; };\n' +
                    tls.replace("n2.crt", "n1.crt"))
    r = subprocess.run([AGENT, "--check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0 and "n2.key" in r.stderr, r.stderr
    conf.write_text('cluster = "demo";\nnode = { name = "n1"; };\n' +
                    tls.replace("n2.", "n1."))
    r = subprocess.run([AGENT, "--check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode == 0 and "TLS %s/n1.crt" % certs in r.stdout, r.stdout + r.stderr


def _reload(a):
    before = len(a.log())
    a.proc.kill(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: TLS certificates" in a.log()[before:], timeout=10,
             what="%s's reload" % a.node)
    return a.log()[before:]


def test_sighup_rotates_certificates_and_a_crl_refuses_a_revoked_agent(agents, certs):
    leader = agents.leader()
    assert finder_call(leader, "DPR.WORKER.ADD", "kv", "1")[0] == 1
    replicated(agents, "kv")
    # a reload that fails keeps the old certificates
    n1 = agents[0]
    key = os.path.join(certs, "n1.key")
    shutil.copy(key, key + ".good")
    with open(key, "w") as f:
        f.write("not a key\n")
    out = _reload(n1)
    assert "TLS certificates not reloaded, new connections keep the old ones" in out, out
    os.replace(key + ".good", key)
    # new keys and certificates for every node, then systemctl reload's SIGHUP
    serials = {}
    for a in agents.agents:
        pki.issue(certs, "node", a.node, ips=[a.host], force=True)
    for a in agents.agents:
        before = len(a.log())
        out = _reload(a)
        assert "SIGHUP: TLS certificates reloaded for new connections: " in out, out
        # the agent's contexts and its finder's TLS port (finder.tls_listen)
        wait_for(lambda a=a, before=before: a.log()[before:].count(
            "SIGHUP: TLS certificates reloaded for new connections: ") == 2, timeout=10,
            what="%s's finder reloaded too" % a.node)
        serials[a.node] = out.split("serial")[-1].split()[0]
    assert finder_call(agents.leader(), "DPR.WORKER.ADD", "kv2", "2")[0] == 1
    replicated(agents, "kv2")
    # a new leader: every new connection is made with the new certificates
    old = agents.leader()
    old.proc.kill(signal.SIGKILL)
    new = wait_for(lambda: agents.leader() if agents.leader() is not old else None,
                   timeout=30, what="a new leader")
    old.start()
    wait_for(lambda: old.call("nodes")["raft"]["role"] == "follower", timeout=30,
             what="the old leader back with its new certificate")
    assert finder_call(new, "DPR.WORKER.ADD", "kv3", "3")[0] == 1
    replicated(agents, "kv3")
    for a in agents.agents:
        assert "TLS refused" not in a.log(), a.log()
    # n3 revoked: the others reload the CRL; n3's new connections are refused
    n3 = agents[2]
    pki.revoke(certs, os.path.join(certs, "n3.crt"))
    others = [a for a in agents.agents if a is not n3]
    for a in others:
        assert "TLS certificates reloaded" in _reload(a)
    n3.proc.kill(signal.SIGKILL)
    n3.start()
    def revoked(a, where):
        return [ln for ln in a.log().splitlines() if "certificate revoked" in ln and where in ln]
    wait_for(lambda: any(revoked(a, "raft: TLS refused the connection") for a in others),
             timeout=30, what="n3's Raft connections refused as revoked")
    # (and its requests to the finders' TLS port: "client ...: TLS refused")
    # n3 never hears from the cluster again; the two others go on
    assert finder_call(agents.leader(), "DPR.WORKER.ADD", "kv4", "4")[0] == 1
    for a in others:
        wait_for(lambda a=a: "kv4" in domains(a), timeout=20, what="kv4 on %s" % a.node)
    assert "kv4" not in domains(n3)


def spec_of(*deps):
    return {"name": "demo", "cachestores": [dict(name=n, shards=k, version="1")
                                             for n, k in deps]}


def test_the_finders_tls_port_carries_peer_requests_and_refuses_strangers(agents, certs):
    """finder.tls_listen: membership and a forwarded apply go to the
    leader's finder TLS port over TLS (never plain text there); plain text
    and a certificate of another CA are refused there with a log line."""
    leader = agents.leader()
    follower = [a for a in agents.agents if a is not leader][0]
    for a in agents.agents:
        assert "(TLS, client certificates: yes)" in a.log(), a.log()
        assert a.call("status")["finder"]["address"] == agents.finders
    nodes = wait_for(lambda: leader.call("nodes") if len(leader.call("nodes")["nodes"]) == 3
                     else None, timeout=30, what="three members")
    assert nodes["raft"]["quorum"] is True
    # an apply on a follower is forwarded to the leader (DPR.CLUSTER.SPEC)
    canary = "tlscanary%d" % (os.getpid() % 100000)
    cap = Capture() if os.geteuid() == 0 else None
    try:
        r = follower.call("apply", {"spec": spec_of((canary, 1))})
        assert r["cluster_generation"] >= 1 and canary in r["placement"], r
    finally:
        if cap:
            cap.stop()
    for a in agents.agents:
        wait_for(lambda a=a: (a.call("status").get("cluster_spec") or {}).get("generation")
                 == r["cluster_generation"], timeout=20, what="the record on %s" % a.node)
    if cap:
        tls = b"".join(cap.tcp_payloads(agents.finder_tls_port))
        assert tls, "no traffic on the finder's TLS port"
        assert canary.encode() not in tls
        assert b"DPR.CLUSTER" not in tls
        # the forwarded apply went there, not to the plain port
        plain = b"".join(cap.tcp_payloads(agents.finder_port))
        assert b"DPR.CLUSTER.SPEC" not in plain
    for a in agents.agents:
        assert "TLS refused" not in a.log(), a.log()
    # plain text to the TLS port: refused, logged, nothing served
    before = len(leader.log())
    c = redis.Redis(host=leader.host, port=agents.finder_tls_port, socket_timeout=10)
    with pytest.raises(redis.exceptions.RedisError):
        c.execute_command("DPR.WORKER.ADD", "plain", "9")
    c.close()
    wait_for(lambda: "TLS refused" in leader.log()[before:], timeout=10,
             what="the plain client's refusal logged")
    # a node certificate of another CA: refused, logged, nothing served
    before = len(leader.log())
    ctx = _tls_client(certs, "other/n1.crt", "other/n1.key")
    s = socket.create_connection((leader.host, agents.finder_tls_port), timeout=10)
    try:
        t = ctx.wrap_socket(s)
        t.sendall(b"*3\r\n$14\r\nDPR.WORKER.ADD\r\n$5\r\nother\r\n$1\r\n9\r\n")
        got = t.recv(100)
    except (ssl.SSLError, OSError) as e:
        got = e
    finally:
        s.close()
    assert not isinstance(got, bytes) or got == b"", got
    wait_for(lambda: "certificate verify failed" in leader.log()[before:], timeout=10,
             what="the other CA's refusal logged")
    line = [ln for ln in leader.log()[before:].splitlines() if "verify failed" in ln][0]
    assert "TLS refused" in line, line
    assert "other" not in domains(leader) and "plain" not in domains(leader)


def test_a_followers_tls_port_names_the_leaders_tls_port(agents, certs):
    """NOTLEADER on a follower's finder TLS port names the leader's TLS
    port (its plain port names the plain one), so dpr-kv --finder-tls and
    the clients follow it over TLS."""
    leader = agents.leader()
    follower = [a for a in agents.agents if a is not leader][0]
    plain = redis.Redis(host=follower.host, port=agents.finder_port, socket_timeout=10)
    tls = redis.Redis(host=follower.host, port=agents.finder_tls_port, socket_timeout=10,
                      ssl=True, ssl_ca_certs=os.path.join(certs, "ca.crt"),
                      ssl_certfile=os.path.join(certs, "app.crt"),
                      ssl_keyfile=os.path.join(certs, "app.key"), ssl_check_hostname=False)
    try:
        for c, port in ((plain, agents.finder_port), (tls, agents.finder_tls_port)):
            with pytest.raises(redis.exceptions.ResponseError) as e:
                c.execute_command("DPR.SYNC", "kv")
            assert str(e.value) == "NOTLEADER %s:%d" % (leader.host, port), e.value
    finally:
        plain.close()
        tls.close()


def test_an_application_asks_a_finder_tls_port_where_the_shards_are(agents, certs):
    """DPR.CLUSTER.ENDPOINTS (dpr.Client.for_deployment, dprs:// URLs) is
    a read an application's certificate may run on the TLS port; other
    DPR.CLUSTER commands are refused to it."""
    leader = agents.placeable()
    leader.call("apply", {"spec": spec_of(("kv", 2))})
    c = redis.Redis(host=leader.host, port=agents.finder_tls_port, socket_timeout=10,
                    ssl=True, ssl_ca_certs=os.path.join(certs, "ca.crt"),
                    ssl_certfile=os.path.join(certs, "app.crt"),
                    ssl_keyfile=os.path.join(certs, "app.key"), ssl_check_hostname=False)
    try:
        got = wait_for(lambda: (lambda r: r if all(r[1]) else None)(
            c.execute_command("DPR.CLUSTER.ENDPOINTS", "kv")), timeout=30,
            what="kv's endpoints")
        assert len(got[1]) == 2 and len(got[2]) == 2, got
        with pytest.raises(redis.exceptions.ResponseError, match="permission denied"):
            c.execute_command("DPR.CLUSTER.SPEC", "n9", "{}")
    finally:
        c.close()
