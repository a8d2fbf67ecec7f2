"""Issue 11 (node loss, without replicas): a node of a three-node cluster
loses power while sessions write.

Deployment `kv` has a shard on every node; `sessions` runs on node1 and
node2 only (its node_selector). node3's power is cut: after
raft.node_down_after_ms (10 s) the leader marks it down, `kv` is reported
degraded (its shard on node3 waits for its node: its checkpoints are on no
other machine, so it never starts empty elsewhere) and `sessions` goes on
untouched. node3 boots again: it is marked up, its agent starts the shard,
which recovers from its own checkpoint; `kv` rolls back to the cut as
after any crash. At the end every operation of both sessions that was
committed reads back, survivors are a prefix, and `sessions` never rolled
back. Needs root (skipped otherwise).
"""
import json
import time

import pytest

import cluster as harness
from writers import Writers

WAIT = 120

SPEC = """\
name: demo
cachestores:
  - {name: kv, version: "1", shards: 3, checkpoint_interval_ms: 100}
  - name: sessions
    version: "1"
    shards: 2
    checkpoint_interval_ms: 100
    node_selector: {nodes: [node1, node2]}
"""


def status(node):
    return json.loads(node.run(["dprctl", "status", "--json"]).stdout)


def dep(st, name):
    return [d for d in st["deployments"] if d["name"] == name][0]


@pytest.mark.nodes(3)
def test_a_lost_node_leaves_its_deployment_degraded_until_it_returns(cluster):
    c = cluster
    n1, victim = c[0], c[2]
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    c.configure_raft()
    harness.wait_for("a raft leader", lambda: c.raft_leader(), WAIT)
    with open(n1.path("/root/cluster.yaml"), "w") as f:
        f.write(SPEC)
    n1.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
           timeout=WAIT + 30)
    st = status(n1)
    assert [i["node"] for i in dep(st, "kv")["instances"]] == ["node1", "node2", "node3"], st
    assert sorted(i["node"] for i in dep(st, "sessions")["instances"]) == ["node1", "node2"]

    w = Writers(n1, ["kv", "sessions"])
    try:
        w.moves_on("warm-up", ops=200)
        t0 = time.monotonic()
        victim.power_cut()
        st = harness.wait_for("node3 marked down", lambda: (
            lambda s: s if (s.get("cluster_spec") or {}).get("down") == ["node3"] else None)(
                status(n1)), WAIT)
        detected = time.monotonic() - t0
        kv = dep(st, "kv")
        assert kv["degraded"] and "kv-2 (on node3)" in kv["degraded"], kv
        assert kv["instances"][2]["health"] == "node-down", kv["instances"][2]
        assert dep(st, "sessions")["degraded"] is None
        text = n1.run(["dprctl", "status"]).stdout
        assert "warning: nodes down (no contact): node3" in text, text
        assert "warning: deployment kv is degraded" in text, text
        # the other deployment goes on while node3 is away
        w.moves_on("sessions during the outage", deps=("sessions",), ops=200)

        victim.boot()
        harness.wait_for("dpr-agent on node3",
                         lambda: victim.is_active("dpr-agent") == "active", 60)
        harness.wait_for("node3 marked up", lambda: not (status(n1).get("cluster_spec") or {})
                         .get("down"), WAIT)
        harness.wait_for("kv ready again", lambda: all(
            i["ready"] for i in dep(status(n1), "kv")["instances"]), WAIT)
        assert dep(status(n1), "kv")["degraded"] is None
        w.moves_on("after node3 returned", ops=100)
    finally:
        results = w.finish()
    log = "\n".join(w.log[-40:])
    assert results.get("kv", "").startswith("ok "), log
    assert results.get("sessions", "").startswith("ok "), log
    assert " rollbacks=0 errors=0 " in results["sessions"], results["sessions"]
    print("node power cut -> marked down after %.1f s (raft.node_down_after_ms 10 s)" % detected)
