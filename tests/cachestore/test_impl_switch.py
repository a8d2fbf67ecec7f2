"""Switching a shard's implementation between dpr-kv and dpr-redis on the
same state directory (issue 17; docs/operations.md, "Switching the
implementation"): dpr-redis recovers from dpr-kv's checkpoints
(cachestore/redis/rp_foreign.c) and dpr-kv from dpr-redis' RDB files
(cachestore/src/kv_rdb.c), on the same world-line and versions, so what
the cluster committed survives every switch, a kill -9 during one, and the
rollbacks DPR allows after one (to the switch's version: cuts never go
back before it). dpr-kv refuses a checkpoint holding what it cannot hold
(a hash, a key with a TTL): exit 78, the key named, nothing deleted, and
dpr-redis starts on it again (the undo)."""
import os
import re
import signal

import pytest

from dprtest import REDIS_PROXY, binary, missing, wait_for
from kvwire import run_versioned
from test_kv_faults import cut_of

pytestmark = pytest.mark.skipif(
    bool(missing(REDIS_PROXY)) or not any(
        os.access(os.path.join(d, "redis-server"), os.X_OK)
        for d in os.environ.get("PATH", "").split(os.pathsep)),
    reason="needs %s (make) and redis-server (Debian's redis-server)" % REDIS_PROXY)

KV_EXIT_NO_RESTART = 78
DPR_KV = binary("dpr-kv")  # (whatever DPR_TEST_IMPL says)


def start(cluster, program, worker=1, interval_ms=50, port=0):
    """dpr-kv (program None) or dpr-redis as worker; with a long checkpoint
    interval it still asks the finder every 50 ms."""
    return cluster.start_kv(worker, port=port, interval_ms=interval_ms,
                            args=("--sync-interval-ms", "50"), program=program or DPR_KV)


def files(shard):
    """('kv'|'rdb', version) of the checkpoint files in its directory."""
    out = []
    for n in os.listdir(shard.state_dir):
        m = re.fullmatch(r"ckpt-(\d+)\.(kv|w\d+\.rdb)", n)
        if m:
            out.append(("kv" if m.group(2) == "kv" else "rdb", int(m.group(1))))
    return sorted(out)


def write_committed(cluster, shard, prefix, n):
    """n keys prefix<i> = v<i>, waited for until the cut covers them."""
    c = shard.client()
    cmds = [("SET", "%s%d" % (prefix, i), "v%d" % i) for i in range(n)]
    v = run_versioned(c, *cmds)
    wait_for(lambda: cut_of(cluster, shard.worker) >= v, timeout=30, what="cut >= %d" % v)
    c.connection_pool.disconnect()
    return {"%s%d" % (prefix, i): b"v%d" % i for i in range(n)}


def holds(shard, keys):
    c = shard.client()
    try:
        names = sorted(keys)
        got = c.mget(names)
        assert got == [keys[k] for k in names], [k for k, g in zip(names, got) if g != keys[k]]
        return True
    finally:
        c.connection_pool.disconnect()


def planned_stop(shard):
    assert shard.stop(signal.SIGTERM, grace=30) == 0, shard.describe()


def test_kv_to_redis_and_back(cluster):
    """dpr-kv writes, checkpoints, stops; dpr-redis on its directory has
    every key (no TTL: dpr-kv's keys do not expire), writes more,
    checkpoints; dpr-kv comes back and has all. Each switch leaves only
    the running implementation's files; world-line and versions go on."""
    kv = start(cluster, None)
    keys = write_committed(cluster, kv, "a", 300)
    c = kv.client()
    c.append("a0", "+")  # a change log after the full image, in the chain
    keys["a0"] += b"+"
    c.connection_pool.disconnect()
    wl0 = int(kv.info()["dpr_world_line"])
    planned_stop(kv)
    assert {k for k, _ in files(kv)} == {"kv"}

    rp = start(cluster, REDIS_PROXY)
    assert "the deployment switched from dpr-kv" in rp.output()
    assert holds(rp, keys)
    c = rp.client()
    assert {c.pttl(k) for k in list(keys)[:20]} == {-1}
    assert int(rp.info()["dpr_world_line"]) == wl0  # a planned restart: no rollback
    assert {k for k, _ in files(rp)} == {"rdb"}
    v_switch = int(rp.info()["dpr_restored_version"])
    keys.update(write_committed(cluster, rp, "b", 200))
    assert int(rp.info()["dpr_version"]) > v_switch
    planned_stop(rp)

    kv2 = start(cluster, None)
    assert "the deployment switched from dpr-redis" in kv2.output()
    assert holds(kv2, keys)
    assert int(kv2.info()["dpr_world_line"]) == wl0
    assert {k for k, _ in files(kv2)} == {"kv"}
    keys.update(write_committed(cluster, kv2, "c", 10))
    # and once more: dpr-kv's change logs on the image it wrote for the RDB
    planned_stop(kv2)
    kv3 = start(cluster, None)
    assert holds(kv3, keys)


