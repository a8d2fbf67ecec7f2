"""Issue 11: a node of a three-node cluster is lost while sessions write.

test_a_lost_node_leaves_its_deployment_degraded_until_it_returns: `kv`
(replicas: 0) has a shard on every node; `sessions` runs on node1 and node2
only (its node_selector). node3's power is cut: after
raft.node_down_after_ms (10 s) the leader marks it down, `kv` is reported
degraded (its shard on node3 waits for its node: its checkpoints are on no
other machine, so it never starts empty elsewhere) and `sessions` goes on
untouched. node3 boots again: it is marked up, its agent starts the shard,
which recovers from its own checkpoint; `kv` rolls back to the cut as
after any crash.

test_a_lost_node_s_instances_move_and_the_old_ones_are_fenced: `kv` keeps a
copy of each shard's checkpoints on another node (replicas: the default,
1). node3 is lost (its power cut, or its cable: then its processes go on
running, cut off); once it is marked down its shard moves to the node
holding its copies and starts there from them (the cluster rolls back to
the cut), the other shards get a layout with its new address and the
session follows it. When node3 comes back its old instance is fenced: the
finder refuses its registration or its reports (the worker has another
token now), it stops, and its agent retires it.

Both: at the end every operation of both sessions that was committed reads
back, survivors are a prefix, and `sessions` never rolled back. Needs root
(skipped otherwise).
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
  - {name: kv, version: "1", shards: 3, checkpoint_interval_ms: 100, replicas: REPLICAS}
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


def check_results(w, results):
    """Every committed operation of both sessions read back, survivors a
    prefix (writers.py), and `sessions` never rolled back."""
    log = "\n".join(w.log[-40:])
    assert results.get("kv", "").startswith("ok "), log
    assert results.get("sessions", "").startswith("ok "), log
    assert " rollbacks=0 errors=0 " in results["sessions"], results["sessions"]


def start(c, replicas):
    """The agents one cluster; SPEC applied from node1, kv with `replicas`;
    node1's status once every instance is ready."""
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    c.configure_raft()
    harness.wait_for("a raft leader", lambda: c.raft_leader(), WAIT)
    with open(c[0].path("/root/cluster.yaml"), "w") as f:
        f.write(SPEC.replace("REPLICAS", str(replicas)))
    c[0].run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
             timeout=WAIT + 30)
    st = status(c[0])
    assert [i["node"] for i in dep(st, "kv")["instances"]] == ["node1", "node2", "node3"], st
    return st


@pytest.mark.nodes(3)
def test_a_lost_node_leaves_its_deployment_degraded_until_it_returns(cluster):
    c = cluster
    n1, victim = c[0], c[2]
    st = start(c, replicas=0)
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
    check_results(w, results)
    print("node power cut -> marked down after %.1f s (raft.node_down_after_ms 10 s)" % detected)


def inst(st, name):
    return [i for d in st["deployments"] for i in d["instances"] if i["name"] == name][0]


@pytest.mark.nodes(3)
@pytest.mark.parametrize("how", ["power", "cable"])
def test_a_lost_node_s_instances_move_and_the_old_ones_are_fenced(cluster, how):
    c = cluster
    n1, victim = c[0], c[2]
    st = start(c, replicas=1)
    # (what an instance's copies are, its own node's status says)
    copy_on = inst(status(victim), "kv-2")["replicas"]
    worker = inst(st, "kv-2")["worker"]
    assert copy_on in (["node1"], ["node2"]), inst(status(victim), "kv-2")

    w = Writers(n1, ["kv", "sessions"])
    try:
        w.moves_on("warm-up", ops=200)
        harness.wait_for("kv-2's checkpoints copied", lambda: (
            inst(status(victim), "kv-2").get("replicated") or 0) > 0, WAIT)
        t0 = time.monotonic()
        if how == "power":
            victim.power_cut()
        else:
            victim.partition()
        harness.wait_for("node3 marked down", lambda: (
            (status(n1).get("cluster_spec") or {}).get("down") == ["node3"]), WAIT)
        detected = time.monotonic() - t0
        st = harness.wait_for("kv-2 serving on %s" % copy_on[0], lambda: (
            lambda s: s if inst(s, "kv-2")["node"] == copy_on[0] and inst(s, "kv-2")["ready"]
            else None)(status(n1)), WAIT)
        serving = time.monotonic() - t0
        assert dep(st, "kv")["degraded"] is None, dep(st, "kv")
        # its copies now go to the node left (node3 is down)
        moved = inst(status(c[copy_on[0]]), "kv-2")
        assert moved["replicas"] == [{"node1": "node2", "node2": "node1"}[copy_on[0]]], moved
        w.moves_on("kv after the move", deps=("kv",), ops=200)

        if how == "power":
            victim.boot()
        else:
            victim.heal()
        harness.wait_for("dpr-agent on node3",
                         lambda: victim.is_active("dpr-agent") == "active", 60)
        harness.wait_for("node3 marked up", lambda: not (status(n1).get("cluster_spec") or {})
                         .get("down"), WAIT)
        # the old incarnation does not run, and its agent retired it
        def retired():
            j = victim.journal(lines=3000)
            done = (victim.is_active("dpr-cachestore@kv-2") != "active" and
                    "kv-2: retired, but worker %d stays in the finder" % worker in j)
            return j if done else None
        try:
            journal = harness.wait_for("kv-2 retired on node3", retired, WAIT)
        except harness.HarnessError:
            print(victim.journal(lines=400))
            raise
        if how == "cable":  # it ran on, cut off: its reports were refused
            assert "fenced" in journal, journal[-4000:]
        st = status(n1)
        assert inst(st, "kv-2")["node"] == copy_on[0], st
        assert all(i["ready"] for i in dep(st, "kv")["instances"]), dep(st, "kv")
        w.moves_on("after node3 returned", ops=100)
    finally:
        results = w.finish()
    check_results(w, results)
    print("node lost (%s) -> marked down after %.1f s, kv-2 serving on %s after %.1f s"
          % (how, detected, copy_on[0], serving))


