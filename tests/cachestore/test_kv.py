"""dpr-kv over TCP: Redis compatibility, bad input, limits, checkpoints,
recovery, rollback, DPR batches, shutdown.

Every test starts its own dpr-finder and dpr-kv processes (port 0,
temporary directories) and kills them by PID at the end. Nothing asserts on
time: waits poll for a state with a generous timeout.
"""
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest
import redis

from dprtest import KV, Proc, free_port, wait_for
from kvwire import (Raw, RespError, batch, domain_id, encode, parse_response_header,
                    request_header, run_versioned)

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


@pytest.fixture
def redis_server(tmp_path, procs):
    """A plain redis-server without persistence, to compare replies with."""
    port = free_port()
    procs.start([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", str(tmp_path)],
                str(tmp_path / "redis-server.log")).wait_ready(port=port)
    c = redis.Redis(port=port, socket_timeout=10)
    wait_for(lambda: _pings(c), what="redis-server")
    return port


def _pings(c):
    try:
        return c.ping()
    except redis.ConnectionError:
        return False


def cut_of(cluster, worker):
    return cluster.finder.sync()[2].get(worker, 0)


def write_durably(cluster, client, cmd):
    """Runs cmd on worker 1 and waits until the cut covers it."""
    v = run_versioned(client, cmd)
    wait_for(lambda: cut_of(cluster, 1) >= v, what="cut")
    return v


# --- Redis compatibility -------------------------------------------------------

def test_redis_cli_set_get(kv):
    out = subprocess.run([REDIS_CLI, "-p", str(kv.port), "SET", "a", "1"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == b"OK"
    out = subprocess.run([REDIS_CLI, "-p", str(kv.port), "GET", "a"],
                         capture_output=True, timeout=30)
    assert out.returncode == 0 and out.stdout.strip() == b"1"


# Each command's raw reply must equal redis-server's, errors included.
COMPAT_COMMANDS = [
    ["PING"], ["PING", "hello"], ["PING", "a", "b"], ["ECHO", "x\r\ny\0z"], ["ECHO"],
    ["GET", "missing"], ["SET", "k", "v"], ["GET", "k"], ["SET", "k", "v2", "NX"],
    ["SET", "k", "v3", "XX"], ["GET", "k"], ["SET", "k2", "v", "XX"], ["GET", "k2"],
    ["SET", "k", "v4", "GET"], ["SET", "new", "v", "GET"], ["SET", "k", "v", "NX", "XX"],
    ["SET", "k", "v", "FOO"], ["SET", "k"], ["SET", "", "empty key"], ["GET", ""],
    ["DEL", "k", "k2", "missing"], ["DEL"], ["EXISTS", "new", "new", "missing"],
    ["INCR", "c"], ["INCRBY", "c", "10"], ["DECR", "c"], ["DECRBY", "c", "5"],
    ["INCRBY", "c", "abc"], ["INCRBY", "c", " 1"], ["INCRBY", "c", "+1"],
    ["INCRBY", "c", "007"], ["INCRBY", "c", "-0"], ["INCRBY", "c", "-3"],
    ["SET", "s", "hello"], ["INCR", "s"], ["INCRBY", "c", "9223372036854775807"],
    ["SET", "big", "9223372036854775807"], ["INCR", "big"], ["GET", "big"],
    ["SET", "small", "-9223372036854775808"], ["DECR", "small"],
    ["DECRBY", "c", "-9223372036854775808"], ["INCRBY", "c", "99999999999999999999"],
    ["APPEND", "s", " world"], ["APPEND", "newapp", "x"], ["GET", "s"],
    ["STRLEN", "s"], ["STRLEN", "missing"], ["MGET", "s", "missing", "c"],
    ["MSET", "a", "1", "b", "2"], ["MSET", "a"], ["MSET", "a", "1", "b"],
    ["MGET", "a", "b"], ["MGET"], ["DBSIZE"], ["DBSIZE", "x"],
    ["FOO", "bar", "baz"], ["FOO"], ["GET"], ["GET", "a", "b"], ["SELECT", "0"],
    ["SELECT", "abc"], ["INCR", "a", "b"], ["set", "MiXeD", "case"], ["gEt", "MiXeD"],
    ["DEL", "a", "b", "c", "s", "new", "newapp", "big", "small", "", "MiXeD"],
    ["DBSIZE"],
]


def test_replies_match_redis(kv, redis_server):
    ours, theirs = Raw(kv.port), Raw(redis_server)
    try:
        for cmd in COMPAT_COMMANDS:
            a, b = ours.call(*cmd), theirs.call(*cmd)
            if isinstance(a, RespError) and isinstance(b, RespError):
                assert str(a) == str(b), cmd
            else:
                assert a == b, cmd
    finally:
        ours.close()
        theirs.close()


def test_redis_py_every_command(kv):
    c = kv.client()
    assert c.ping() is True
    assert c.echo("hi") == b"hi"
    assert c.set("k", "v") is True
    assert c.get("k") == b"v"
    assert c.set("k", "w", nx=True) is None
    assert c.set("k", "w", xx=True) is True
    assert c.set("k", "x", get=True) == b"w"
    assert c.exists("k", "k", "nope") == 2
    assert c.incr("n") == 1 and c.incrby("n", 41) == 42
    assert c.decr("n") == 41 and c.decrby("n", 40) == 1
    assert c.append("k", "yz") == 3 and c.strlen("k") == 3
    assert c.mset({"a": "1", "b": b"\x00\r\n\xff"}) is True
    assert c.mget("a", "b", "zz") == [b"1", b"\x00\r\n\xff", None]
    assert c.dbsize() == 4
    assert c.delete("a", "b", "zz") == 2
    assert c.dbsize() == 2
    big = os.urandom(1 << 20)
    assert c.set("big", big) and c.get("big") == big
    with pytest.raises(redis.ResponseError, match="not an integer"):
        c.incr("k")
    with pytest.raises(redis.ResponseError, match="expiry"):
        c.set("t", "1", ex=10)
    with pytest.raises(redis.ResponseError, match="unknown command"):
        c.execute_command("HSET", "h", "f", "v")
    assert c.config_get("save") == {"save": ""}
    assert c.config_get("appendonly") == {"appendonly": "no"}
    assert not c.execute_command("COMMAND")
    assert c.command_count() > 10
    info = c.info()
    assert info["redis_version"] and info["connected_clients"] >= 1
    assert info["db0"]["keys"] == 3
    pipe = c.pipeline(transaction=False)
    for i in range(1000):
        pipe.set("p%d" % i, i)
    pipe.get("p999")
    assert pipe.execute()[-1] == b"999"


def test_quit_and_inline_commands(kv):
    r = Raw(kv.port)
    r.send(b"PING\r\nSET inl v1\r\n  GET   inl  \r\nECHO\r\n\r\n")
    assert r.read() == b"PONG"
    assert r.read() == b"OK"
    assert r.read() == b"v1"
    assert "wrong number of arguments" in str(r.read())
    assert r.call("QUIT") == b"OK"
    assert r.closed_by_peer()
    r.close()


# --- bad input and limits --------------------------------------------------------

@pytest.mark.parametrize("garbage, message", [
    (b"*2\r\n$3\r\nGET\r\n+a\r\n", "expected '$'"),
    (b"*x\r\n", "invalid multibulk length"),
    (b"*2\r\n$3\r\nGET\r\n$-5\r\n", "invalid bulk length"),
    (b"*1\r\n$3\r\nGETXX\r\n", "not followed by CRLF"),
    (b"*1\r\n$99999999999999999999999\r\n", "invalid bulk length"),
    (b"*9999999999\r\n", "invalid multibulk length"),
    (b"A" * 70000, "too big inline request"),
])
def test_malformed_resp_gets_error_and_close(kv, garbage, message):
    r = Raw(kv.port)
    r.send(b"*1\r\n$4\r\nPING\r\n" + garbage)
    assert r.read() == b"PONG"
    err = r.read()
    assert isinstance(err, RespError) and str(err).startswith("ERR Protocol error")
    assert message in str(err)
    assert r.closed_by_peer()
    r.close()
    assert kv.client().ping()  # the server is fine


def test_random_garbage_never_kills_the_server(kv):
    import random
    rnd = random.Random(7)
    for _ in range(200):
        s = socket.create_connection(("127.0.0.1", kv.port), timeout=10)
        try:
            s.sendall(bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))))
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(65536):
                pass
        except OSError:
            pass
        finally:
            s.close()
    assert kv.alive() and kv.client().ping()


