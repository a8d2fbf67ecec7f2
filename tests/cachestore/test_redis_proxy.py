"""dpr-redis (cachestore/redis/, docs/dpr-redis.md): a real redis-server
behind the DPR proxy. What only the proxy does: Redis is its child,
reachable only through it (no TCP port, a Unix socket in a 0700
directory), their deaths, checkpoints as Redis' own RDB files, and the
commands refused because they would break the proxy. (The DPR behaviour
both implementations share is tested by running the client suites with
DPR_TEST_IMPL=dpr-redis.)"""
import os
import re
import signal
import stat
import time

import pytest
import redis

import dpr
import dprtest
from dprtest import REDIS_PROXY, Kv, NotifySocket, wait_for
from kvwire import Raw, RespError, batch, fill_until_refused
import promscrape
# the helpers of dpr-kv's disk-full test (small_tmpfs: conftest.py)
from test_kv_faults import commit, cut_of, fill, intact, load, quiet

pytestmark = pytest.mark.skipif(
    bool(dprtest.missing(REDIS_PROXY)) or not any(
        os.access(os.path.join(d, "redis-server"), os.X_OK)
        for d in os.environ.get("PATH", "").split(os.pathsep)),
    reason="needs %s (make) and redis-server (Debian's redis-server)" % REDIS_PROXY)


@pytest.fixture
def rp(cluster):
    return cluster.start_kv(1, interval_ms=50, program=REDIS_PROXY)


def redis_pid(shard) -> int:
    return int(shard.info()["dpr_redis_pid"])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead too
    with open("/proc/%d/stat" % pid) as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


def listening_tcp_inodes() -> set[str]:
    inodes = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(name) as f:
                next(f)
                for line in f:
                    fields = line.split()
                    if fields[3] == "0A":  # LISTEN
                        inodes.add(fields[9])
        except FileNotFoundError:
            pass
    return inodes


def socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def test_redis_reachable_only_through_the_proxy(rp):
    pid = redis_pid(rp)
    assert alive(pid)
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        # (Redis sets its process title: "redis-server unixsocket:...")
        assert f.read().split(b"\0")[0].split()[0].endswith(b"redis-server")
    # no TCP listener in the redis-server process
    assert not socket_inodes(pid) & listening_tcp_inodes()
    # its socket is in a directory only the owner can enter
    d = os.path.join(rp.state_dir, "redis")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_ISSOCK(os.stat(os.path.join(d, "redis.sock")).st_mode)
    assert stat.S_IMODE(os.stat(os.path.join(d, "redis.sock")).st_mode) & 0o077 == 0


def test_plain_commands_and_refused_ones(rp):
    c = rp.client()
    assert c.set("a", "1") is True
    assert c.get("a") == b"1"
    # Redis' commands beyond dpr-kv's pass through
    assert c.hset("h", "f", "v") == 1 and c.hget("h", "f") == b"v"
    assert c.lpush("l", "x", "y") == 2 and c.lrange("l", 0, -1) == [b"y", b"x"]
    # those that would change persistence, block the shared connection or
    # leave database 0 are refused; the proxy and Redis go on
    for cmd in (("CONFIG", "SET", "dir", "/tmp"), ("BGSAVE",), ("SAVE",), ("SHUTDOWN",),
                ("DEBUG", "SLEEP", "0"), ("SUBSCRIBE", "x"), ("BLPOP", "l", "0"),
                ("SELECT", "1"), ("MULTI",)):
        with pytest.raises(Exception, match="not allowed through dpr-redis|database 0 only"):
            c.execute_command(*cmd)
    assert c.execute_command("SELECT", "0") in (b"OK", True, "OK")
    assert c.get("a") == b"1"
    assert rp.alive()


