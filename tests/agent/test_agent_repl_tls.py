"""Checkpoint copies between agents over mutual TLS (issue 14; agent.conf's
tls section, docs/tls.md "The agents' links"): three host agents with
certificates of one cluster CA, a deployment whose instances (dpr-kv run
by hand from their instance files) have a replica node each; the copies
are made over TLS and a capture on lo shows a known value in the
replication traffic only without TLS. The replication port refuses, with
a clear log line and before any command runs: plain text, a certificate
of another CA, one of another cluster, an application's (only agents copy
checkpoints); a node of the cluster is served. Every process is killed by
PID at the end.
"""
import os
import re
import socket
import ssl
import zlib

import pytest

from capture import Capture
import dprtest
from dprtest import RaftAgents, wait_for
import test_agent_raft_tls as raft_tls
from test_agent_replication import spec_of, start_instances, instances, copies

# the TLS agents' fixtures: certificates of cluster demo, three agents
certs = raft_tls.certs
agents = raft_tls.agents
_tls_client = raft_tls._tls_client


def repl_address(agent):
    """The replication listener's HOST:PORT and whether it said TLS."""
    m = wait_for(lambda: re.search(r"copies of checkpoints from other nodes on (\S+?)( \(TLS\))?,",
                                   agent.log()), timeout=10, what="the replication listener")
    host, port = m.group(1).rsplit(":", 1)
    return host, int(port), bool(m.group(2))


def run_replicated(agents, base, value):
    """Applies a 3-shard deployment, runs its instances, writes value on
    each and waits until every instance's checkpoints were copied to its
    replica node. The instances' clients, by name."""
    agents.placeable()
    by_node = {a.node: a for a in agents.agents}
    agents[0].call("apply", {"spec": spec_of(("kv", 3))})
    kvs = start_instances(agents, base)
    for name, (a, kv, _) in kvs.items():
        c = kv.client()
        for k in range(20):
            c.set("%s-k%d" % (name, k), value)
    for name, (a, kv, _) in kvs.items():
        def copied(a=a, name=name):
            i = instances(a)[name]
            return i if i.get("replicated") and i.get("durable_version") else None
        i = wait_for(copied, timeout=30, what="%s copied and reported" % name)
        assert i["replica_error"] is None, i
        holder = by_node[i["replicas"][0]]
        assert wait_for(lambda: copies(holder, "kv", i["worker"]), timeout=10,
                        what="the copy on %s" % holder.node)
    return kvs


def test_checkpoints_are_copied_over_tls(tmp_path, certs):
    dprtest.need(dprtest.KV)
    ra = RaftAgents(str(tmp_path), 3, tls=certs).start()
    try:
        for a in ra.agents:
            assert repl_address(a)[2], a.log()
        kvs = run_replicated(ra, str(tmp_path), "v")
        for name, (a, kv, _) in kvs.items():
            assert kv.client().get(name + "-k19") == b"v"
        for a in ra.agents:
            assert "TLS refused" not in a.log(), a.log()
    finally:
        ra.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="a capture needs root")
@pytest.mark.parametrize("tls", [True, False])
def test_a_capture_shows_checkpoints_only_without_tls(tmp_path, certs, tls):
    dprtest.need(dprtest.KV)
    agents = RaftAgents(str(tmp_path), 3, tls=certs if tls else None).start()
    try:
        ports = {repl_address(a)[1] for a in agents.agents}
        assert all(repl_address(a)[2] is tls for a in agents.agents)
        canary = "canary-%d-value" % os.getpid()
        cap = Capture()
        try:
            run_replicated(agents, str(tmp_path), canary)
        finally:
            cap.stop()
        repl = b"".join(b"".join(cap.tcp_payloads(p)) for p in ports)
        assert len(repl) > 1000  # the copies crossed lo
        assert (canary.encode() in repl) is (not tls)
        assert (b"DPR.REPL.PUT" in repl) is (not tls)
    finally:
        agents.close()


def _repl_have(sock):
    """DPR.REPL.HAVE of a copy nobody has; the reply's first bytes, the
    exception, or b'' for a close."""
    try:
        sock.sendall(b"*5\r\n$13\r\nDPR.REPL.HAVE\r\n$4\r\ndemo\r\n$2\r\nkv\r\n$1\r\n1\r\n"
                     b"$1\r\n7\r\n")
        return sock.recv(100)
    except (ssl.SSLError, OSError) as e:
        return e


def test_a_node_of_the_cluster_is_served(agents, certs):
    host, port, _ = repl_address(agents[1])
    s = socket.create_connection((host, port), timeout=10)
    try:
        t = _tls_client(certs, "n4.crt", "n4.key").wrap_socket(s)
        assert _repl_have(t) == b":0\r\n"
    finally:
        s.close()


