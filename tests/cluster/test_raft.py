"""Issue 10: three agents form a Raft cluster on real systemd nodes; the
finder runs on the leader with its state in the replicated log.

The deployment `kv` (3 shards) runs on node1 (its node_selector), and a
session writes into it from node1 throughout (tests/cluster/writers.py).
Meanwhile:

  (a) kill -9 of dpr-agent on the leader: another agent leads, systemd
      restarts the killed one, which rejoins as a follower;
  (b) power cut of the leader (a node other than node1): a new leader
      serves the finder, the node boots again and rejoins;
  (c) cable cut of the leader (other than node1): the cut-off agent stops
      serving the finder and answers nothing from its old state, the two
      others elect a leader; after healing, the old leader is a follower;
  (d) power cut of both other nodes: node1 alone has no quorum (its status
      says so, its finder answers TRYAGAIN, commits stop, nothing fails);
      both boot again and the cluster goes on.

No cache-store dies, so the session sees no rollback at all; the world-line
never changes, the cut the session sees never goes back, and at the end
every operation reads back. Needs root (skipped otherwise).
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
  - name: kv
    version: "1"
    shards: 3
    checkpoint_interval_ms: 100
    node_selector:
      nodes: [node1]
"""

FINDER_PORT = harness.Cluster.FINDER_PORT


def nodes(node):
    return json.loads(node.run(["dprctl", "nodes", "--json"]).stdout)


def leader_of(c, among=None):
    return c.raft_leader(among)


def finder_answer(node, ip):
    """What the finder on ip answers node's DPR.SYNC kv (redis-cli's text)."""
    return node.run(["redis-cli", "-h", ip, "-p", str(FINDER_PORT), "DPR.SYNC", "kv"],
                    check=False).stdout.strip()


def move_leader_off(c, node, writers):
    """kill -9 of the agent on `node` while it leads (systemd restarts it)."""
    for _ in range(5):
        lead = harness.wait_for("a leader", lambda: leader_of(c), WAIT)
        if lead is not node:
            return lead
        node.run("kill -9 $(systemctl show -P MainPID dpr-agent)")
        harness.wait_for("another leader", lambda: leader_of(c) not in (None, node), WAIT)
        writers.moves_on("after moving the leader", deps=("kv",))
    raise AssertionError("node1 keeps winning the elections")


@pytest.mark.nodes(3)
def test_finder_fails_over_and_no_committed_operation_is_lost(cluster):
    c = cluster
    n1 = c[0]
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    c.configure_raft()
    lead = harness.wait_for("a raft leader", lambda: leader_of(c), WAIT)
    view = nodes(n1)
    assert len(view["nodes"]) == 3 and view["raft"]["quorum"] is True, view
    with open(n1.path("/root/cluster.yaml"), "w") as f:
        f.write(SPEC)
    n1.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
           timeout=WAIT + 30)
    st = json.loads(n1.run(["dprctl", "status", "--json"]).stdout)
    wl0 = st["deployments"][0]["world_line"]
    assert st["finder"]["address"] == ",".join("%s:%d" % (n.ip4, FINDER_PORT) for n in c)

    w = Writers(n1, ["kv"])
    try:
        w.moves_on("warm-up", deps=("kv",), ops=200)

        # (a) kill -9 of the leader's agent
        lead = harness.wait_for("a leader", lambda: leader_of(c), WAIT)
        pid = lead.run("systemctl show -P MainPID dpr-agent").stdout.strip()
        lead.run(["kill", "-9", pid])
        harness.wait_for("a new leader", lambda: leader_of(c) not in (None, lead), WAIT)
        harness.wait_for("the killed agent restarted as a follower",
                         lambda: nodes(lead)["raft"]["role"] == "follower", WAIT)
        w.moves_on("after kill -9 of the leader's agent", deps=("kv",))

        # (b) power cut of the leader (not node1, where the shards run)
        lead = move_leader_off(c, n1, w)
        cp = w.commit_point("kv")
        t0 = time.monotonic()
        lead.power_cut()
        others = [n for n in c if n is not lead]
        harness.wait_for("a leader after the power cut", lambda: leader_of(c, others), WAIT)
        failover = time.monotonic() - t0
        w.moves_on("after the power cut", deps=("kv",))
        assert w.commit_point("kv") >= cp
        lead.boot()
        harness.wait_for("dpr-agent", lambda: lead.is_active("dpr-agent") == "active", 60)
        harness.wait_for("the cut node rejoining", lambda: nodes(lead)["raft"]["role"] ==
                         "follower" and leader_of(c) is not None, WAIT)

        # (c) cable cut of the leader (not node1)
        lead = move_leader_off(c, n1, w)
        lead.partition()
        others = [n for n in c if n is not lead]
        # from the first instant of the cut, ask the cut-off finder for the
        # cut every 50 ms for 4 s: it must never answer one (it cannot
        # commit a barrier without its peers)
        probe = lead.spawn(["sh", "-c", "end=$(( $(date +%%s) + 4 )); "
                            "while [ $(date +%%s) -lt $end ]; do timeout 1 redis-cli -h %s "
                            "-p %d DPR.SYNC kv; echo .; sleep 0.05; done"
                            % (lead.ip4, FINDER_PORT)])
        try:
            harness.wait_for("a leader on the majority side", lambda: leader_of(c, others), WAIT)
            # the minority side stops serving and answers nothing from its state
            harness.wait_for("the cut-off finder refusing",
                             lambda: finder_answer(lead, lead.ip4).startswith("TRYAGAIN"), WAIT)
            st_cut = json.loads(lead.run(["dprctl", "status", "--json"]).stdout)
            assert st_cut["finder"]["served_here"] is False, st_cut["finder"]
            lines = [x.strip() for x in probe.communicate(timeout=30)[0].splitlines()]
            assert lines.count(".") >= 10, lines
            # a DPR.SYNC answer is lines of numbers (world-line, max version, cut)
            assert not any(x.isdigit() for x in lines), "the cut-off finder answered: %r" % lines
            assert all(x in (".", "") or x.startswith("TRYAGAIN") for x in lines), lines
            w.moves_on("during the cable cut", deps=("kv",))
        finally:
            lead.heal()
        harness.wait_for("the old leader rejoining as follower",
                         lambda: nodes(lead)["raft"]["role"] == "follower" and
                         leader_of(c) not in (None, lead), WAIT)
        w.moves_on("after healing", deps=("kv",))

        # (d) two of three lost: no quorum, no progress, no failure
        lost = [n for n in c if n is not n1]
        for n in lost:
            n.power_cut()
        harness.wait_for("no quorum on node1", lambda: nodes(n1)["raft"]["quorum"] is False, WAIT)
        assert finder_answer(n1, n1.ip4).startswith("TRYAGAIN")
        cp = w.commit_point("kv")
        time.sleep(3)
        assert w.commit_point("kv") == cp, "a commit without a finder quorum"
        for n in lost:
            n.boot()
        harness.wait_for("a leader again", lambda: leader_of(c), WAIT)
        w.moves_on("after the quorum came back", deps=("kv",))
    finally:
        results = w.finish()

    log = "\n".join(w.log[-40:])
    r = results.get("kv", "")
    assert r.startswith("ok "), log
    assert " rollbacks=0 errors=0 " in r, r
    assert "world-line=%d->%d" % (wl0, wl0) in r, r
    st = json.loads(n1.run(["dprctl", "status", "--json"]).stdout)
    assert st["deployments"][0]["world_line"] == wl0
    print("leader power cut -> new leader seen by dprctl in %.2f s" % failover)