def test_checkpoints_are_rdb_files_and_a_restart_restores_them(cluster, rp):
    client = dpr.Client(shards=[rp.address], finder=cluster.finder.address)
    with client.session() as s:
        for i in range(20):
            s.set("k%d" % i, i)
        s.wait_committed(timeout=10)
    rp.client().hset("plain", "f", "v")  # an untracked write, in the next checkpoint
    wait_for(lambda: int(rp.info()["dpr_durable_version"]) > 0
             and int(rp.info()["dpr_version"]) > int(rp.info()["dpr_durable_version"]),
             what="a checkpoint")
    files = [n for n in os.listdir(rp.state_dir) if n.startswith("ckpt-")]
    assert files and all(n.endswith(".rdb") for n in files), files
    with open(os.path.join(rp.state_dir, sorted(files)[-1]), "rb") as f:
        assert f.read(5) == b"REDIS"
    time.sleep(0.3)  # the plain write's checkpoint, committed (a single worker)
    old_redis = redis_pid(rp)
    rp.kill(signal.SIGKILL)
    # the child dies with the proxy (PR_SET_PDEATHSIG)
    wait_for(lambda: not alive(old_redis), timeout=5, what="redis-server to die with the proxy")
    again = cluster.add(rp.again())
    again.wait_ready()
    c = again.client()
    assert [c.get("k%d" % i) for i in range(20)] == [str(i).encode() for i in range(20)]
    assert c.hget("plain", "f") == b"v"
    assert not [n for n in os.listdir(again.state_dir) if n.endswith(".tmp")]


def test_redis_killed_stops_the_proxy(rp):
    pid = redis_pid(rp)
    os.kill(pid, signal.SIGKILL)
    rc = rp.wait_exit()
    assert rc != 0, "the proxy must exit non-zero so that systemd restarts the instance"
    out = rp.output()
    assert "redis-server exited" in out or "connection to redis-server broke" in out, out


def test_batch_refused_from_an_older_world_line_after_a_restart(cluster, rp):
    """A restart rolls the domain to a new world-line; the old session's next
    batch is refused and the session learns the rollback (the client's own
    logic, as with dpr-kv)."""
    client = dpr.Client(shards=[rp.address], finder=cluster.finder.address)
    s = client.session()
    s.set("x", 1)
    wl = s.world_line
    rp.kill(signal.SIGKILL)
    again = cluster.add(rp.again())
    again.wait_ready()
    assert int(again.info()["dpr_world_line"]) > wl
    with pytest.raises(dpr.RollbackError):
        s.set("y", 2)
    s.close()


def rss_kib(pid: int) -> int:
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


def test_a_client_that_does_not_read_is_not_buffered_without_bound(rp):
    """3000 GETs of a 100 KiB value (300 MiB of replies) pipelined by a
    client that reads nothing: the proxy stops reading it (at most 256 of
    its commands in flight, 1 MiB of replies queued), so its memory stays
    far below the replies' size; then every reply arrives, in order."""
    import socket
    value = b"v" * 100 * 1024
    assert rp.client().set("big", value) is True
    n = 3000
    s = socket.create_connection(("127.0.0.1", rp.port))
    try:
        s.settimeout(30)
        s.sendall(b"*2\r\n$3\r\nGET\r\n$3\r\nbig\r\n" * n + b"*1\r\n$4\r\nPING\r\n")
        time.sleep(1.0)
        assert rss_kib(rp.pid) < 120 * 1024, "the proxy buffers what the client does not read"
        want = (b"$%d\r\n" % len(value) + value + b"\r\n") * n + b"+PONG\r\n"
        got = bytearray()
        while len(got) < len(want):
            chunk = s.recv(1 << 20)
            assert chunk, "connection closed after %d bytes" % len(got)
            got += chunk
        assert bytes(got) == want
    finally:
        s.close()
    assert rp.alive()


# --- dpr-kv's settings: honoured, refused or warned, never ignored silently ---------

OOM_TEXT = "OOM command not allowed when used memory > 'maxmemory'."  # dpr-kv's too


