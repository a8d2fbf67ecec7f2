"""Issue 14: three agents on real systemd nodes with Raft and the
checkpoint copies over mutual TLS (agent.conf `tls`, each node's
certificate in /etc/dpr/tls/, the unit's ExecReload). Two deployments are
applied and a session writes into each; the second keeps a copy of each
shard's checkpoints on another node. The leader's agent is killed (kill -9)
and another leads over new TLS connections; `systemctl reload dpr-agent`
loads new certificates on every node while the sessions write and the
cluster goes on; node3's power is cut and its shard of the second
deployment starts from its copies elsewhere; everything committed reads
back. With TLS the deployments' shards speak TLS only (docs/tls.md,
"Deployments over TLS"): the sessions write over TLS with a node's
certificate, the layout driver gives the layouts over TLS (`apply
--wait`), the instances run as dpr-cachestore with the agent's copies of
the node's files, and plain text to a shard is refused. A capture on the
test bridge's ports shows Raft's traffic, the checkpoint copies and a
shard's port (node2's first instance port, 7100, which node1's session
writes to) and never, in plain text, the deployment's name (which every
Raft entry of the cluster spec and every key the session writes carry).
The same without TLS is the control: there the capture sees the names,
and reload only says there is nothing to reload. With TLS a reload of
the agent also reloads its instances (the new certificates for their
new connections). Needs root (skipped
otherwise).
"""
import json
import os
import subprocess
import sys

import pytest

import cluster as harness
from writers import Writers

WAIT = 120
NAME = "tlscanary7"
REPL = "tlsrepl9"   # its keys are "tlsrepl9:SEQ": in every checkpoint copied
REPL_PORT = 7401    # replication.listen's default port
SHARD_PORT = 7100   # cachestores.port_min's default: node2's instance of REPL
SPEC = """\
name: demo
cachestores:
  - name: %s
    version: "1"
    shards: 2
    checkpoint_interval_ms: 100
    node_selector:
      nodes: [node1]
  - {name: %s, version: "1", shards: 3, checkpoint_interval_ms: 100, replicas: 1}
""" % (NAME, REPL)
CAPTURE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "lib",
                       "capture.py")


