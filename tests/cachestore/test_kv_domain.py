"""dpr-kv in DPR domains (issue 9: each deployment its own domain).

A shard belongs to one domain (--domain NAME, DPR_KV_DOMAIN; "default"
when not given): its finder link names the domain in every command, so
the finder keeps its world-lines and cut apart from every other domain's,
and it runs only batches of its own domain. Checked here with real
processes on loopback: the option, INFO and STATUS; two shards in two
domains on one finder, where a crash and restart of one moves only its
own domain's world-line (the other shard and a session on it see nothing);
a shard of one domain refusing a batch of another; a finder that lost the
shard's domain (unknown domain) stops commits loudly, like a finder that
lost the worker, and a restart then refuses to start without creating the
domain again.

Every process is killed by PID at the end; waits poll with generous
timeouts, nothing asserts on time.
"""
import importlib.util
import os
import shutil
import signal
import subprocess
import sys

import pytest
import redis

import dprtest
from dprtest import KV, NotifySocket, Proc, free_port, wait_for
from kvwire import Raw, RespError, batch, domain_id, run_versioned

# the DPR client (python-dpr; dpr/_libdpr.py finds libdpr.so)
if importlib.util.find_spec("dpr") is None:
    sys.path.insert(0, dprtest.PYDIR)


def cut_of(finder, domain, worker):
    return finder.sync(domain)[2].get(worker, 0)


def commit(finder, kv, cmd):
    """Runs cmd on kv and waits until its domain's cut covers it."""
    v = run_versioned(kv.client(), cmd)
    wait_for(lambda: cut_of(finder, kv.domain, kv.worker) >= v, timeout=30,
             what="cut >= %d in domain %s" % (v, kv.domain))
    return v


def test_domain_option_info_and_status(cluster, tmp_path):
    ns = NotifySocket()
    try:
        kv = cluster.start_kv(1, domain="blue", env=ns.env())
        info = kv.info()
        assert info["dpr_domain"] == "blue"
        assert info["dpr_domain_id"] == domain_id("blue")
        st = ns.wait_status("serving on ")
        assert ": domain blue, world-line 1," in st, st
        # registered in its domain at the finder
        commit(cluster.finder, kv, ("SET", "a", "1"))
        assert 1 in cluster.finder.sync("blue")[2]
        assert "worker 1 of domain blue" in kv.output()
    finally:
        ns.close()
    # the variable; a flag beats it
    env = {"DPR_KV_LISTEN": "127.0.0.1:0", "DPR_KV_FINDER": cluster.finder.address,
           "DPR_KV_WORKER": "7", "DPR_KV_DIR": cluster.kv_dir(7), "DPR_KV_DOMAIN": "green.2"}
    p = cluster.add(Proc([KV], os.path.join(cluster.base, "env.log"), env=env))
    p.wait_ready("listening on ")
    assert redis.Redis(port=p.port, socket_timeout=10).info("dpr")["dpr_domain"] == "green.2"
    p.kill()
    k = cluster.start_kv(8, env={"DPR_KV_DOMAIN": "green.2"}, args=["--domain", "red_1"])
    assert k.info()["dpr_domain"] == "red_1"
    k.kill()
    # not given: "default"; the longest name
    assert cluster.start_kv(9).info()["dpr_domain"] == "default"
    assert cluster.start_kv(10, domain="0" + "d" * 62).info()["dpr_domain"] == "0" + "d" * 62
    # names the finder would refuse are refused at once (exit 2)
    base = [KV, "--finder", "127.0.0.1:1", "--worker", "1", "--dir", str(tmp_path / "x")]
    for bad in ("Blue", "-x", ".x", "a b", "a/b", "", "x" * 64, "caf\u00e9"):
        r = subprocess.run(base + ["--domain", bad], capture_output=True, timeout=30,
                           env={"PATH": os.environ.get("PATH", "")})
        assert r.returncode == 2, bad
        assert b"invalid value" in r.stderr and b"--domain" in r.stderr, r.stderr
    r = subprocess.run(base, capture_output=True, timeout=30,
                       env={"PATH": os.environ.get("PATH", ""), "DPR_KV_DOMAIN": "NO"})
    assert r.returncode == 2 and b"DPR_KV_DOMAIN" in r.stderr
    assert not os.path.exists(str(tmp_path / "x"))  # refused before anything is done


