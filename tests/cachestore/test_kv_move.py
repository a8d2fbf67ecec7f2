"""dpr-kv when its worker moves to another node (the node was lost).

The cluster starts a new incarnation of the worker elsewhere and gives the
worker's finder record a new token (the agent, through the finder's C API);
the old incarnation, wherever it still runs, must stop reporting and must
not come back. Checked here with real processes:

  - a shard with a token authenticates (DPR.AUTH) on every connection to
    the finder, also after the finder restarted, and its reports commit;
  - the finder's "-FENCED ..." answer, to DPR.AUTH or to a report, stops
    the shard (exit status 78): a token changes only when the agent moves a
    worker, so tests/cluster/test_node_loss.py checks it with real nodes
    (the finder side: tests/finder/test_cmd.c);
  - a second incarnation with another token is refused at start-up (78)
    and the first goes on;
  - --seed-dir: a new incarnation with an empty state directory takes over
    the checkpoints copied from the old node and restores the committed
    data.
"""
import os
import signal

from dprtest import Kv, free_port, wait_for
from kvwire import run_versioned

TOKEN = "0a1b2c3d4e5f60718293a4b5c6d7e8f9"
OTHER = "ffeeddccbbaa99887766554433221100"


def test_authenticates_on_every_connection_and_reports(cluster):
    """DPR.AUTH goes first on each connection of the link, so reports of a
    worker registered with a token are accepted, also after a restart of
    the finder (a new connection: a grant is the connection's)."""
    port = free_port()
    cluster.finder.kill()
    cluster.finder.wait_exit()
    finder = cluster.start_finder(name="finder2", port=port)
    kv = cluster.start_kv(1, interval_ms=50, env={"DPR_KV_FINDER_TOKEN": TOKEN})
    c = kv.client()
    v = run_versioned(c, ("SET", "a", "1"))
    wait_for(lambda: finder.sync()[2].get(1, 0) >= v, what="worker 1's writes committed")

    finder.kill(signal.SIGKILL)
    finder.wait_exit()
    finder = cluster.start_finder(name="finder2", port=port)  # same state, same port
    v = run_versioned(c, ("SET", "b", "2"))
    wait_for(lambda: finder.sync()[2].get(1, 0) >= v, timeout=30,
             what="worker 1's reports accepted by the restarted finder")
    info = kv.info()
    assert info["dpr_reports_refused"] == 0 and info["dpr_world_line"] == 1
    assert "refused" not in finder.output()
    assert TOKEN not in kv.output() and TOKEN not in finder.output()
    c.connection_pool.disconnect()


def test_second_incarnation_with_another_token_is_refused(cluster):
    """Another incarnation of a live worker with another token cannot
    register (it would roll the domain back): exit 78 at start-up; the first
    goes on reporting."""
    kv = cluster.start_kv(1, interval_ms=50, env={"DPR_KV_FINDER_TOKEN": TOKEN})
    v = run_versioned(kv.client(), ("SET", "a", "1"))
    wait_for(lambda: cluster.finder.sync()[2].get(1, 0) >= v, what="worker 1 in the cut")
    other_dir = os.path.join(cluster.base, "elsewhere")
    bad = cluster.add(Kv(cluster.finder.address, 1, other_dir,
                         os.path.join(cluster.base, "elsewhere.log"), interval_ms=50,
                         env={"DPR_KV_FINDER_TOKEN": OTHER}))
    assert bad.wait_exit(timeout=30) == 78
    assert "worker 1 is registered by its owner" in bad.output()
    assert OTHER not in bad.output() and OTHER not in cluster.finder.output()
    assert cluster.finder.sync()[0] == 1  # no rollback
    v = run_versioned(kv.client(), ("SET", "b", "2"))
    wait_for(lambda: cluster.finder.sync()[2].get(1, 0) >= v, what="the first goes on")
    assert kv.info()["dpr_reports_refused"] == 0


def test_seed_dir_restores_a_moved_worker(cluster):
    """A new incarnation on another node: an empty state directory, and
    --seed-dir holding the old node's checkpoints (here: the first
    incarnation's directory itself). It takes them over, registers with the
    token (the crash-restart path) and restores the committed data."""
    kv = cluster.start_kv(1, interval_ms=50, env={"DPR_KV_FINDER_TOKEN": TOKEN})
    c = kv.client()
    v = run_versioned(c, *[("SET", "key%d" % i, "value%d" % i) for i in range(200)])
    wait_for(lambda: cluster.finder.sync()[2].get(1, 0) >= v, what="the writes committed")
    c.connection_pool.disconnect()
    kv.kill(signal.SIGKILL)  # the node is lost
    kv.wait_exit()
    old_dir = kv.state_dir
    assert kv.checkpoints()
    wl = cluster.finder.sync()[0]

    new_dir = os.path.join(cluster.base, "node2", "kv1")
    moved = cluster.add(Kv(cluster.finder.address, 1, new_dir,
                           os.path.join(cluster.base, "node2-kv1.log"), interval_ms=50,
                           args=["--seed-dir", old_dir], env={"DPR_KV_FINDER_TOKEN": TOKEN}))
    moved.wait_ready()
    out = moved.output()
    assert "took over" in out and "from %s" % old_dir in out, out
    assert moved.checkpoints()
    info = moved.info()
    assert info["dpr_world_line"] == wl + 1
    assert info["dpr_restored_version"] >= 1
    mc = moved.client()
    for i in range(200):
        assert mc.get("key%d" % i) == b"value%d" % i
    v = run_versioned(mc, ("SET", "after", "1"))
    wait_for(lambda: cluster.finder.sync()[2].get(1, 0) >= v, what="the new incarnation commits")
    mc.connection_pool.disconnect()
    assert TOKEN not in moved.output()

    # checkpoints of its own: the seed is not used again
    moved.kill(signal.SIGKILL)
    moved.wait_exit()
    again = cluster.add(moved.again())
    again.wait_ready()
    assert "took over" not in again.output()
    assert again.client().get("after") == b"1"


def test_seed_dir_missing_empty_or_unreadable(cluster, tmp_path):
    """A seed directory that does not exist or holds no checkpoint: start as
    without it. One that cannot be read: an error before registering."""
    empty = tmp_path / "empty-seed"
    empty.mkdir()
    for worker, seed in ((5, str(tmp_path / "no-such-dir")), (6, str(empty))):
        kv = cluster.start_kv(worker, args=["--seed-dir", seed])
        assert "seed directory %s" % seed in kv.output()
        assert kv.checkpoints() == [] or kv.info()["dpr_restored_version"] == 0
        kv.kill()
        kv.wait_exit()
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    bad = cluster.start_kv(7, env={"DPR_KV_SEED_DIR": str(not_a_dir)}, wait=False)
    assert bad.wait_exit(timeout=30) == 1
    out = bad.output()
    assert "cannot take over the checkpoints of --seed-dir" in out and str(not_a_dir) in out
    assert "before registering with the finder" in out
    assert 7 not in cluster.finder.sync()[2]
