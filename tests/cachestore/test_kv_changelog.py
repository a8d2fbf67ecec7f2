"""dpr-kv restores a version from a full image and the change logs after it
(kv_chain.c; docs/dpr-kv.md, "Incremental checkpoints"). The state
directory is rebuilt by hand (kvckpt.py) after a clean stop, so that the
finder's cut names a version whose file is a change log: the restart must
give back exactly the keys the server had; a damaged or missing link stops
it before it registers (exit 78), never an older or emptier keyspace."""
import os
import signal
import time

import pytest
import redis

import kvckpt
from kvckpt import APPEND, DEL, SET
from kvwire import run_versioned
from dprtest import wait_for


def cut_of(cluster, worker):
    return cluster.finder.sync()[2].get(worker, 0)


def children_of(kv):
    kids = []
    for t in os.listdir("/proc/%d/task" % kv.pid):
        with open("/proc/%d/task/%s/children" % (kv.pid, t)) as f:
            kids += f.read().split()
    return kids


def stopped_with_data(cluster):
    """A worker with 300 keys written in several committed versions, stopped
    cleanly: (its Kv, {"worker", "world_line", "version", "committed",
    "keys"}) with version the newest file's (the cut) and keys as the server
    held them (whatever kind its files are: also with --checkpoint-log)."""
    kv = cluster.start_kv(1, interval_ms=20)
    c = kv.client()
    for part in range(3):
        v = run_versioned(c, ["MSET"] + [x for i in range(part * 100, part * 100 + 100)
                                         for x in ("k%d" % i, "v%d-%s" % (i, "x" * (i % 7)))])
        wait_for(lambda: cut_of(cluster, 1) >= v, what="cut >= %d" % v)
    names = ["k%d" % i for i in range(300)]
    keys = {k.encode(): val for k, val in zip(names, c.mget(names))}
    kv.kill(signal.SIGTERM)
    assert kv.wait_exit() == 0
    last = kv.checkpoints()[-1]
    assert cut_of(cluster, 1) == last and last >= 3
    img = kvckpt.read_header(os.path.join(kv.state_dir, "ckpt-%d.kv" % last))
    img["keys"] = keys
    return kv, img


def rebuild_as_chain(kv, img):
    """Replaces the directory's files with full image 1, change log 2 on 1
    and change log `last` on 2 that together give img's keys."""
    for n in os.listdir(kv.state_dir):
        if n.startswith("ckpt-"):
            os.unlink(os.path.join(kv.state_dir, n))
    keys = sorted((k, v) for k, v in img["keys"].items() if k != b"k7")
    w, wl, last = img["worker"], img["world_line"], img["version"]
    first = dict(keys[:100])
    first[keys[150][0]] = b"stale"  # overwritten by change log 2
    first[b"ghost"] = b"deleted later"
    first[b"k7"] = img["keys"][b"k7"][:2]  # completed by an APPEND
    ops2 = [(SET, k, v) for k, v in keys[100:200]] + [(DEL, b"ghost"), (DEL, b"never-was")]
    ops3 = [(SET, k, v) for k, v in keys[200:]]
    ops3 += [(APPEND, b"k7", img["keys"][b"k7"][2:]), (SET, b"tmp", b"1"), (DEL, b"tmp")]
    files = {1: kvckpt.full(w, wl, 1, first),
             2: kvckpt.delta(w, wl, 2, 1, ops2),
             last: kvckpt.delta(w, wl, last, 2, ops3, committed=img["committed"])}
    for v, data in files.items():
        with open(os.path.join(kv.state_dir, "ckpt-%d.kv" % v), "wb") as f:
            f.write(data)
    return files


def test_restart_restores_through_change_logs(cluster):
    kv, img = stopped_with_data(cluster)
    rebuild_as_chain(kv, img)
    kv2 = cluster.start_kv(1, interval_ms=20)
    assert "from 3 file(s)" in kv2.output()
    c = kv2.client()
    names = sorted(img["keys"])
    assert c.mget(names) == [img["keys"][k] for k in names]
    assert c.dbsize() == len(names)  # (ghost and tmp deleted)
    assert c.get("ghost") is None and c.get("tmp") is None
    assert kv2.info()["dpr_restored_version"] == img["version"]
    # it goes on from there: new writes commit, and a restart restores them
    v = run_versioned(c, ("SET", "after", "1"))
    wait_for(lambda: cut_of(cluster, 1) >= v, what="cut >= %d" % v)
    kv2.kill(signal.SIGKILL)
    kv2.wait_exit()
    kv3 = cluster.start_kv(1, interval_ms=20)
    c3 = kv3.client()
    assert c3.get("after") == b"1" and c3.dbsize() == 301
    assert c3.get("k7") == img["keys"][b"k7"]