def test_a_restart_in_one_domain_leaves_the_other_alone(cluster):
    """Two shards in two domains on one finder. A kill -9 and restart of the
    red shard is a crash of the red domain: its world-line moves (the red
    shard restores its committed data on the new one). The blue domain's
    world-line, the blue shard (no rollback, its keys intact) and a session
    of the blue domain that writes before, during and after it see nothing:
    no RollbackError, the same world-line, its commit point moving on."""
    red = cluster.start_shards(1, interval_ms=50, first_worker=1, domain="red")[0]
    blue = cluster.start_shards(1, interval_ms=50, first_worker=2, domain="blue")[0]
    finder = cluster.finder
    wl_red, wl_blue = finder.sync("red")[0], finder.sync("blue")[0]
    assert set(finder.sync("red")[2]) == {red.worker}
    assert set(finder.sync("blue")[2]) == {blue.worker}
    commit(finder, red, ("SET", "red-key", "1"))
    client = cluster.client(domain="blue")
    with client.session() as s:
        for i in range(20):
            s.set("b%d" % i, i)
        assert s.wait_committed(timeout=60) == 20
        assert s.world_line == wl_blue

        cluster.kill9(0)
        cluster.shards[0].wait_exit()
        for i in range(20, 40):   # while the red shard is down
            s.set("b%d" % i, i)   # would raise dpr.RollbackError
        red2 = cluster.restart(0)
        assert red2.info()["dpr_world_line"] == wl_red + 1
        assert finder.sync("red")[0] == wl_red + 1
        assert red2.client().get("red-key") == b"1"
        for i in range(40, 60):
            s.set("b%d" % i, i)
        assert s.wait_committed(timeout=60) == 60
        assert s.world_line == wl_blue
        # the blue shard has asked the finder since (its cut moved): still on
        # its world-line, never rolled back
        info = blue.info()
        assert info["dpr_world_line"] == wl_blue and info["dpr_rollbacks"] == 0
        assert info["dpr_finder_world_line"] == wl_blue
        assert finder.sync("blue")[0] == wl_blue
        for i in range(60):
            assert s.get("b%d" % i) == str(i).encode()
    assert "rolling back" not in blue.output()


def test_a_shard_refuses_batches_of_the_default_domain(cluster):
    """A shard of domain blue takes a header stamped with the default
    domain's id (a session of the wrong deployment) for what it is."""
    kv = cluster.start_kv(1, domain="blue")
    wait_for(lambda: kv.info()["dpr_finder_workers"] >= 1, what="synced")
    r = Raw(kv.port, timeout=60)
    try:
        with pytest.raises(RespError) as e:
            batch(r, 1, 1, [["SET", "x", "1"]])  # kvwire's default: "default"
        assert ("refused: domain %d: this worker belongs to domain %d"
                % (domain_id("default"), domain_id("blue"))) in str(e.value)
        h, rep = batch(r, 1, 2, [["SET", "x", "2"]], domain="blue")
        assert h["status"] == 0 and rep == [b"OK"]
    finally:
        r.close()
    info = kv.info()
    assert info["dpr_batches_invalid"] == 1 and info["dpr_batches"] == 1
    assert kv.client().get("x") == b"2"