def test_max_clients(cluster):
    kv = cluster.start_kv(1, args=["--max-clients", "3"])
    conns = [Raw(kv.port) for _ in range(3)]
    for c in conns:
        assert c.call("PING") == b"PONG"
    extra = Raw(kv.port)
    err = extra.read()
    assert isinstance(err, RespError) and "max number of clients" in str(err)
    assert extra.closed_by_peer()
    extra.close()
    conns.pop().close()
    wait_for(lambda: _ping_raw(kv.port), what="a free client slot")
    for c in conns:
        c.close()


def _ping_raw(port):
    r = Raw(port)
    try:
        return r.call("PING") == b"PONG"
    except (EOFError, OSError):
        return False
    finally:
        r.close()


def test_max_request_bytes(cluster):
    kv = cluster.start_kv(1, args=["--max-request-bytes", "4096"])
    r = Raw(kv.port)
    assert r.call("SET", "ok", "x" * 3000) == b"OK"
    r.send(encode("SET", "big", "x" * 5000))
    err = r.read()
    assert isinstance(err, RespError) and "maximum request size" in str(err)
    assert r.closed_by_peer()
    r.close()
    # also when the size comes in small pieces
    r = Raw(kv.port)
    r.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4090\r\n" + b"y" * 100)
    err = r.read()
    assert isinstance(err, RespError) and "maximum request size" in str(err)
    r.close()
    assert kv.client().get("ok") == b"x" * 3000
    assert kv.client().get("big") is None


