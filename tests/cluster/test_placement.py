"""Issue 11 (placement): three agents in one Raft cluster on real systemd
nodes place the instances of every deployment across the nodes.

Three 3-shard deployments applied from one node spread over all three
(no two shards of one deployment on one node), every node's status shows
every instance with its NODE, and sessions written from a third node
through shards on all nodes read everything back; every checkpoint they
stand on was copied to another node first (replicas: 1 by default). A node selector by label
keeps a deployment on the labelled node; a node's max_instances is a limit
the leader keeps (a spec that needs more is refused with the reason, and
nothing changes). Needs root (skipped otherwise).
"""
import json

import pytest

import cluster as harness
from writers import Writers

WAIT = 120

SPEC = """\
name: demo
cachestores:
  - {name: kv, version: "1", shards: 3, checkpoint_interval_ms: 100}
  - {name: sessions, version: "1", shards: 3, checkpoint_interval_ms: 100}
  - {name: cache, version: "1", shards: 3, checkpoint_interval_ms: 100}
"""

MORE = SPEC + """\
  - {name: fast, version: "1", shards: 2, node_selector: {labels: [ssd]}}
"""

TOO_MANY = MORE + """\
  - {name: big, version: "1", shards: 9}
"""


def status(node, name=None):
    return json.loads(node.run(["dprctl", "status", "--json"] + ([name] if name else []))
                      .stdout)


def nodes_of(st, name):
    d = [d for d in st["deployments"] if d["name"] == name][0]
    return [i["node"] for i in d["instances"]]


def apply(node, text, check=True):
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(text)
    return node.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
                    timeout=WAIT + 30, check=check)


@pytest.mark.nodes(3)
def test_deployments_spread_over_the_nodes_and_sessions_use_them(cluster):
    c = cluster
    n1, n2, n3 = c[0], c[1], c[2]
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    # node3 has an SSD; node2 takes at most 4 instances
    c.configure_raft(labels={"node3": ["ssd", "zone=b"]}, max_instances={"node2": 4})
    harness.wait_for("a raft leader", lambda: c.raft_leader(), WAIT)

    r = apply(n2, SPEC)
    assert "placement" in r.stdout, r.stdout
    for n in c:
        st = status(n)
        for name in ("kv", "sessions", "cache"):
            assert sorted(nodes_of(st, name)) == ["node1", "node2", "node3"], (n, st)
    # all ready, seen from any node; the table has the NODE column
    st = status(n3)
    assert all(i["ready"] for d in st["deployments"] for i in d["instances"]), st
    table = n1.run(["dprctl", "status"]).stdout
    for name in ("kv-0", "sessions-2", "cache-1"):
        line = [x for x in table.splitlines() if x.startswith(name + " ")]
        assert line and any(node in line[0] for node in ("node1", "node2", "node3")), table
    # each node runs its own part as systemd units
    for n in c:
        here = [i["name"] for d in status(n)["deployments"] for i in d["instances"]
                if i["node"] == n.name]
        assert len(here) == 3, (n, here)
        for inst in here:
            assert n.is_active("dpr-cachestore@%s" % inst) == "active", (n, inst)

    # sessions through shards on every node
    w = Writers(n3, ["kv", "sessions"])
    try:
        w.moves_on("sessions across the nodes", ops=300)
    finally:
        results = w.finish()
    for dep in ("kv", "sessions"):
        assert results.get(dep, "").startswith("ok "), "\n".join(w.log[-40:])
        assert " rollbacks=0 errors=0 " in results[dep], results[dep]
    # every checkpoint those commits stand on was copied to one other node
    for n in c:
        for d in status(n)["deployments"]:
            for i in d["instances"]:
                if i["node"] != n.name or d["name"] not in ("kv", "sessions"):
                    continue
                assert len(i["replicas"]) == 1 and i["replicas"][0] != n.name, i
                assert i["replicated"] and i["replica_error"] is None, i
                holder = c[i["replicas"][0]]
                assert holder.run("ls /var/lib/dpr/replicas/%s/%d" % (d["name"], i["worker"]))\
                    .stdout.split(), (holder, i)

    # a label selector: both shards of fast on node3 (the only ssd node)
    apply(n1, MORE)
    assert nodes_of(status(n2), "fast") == ["node3", "node3"]
    # node2's limit: big needs more room than node1 and node3 leave... it
    # fits (9 more: node2 has 1 left, the others take the rest); the plan
    # tells where
    plan = n1.run("cd /root && cat > big.yaml <<'X'\n%sX\ndprctl plan -f big.yaml" % TOO_MANY)
    assert "big:" in plan.stdout, plan.stdout
    placed = [ln for ln in plan.stdout.splitlines() if ln.strip().startswith("big:")][0]
    assert placed.split().count("node2") == 1, plan.stdout
    # a spec that needs more than any node may take is refused, nothing changes
    gen = status(n1)["cluster_spec"]["generation"]
    r = apply(n1, MORE + "  - {name: huge, version: \"1\", shards: 2, "
                         "node_selector: {nodes: [node2]}}\n", check=False)
    assert r.returncode != 0 and "node.max_instances" in r.stderr + r.stdout, r.stderr
    assert status(n1)["cluster_spec"]["generation"] == gen

    # everything deleted: every node stops its instances and each worker is
    # forgotten by the finder (a follower asks the leader's)
    apply(n2, "name: demo\ncachestores: []\n")
    harness.wait_for("every instance retired", lambda: all(
        not status(n)["retiring"] and not status(n)["deployments"] for n in c), WAIT)
    assert all(not d["workers"] for d in status(n1)["finder"]["domains"]), \
        status(n1)["finder"]["domains"]
