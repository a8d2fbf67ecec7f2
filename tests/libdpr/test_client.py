"""The C client API (libdpr/include/dpr/client.h) against real processes:
dpr-finder and dpr-kv shards on loopback, driven by the C program
tests/libdpr/client_driver.c (built as $DPR_BUILD/tests/client-driver).

Skips when build/dpr-kv or the driver is missing. Every process is started
here, on free ports, with state under a temporary directory, and killed by
PID at the end."""
import os
import signal
import time

import pytest

import dprtest
from dprtest import FINDER, KV

DRIVER = dprtest.binary("tests/client-driver")

pytestmark = pytest.mark.skipif(
    bool(dprtest.missing(FINDER, KV, DRIVER)),
    reason="needs %s, %s and %s (make all, cachestore/build.mk)" % (FINDER, KV, DRIVER))


@pytest.fixture
def cluster_factory(cluster):
    """cluster_factory(nshards) -> the cluster fixture (tests/conftest.py)
    with nshards dpr-kv shards (workers 100.., checkpoints every 50 ms)."""
    def make(nshards):
        cluster.start_shards(nshards, interval_ms=50, first_worker=100)
        return cluster
    return make


def restart(cluster, i, pause=0.2):
    """kill -9 shard i, wait a little, start it again (same port and directory)."""
    cluster.kill9(i)
    time.sleep(pause)
    cluster.restart(i)


def driver_argv(cluster, *args):
    argv = [DRIVER, "--finder", cluster.finder.address]
    for address in cluster.addresses:
        argv += ["--shard", address]
    return argv + list(args)


def start_driver(cluster, *args):
    """The client driver as a process of the cluster (stdout and stderr in
    driver-N.log)."""
    log = os.path.join(cluster.base, "driver-%d.log" % len(cluster.procs))
    return cluster.add(dprtest.Proc(driver_argv(cluster, *args), log, name="client-driver"))


def finish_driver(p, timeout=120):
    rc = p.wait_exit(timeout)
    out = p.output()
    assert rc == 0, out
    return out


def run_driver(cluster, *args, timeout=120):
    return finish_driver(start_driver(cluster, *args), timeout)


@pytest.mark.parametrize("nshards", [1, 2])
def test_basic(cluster_factory, nshards):
    c = cluster_factory(nshards)
    out = run_driver(c, "basic")
    assert "PASS basic" in out


def test_writer_no_failure(cluster_factory):
    c = cluster_factory(2)
    out = run_driver(c, "--seconds", "1", "writer")
    assert "PASS writer" in out
    assert "ROLLBACK" not in out


@pytest.mark.parametrize("mode", ["strict", "relaxed"])
@pytest.mark.parametrize("victim", [0, 2])
def test_writer_shard_crash(cluster_factory, mode, victim):
    """kill -9 one of 3 shards while a session writes across all of them,
    restart it: the driver must see exactly one rollback and its report must
    match what the shards hold (the driver reads every key back)."""
    c = cluster_factory(3)
    args = ["--seconds", "3"] + (["--relaxed"] if mode == "relaxed" else []) + ["writer"]
    p = start_driver(c, *args)
    try:
        time.sleep(1.0)
        restart(c, victim)
    finally:
        out = finish_driver(p)
    assert "PASS writer" in out
    rollbacks = [l for l in out.splitlines() if l.startswith("ROLLBACK")]
    assert len(rollbacks) == 1, out


def test_idle_session_after_restart(cluster_factory):
    """a session whose connections went stale while a shard restarted learns
    of the rollback and continues on the new world-line."""
    c = cluster_factory(2)
    p = start_driver(c, "--seconds", "2", "idle")
    try:
        p.wait_ready("READY", timeout=120)
        line = p.output().splitlines()[0]
        assert line.startswith("READY"), line
        restart(c, 1)
    finally:
        out = finish_driver(p)
    assert "PASS idle" in out


def test_exec_follows_a_resize(cluster_factory):
    """dpr_client_session_exec follows the deployment's layout: a client
    made with 2 shards keeps writing while the deployment grows to 3
    (-TRYAGAIN during the pause, -MOVED after it: the session refreshes
    its layout and re-routes) and shrinks to 1; every key reads back, with
    no gap in the sequence numbers and no rollback."""
    c = cluster_factory(2)
    shards = list(c.shards)
    dprtest.set_layout(shards)
    p = start_driver(c, "--seconds", "6", "follow")
    dprtest.wait_for(lambda: "READY" in p.output(), 30, "the driver")
    time.sleep(1)
    grown = shards + c.start_shards(1, interval_ms=50, first_worker=200)
    dprtest.resize_shards(shards, grown, 2)
    time.sleep(1)
    dprtest.resize_shards(grown, grown[:1], 3)
    out = finish_driver(p)
    assert "PASS follow epoch=3 shards=1" in out, out
    assert sum(s.info()["dpr_layout_tryagain"] for s in grown) > 0


@pytest.mark.parametrize("mode", ["strict", "relaxed"])
def test_writer_through_planned_restarts(cluster_factory, mode):
    """kill -TERM each of 3 shards in turn and start it again while a session
    pipelines batches through dpr_client_session_send/recv (8 batches to a
    shard before the next): a planned stop rolls nothing back. Batches the
    stopping shard answered TRYAGAIN, or cut off unanswered at its end of
    stream (it came back as another process on the same world-line:
    -ERESTART), never ran and are withdrawn; the writer goes on. No
    rollback, the world-line stays 1, every operation reads back (and every
    withdrawn one is absent)."""
    c = cluster_factory(3)
    args = ["--seconds", "8", "--burst", "8", "--reconnect-timeout", "20000"]
    p = start_driver(c, *(args + (["--relaxed"] if mode == "relaxed" else []) + ["writer"]))
    try:
        time.sleep(1.0)
        for i in (1, 0, 2):
            victim = c.shards[i]
            victim.kill(signal.SIGTERM)
            assert victim.wait_exit() == 0
            assert "left the finder on purpose" in victim.output()
            time.sleep(0.3)  # the sessions reconnect meanwhile
            kv = c.restart(i)
            assert "registered with finder %s in domain default: world-line 1," \
                % c.finder.address in kv.output()
            time.sleep(0.5)
    finally:
        out = finish_driver(p)
    assert "PASS writer" in out, out
    assert "ROLLBACK" not in out, out
    assert " rollbacks=0 " in out, out
    assert "world_line=1->1" in out, out
    assert c.finder.sync()[0] == 1
    for kv in c.shards:
        info = kv.info()
        assert info["dpr_world_line"] == 1 and info["dpr_rollbacks"] == 0
        assert "restored checkpoint" in kv.output()
    resent = [l for l in out.splitlines() if l.startswith("RESENT")]
    print(resent[0])