def test_damaged_change_log_refuses_to_start(cluster):
    kv, img = stopped_with_data(cluster)
    rebuild_as_chain(kv, img)
    path = os.path.join(kv.state_dir, "ckpt-2.kv")
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x08]))
    wl = cluster.finder.sync()[0]
    kv2 = cluster.start_kv(1, wait=False)
    assert kv2.wait_exit() == 78
    out = kv2.output()
    assert "checkpoint 2 cannot be used" in out and "damaged" in out
    assert "registered with finder" not in out
    assert cluster.finder.sync()[0] == wl  # nobody rolled back


def test_missing_link_refuses_to_start(cluster):
    kv, img = stopped_with_data(cluster)
    rebuild_as_chain(kv, img)
    os.unlink(os.path.join(kv.state_dir, "ckpt-2.kv"))
    kv2 = cluster.start_kv(1, wait=False)
    assert kv2.wait_exit() == 78
    out = kv2.output()
    assert "change log %d applies to version 2" % img["version"] in out
    assert "a file is missing" in out and "registered with finder" not in out


# --- the server writing change logs (--checkpoint-log) ---------------------------------

LOG = ["--checkpoint-log"]


def kinds(kv):
    """{version: "log" | "full"} of the files in kv's directory."""
    return {v: "log" if kvckpt.read_header(os.path.join(kv.state_dir, "ckpt-%d.kv" % v))["delta"]
            else "full" for v in kv.checkpoints()}


def commit(cluster, kv, client, *cmds):
    v = run_versioned(client, *cmds)
    wait_for(lambda: cut_of(cluster, kv.worker) >= v, what="cut >= %d" % v)
    return v


def test_log_mode_restart_keeps_committed_writes(cluster):
    """Every kind of write goes into the change logs; a kill -9 and restart
    gives back exactly what was committed, and a prefix of the rest."""
    kv = cluster.start_kv(1, args=LOG, interval_ms=20)
    c = kv.client()
    commit(cluster, kv, c, ["MSET"] + [x for i in range(300) for x in ("k%d" % i, "v%d" % i)])
    commit(cluster, kv, c, ("DEL", "k1", "k2", "nothing"), ("APPEND", "k3", "+more"),
           ("APPEND", "new", "a"), ("INCR", "n"), ("INCRBY", "n", "41"),
           ("SET", "k4", "x" * 3000), ("SET", "k5", ""), ("DECR", "m"))
    committed = {"k%d" % i: "v%d" % i for i in range(300)}
    for k in ("k1", "k2"):
        del committed[k]
    committed.update({"k3": "v3+more", "new": "a", "n": "42", "k4": "x" * 3000, "k5": "",
                      "m": "-1"})
    info = kv.info()
    assert info["dpr_checkpoint_mode"] == "log"
    assert info["dpr_checkpoints_log"] >= 2 and info["dpr_checkpoints_full"] == 0
    assert set(kinds(kv).values()) == {"log"}
    tail = ["t%d" % i for i in range(300)]
    for k in tail:
        c.set(k, k)
    kv.kill(signal.SIGKILL)
    kv.wait_exit()
    kv2 = cluster.start_kv(1, args=LOG, interval_ms=20)
    c2 = kv2.client()
    names = sorted(committed)
    assert c2.mget(names) == [committed[k].encode() for k in names]
    present = [x is not None for x in c2.mget(tail)]
    n = present.count(True)
    assert present == [True] * n + [False] * (len(tail) - n)
    assert c2.dbsize() == len(committed) + n
    assert not [f for f in os.listdir(kv2.state_dir) if f.endswith(".tmp")]


