"""Server tests for dpr-finder over TCP.

Each test starts its own dpr-finder (port 0, temporary state directory)
with tests/lib/dprtest.py, which reads the chosen port from its stderr and
kills it by PID at the end. The sequential scenario is driven only by
redis-cli; other tests use raw sockets or python3-redis.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest
import redis

import dprtest
from dprtest import FINDER

REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"


TEST_TIMEOUT = 120


@pytest.fixture(autouse=True)
def deadline():
    """Fails a test that hangs (python3-pytest has no timeout plugin here)."""
    def expired(signum, frame):
        raise AssertionError("test took longer than %d s" % TEST_TIMEOUT)

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(TEST_TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


@pytest.fixture
def tmpdir_path():
    path = tempfile.mkdtemp(prefix="dpr-finder-test-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def finders(procs, tmpdir_path):
    """Factory: finders(state_dir=None, *args, ready=True) -> dprtest.Finder
    (port 0, log finder-N.log; killed by PID at the end, which fails on
    sanitizer reports in the logs)."""
    dprtest.need(FINDER)
    counter = [0]

    def start(state_dir=None, *extra, ready=True):
        counter[0] += 1
        state_dir = state_dir or os.path.join(tmpdir_path, "state")
        log = os.path.join(tmpdir_path, "finder-%d.log" % counter[0])
        f = procs.add(dprtest.Finder(state_dir, log, args=extra))
        return f.wait_ready() if ready else f

    return start


def drop(client):
    """Really closes a redis-py client's connections (close() only returns
    them to the pool)."""
    client.connection_pool.disconnect()


def cli(port, *args):
    """redis-cli -p PORT ARGS...; returns the non-empty output lines."""
    out = subprocess.run([REDIS_CLI, "-p", str(port), *[str(a) for a in args]],
                         stdin=subprocess.DEVNULL, capture_output=True, timeout=10,
                         check=True)
    return [l for l in out.stdout.decode().splitlines() if l.strip()]


def cli_ints(port, *args):
    return [int(x) for x in cli(port, *args)]


def sync(client):
    wl, maxv, cut = client.execute_command("DPR.SYNC", "default")
    return wl, maxv, dict(zip(cut[0::2], cut[1::2]))


def state_bytes(state_dir):
    with open(os.path.join(state_dir, "finder.state"), "rb") as f:
        return f.read()


A, B, C = 1, 2, 3


def test_sequential_scenario_with_redis_cli(finders):
    f = finders()
    p = f.port
    assert cli(p, "PING") == ["PONG"]
    # a fresh finder has no domain: the first DPR.WORKER.ADD makes one
    assert cli(p, "DPR.SYNC", "default") == ["ERR unknown domain 'default'"]
    assert cli(p, "DPR.DOMAINS") == []
    for w in (A, B, C):
        assert cli_ints(p, "DPR.WORKER.ADD", "default", w) == [1, 0]
    assert cli(p, "DPR.DOMAINS") == ["default"]
    # every registered worker is listed, 0 while nothing of it is committed
    assert cli_ints(p, "DPR.SYNC", "default") == [1, 0, A, 0, B, 0, C, 0]
    # A1
    assert cli(p, "DPR.REPORT", "default", 1, A, 1) == ["OK"]
    assert cli_ints(p, "DPR.SYNC", "default") == [1, 1, A, 1, B, 0, C, 0]
    # B1 <- A1
    assert cli(p, "DPR.REPORT", "default", 1, B, 1, A, 1) == ["OK"]
    assert cli_ints(p, "DPR.SYNC", "default") == [1, 1, A, 1, B, 1, C, 0]
    # A2 <- {A1, B2}: B2 is not durable yet
    assert cli(p, "DPR.REPORT", "default", 1, A, 2, A, 1, B, 2) == ["OK"]
    assert cli_ints(p, "DPR.SYNC", "default") == [1, 2, A, 1, B, 1, C, 0]
    # B2 <- {B1, C2}: C2 is not durable yet
    assert cli(p, "dpr.report", "default", 1, B, 2, B, 1, C, 2) == ["OK"]
    assert cli_ints(p, "DPR.SYNC", "default") == [1, 2, A, 1, B, 1, C, 0]
    # C2 <- A2 closes the cycle: everything commits
    assert cli(p, "DPR.REPORT", "default", 1, C, 2, A, 2) == ["OK"]
    assert cli_ints(p, "DPR.SYNC", "default") == [1, 2, A, 2, B, 2, C, 2]
    # bad input through redis-cli: errors, nothing changes
    assert cli(p, "DPR.REPORT", "default", 1, A, "x")[0].startswith("ERR invalid version")
    assert cli(p, "DPR.WORKER.ADD", "default", "-1")[0].startswith("ERR invalid worker id")
    assert cli(p, "NOSUCH")[0].startswith("ERR unknown command")
    assert cli_ints(p, "DPR.SYNC", "default") == [1, 2, A, 2, B, 2, C, 2]


def run_scenario(c):
    for w in (A, B, C):
        assert c.execute_command("DPR.WORKER.ADD", "default", w) == [1, 0]
    c.execute_command("DPR.REPORT", "default", 1, A, 1)
    c.execute_command("DPR.REPORT", "default", 1, B, 1, A, 1)
    c.execute_command("DPR.REPORT", "default", 1, A, 2, A, 1, B, 2)
    c.execute_command("DPR.REPORT", "default", 1, B, 2, B, 1, C, 2)
    c.execute_command("DPR.REPORT", "default", 1, C, 2, A, 2)
    c.execute_command("DPR.REPORT", "default", 1, A, 3, A, 2)  # commits at once: A2 is committed


def test_kill9_restart_keeps_world_line_and_cut(finders, tmpdir_path):
    f = finders()
    c = f.client()
    run_scenario(c)
    before = sync(c)
    assert before[0] == 1
    assert before[2][A] >= 2 and before[2][B] == 2 and before[2][C] == 2
    drop(c)
    f.kill(signal.SIGKILL)
    assert f.wait_exit() == -signal.SIGKILL

    g = finders(f.state_dir)
    c = g.client()
    after = sync(c)
    assert after[0] == before[0]
    assert after[2] == before[2]
    # the restarted finder keeps working: B3, C3 durable -> min rule commits 3
    c.execute_command("DPR.REPORT", "default", 1, B, 3)
    c.execute_command("DPR.REPORT", "default", 1, C, 3)
    wl, _, cut = sync(c)
    assert wl == 1
    assert all(cut[w] >= before[2][w] for w in (A, B, C))  # never goes back
    assert cut == {A: 3, B: 3, C: 3}
    drop(c)


def test_readd_bumps_world_line_and_survives_kill9(finders):
    f = finders()
    c = f.client()
    run_scenario(c)
    wl, _, cut = sync(c)
    assert wl == 1
    # worker B crashed and registers again: world-line 2, restore its cut
    assert c.execute_command("DPR.WORKER.ADD", "default", B) == [2, cut[B]]
    wl2, _, cut2 = sync(c)
    assert wl2 == 2
    assert cut2 == cut
    # a report from world-line 1 above the cut is stale
    with pytest.raises(redis.ResponseError, match="STALE world-line 2 is current"):
        c.execute_command("DPR.REPORT", "default", 1, A, 9)
    # the surviving prefix of world-line 1 is the cut everybody rolled back to
    prefix = c.execute_command("DPR.PREFIX", "default", 1)
    assert dict(zip(prefix[0::2], prefix[1::2])) == cut
    with pytest.raises(redis.ResponseError, match="has not ended"):
        c.execute_command("DPR.PREFIX", "default", 2)
    drop(c)
    f.kill(signal.SIGKILL)
    f.wait_exit()

    g = finders(f.state_dir)
    c = g.client()
    assert sync(c)[0] == 2
    assert sync(c)[2] == cut
    assert c.execute_command("DPR.PREFIX", "default", 1) == prefix
    # the new world-line goes on
    c.execute_command("DPR.REPORT", "default", 2, B, cut[B] + 1)
    drop(c)


def test_report_naming_an_unregistered_worker_is_refused(finders, tmpdir_path):
    """Issue 8: a report whose dependency names a worker that never
    registered was accepted and held the reporter's cut back while any
    worker was idle. It is refused, changes nothing (state file included),
    and the reporter's next report commits as usual."""
    f = finders()
    c = f.client()
    for w in (A, B):
        c.execute_command("DPR.WORKER.ADD", "default", w)
    c.execute_command("DPR.REPORT", "default", 1, A, 1)
    c.execute_command("DPR.REPORT", "default", 1, B, 1)
    before, state = sync(c), state_bytes(f.state_dir)
    assert before == (1, 1, {A: 1, B: 1})
    with pytest.raises(redis.ResponseError,
                       match=r"^dependency \(999, 5\) is on worker 999, which domain 'default' "
                             r"never registered: report of version 5 refused$"):
        c.execute_command("DPR.REPORT", "default", 1, A, 5, B, 1, 999, 5)
    assert sync(c) == before and state_bytes(f.state_dir) == state
    # a worker of another domain is as unknown to this one
    assert c.execute_command("DPR.WORKER.ADD", "shop", 999) == [1, 0]
    c.execute_command("DPR.REPORT", "shop", 1, 999, 5)
    with pytest.raises(redis.ResponseError, match=r"which domain 'default' never registered"):
        c.execute_command("DPR.REPORT", "default", 1, A, 5, B, 1, 999, 5)
    assert sync(c) == before
    # B stays idle; A's next report (without the bogus dependency) commits
    # through the exact rule
    assert c.execute_command("DPR.REPORT", "default", 1, A, 6, B, 1) == b"OK"
    assert sync(c)[2] == {A: 6, B: 1}
    # a removed worker stays known: dependencies on it are still accepted
    c.execute_command("DPR.WORKER.ADD", "default", C)
    c.execute_command("DPR.REPORT", "default", 1, C, 1)
    assert c.execute_command("DPR.WORKER.REMOVE", "default", C) == b"OK"
    assert c.execute_command("DPR.REPORT", "default", 1, A, 7, C, 1) == b"OK"
    assert sync(c)[2] == {A: 7, B: 1}
    drop(c)


