"""Forged DPR.BATCH headers against live dpr-kv shards (issue 8, item 1).

A DPR.BATCH header comes from whoever can open a TCP connection to a shard.
Before the fix, one header with a version lower bound of 2^64 - 1 froze the
commit point of the whole cluster and, at the next world-line change, made
the shards exit ("fatal: rollback to version N refused: Value too large");
2^62 lifted the cluster's max version to 4.6e18; a dependency on a worker
that does not exist held the cut back. Each test here sends such a header
from a plain TCP client and checks: the batch gets an error and changes
nothing (version, world-line, keys, the finder's cut), a real session
afterwards commits, and a world-line change afterwards leaves every shard
alive. And the other way round: a real session whose dependency names a
worker that registered after the shard last asked the finder is accepted.
A batch of another DPR domain (issue 9: each deployment its own domain) is
refused the same way, whatever its world-line.

Every process is killed by PID at the end; waits poll with generous
timeouts, nothing asserts on time.
"""
import signal

import pytest

from dprtest import wait_for
from kvwire import Raw, RespError, batch, domain_id, encode, request_header

LIMIT = 1 << 62  # DPR_WORKER_VERSION_LIMIT (libdpr/include/dpr/worker.h)


def synced(kv, n):
    """The shard's last DPR.SYNC answer listed (at least) n workers."""
    return kv.info()["dpr_finder_workers"] >= n


def two_shards(cluster, **kw):
    shards = cluster.start_shards(2, interval_ms=50, **kw)
    # every shard knows both workers once the finder has listed them
    wait_for(lambda: set(cluster.finder.sync()[2]) == set(cluster.workers),
             what="both workers registered")
    for kv in shards:
        wait_for(lambda kv=kv: synced(kv, 2), what="shard synced")
    return shards


def session_commits(cluster, tag, n=20):
    """A real session writes n keys over every shard; returns once they are
    committed (its commit point moved to its last operation)."""
    with cluster.client().session() as s:
        for i in range(n):
            s.set("%s:%d" % (tag, i), i)
        cp = s.wait_committed(timeout=60)
        assert cp == s.last_seq == n
        assert s.get("%s:%d" % (tag, n - 1)) == str(n - 1).encode()


def world_line_change(cluster, victim=1):
    """kill -9 and restart shard `victim`: every other shard must roll back
    to the new world-line and stay alive."""
    wl = cluster.finder.sync()[0]
    cluster.kill9(victim)
    cluster.shards[victim].wait_exit()
    cluster.restart(victim)
    for kv in cluster.shards:
        wait_for(lambda kv=kv: kv.info()["dpr_world_line"] == wl + 1,
                 what="shard on world-line %d" % (wl + 1), timeout=60)
    for i, kv in enumerate(cluster.shards):
        assert kv.alive(), kv.describe()
        assert "fatal" not in kv.output()
        if i != victim:
            assert kv.info()["dpr_rollbacks"] >= 1


def send_forged(kv, *, lb=0, deps=(), key="forged"):
    """Sends one DPR.BATCH with the shard's own world-line and a SET; returns
    the error (a RespError), or the response header if it ran."""
    r = Raw(kv.port, timeout=60)
    try:
        wl = kv.info()["dpr_world_line"]
        try:
            reply = batch(r, wl, 1, [["SET", key, "1"]], version_lb=lb, deps=deps)[0]
        except RespError as e:
            reply = e
        # the connection stays usable, in step with the stream
        assert r.call("PING") == b"PONG"
        return reply
    finally:
        r.close()


# (name, version lower bound, dependencies(worker ids of the two shards,
# the victim's highest version) -> list, what the error says)
CASES = [
    ("lb-2^64-1", lambda ws, hi: (2**64 - 1, []),
     "version lower bound 18446744073709551615: versions stay below 4611686018427387904"),
    ("lb-2^62", lambda ws, hi: (2**62, []),
     "version lower bound 4611686018427387904: versions stay below 4611686018427387904"),
    ("lb-2^40", lambda ws, hi: (2**40, []),
     "version lower bound 1099511627776: above any version of this cluster"),
    ("dep-unknown-worker", lambda ws, hi: (0, [(ws[1], 1), (999, 5)]),
     "dependency (999, 5): worker 999 is not in this cluster"),
    ("dep-2^64-1", lambda ws, hi: (0, [(ws[1], 2**64 - 1)]),
     "versions stay below"),
    ("dep-above-own-highest", lambda ws, hi: (0, [(ws[0], hi + 1000)]),
     "this worker never opened a version above %d"),
]


