"""Checkpoint replication between agents on one host (issue 11): three
agents (127.0.0.1, .2, .3) in one Raft cluster, dpr-kv run by hand from
each instance file (as its unit would run it, no systemd).

Each instance of a deployment has one replica node (the default with more
than one node); dpr-kv reports a checkpoint only after its agent copied it
there (DPR.REPLICA.SHIP): the copies arrive under the replica node's
state/replicas/<deployment>/<worker>/, old ones are pruned as the cut
moves, and status says where each instance's copies are and the newest
version copied. A replica node whose disk is full holds the reports back
(the cut stops; writes are not lost) and the error shows in status and
INFO; once space is back the copies and the cut go on. Needs root for the
small tmpfs that fills up (that part is skipped otherwise).
"""
import os
import subprocess
import time

import pytest

import dprtest
from dprtest import RaftAgents, wait_for


def spec_of(*deps, **fields):
    return {"name": "demo", "cachestores": [dict(name=n, shards=k, version="1", **fields)
                                             for n, k in deps]}


def start_instance(agent, base, name):
    """dpr-kv from its instance file, on a free port (its layout is not
    needed here: plain SET and GET serve without one)."""
    env = {k: v for k, v in agent.env(name).items() if k.startswith("DPR_")}
    env.pop("DPR_KV_AWAIT_LAYOUT", None)
    env.pop("DPR_KV_LISTEN", None)
    d = os.path.join(base, "kv-" + agent.node, name)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    kv = dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]), d, d + ".log",
                    interval_ms=50, env=env, domain=env["DPR_KV_DOMAIN"])
    agent.procs.add(kv)
    return kv.wait_ready()


def instances(agent):
    return {i["name"]: i for d in agent.call("status")["deployments"] for i in d["instances"]}


def copies(agent, dep, worker):
    d = os.path.join(agent.base, "state", "replicas", dep, str(worker))
    return sorted(int(n[5:-3]) for n in os.listdir(d) if n.endswith(".kv")) \
        if os.path.isdir(d) else []


def test_checkpoints_are_copied_before_they_are_reported(tmp_path):
    dprtest.need(dprtest.KV)
    agents = RaftAgents(str(tmp_path), 3).start()
    mnt = None
    try:
        agents.placeable()
        by_node = {a.node: a for a in agents.agents}
        r = agents[0].call("apply", {"spec": spec_of(("kv", 3))})
        assert r["placement"] == {"kv": ["n1", "n2", "n3"]}, r
        kvs = {}
        for a in agents.agents:
            wait_for(lambda a=a: [n for n, i in instances(a).items()
                                  if i["node"] == a.node and "main_pid" in i],
                     timeout=10, what="the instance recorded on %s" % a.node)
            for name, inst in instances(a).items():
                if inst["node"] == a.node:
                    assert "DPR_KV_REPLICA_SOCKET" in a.env(name), a.env(name)
                    kvs[name] = (a, start_instance(a, str(tmp_path), name), inst)
        assert sorted(kvs) == ["kv-0", "kv-1", "kv-2"]
        for name, (a, kv, _) in kvs.items():
            c = kv.client()
            for k in range(50):
                c.set("%s-k%d" % (name, k), "v%d" % k)
        # every instance: one replica elsewhere, copies made and reported
        for name, (a, kv, inst) in kvs.items():
            def copied(a=a, name=name):
                i = instances(a)[name]
                return i if i.get("replicated") and i.get("version") else None
            i = wait_for(copied, timeout=20, what="%s copied and reported" % name)
            assert len(i["replicas"]) == 1 and i["replicas"][0] != a.node, i
            assert i["replica_error"] is None, i
            holder = by_node[i["replicas"][0]]
            assert wait_for(lambda: copies(holder, "kv", i["worker"]), timeout=10,
                            what="the copy on %s" % holder.node)
            info = kv.info()
            assert info["dpr_replication_status"] in ("ok", "copying"), info
            assert int(info["dpr_replication_copied"]) >= 1, info
        # pruned as the cut moves: a few copies, not one per checkpoint
        name, (a, kv, inst) = sorted(kvs.items())[0]
        i = instances(a)[name]
        holder = by_node[i["replicas"][0]]
        time.sleep(2)
        assert 1 <= len(copies(holder, "kv", i["worker"])) <= 5, copies(holder, "kv",
                                                                         i["worker"])

        # a full disk on the replica node: the reports wait, nothing is lost
        if os.geteuid() != 0:
            pytest.skip("the full disk needs a tmpfs mount (root)")
        mnt = os.path.join(holder.base, "state", "replicas")
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "dprt-full", mnt],
                       check=True)
        filler = os.path.join(mnt, "filler")
        subprocess.run(["dd", "if=/dev/zero", "of=" + filler, "bs=64k", "count=64"],
                       capture_output=True)
        c = kv.client()
        for k in range(2000):  # (bigger checkpoints than what is left)
            c.set("big-%d" % k, "x" * 100)

        def failing():
            i = instances(a)[name]
            return i if i.get("replica_error") else None
        i = wait_for(failing, timeout=20, what="the copy failing")
        assert "No space left on device" in i["replica_error"], i
        assert kv.info()["dpr_replication_status"] == "failing"
        stuck = i["version"]
        time.sleep(1)
        assert instances(a)[name]["version"] == stuck, "reported without its copy"
        os.unlink(filler)
        wait_for(lambda: (instances(a)[name]["version"] or 0) > stuck and
                 not instances(a)[name]["replica_error"], timeout=30,
                 what="copies and reports going on")
        assert kv.info()["dpr_replication_status"] in ("ok", "copying")
        assert c.get("big-1999") == b"x" * 100
    finally:
        if mnt and dprtest.mounted(mnt):
            subprocess.run(["umount", "-l", mnt], check=False)
        agents.close()
