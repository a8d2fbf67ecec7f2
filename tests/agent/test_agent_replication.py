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
import re
import shutil
import signal
import subprocess
import tempfile
import time
import zlib

import pytest
import redis

import dprtest
from dprtest import RaftAgents, wait_for


def spec_of(*deps, **fields):
    return {"name": "demo", "cachestores": [dict(name=n, shards=k, version="1", **fields)
                                             for n, k in deps]}


def start_instance(agent, base, name):
    """dpr-kv from its instance file, on a free port (its layout is not
    needed here: plain SET and GET serve without one; with the agents' TLS
    it still reaches the finder over TLS, but serves plain text on that
    port instead of TLS on the allocated one)."""
    env = {k: v for k, v in agent.env(name).items() if k.startswith("DPR_")}
    for k in ("DPR_KV_AWAIT_LAYOUT", "DPR_KV_LISTEN", "DPR_KV_PORT", "DPR_KV_TLS_PORT"):
        env.pop(k, None)
    d = os.path.join(base, "kv-" + agent.node, name)
    os.makedirs(os.path.dirname(d), exist_ok=True)
    kv = dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]), d, d + ".log",
                    interval_ms=50, env=env, domain=env["DPR_KV_DOMAIN"])
    agent.procs.add(kv)
    return kv.wait_ready()


def start_instances(agents, base):
    """Every agent's instances of the deployment applied, run by hand:
    {name: (agent, Kv, instance record)}."""
    kvs = {}
    for a in agents.agents:
        wait_for(lambda a=a: [n for n, i in instances(a).items()
                              if i["node"] == a.node and "main_pid" in i],
                 timeout=10, what="the instance recorded on %s" % a.node)
        for name, inst in instances(a).items():
            if inst["node"] == a.node:
                assert "DPR_KV_REPLICA_SOCKET" in a.env(name), a.env(name)
                kvs[name] = (a, start_instance(a, base, name), inst)
    assert sorted(kvs) == ["kv-0", "kv-1", "kv-2"]
    return kvs


def instances(agent):
    return {i["name"]: i for d in agent.call("status")["deployments"] for i in d["instances"]}


def copies(agent, dep, worker):
    d = os.path.join(agent.base, "state", "replicas", dep, str(worker))
    return sorted(int(n[5:-3]) for n in os.listdir(d) if n.endswith(".kv")) \
        if os.path.isdir(d) else []


def ship_as(uid, sock, name, token, version, path):
    """DPR.REPLICA.SHIP from a process of uid (the agent takes it from
    SO_PEERCRED): the answer, or the error's text."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # (the child: its uid, one request, the answer down the pipe)
        os.close(r)
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            c = redis.Redis(unix_socket_path=sock, socket_timeout=40)
            try:
                out = c.execute_command("DPR.REPLICA.SHIP", name, token, version,
                                        path).decode()
            except redis.ResponseError as e:
                out = "ERR " + str(e)
            except Exception as e:  # (told, not hidden: the parent's assert shows it)
                out = "EXC " + repr(e)
            os.write(w, out.encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


def ship_only_own_files(agent, name, base):
    """The agent reads with more rights than a cache-store (units: the
    instances run as dpr-cachestore, the agent keeps CAP_DAC_READ_SEARCH): it
    copies a file only for the process that owns it. A process of uid 65534
    with the instance's token names a checkpoint of root's: refused, nothing
    copied; the same file once it is that uid's: copied."""
    env = agent.env(name)
    # (a way in for uid 65534: a link to the socket in a directory it may enter)
    door = tempfile.mkdtemp(prefix="dprt-door-")  # (/tmp/pytest-of-root is 0700)
    os.chmod(door, 0o755)
    sock = os.path.join(door, "replica.sock")
    os.link(env["DPR_KV_REPLICA_SOCKET"], sock)
    os.chmod(sock, 0o666)
    src = os.path.join(base, "kv-" + agent.node, name)
    # (a checkpoint it made, under its own version: nothing the agent's
    # status or the copies on the replica node did not have already)
    version, ckpt = max((int(f[5:-3]), f) for f in os.listdir(src)
                        if re.match(r"ckpt-\d+\.kv$", f))
    mine = os.path.join(door, "ckpt.kv")
    shutil.copy(os.path.join(src, ckpt), mine)
    os.chmod(mine, 0o644)
    try:
        out = ship_as(65534, sock, name, env["DPR_FINDER_TOKEN"], version, mine)
        assert out.startswith("ERR ") and "not a regular file of the cache-store that asked" \
            in out, out
        os.chown(mine, 65534, 65534)
        out = ship_as(65534, sock, name, env["DPR_FINDER_TOKEN"], version, mine)
        assert out == "OK", out
    finally:
        shutil.rmtree(door)