@pytest.mark.parametrize("what,cert,key,why", [
    ("plain text", None, None, "wrong version number"),
    ("a node of another CA", "other/n1.crt", "other/n1.key", "certificate verify failed"),
    ("a node of another cluster", "stranger.crt", "stranger.key",
     "of cluster 'other', not of cluster 'demo'"),
    ("an application", "app.crt", "app.key", "is not a node's: only agents copy checkpoints"),
])
def test_refused_at_the_replication_port(agents, certs, what, cert, key, why):
    target = agents[1]
    host, port, _ = repl_address(target)
    before = len(target.log())
    s = socket.create_connection((host, port), timeout=10)
    try:
        if cert:
            try:
                s = _tls_client(certs, cert, key).wrap_socket(s)
            except (ssl.SSLError, OSError) as e:
                s = None
                got = e
        if s is not None:
            got = _repl_have(s)
    finally:
        if s is not None:
            s.close()
    assert not isinstance(got, bytes) or not got.startswith(b":"), (what, got)
    wait_for(lambda: why in target.log()[before:], timeout=10,
             what="the refusal of %s logged" % what)
    line = [ln for ln in target.log()[before:].splitlines() if why in ln][0]
    assert "replication: TLS refused the connection from 127.0.0.1:" in line, line


def test_sighup_gives_the_replication_port_a_new_crl(agents, certs):
    """A node certificate revoked after the start: served until the agent
    reloads (SIGHUP), refused from then on."""
    target = agents[1]
    host, port, _ = repl_address(target)

    def have():
        s = socket.create_connection((host, port), timeout=10)
        try:
            return _repl_have(_tls_client(certs, "n4.crt", "n4.key").wrap_socket(s))
        except (ssl.SSLError, OSError) as e:
            return e
        finally:
            s.close()
    assert have() == b":0\r\n"
    raft_tls.pki.revoke(certs, os.path.join(certs, "n4.crt"))
    assert have() == b":0\r\n"  # (the CRL is read at start and on SIGHUP)
    assert "TLS certificates reloaded" in raft_tls._reload(target)
    before = len(target.log())
    got = have()
    assert not isinstance(got, bytes) or not got.startswith(b":"), got
    wait_for(lambda: "certificate revoked" in target.log()[before:], timeout=10,
             what="the revoked certificate refused")
    line = [ln for ln in target.log()[before:].splitlines() if "certificate revoked" in ln][0]
    assert "replication: TLS refused the connection from 127.0.0.1:" in line, line


def test_a_silent_connection_is_closed(agents):
    """A peer that never starts its TLS handshake holds none of the
    replication server's connections for long."""
    target = agents[1]
    host, port, _ = repl_address(target)
    before = len(target.log())
    s = socket.create_connection((host, port), timeout=60)
    try:
        assert s.recv(100) == b""
    finally:
        s.close()
    wait_for(lambda: "no TLS handshake within 10 s" in target.log()[before:], timeout=10,
             what="the silent connection's line")
    line = [ln for ln in target.log()[before:].splitlines() if "within 10 s" in ln][0]
    assert "replication: TLS refused the connection from 127.0.0.1:" in line, line


def _cmd(*args):
    """A RESP command."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _reply(t):
    """One reply line."""
    buf = b""
    while not buf.endswith(b"\r\n"):
        got = t.recv(1)
        if not got:
            break
        buf += got
    return buf


def test_a_copy_under_way_finishes_over_a_reload(agents, certs):
    """A copy whose connection was verified before a reload goes on to its
    end on the certificates of then, though the reload's CRL revokes the
    sender's certificate: only new connections get the new files."""
    target = agents[1]
    host, port, _ = repl_address(target)
    data = os.urandom(200000)
    half = len(data) // 2
    key = ("demo", "kv", 7, 3)
    s = socket.create_connection((host, port), timeout=10)
    try:
        t = _tls_client(certs, "n4.crt", "n4.key").wrap_socket(s)
        t.sendall(_cmd("DPR.REPL.HAVE", *key))
        assert _reply(t) == b":0\r\n"
        t.sendall(_cmd("DPR.REPL.PUT", *key, 0, data[:half]))
        assert _reply(t) == b"+OK\r\n"
        raft_tls.pki.revoke(certs, os.path.join(certs, "n4.crt"))
        assert "TLS certificates reloaded" in raft_tls._reload(target)
        # a new connection with that certificate is refused now
        s2 = socket.create_connection((host, port), timeout=10)
        try:
            got = _repl_have(_tls_client(certs, "n4.crt", "n4.key").wrap_socket(s2))
        except (ssl.SSLError, OSError) as e:
            got = e
        finally:
            s2.close()
        assert not isinstance(got, bytes) or not got.startswith(b":"), got
        # the copy under way goes on and is whole
        t.sendall(_cmd("DPR.REPL.PUT", *key, half, data[half:]))
        assert _reply(t) == b"+OK\r\n"
        t.sendall(_cmd("DPR.REPL.DONE", *key, len(data), zlib.crc32(data)))
        assert _reply(t) == b"+OK\r\n"
    finally:
        s.close()
    assert copies(target, "kv", 7) == [3]