def test_log_mode_compaction_and_garbage_collection(cluster):
    """Once the change logs add up to --checkpoint-compact-bytes a child
    writes a full image beside the version's change log and it replaces
    the log (same version); once the cut passes it, the chain before it
    goes. Every checkpoint stays a change log: commits never wait for the
    full image."""
    kv = cluster.start_kv(1, args=LOG + ["--checkpoint-compact-bytes", "100kb"],
                          interval_ms=20)
    c = kv.client()
    for r in range(12):  # 12 x 100 keys x ~300 bytes: past 100 kB more than once
        commit(cluster, kv, c, ["MSET"] + [x for i in range(100)
                                           for x in ("k%d" % i, "r%d-%s" % (r, "y" * 300))])
    wait_for(lambda: kv.info()["dpr_compactions"] >= 2, what="two compactions")
    assert kv.info()["dpr_checkpoints_full"] == 0 and kv.info()["dpr_compactions_failed"] == 0
    last = commit(cluster, kv, c, ("SET", "last", "1"))
    wait_for(lambda: list(kinds(kv).values())[0] == "full", what="the old chain pruned")
    files = kinds(kv)
    assert max(files) == last and files[last] == "log"
    assert len(files) < 12
    info = kv.info()
    assert info["dpr_checkpoint_bytes_written"] > 12 * 100 * 300
    kv.kill(signal.SIGKILL)
    kv.wait_exit()
    kv2 = cluster.start_kv(1, args=LOG, interval_ms=20)
    c2 = kv2.client()
    assert c2.mget(["k0", "k99", "last"]) == [("r11-" + "y" * 300).encode()] * 2 + [b"1"]
    assert c2.dbsize() == 101


def test_log_mode_live_rollback(cluster):
    """A live rollback builds the cut's version from the change logs; the
    logs above the cut are deleted and the next ones apply to the cut's."""
    w1 = cluster.start_kv(1, args=LOG)
    w2 = cluster.start_kv(2, args=LOG + ["--sync-interval-ms", "20"], interval_ms=20)
    c2 = w2.client()
    commit(cluster, w2, c2, ["MSET"] + [x for i in range(100) for x in ("a%d" % i, "1")])
    commit(cluster, w2, c2, ("DEL", "a0"), ("APPEND", "a1", "2"))
    cut = cut_of(cluster, 2)
    # worker 2 stops committing (the finder stays reachable, its reports
    # are held back by pausing it) while it goes on writing
    os.kill(cluster.finder.pid, signal.SIGSTOP)
    try:
        for i in range(50):
            c2.set("lost%d" % i, "x")
        c2.delete("a5")
        wait_for(lambda: w2.info()["dpr_checkpoints_log"] >= 3, what="more change logs")
    finally:
        os.kill(cluster.finder.pid, signal.SIGCONT)
    w1.client().set("x", "1")
    w1.kill(signal.SIGKILL)
    w1.wait_exit()
    # (the restart moves the world-line on: worker 2 rolls back to its cut
    # unless the held reports committed first)
    cluster.start_kv(1, args=LOG)
    wait_for(lambda: w2.info()["dpr_world_line"] == 2, what="worker 2 rolled back")
    newcut = w2.info()["dpr_cut_version"]
    assert newcut >= cut
    assert c2.get("a0") is None and c2.get("a1") == b"12" and c2.get("a2") == b"1"
    lost = [c2.get("lost%d" % i) is not None for i in range(50)]
    n = lost.count(True)
    assert lost == [True] * n + [False] * (50 - n)
    assert all(v <= newcut for v in w2.checkpoints())
    # it goes on: new writes commit and survive a restart
    commit(cluster, w2, c2, ("SET", "after", "1"))
    keys = c2.dbsize()
    w2.kill(signal.SIGKILL)
    w2.wait_exit()
    w2b = cluster.add(w2.again())
    w2b.wait_ready()
    c3 = w2b.client()
    assert c3.get("after") == b"1" and c3.get("a1") == b"12" and c3.dbsize() == keys