def test_token_guards_readd_and_remove(finders):
    """Issue 8: DPR.WORKER.ADD of a live worker from anyone who reached the
    finder forced a rollback of the whole cluster. A worker registered with
    a token is re-registered (a new world-line) or removed only with that
    token; a refusal names the worker, never the token, changes nothing,
    survives a restart of the finder, and is logged."""
    f = finders()
    c = f.client()
    secret = "0123456789abcdef0123456789abcdef"
    assert c.execute_command("DPR.WORKER.ADD", "default", A, secret) == [1, 0]
    assert c.execute_command("DPR.WORKER.ADD", "default", B) == [1, 0]  # no token: as before
    c.execute_command("DPR.REPORT", "default", 1, A, 1)
    c.execute_command("DPR.REPORT", "default", 1, B, 1)
    c.execute_command("DPR.REPORT", "default", 1, A, 2, B, 1)
    before = sync(c)
    assert before[0] == 1 and before[2].get(A) == 2 and before[2].get(B) == 1
    saved = state_bytes(f.state_dir)
    refused_add = "worker 1 is registered by its owner: DPR.WORKER.ADD needs its token"
    refused_remove = "worker 1 is registered by its owner: DPR.WORKER.REMOVE needs its token"
    for args in ((), ("wrong",), (secret[:-1],), (secret + "0",), (secret.upper(),)):
        with pytest.raises(redis.ResponseError) as e:
            c.execute_command("DPR.WORKER.ADD", "default", A, *args)
        assert str(e.value) == refused_add
        with pytest.raises(redis.ResponseError) as e:
            c.execute_command("DPR.WORKER.REMOVE", "default", A, *args)
        assert str(e.value) == refused_remove
    # redis-cli sees the same
    assert cli(f.port, "DPR.WORKER.ADD", "default", A) == ["ERR " + refused_add]
    with pytest.raises(redis.ResponseError, match="^invalid token: expected 1 to 128"):
        c.execute_command("DPR.WORKER.ADD", "default", A, "two words")
    assert sync(c) == before                      # no new world-line, nothing lost
    assert c.execute_command("DPR.REPORT", "default", 1, A, 3) == b"OK"   # still on world-line 1
    assert state_bytes(f.state_dir) != saved      # (that report was saved)
    log = f.output()
    assert "refused: " + refused_add in log
    assert secret not in log and "wrong" not in log

    # the token survives a restart of the finder (kill -9: from the state file)
    drop(c)
    f.kill(signal.SIGKILL)
    f.wait_exit()
    g = finders(f.state_dir)
    c = g.client()
    with pytest.raises(redis.ResponseError, match="registered by its owner"):
        c.execute_command("DPR.WORKER.ADD", "default", A)
    assert sync(c)[0] == 1
    assert secret.encode() in state_bytes(f.state_dir)  # (0600, in a 0700 directory)
    assert os.stat(os.path.join(f.state_dir, "finder.state")).st_mode & 0o077 == 0

    # the owner's token: the crash-restart path, a new world-line, restore the cut
    wl, _, cut = sync(c)
    assert c.execute_command("DPR.WORKER.ADD", "default", A, secret) == [2, cut[A]]
    assert sync(c)[0] == 2
    # a worker registered without a token takes the one it presents next
    assert c.execute_command("DPR.WORKER.ADD", "default", B, "b-token") == [3, cut[B]]
    with pytest.raises(redis.ResponseError, match="worker 2 is registered by its owner"):
        c.execute_command("DPR.WORKER.ADD", "default", B)
    assert sync(c)[0] == 3
    # removal with the token
    assert c.execute_command("DPR.WORKER.REMOVE", "default", A, secret) == b"OK"
    with pytest.raises(redis.ResponseError, match="unknown worker 1"):
        c.execute_command("DPR.WORKER.REMOVE", "default", A, secret)
    drop(c)