@pytest.mark.parametrize("name,make,text", CASES, ids=[c[0] for c in CASES])
def test_forged_batch_is_refused_and_changes_nothing(cluster, name, make, text):
    a, b = two_shards(cluster)
    before = a.info()
    hi = before["dpr_version"]  # the highest version it opened: nothing ran yet
    lb, deps = make(cluster.workers, hi)
    reply = send_forged(a, lb=lb, deps=deps)
    after = a.info()
    forged_key = a.client().get("forged")
    # (checked first, so that without the fix the test shows the issue's
    # symptoms: the commit point frozen, shards exiting at the world-line
    # change) commits go on, and survive a world-line change, every shard alive
    session_commits(cluster, "before")
    world_line_change(cluster, victim=1)
    session_commits(cluster, "after")
    assert a.info()["dpr_version"] < 1000
    assert max(cluster.finder.sync()[2].values()) < 1000
    # the batch got an error and changed nothing
    assert isinstance(reply, RespError), "the forged batch ran: %r" % (reply,)
    err = str(reply)
    assert err.startswith("ERR DPR.BATCH refused: "), err
    assert (text % hi if "%d" in text else text) in err, err
    for field in ("dpr_world_line", "dpr_version", "dpr_cluster_max_version",
                  "dpr_batches"):
        assert after[field] == before[field], field
    assert after["dpr_batches_invalid"] == before["dpr_batches_invalid"] + 1
    assert forged_key is None
    assert "DPR.BATCH refused: " in a.output()


def test_many_forged_batches_lift_nothing(cluster):
    """A batch at the bound itself runs (a real session could have seen such
    a version), but it cannot be repeated to climb: before the fix every
    batch could add to the version; now, while the finder has not learned a
    higher version (this shard never checkpoints here), each attempt to go
    further is refused and the version stays where the first one put it."""
    a = cluster.start_kv(1, interval_ms=600000)
    wait_for(lambda: synced(a, 1), what="A synced")
    r = Raw(a.port, timeout=60)
    try:
        top = 1 << 20  # cluster max 0 + DPR_WORKER_SLACK: within the bound
        h, _ = batch(r, 1, 1, [["GET", "x"]], version_lb=top)
        assert h["status"] == 0 and h["versions"] == [top]
        for i in range(2, 12):
            with pytest.raises(RespError) as e:
                batch(r, 1, i, [["GET", "x"]], version_lb=top + (1 << 20))
            assert "above any version of this cluster" in str(e.value)
    finally:
        r.close()
    info = a.info()
    assert info["dpr_version"] == top
    assert info["dpr_batches"] == 1 and info["dpr_batches_invalid"] == 10


def test_the_finder_lists_every_worker_and_sessions_commit(cluster):
    """DPR.SYNC lists every registered worker, 0 for one with nothing
    committed; the Python client's commit point works with those zeros."""
    a, b = two_shards(cluster)
    _, _, cut = cluster.finder.sync()
    assert cut == {a.worker: 0, b.worker: 0}
    with cluster.client().session() as s:
        # one key on one shard only: the other stays at 0 in the cut
        s.set("{only}", 1)
        assert s.wait_committed(timeout=60) == 1
    _, _, cut = cluster.finder.sync()
    assert set(cut) == {a.worker, b.worker} and max(cut.values()) >= 1


def test_dependency_on_a_worker_that_just_registered(cluster):
    """Shard A asks the finder rarely (once at start, then every 10 min);
    shard B registers after that. A session that ran on B and then goes to A
    carries a dependency on B, which A does not know yet: A must ask the
    finder again (park the batch, DPR.SYNC) and run it, not refuse it."""
    a = cluster.start_kv(1, interval_ms=50, args=["--sync-interval-ms", "600000"])
    wait_for(lambda: a.info()["dpr_finder_connected"] == 1, what="A connected")
    wait_for(lambda: 1 in cluster.finder.sync()[2], what="A registered")
    # A's first answer arrived (it lists only A); B registers after it
    wait_for(lambda: synced(a, 1), what="A synced")
    b = cluster.start_kv(2, interval_ms=50)
    rb, ra = Raw(b.port, timeout=60), Raw(a.port, timeout=60)
    try:
        hb, _ = batch(rb, 1, 1, [["SET", "b", "1"]])
        vb = hb["versions"][0]
        assert a.info()["dpr_finder_workers"] == 1  # A has not heard of B
        ha, rep = batch(ra, 1, 1, [["SET", "a", "1"]], version_lb=vb, deps=[(2, vb)])
        assert ha["status"] == 0 and rep == [b"OK"]
        assert ha["versions"][0] >= vb
        assert a.info()["dpr_finder_workers"] == 2  # asked again because of the batch
        # A's checkpoint carries the dependency on B to the finder, which
        # commits A's version once B's is durable
        wait_for(lambda: cluster.finder.sync()[2].get(1, 0) >= ha["versions"][0],
                 what="A's version committed", timeout=60)
    finally:
        ra.close()
        rb.close()
    assert a.info()["dpr_batches_invalid"] == 0
    assert "refused" not in a.output()


