"""Issue 13 (roll-outs) in a cluster of agents: a deployment spread over
three real systemd nodes gets a new version; each node rolls the instance
placed on it in turn, `dprctl apply --wait` returns only once every instance on
every node runs the new generation and is ready (status from any node shows
each instance's running version), and a version that fails halts the
roll-out on the node where it failed: `apply --wait` from another node
fails at once with that node's reason; undo goes back everywhere. Needs
root (skipped otherwise).

The order is cluster-wide: one instance at a time over the three nodes, in
shard order, each ready for min_ready_seconds before the next (each node
sees the others' instances in their instance records).

pause, resume and undo are spec changes (through the leader, in the Raft
log) that every node's reconciler honours: paused mid-roll-out, nothing more
restarts on any node; resumed from another node, it finishes on all of them;
a halt on one node is lifted by a resume given on any node (the spec's
rollout.resumed count).
"""
import json
import time

import pytest

import cluster as harness
from test_placement import apply as apply_spec  # --wait, from /root/cluster.yaml

WAIT = 120

SPEC = """\
name: demo
cachestores:
  - {name: kv, version: "%s", shards: 3, checkpoint_interval_ms: 100,
     rollout: {min_ready_seconds: 1}}
"""


# an implementation that fails while /etc/dpr/fail-kv exists on its node
FLAKY = """#!/bin/sh
[ -e /etc/dpr/fail-kv ] && exit 1
exec /usr/local/bin/dpr-kv "$@"
"""


def status(node, name="kv"):
    return json.loads(node.run(["dprctl", "status", "--json", name]).stdout)


def kv(node):
    d = status(node)["deployments"][0]
    return {i["name"]: i for i in d["instances"]}, d


def apply(node, version, check=True):
    return apply_spec(node, SPEC % version, check=check)


def rollout_of(node):
    """The deployment's rollout in status; None while the agent does not
    answer (it restarts)."""
    r = node.run(["dprctl", "status", "--json", "kv"], check=False)
    return json.loads(r.stdout)["deployments"][0]["rollout"] if r.returncode == 0 else None


def restarts(c, since):
    """{instance: time} of the roll-out's restarts since since ({node: the
    node's clock}), and {instance: time} each was ready after it."""
    restarted, ready = {}, {}
    for n in c:
        out = n.run("journalctl --no-pager -o json --since @%s" % since[n.name]).stdout
        for line in out.splitlines():
            e = json.loads(line)
            msg, t = e.get("MESSAGE", ""), int(e["__REALTIME_TIMESTAMP"]) / 1e6
            inst = e.get("DPR_INSTANCE")
            if not isinstance(msg, str) or not inst:
                continue
            if "roll-out: restarting it for generation" in msg:
                restarted[inst] = t
            elif msg.startswith("ready: worker") and inst in restarted:
                ready.setdefault(inst, t)
    return restarted, ready


def clocks(c):
    return {n.name: n.run("date +%s.%N").stdout.strip() for n in c}


def own_pids(c):
    """{instance: main_pid} as each instance's own node tells it."""
    pids = {}
    for n in c:
        for name, i in kv(n)[0].items():
            if i["node"] == n.name:
                pids[name] = i["main_pid"]
    return pids