def test_auth_grants_reports_of_a_worker_with_a_token(finders):
    """Fencing: a worker registered with a token reports only on a
    connection that holds its grant (DPR.AUTH with the token, or its own
    DPR.WORKER.ADD with the token), checked at every report. A refusal
    changes nothing, never shows a token, and is logged. Workers registered
    without a token report anywhere, as before. (A change of the token, the
    owner's C call when it moves the worker, is tested in test_cmd.c: it
    makes the old connection's reports "-FENCED ...".)"""
    f = finders()
    owner = f.client()
    secret = "fedcba9876543210fedcba9876543210"
    assert owner.execute_command("DPR.WORKER.ADD", "default", A, secret) == [1, 0]
    assert owner.execute_command("DPR.WORKER.ADD", "default", B) == [1, 0]
    assert owner.execute_command("DPR.REPORT", "default", 1, A, 1) == b"OK"  # its grant

    other = f.client()
    before = sync(other)
    saved = state_bytes(f.state_dir)
    no_auth = ("worker 1 is registered by its owner: DPR.REPORT needs DPR.AUTH with its "
               "token on this connection")
    with pytest.raises(redis.ResponseError) as e:
        other.execute_command("DPR.REPORT", "default", 1, A, 2)
    assert str(e.value) == no_auth
    for wrong in ("wrong", secret[:-1], secret + "0", secret.upper()):
        with pytest.raises(redis.ResponseError) as e:
            other.execute_command("DPR.AUTH", "default", A, wrong)
        assert str(e.value).startswith("FENCED worker 1 is registered with another token: ")
    with pytest.raises(redis.ResponseError) as e:
        other.execute_command("DPR.AUTH", "default", B, secret)
    assert str(e.value).startswith("FENCED worker 2 is registered without a token: ")
    with pytest.raises(redis.ResponseError) as e:
        other.execute_command("DPR.AUTH", "default", 99, secret)
    assert str(e.value) == "unknown worker 99"
    with pytest.raises(redis.ResponseError, match="^unknown domain 'nope'"):
        other.execute_command("DPR.AUTH", "nope", A, secret)
    with pytest.raises(redis.ResponseError, match="^invalid token: expected 1 to 128"):
        other.execute_command("DPR.AUTH", "default", A, "two words")
    with pytest.raises(redis.ResponseError, match="^wrong number of arguments for 'DPR.AUTH'"):
        other.execute_command("DPR.AUTH", "default", A)
    with pytest.raises(redis.ResponseError) as e:  # still no grant
        other.execute_command("DPR.REPORT", "default", 1, A, 2)
    assert str(e.value) == no_auth
    assert sync(other) == before and state_bytes(f.state_dir) == saved
    # a worker without a token reports on any connection
    assert other.execute_command("DPR.REPORT", "default", 1, B, 1) == b"OK"
    # with the token the connection acts for the owner
    assert other.execute_command("DPR.AUTH", "default", A, secret) == b"OK"
    assert other.execute_command("DPR.REPORT", "default", 1, A, 2) == b"OK"
    assert sync(other)[1] == 2
    log = f.output()
    assert "refused: " + no_auth in log
    assert "refused: FENCED worker 1 is registered with another token" in log
    assert secret not in log and secret[:-1] not in log and "wrong" not in log

    # a grant belongs to its connection: a new one (here after a restart of
    # the finder, which keeps the token) authenticates again; pipelined
    # DPR.AUTH and DPR.REPORT are answered in order
    drop(owner)
    drop(other)
    f.kill(signal.SIGKILL)
    f.wait_exit()
    g = finders(f.state_dir)
    c = g.client()
    with pytest.raises(redis.ResponseError) as e:
        c.execute_command("DPR.REPORT", "default", 1, A, 3)
    assert str(e.value) == no_auth
    p = c.pipeline(transaction=False)
    p.execute_command("DPR.AUTH", "default", A, secret)
    p.execute_command("DPR.REPORT", "default", 1, A, 3)
    assert p.execute() == [b"OK", b"OK"]
    assert cli(g.port, "DPR.REPORT", "default", 1, A, 4) == ["ERR " + no_auth]
    # a registration of a known worker (the restart path) grants too
    wl, _, cut = sync(c)
    fresh = g.client()
    assert fresh.execute_command("DPR.WORKER.ADD", "default", A, secret) == [2, cut[A]]
    assert fresh.execute_command("DPR.REPORT", "default", 2, A, 4) == b"OK"
    drop(c)
    drop(fresh)


