"""dpr-kv's layouts and resizes (issue 9, second part), shard side.

A shard given a layout (DPR.LAYOUT SET) serves only the keys it owns and
answers the others with MOVED <shard> <host:port> <epoch>; a resize goes
PREPARE (every shard pauses: TRYAGAIN) -> wait until each shard's state
is in the cut -> MIGRATE on the shards that give keys up (a child process
pushes them with DPR.IMPORT) -> wait until the receivers' copies are in
the cut, on the same world-line -> COMMIT (each shard drops what left and
serves again). `resize()` below drives exactly that sequence, as the agent
does for a deployment (docs/dpr-kv.md, "Layouts and resizing").

Checked with real processes on loopback: MOVED and TRYAGAIN for plain
commands and DPR batches (nothing of a refused batch runs); 3 -> 5 -> 2
shards with a DPR session writing all along (no operation lost, every key
read back from its owner, none left twice); a restart after a committed
resize keeps the layout and drops keys a rolled-back checkpoint still
held; a shard killed -9 in the middle of a resize comes back paused and
the resize completes; bad layout commands and a damaged layout file are
refused. A Python client started before the resizes follows them.

Every process is killed by PID at the end; waits poll with generous
timeouts, nothing asserts on time.
"""
import importlib.util
import os
import sys
import threading
import time

import pytest
import redis

import dprtest
from dprtest import wait_for

if importlib.util.find_spec("dpr") is None:
    sys.path.insert(0, dprtest.PYDIR)
import dpr  # noqa: E402
from dpr.route import shard_of  # noqa: E402


from dprtest import layout_args, resize_shards as resize, set_layout  # noqa: E402


def info(kv):
    return kv.info()


def owner_check(shards, keys, values, exact=True):
    """Every key reads back from its owner; every other shard says MOVED;
    exact: the shards hold these keys and no others, none twice (the
    DBSIZEs add up)."""
    n = len(shards)
    for k in keys:
        i = shard_of(k, n)
        assert shards[i].client().get(k) == values[k], k
    k = keys[0]
    other = (shard_of(k, n) + 1) % n
    if n > 1:
        with pytest.raises(redis.ResponseError, match=r"^MOVED %d %s \d+$"
                           % (shard_of(k, n), shards[shard_of(k, n)].address)):
            shards[other].client().get(k)
    if exact:
        assert sum(s.client().dbsize() for s in shards) == len(keys)


def test_moved_and_tryagain(cluster):
    """Plain commands and DPR batches are refused whole, before they run."""
    shards = cluster.start_shards(3, interval_ms=50)
    for s in shards:  # no layout yet: every key is owned
        assert s.client().execute_command("DPR.LAYOUT") == [0, -1, []]
    set_layout(shards)
    addrs = [s.address for s in shards]
    assert shards[1].client().execute_command("DPR.LAYOUT") == [1, 1, [a.encode()
                                                                       for a in addrs]]
    key = next(k for k in ("k%d" % i for i in range(100)) if shard_of(k, 3) == 2)
    mine = next(k for k in ("k%d" % i for i in range(100)) if shard_of(k, 3) == 0)
    c0 = shards[0].client()
    for cmd in (("SET", key, "v"), ("GET", key), ("INCR", key), ("DEL", mine, key),
                ("MSET", mine, "1", key, "2")):
        with pytest.raises(redis.ResponseError) as e:
            c0.execute_command(*cmd)
        assert str(e.value) == "MOVED 2 %s 1" % addrs[2], cmd
    assert c0.dbsize() == 0 and info(shards[0])["dpr_layout_moved"] == 5  # nothing ran
    assert c0.ping() and c0.execute_command("ECHO", "x") == b"x"

    # a DPR session routes by the same function: nothing moves
    client = cluster.client()
    with client.session() as s:
        s.set(key, "1")
        assert s.get(key) == b"1"
    # a session whose client has the shards in the wrong order is told
    # MOVED before anything of its batch runs: it learns the layout
    wrong = dpr.Client(shards=[addrs[1], addrs[2], addrs[0]], finder=cluster.finder.address)
    with wrong.session() as s:
        for i in range(30):
            s.set("w%d" % i, str(i))
        s.wait_committed()
        assert wrong.shards == addrs and wrong.layout_epoch == 1
        assert s.rollbacks == [] and s.last_seq == 30
    for i in range(30):
        assert shards[shard_of("w%d" % i, 3)].client().get("w%d" % i) == str(i).encode()

    # paused: every command with keys, and every batch, gets TRYAGAIN
    for s in shards:
        s.client().execute_command("DPR.LAYOUT", "PREPARE", *layout_args(2, shards.index(s),
                                                                         addrs))
    with pytest.raises(redis.ResponseError, match=r"^TRYAGAIN this deployment is being "
                       r"resized \(layout 1 to 2\)"):
        shards[2].client().get(key)
    assert info(shards[2])["dpr_layout_paused"] == 1
    done = []

    def late_write():
        with client.session() as s:
            s.set(key, "after")  # retried until the resize commits
            done.append(s.last_seq)
    t = threading.Thread(target=late_write)
    t.start()
    wait_for(lambda: info(shards[2])["dpr_layout_tryagain"] >= 3, 30, "retries")
    assert not done
    resize(shards, shards, 2)  # same shards: nothing moves
    t.join(60)
    assert done == [1] and shards[2].client().get(key) == b"after"
    assert all(info(s)["dpr_layout_epoch"] == 2 for s in shards)