def test_backpressure_client_that_does_not_read(kv):
    """A client pipelining big replies without reading them does not make
    the server buffer without bound; it is served once it reads again."""
    c = kv.client()
    c.set("v", "x" * 100000)
    s = socket.create_connection(("127.0.0.1", kv.port), timeout=10)
    n = 2000  # 200 MB of replies if all were buffered
    s.sendall(encode("GET", "v") * n)
    time.sleep(0.5)
    assert c.ping()
    info = c.info("memory")
    assert info["used_memory"] < 150 * 1024 * 1024
    got, want = 0, n * (len(b"$100000\r\n") + 100000 + 2)
    while got < want:
        chunk = s.recv(1 << 20)
        assert chunk
        got += len(chunk)
    s.close()


# --- INFO and checkpoints ----------------------------------------------------------

def test_info_dpr_section(kv):
    info = kv.info()
    for key in ("dpr_worker_id", "dpr_version", "dpr_world_line", "dpr_cut_version",
                "dpr_last_checkpoint_time_ms", "dpr_last_checkpoint_duration_ms",
                "dpr_checkpoints_pending", "dpr_durable_version", "dpr_finder_connected"):
        assert key in info, key
    assert info["dpr_worker_id"] == 1
    assert info["dpr_domain"] == "default"
    assert info["dpr_domain_id"] == domain_id("default")
    assert info["dpr_world_line"] == 1
    assert info["dpr_version"] >= 1
    wait_for(lambda: kv.info()["dpr_finder_connected"] == 1, what="finder link")


def test_checkpoints_appear_and_cut_advances(cluster, kv):
    c = kv.client()
    assert kv.info()["dpr_cut_version"] == 0
    seen = 0
    for round_ in range(5):
        v = run_versioned(c, ("SET", "round", round_))
        wait_for(lambda: cut_of(cluster, 1) >= v, what="cut >= %d" % v)
        now = kv.info()["dpr_cut_version"]
        assert now >= seen          # the cut INFO shows never goes back
        seen = now
    info = wait_for(lambda: (lambda i: i if i["dpr_cut_version"] >= v else None)
                    (kv.info()), what="INFO shows the cut")
    assert info["dpr_checkpoints_total"] >= 5
    assert info["dpr_last_checkpoint_time_ms"] > 0
    # idle: everything is durable and in the cut; older files are deleted
    wait_for(lambda: kv.checkpoints() == [cut_of(cluster, 1)], what="one checkpoint left")
    with open(os.path.join(kv.state_dir, "ckpt-%d.kv" % kv.checkpoints()[0]), "rb") as f:
        head = f.read(56)
    assert head[:8] == b"DPRKVCKP"


def test_idle_server_takes_no_checkpoints(kv):
    kv.client().set("x", "1")
    wait_for(lambda: kv.info()["dpr_checkpoints_total"] >= 1, what="first checkpoint")
    # once its first commit is seen, a worker takes one more checkpoint that
    # records it (dpr_committed_on_disk, docs/dpr-kv.md); then it is idle
    wait_for(lambda: (lambda i: i["dpr_checkpoints_pending"] == 0 and
                      i["dpr_committed_on_disk"] > 0)(kv.info()), what="idle")
    before = kv.info()["dpr_checkpoints_total"]
    for _ in range(20):  # reads do not dirty the store
        kv.client().get("x")
    time.sleep(0.5)
    assert kv.info()["dpr_checkpoints_total"] == before


