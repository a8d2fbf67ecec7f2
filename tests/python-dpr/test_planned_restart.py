"""Planned restarts (issue 13): a shard stopped with SIGTERM (what systemd
sends for `systemctl restart`, an update or a move) seals its version,
checkpoints it, reports it and tells the finder it leaves on purpose
(DPR.WORKER.LEAVE); started again, it resumes the same world-line. The
sessions see a short reconnect: no RollbackError, nothing lost. A crash
during the planned stop (SIGKILL before the finder took the LEAVE) is the
crash path: a rollback, nothing committed lost.

Real dpr-finder and dpr-kv processes on loopback (tests/lib/dprtest.py),
the Python client (python-dpr), sessions writing from threads.
"""
from __future__ import annotations

import signal
import threading
import time

import dpr
from dprtest import wait_for

NSESSIONS = 4


class Writer:
    """One session writing "p<i>:<seq>" = seq until told to stop; keeps
    every exception it met."""

    def __init__(self, client, i: int):
        self.client = client
        self.i = i
        self.errors: list[BaseException] = []
        self.rollbacks: list[dpr.RollbackError] = []
        self.last_seq = 0
        self.world_lines: set[int] = set()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def key(self, seq: int) -> str:
        return "p%d:%d" % (self.i, seq)

    def run(self) -> None:
        try:
            with self.client.session() as s:
                while not self.stop.is_set():
                    seq = s.last_seq + 1
                    try:
                        assert s.set(self.key(seq), seq) == b"OK"
                        assert s.last_seq == seq
                    except dpr.RollbackError as e:
                        self.rollbacks.append(e)
                    self.world_lines.add(s.world_line)
                    self.last_seq = s.last_seq
                s.wait_committed(timeout=30)
                self.world_lines.add(s.world_line)
        except BaseException as e:  # noqa: BLE001 (reported by the test)
            self.errors.append(e)


def _run_writers(cluster, during) -> list[Writer]:
    client = cluster.client(reconnect_timeout=20.0)
    writers = [Writer(client, i) for i in range(NSESSIONS)]
    for w in writers:
        w.thread.start()
    try:
        wait_for(lambda: all(w.last_seq >= 20 for w in writers), timeout=30,
                 what="every session wrote")
        during()
        marks = [w.last_seq for w in writers]
        wait_for(lambda: all(w.last_seq >= m + 20 for w, m in zip(writers, marks)),
                 timeout=30, what="every session wrote after the restart")
    finally:
        for w in writers:
            w.stop.set()
        for w in writers:
            w.thread.join(60)
    return writers


def _read_back(cluster, writers: list[Writer]) -> None:
    r = cluster.client().session()
    try:
        for w in writers:
            keys = [w.key(seq) for seq in range(1, w.last_seq + 1)]
            for k, seq in zip(keys, range(1, w.last_seq + 1)):
                assert r.get(k) == str(seq).encode(), "%s lost" % k
    finally:
        r.close()


def test_sigterm_and_start_keep_the_world_line(cluster):
    """kill -TERM one of 3 shards under 4 writing sessions, start it again
    (each shard in turn): no RollbackError, the world-line stays 1, every
    operation reads back."""
    cluster.start_shards(3)

    def restart():
        for i in (1, 0, 2):
            victim = cluster.shards[i]
            victim.kill(signal.SIGTERM)
            assert victim.wait_exit() == 0
            out = victim.output()
            assert "left the finder on purpose" in out, out[-2000:]
            time.sleep(0.3)  # a restart takes a moment: the sessions reconnect meanwhile
            kv = cluster.restart(i)
            assert "registered with finder %s in domain default: world-line 1," \
                % cluster.finder.address in kv.output()
            time.sleep(0.3)

    writers = _run_writers(cluster, restart)
    for w in writers:
        assert not w.errors, "session %d: %r" % (w.i, w.errors)
        assert not w.rollbacks, "session %d: %s" % (w.i, w.rollbacks[0])
        assert w.world_lines == {1}
    assert cluster.finder.sync()[0] == 1
    for kv in cluster.shards:
        info = kv.info()
        assert info["dpr_world_line"] == 1 and info["dpr_rollbacks"] == 0
        assert "restored checkpoint" in kv.output()
    _read_back(cluster, writers)


def test_planned_restart_survives_a_finder_restart(cluster):
    """The finder restarts while the shard is away: the mark is durable
    (the finder's state file), the shard still comes back without a
    rollback."""
    cluster.start_shards(2)
    client = cluster.client()
    with client.session() as s:
        for i in range(30):
            s.set("k%d" % i, i)
        s.wait_committed(timeout=10)
        kv = cluster.shards[0]
        kv.kill(signal.SIGTERM)
        assert kv.wait_exit() == 0
        finder = cluster.finder
        port = finder.port
        finder.kill(signal.SIGKILL)
        finder.wait_exit()
        cluster.start_finder("finder", port=port)
        assert cluster.finder.sync()[0] == 1
        cluster.restart(0)
        for i in range(30):
            assert s.get("k%d" % i) == str(i).encode()
        s.set("after", 1)
        s.wait_committed(timeout=10)
        assert s.world_line == 1 and not s.rollbacks
    assert cluster.finder.sync()[0] == 1