class Writer(threading.Thread):
    """A DPR session setting key w<seq> = seq until stopped."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client = client
        self.stop = threading.Event()
        self.error = None
        self.last = 0

    def run(self):
        try:
            with self.client.session() as s:
                while not self.stop.is_set():
                    s.set("w%d" % s.next_seq, str(s.next_seq))
                s.wait_committed(timeout=60)
                assert s.rollbacks == [], s.rollbacks
                self.last = s.last_seq
        except Exception as e:  # noqa: BLE001 - the test fails on it
            self.error = e


def test_resize_3_to_5_to_2_under_a_session(cluster):
    shards = cluster.start_shards(3, interval_ms=50)
    set_layout(shards)
    values = {}
    for i in range(3000):
        k = "key:%d" % i
        values[k] = b"v%d" % i
        shards[shard_of(k, 3)].client().set(k, values[k])
    client = cluster.client()  # knows the 3 shards of layout 1 only
    w = Writer(client)
    w.start()
    time.sleep(0.5)

    grown = shards + cluster.start_shards(2, interval_ms=50)
    pause = resize(shards, grown, 2)
    owner_check(grown, list(values), values, exact=False)  # the session writes on
    moved = sum(info(s)["dpr_migrate_keys"] for s in shards)
    assert moved > 0 and sum(info(s)["dpr_imported_keys"] for s in grown[3:]) == moved
    time.sleep(0.5)

    small = grown[:2]
    resize(grown, small, 3)
    time.sleep(0.5)  # the session goes on: its next keys for shards 2..4 are MOVED
    w.stop.set()
    w.join(120)
    assert w.error is None, w.error
    assert client.layout_epoch == 3 and client.shards == [s.address for s in small]
    for seq in range(1, w.last + 1):
        values["w%d" % seq] = str(seq).encode()
    owner_check(small, list(values), values)
    for s in grown[2:]:  # they gave everything away
        assert s.client().dbsize() == 0
    print("pause of the 3 -> 5 resize: %.2fs" % pause)


def test_restart_keeps_the_layout_and_drops_keys_that_left(cluster):
    """A shard restarted after a committed resize reads its layout file and
    drops the keys its restored checkpoint still held; one killed in the
    middle of a resize comes back paused, and the resize completes."""
    shards = cluster.start_shards(2, interval_ms=50)
    set_layout(shards)
    values = {}
    for i in range(500):
        k = "key:%d" % i
        values[k] = b"%d" % i
        shards[shard_of(k, 2)].client().set(k, values[k])
    grown = shards + cluster.start_shards(1, interval_ms=50)
    addrs = [s.address for s in grown]
    for s in grown:
        s.client().execute_command("DPR.LAYOUT", "PREPARE", *layout_args(2, grown.index(s),
                                                                         addrs))
    wait_for(lambda: all(info(s)["dpr_layout_committed"] == 1 for s in grown), 60, "paused")
    # kill -9 of a source during the resize: it comes back paused
    cluster.kill9(0)
    src = cluster.restart(0)
    grown[0] = src
    assert info(src)["dpr_layout_paused"] == 1 and info(src)["dpr_layout_pending_epoch"] == 2
    with pytest.raises(redis.ResponseError, match="^TRYAGAIN"):
        src.client().get("key:1")
    # PREPARE again is accepted as said before; shard 0 commits last
    resize(grown[:2], grown, 2, commit=False)
    for s in grown[1:]:
        s.client().execute_command("DPR.LAYOUT", "COMMIT", 2)
    left = src.client().execute_command("DPR.LAYOUT", "COMMIT", 2)
    assert left > 0  # the keys that moved to shard 2, dropped in the open version
    # killed before that version can be in the cut: the checkpoint it
    # restores still holds them, and the layout file says they left
    cluster.kill9(0)
    src = cluster.restart(0)
    grown[0] = src
    assert info(src)["dpr_layout_epoch"] == 2 and info(src)["dpr_layout_paused"] == 0
    assert ("dropped %d keys this shard does not own under layout 2 (after the restore)"
            % left) in src.output()
    owner_check(grown, list(values), values)


def test_bad_layout_commands_and_file(cluster):
    (kv,) = cluster.start_shards(1, interval_ms=50)
    c = kv.client()
    a = kv.address
    for args, err in [
        (("SET", 0, 0, a), "invalid layout epoch '0'"),
        (("SET", 1, 1, a), "invalid shard index '1'"),
        (("SET", 1, 0, "nohost"), "invalid address 'nohost'"),
        (("SET", 1, 0), "unknown subcommand or wrong number of arguments"),
        (("BOGUS",), "unknown subcommand"),
        (("MIGRATE", 5), "no resize to layout 5 is prepared"),
        (("COMMIT", 5), "no resize to layout 5 is prepared"),
        (("MIGRATE", "x"), "invalid layout epoch"),
    ]:
        with pytest.raises(redis.ResponseError, match=err):
            c.execute_command("DPR.LAYOUT", *args)
    c.set("k", "1")
    # a layout under which the shard would not own a key it holds
    other = "127.0.0.1:1"
    k_owner = shard_of("k", 2)
    with pytest.raises(redis.ResponseError, match="would strand 1 keys"):
        c.execute_command("DPR.LAYOUT", "SET", 1, 1 - k_owner,
                          *([a, other] if k_owner == 1 else [other, a]))
    c.execute_command("DPR.LAYOUT", "SET", 3, 0, a)
    with pytest.raises(redis.ResponseError, match="not newer"):
        c.execute_command("DPR.LAYOUT", "SET", 2, 0, a)
    with pytest.raises(redis.ResponseError, match="no resize to layout 4 is prepared"):
        c.execute_command("DPR.IMPORT", 4, "a", "b")
    with pytest.raises(redis.ResponseError, match="wrong number of arguments"):
        c.execute_command("DPR.IMPORT", 4, "a")
    assert c.execute_command("DPR.LAYOUT", "ABORT", 4) == 0  # nothing prepared: nothing to undo
    owned = next(k for k in ("i%d" % i for i in range(50)) if shard_of(k, 2) == 0)
    foreign = next(k for k in ("i%d" % i for i in range(50)) if shard_of(k, 2) == 1)
    c.set(foreign, "stays here until migrated")
    c.execute_command("DPR.LAYOUT", "PREPARE", 4, 0, a, other)
    with pytest.raises(redis.ResponseError, match="is prepared: COMMIT or ABORT it first"):
        c.execute_command("DPR.LAYOUT", "PREPARE", 5, 0, a)
    # a COMMIT that would drop keys nobody copied is refused
    with pytest.raises(redis.ResponseError, match=r"COMMIT would drop \d+ keys that were not "
                       r"migrated on this world-line: run DPR.LAYOUT MIGRATE 4 first"):
        c.execute_command("DPR.LAYOUT", "COMMIT", 4)
    with pytest.raises(redis.ResponseError, match="belongs to shard 1 under layout 4"):
        c.execute_command("DPR.IMPORT", 4, owned, "x", foreign, "y")
    assert c.execute_command("DPR.IMPORT", 4, owned, "x") == 1
    # ABORT drops the imports the active layout does not give this shard
    # (here it owns everything, so the import stays) and resumes
    assert c.execute_command("DPR.LAYOUT", "ABORT", 4) == 0
    assert c.get(owned) == b"x" and info(kv)["dpr_layout_paused"] == 0
    assert c.get(foreign) == b"stays here until migrated"

    # FORCE (said by the driver once another shard committed) drops them
    c.execute_command("DPR.LAYOUT", "PREPARE", 5, 0, a, other)
    assert c.execute_command("DPR.LAYOUT", "COMMIT", 5, "FORCE") >= 1
    with pytest.raises(redis.ResponseError, match="^MOVED 1 127.0.0.1:1 5$"):
        c.get(foreign)
    assert c.get(owned) == b"x"

    # a damaged layout file: the shard refuses to start, before registering
    kv.kill()
    path = os.path.join(kv.state_dir, "layout")
    data = bytearray(open(path, "rb").read())
    data[-5] ^= 0x01
    open(path, "wb").write(bytes(data))
    again = cluster.add(kv.again())
    assert again.wait_exit() == 78
    assert "damaged layout file" in again.output() and "checksum mismatch" in again.output()
    assert "registered with finder" not in again.output()