@pytest.mark.nodes(3)
@pytest.mark.parametrize("tls", [True, False])
def test_raft_over_tls_applies_fails_over_reloads_and_shows_no_plaintext(cluster, tmp_path, tls):
    c = cluster
    n1 = c[0]
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    c.configure_raft(tls=tls)
    stop, out = str(tmp_path / "stop"), str(tmp_path / "raft.bin")
    repl_out, shard_out = str(tmp_path / "repl.bin"), str(tmp_path / "shard.bin")
    caps = [subprocess.Popen(["ip", "netns", "exec", c.netns, sys.executable, CAPTURE,
                              ",".join(n.veth for n in c), str(port), stop, path])
            for port, path in ((c.RAFT_PORT, out), (REPL_PORT, repl_out),
                               (SHARD_PORT, shard_out))]
    w, results = None, {}
    try:
        lead = harness.wait_for("a raft leader", lambda: c.raft_leader(), WAIT)
        for n in c:
            assert ("TLS on the links between agents: /O=demo/CN=%s" % n.name in
                    n.journal("dpr-agent", lines=2000)) is tls, n.journal("dpr-agent")
        with open(n1.path("/root/cluster.yaml"), "w") as f:
            f.write(SPEC)
        n1.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
               timeout=WAIT + 30)
        if tls:
            check_tls_shards(n1)
        w = Writers(n1, [NAME, REPL], tls=("/etc/dpr/tls/ca.crt",
                                           "/etc/dpr/tls/%s.crt" % n1.name,
                                           "/etc/dpr/tls/%s.key" % n1.name) if tls else None)
        w.moves_on("warm-up", deps=(NAME, REPL), ops=200)
        harness.wait_for("%s's checkpoints copied" % REPL, lambda: all(
            i.get("replicated") for n in c for i in instances(n, REPL)
            if i["node"] == n.name), WAIT)
        # kill -9 of the leader's agent: new TLS connections elect another
        pid = lead.run("systemctl show -P MainPID dpr-agent").stdout.strip()
        lead.run(["kill", "-9", pid])
        harness.wait_for("a new leader", lambda: c.raft_leader() not in (None, lead), WAIT)
        harness.wait_for("the killed agent back as a follower",
                         lambda: json.loads(lead.run(["dprctl", "nodes", "--json"]).stdout)
                         ["raft"]["role"] == "follower", WAIT)
        w.moves_on("after kill -9 of the leader's agent", deps=(NAME,))
        # rotation: new certificates everywhere, systemctl reload
        if tls:
            c._issue_tls()
        said = ("SIGHUP: TLS certificates reloaded for new connections" if tls else
                "SIGHUP: TLS is off (tls.enabled), nothing to reload")
        for n in c:
            n.systemctl("reload", "dpr-agent")
            harness.wait_for("%s's reload" % n.name,
                             lambda n=n: said in n.journal("dpr-agent", lines=2000), 30)
            assert n.is_active("dpr-agent") == "active"
        if tls:
            # the agent reloads its instances: they read the new copies
            harness.wait_for("%s-0's reload" % NAME, lambda: "SIGHUP: TLS certificates "
                             "reloaded for new connections" in
                             n1.journal("dpr-cachestore@%s-0" % NAME, lines=500), 30)
        lead = harness.wait_for("a leader", lambda: c.raft_leader(), WAIT)
        pid = lead.run("systemctl show -P MainPID dpr-agent").stdout.strip()
        lead.run(["kill", "-9", pid])
        harness.wait_for("a leader after the rotation",
                         lambda: c.raft_leader() not in (None, lead), WAIT)
        w.moves_on("after the rotation", deps=(NAME, REPL))
        for n in c:
            assert "TLS refused" not in n.journal("dpr-agent", lines=5000)
        # node3 lost: its shard of REPL starts from the copies on another node
        victim = c[2]
        copy_on = [i for i in instances(victim, REPL) if i["node"] == victim.name][0]
        copied = copy_on["replicated"]
        harness.wait_for("copies made after the rotation", lambda: [
            i for i in instances(victim, REPL) if i["name"] == copy_on["name"]][0]
            .get("replicated", 0) > copied, WAIT)
        victim.power_cut()
        survivors = [n for n in c if n is not victim]
        harness.wait_for("%s serving on %s" % (copy_on["name"], copy_on["replicas"][0]),
                         lambda: [i for i in instances(survivors[0], REPL)
                                  if i["name"] == copy_on["name"] and i["ready"] and
                                  i["node"] == copy_on["replicas"][0]], WAIT)
        w.moves_on("after node3's shard moved", deps=(REPL,))
    finally:
        open(stop, "w").close()
        for cap in caps:
            cap.wait(timeout=60)
        if w is not None:
            results = w.finish()
    r = results.get(NAME, "")
    assert r.startswith("ok ") and " errors=0 " in r, "\n".join(w.log[-40:])
    # (REPL rolled back to the cut when its shard moved: what a rollback
    # reported lost is absent, everything else read back)
    assert results.get(REPL, "").startswith("ok "), "\n".join(w.log[-40:])
    with open(out, "rb") as f:
        raft = f.read()
    assert len(raft) > 10000, "the capture saw %d bytes of Raft" % len(raft)
    assert (NAME.encode() in raft) is (not tls)
    with open(repl_out, "rb") as f:
        repl = f.read()
    assert len(repl) > 10000, "the capture saw %d bytes of checkpoint copies" % len(repl)
    assert (REPL.encode() + b":" in repl) is (not tls)
    with open(shard_out, "rb") as f:
        shard = f.read()
    assert len(shard) > 1000, "the capture saw %d bytes of a shard's port" % len(shard)
    assert (REPL.encode() + b":" in shard) is (not tls)


# Inside a node: plain text to HOST:PORT, what came back (b"" for a close).
PLAIN = r'''
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(b"*1\r\n$4\r\nPING\r\n")
try:
    got = s.recv(100)
except OSError:
    got = b""
print(repr(got))
'''


def check_tls_shards(node):
    """Every instance: TLS only, clients' certificates required (the
    status, its journal), run as dpr-cachestore; plain text refused."""
    st = json.loads(node.run(["dprctl", "status", "--json"]).stdout)
    insts = [i for d in st["deployments"] for i in d["instances"]]
    assert insts and all(i["tls"] == "required" for i in insts), insts
    assert all(d["tls"] == {"clients": "required"} for d in st["deployments"])
    mine = [i for i in insts if i["node"] == node.name]
    j = node.journal("dpr-cachestore@%s" % mine[0]["name"], lines=200)
    assert "(TLS, client certificates: yes)" in j, j
    user = node.run(["systemctl", "show", "-P", "User",
                     "dpr-cachestore@%s" % mine[0]["name"]]).stdout.strip()
    assert user == "dpr-cachestore", user
    host, port = insts[-1]["endpoint"].rsplit(":", 1)
    got = node.run(["python3", "-c", PLAIN, host, port]).stdout.strip()
    assert "PONG" not in got, got


def instances(node, dep):
    """The instances of deployment dep in node's status."""
    st = json.loads(node.run(["dprctl", "status", "--json"]).stdout)
    return [i for d in st["deployments"] if d["name"] == dep for i in d["instances"]]