def test_crash_during_the_planned_stop_is_the_crash_path(cluster):
    """SIGTERM with an operation not yet in a checkpoint while the finder
    does not answer (stopped), then SIGKILL before the shard could send
    DPR.WORKER.LEAVE (its last report is not acknowledged): the restart is
    a crash restart (world-line 2), nothing committed is lost, and the
    last operation survived exactly when the session was not told it was
    lost."""
    cluster.start_shards(3)
    client = cluster.client(reconnect_timeout=20.0)
    with client.session() as s:
        for i in range(60):
            s.set("c%d" % i, i)
        s.wait_committed(timeout=10)
        committed = s.last_seq
        extra = next(k for k in ("x%d" % i for i in range(1000)) if client.shard_of(k) == 2)
        s.set(extra, "last")  # in shard 2's open version
        kv = cluster.shards[2]
        finder = cluster.finder
        finder.kill(signal.SIGSTOP)
        try:
            kv.kill(signal.SIGTERM)
            wait_for(lambda: "taking a last checkpoint and stopping" in kv.output(),
                     what="the shard stopping")
            time.sleep(0.5)
            assert kv.alive()  # waiting for the finder's answer to its last report
            kv.kill(signal.SIGKILL)
            kv.wait_exit()
        finally:
            finder.kill(signal.SIGCONT)
        assert "left the finder on purpose" not in kv.output()
        cluster.restart(2)
        wait_for(lambda: cluster.finder.sync()[0] == 2, what="world-line 2")
        s.commit_point()
        assert s.world_line == 2 and len(s.rollbacks) == 1
        for i in range(60):
            assert s.get("c%d" % i) == str(i).encode()
        assert not s.lost(committed)
        assert (s.get(extra) == b"last") == (not s.lost(committed + 1))


def test_batch_cut_off_by_a_planned_stop_is_sent_again(cluster, monkeypatch):
    """The race a planned stop leaves: a batch sent just as the stopping
    shard ends its stream (the session has not seen the end yet) gets no
    answer. The shard comes back as another process on the same world-line,
    so the batch never ran: the session sends it again, no RollbackError.
    The race is forced by a session that never notices a closed idle
    connection (check_alive always says open)."""
    import dpr.resp
    cluster.start_shards(2)
    client = cluster.client(reconnect_timeout=20.0)
    with client.session() as s:
        key = next(k for k in ("r%d" % i for i in range(1000)) if client.shard_of(k) == 0)
        assert s.set(key, "before") == b"OK"  # connected to shard 0
        monkeypatch.setattr(dpr.resp.Connection, "check_alive",
                            lambda self: self._sock is not None)
        kv = cluster.shards[0]
        kv.kill(signal.SIGTERM)
        assert kv.wait_exit() == 0

        def start_later():
            time.sleep(0.5)
            cluster.restart(0)

        t = threading.Thread(target=start_later)
        t.start()
        try:
            assert s.set(key, "after") == b"OK"  # on the closed connection first
        finally:
            t.join()
        assert s.last_seq == 2 and not s.rollbacks and s.world_line == 1
        assert s.get(key) == b"after"
        assert s.wait_committed(timeout=10) == s.last_seq
    assert cluster.finder.sync()[0] == 1


def test_the_finder_hears_leave_only_once_every_reply_is_written(cluster):
    """A batch that ran, whose reply a kill of the stopping shard cut off,
    would be sent again by its session to the next process on the same
    world-line: it would run twice. So the stopping shard tells the finder
    it leaves only once the replies of the batches that ran are written;
    before, a kill is the crash path. Forced with a client that pipelines
    batches reading 256 KiB values and reads nothing: their replies stay in
    the shard's buffers (the socket's are full) until it reads."""
    import socket

    import dpr._libdpr as L
    from dpr.resp import encode_command
    cluster.start_shards(1)
    client = cluster.client()
    value = "v" * (256 << 10)
    with client.session() as s:
        s.set("big", value)
        s.wait_committed(timeout=10)
    kv = cluster.shards[0]
    host, port = kv.address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    ran_before = kv_info(kv)["dpr_batches"]
    batches = b""
    for i in range(128):  # 32 MiB of replies: far more than the sockets hold
        hdr = L.RequestHdr()
        hdr.session.hi, hdr.session.lo = 7, 7
        hdr.domain = L.domain_id("default")
        hdr.world_line = 1
        hdr.batch_id = i + 1
        hdr.op_count = 1
        batches += (encode_command(("DPR.BATCH", L.encode_request(hdr, None))) +
                    encode_command(("GET", "big")))
    sock.sendall(batches)  # (the shard's socket takes them all)
    try:
        # some batches ran, and their replies wait: the count stays
        counts = []
        wait_for(lambda: counts.append(kv_info(kv)["dpr_batches"]) or
                 (len(counts) > 5 and counts[-1] == counts[-5] > ran_before),
                 what="batches that ran, their replies waiting")
        ran = counts[-1] - ran_before
        kv.kill(signal.SIGTERM)
        wait_for(lambda: "taking a last checkpoint and stopping" in kv.output(),
                 what="the shard stopping")
        time.sleep(1.5)  # (it would have left by now: nothing else holds it)
        assert kv.alive() and "left the finder on purpose" not in kv.output(), kv.output()
        # the client reads: the reply of every batch that ran comes, then the
        # end of the stream (the batches it had not read never ran), and the
        # shard leaves
        got = b""
        sock.settimeout(20)
        while True:
            b = sock.recv(1 << 20)
            if not b:
                break
            got += b
        assert got.count(b"$%d\r\n" % len(value)) == ran, (ran, len(got))
        assert kv.wait_exit() == 0
        assert "left the finder on purpose" in kv.output(), kv.output()
    finally:
        sock.close()
    assert cluster.finder.sync()[0] == 1


def kv_info(kv) -> dict:
    """INFO dpr of shard kv (redis-py parses it)."""
    import redis
    host, port = kv.address.rsplit(":", 1)
    r = redis.Redis(host=host, port=int(port), socket_timeout=5)
    try:
        return r.info("dpr")
    finally:
        r.close()