def test_maxmemory_noeviction(cluster):
    """--maxmemory is redis-server's maxmemory with noeviction: above it,
    writes get the OOM error dpr-kv gives (test_kv_faults.py's
    test_maxmemory_noeviction, against dpr-redis), reads and DEL are served,
    in a batch only the write is refused, and freed memory takes writes
    again. The refusals are counted (INFO dpr, metrics)."""
    rp = cluster.start_kv(1, interval_ms=50, program=REDIS_PROXY,
                          args=["--maxmemory", "3mb", "--metrics-address", "127.0.0.1:0"])
    c = rp.client()
    mem = c.info("memory")  # Redis' own section, passed through
    assert mem["maxmemory"] == 3 * 1024 * 1024 and mem["maxmemory_policy"] == "noeviction"
    n, error = fill_until_refused(c)
    assert error == OOM_TEXT
    assert 1000 < n < 3200, n  # Redis counts its own overhead (about 1 MB) in used_memory
    # at the limit, Redis' used memory wavers with its query buffer (a write
    # may pass between two refused ones): free 100 keys and grow one string
    # by 1 MB with a short SETRANGE, so that it is well above the limit
    assert c.delete(*["k%d" % i for i in range(n - 100, n)]) == 100
    n -= 100
    assert c.setrange("big", 1 << 20, "x") == (1 << 20) + 1
    r = Raw(rp.port)
    for cmd in (["SET", "new", "1"], ["APPEND", "k1", "x"], ["MSET", "a", "1", "b", "2"]):
        reply = r.call(*cmd)
        assert isinstance(reply, RespError) and str(reply) == OOM_TEXT, cmd
    assert c.get("k1") == b"x" * 1000 and c.exists("k2") == 1
    hdr, replies = batch(r, int(rp.info()["dpr_world_line"]), 1,
                         [["SET", "z", "1"], ["GET", "k3"], ["DEL", "k4"]])
    assert hdr["status"] == 0
    assert isinstance(replies[0], RespError) and str(replies[0]) == OOM_TEXT
    assert replies[1:] == [b"x" * 1000, 1]
    r.close()
    assert c.get("z") is None
    assert int(rp.info()["dpr_writes_refused_oom"]) >= 5
    page = promscrape.scrape(promscrape.address(rp))
    assert page.value("dpr_kv_writes_refused_total", reason="oom") >= 5
    assert page.value("dpr_kv_memory_max_bytes") == 3 * 1024 * 1024
    assert c.delete("big", *["k%d" % i for i in range(n // 2)]) == n // 2  # k4 went already
    assert c.set("new", "1") and c.get("new") == b"1"


def test_settings_it_cannot_honour_are_refused_or_logged(cluster, tmp_path):
    """The agent writes dpr-kv's settings whatever the impl: the ones with
    no effect are each named in a warning at start-up (the TLS port is
    served as dpr-kv's: test_kv_tls.py with DPR_TEST_IMPL=dpr-redis)."""
    rp = cluster.start_kv(1, program=REDIS_PROXY, env={
        "DPR_KV_SEED_DIR": str(tmp_path / "seed"),
        "DPR_KV_REPLICA_SOCKET": str(tmp_path / "replica.sock"),
        "DPR_KV_CHECKPOINT_MODE": "log"})
    out = rp.output()
    for flag in ("--seed-dir", "--replica-socket", "--checkpoint-mode log"):
        assert re.search(r"%s.* ignored: " % re.escape(flag), out), (flag, out)
    assert rp.client().set("a", "1")  # and it serves
    rp.kill()
    # given nothing of that, it warns about nothing
    rp = cluster.start_kv(1, program=REDIS_PROXY)
    assert "ignored" not in rp.output() and "not supported" not in rp.output()


def test_max_clients(cluster):
    rp = cluster.start_kv(1, program=REDIS_PROXY, args=["--max-clients", "2"])
    a, b = Raw(rp.port), Raw(rp.port)
    assert a.call("PING") == b"PONG" and b.call("PING") == b"PONG"
    third = Raw(rp.port)
    reply = third.call("PING")
    assert isinstance(reply, RespError) and str(reply) == "ERR max number of clients reached"
    third.close()
    a.close()
    # (asked on a connection it has: a new one could be refused until the
    # proxy has seen the closes)
    wait_for(lambda: b"dpr_connected_clients:1\r\n" in b.call("INFO", "dpr"),
             what="only b left")
    c = Raw(rp.port)
    assert c.call("PING") == b"PONG"
    assert b"dpr_rejected_connections:1\r\n" in c.call("INFO", "dpr")
    b.close()
    c.close()


def test_metrics(cluster):
    """--metrics-address: dpr-kv's metric names for the proxy's counters,
    parsed with python3-prometheus-client, following the work."""
    rp = cluster.start_kv(1, interval_ms=50, program=REDIS_PROXY,
                          args=["--metrics-address", "127.0.0.1:0"])
    addr = promscrape.address(rp)
    first = promscrape.scrape(addr)
    info = first.families["dpr_kv_info"].samples[0].labels
    assert info["impl"] == "dpr-redis" and info["worker"] == "1"
    assert first.families["dpr_kv_commands"].type == "counter"
    c = rp.client()
    for i in range(100):
        c.set("k%d" % i, "v")
    r = Raw(rp.port)
    hdr, _ = batch(r, int(rp.info()["dpr_world_line"]), 1, [["SET", "b", "1"]])
    assert hdr["status"] == 0
    r.close()
    wait_for(lambda: int(rp.info()["dpr_durable_version"]) >= 1, what="a checkpoint")
    now = promscrape.scrape(addr)
    assert now.value("dpr_kv_commands_total") >= first.value("dpr_kv_commands_total") + 101
    assert now.value("dpr_kv_batches_total") == 1
    assert now.value("dpr_kv_checkpoints_total") > first.value("dpr_kv_checkpoints_total")
    assert now.value("dpr_kv_durable_version") >= 1
    assert now.value("dpr_kv_finder_connected") == 1
    assert now.value("dpr_kv_checkpoint_failures_total") == 0


# --- a checkpoint that cannot be written ------------------------------------------

def test_disk_full_refuses_writes_and_retries_until_space_returns(cluster, small_tmpfs):
    """BGSAVE fails (ENOSPC in the state directory, a small tmpfs). Before:
    the proxy exited 1. Now as dpr-kv: the version is not reported durable,
    the failure is logged once and counted, writes get MISCONF (Redis'
    stop-writes-on-bgsave-error) and reads are served, the next interval
    retries, and everything resumes once space returns; what was committed
    survives a kill -9 and restart."""
    state = small_tmpfs("20m")
    ns = NotifySocket()
    rp = cluster.add(Kv(cluster.finder.address, 1, state, os.path.join(cluster.base, "kv1.log"),
                        interval_ms=50, env=ns.env(), program=REDIS_PROXY))
    rp.wait_ready()
    c = rp.client()
    committed = load(c, "c", 3000)  # a checkpoint of ~3 MB
    commit(cluster, rp, c, ("SET", "marker", "1"))
    wait_for(lambda: quiet(rp), timeout=30, what="quiet")
    durable_before = int(rp.info()["dpr_durable_version"])
    filler = fill(state)

    c.set("after-full", "1")  # accepted: the save of its version fails
    wait_for(lambda: int(rp.info()["dpr_checkpoint_failures"]) >= 1, what="a failure")
    assert rp.alive()
    with pytest.raises(redis.ResponseError, match="^MISCONF"):
        c.set("refused", "1")
    with pytest.raises(redis.ResponseError, match="^MISCONF"):
        c.delete("c1")
    assert intact(c, committed) and c.get("after-full") == b"1"  # reads are served
    info = rp.info()
    assert info["dpr_checkpoint_status"] == "failing"
    assert "BGSAVE failed" in info["dpr_checkpoint_last_error"]
    assert int(info["dpr_durable_version"]) == durable_before  # not reported
    r = Raw(rp.port)
    hdr, replies = batch(r, int(info["dpr_world_line"]), 1,
                         [["SET", "b", "1"], ["GET", "marker"]])
    assert hdr["status"] == 0
    assert isinstance(replies[0], RespError) and str(replies[0]).startswith("MISCONF")
    assert replies[1] == b"1"
    r.close()
    ns.wait_status("refusing writes: checkpoints failing: ")
    f0 = int(rp.info()["dpr_checkpoint_failures"])
    wait_for(lambda: int(rp.info()["dpr_checkpoint_failures"]) >= f0 + 2, what="retries")
    assert int(rp.info()["dpr_durable_version"]) == durable_before
    assert int(rp.info()["dpr_writes_refused_misconf"]) >= 3
    # the failed saves leave nothing behind (a retry's BGSAVE child may be
    # writing its temp-<pid>.rdb at any moment: it goes when that save fails)
    wait_for(lambda: not [n for n in os.listdir(state)
                          if n.endswith(".tmp") or n.startswith("temp-")],
             what="no file left by the failed saves")
    cut_before = cut_of(cluster, 1)

    os.unlink(filler)
    wait_for(lambda: rp.info()["dpr_checkpoint_status"] == "ok", timeout=30, what="ok again")
    ns.wait_status("serving on ")
    assert c.set("later", "1")
    v = commit(cluster, rp, c, ("SET", "later2", "2"))
    assert v > cut_before
    out = rp.output()
    assert out.count("checkpoints failing: ") == 1
    assert out.count("checkpoints written again") == 1
    rp.kill()
    again = cluster.add(rp.again())
    again.wait_ready()
    c2 = again.client()
    assert intact(c2, committed)
    assert c2.get("after-full") == b"1" and c2.get("later2") == b"2"
    ns.close()


def test_planned_stop_while_checkpoints_fail_does_not_leave(cluster, small_tmpfs):
    """SIGTERM while saves fail: the last checkpoint is retried (once per
    interval, not in a loop), the finder is not told the worker left (what
    ran is not saved), and at --shutdown-timeout-ms the proxy exits 1; the
    next start restores the last committed checkpoint."""
    state = small_tmpfs("20m")
    rp = cluster.add(Kv(cluster.finder.address, 1, state, os.path.join(cluster.base, "kv1.log"),
                        interval_ms=100, program=REDIS_PROXY,
                        args=["--shutdown-timeout-ms", "1500"]))
    rp.wait_ready()
    c = rp.client()
    committed = load(c, "c", 1000)
    commit(cluster, rp, c, ("SET", "marker", "1"))
    wait_for(lambda: quiet(rp), timeout=30, what="quiet")
    filler = fill(state)
    c.set("after-full", "1")
    wait_for(lambda: int(rp.info()["dpr_checkpoint_failures"]) >= 1, what="a failure")
    rp.kill(signal.SIGTERM)
    assert rp.wait_exit() == 1
    out = rp.output()
    assert "shutdown timed out" in out
    assert "left on purpose" not in out
    # at most one attempt per 100 ms interval in the 1.5 s (and the ones before)
    assert 1 <= out.count("Background saving error") <= 40, out
    os.unlink(filler)
    again = cluster.add(rp.again())
    again.wait_ready()
    c2 = again.client()
    assert intact(c2, committed) and c2.get("marker") == b"1"


def test_moved_comes_before_misconf_and_imports_are_refused_like_writes(cluster, small_tmpfs):
    """While saves fail, as in dpr-kv: a key another shard owns still gets
    -MOVED (the client goes to the owner), a key of this shard -MISCONF,
    and DPR.IMPORT is refused like a write (nothing is set)."""
    from dpr.route import shard_of
    state = small_tmpfs("20m")
    rp = cluster.add(Kv(cluster.finder.address, 1, state, os.path.join(cluster.base, "kv1.log"),
                        interval_ms=50, program=REDIS_PROXY))
    rp.wait_ready()
    c = rp.client()
    other = "127.0.0.1:%d" % dprtest.free_port()  # a second shard, never asked
    assert c.execute_command("DPR.LAYOUT", "SET", "1", "0", rp.address, other)
    names = ["k%d" % i for i in range(40)]
    mine = [k for k in names if shard_of(k, 2) == 0]
    foreign = [k for k in names if shard_of(k, 2) == 1]
    assert c.set(mine[0], "x" * (3 << 20))  # a checkpoint of 3 MB
    wait_for(lambda: quiet(rp), timeout=30, what="quiet")
    reserve = os.path.join(state, "reserve")  # room for a layout file, not a checkpoint
    with open(reserve, "wb") as f:
        f.write(b"\0" * 65536)
    filler = fill(state)
    c.set(mine[1], "1")  # accepted: the save of its version fails
    wait_for(lambda: rp.info()["dpr_checkpoint_status"] == "failing", what="a failure")
    with pytest.raises(redis.ResponseError, match="^MOVED 1 %s 1$" % re.escape(other)):
        c.set(foreign[0], "1")
    with pytest.raises(redis.ResponseError, match="^MISCONF"):
        c.set(mine[2], "1")
    os.unlink(reserve)

    def prepare():  # (a failing BGSAVE's temporary file may hold the room a moment)
        try:
            return c.execute_command("DPR.LAYOUT", "PREPARE", "2", "0", rp.address, other)
        except redis.ResponseError as e:
            assert "No space left" in str(e), e
            return False
    wait_for(prepare, what="a resize prepared")
    assert rp.info()["dpr_checkpoint_status"] == "failing"
    with pytest.raises(redis.ResponseError, match="^MISCONF"):
        c.execute_command("DPR.IMPORT", "2", mine[3], "v")
    assert c.execute_command("DPR.LAYOUT", "ABORT", "2") == 0
    assert c.exists(mine[3]) == 0
    assert int(rp.info()["dpr_writes_refused_misconf"]) == 2
    os.unlink(filler)
    wait_for(lambda: rp.info()["dpr_checkpoint_status"] == "ok", timeout=30, what="ok again")
    assert c.set(mine[2], "1")


def test_layout_keys_of_every_kind_and_a_resize_of_every_type(cluster):
    """Under a layout the proxy finds each command's keys from Redis' own
    command table (key specs): fixed positions, counted keys (EVAL,
    ZUNIONSTORE, LMPOP), keys after a keyword, subcommands; the first
    foreign key gets dpr-kv's MOVED, before anything runs. SORT, whose
    keys Redis cannot describe, is refused. A resize moves hashes, lists,
    sets and sorted sets with their TTLs (DUMP/RESTORE), and dpr-kv's plain
    string values import too."""
    import redis
    from dpr.route import shard_of
    shards = [cluster.start_kv(11 + i, port=dprtest.free_port(), interval_ms=50,
                               program=REDIS_PROXY) for i in range(2)]
    dprtest.set_layout(shards)
    addrs = [s.address for s in shards]
    names = ["k%d" % i for i in range(40)]
    mine = [k for k in names if shard_of(k, 2) == 0]
    other = [k for k in names if shard_of(k, 2) == 1]
    c0 = shards[0].client()
    moved = "MOVED 1 %s 1" % addrs[1]
    for cmd in (("GET", other[0]), ("MSET", mine[0], "1", other[0], "2"),
                ("EVAL", "return 1", "2", mine[0], other[0]),
                ("ZUNIONSTORE", mine[0], "2", mine[1], other[0]),
                ("LMPOP", "2", mine[0], other[0], "LEFT"),
                ("OBJECT", "ENCODING", other[0]),
                ("GEORADIUS", mine[0], "0", "0", "1", "m", "STORE", other[0])):
        with pytest.raises(redis.ResponseError) as e:
            c0.execute_command(*cmd)
        assert str(e.value) == moved, cmd
    assert c0.dbsize() == 0 and shards[0].info()["dpr_layout_moved"] == 7
    # the arguments that are not keys are not checked
    assert c0.execute_command("EVAL", "return KEYS[1]", "1", mine[0], other[0]) == \
        mine[0].encode()
    assert c0.execute_command("MSET", mine[0], other[0]) is True
    with pytest.raises(redis.ResponseError, match="^command 'sort' can name keys"):
        c0.execute_command("SORT", mine[1], "STORE", mine[2])

    # one key of each type, with and without a TTL, on shard 0; a resize
    # to one shard, shard 1, moves them all
    k = mine
    c0.hset(k[1], mapping={"f": "v", "g": "w"})
    c0.rpush(k[2], "a", "b", "c")
    c0.sadd(k[3], "x", "y")
    c0.zadd(k[4], {"m": 1.5})
    c0.set(k[5], "ttl", px=600000)
    c0.hset(k[6], "f", "v")
    c0.pexpire(k[6], 500000)
    dprtest.resize_shards(shards, [shards[1]], 2)
    c1 = shards[1].client()
    assert c1.hgetall(k[1]) == {b"f": b"v", b"g": b"w"}
    assert c1.lrange(k[2], 0, -1) == [b"a", b"b", b"c"]
    assert c1.smembers(k[3]) == {b"x", b"y"}
    assert c1.zrange(k[4], 0, -1, withscores=True) == [(b"m", 1.5)]
    assert c1.get(k[0]) == other[0].encode()
    assert 500000 < c1.pttl(k[5]) <= 600000
    assert 400000 < c1.pttl(k[6]) <= 500000
    assert c1.ttl(k[1]) == -1
    assert c0.dbsize() == 0 and shards[0].info()["dpr_purged_keys"] == 7
    assert shards[0].info()["dpr_migrate_keys"] == 7
    # a plain string value, as dpr-kv pushes it
    shards[1].client().execute_command("DPR.LAYOUT", "PREPARE", "3", "0", addrs[1])
    assert c1.execute_command("DPR.IMPORT", "3", "plain", "value") == 1
    assert c1.execute_command("DPR.LAYOUT", "COMMIT", "3") == 0
    assert c1.get("plain") == b"value"