def test_log_mode_kill9_while_writing(cluster):
    """kill -9 at arbitrary moments of a stream of change logs (5 ms apart,
    many of them mid-write): every restart restores everything committed
    and a prefix of the rest, and leaves no temporary file behind."""
    kv = cluster.start_kv(1, args=LOG, interval_ms=5)
    n = 0
    committed = 0
    for round_ in range(4):
        c = kv.client()
        pipe_n = 0
        for burst in range(20):
            p = c.pipeline(transaction=False)
            for i in range(200):
                p.set("s%d" % (n + i), "v" * (i % 50))
            p.execute()
            n += 200
            pipe_n += 1
        v = kv.info()["dpr_version"]
        if round_ % 2 == 0:  # sometimes everything is committed first
            wait_for(lambda: cut_of(cluster, 1) >= v - 1, what="cut")
        committed = max(committed, cut_of(cluster, 1))
        kv.kill(signal.SIGKILL)
        kv.wait_exit()
        kv = cluster.add(kv.again())
        kv.wait_ready()
        c = kv.client()
        present = [x is not None for x in c.mget(["s%d" % i for i in range(n)])]
        k = present.count(True)
        assert present == [True] * k + [False] * (n - k)
        assert kv.info()["dpr_restored_version"] >= committed
        assert not [f for f in os.listdir(kv.state_dir) if f.endswith(".tmp")]
        n = k  # go on from what survived