def test_unknown_worker_is_refused_after_fresh_answers(cluster):
    """The same wait for a worker that never registers ends in the error
    (after fresh DPR.SYNC answers), and the shard then serves normally."""
    a = cluster.start_kv(1, interval_ms=50, args=["--sync-interval-ms", "600000"])
    wait_for(lambda: synced(a, 1), what="A synced")
    r = Raw(a.port, timeout=60)
    try:
        with pytest.raises(RespError) as e:
            batch(r, 1, 1, [["SET", "a", "1"]], deps=[(2, 1)])
        assert "dependency (2, 1): worker 2 is not in this cluster" in str(e.value)
        h, rep = batch(r, 1, 2, [["SET", "a", "2"]])
        assert h["status"] == 0 and rep == [b"OK"]
    finally:
        r.close()
    info = a.info()
    assert info["dpr_batches_invalid"] == 1 and info["dpr_batches"] == 1


def test_pipelined_commands_after_a_refused_batch_run(cluster):
    """A refused batch's commands are consumed with it (the stream stays in
    step): a plain command pipelined after it runs, the batch's do not."""
    a = cluster.start_kv(1)
    wait_for(lambda: synced(a, 1), what="A synced")
    r = Raw(a.port, timeout=60)
    try:
        r.send(encode("DPR.BATCH", request_header(1, 1, 2, version_lb=2**64 - 1)) +
               encode("SET", "in", "1") + encode("SET", "in2", "1") +
               encode("SET", "after", "1"))
        err = r.read()
        assert isinstance(err, RespError) and "DPR.BATCH refused" in str(err)
        assert r.read() == b"OK"
    finally:
        r.close()
    c = a.client()
    assert c.get("in") is None and c.get("in2") is None and c.get("after") == b"1"


def test_forged_batch_then_sigkill_of_the_forged_shard(cluster):
    """The issue's sequence on the shard that got the batch: it must be able
    to restart and the other one to roll back."""
    a, b = two_shards(cluster)
    reply = send_forged(a, lb=2**64 - 1)
    session_commits(cluster, "x")
    world_line_change(cluster, victim=0)
    session_commits(cluster, "y")
    assert all(kv.alive() for kv in cluster.shards)
    assert isinstance(reply, RespError) and "refused" in str(reply)


@pytest.mark.parametrize("wl_delta", [0, -1, 1], ids=["same-world-line", "older", "newer"])
def test_batch_of_another_domain_is_refused_and_changes_nothing(cluster, wl_delta):
    """Issue 9. A worker runs only its own domain's batches: a header that
    names another domain (the id of another deployment's name) gets
    "-ERR DPR.BATCH refused" at once, whatever its world-line: not REFUSED
    with this domain's world-line (that would roll the other domain's
    session back) nor parked until this domain's finder reaches a newer one.
    Nothing changes (version, world-line, keys, the finder's cut), the
    connection stays usable, dpr_batches_invalid counts it, and sessions of
    the shard's own domain go on committing."""
    a, b = two_shards(cluster)
    before = a.info()
    wl = before["dpr_world_line"]
    cut_before = cluster.finder.sync()[2]
    r = Raw(a.port, timeout=60)
    try:
        with pytest.raises(RespError) as e:
            # a version lower bound and a dependency that would move the
            # worker if the batch ran
            batch(r, wl + wl_delta, 1, [["SET", "foreign", "1"], ["INCR", "n"]],
                  version_lb=before["dpr_version"] + 100000, deps=[(b.worker, 1)],
                  domain="other-deployment")
        err = str(e.value)
        assert r.call("PING") == b"PONG"
        # and the shard's own domain is served on the same connection
        h, rep = batch(r, wl, 2, [["GET", "foreign"]])
        assert h["status"] == 0 and rep == [None]
    finally:
        r.close()
    assert err.startswith("ERR DPR.BATCH refused: "), err
    assert ("domain %d: this worker belongs to domain %d"
            % (domain_id("other-deployment"), domain_id("default"))) in err, err
    after = a.info()
    for field in ("dpr_world_line", "dpr_cluster_max_version", "dpr_batches_refused",
                  "dpr_rollbacks"):
        assert after[field] == before[field], field
    assert after["dpr_version"] < before["dpr_version"] + 100000  # not lifted
    assert after["dpr_batches"] == before["dpr_batches"] + 1  # the GET
    assert after["dpr_batches_invalid"] == before["dpr_batches_invalid"] + 1
    c = a.client()
    assert c.get("foreign") is None and c.get("n") is None
    assert "DPR.BATCH refused: domain" in a.output()
    # the dependency on b was never folded in: nothing holds a's cut back,
    # and sessions of the default domain commit as before
    session_commits(cluster, "own-domain")
    cut = cluster.finder.sync()[2]
    assert all(cut[w] >= v for w, v in cut_before.items())
    assert a.info()["dpr_world_line"] == wl
