#!/usr/bin/python3
"""examples/cluster-demo.py [--build DIR] - three nodes and a leader power cut.

What `sudo make demo-cluster` runs (as root; needs what
tests/cluster/cluster.py needs, see docs/testing-clusters.md):

 1. installs the build into a staging tree, boots three real systemd nodes
    in private namespaces on one bridge, gives their agents one Raft
    cluster (agent.conf raft group, docs/operations.md "A cluster of
    nodes") and prints `dprctl nodes`;
 2. `dprctl apply --wait` of examples/cluster-3nodes.yaml on node1: the
    leader places the instances (deployment "sessions" spread over the
    three nodes, "kv" on node1 by its node_selector) and prints `dprctl
    status` with each instance's node; a DPR session in node1 writes into
    deployment "kv";
 3. makes sure the finder runs on another node than node1 (it restarts
    node1's agent while it leads), then cuts that node's power: the two
    others elect a leader, it serves the finder from the replicated log,
    and the session goes on; prints how long the finder was away;
 4. boots the node again: it rejoins as a follower;
 5. stops the session, which reads every key back: nothing committed is
    lost and, since no cache-store died, nothing rolls back at all;
 6. tears everything down (also on errors and Ctrl-C).
"""
import argparse
import json
import os
import shutil
import sys
import time

import demoutil
from demoutil import ROOT, indent, section

WAIT = 120


def demo(harness, build, cluster_box):
    from writers import Writers

    section("1. Install the build, boot three nodes, form a Raft cluster")
    c, lead = demoutil.raft_cluster(harness, build, 3, cluster_box, WAIT)
    n1 = c[0]
    harness.wait_for("every node named", lambda: {
        x["name"] for x in json.loads(n1.run(["dprctl", "nodes", "--json"]).stdout)["nodes"]}
        == {n.name for n in c}, WAIT)
    print("   nodes %s booted; the finder runs on %s's agent" % (
        ", ".join("%s (%s)" % (n.name, n.ip4) for n in c), lead.name))
    print(indent(n1.run(["dprctl", "nodes"]).stdout))

    section("2. dprctl apply -f cluster-3nodes.yaml on node1, a session writing")
    shutil.copy(os.path.join(ROOT, "examples", "cluster-3nodes.yaml"),
                n1.path("/root/cluster.yaml"))
    r = n1.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
               timeout=WAIT + 30)
    print(indent(r.stdout))
    print(indent(n1.run(["dprctl", "status"]).stdout))
    st = json.loads(n1.run(["dprctl", "status", "--json"]).stdout)
    wl0 = {d["name"]: d["world_line"] for d in st["deployments"]}["kv"]
    print("   finder addresses given to cache-stores and clients: %s" % st["finder"]["address"])
    w = Writers(n1, ["kv"])
    try:
        w.moves_on("warm-up", deps=("kv",), ops=200)
        print("   the session wrote %d operations, commit point %d"
              % (w.last_seq("kv"), w.commit_point("kv")))

        section("3. Power cut of the leader")
        for _ in range(5):
            lead = harness.wait_for("a leader", c.raft_leader, WAIT)
            if lead is not n1:
                break
            print("   node1 leads: restarting its agent so that another node leads "
                  "(the cache-stores on node1 keep running)")
            n1.systemctl("restart", "dpr-agent")
            harness.wait_for("another leader", lambda: c.raft_leader() not in (None, n1), WAIT)
        others = [n for n in c if n is not lead]
        print("   cutting the power of %s (the leader)" % lead.name)
        t0 = time.monotonic()
        lead.power_cut()
        new = harness.wait_for("a new leader", lambda: c.raft_leader(others), WAIT)
        took = time.monotonic() - t0
        print("   %s leads after %.2fs (as dprctl status shows it) and serves the finder"
              % (new.name, took))
        w.moves_on("after the power cut", deps=("kv",))
        print("   the session goes on: %d operations, commit point %d"
              % (w.last_seq("kv"), w.commit_point("kv")))
        print(indent(n1.run(["dprctl", "nodes"]).stdout))

        section("4. The node boots again")
        lead.boot()
        harness.wait_for("dpr-agent", lambda: lead.is_active("dpr-agent") == "active", 60)
        harness.wait_for("it rejoining", lambda: json.loads(lead.run(
            ["dprctl", "nodes", "--json"]).stdout)["raft"]["role"] == "follower", WAIT)
        print("   %s is a follower of %s again" % (lead.name, new.name))
        w.moves_on("after the boot", deps=("kv",))
    finally:
        section("5. Stop the session and read every key back")
        results = w.finish()
    r = results.get("kv", "FAILED no result")
    print("   " + r)
    if not r.startswith("ok ") or " rollbacks=0 " not in r or \
            "world-line=%d->%d" % (wl0, wl0) not in r:
        raise RuntimeError("the session's check failed: %s" % r)
    return took, r


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"))
    a = ap.parse_args()
    harness = demoutil.prepare("demo-cluster")
    if harness is None:
        return 2
    print("DPR Cluster demo: three systemd nodes, the finder on the Raft leader, a power cut")
    box, rc, res = [], 1, None
    try:
        res = demo(harness, a.build, box)
        rc = 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        rc = 130
    except Exception as e:  # noqa: BLE001 - report, tear down, fail
        print("\ndemo FAILED: %s" % e, file=sys.stderr)
    finally:
        note, rc = demoutil.teardown(harness, box[0] if box else None, rc)
        section("6. Teardown")
        print("   " + note)
    if rc == 0:
        print("\ndemo OK: the leader's power was cut, the finder was back on another node "
              "after %.2fs; the session lost nothing and never rolled back (%s)" % res)
    return rc


if __name__ == "__main__":
    sys.exit(main())