def test_checkpoints_are_copied_before_they_are_reported(tmp_path):
    dprtest.need(dprtest.KV)
    agents = RaftAgents(str(tmp_path), 3).start()
    mnt = None
    try:
        agents.placeable()
        by_node = {a.node: a for a in agents.agents}
        r = agents[0].call("apply", {"spec": spec_of(("kv", 3))})
        assert r["placement"] == {"kv": ["n1", "n2", "n3"]}, r
        kvs = start_instances(agents, str(tmp_path))
        for name, (a, kv, _) in kvs.items():
            c = kv.client()
            for k in range(50):
                c.set("%s-k%d" % (name, k), "v%d" % k)
        # every instance: one replica elsewhere, copies made and reported
        for name, (a, kv, inst) in kvs.items():
            def copied(a=a, name=name):
                i = instances(a)[name]
                return i if i.get("replicated") and i.get("durable_version") else None
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

        if os.geteuid() == 0:
            ship_only_own_files(a, name, str(tmp_path))

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
        stuck = i["durable_version"]
        time.sleep(1)
        assert instances(a)[name]["durable_version"] == stuck, "reported without its copy"
        os.unlink(filler)
        wait_for(lambda: (instances(a)[name]["durable_version"] or 0) > stuck and
                 not instances(a)[name]["replica_error"], timeout=30,
                 what="copies and reports going on")
        assert kv.info()["dpr_replication_status"] in ("ok", "copying")
        assert c.get("big-1999") == b"x" * 100
    finally:
        if mnt and dprtest.mounted(mnt):
            subprocess.run(["umount", "-l", mnt], check=False)
        agents.close()


def header_of(path):
    """(format, base) of a dpr-kv checkpoint file: 2 a full image, 3 a
    change log on base (cachestore/src/kv_ckpt.h)."""
    with open(path, "rb") as f:
        h = f.read(72)
    assert h[:8] == b"DPRKVCKP", path
    return h[8], int.from_bytes(h[64:72], "little")


