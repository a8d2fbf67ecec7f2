"""Process harness for the Python client tests: a dpr-finder and N dpr-kv
shards on loopback, in a temporary directory, killed by PID at the end.

A restarted shard gets the port it had before (the client's shard list is
by address), with the same worker id and directory. Shard ports are chosen
below the kernel's ephemeral range, so no outgoing connection can take a
killed shard's port before it restarts.
"""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DPR_BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
FINDER = os.path.join(BUILD_DIR, "dpr-finder")
KV = os.path.join(BUILD_DIR, "dpr-kv")
START_TIMEOUT = 15.0
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port(exclude=()) -> int:
    """A loopback port that is free now, outside the ephemeral range."""
    hi = max(_ephemeral_low(), 12000)
    for _ in range(200):
        port = random.randrange(10000, hi)
        if port in exclude:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError("no free port found below %d" % hi)


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    for k in list(env):
        if k.startswith("DPR_KV_") or k in ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC"):
            del env[k]
    return env


class Proc:
    """A server process whose stderr and stdout go to a log file."""

    marker = ""  # the log text before "ADDR:PORT" once it listens

    def __init__(self, argv: list[str], log_path: str):
        self.argv = argv
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.log_start = log.tell()
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=_clean_env())
        self.port: int | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, timeout: float = START_TIMEOUT) -> "Proc":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                i = line.find(self.marker)
                if i >= 0:
                    self.port = int(line[i + len(self.marker):].split()[0].rsplit(":", 1)[1])
                    return self
            if self.proc.poll() is not None:
                raise AssertionError("%s exited %d before listening:\n%s"
                                     % (self.argv, self.proc.returncode, self.output()))
            time.sleep(0.01)
        raise AssertionError("%s did not start in %.0fs:\n%s"
                             % (self.argv, timeout, self.output()))

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends sig to this process (by PID) if it still runs; waits for
        it after SIGKILL."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=10)

    @property
    def address(self) -> str:
        return "127.0.0.1:%d" % self.port


class Finder(Proc):
    marker = "dpr-finder listening on "

    def __init__(self, state_dir: str, log_path: str):
        super().__init__([FINDER, "--listen", "127.0.0.1:0", "--state", state_dir], log_path)

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def sync(self) -> tuple[int, int, dict[int, int]]:
        wl, maxv, flat = self.redis().execute_command("DPR.SYNC")
        return int(wl), int(maxv), {int(flat[i]): int(flat[i + 1])
                                    for i in range(0, len(flat), 2)}


class Kv(Proc):
    marker = "listening on "

    def __init__(self, finder: Finder, worker: int, state_dir: str, log_path: str,
                 port: int = 0, interval_ms: int = 100, args: tuple[str, ...] = ()):
        self.worker = worker
        self.state_dir = state_dir
        self.interval_ms = interval_ms
        self.extra = tuple(args)
        super().__init__([KV, "--listen", "127.0.0.1:%d" % port, "--finder", finder.address,
                          "--worker", str(worker), "--dir", state_dir,
                          "--checkpoint-interval-ms", str(interval_ms), *args], log_path)

    def redis(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def info(self) -> dict:
        return self.redis().info("dpr")


class Cluster:
    """A finder and shards in base; cleanup() kills every process started."""

    def __init__(self, base: str):
        self.base = base
        self.procs: list[Proc] = []
        self.finder: Finder | None = None
        self.shards: list[Kv] = []

    def start_finder(self) -> Finder:
        f = Finder(os.path.join(self.base, "finder"), os.path.join(self.base, "finder.log"))
        self.procs.append(f)
        self.finder = f
        f.wait_ready()
        return f

    def start_shards(self, n: int, interval_ms: int = 100, first_worker: int = 11,
                     args: tuple[str, ...] = ()) -> list[Kv]:
        assert self.finder is not None
        new = []
        for k in range(n):
            w = first_worker + len(self.shards) + k
            # (no retry on a port taken in between: the failed start would
            # already have registered the worker with the finder)
            kv = Kv(self.finder, w, os.path.join(self.base, "kv%d" % w),
                    os.path.join(self.base, "kv%d.log" % w), port=free_port({p.port for p in self.procs}),
                    interval_ms=interval_ms, args=args)
            self.procs.append(kv)
            new.append(kv)
        for kv in new:
            kv.wait_ready()
        self.shards += new
        return new

    def kill9(self, i: int) -> None:
        self.shards[i].kill(signal.SIGKILL)

    def restart(self, i: int) -> Kv:
        """Starts shard i again: same worker id, directory, port and flags."""
        old = self.shards[i]
        assert not old.alive(), "kill the shard first"
        assert self.finder is not None
        kv = Kv(self.finder, old.worker, old.state_dir, old.log_path, port=old.port,
                interval_ms=old.interval_ms, args=old.extra)
        self.procs.append(kv)
        self.shards[i] = kv
        kv.wait_ready()
        return kv

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.shards]

    @property
    def workers(self) -> list[int]:
        return [s.worker for s in self.shards]

    def client(self, **kw):
        import dpr
        assert self.finder is not None
        return dpr.Client(shards=self.addresses, finder=self.finder.address, **kw)

    def cleanup(self) -> None:
        """SIGKILL, by PID, every process this cluster started (shards first)."""
        errors = []
        for p in reversed(self.procs):
            try:
                p.kill(signal.SIGKILL)
            except (OSError, subprocess.TimeoutExpired) as e:
                errors.append("%s (pid %d): %s" % (p.argv[0], p.pid, e))
        assert not errors, errors
        found = sorted({"%s: %s" % (os.path.basename(p.log_path), line.strip())
                        for p in self.procs for line in p.output().splitlines()
                        if any(m in line for m in SANITIZER_MARKERS)})
        assert not found, "sanitizer reports: %r" % found[:5]


def wait_for(pred, timeout: float = 15.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.01)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))