def test_torn_temporary_file_is_dropped(cluster):
    """A change log torn by a crash never got its final name: it was never
    reported, and start-up removes it."""
    kv = cluster.start_kv(1, args=LOG, interval_ms=20)
    c = kv.client()
    v = commit(cluster, kv, c, ("SET", "a", "1"))
    kv.kill(signal.SIGTERM)
    assert kv.wait_exit() == 0
    last = kv.checkpoints()[-1]
    torn = kvckpt.delta(1, 1, last + 1, last, [(SET, b"a", b"2"), (SET, b"b", b"2")])
    tmp = os.path.join(kv.state_dir, "ckpt-%d.kv.tmp" % (last + 1))
    with open(tmp, "wb") as f:
        f.write(torn[:len(torn) // 2])
    # (no checkpoints of its own: its next one would write this very name)
    kv2 = cluster.start_kv(1, args=LOG, interval_ms=600000)
    assert not os.path.exists(tmp)
    assert kv2.client().get("a") == b"1" and kv2.client().get("b") is None
    assert v <= kv2.info()["dpr_restored_version"]


def test_compaction_leftovers_are_removed(cluster):
    """A crash during a compaction leaves ckpt-<v>.kv.full(.tmp): never
    installed, so the change log of v is what counts; start-up removes
    them and restores v from its chain."""
    kv = cluster.start_kv(1, args=LOG, interval_ms=20)
    c = kv.client()
    commit(cluster, kv, c, ("SET", "a", "1"))
    commit(cluster, kv, c, ("SET", "a", "2"), ("SET", "b", "1"))
    kv.kill(signal.SIGTERM)
    assert kv.wait_exit() == 0
    last = kv.checkpoints()[-1]
    assert kinds(kv)[last] == "log"
    wrong = kvckpt.full(1, 1, last, {b"a": b"wrong"})
    for suffix in (".kv.full", ".kv.full.tmp"):
        with open(os.path.join(kv.state_dir, "ckpt-%d%s" % (last, suffix)), "wb") as f:
            f.write(wrong[:len(wrong) - (5 if suffix.endswith("tmp") else 0)])
    # (no checkpoints of its own: an idle compaction would write these names)
    kv2 = cluster.start_kv(1, args=LOG, interval_ms=600000)
    assert kv2.client().mget(["a", "b"]) == [b"2", b"1"]
    assert [n for n in os.listdir(kv2.state_dir) if ".full" in n] == []


def test_log_mode_kill9_during_compaction(cluster):
    """kill -9 while a compaction child writes a full image of a big data
    set: the change logs are the durable record, so the restart restores
    everything committed; the half-written image is removed."""
    kv = cluster.start_kv(1, args=LOG + ["--checkpoint-compact-bytes", "1mb"], interval_ms=20)
    c = kv.client()
    for r in range(8):  # 80 k keys of 100 bytes: ~10 MB, compactions of ~10 MB each
        commit(cluster, kv, c, ["MSET"] + [x for i in range(r * 10000, r * 10000 + 10000)
                                           for x in ("k%d" % i, "%d-%s" % (r, "z" * 98))])
    deadline = time.time() + 30
    caught = False
    while time.time() < deadline and not caught:
        # small writes until a compaction is running, then kill at once
        v = run_versioned(c, ["MSET"] + [x for i in range(5000)
                                         for x in ("k%d" % i, "late-%d" % i)])
        info = kv.info()
        if info["dpr_compaction_running"]:
            wait_for(lambda: cut_of(cluster, 1) >= v, what="cut >= %d" % v)
            caught = bool(children_of(kv))  # the compaction child is writing
            if caught:
                kv.kill(signal.SIGKILL)
    assert caught, "no compaction was running at a kill"
    kv.wait_exit()
    kv2 = cluster.start_kv(1, args=LOG, interval_ms=20)
    c2 = kv2.client()
    assert c2.dbsize() == 80000
    assert c2.mget(["k0", "k4999", "k5000", "k79999"]) == [
        b"late-0", b"late-4999", ("0-" + "z" * 98).encode(), ("7-" + "z" * 98).encode()]
    assert [n for n in os.listdir(kv2.state_dir) if ".full" in n or n.endswith(".tmp")] == []


def fill_until_oom(kv):
    """SETs of 1000 bytes until the OOM error: how many were accepted."""
    c = kv.client()
    n = 0
    with pytest.raises(redis.ResponseError, match="OOM command not allowed"):
        while n < 100000:
            c.set("k%d" % n, "x" * 1000)
            n += 1
    c.connection_pool.disconnect()
    return n


def test_maxmemory_leaves_the_change_log_out(cluster):
    """--maxmemory with --checkpoint-log refuses writes at the same point as
    with full images: the change log in memory (here every write since the
    start: no checkpoint seals it) is left out of the check, as Redis leaves
    out its AOF buffer, and shown as mem_not_counted_for_evict."""
    full = cluster.start_kv(1, interval_ms=600000,
                            args=["--maxmemory", "4mb", "--checkpoint-mode", "full"])
    assert full.info()["dpr_checkpoint_mode"] == "full"
    n_full = fill_until_oom(full)
    logged = cluster.start_kv(2, interval_ms=600000,
                              args=["--maxmemory", "4mb", "--checkpoint-log"])
    assert logged.info()["dpr_checkpoint_mode"] == "log"
    n_log = fill_until_oom(logged)
    mem = logged.client().info("memory")
    # the log holds every SET: about 1 KB each, not counted
    assert mem["mem_not_counted_for_evict"] >= n_log * 1000, mem
    if mem["used_memory"] != mem["used_memory_dataset"]:  # (a sanitizer's malloc tells none)
        assert mem["used_memory"] > 4 * 1024 * 1024 + n_log * 900, mem
    assert abs(n_log - n_full) <= n_full // 10, (n_full, n_log)
    assert 1500 < n_full < 4300, n_full


def test_log_mode_idle_worker_compacts(cluster):
    """An idle worker does not keep one change log per version until writes
    bring the next compaction: once no log was sealed for 5 s (at least 50
    intervals) and nothing changed since, its newest version is compacted,
    and once the cut passes it the worker keeps one full image, which a
    restart restores."""
    kv = cluster.start_kv(1, args=LOG, interval_ms=20)  # (8 MB: no compaction by size)
    c = kv.client()
    for r in range(5):
        last = commit(cluster, kv, c, ["MSET"] + [x for i in range(50)
                                                  for x in ("k%d" % i, "r%d-%d" % (r, i))])
    files = kinds(kv)
    assert len(files) >= 5 and files[last] == "log", files
    assert kv.info()["dpr_compactions"] == 0
    time.sleep(3)  # (not yet idle for long enough)
    assert kv.info()["dpr_compactions"] == 0 and kinds(kv) == files
    wait_for(lambda: kv.info()["dpr_compactions"] == 1, timeout=10, what="the idle compaction")
    wait_for(lambda: kinds(kv) == {last: "full"}, timeout=10,
             what="one full image of the newest version")
    assert "idle: compacting checkpoint %d" % last in kv.output()
    time.sleep(6)  # (once: nothing more to compact)
    assert kv.info()["dpr_compactions"] == 1 and kinds(kv) == {last: "full"}
    kv.kill(signal.SIGKILL)
    kv.wait_exit()
    kv2 = cluster.start_kv(1, args=LOG, interval_ms=20)
    c2 = kv2.client()
    assert c2.mget(["k0", "k49"]) == [b"r4-0", b"r4-49"]
    assert c2.dbsize() == 50