@pytest.mark.nodes(3)
def test_rollout_over_three_nodes(cluster):
    c = cluster
    n1, n2, n3 = c[0], c[1], c[2]
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    c.configure_raft()
    # an implementation whose process exits at once: the version that fails
    for n in c:
        with open(n.path("/etc/dpr/agent.conf"), "a") as f:
            f.write('cachestores = { impls = { dpr-kv = "/usr/local/bin/dpr-kv"; '
                    'broken = "/bin/false"; flaky = "/usr/local/bin/dpr-flaky"; }; };\n')
        with open(n.path("/usr/local/bin/dpr-flaky"), "w") as f:
            f.write(FLAKY)
        n.run("chmod 755 /usr/local/bin/dpr-flaky")
        n.systemctl("restart", "dpr-agent")
    harness.wait_for("a raft leader", lambda: c.raft_leader(), WAIT)
    apply(n1, "1")
    before = {n.name: kv(n)[0] for n in c}  # (main_pid: each node of its own)
    assert sorted(i["node"] for i in before["node2"].values()) == ["node1", "node2", "node3"]

    # apply --wait from node2 returns when every node rolled its instance,
    # one instance at a time over the cluster, in shard order, each ready
    # (for min_ready_seconds, 1) before the next is restarted
    since = clocks(c)
    r = apply(n2, "2")
    assert r.returncode == 0, r.stderr
    restarted, ready = restarts(c, since)
    assert sorted(restarted, key=restarted.get) == ["kv-0", "kv-1", "kv-2"], restarted
    assert restarted["kv-1"] >= ready["kv-0"] + 0.9, (restarted, ready)
    assert restarted["kv-2"] >= ready["kv-1"] + 0.9, (restarted, ready)
    for n in c:
        insts, d = kv(n)
        assert d["rollout"]["phase"] == "done", d["rollout"]
        for name, i in insts.items():
            assert i["ready"] and i["running_version"] == "2" and not i["outdated"], (n, i)
            if i["node"] == n.name:
                assert i["main_pid"] != before[n.name][name]["main_pid"]
        for name in insts:
            node = c[insts[name]["node"]]
            env = node.run("cat /run/dpr/instances/%s.env" % name).stdout
            assert "DPR_VERSION=2" in env, (node, env)

    # a version whose process exits: the roll-out halts on every node (each
    # restarts its own instance), apply --wait says why at once
    r = apply_spec(n3, (SPEC % "3").replace("version:", "impl: broken, version:"),
                   check=False)
    assert r.returncode == 1 and "roll-out halted" in r.stderr, (r.stdout, r.stderr)
    _, d = kv(n1)
    assert d["rollout"]["phase"] == "halted" and "failed after its update" in \
        d["rollout"]["halted"], d["rollout"]

    # undo from node1: back on version 2 everywhere
    r = n1.run("dprctl rollout undo kv --wait --timeout %d" % WAIT, timeout=WAIT + 30,
               check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for n in c:
        insts, d = kv(n)
        assert all(i["running_version"] == "2" and i["ready"] for i in insts.values()), insts

    # paused mid-roll-out (from node2, while kv-0 runs version 4 and is
    # ready for less than min_ready_seconds): nothing more restarts on any
    # node, every node says paused
    pids = own_pids(c)
    slow = SPEC.replace("min_ready_seconds: 1", "min_ready_seconds: 6")
    with open(n1.path("/root/cluster.yaml"), "w") as f:
        f.write(slow % "4")
    n1.run("cd /root && dprctl apply -f cluster.yaml", timeout=60)
    harness.wait_for("kv-0 restarted for version 4",
                     lambda: kv(n1)[0]["kv-0"]["running_version"] == "4", WAIT, 0.1)
    n2.run("dprctl rollout pause kv", timeout=60)
    time.sleep(10)
    for n in c:
        insts, d = kv(n)
        assert d["rollout"]["phase"] == "paused" and d["rollout"]["paused"], (n, d["rollout"])
        assert set(d["rollout"]["nodes"].values()) == {"paused"}, (n, d["rollout"])
        assert insts["kv-0"]["running_version"] == "4", (n, insts["kv-0"])
        for name in ("kv-1", "kv-2"):
            assert insts[name]["running_version"] == "2" and insts[name]["outdated"], \
                (n, insts[name])
    now = own_pids(c)
    assert now["kv-0"] != pids["kv-0"]
    assert (now["kv-1"], now["kv-2"]) == (pids["kv-1"], pids["kv-2"]), (pids, now)

    # resumed from node3: it finishes on every node, in shard order
    since = clocks(c)
    r = n3.run("dprctl rollout resume kv --wait --timeout %d" % WAIT, timeout=WAIT + 30,
               check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    restarted, ready = restarts(c, since)
    assert sorted(restarted, key=restarted.get) == ["kv-1", "kv-2"], restarted
    assert restarted["kv-2"] >= ready["kv-1"] + 5.9, (restarted, ready)
    for n in c:
        insts, d = kv(n)
        assert d["rollout"]["phase"] == "done" and not d["rollout"]["paused"], d["rollout"]
        assert all(i["running_version"] == "4" and i["ready"] and not i["outdated"]
                   for i in insts.values()), (n, insts)

    # a halt on kv-0's node, lifted by a resume given on another node: the
    # roll-out goes on there and everywhere
    insts, _ = kv(n1)
    home = c[insts["kv-0"]["node"]]
    other = next(n for n in c if n.name != home.name)
    home.run("touch /etc/dpr/fail-kv")
    r = apply_spec(other, (SPEC % "5").replace("version:", "impl: flaky, version:"),
                   check=False)
    assert r.returncode == 1 and "roll-out halted" in r.stderr, (r.stdout, r.stderr)
    for n in c:
        _, d = kv(n)
        assert d["rollout"]["phase"] == "halted" and "kv-0 failed after its update" in \
            d["rollout"]["halted"], (n, d["rollout"])
    insts, _ = kv(n1)
    assert insts["kv-1"]["running_version"] == "4", insts["kv-1"]
    # kv-0's agent restarted: its roll-out stays halted, with its reason
    reason = kv(home)[1]["rollout"]["halted"]
    home.systemctl("restart", "dpr-agent")
    ro = harness.wait_for("kv-0's agent back, halted", lambda: (
        lambda r: r if r and r["phase"] == "halted" else None)(rollout_of(home)), WAIT)
    assert ro["halted"] == reason, (ro, reason)
    for n in c:
        ro = harness.wait_for("%s sees the halt" % n.name, lambda n=n: (
            lambda r: r if r and r["phase"] == "halted" else None)(rollout_of(n)), WAIT)
        assert ro["halted"].endswith(reason), (n, ro, reason)
    home.run("rm /etc/dpr/fail-kv")
    r = other.run("dprctl rollout resume kv --wait --timeout %d" % WAIT, timeout=WAIT + 30,
                  check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for n in c:
        insts, d = kv(n)
        assert d["rollout"]["phase"] == "done" and d["rollout"]["halted"] is None, d["rollout"]
        assert all(i["running_version"] == "5" and i["ready"] for i in insts.values()), insts

    # undo from the third node: back on version 4 (dpr-kv) everywhere
    third = next(n for n in c if n.name not in (home.name, other.name))
    r = third.run("dprctl rollout undo kv --wait --timeout %d" % WAIT, timeout=WAIT + 30,
                  check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    for n in c:
        insts, d = kv(n)
        assert d["rollout"]["phase"] == "done" and d["impl"] == "dpr-kv", d
        assert all(i["running_version"] == "4" and i["ready"] for i in insts.values()), insts