@pytest.mark.parametrize("what,cmd,says", [
    ("hash", ("HSET", "h\x01", "f", "v"), r"key 'h\\x01' in .* is a hash: dpr-kv holds strings"),
    ("list", ("RPUSH", "l", "x"), "key 'l' in .* is a list"),
    ("ttl", ("SET", "t", "v", "PX", "600000"), r"key 't' in .* expires \(TTL \d+ ms\)"),
])
def test_kv_refuses_what_it_cannot_hold(cluster, tmp_path, what, cmd, says):
    """A key dpr-kv cannot hold in dpr-redis' checkpoint: dpr-kv exits 78
    (the unit is not restarted; an agent's roll-out halts) before it
    registers, naming the key; nothing is deleted, and dpr-redis starts on
    the directory again with everything (the undo)."""
    rp = start(cluster, REDIS_PROXY)
    keys = write_committed(cluster, rp, "s", 50)
    c = rp.client()
    c.execute_command(*cmd)
    c.connection_pool.disconnect()
    planned_stop(rp)
    before = files(rp)
    sync_before = cluster.finder.sync()

    tmp = tmp_path / "tmp"  # the private redis-server's directory goes here, and away
    tmp.mkdir()
    kv = cluster.start_kv(1, interval_ms=50, wait=False, env={"TMPDIR": str(tmp)},
                          program=DPR_KV)
    assert kv.wait_exit(60) == KV_EXIT_NO_RESTART, kv.describe()
    assert os.listdir(tmp) == []
    assert re.search(says, kv.output()), kv.describe()
    assert "before registering with the finder" in kv.output()
    assert files(kv) == before
    assert cluster.finder.sync()[0] == sync_before[0]  # no new world-line

    rp2 = start(cluster, REDIS_PROXY)
    assert holds(rp2, keys)
    assert rp2.client().exists(cmd[1]) == 1


def test_kill9_during_the_switch_keeps_the_committed_prefix(cluster):
    """kill -9 of dpr-kv, dpr-redis starts on its directory (the finder
    rolls back to the cut: the version the switch restores), writes that
    never become durable, kill -9 again: dpr-redis rolls back to the
    switch's version (its own RDB of it); then dpr-kv takes that over after
    another kill -9. What was committed survives each time; what was not
    is gone."""
    kv = start(cluster, None)
    keys = write_committed(cluster, kv, "a", 200)
    keys.update(write_committed(cluster, kv, "big", 20000))
    kv.kill(signal.SIGKILL)

    # killed while it converts (best effort: after it registered)
    rp = cluster.start_kv(1, interval_ms=3600000, args=("--sync-interval-ms", "50"),
                          program=REDIS_PROXY, wait=False)
    wait_for(lambda: "registered with finder" in rp.output() or not rp.alive(), timeout=30,
             what="dpr-redis registered")
    rp.kill(signal.SIGKILL)

    rp = start(cluster, REDIS_PROXY, interval_ms=3600000)
    assert holds(rp, keys)
    cut = cut_of(cluster, 1)
    assert int(rp.info()["dpr_restored_version"]) == cut
    c = rp.client()
    c.set("lost", "x")
    c.connection_pool.disconnect()
    rp.kill(signal.SIGKILL)

    rp2 = start(cluster, REDIS_PROXY, interval_ms=3600000)
    assert holds(rp2, keys)
    assert rp2.client().get("lost") is None
    assert int(rp2.info()["dpr_restored_version"]) == cut
    rp2.kill(signal.SIGKILL)

    kv2 = start(cluster, None)
    assert holds(kv2, keys)
    assert kv2.client().get("lost") is None
    assert {k for k, _ in files(kv2)} == {"kv"}


def test_live_rollback_to_the_switch_version(cluster):
    """Two shards; worker 1 switched to dpr-redis and has not checkpointed
    since: when worker 2 is killed, the live rollback takes worker 1 back
    to the cut, the version of the switch, from its own RDB of it."""
    kv1 = start(cluster, None, worker=1)
    kv2 = start(cluster, None, worker=2, port=0)
    keys = write_committed(cluster, kv1, "a", 100)
    keys2 = write_committed(cluster, kv2, "b", 100)
    planned_stop(kv1)
    rp = start(cluster, REDIS_PROXY, worker=1, interval_ms=3600000)
    assert holds(rp, keys)
    rp.client().set("lost", "x")
    wl = int(rp.info()["dpr_world_line"])
    kv2.kill(signal.SIGKILL)
    kv2b = cluster.add(kv2.again())
    kv2b.wait_ready()
    wait_for(lambda: int(rp.info()["dpr_world_line"]) > wl, timeout=30, what="rollback")
    assert int(rp.info()["dpr_rollbacks"]) == 1
    assert holds(rp, keys)
    assert rp.client().get("lost") is None
    assert holds(kv2b, keys2)


def test_redis_refuses_a_damaged_kv_checkpoint(cluster):
    """A damaged dpr-kv checkpoint: dpr-redis exits 78 before it registers
    (the domain is not disturbed), the file is kept; dpr-kv says the same."""
    kv = start(cluster, None)
    write_committed(cluster, kv, "a", 100)
    planned_stop(kv)
    v = max(version for kind, version in files(kv) if kind == "kv")
    path = os.path.join(kv.state_dir, "ckpt-%d.kv" % v)
    with open(path, "r+b") as f:
        f.seek(80)
        b = f.read(1)
        f.seek(80)
        f.write(bytes([b[0] ^ 0xff]))
    before = files(kv)
    wl = cluster.finder.sync()[0]
    rp = cluster.start_kv(1, interval_ms=50, wait=False, program=REDIS_PROXY)
    assert rp.wait_exit(60) == KV_EXIT_NO_RESTART, rp.describe()
    assert "dpr-kv's checkpoints" in rp.output() and "registered" not in rp.output()
    assert files(rp) == before
    assert cluster.finder.sync()[0] == wl