# --- recovery ----------------------------------------------------------------------

def test_kill9_restart_keeps_committed_data(cluster):
    kv = cluster.start_kv(1)
    c = kv.client()
    committed = ["a%d" % i for i in range(300)]
    for k in committed[:-1]:
        c.set(k, k)
    v = run_versioned(c, ("SET", committed[-1], committed[-1]))
    wait_for(lambda: cut_of(cluster, 1) >= v, what="cut covers the first keys")
    tail = ["b%d" % i for i in range(300)]
    for k in tail:
        c.set(k, k)
    kv.kill(signal.SIGKILL)
    kv.wait_exit()
    kv2 = cluster.start_kv(1)
    info = kv2.info()
    assert info["dpr_world_line"] == 2
    c2 = kv2.client()
    assert c2.mget(committed) == [k.encode() for k in committed]
    # what survives of the tail is a prefix of it (one client, in order)
    present = [x is not None for x in c2.mget(tail)]
    n = present.count(True)
    assert present == [True] * n + [False] * (len(tail) - n)
    assert c2.dbsize() == len(committed) + n
    assert info["dpr_restored_version"] >= v


def test_corrupt_checkpoint_refuses_to_start(cluster):
    kv = cluster.start_kv(1)
    mset = ["MSET"] + [x for i in range(200) for x in ("k%d" % i, "v" * 50)]
    write_durably(cluster, kv.client(), mset)
    kv.kill(signal.SIGKILL)
    kv.wait_exit()
    cut = cut_of(cluster, 1)
    path = os.path.join(kv.state_dir, "ckpt-%d.kv" %
                        max(x for x in kv.checkpoints() if x <= cut))
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    kv2 = cluster.start_kv(1, wait=False)
    assert kv2.wait_exit() == 78  # damaged: a restart cannot mend it (EX_CONFIG)
    out = kv2.output()
    assert "damaged" in out and os.path.basename(path) in out
    assert "listening on" not in out
    # truncated: same
    with open(path, "r+b") as f:
        f.truncate(40)
    kv3 = cluster.start_kv(1, wait=False)
    assert kv3.wait_exit() == 78
    assert "truncated" in kv3.output()


def test_missing_checkpoint_refuses_to_start(cluster):
    kv = cluster.start_kv(1)
    write_durably(cluster, kv.client(), ("SET", "a", "1"))
    kv.kill(signal.SIGKILL)
    kv.wait_exit()
    for n in os.listdir(kv.state_dir):
        if n.startswith("ckpt-"):
            os.unlink(os.path.join(kv.state_dir, n))
    kv2 = cluster.start_kv(1, wait=False)
    assert kv2.wait_exit() == 1
    assert "no checkpoint at or below" in kv2.output()


def test_new_finder_with_old_data_needs_reset(cluster):
    kv = cluster.start_kv(1)
    write_durably(cluster, kv.client(), ("SET", "precious", "1"))
    kv.kill(signal.SIGTERM)
    assert kv.wait_exit() == 0
    fresh = cluster.start_finder("finder2")  # knows nothing of worker 1
    kv2 = cluster.start_kv(1, wait=False, finder=fresh)
    assert kv2.wait_exit() == 1
    assert "--reset" in kv2.output()
    assert kv.checkpoints()  # nothing deleted
    kv3 = cluster.start_kv(1, args=["--reset"], finder=fresh)
    assert kv3.client().dbsize() == 0
    assert kv3.info()["dpr_world_line"] >= 1


def test_sigterm_takes_final_checkpoint(cluster):
    kv = cluster.start_kv(1, args=["--checkpoint-interval-ms", "600000"])
    c = kv.client()
    c.set("last", "words")
    assert kv.checkpoints() == []
    version = kv.info()["dpr_version"]
    kv.kill(signal.SIGTERM)
    assert kv.wait_exit() == 0
    assert "stopped: last checkpoint" in kv.output()
    assert kv.checkpoints() == [version]
    assert cut_of(cluster, 1) == version  # reported (one worker: in the cut)
    kv2 = cluster.start_kv(1)
    assert kv2.client().get("last") == b"words"