@pytest.mark.nodes(3)
def test_a_deployment_deleted_while_a_node_is_down_can_come_back_at_once(cluster):
    """kv-2 moves off node3 (lost), then `kv` is deleted and, as soon as
    node3 boots, created again under the same name: the new kv-2 may land on
    node3, where the old incarnation's unit and state still are. The old one
    retires (the cluster deleted it while node3 was away) and is never taken
    for the new deployment's shard; every shard of the new `kv` starts empty
    with a worker id of its own and becomes ready."""
    c = cluster
    n1, victim = c[0], c[2]
    st = start(c, replicas=1)
    old = [i["worker"] for d in st["deployments"] for i in d["instances"]]
    with open(n1.path("/root/rw.py"), "w") as f:
        f.write(RW)
    assert n1.run(["python3", "/root/rw.py", "old"], timeout=WAIT).stdout.split() == ["50", "50"]
    harness.wait_for("kv-2's checkpoints copied", lambda: (
        inst(status(victim), "kv-2").get("replicated") or 0) > 0, WAIT)
    victim.power_cut()
    harness.wait_for("kv-2 serving off node3", lambda: (
        lambda s: s if inst(s, "kv-2")["node"] != "node3" and inst(s, "kv-2")["ready"]
        else None)(status(n1)), WAIT)
    with open(n1.path("/root/empty.yaml"), "w") as f:
        f.write("name: demo\ncachestores: []\n")
    n1.run("cd /root && dprctl apply -f empty.yaml --wait --timeout %d" % WAIT, timeout=WAIT + 30)
    victim.boot()
    harness.wait_for("node3 marked up", lambda: not (status(n1).get("cluster_spec") or {})
                     .get("down"), WAIT)
    n1.run("cd /root && dprctl apply -f cluster.yaml", timeout=WAIT)
    try:
        st = harness.wait_for("every instance ready", lambda: (
            lambda s: s if len(s["deployments"]) == 2 and all(
                i["ready"] for d in s["deployments"] for i in d["instances"]) else None)(
                    status(n1)), WAIT)
    except harness.HarnessError:
        print(json.dumps(status(n1), indent=1))
        print(victim.journal(lines=300))
        raise
    new = [i["worker"] for d in st["deployments"] for i in d["instances"]]
    assert not set(old) & set(new), (old, new)
    # the old keys are gone with the old deployment; the new one works
    assert n1.run(["python3", "/root/rw.py", "new"], timeout=WAIT).stdout.split() == ["0", "50"]


# rw.py old|new: how many of the 50 "old" keys kv holds, after writing (and
# committing) them when told "old"; then the same for 50 keys of its own.
RW = """\
import sys, dpr
with dpr.connect() as c:
    with c.client("kv", timeout=30, reconnect_timeout=60).session() as s:
        for i in range(50):
            if sys.argv[1] == "old":
                s.set("old%d" % i, "v")
            s.set("%s%d" % (sys.argv[1], i), "v")
        s.wait_committed(timeout=60)
        print(sum(s.get("old%d" % i) == b"v" for i in range(50)))
        print(sum(s.get("%s%d" % (sys.argv[1], i)) == b"v" for i in range(50)))
"""