def test_finder_that_lost_the_domain(cluster):
    """The finder's state is lost while a shard of domain shop runs: the new
    finder does not know the domain, and answers its reports and syncs
    "ERR unknown domain 'shop'". That is the finder-lost-worker case: INFO,
    STATUS and the log say commits stopped, reads and writes go on, the
    refused reports are kept. A restart of the shard then refuses to start
    (it does not register, which would create the domain afresh and let the
    data be taken for never committed). With the state restored, commits
    resume."""
    port = free_port()
    cluster.finder.kill()
    f = cluster.start_finder("finder-shop", port=port)
    ns = NotifySocket()
    kv = cluster.start_kv(1, domain="shop", env=ns.env(), interval_ms=50)
    try:
        commit(f, kv, ("SET", "precious", "1"))
        wait_for(lambda: (lambda i: i["dpr_reports_unacked"] == 0 and
                          i["dpr_committed_on_disk"] > 0)(kv.info()), what="quiet")
        f.kill()
        backup = os.path.join(cluster.base, "finder-backup")
        shutil.copytree(f.state_dir, backup)
        shutil.rmtree(f.state_dir)
        fresh = cluster.start_finder("finder-shop", port=port)
        with pytest.raises(redis.ResponseError) as e:
            fresh.sync("shop")
        assert "unknown domain 'shop'" in str(e.value)
        wait_for(lambda: kv.info()["dpr_finder_knows_worker"] == 0, timeout=30, what="loud")
        st = ns.wait_status("commits stopped: the finder does not know this worker")
        assert "unknown domain 'shop'" in st, st
        c = kv.client()
        assert c.set("during", "1") and c.get("precious") == b"1"
        wait_for(lambda: kv.info()["dpr_reports_refused"] >= 1, what="a refused report")
        info = kv.info()
        assert info["dpr_reports_unacked"] >= 1  # kept
        assert "unknown domain" in info["dpr_finder_lost_reason"]
        assert info["dpr_world_line"] == 1 and info["dpr_rollbacks"] == 0
        assert kv.output().count("commits stopped: finder") == 1
        assert "of domain shop" in kv.output()

        # a restart now: refused before registering, the domain not created
        files = kv.checkpoints()
        kv.kill()
        again = cluster.add(kv.again())
        assert again.wait_exit() == 1
        out = again.output()
        assert "does not know domain 'shop'" in out
        assert "lost its state" in out and "not registering" in out
        assert "registered with finder" not in out
        assert kv.checkpoints() == files
        with pytest.raises(redis.ResponseError):
            fresh.sync("shop")

        # the finder's state restored: the shard starts, its data intact
        fresh.kill()
        shutil.rmtree(fresh.state_dir)
        shutil.copytree(backup, fresh.state_dir)
        cluster.start_finder("finder-shop", port=port)
        kv2 = cluster.add(kv.again())
        kv2.wait_ready()
        assert kv2.client().get("precious") == b"1"
        assert kv2.info()["dpr_domain"] == "shop"
    finally:
        ns.close()


def test_finder_that_lost_the_domain_live_recovery(cluster):
    """As above, but the state comes back while the shard runs: the kept
    reports are acknowledged and commits resume without a restart."""
    port = free_port()
    cluster.finder.kill()
    f = cluster.start_finder("finder-shop", port=port)
    kv = cluster.start_kv(1, domain="shop", interval_ms=50)
    commit(f, kv, ("SET", "a", "1"))
    wait_for(lambda: kv.info()["dpr_reports_unacked"] == 0, what="acked")
    f.kill()
    backup = os.path.join(cluster.base, "finder-backup")
    shutil.copytree(f.state_dir, backup)
    shutil.rmtree(f.state_dir)
    fresh = cluster.start_finder("finder-shop", port=port)
    wait_for(lambda: kv.info()["dpr_finder_knows_worker"] == 0, timeout=30, what="loud")
    kv.client().set("b", "1")
    fresh.kill(signal.SIGKILL)
    shutil.rmtree(fresh.state_dir)
    shutil.copytree(backup, fresh.state_dir)
    restored = cluster.start_finder("finder-shop", port=port)
    wait_for(lambda: kv.info()["dpr_finder_knows_worker"] == 1, timeout=30,
             what="the domain known again")
    wait_for(lambda: kv.info()["dpr_reports_unacked"] == 0, timeout=30, what="kept reports acked")
    commit(restored, kv, ("SET", "c", "1"))
    assert kv.info()["dpr_world_line"] == 1
    assert "knows worker 1 again" in kv.output()