def test_env_configuration(cluster):
    env = {"DPR_KV_LISTEN": "127.0.0.1:0",
           "DPR_KV_FINDER": "127.0.0.1:%d" % cluster.finder.port,
           "DPR_KV_WORKER": "7", "DPR_KV_CHECKPOINT_INTERVAL_MS": "50",
           "STATE_DIRECTORY": cluster.kv_dir(7)}
    p = cluster.add(Proc([KV], os.path.join(cluster.base, "env.log"), env=env))
    p.wait_ready("listening on ")
    info = redis.Redis(port=p.port, socket_timeout=10).info("dpr")
    assert info["dpr_worker_id"] == 7 and info["dpr_checkpoint_interval_ms"] == 50
    assert os.path.isdir(cluster.kv_dir(7))
    # a flag beats its variable
    bad = subprocess.run([KV, "--worker", "x"], capture_output=True, timeout=30)
    assert bad.returncode == 2 and b"invalid value" in bad.stderr
    bad = subprocess.run([KV, "--finder", "127.0.0.1:1"], capture_output=True, timeout=30,
                         env={"PATH": os.environ.get("PATH", "")})
    assert bad.returncode == 2 and b"--worker" in bad.stderr
    ok = subprocess.run([KV, "--help"], capture_output=True, timeout=30)
    assert ok.returncode == 0 and b"--checkpoint-interval-ms" in ok.stdout
    assert b"--domain NAME" in ok.stdout and b"DPR_KV_DOMAIN" in ok.stdout


