"""dpr.Client / dpr.Session against a real dpr-finder and dpr-kv shards."""
import signal
import threading
import time

import pytest

import dpr
from dprtest import wait_for


@pytest.mark.parametrize("nshards", [1, 2, 3])
def test_operations_and_sequence_numbers(cluster, nshards):
    cluster.start_shards(nshards)
    client = cluster.client()
    with client.session() as s:
        assert s.last_seq == 0 and s.next_seq == 1
        assert s.world_line == 1
        assert s.set("a", "1") == b"OK"
        assert s.last_seq == 1
        assert s.get("a") == b"1"
        assert s.incr("a") == 2
        assert s.incr("a", 5) == 7
        assert s.get("missing") is None
        assert s.exists("a") == 1
        assert s.delete("a") == 1
        assert s.delete("a") == 0
        assert s.last_seq == 8
        for i in range(30):
            assert s.set("k%d" % i, i) == b"OK"
        assert s.last_seq == 38
        # the keys are where dpr.route says
        for i in range(30):
            shard = client.shard_of("k%d" % i)
            assert cluster.shards[shard].client().get("k%d" % i) == str(i).encode()
    assert client.worker_ids() == cluster.workers


def test_commit_point_reaches_last_seq(cluster3):
    client = cluster3.client()
    with client.session() as s:
        for i in range(50):
            s.set("key:%d" % i, i)
        assert s.commit_point() <= s.last_seq
        cp = s.wait_committed(timeout=10)
        assert cp >= 50 and s.is_committed(50) and s.is_committed(1)
        deadline = time.monotonic() + 10
        while s.commit_point() < s.last_seq:
            assert time.monotonic() < deadline, "commit point stuck at %d" % s.known_commit_point
            time.sleep(0.01)
        assert s.commit_point() == 50
        # the finder's cut covers the versions the shards reported
        _, _, cut = cluster3.finder.sync()
        assert set(cut) <= set(cluster3.workers)


def test_wait_committed_for_one_operation(cluster3):
    client = cluster3.client()
    with client.session() as s:
        s.set("x", 1)
        seq = s.last_seq
        s.set("y", 2)
        assert s.wait_committed(seq, timeout=10) >= seq
        assert s.is_committed(seq)
        s.wait_committed(timeout=10)
        with pytest.raises(ValueError):
            s.wait_committed(s.last_seq + 1)
        assert s.wait_committed(0) == s.last_seq  # seq 0: no wait, the current commit point


def test_wait_committed_times_out_when_no_checkpoints(cluster):
    # a shard that never checkpoints in time: the operation cannot commit
    cluster.start_shards(1, interval_ms=60000)
    with cluster.client().session() as s:
        s.set("a", 1)
        t0 = time.monotonic()
        with pytest.raises(dpr.TimeoutError, match="not committed"):
            s.wait_committed(timeout=0.3)
        assert time.monotonic() - t0 < 5


def test_error_reply_raises_response_error_and_counts(cluster3):
    with cluster3.client().session() as s:
        s.set("str", "abc")
        with pytest.raises(dpr.ResponseError, match="not an integer"):
            s.incr("str")
        assert s.last_seq == 2
        assert s.get("str") == b"abc"
        s.wait_committed(timeout=10)


def test_execute_many_one_batch_with_hash_tag(cluster3):
    client = cluster3.client()
    with client.session() as s:
        replies = s.execute_many("{u1}", [("SET", "{u1}:name", "ann"), ("SET", "{u1}:n", 1),
                                          ("INCR", "{u1}:n"), ("INCR", "{u1}:name"),
                                          ("GET", "{u1}:name")])
        assert replies[:3] == [b"OK", b"OK", 2]
        assert isinstance(replies[3], dpr.ResponseError)
        assert replies[4] == b"ann"
        assert s.last_seq == 5
        assert s.execute("APPEND", "{u1}:name", "e") == 4
        assert s.wait_committed(timeout=10) >= 6


def test_workers_given_or_learned_and_checked(cluster3):
    good = cluster3.client(workers=cluster3.workers)
    with good.session() as s:
        s.set("a", 1)
    wrong = cluster3.client(workers=list(reversed(cluster3.workers)))
    with wrong.session() as s:
        with pytest.raises(dpr.DprError, match="expected worker"):
            for i in range(20):  # some key lands on a mismatched shard
                s.set("k%d" % i, i)
    with pytest.raises(ValueError):
        cluster3.client(workers=[1, 2])
    with pytest.raises(ValueError):
        dpr.Client(shards=["nope"], finder=cluster3.finder.address)
    with pytest.raises(TypeError):
        dpr.Client(shards="127.0.0.1:1", finder=cluster3.finder.address)


def test_sessions_in_threads(cluster3):
    client = cluster3.client()
    errors = []

    def run(i):
        try:
            with client.session() as s:
                for k in range(200):
                    s.set("t%d:%d" % (i, k), k)
                s.wait_committed(timeout=15)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_finder_unreachable_is_a_clear_error(cluster3):
    client = dpr.Client(shards=cluster3.addresses, finder="127.0.0.1:1",
                        reconnect_timeout=0.2)
    with pytest.raises(dpr.ConnectionError, match="finder 127.0.0.1:1"):
        client.session()