def test_change_logs_compacted_images_are_copied_again_and_pruned(tmp_path):
    """dpr-kv --checkpoint-log: each version's change log is copied to the
    replica node before it is reported; a compaction turns a version's log
    into a full image (same file name), which is copied again (HAVE with
    size and CRC-32 says the copy differs) and replaces the copy, so the
    replica node prunes by the chain rule: a few copies, the oldest a full
    image. A worker moved there restores from those copies."""
    dprtest.need(dprtest.KV)
    agents = RaftAgents(str(tmp_path), 3).start()
    try:
        agents.placeable()
        by_node = {a.node: a for a in agents.agents}
        agents[0].call("apply", {"spec": spec_of(("kv", 1))})
        a = wait_for(lambda: next((x for x in agents.agents
                                   if "main_pid" in instances(x).get("kv-0", {})
                                   and instances(x)["kv-0"]["node"] == x.node), None),
                     timeout=10, what="the instance recorded")
        env = {k: v for k, v in a.env("kv-0").items() if k.startswith("DPR_")}
        env.pop("DPR_KV_AWAIT_LAYOUT", None)
        env.pop("DPR_KV_LISTEN", None)
        env["DPR_KV_CHECKPOINT_LOG"] = "1"
        env["DPR_KV_CHECKPOINT_COMPACT_BYTES"] = "1"  # (half the data is the bound)
        d = os.path.join(str(tmp_path), "kv-" + a.node, "kv-0")
        os.makedirs(os.path.dirname(d), exist_ok=True)
        kv = dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]), d, d + ".log",
                        interval_ms=50, env=env, domain=env["DPR_KV_DOMAIN"])
        a.procs.add(kv)
        kv.wait_ready()
        assert kv.info()["dpr_checkpoint_mode"] == "log"
        i = wait_for(lambda: instances(a)["kv-0"].get("replicas") and instances(a)["kv-0"],
                     timeout=10, what="the replica node")
        holder = by_node[i["replicas"][0]]
        worker = i["worker"]
        c = kv.client()
        for rnd in range(12):  # (each round rewrites the data: compactions)
            for k in range(200):
                c.set("k%d" % k, "r%d-%s" % (rnd, "x" * 200))
            time.sleep(0.15)
        wait_for(lambda: int(kv.info()["dpr_compactions"]) >= 2, timeout=20,
                 what="compactions")
        info = kv.info()
        assert int(info["dpr_compactions_failed"]) == 0, info
        last = int(info["dpr_version"]) - 1
        wait_for(lambda: int(kv.info()["dpr_cut_version"]) >= last, timeout=20,
                 what="the writes committed")
        wait_for(lambda: int(kv.info()["dpr_replication_recopy_pending"]) == 0, timeout=20,
                 what="the compacted images copied again")
        rdir = os.path.join(holder.base, "state", "replicas", "kv", str(worker))

        def pruned():
            v = copies(holder, "kv", worker)
            return v if v and len(v) <= 8 and \
                header_of(os.path.join(rdir, "ckpt-%d.kv" % v[0]))[0] == 2 else None
        v = wait_for(pruned, timeout=20, what="the copies pruned to a full image and its logs")
        # every copy after the full image is a change log on the one before
        # it, or a full image (a compaction); they are the worker's own files
        for prev, cur in zip(v, v[1:]):
            fmt, base = header_of(os.path.join(rdir, "ckpt-%d.kv" % cur))
            assert fmt == 2 or base == prev, (v, cur, fmt, base)
        full = [x for x in v if header_of(os.path.join(rdir, "ckpt-%d.kv" % x))[0] == 2]
        for x in full:  # a compacted image replaced the change log of x
            mine = os.path.join(d, "ckpt-%d.kv" % x)
            if os.path.exists(mine):
                with open(mine, "rb") as f1, open(os.path.join(rdir, "ckpt-%d.kv" % x),
                                                   "rb") as f2:
                    assert f1.read() == f2.read(), x
        assert int(kv.info()["dpr_replication_recopy_pending"]) == 0
        assert "not copied" not in kv.output()

        # the protocol: an older sender's short HAVE says "finished" for
        # any finished copy; the long one only for the same size and CRC-32
        m = re.search(r"copies of checkpoints from other nodes on (\S+),", holder.log())
        host, port = m.group(1).rsplit(":", 1)
        name = "ckpt-%d.kv" % v[-1]
        with open(os.path.join(rdir, name), "rb") as f:
            data = f.read()
        crc = zlib.crc32(data)
        r = redis.Redis(host=host, port=int(port))
        try:
            args = ("DPR.REPL.HAVE", "demo", "kv", worker, v[-1])
            assert r.execute_command(*args) == -1
            assert r.execute_command(*args, len(data), crc) == -1
            assert r.execute_command(*args, len(data), crc ^ 1) == 0
            assert r.execute_command(*args, len(data) + 1, crc) == 0
            with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
                r.execute_command(*args, len(data))
        finally:
            r.close()

        # the node is lost: the worker restarts elsewhere from the copies
        c.connection_pool.disconnect()
        kv.kill(signal.SIGKILL)
        kv.wait_exit()
        seed = os.path.join(str(tmp_path), "seed")
        shutil.copytree(rdir, seed)  # (the holder's agent keeps pruning its own)
        env2 = dict(env, DPR_KV_SEED_DIR=seed)
        env2.pop("DPR_KV_REPLICA_SOCKET", None)
        d2 = os.path.join(str(tmp_path), "kv-moved", "kv-0")
        os.makedirs(os.path.dirname(d2))
        moved = dprtest.Kv(env["DPR_KV_FINDER"], worker, d2, d2 + ".log", interval_ms=50,
                           env=env2, domain=env["DPR_KV_DOMAIN"])
        holder.procs.add(moved)
        moved.wait_ready()
        assert "took over" in moved.output(), moved.output()
        mc = moved.client()
        for k in range(200):
            assert mc.get("k%d" % k) == ("r11-%s" % ("x" * 200)).encode(), k
    finally:
        agents.close()