def raw_exchange(port, data, timeout=3.0):
    """Sends data, returns (reply bytes, closed_by_server)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            if data:
                s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return b"", True
        got = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                return got, False
            except ConnectionResetError:
                return got, True
            if not chunk:
                return got, True
            got += chunk
            s.settimeout(max(0.05, deadline - time.monotonic()))
            if got.endswith(b"\r\n") and got.startswith(b"-"):
                # an error reply; see whether the server closes afterwards
                s.settimeout(1.0)
        return got, False
    finally:
        s.close()


def bulk(*args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


GARBAGE = {
    "random-binary": random.Random(1).randbytes(8192),
    "random-binary-2": bytes(range(256)) * 8,
    "inline-command": b"PING\r\n",
    "broken-bulk-length": b"*2\r\n$4\r\nPING\r\n$abc\r\n",
    "negative-bulk-length": b"*2\r\n$4\r\nPING\r\n$-7\r\n",
    "null-bulk": b"*2\r\n$4\r\nPING\r\n$-1\r\n",
    "huge-bulk-length": b"*2\r\n$4\r\nPING\r\n$99999999999\r\n",
    "overflowing-bulk-length": b"*1\r\n$999999999999999999999999999\r\n",
    "huge-array-count": b"*99999999999\r\n",
    "int-truncating-array-count": b"*4294967297\r\n$4\r\nPING\r\n",
    "negative-array-count": b"*-5\r\n",
    "nested-array": b"*2\r\n*1\r\n$4\r\nPING\r\n$1\r\nx\r\n",
    "integer-argument": b"*2\r\n$4\r\nPING\r\n:1\r\n",
    "status-argument": b"*1\r\n+DPR.SYNC\r\n",
    "top-level-bulk": b"$8\r\nDPR.SYNC\r\n",
    "bad-line-end": b"*1\r\n$8\r\nDPR.SYNC\n\n",
    "bulk-without-crlf": b"*1\r\n$8\r\nDPR.SYNCxx",
    "valid-then-garbage": bulk("DPR.WORKER.ADD", "default", "77")[:-3] + b"\x00\xff" * 10,
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_leaves_server_running_and_state_unchanged(finders, name):
    f = finders()
    c = f.client()
    run_scenario(c)
    before = sync(c)
    file_before = state_bytes(f.state_dir)

    reply, closed = raw_exchange(f.port, GARBAGE[name])
    assert reply.startswith(b"-") or closed or reply == b"", reply
    if reply.startswith(b"-ERR"):
        assert reply.endswith(b"\r\n")

    assert f.proc.poll() is None, f.output()
    assert c.ping()
    assert sync(c) == before
    assert state_bytes(f.state_dir) == file_before  # nothing was even saved
    drop(c)


def test_protocol_errors_are_answered_then_closed(finders):
    f = finders()
    reply, closed = raw_exchange(f.port, b"*1\r\n$4\r\nPING\r\n*2\r\n*1\r\n")
    assert reply.startswith(b"+PONG\r\n-ERR Protocol error")
    assert closed
    reply, closed = raw_exchange(f.port, b"*99999999999\r\n")
    assert b"too many arguments" in reply and closed
    reply, closed = raw_exchange(f.port, b"*2\r\n$4\r\nPING\r\n$99999999999\r\n")
    assert b"exceeds the request limit" in reply and closed


def test_oversized_request(finders):
    f = finders(None, "--max-request-bytes", "4096")
    c = f.client()
    run_scenario(c)
    before = sync(c)
    file_before = state_bytes(f.state_dir)
    # one big argument, announced
    reply, closed = raw_exchange(f.port, bulk("PING", "x" * 5000))
    assert reply.startswith(b"-ERR") and closed
    # many small arguments adding up, streamed
    many = ["DPR.REPORT", "default", 1, A, 4] + [1, 1] * 600
    reply, closed = raw_exchange(f.port, bulk(*many))
    assert b"larger than 4096 bytes" in reply and closed
    # just under the limit is fine
    reply, closed = raw_exchange(f.port, bulk("PING", "y" * 3000), timeout=1.0)
    assert reply == b"$3000\r\n" + b"y" * 3000 + b"\r\n" and not closed
    assert sync(c) == before
    assert state_bytes(f.state_dir) == file_before
    assert f.proc.poll() is None
    drop(c)


BAD_COMMANDS = [
    ("DPR.WORKER.ADD", "default", "abc"),
    ("DPR.WORKER.ADD", "default", "-1"),
    ("DPR.WORKER.ADD", "default", "+1"),
    ("DPR.WORKER.ADD", "default", " 1"),
    ("DPR.WORKER.ADD", "default", "1 "),
    ("DPR.WORKER.ADD", "default", ""),
    ("DPR.WORKER.ADD", "default", "1.0"),
    ("DPR.WORKER.ADD", "default", "0x10"),
    ("DPR.WORKER.ADD", "default", "9223372036854775808"),
    ("DPR.WORKER.ADD", "default", "18446744073709551616"),
    ("DPR.WORKER.ADD", "default", "99999999999999999999999"),
    ("DPR.WORKER.ADD", "default", "1\x00"),
    ("DPR.WORKER.ADD", "default",),
    ("DPR.WORKER.ADD", "default", "1", "2", "3"),
    ("DPR.WORKER.ADD", "default", "1", ""),              # tokens: 1 to 128 visible characters
    ("DPR.WORKER.ADD", "default", "1", "two words"),
    ("DPR.WORKER.ADD", "default", "1", "x" * 129),
    ("DPR.WORKER.REMOVE", "default", "1", "tab\there"),
    ("DPR.WORKER.REMOVE", "default", "1", "2", "3"),
    ("DPR.WORKER.REMOVE", "default", "x"),
    ("DPR.WORKER.REMOVE", "default", "999"),
    ("DPR.REPORT", "default", "1", "1"),
    ("DPR.REPORT", "default", "1", "1", "x"),
    ("DPR.REPORT", "default", "1", "1", "0"),
    ("DPR.REPORT", "default", "0", "1", "5"),
    ("DPR.REPORT", "default", "1", "1", "5", "2"),
    ("DPR.REPORT", "default", "1", "1", "5", "2", "x"),
    ("DPR.REPORT", "default", "1", "1", "5", "2", "6"),
    ("DPR.REPORT", "default", "7", "1", "5"),
    ("DPR.REPORT", "default", "1", "999", "5"),
    ("DPR.REPORT", "default", "1", "-1", "5"),
    ("DPR.AUTH", "default", "1"),                        # DPR.AUTH <domain> <worker> <token>
    ("DPR.AUTH", "default", "1", "tok", "x"),
    ("DPR.AUTH", "default", "x", "tok"),
    ("DPR.AUTH", "default", "1", "two words"),
    ("DPR.AUTH", "default", "1", "a-token"),             # registered without one
    ("DPR.AUTH", "default", "999", "a-token"),
    ("DPR.AUTH", "nope", "1", "a-token"),
    ("DPR.SYNC", "default", "extra"),
    ("DPR.PREFIX", "default",),
    ("DPR.PREFIX", "default", "1"),
    ("DPR.PREFIX", "default", "x"),
    ("PING", "a", "b"),
    ("SET", "k", "v"),
    ("\xff\xfe",),
]


def test_wrong_arguments_get_errors_and_change_nothing(finders):
    f = finders()
    c = f.client()
    run_scenario(c)
    before = sync(c)
    file_before = state_bytes(f.state_dir)
    for cmd in BAD_COMMANDS:
        with pytest.raises(redis.ResponseError):
            c.execute_command(*cmd)
        assert c.ping()  # the connection stays usable
    assert sync(c) == before
    assert state_bytes(f.state_dir) == file_before
    with pytest.raises(redis.ResponseError, match="unknown worker 999"):
        c.execute_command("DPR.WORKER.REMOVE", "default", 999)
    drop(c)


def test_pipeline_replies_in_order(finders):
    f = finders()
    c = f.client()
    for w in range(1, 9):
        c.execute_command("DPR.WORKER.ADD", "default", w)
    p = c.pipeline(transaction=False)
    for v in range(1, 51):
        for w in range(1, 9):
            p.execute_command("DPR.REPORT", "default", 1, w, v, (w % 8) + 1, v)
        p.execute_command("PING")
        p.execute_command("DPR.SYNC", "default")
    res = p.execute()
    i = 0
    for v in range(1, 51):
        assert res[i:i + 8] == [b"OK"] * 8
        assert res[i + 8] is True  # redis-py turns any PING reply into True
        wl, maxv, cut = res[i + 9]
        # the sync sees every report before it in the pipeline as durable
        assert wl == 1 and maxv == v
        i += 10
    assert sync(c)[2] == {w: 50 for w in range(1, 9)}
    drop(c)


def test_many_clients_concurrently(finders):
    f = finders()
    clients = [f.client() for _ in range(20)]
    for i, c in enumerate(clients):
        c.execute_command("DPR.WORKER.ADD", "default", i + 1)
    for v in range(1, 11):
        for i, c in enumerate(clients):
            c.execute_command("DPR.REPORT", "default", 1, i + 1, v)
    assert sync(clients[0])[2] == {i + 1: 10 for i in range(20)}
    for c in clients:
        drop(c)


def test_corrupt_state_file_stops_the_finder(finders, tmpdir_path):
    f = finders()
    c = f.client()
    run_scenario(c)
    drop(c)
    f.kill(signal.SIGTERM)
    assert f.wait_exit() == 0
    good = state_bytes(f.state_dir)
    path = os.path.join(f.state_dir, "finder.state")
    cases = {
        "checksum": good[:40] + bytes([good[40] ^ 0x01]) + good[41:],
        "truncated": good[:-5],
        "empty": b"",
        "magic": b"NOTAFILE" + good[8:],
        "garbage": b"hello\n" * 20,
    }
    for name, content in cases.items():
        with open(path, "wb") as fh:
            fh.write(content)
        g = finders(f.state_dir, ready=False)
        rc = g.wait_exit()
        err = g.output()
        assert rc != 0, name
        assert "finder.state" in err and "refusing to start" in err, err
        assert "listening" not in err
        with open(path, "rb") as fh:
            assert fh.read() == content, "the damaged file must be left alone"
    with open(path, "wb") as fh:
        fh.write(good)
    g = finders(f.state_dir)
    c = g.client()
    assert sync(c)[0] == 1
    drop(c)


def test_second_finder_on_same_state_dir_refuses(finders):
    f = finders()
    g = finders(f.state_dir, ready=False)
    assert g.wait_exit() != 0
    assert "in use by another dpr-finder" in g.output()
    assert f.proc.poll() is None
    assert f.client().ping()


def test_sigterm_exits_zero_and_state_persists(finders):
    f = finders()
    c = f.client()
    c.execute_command("DPR.WORKER.ADD", "default", 5)
    c.execute_command("DPR.REPORT", "default", 1, 5, 3)
    f.kill(signal.SIGTERM)
    assert f.wait_exit() == 0
    assert "stopped" in f.output()
    drop(c)
    g = finders(f.state_dir)
    c = g.client()
    assert sync(c) == (1, 3, {5: 3})
    g.kill(signal.SIGINT)
    assert g.wait_exit() == 0
    drop(c)


def test_max_clients_enforced(finders):
    f = finders(None, "--max-clients", "2")
    a, b = f.client(), f.client()
    assert a.ping() and b.ping()
    reply, closed = raw_exchange(f.port, b"")
    assert reply.startswith(b"-ERR max number of clients") and closed
    drop(a)
    time.sleep(0.2)
    c = f.client()
    assert c.ping()
    drop(b)
    drop(c)


def test_usage_errors(tmpdir_path):
    def run(*args):
        return subprocess.run([FINDER, *args], capture_output=True, timeout=10)

    r = run("--help")
    assert r.returncode == 0
    for word in (b"--listen", b"--state", b"--max-clients", b"--max-request-bytes"):
        assert word in r.stdout
    state = os.path.join(tmpdir_path, "s")
    for args in (["--state", state], ["--listen", "127.0.0.1:0"],
                 ["--listen", "127.0.0.1", "--state", state],
                 ["--listen", "127.0.0.1:70000", "--state", state],
                 ["--listen", "127.0.0.1:0", "--state", state, "--max-clients", "0"],
                 ["--listen", "127.0.0.1:0", "--state", state, "--max-clients", "x"],
                 ["--listen", "127.0.0.1:0", "--state", state, "--max-request-bytes", "10"],
                 ["--listen", "127.0.0.1:0", "--state", state, "--bogus"],
                 ["--listen", "127.0.0.1:0", "--state", state, "extra"]):
        r = run(*args)
        assert r.returncode == 2, args
        assert r.stderr.startswith(b"dpr-finder: "), r.stderr
    assert not os.path.exists(state)


def test_unusable_state_dir(finders, tmpdir_path):
    plain = os.path.join(tmpdir_path, "plain")
    with open(plain, "w") as fh:
        fh.write("x")
    g = finders(os.path.join(plain, "state"), ready=False)
    assert g.wait_exit() != 0
    assert "cannot create the state directory" in g.output()


def test_kill9_under_load_never_loses_what_was_acknowledged(finders, tmpdir_path):
    """Workers report as fast as they can while the finder is killed with
    SIGKILL at random instants: after each restart the cut is at least every
    cut a client saw and covers every acknowledged report (minimum rule)."""
    workers = [1, 2, 3, 4]
    rng = random.Random(7)
    f = finders()
    c = f.client()
    for w in workers:
        c.execute_command("DPR.WORKER.ADD", "default", w)
    drop(c)
    acked = {w: 0 for w in workers}
    seen_cut = {}
    for round_ in range(4):
        stop = threading.Event()

        def report(w, port=f.port):
            cl = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
            v = acked[w]
            try:
                while not stop.is_set():
                    v += 1
                    nxt = workers[(workers.index(w) + 1) % len(workers)]
                    cl.execute_command("DPR.REPORT", "default", 1, w, v, nxt, v - 1 if v > 1 else 1)
                    acked[w] = v
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            finally:
                drop(cl)

        def poll(port=f.port):
            cl = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
            try:
                while not stop.is_set():
                    wl, _, cut = sync(cl)
                    assert wl == 1
                    seen_cut.update({w: max(v, seen_cut.get(w, 0)) for w, v in cut.items()})
            except (redis.ConnectionError, redis.TimeoutError):
                pass
            finally:
                drop(cl)

        threads = [threading.Thread(target=report, args=(w,), daemon=True) for w in workers]
        threads.append(threading.Thread(target=poll, daemon=True))
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.2, 0.6))
        f.kill(signal.SIGKILL)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        f.wait_exit()

        f = finders(f.state_dir)
        c = f.client()
        wl, _, cut = sync(c)
        drop(c)
        assert wl == 1
        assert min(acked.values()) > 0
        for w in workers:
            assert cut.get(w, 0) >= seen_cut.get(w, 0), (round_, w, cut, seen_cut)
            assert cut.get(w, 0) >= min(acked.values()), (round_, w, cut, acked)


def test_number_edges(finders):
    f = finders()
    c = f.client()
    big = 9223372036854775807
    assert c.execute_command("DPR.WORKER.ADD", "default", str(big)) == [1, 0]
    assert c.execute_command("DPR.REPORT", "default", "0001", str(big), "0005") == b"OK"
    assert sync(c) == (1, 5, {big: 5})
    with pytest.raises(redis.ResponseError, match="invalid worker id"):
        c.execute_command("DPR.WORKER.ADD", "default", str(big + 1))
    drop(c)


def test_client_that_does_not_read_is_throttled_not_fatal(finders):
    """Pipelining without reading replies: the server stops reading from
    that client (bounded memory), serves others, and answers every request
    once the client reads."""
    f = finders()
    c = f.client()
    for w in range(1, 51):
        c.execute_command("DPR.WORKER.ADD", "default", w)
        c.execute_command("DPR.REPORT", "default", 1, w, 5)
    one = bulk("DPR.SYNC", "default")
    s = socket.create_connection(("127.0.0.1", f.port))
    s.setblocking(False)
    sent, t0 = 0, time.monotonic()
    chunk = one * 1000
    while time.monotonic() - t0 < 1.5:
        try:
            sent += s.send(chunk[sent % len(one):] if sent % len(one) else chunk)
        except BlockingIOError:
            time.sleep(0.01)
    with open("/proc/%d/status" % f.proc.pid) as fh:
        rss_kb = int([l for l in fh if l.startswith("VmRSS")][0].split()[1])
    assert rss_kb < 256 * 1024
    assert sync(c)[2] == {w: 5 for w in range(1, 51)}  # others are served
    # read every reply while completing the last request (the server is
    # not reading from us until we read, so do both at once)
    want = -(-sent // len(one))
    reply = b"*3\r\n:1\r\n:5\r\n*100\r\n" + b"".join(
        b":%d\r\n:5\r\n" % w for w in range(1, 51))
    got = [0]

    def reader():
        while got[0] < want * len(reply):
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                time.sleep(0.005)
                continue
            if not data:
                return
            got[0] += len(data)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    rest = one[sent % len(one):] if sent % len(one) else b""
    deadline = time.monotonic() + 30
    while rest and time.monotonic() < deadline:
        try:
            rest = rest[s.send(rest):]
        except BlockingIOError:
            time.sleep(0.005)
    t.join(timeout=30)
    assert not t.is_alive(), "replies stopped after %d bytes" % got[0]
    got = got[0]
    assert got == want * len(reply)
    s.close()
    drop(c)