def test_shard_down_is_a_connection_error_and_restart_rolls_back(cluster3):
    client = cluster3.client(reconnect_timeout=0.5)
    with client.session() as s:
        keys = {i: "k%d" % i for i in range(40)}
        on0 = [k for k in keys.values() if client.shard_of(k) == 0]
        for k in keys.values():
            s.set(k, 1)
        s.wait_committed(timeout=10)
        committed = s.last_seq
        cluster3.kill9(0)
        t0 = time.monotonic()
        with pytest.raises(dpr.ConnectionError, match="unreachable"):
            s.set(on0[0], 2)
        assert time.monotonic() - t0 < 5
        assert s.last_seq == committed  # nothing was sent: no sequence number used
        cluster3.restart(0)
        # the restart moved the world-line: the next batch is refused, nothing
        # committed was lost, and the session goes on
        with pytest.raises(dpr.RollbackError) as ei:
            s.set(on0[0], 3)
        e = ei.value
        assert e.lost_from == committed + 1 and e.lost_count == 1
        assert e.world_line == 2 and e.old_world_line == 1 and s.world_line == 2
        assert "world-line 1 to 2" in str(e)
        assert s.set(on0[0], 4) == b"OK"
        assert s.get(on0[0]) == b"4"
        for k in keys.values():
            if k != on0[0]:
                assert s.get(k) == b"1"
        s.wait_committed(timeout=10)
        assert s.lost(committed + 1) and not s.lost(committed)


def test_commit_point_learns_a_rollback(cluster3):
    client = cluster3.client()
    with client.session() as s:
        s.set("a", 1)
        s.wait_committed(timeout=10)
        cluster3.kill9(1)
        cluster3.restart(1)
        wait_for(lambda: cluster3.finder.sync()[0] == 2, what="world-line 2")
        # everything was committed: the rollback loses nothing, no error
        cp = s.commit_point()
        assert s.world_line == 2 and cp == s.last_seq
        assert len(s.rollbacks) == 1 and s.rollbacks[0].lost_count == 0
        s.set("b", 2)
        assert s.wait_committed(timeout=10) == 2


def test_closed_session(cluster3):
    s = cluster3.client().session()
    s.close()
    s.close()
    with pytest.raises(dpr.SessionClosedError):
        s.set("a", 1)
    assert "closed" in repr(s)


def _key_on(client, shard, prefix="k"):
    return next(prefix + str(i) for i in range(10000) if client.shard_of(prefix + str(i)) == shard)


def test_answer_lost_mid_batch_waits_for_the_rollback(cluster3):
    """A shard stops answering while a batch is in flight (SIGSTOP, then the
    read times out), is killed and restarted: the session abandons the batch,
    waits for the new world-line and reports the in-doubt operation lost."""
    # The read timeout must fire on the stopped shard before it is killed
    # (3 s later), yet leave room for ordinary operations on a busy machine.
    client = cluster3.client(timeout=2.0, rollback_timeout=20)
    with client.session() as s:
        key = _key_on(client, 2)
        for i in range(20):
            s.set("a%d" % i, i)
        s.set(key, "committed")  # connected to shard 2
        s.wait_committed(timeout=10)
        committed = s.last_seq
        cluster3.shards[2].kill(signal.SIGSTOP)

        def restart_later():
            time.sleep(3.0)
            cluster3.kill9(2)
            cluster3.restart(2)

        t = threading.Thread(target=restart_later)
        t.start()
        try:
            with pytest.raises(dpr.RollbackError) as ei:
                s.set(key, "in doubt")
        finally:
            t.join()
        e = ei.value
        assert (e.lost_from, e.lost_count, e.last_seq_before) == (committed + 1, 1, committed + 1)
        assert "timed out" in e.reason
        assert s.world_line == e.world_line == 2
        assert s.get(key) == b"committed"
        assert s.set(key, "again") == b"OK"
        assert s.wait_committed(timeout=10) == s.last_seq


def test_answer_lost_without_a_rollback_leaves_the_session_in_doubt(cluster3):
    client = cluster3.client(timeout=0.3, rollback_timeout=0.3)
    with client.session() as s:
        key = _key_on(client, 0)
        s.set(key, 0)  # connected to shard 0
        cluster3.shards[0].kill(signal.SIGSTOP)
        try:
            with pytest.raises(dpr.SessionInDoubtError, match="in doubt") as ei:
                s.set(key, 1)
            assert "open a new session" in str(ei.value)
        finally:
            cluster3.shards[0].kill(signal.SIGCONT)
        # the shard did not fail: no rollback will come; the session stays stuck
        with pytest.raises(dpr.SessionInDoubtError):
            s.set("y", 2)
        assert s.last_seq == 2
    with client.session() as s2:  # a new session works
        assert s2.set(key, 2) == b"OK"


def test_bad_argument_uses_no_sequence_number(cluster3):
    with cluster3.client().session() as s:
        s.set("a", 1)
        with pytest.raises(TypeError):
            s.set("a", None)
        with pytest.raises(TypeError):
            s.set(None, 1)
        assert s.last_seq == 1
        assert s.set("b", 2) == b"OK" and s.last_seq == 2
