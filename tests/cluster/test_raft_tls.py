"""Issue 14: three agents on real systemd nodes with Raft over mutual TLS
(agent.conf `tls`, each node's certificate in /etc/dpr/tls/, the unit's
ExecReload). A deployment is applied and a session writes into it; the
leader's agent is killed (kill -9) and another leads over new TLS
connections; `systemctl reload dpr-agent` loads new certificates on every
node and the cluster goes on; a capture on the test bridge's ports shows
Raft's traffic and never the deployment's name (which every Raft entry of
the cluster spec carries) in plain text. The same without TLS is the
control: there the capture sees the name, and reload only says there is
nothing to reload. Needs root (skipped otherwise).
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
SPEC = """\
name: demo
cachestores:
  - name: %s
    version: "1"
    shards: 2
    checkpoint_interval_ms: 100
    node_selector:
      nodes: [node1]
""" % NAME
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
    cap = subprocess.Popen(["ip", "netns", "exec", c.netns, sys.executable, CAPTURE,
                            ",".join(n.veth for n in c), str(c.RAFT_PORT), stop, out])
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
        w = Writers(n1, [NAME])
        w.moves_on("warm-up", deps=(NAME,), ops=200)
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
        lead = harness.wait_for("a leader", lambda: c.raft_leader(), WAIT)
        pid = lead.run("systemctl show -P MainPID dpr-agent").stdout.strip()
        lead.run(["kill", "-9", pid])
        harness.wait_for("a leader after the rotation",
                         lambda: c.raft_leader() not in (None, lead), WAIT)
        w.moves_on("after the rotation", deps=(NAME,))
        for n in c:
            assert "TLS refused" not in n.journal("dpr-agent", lines=5000)
    finally:
        open(stop, "w").close()
        cap.wait(timeout=60)
        if w is not None:
            results = w.finish()
    r = results.get(NAME, "")
    assert r.startswith("ok ") and " errors=0 " in r, "\n".join(w.log[-40:])
    with open(out, "rb") as f:
        raft = f.read()
    assert len(raft) > 10000, "the capture saw %d bytes of Raft" % len(raft)
    assert (NAME.encode() in raft) is (not tls)
