"""The C client API (libdpr/include/dpr/client.h) against real processes:
dpr-finder and dpr-kv shards on loopback, driven by the C program
tests/libdpr/client_driver.c (built as $DPR_BUILD/tests/client-driver).

Skips when build/dpr-kv or the driver is missing. Every process is started
here, on free ports, with state under a temporary directory, and killed by
PID at the end."""
import os
import re
import signal
import socket
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DPR_BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
FINDER = os.path.join(BUILD_DIR, "dpr-finder")
KV = os.path.join(BUILD_DIR, "dpr-kv")
DRIVER = os.path.join(BUILD_DIR, "tests", "client-driver")

pytestmark = pytest.mark.skipif(
    not all(os.access(p, os.X_OK) for p in (FINDER, KV, DRIVER)),
    reason="needs %s, %s and %s (make all, cachestore/build.mk)" % (FINDER, KV, DRIVER))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, argv, log_path):
        self.argv = argv
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=15.0):
        log = open(self.log_path, "ab")
        start = log.tell()
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("DPR_KV_") and k not in ("STATE_DIRECTORY", "NOTIFY_SOCKET",
                                                           "WATCHDOG_USEC")}
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                text = f.read().decode("utf-8", "replace")
            m = re.search(r"listening on \S+:(\d+)", text)
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError("%s exited:\n%s" % (self.argv[0], text))
            time.sleep(0.02)
        raise AssertionError("%s did not start" % self.argv[0])

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc:
            self.proc.wait(timeout=10)


class Cluster:
    def __init__(self, tmp, nshards):
        self.tmp = str(tmp)
        fport = free_port()
        self.finder = Server([FINDER, "--listen", "127.0.0.1:%d" % fport, "--state",
                              os.path.join(self.tmp, "finder")],
                             os.path.join(self.tmp, "finder.log"))
        self.servers = [self.finder]
        self.finder_port = self.finder.start()
        self.shards = []
        for i in range(nshards):
            port = free_port()
            kv = Server([KV, "--listen", "127.0.0.1:%d" % port, "--finder",
                         "127.0.0.1:%d" % self.finder_port, "--worker", str(100 + i),
                         "--dir", os.path.join(self.tmp, "kv%d" % i),
                         "--checkpoint-interval-ms", "50"],
                        os.path.join(self.tmp, "kv%d.log" % i))
            self.servers.append(kv)
            kv.start()
            self.shards.append((kv, port))

    def restart(self, i, pause=0.2):
        kv, _ = self.shards[i]
        kv.kill()
        time.sleep(pause)
        kv.start()

    def driver_argv(self, *args):
        argv = [DRIVER, "--finder", "127.0.0.1:%d" % self.finder_port]
        for _, port in self.shards:
            argv += ["--shard", "127.0.0.1:%d" % port]
        return argv + list(args)

    def stop(self):
        for s in self.servers:
            s.kill()

    def sanitizer_reports(self):
        """Sanitizer reports in the servers' logs (ASan/UBSan builds)."""
        found = []
        for s in self.servers:
            with open(s.log_path, "rb") as f:
                text = f.read().decode("utf-8", "replace")
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
                if marker in text:
                    found.append("%s: %s" % (s.log_path, marker))
        return found


@pytest.fixture
def cluster_factory(tmp_path):
    made = []

    def make(nshards):
        c = Cluster(tmp_path, nshards)
        made.append(c)
        return c
    yield make
    for c in made:
        c.stop()
    for c in made:
        assert not c.sanitizer_reports(), c.sanitizer_reports()


def run_driver(cluster, *args, timeout=120):
    p = subprocess.run(cluster.driver_argv(*args), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=timeout)
    out = p.stdout.decode("utf-8", "replace")
    assert p.returncode == 0, out
    return out


@pytest.mark.parametrize("nshards", [1, 2])
def test_basic(cluster_factory, nshards):
    c = cluster_factory(nshards)
    out = run_driver(c, "basic")
    assert "PASS basic" in out


def test_writer_no_failure(cluster_factory):
    c = cluster_factory(2)
    out = run_driver(c, "--seconds", "1", "writer")
    assert "PASS writer" in out
    assert "ROLLBACK" not in out


def start_driver(cluster, *args):
    return subprocess.Popen(cluster.driver_argv(*args), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def finish_driver(p, timeout=120):
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        raise AssertionError("driver timed out:\n" + out.decode("utf-8", "replace"))
    out = out.decode("utf-8", "replace")
    assert p.returncode == 0, out
    return out


@pytest.mark.parametrize("mode", ["strict", "relaxed"])
@pytest.mark.parametrize("victim", [0, 2])
def test_writer_shard_crash(cluster_factory, mode, victim):
    """kill -9 one of 3 shards while a session writes across all of them,
    restart it: the driver must see exactly one rollback and its report must
    match what the shards hold (the driver reads every key back)."""
    c = cluster_factory(3)
    args = ["--seconds", "3"] + (["--relaxed"] if mode == "relaxed" else []) + ["writer"]
    p = start_driver(c, *args)
    try:
        time.sleep(1.0)
        c.restart(victim)
    finally:
        out = finish_driver(p)
    assert "PASS writer" in out
    rollbacks = [l for l in out.splitlines() if l.startswith("ROLLBACK")]
    assert len(rollbacks) == 1, out


def test_idle_session_after_restart(cluster_factory):
    """a session whose connections went stale while a shard restarted learns
    of the rollback and continues on the new world-line."""
    c = cluster_factory(2)
    p = start_driver(c, "--seconds", "2", "idle")
    try:
        line = p.stdout.readline().decode()
        assert line.startswith("READY"), line
        c.restart(1)
    finally:
        out = finish_driver(p)
    assert "PASS idle" in out