def test_systemd_notifications(cluster, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(15)
    try:
        kv = cluster.start_kv(1, env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
        seen = []
        while not (any("READY=1" in m for m in seen) and
                   sum("WATCHDOG=1" in m for m in seen) >= 2 and
                   any(m.startswith("STATUS=serving") for m in seen)):
            seen.append(sock.recv(4096).decode())
        assert any("domain default, world-line 1" in m for m in seen
                   if m.startswith("STATUS="))
        kv.kill(signal.SIGTERM)
        assert kv.wait_exit() == 0
        while not any("STOPPING=1" in m for m in seen):
            seen.append(sock.recv(4096).decode())
    finally:
        sock.close()


# --- failures while running -----------------------------------------------------------

def _kv_processes(state_dir):
    """PIDs of dpr-kv processes (servers and their checkpoint children) on state_dir."""
    pids = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"dpr-kv") and state_dir.encode() in argv:
            pids.append(int(pid))
    return pids


def test_kill9_during_checkpoint(cluster):
    kv = cluster.start_kv(1)
    c = kv.client()
    blob = "x" * 1000
    for i in range(0, 100000, 5000):
        c.mset({"k%d" % j: blob for j in range(i, i + 5000)})
    # An idle server does not checkpoint its (empty) open version, so the
    # version to wait for must hold a write: INCR and INFO in one round trip
    # run in the same loop turn, so "v" is the version the INCR ran in.
    v = run_versioned(c, ("INCR", "loaded"))
    # 100 MB checkpoints are slow when the disk is busy (and under ASan)
    try:
        wait_for(lambda: cut_of(cluster, 1) >= v, timeout=60, what="cut")
    except AssertionError as e:
        raise AssertionError("%s\n--- dpr-kv log ---\n%s" % (e, kv.output()[-4000:]))
    def in_progress():
        c.incr("more")
        return kv.info()["dpr_checkpoints_pending"] > 0
    wait_for(in_progress, timeout=30, what="a checkpoint in progress")
    kv.kill(signal.SIGKILL)
    kv.wait_exit()
    # the checkpoint child dies with the server
    wait_for(lambda: _kv_processes(kv.state_dir) == [], what="no orphaned checkpoint child")
    kv2 = cluster.start_kv(1)
    assert kv2.client().dbsize() >= 100000
    assert not [n for n in os.listdir(kv.state_dir) if n.endswith(".tmp")]
    assert _kv_processes(kv.state_dir) == [kv2.pid]  # restored, idle: no child


def test_finder_restart_reports_are_resent(cluster):
    port = free_port()
    cluster.finder.kill()
    f = cluster.start_finder("finder-fixed", port=port)
    kv = cluster.start_kv(1)
    c = kv.client()
    c.set("a", "1")
    wait_for(lambda: cut_of(cluster, 1) >= 1, what="first cut")
    f.kill(signal.SIGKILL)
    f.wait_exit()
    v = run_versioned(c, ("SET", "b", "2"))
    wait_for(lambda: kv.info()["dpr_durable_version"] >= v, what="checkpoint while finder down")
    wait_for(lambda: kv.info()["dpr_finder_connected"] == 0, what="link down")
    assert kv.info()["dpr_reports_unacked"] >= 1
    assert c.get("a") == b"1"  # serving goes on
    f2 = cluster.start_finder("finder-fixed", port=port)
    assert f2.port == port
    wait_for(lambda: cut_of(cluster, 1) >= v, what="resent reports reach the finder")
    wait_for(lambda: kv.info()["dpr_reports_unacked"] == 0, what="acked")
    assert kv.info()["dpr_world_line"] == 1  # a finder restart is no rollback


def test_failed_checkpoint_is_retried_and_server_keeps_serving(cluster):
    kv = cluster.start_kv(1)
    c = kv.client()
    v = kv.info()["dpr_version"]
    # directories where the temporary files would go make every write fail
    blockers = [os.path.join(kv.state_dir, "ckpt-%d.kv.tmp" % x) for x in range(v, v + 4)]
    for b in blockers:
        os.mkdir(b)
    c.set("during", "failure")
    wait_for(lambda: kv.info()["dpr_checkpoint_failures"] >= 2, what="failures")
    info = kv.info()
    assert "ckpt-" in info["dpr_checkpoint_last_error"]
    assert info["dpr_checkpoints_pending"] == 1  # one at a time while failing
    # reads are served; writes refused like Redis' stop-writes-on-bgsave-error
    assert c.get("during") == b"failure"
    with pytest.raises(redis.ResponseError, match="^MISCONF"):
        c.set("still", "serving")
    assert cut_of(cluster, 1) < v
    for b in blockers:
        os.rmdir(b)
    wait_for(lambda: cut_of(cluster, 1) >= v, what="retried checkpoint reported")
    wait_for(lambda: kv.info()["dpr_checkpoint_status"] == "ok", what="status ok")
    assert c.set("still", "serving")
    assert kv.alive()
    assert "retrying" in kv.output()


def test_checkpoint_child_killed_is_fatal(cluster):
    """A sealed version whose writer died can never become durable: the
    server exits 1 (systemd restarts it; the cluster recovers). Full mode:
    its checkpoints are written by children (log mode has none)."""
    kv = cluster.start_kv(1, args=["--checkpoint-mode", "full"])
    v = kv.info()["dpr_version"]
    for x in range(v, v + 4):
        os.mkdir(os.path.join(kv.state_dir, "ckpt-%d.kv.tmp" % x))
    kv.client().set("a", "1")
    wait_for(lambda: kv.info()["dpr_checkpoint_failures"] >= 1, what="a stuck child")
    children = [p for p in _kv_processes(kv.state_dir) if p != kv.pid]
    assert len(children) == 1
    os.kill(children[0], signal.SIGKILL)
    assert kv.wait_exit() == 1
    assert "died (killed by signal 9)" in kv.output()


# --- DPR batches --------------------------------------------------------------------

def test_dpr_batch_executes_and_reports_version(kv):
    r = Raw(kv.port)
    wl = kv.info()["dpr_world_line"]
    hdr, replies = batch(r, wl, 1, [["SET", "a", "1"], ["GET", "a"], ["INCR", "n"],
                                    ["GET", "missing"], ["NOPE"]])
    assert hdr["status"] == 0 and hdr["batch_id"] == 1 and hdr["op_count"] == 5
    assert hdr["world_line"] == wl and len(hdr["versions"]) == 1
    assert hdr["versions"][0] == kv.info()["dpr_version"]
    assert replies[:4] == [b"OK", b"1", 1, None]
    assert isinstance(replies[4], RespError)
    # plain commands and batches interleave in one write, replies in order
    data = encode("SET", "p", "1") + encode("DPR.BATCH", request_header(wl, 2, 2)) + \
        encode("GET", "p") + encode("QUIT") + encode("GET", "p")
    r.send(data)
    assert r.read() == b"OK"
    h2, rep2 = r.read()
    assert parse_response_header(h2)["batch_id"] == 2
    assert rep2[0] == b"1" and "not allowed inside DPR.BATCH" in str(rep2[1])
    assert r.read() == b"1"
    r.close()


def test_dpr_batch_arriving_byte_by_byte(kv):
    r = Raw(kv.port)
    wl = kv.info()["dpr_world_line"]
    data = encode("DPR.BATCH", request_header(wl, 9, 2)) + encode("SET", "s", "x" * 100) + \
        encode("STRLEN", "s")
    for i in range(len(data)):
        r.send(data[i:i + 1])
    h, replies = r.read()
    assert parse_response_header(h)["status"] == 0 and replies == [b"OK", 100]
    r.close()


def test_dpr_batch_version_lower_bound_seals_early(cluster, kv):
    r = Raw(kv.port)
    wl = kv.info()["dpr_world_line"]
    h1, _ = batch(r, wl, 1, [["SET", "x", "1"]])
    v1 = h1["versions"][0]
    # the open version holds a batch: a higher lower bound must seal it
    h2, rep = batch(r, wl, 2, [["GET", "x"]], version_lb=v1 + 10)
    assert h2["versions"][0] >= v1 + 10 and rep == [b"1"]
    wait_for(lambda: cut_of(cluster, 1) >= v1, what="sealed version durable")
    # an empty open version is just relabelled upwards
    wait_for(lambda: kv.info()["dpr_checkpoints_pending"] == 0, what="idle")
    v = kv.info()["dpr_version"]
    h3, _ = batch(r, wl, 3, [["GET", "x"]], version_lb=v + 100)
    assert h3["versions"][0] == v + 100
    r.close()


def test_dependencies_hold_back_the_cut(cluster):
    """A batch on worker 2 that depends on worker 1's version a: worker 2's
    version must not enter the cut before worker 1's a is durable."""
    w1, w2 = cluster.start_kv(1), cluster.start_kv(2)
    r1, r2 = Raw(w1.port), Raw(w2.port)
    a = w1.info()["dpr_version"]
    blockers = [os.path.join(w1.state_dir, "ckpt-%d.kv.tmp" % x) for x in range(a, a + 4)]
    for b in blockers:
        os.mkdir(b)
    h1, _ = batch(r1, 1, 1, [["SET", "x", "1"]])
    assert h1["versions"] == [a]
    h2, _ = batch(r2, 1, 1, [["SET", "y", "1"]], deps=[(1, a)])
    b = h2["versions"][0]
    assert b >= a
    wait_for(lambda: (lambda i: i["dpr_durable_version"] >= b and i["dpr_reports_unacked"] == 0)
             (w2.info()), what="worker 2's checkpoint reported")
    assert cut_of(cluster, 2) < b  # held back by the dependency
    for x in blockers:
        os.rmdir(x)
    wait_for(lambda: cut_of(cluster, 2) >= b, what="cut after worker 1 is durable")
    assert cut_of(cluster, 1) >= a
    r1.close()
    r2.close()


def test_dpr_batch_malformed_header_closes(kv):
    r = Raw(kv.port)
    err = r.call("DPR.BATCH", b"\x02\x51garbage")
    assert isinstance(err, RespError) and "malformed request header" in str(err)
    assert r.closed_by_peer()
    r.close()
    # a header without the domain (format 1, from before domains), and one
    # with domain id 0 (no name has it): malformed too, nothing runs
    for hdr in (request_header(1, 1, 1, fmt=1), request_header(1, 1, 1, domain=0)):
        r = Raw(kv.port)
        r.send(encode("DPR.BATCH", hdr) + encode("SET", "old", "1"))
        err = r.read()
        assert isinstance(err, RespError) and "malformed request header" in str(err), err
        if hdr[0] == 1:
            assert "format 1: this shard reads format 2" in str(err), err
        assert r.closed_by_peer()
        r.close()
    assert kv.client().get("old") is None


def test_dpr_batch_too_large(cluster):
    kv = cluster.start_kv(1, args=["--max-request-bytes", "4096"])
    r = Raw(kv.port)
    wl = kv.info()["dpr_world_line"]
    r.send(encode("DPR.BATCH", request_header(wl, 1, 3)) +
           b"".join(encode("SET", "k%d" % i, "v" * 2000) for i in range(3)))
    err = r.read()
    assert isinstance(err, RespError) and "larger than the maximum" in str(err)
    assert r.closed_by_peer()
    r.close()
    assert kv.client().dbsize() == 0  # nothing of the batch ran


def test_dpr_batch_from_the_future_is_an_error(kv):
    r = Raw(kv.port, timeout=30)
    wl = kv.info()["dpr_world_line"]
    r.send(encode("DPR.BATCH", request_header(wl + 5, 1, 1)) + encode("GET", "x"))
    err = r.read()
    assert isinstance(err, RespError) and "newer than the finder" in str(err)
    assert r.call("PING") == b"PONG"
    r.close()


def test_dpr_batch_with_old_world_line_is_refused(kv):
    r = Raw(kv.port)
    r.send(encode("DPR.BATCH", request_header(0, 5, 2)) + encode("SET", "no", "1") +
           encode("GET", "no"))
    h, replies = r.read()
    h = parse_response_header(h)
    assert h["status"] == 1 and h["world_line"] == 1 and h["versions"] == []
    assert replies == []
    assert kv.client().get("no") is None
    r.close()


# --- rollback -------------------------------------------------------------------------

def test_live_rollback_when_another_worker_restarts(cluster):
    w1 = cluster.start_kv(1)
    # worker 2 checkpoints rarely, but asks the finder often
    w2 = cluster.start_kv(2, args=["--checkpoint-interval-ms", "600000",
                                   "--sync-interval-ms", "50"])
    c2 = w2.client()
    c2.set("uncommitted", "1")
    r = Raw(w2.port)
    hdr, _ = batch(r, 1, 1, [["SET", "batch", "1"]])
    assert hdr["status"] == 0
    w1.client().set("x", "1")
    wait_for(lambda: cut_of(cluster, 1) >= 1, what="worker 1 durable")
    w1.kill(signal.SIGKILL)
    w1.wait_exit()
    w1b = cluster.start_kv(1)
    assert w1b.info()["dpr_world_line"] == 2
    # worker 2 learns the new world-line and rolls back to its cut (0): empty
    wait_for(lambda: w2.info()["dpr_world_line"] == 2, what="worker 2 rolled back")
    info = w2.info()
    assert info["dpr_rollbacks"] == 1
    assert c2.dbsize() == 0 and c2.get("uncommitted") is None
    assert "rolling back" in w2.output()
    # a batch from the old world-line is refused with the new one
    hdr, replies = batch(r, 1, 2, [["GET", "batch"]])
    assert hdr["status"] == 1 and hdr["world_line"] == 2 and replies == []
    hdr, replies = batch(r, 2, 3, [["SET", "after", "1"], ["GET", "after"]])
    assert hdr["status"] == 0 and replies == [b"OK", b"1"]
    assert hdr["versions"][0] > 1
    r.close()
    # worker 1 restored its committed data
    assert w1b.client().get("x") == b"1"


def test_live_rollback_keeps_the_cut_and_a_prefix(cluster):
    w1 = cluster.start_kv(1)
    w2 = cluster.start_kv(2, args=["--sync-interval-ms", "20"])
    c2 = w2.client()
    first = ["f%d" % i for i in range(200)]
    for k in first:
        c2.set(k, k)
    v = w2.info()["dpr_version"]
    wait_for(lambda: cut_of(cluster, 2) >= v, what="cut covers the first keys")
    later = ["l%d" % i for i in range(2000)]
    pipe = c2.pipeline(transaction=False)
    for k in later:
        pipe.set(k, k)
    pipe.execute()
    w1.kill(signal.SIGKILL)
    w1.wait_exit()
    cluster.start_kv(1)
    wait_for(lambda: w2.info()["dpr_world_line"] == 2, what="rollback")
    assert c2.mget(first) == [k.encode() for k in first]
    present = [x is not None for x in c2.mget(later)]
    n = present.count(True)
    assert present == [True] * n + [False] * (len(later) - n)
    # the store still serves, on the new world-line
    assert c2.set("after", "rollback") and c2.get("after") == b"rollback"


# --- memory ---------------------------------------------------------------------------

def test_memory_per_key_not_worse_than_redis(kv, redis_server):
    n = 100000

    def load(port):
        c = redis.Redis(port=port, socket_timeout=30)
        before = c.info("memory")["used_memory"]
        pipe = c.pipeline(transaction=False)
        for i in range(n):
            pipe.set("key:%012d" % i, "value-%06d" % i)
            if i % 5000 == 4999:
                pipe.execute()
        pipe.execute()
        assert c.dbsize() == n
        return (c.info("memory")["used_memory"] - before) / n

    ours, theirs = load(kv.port), load(redis_server)
    print("bytes per key: dpr-kv %.1f, redis %.1f" % (ours, theirs))
    assert ours <= theirs
