"""dpr-kv's finder registration token (issue 8).

Before tokens, anyone who reached the finder could send DPR.WORKER.ADD for a
live worker: the finder took it for a crash restart of that worker and
rolled the whole cluster back. A shard now registers with a token
(--finder-token-file, or DPR_KV_FINDER_TOKEN); the finder then re-registers
or removes that worker only for the same token. Checked here with real
processes: an unauthenticated ADD of a live shard is refused and nothing
rolls back (a running session sees no RollbackError and its commit point
keeps moving); a kill -9 and restart of the shard with its token still
recovers as before; a restart with a wrong token is refused at start-up
(log, sd_notify STATUS, exit status 1, no retry loop); the token is never
logged.
"""
import os
import signal
import socket
import subprocess

import pytest

import dpr
from dprtest import KV, free_port, wait_for

TOKEN1 = "4f1c0e9a7b3d2e8f6a5b4c3d2e1f0a9b"
TOKEN2 = "token-of-shard-2_with.other~chars"


def raw_finder(port, *args):
    """One RESP request to the finder over a plain TCP socket, as anyone on
    the network could send it; returns the first reply line."""
    req = b"*%d\r\n" % len(args)
    for a in args:
        a = str(a).encode()
        req += b"$%d\r\n%s\r\n" % (len(a), a)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n", 1)[0]


def start_shard(cluster, worker, **kw):
    """A shard on a port of its own (so that cluster.restart keeps its
    address), appended to cluster.shards."""
    kv = cluster.start_kv(worker, port=free_port(), interval_ms=50, **kw)
    cluster.shards.append(kv)
    return kv


