"""dpr-redis (cachestore/redis/, docs/dpr-redis.md): a real redis-server
behind the DPR proxy. What only the proxy does: Redis is its child,
reachable only through it (no TCP port, a Unix socket in a 0700
directory), their deaths, checkpoints as Redis' own RDB files, and the
commands refused because they would break the proxy. (The DPR behaviour
both implementations share is tested by running the client suites with
DPR_TEST_IMPL=dpr-redis.)"""
import os
import signal
import stat
import time

import pytest

import dpr
import dprtest
from dprtest import REDIS_PROXY, wait_for

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
