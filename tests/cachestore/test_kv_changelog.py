"""dpr-kv restores a version from a full image and the change logs after it
(kv_chain.c; docs/dpr-kv.md, "Incremental checkpoints"). The state
directory is rebuilt by hand (kvckpt.py) after a clean stop, so that the
finder's cut names a version whose file is a change log: the restart must
give back exactly the keys the server had; a damaged or missing link stops
it before it registers (exit 78), never an older or emptier keyspace."""
import os
import signal

import kvckpt
from kvckpt import APPEND, DEL, SET
from kvwire import run_versioned
from dprtest import wait_for


def cut_of(cluster, worker):
    return cluster.finder.sync()[2].get(worker, 0)


def stopped_with_data(cluster):
    """A worker with 300 keys written in several committed versions, stopped
    cleanly: (its Kv, the version of its last file, its keys)."""
    kv = cluster.start_kv(1, interval_ms=20)
    c = kv.client()
    for part in range(3):
        v = run_versioned(c, ["MSET"] + [x for i in range(part * 100, part * 100 + 100)
                                         for x in ("k%d" % i, "v%d-%s" % (i, "x" * (i % 7)))])
        wait_for(lambda: cut_of(cluster, 1) >= v, what="cut >= %d" % v)
    kv.kill(signal.SIGTERM)
    assert kv.wait_exit() == 0
    files = kv.checkpoints()
    last = files[-1]
    assert cut_of(cluster, 1) == last and last >= 3
    img = kvckpt.read_full(os.path.join(kv.state_dir, "ckpt-%d.kv" % last))
    assert len(img["keys"]) == 300
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