def token_file(cluster, name, token):
    path = os.path.join(cluster.base, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return path


@pytest.fixture
def cluster(cluster):
    import dpr._libdpr
    try:
        dpr._libdpr.get_lib()
    except dpr._libdpr.LibdprNotFound as e:
        pytest.fail(str(e), pytrace=False)
    return cluster


def test_unauthenticated_add_of_a_live_shard_is_refused(cluster):
    s1 = start_shard(cluster, 1, env={"DPR_KV_FINDER_TOKEN": TOKEN1})
    start_shard(cluster, 2, args=["--finder-token-file", token_file(cluster, "t2", TOKEN2)])
    finder = cluster.finder
    client = cluster.client()
    with client.session() as s:
        for i in range(20):
            s.set("k%d" % i, i)
        assert s.wait_committed(timeout=30) == 20
        wl, _, cut = finder.sync()
        assert wl == 1 and s.world_line == 1

        # anyone who reaches the finder: without a token, with a wrong one
        for args in ((), ("guess",), (TOKEN2,)):
            for cmd in ("DPR.WORKER.ADD", "DPR.WORKER.REMOVE"):
                reply = raw_finder(finder.port, cmd, "default", 1, *args)
                assert reply == (b"-ERR worker 1 is registered by its owner: %s needs its token"
                                 % cmd.encode()), reply
        assert finder.sync()[0] == 1

        # nothing rolled back: the session goes on, its commit point moves
        for i in range(20, 60):
            s.set("k%d" % i, i)           # would raise dpr.RollbackError
        assert s.wait_committed(timeout=30) == 60
        assert s.world_line == 1
        wl2, _, cut2 = finder.sync()
        assert wl2 == 1 and all(cut2[w] >= cut[w] for w in cut)
        for kv in cluster.shards:
            info = kv.info()
            assert info["dpr_world_line"] == 1 and info["dpr_rollbacks"] == 0
        assert "refused: worker 1 is registered by its owner" in finder.output()

        # a crash of shard 1 and its restart with its token recover as before
        committed = s.last_seq
        cluster.kill9(0)
        s1 = cluster.restart(0)
        assert s1.info()["dpr_world_line"] == 2
        wait_for(lambda: cluster.shards[1].info()["dpr_world_line"] == 2,
                 what="shard 2 rolled back to the new world-line")
        try:
            s.set("after", 1)
        except dpr.RollbackError as e:     # committed operations are never lost
            assert e.lost_from > committed
        assert s.world_line == 2
        s.set("after2", 2)
        assert s.wait_committed(timeout=30) == s.last_seq
    for i in range(60):
        kv = cluster.shards[client.shard_of("k%d" % i)]
        assert kv.client().get("k%d" % i) == str(i).encode()
    # the token is a secret: in no log
    for p in [finder] + cluster.shards:
        out = p.output()
        assert TOKEN1 not in out and TOKEN2 not in out
    assert "with a registration token" in s1.output()


def test_restart_with_a_wrong_token_is_refused_at_start_up(cluster, tmp_path):
    kv = cluster.start_kv(1, env={"DPR_KV_FINDER_TOKEN": TOKEN1})
    kv.client().set("x", "1")
    wait_for(lambda: cluster.finder.sync()[2].get(1, 0) >= 1, what="worker 1 in the cut")
    kv.kill(signal.SIGKILL)
    wl = cluster.finder.sync()[0]

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    try:
        for env in ({"DPR_KV_FINDER_TOKEN": "not-the-owners-token"}, {}):
            env["NOTIFY_SOCKET"] = path
            bad = cluster.start_kv(1, env=env, wait=False)
            # an answer is final: it exits at once instead of asking again
            assert bad.wait_exit() == 78  # restarting cannot help: EX_CONFIG
            out = bad.output()
            assert "cannot register with the finder" in out
            assert "worker 1 is registered by its owner" in out, out
            assert out.count("DPR.WORKER.ADD 1") == 1        # asked once
            assert "not-the-owners-token" not in out and TOKEN1 not in out
            status = []
            while not any("refused to register worker 1" in m for m in status):
                status.append(sock.recv(4096).decode())
            assert cluster.finder.sync()[0] == wl          # no rollback
    finally:
        sock.close()
    # the owner's token: the crash-restart path (new world-line), data restored
    good = cluster.start_kv(1, env={"DPR_KV_FINDER_TOKEN": TOKEN1})
    assert good.info()["dpr_world_line"] == wl + 1
    assert good.client().get("x") == b"1"


def test_token_options(cluster, tmp_path):
    ok = subprocess.run([KV, "--help"], capture_output=True, timeout=30)
    assert ok.returncode == 0
    assert b"--finder-token-file PATH" in ok.stdout and b"DPR_KV_FINDER_TOKEN" in ok.stdout
    base = [KV, "--finder", "127.0.0.1:1", "--worker", "1", "--dir", str(tmp_path / "d")]
    env = {"PATH": os.environ.get("PATH", "")}
    missing = str(tmp_path / "missing")
    r = subprocess.run(base + ["--finder-token-file", missing], capture_output=True, timeout=30,
                       env=env)
    assert r.returncode == 2 and missing.encode() in r.stderr
    bad_file = str(tmp_path / "bad")
    with open(bad_file, "w") as f:
        f.write("two secret words\n")
    r = subprocess.run(base + ["--finder-token-file", bad_file], capture_output=True,
                       timeout=30, env=env)
    assert r.returncode == 2 and b"visible ASCII" in r.stderr and b"secret" not in r.stderr
    r = subprocess.run(base, capture_output=True, timeout=30,
                       env=dict(env, DPR_KV_FINDER_TOKEN="x" * 129))
    assert r.returncode == 2 and b"DPR_KV_FINDER_TOKEN" in r.stderr and b"xxx" not in r.stderr
    # an empty variable is no token; a file beats the variable
    kv = cluster.start_kv(3, env={"DPR_KV_FINDER_TOKEN": ""})
    kv.kill(signal.SIGKILL)
    kv = cluster.start_kv(3, env={"DPR_KV_FINDER_TOKEN": "from-env"},
                          args=["--finder-token-file", token_file(cluster, "t3", "from-file")])
    kv.kill(signal.SIGKILL)
    refused = raw_finder(cluster.finder.port, "DPR.WORKER.ADD", "default", 3, "from-env")
    assert refused.startswith(b"-ERR worker 3 is registered by its owner")
    assert raw_finder(cluster.finder.port, "DPR.WORKER.ADD", "default", 3,
                      "from-file").startswith(b"*2")
