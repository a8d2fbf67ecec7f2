"""Shared harness of the process tests (tests/*/test_*.py): where the build
is, free loopback ports, server processes killed by PID, and waiting.

    import dprtest
    with dprtest.Cluster(tmp) as c:           # stops every process it started
        f = c.start_finder()                  # dpr-finder on port 0, state in tmp/finder
        kv = c.start_kv(1)                    # dpr-kv worker 1, directory tmp/kv1
        dprtest.wait_for(lambda: f.sync()[2].get(1), what="worker 1 in the cut")

A Proc is one run of one program: its stdout and stderr go to a log file,
wait_ready() waits for a line of that log (and reads the port from it) or for
a port or socket to accept, stop() sends SIGTERM then SIGKILL by PID, and
every failure message names the program, its exit status and the tail of its
log. Procs groups processes so that one call stops them all and fails on
sanitizer reports in their logs; tests/conftest.py kills whatever a test left
running and adds the logs of its processes to the report of a failed test.
LazyFs mounts tests/lib/lazyfs.c, a disk that forgets what was not fsynced,
and power_cut() cuts the power of the processes that use it
(docs/testing-clusters.md, "Power loss for real").

Only the standard library is imported here (redis is imported when a client
is asked for), so tests/cluster/cluster.py and examples/demo.py can use
wait_for outside pytest.

Environment: DPR_BUILD (default build, relative to the repository root)
selects the build, e.g. build/asan; DPR_AGENT overrides the dpr-agent binary.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Iterable

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DPR_BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
PYTHON = "/usr/bin/python3"
PYDIR = os.path.join(ROOT, "python-dpr")
DPRCTL = os.path.join(PYDIR, "bin", "dprctl")

START_TIMEOUT = 15.0   # for a server to get ready (generous: ASan builds, busy machines)
EXIT_TIMEOUT = 30.0    # for a process that is expected to exit
STOP_GRACE = 10.0      # between SIGTERM and SIGKILL
POLL = 0.01
LOG_TAIL = 6000        # characters of a log shown in a failure message

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")
# Defaults for sanitizer builds (a variable already set in the environment
# wins): leak checks at exit and stack traces for UBSan reports. Other
# binaries ignore them.
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1"}
# Set by systemd or by a shell inside a unit: a test server must not see them
# (dpr-kv reads DPR_KV_* and STATE_DIRECTORY, every daemon talks to
# NOTIFY_SOCKET and the journal).
_UNSET_ENV = ("STATE_DIRECTORY", "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID",
              "JOURNAL_STREAM", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES", "DPR_SOCKET")
_UNSET_PREFIXES = ("DPR_KV_",)


def binary(name: str) -> str:
    """The path of a program of the build: binary("dpr-kv"),
    binary("tests/client-driver")."""
    return os.path.join(BUILD_DIR, name)


FINDER = binary("dpr-finder")
# DPR_TEST_IMPL: the cache-store implementation the suites start as "the
# shard" (dpr-kv, the default, or dpr-redis: redis-server behind the DPR
# proxy, docs/dpr-redis.md). Both take the same flags.
IMPL = os.environ.get("DPR_TEST_IMPL") or "dpr-kv"
if IMPL not in ("dpr-kv", "dpr-redis"):
    raise RuntimeError("DPR_TEST_IMPL=%r: dpr-kv or dpr-redis" % IMPL)
KV = binary(IMPL)
REDIS_PROXY = binary("dpr-redis")
AGENT = os.environ.get("DPR_AGENT") or binary("dpr-agent")


def missing(*paths: str) -> list[str]:
    """The paths among these that are not executable files."""
    return [p for p in paths if not os.access(p, os.X_OK)]


def need(*paths: str, skip: bool = False) -> None:
    """Fails (or skips) the running test unless every path is executable."""
    import pytest
    gone = missing(*paths)
    if gone:
        msg = ("%s missing: build first (make all; DPR_BUILD=%s selects the build)"
               % (" and ".join(gone) + (" is" if len(gone) == 1 else " are"), BUILD))
        if skip:
            pytest.skip(msg)
        pytest.fail(msg, pytrace=False)


# --- ports ---------------------------------------------------------------------

_HANDED_OUT: set[int] = set()


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback TCP port that is free now. It lies below the kernel's
    ephemeral range, so no outgoing connection takes it while a server that
    used it restarts, and it is never handed out twice in one test run."""
    return free_port_range(1)[0]


def free_port_range(n: int = 50) -> tuple[int, int]:
    """(first, last): n consecutive loopback ports that are free now (see
    free_port)."""
    hi = max(_ephemeral_low(), 12000)
    for _ in range(500):
        base = random.randrange(10000, hi - n + 1)
        ports = range(base, base + n)
        if any(p in _HANDED_OUT for p in ports) or not all(_bindable(p) for p in ports):
            continue
        _HANDED_OUT.update(ports)
        return base, base + n - 1
    raise AssertionError("no %d free consecutive ports found in 10000..%d" % (n, hi - 1))


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    """True if a TCP connection to host:port succeeds now."""
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def unix_accepts(path: str) -> bool:
    """True if a connection to the Unix stream socket at path succeeds now."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return True
    except OSError:
        return False
    finally:
        s.close()


# --- waiting ---------------------------------------------------------------------

def wait_for(pred: Callable[[], Any], timeout: float = 15.0, what: str = "condition",
             interval: float = POLL, error: type[Exception] = AssertionError) -> Any:
    """Calls pred() until it returns something true and returns that. After
    timeout seconds (pred is called once more at the end) raises error
    naming what was awaited and pred's last value."""
    deadline = time.monotonic() + timeout
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise error("timed out after %gs waiting for %s (last value: %r)"
                        % (timeout, what, last))
        time.sleep(interval)


# --- processes --------------------------------------------------------------------

_STARTED: list["Proc"] = []


def started() -> list["Proc"]:
    """Every Proc started by this Python process, oldest first."""
    return list(_STARTED)


def exit_text(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return "killed by %s" % signal.Signals(-rc).name
        except ValueError:
            return "killed by signal %d" % -rc
    return "exited with status %d" % rc


def sanitizer_reports(text: str) -> list[str]:
    """The lines of a log that start a sanitizer report."""
    return [line for line in text.splitlines() if any(m in line for m in SANITIZER_MARKERS)]


def server_env(extra: dict[str, str | None] | None = None) -> dict[str, str]:
    """os.environ without what systemd would set, with the sanitizer
    defaults, then extra (a None value removes the variable)."""
    env = {k: v for k, v in os.environ.items()
           if k not in _UNSET_ENV and not k.startswith(_UNSET_PREFIXES)}
    for k, v in SANITIZER_ENV.items():
        env.setdefault(k, v)
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


# SIGSTOP, SIGTSTP, SIGTTIN and SIGTTOU as bits of a /proc/PID/status mask
_STOP_SIGNALS = sum(1 << (s - 1) for s in (signal.SIGSTOP, signal.SIGTSTP,
                                           signal.SIGTTIN, signal.SIGTTOU))


def job_stopped(pid: int) -> bool:
    """True if pid is stopped by job control (state T, e.g. a test's
    SIGSTOP) or such a stop signal sent to it is still pending; False for a
    running process and for a ptrace stop (state t).

    Proc.stop sends SIGCONT only then. A SIGCONT discards every pending stop
    signal of the process, including the SIGSTOP with which
    PTRACE_ATTACH suspends a thread: a sanitizer build that is exiting has
    LeakSanitizer's tracer attach to its threads and wait for them to stop,
    while the main thread spins in sched_yield until the leak check is done.
    A SIGCONT landing in between leaves both waiting for ever (the process
    logged its last line and never exits). That SIGSTOP is per thread
    (SigPnd), a kill() to the process is shared (ShdPnd)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        return False
    if fields.get("State", "").split()[:1] == ["T"]:
        return True
    try:
        return int(fields.get("ShdPnd", "0"), 16) & _STOP_SIGNALS != 0
    except ValueError:
        return False


class Proc:
    """One run of a program, started at once, stdout and stderr appended to
    log_path. Stopped by PID only. Attributes: argv, log_path, proc (the
    Popen), port (read from the ready line, or given)."""

    ready_marker: str | None = None   # a line of the log containing this means ready
    port_in_ready_line = False        # the ready line must end in ADDR:PORT
    stop_signal = signal.SIGTERM      # what stop() sends first (stop_all uses it)
    clean_stop = False                # stop_all fails unless stop_signal makes it exit 0

    def __init__(self, argv: list[str], log_path: str, env: dict[str, str | None] | None = None,
                 cwd: str | None = None, name: str | None = None):
        self.argv = [str(a) for a in argv]
        self.log_path = str(log_path)
        self.name = name or os.path.basename(self.argv[0])
        self.port: int | None = None
        self.stopped_by_us = False
        with open(self.log_path, "ab") as log:
            self.log_start = log.tell()
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=log, env=server_env(env), cwd=cwd)
        _STARTED.append(self)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def output(self) -> str:
        """What this run wrote to the log so far."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self.log_start)
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def describe(self, tail: int = LOG_TAIL) -> str:
        """'NAME (pid N) STATUS; the end of its log LOG:' and that tail."""
        text = self.output()
        cut = "...\n" + text[-tail:] if len(text) > tail else text
        return "%s (pid %d) %s; the end of its log %s:\n%s" % (
            self.name, self.pid, exit_text(self.proc.poll()), self.log_path, cut)

    def _parse_port(self, line: str, marker: str) -> None:
        rest = line[line.find(marker) + len(marker):].split()
        m = re.fullmatch(r"\S+:(\d+)", rest[0]) if rest else None
        if m:
            self.port = int(m.group(1))

    def _ready_line(self, marker: str) -> bool:
        for line in self.output().splitlines():
            if marker in line:
                self._parse_port(line, marker)
                if self.port is None and self.port_in_ready_line:
                    raise AssertionError("%s: no ADDR:PORT after %r in %r"
                                         % (self.name, marker, line))
                return True
        return False

    def wait_ready(self, marker: str | None = None, timeout: float = START_TIMEOUT,
                   port: int | None = None, check: Callable[[], Any] | None = None) -> "Proc":
        """Waits until the log has a line containing marker (default
        ready_marker; 'ADDR:PORT' right after it becomes self.port), port
        accepts TCP connections on loopback and check() is true, for those
        given. Fails with the log if the process exits first; kills it and
        fails if it is not ready within timeout."""
        marker = marker if marker is not None else self.ready_marker
        if port is not None:
            self.port = port
        deadline = time.monotonic() + timeout
        while True:
            if ((marker is None or self._ready_line(marker))
                    and (port is None or accepts(port))
                    and (check is None or check())):
                return self
            if self.proc.poll() is not None:
                raise AssertionError("%s exited before it was ready: %s"
                                     % (self.name, self.describe()))
            if time.monotonic() >= deadline:
                self.kill(signal.SIGKILL)
                raise AssertionError("%s was not ready within %gs (waited for %s); killed: %s"
                                     % (self.name, timeout,
                                        " and ".join(w for w in (
                                            marker and "a line with %r" % marker,
                                            port and "port %d" % port,
                                            check and "its readiness check") if w),
                                        self.describe()))
            time.sleep(POLL)

    def wait_exit(self, timeout: float = EXIT_TIMEOUT) -> int:
        """Waits for the process to exit by itself; returns its returncode
        (negative: killed by that signal)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit within %gs: %s"
                                 % (self.name, timeout, self.describe())) from None

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Sends sig to this process (by PID) if it still runs; after
        SIGKILL, waits for it."""
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass
        if sig == signal.SIGKILL:
            self.proc.wait(timeout=STOP_GRACE)

    def stop(self, sig: int | None = None, grace: float = STOP_GRACE) -> int:
        """Stops the process if it runs: sig (default stop_signal; a
        process stopped by SIGSTOP is continued to receive it), then SIGKILL
        after grace seconds. Returns the returncode. A running process gets
        no SIGCONT: see job_stopped."""
        sig = self.stop_signal if sig is None else sig
        if self.proc.poll() is None:
            self.stopped_by_us = True
            was_stopped = job_stopped(self.proc.pid)
            self.kill(sig)
            if was_stopped and sig not in (signal.SIGKILL, signal.SIGCONT):
                self.kill(signal.SIGCONT)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.kill(signal.SIGKILL)
        return self.proc.wait(timeout=STOP_GRACE)

    def __repr__(self) -> str:
        return "<%s pid %d %s>" % (self.name, self.pid, exit_text(self.proc.poll()))


class Procs:
    """The processes of one test: stop_all() stops each (newest first) by PID
    with its stop_signal, and fails if one could not be stopped, if one that
    must stop cleanly did not exit 0, or if a log has a sanitizer report.
    Usable as a context manager."""

    def __init__(self) -> None:
        self.procs: list[Proc] = []

    def add(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def start(self, argv: list[str], log_path: str, **kw: Any) -> Proc:
        """Starts Proc(argv, log_path, **kw) and adds it."""
        return self.add(Proc(argv, log_path, **kw))

    def stop_all(self) -> None:
        errors = []
        for p in reversed(self.procs):
            was_running = p.alive()
            try:
                rc = p.stop()
            except (OSError, subprocess.TimeoutExpired) as e:
                errors.append("cannot stop %s: %s" % (p.describe(), e))
                continue
            if was_running and p.clean_stop and rc != 0:
                errors.append("%s did not stop cleanly on %s: %s"
                              % (p.name, signal.Signals(p.stop_signal).name, p.describe()))
        for p in self.procs:
            text = p.output()
            found = sanitizer_reports(text)
            if found:
                start = text.find(found[0])
                errors.append("sanitizer report in the log of %s (pid %d, %s):\n%s"
                              % (p.name, p.pid, p.log_path, text[start:start + LOG_TAIL]))
        if errors:
            raise AssertionError("\n\n".join(errors))

    def __enter__(self) -> "Procs":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop_all()


# --- dpr-finder and dpr-kv --------------------------------------------------------

class RespServer(Proc):
    """A server speaking RESP on 127.0.0.1:port once ready."""

    @property
    def address(self) -> str:
        assert self.port is not None, "%s is not listening yet" % self.name
        return "127.0.0.1:%d" % self.port

    def client(self, **kw: Any):
        """A redis.Redis client of this server."""
        import redis
        assert self.port is not None, "%s is not listening yet" % self.name
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, **kw)


class Finder(RespServer):
    """dpr-finder --listen 127.0.0.1:PORT --state STATE_DIR [args]; port 0
    lets the kernel choose (read from the log by wait_ready)."""

    ready_marker = "dpr-finder listening on "
    port_in_ready_line = True
    # its state is temporary: no reason to wait for a clean shutdown
    stop_signal = signal.SIGKILL

    def __init__(self, state_dir: str, log_path: str, port: int = 0,
                 args: Iterable[str] = (), env: dict[str, str | None] | None = None):
        self.state_dir = state_dir
        super().__init__([FINDER, "--listen", "127.0.0.1:%d" % port, "--state", state_dir,
                          *args], log_path, env=env)

    def sync(self, domain: str = "default") -> tuple[int, int, dict[int, int]]:
        """DPR.SYNC <domain>: (world-line, max-version, {worker: cut version})."""
        c = self.client()
        try:
            wl, maxv, flat = c.execute_command("DPR.SYNC", domain)
        finally:
            c.connection_pool.disconnect()
        return int(wl), int(maxv), {int(flat[i]): int(flat[i + 1])
                                    for i in range(0, len(flat), 2)}


class Kv(RespServer):
    """dpr-kv --listen 127.0.0.1:PORT --finder FINDER --worker W --dir DIR
    [--domain NAME] [--checkpoint-interval-ms MS] [args]. Keeps what a
    restart needs. --domain is given only for a domain other than "default"
    (dpr-kv's default), so that DPR_KV_DOMAIN in env still counts."""

    ready_marker = "listening on "
    port_in_ready_line = True
    # a SIGTERM would take a last checkpoint and wait for the finder's answer
    stop_signal = signal.SIGKILL

    def __init__(self, finder: str, worker: int, state_dir: str, log_path: str,
                 port: int = 0, interval_ms: int | None = None, args: Iterable[str] = (),
                 env: dict[str, str | None] | None = None, domain: str = "default",
                 program: str | None = None):
        self.program = program or KV  # dpr-kv or dpr-redis: the same flags
        self.finder = finder
        self.worker = worker
        self.domain = domain
        self.state_dir = state_dir
        self.listen_port = port
        self.interval_ms = interval_ms
        self.extra = tuple(args)
        self.env = env
        argv = [self.program, "--listen", "127.0.0.1:%d" % port, "--finder", finder,
                "--worker", str(worker), "--dir", state_dir]
        if domain != "default":
            argv += ["--domain", domain]
        if interval_ms is not None:
            argv += ["--checkpoint-interval-ms", str(interval_ms)]
        # DPR_TEST_KV_ARGS: flags for every dpr-kv of a run (e.g. the suites
        # once more with --checkpoint-log; DPR_KV_* never reach the servers)
        argv += os.environ.get("DPR_TEST_KV_ARGS", "").split()
        super().__init__(argv + list(self.extra), log_path, env=env)

    def again(self) -> "Kv":
        """A new run with the same finder, worker id, directory, log, flags
        and port (the one it had, if it chose port 0)."""
        return Kv(self.finder, self.worker, self.state_dir, self.log_path,
                  port=self.port or self.listen_port, interval_ms=self.interval_ms,
                  args=self.extra, env=self.env, domain=self.domain, program=self.program)

    def info(self) -> dict:
        """INFO dpr as a dict."""
        c = self.client()
        try:
            return c.info("dpr")
        finally:
            c.connection_pool.disconnect()

    def checkpoints(self) -> list[int]:
        """The versions of the checkpoint files in the directory, sorted
        (dpr-kv's ckpt-<v>.kv, dpr-redis' ckpt-<v>.w<world-line>.rdb)."""
        out = []
        for n in os.listdir(self.state_dir):
            m = re.fullmatch(r"ckpt-(\d+)(?:\.kv|\.w\d+\.rdb)", n)
            if m:
                out.append(int(m.group(1)))
        return sorted(out)


class Cluster(Procs):
    """A dpr-finder and dpr-kv shards under base (state directories and
    logs: finder, finder.log, kv<worker>, kv<worker>.log)."""

    def __init__(self, base: str):
        super().__init__()
        self.base = str(base)
        self.finder: Finder | None = None
        self.shards: list[Kv] = []

    def start_finder(self, name: str = "finder", port: int = 0, args: Iterable[str] = (),
                     wait: bool = True) -> Finder:
        """Starts a finder (it becomes self.finder) and waits until it listens."""
        f = Finder(os.path.join(self.base, name), os.path.join(self.base, name + ".log"),
                   port=port, args=args)
        self.add(f)
        self.finder = f
        return f.wait_ready() if wait else f

    def kv_dir(self, worker: int) -> str:
        return os.path.join(self.base, "kv%d" % worker)

    def start_kv(self, worker: int = 1, port: int = 0, args: Iterable[str] = (),
                 env: dict[str, str | None] | None = None, wait: bool = True,
                 finder: Finder | None = None, interval_ms: int | None = None,
                 domain: str = "default", program: str | None = None) -> Kv:
        """Starts dpr-kv worker `worker` of `domain` against finder (default
        self.finder)."""
        finder = finder or self.finder
        assert finder is not None, "start the finder first"
        kv = Kv(finder.address, worker, self.kv_dir(worker),
                os.path.join(self.base, "kv%d.log" % worker), port=port,
                interval_ms=interval_ms, args=args, env=env, domain=domain, program=program)
        self.add(kv)
        return kv.wait_ready() if wait else kv

    def start_shards(self, n: int, interval_ms: int = 100, first_worker: int = 11,
                     args: Iterable[str] = (), domain: str = "default") -> list[Kv]:
        """Starts n shards (workers first_worker + len(shards) + k) of
        `domain` on free ports of their own, so that restart() gets the same
        address; waits until all listen and appends them to self.shards."""
        # (no retry on a port taken in between: the failed start would
        # already have registered the worker with the finder)
        new = [self.start_kv(first_worker + len(self.shards) + k, port=free_port(),
                             args=args, interval_ms=interval_ms, wait=False, domain=domain)
               for k in range(n)]
        for kv in new:
            kv.wait_ready()
        self.shards += new
        return new

    def kill9(self, i: int) -> None:
        self.shards[i].kill(signal.SIGKILL)

    def restart(self, i: int) -> Kv:
        """Starts shard i again (kill it first): same worker id, directory,
        port and flags."""
        old = self.shards[i]
        assert not old.alive(), "kill the shard first"
        kv = self.add(old.again())
        self.shards[i] = kv
        kv.wait_ready()
        return kv

    @property
    def addresses(self) -> list[str]:
        return [s.address for s in self.shards]

    @property
    def workers(self) -> list[int]:
        return [s.worker for s in self.shards]

    def client(self, domain: str | None = None, **kw: Any):
        """A dpr.Client of the shards and the finder; with a domain, of that
        domain's shards only, as a session of that domain."""
        import dpr
        assert self.finder is not None
        if domain is None:
            return dpr.Client(shards=self.addresses, finder=self.finder.address, **kw)
        return dpr.Client(shards=[s.address for s in self.shards if s.domain == domain],
                          finder=self.finder.address, domain=domain, **kw)


# --- a dpr-agent on the host, without systemd (tests/agent) -------------------------

HOST_AGENT_CONF = """\
cluster = "demo";
node = {{ name = "{node}"; address = "{host}"; }};
state_directory = "{d}/state";
control = {{ socket = "{d}/agent.sock"; }};
finder = {{ listen = "{host}:{finder_port}";{finder_tls} }};
cachestores = {{
  instance_directory = "{d}/run/instances";
  port_min = {port_min};
  port_max = {port_max};
  impls = {{ dpr-kv = "{kv}"; }};
}};
replication = {{ listen = "{host}:0"; }};
{extra}"""


class HostAgent:
    """A dpr-agent under base (its configuration, state, control socket and
    logs there), with a finder on a free port and instance ports
    port_min..port_max. No systemd: the agent records and serves, and tests
    run dpr-kv by hand from its instance files (env())."""

    def __init__(self, base: str, port_min: int = 7100, port_max: int = 7199,
                 host: str = "127.0.0.1", node: str = "node1", finder_port: int | None = None,
                 extra: str = "", finder_tls_port: int | None = None):
        """finder_tls_port: finder.tls_listen on host (with a tls section in
        extra)."""
        self.base = str(base)
        os.makedirs(self.base, exist_ok=True)
        self.procs = Procs()
        self.host = host
        self.node = node
        self.finder_port = finder_port or free_port()
        self.finder_tls_port = finder_tls_port
        self.conf = os.path.join(self.base, "agent.conf")
        self.sock = os.path.join(self.base, "agent.sock")
        self.state = os.path.join(self.base, "state")
        with open(self.conf, "w") as f:
            f.write(HOST_AGENT_CONF.format(d=self.base, finder_port=self.finder_port, kv=KV,
                                           port_min=port_min, port_max=port_max, host=host,
                                           node=node, extra=extra,
                                           finder_tls=(' tls_listen = "%s:%d";'
                                                       % (host, finder_tls_port)
                                                       if finder_tls_port else "")))
        self.logs: list[str] = []
        self.proc: "AgentProc | None" = None

    def start(self) -> "HostAgent":
        log = os.path.join(self.base, "agent-%d.log" % len(self.logs))
        self.logs.append(log)
        self.proc = self.procs.add(AgentProc(self.conf, log, self.sock, self.base))
        self.proc.wait_ready()
        return self

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.stop(signal.SIGTERM)
        assert self.proc.returncode == 0, self.log()

    def log(self) -> str:
        with open(self.logs[-1], errors="replace") as f:
            return f.read()

    def request(self, op: str, args: dict | None = None) -> dict:
        """One control request; the whole reply."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(10)
        s.connect(self.sock)
        try:
            s.sendall(json.dumps({"v": 1, "op": op, "args": args or {}}).encode() + b"\n")
            return json.loads(s.makefile("rb").readline())
        finally:
            s.close()

    def call(self, op: str, args: dict | None = None) -> Any:
        """One control request that must succeed: its result."""
        reply = self.request(op, args)
        assert reply["ok"] is True, reply
        return reply["result"]

    def events(self):
        """An events stream: (socket, its file), the first reply read."""
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(30)
        s.connect(self.sock)
        s.sendall(b'{"v": 1, "op": "events"}\n')
        f = s.makefile("rb")
        assert json.loads(f.readline())["ok"] is True
        return s, f

    def env(self, name: str) -> dict[str, str]:
        """The variables of instance name's instance file."""
        with open(os.path.join(self.base, "run", "instances", name + ".env")) as f:
            return dict(line.split("=", 1) for line in f.read().splitlines()
                        if line and not line.startswith("#"))

    def deployments(self) -> dict[str, dict]:
        return {d["name"]: d for d in self.call("status")["deployments"]}

    def instance(self, name: str) -> dict:
        return {i["name"]: i for d in self.deployments().values()
                for i in d["instances"]}[name]


# --- layouts and resizes of dpr-kv shards (docs/dpr-kv.md, "Layouts and resizing") ---

def layout_args(epoch, index, addrs):
    return [epoch, "-" if index is None else index] + list(addrs)


def set_layout(shards, epoch=1):
    addrs = [s.address for s in shards]
    for i, s in enumerate(shards):
        assert s.client().execute_command("DPR.LAYOUT", "SET", *layout_args(epoch, i, addrs)) \
            == b"OK"


def resize_shards(old, new, epoch, commit=True):
    """Moves the deployment from shards `old` to shards `new` (Kv lists;
    the shards in both keep their place) under layout `epoch`; returns the
    pause in seconds (PREPARE to the last COMMIT). commit=False stops
    before the COMMITs."""
    addrs = [s.address for s in new]
    everyone = list(dict.fromkeys(old + new))
    t0 = time.monotonic()
    for s in everyone:
        index = new.index(s) if s in new else None
        assert s.client().execute_command("DPR.LAYOUT", "PREPARE",
                                          *layout_args(epoch, index, addrs)) == b"OK"
    for attempt in range(5):
        wait_for(lambda: all(s.info()["dpr_layout_committed"] == 1 for s in everyone), 60,
                 "every shard's state before the pause committed")
        wl = {s.worker: s.info()["dpr_world_line"] for s in everyone}
        sources = [s for s in old if s not in new or len(new) > len(old)]
        for s in sources:
            assert s.client().execute_command("DPR.LAYOUT", "MIGRATE", epoch) == b"OK"
        wait_for(lambda: all(s.info()["dpr_migrate_state"] in ("done", "failed")
                             for s in sources), 120, "migrations")
        failed = [s.info()["dpr_migrate_error"] for s in sources
                  if s.info()["dpr_migrate_state"] == "failed"]
        if failed:  # e.g. stopped by a rollback (a shard restarted): again
            continue
        wait_for(lambda: all(s.info()["dpr_layout_committed"] == 1 for s in everyone), 60,
                 "the copies committed")
        if {s.worker: s.info()["dpr_world_line"] for s in everyone} == wl:
            break  # no rollback in between: the copies are in the cut
    else:
        raise AssertionError("the migrations did not succeed in 5 attempts: %s" % failed)
    for s in everyone if commit else ():
        s.client().execute_command("DPR.LAYOUT", "COMMIT", epoch)
    return time.monotonic() - t0


# --- systemd's notification socket ------------------------------------------------

class NotifySocket:
    """A datagram socket standing in for systemd's NOTIFY_SOCKET (in the
    abstract namespace, so no path length limit and nothing to delete).
    Start a server with env=ns.env() (Cluster.start_kv(..., env=ns.env()));
    then messages() are the datagrams it sent (READY=1, STATUS=..., ...) and
    wait_status() waits for a STATUS= line. A thread reads the socket all
    the time, as systemd does: sd_notify blocks a sender whose datagrams are
    not read. One socket per process: the messages do not say who sent
    them."""

    _count = 0

    def __init__(self) -> None:
        NotifySocket._count += 1
        self.name = "dprtest-notify-%d-%d" % (os.getpid(), NotifySocket._count)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + self.name)
        self.sock.settimeout(0.1)
        self._msgs: list[str] = []
        self._lock = threading.Lock()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name=self.name, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self._msgs.append(data.decode("utf-8", "replace"))

    def env(self) -> dict[str, str | None]:
        """The environment a server needs to notify this socket."""
        return {"NOTIFY_SOCKET": "@" + self.name}

    def messages(self) -> list[str]:
        """Every datagram received so far, oldest first."""
        with self._lock:
            return list(self._msgs)

    def statuses(self) -> list[str]:
        """The STATUS= texts received so far, oldest first."""
        return [line[7:] for m in self.messages() for line in m.splitlines()
                if line.startswith("STATUS=")]

    def status(self) -> str | None:
        """The newest STATUS= text (systemd's StatusText), or None."""
        st = self.statuses()
        return st[-1] if st else None

    def wait_status(self, prefix: str, timeout: float = 15.0) -> str:
        """Waits until the newest STATUS= text starts with prefix; returns it."""
        deadline = time.monotonic() + timeout
        while True:
            st = self.status()
            if st is not None and st.startswith(prefix):
                return st
            if time.monotonic() >= deadline:
                raise AssertionError("timed out after %gs waiting for a STATUS= starting with "
                                     "%r; the last one: %r" % (timeout, prefix, st))
            time.sleep(POLL)

    def close(self) -> None:
        self._closed = True
        self._reader.join(timeout=5)
        self.sock.close()

    def __enter__(self) -> "NotifySocket":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --- dpr-agent ----------------------------------------------------------------------

class AgentProc(Proc):
    """dpr-agent --config CONF that never talks to the host's systemd:
    DBUS_SYSTEM_BUS_ADDRESS names a socket that does not exist in bus_dir
    (sd-bus honours it), so the agent records the desired state and reports
    systemd as unreachable. Ready when it logged 'ready' and its control
    socket accepts; stopped with SIGTERM, after which it must exit 0."""

    ready_marker = ": ready"
    stop_signal = signal.SIGTERM
    clean_stop = True

    def __init__(self, conf: str, log_path: str, socket_path: str, bus_dir: str,
                 cwd: str | None = None):
        self.conf = conf
        self.socket_path = socket_path
        env = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=" + os.path.join(bus_dir, "no-bus")}
        super().__init__([AGENT, "--config", conf], log_path, env=env, cwd=cwd)

    def wait_ready(self, marker: str | None = None, timeout: float = START_TIMEOUT,
                   port: int | None = None, check: Callable[[], Any] | None = None) -> "Proc":
        return super().wait_ready(marker, timeout, port,
                                  check or (lambda: unix_accepts(self.socket_path)))


# --- several agents on the host forming a Raft cluster (tests/agent) -----------------

class RaftAgents:
    """n HostAgents forming one cluster: agent i listens on 127.0.0.<i+1>
    (the finder on one port shared by all, Raft on another), each with the
    others as raft.peers. No systemd: the finder and Raft are what run."""

    def __init__(self, base: str, n: int = 3, election_ms: int = 300, heartbeat_ms: int = 50,
                 down_ms: int = 10000, tls: str | None = None, metrics: bool = False):
        """tls: a dprctl pki directory holding ca.crt, ca.crl and nI.crt/.key
        for each agent: Raft between them over mutual TLS (agent.conf tls).
        metrics: each agent serves its metrics on its address, a free port
        (logged: promscrape.address(agent.proc))."""
        self.base = str(base)
        self.tls = tls
        self.election_ms, self.heartbeat_ms = election_ms, heartbeat_ms
        self.finder_port, self.raft_port = free_port(), free_port()
        # with TLS: every finder's TLS port (finder.tls_listen)
        self.finder_tls_port = free_port() if tls else None
        self.raft = ["127.0.0.%d:%d" % (i + 1, self.raft_port) for i in range(n)]
        extra = ('raft = {{ address = "{me}"; peers = [%s]; election_timeout_ms = %d; '
                 'heartbeat_timeout_ms = %d; node_down_after_ms = %d; }};\n'
                 % (", ".join('"%s"' % a for a in self.raft), election_ms, heartbeat_ms,
                    down_ms))
        self.agents = [HostAgent(os.path.join(str(base), "n%d" % (i + 1)),
                                 host="127.0.0.%d" % (i + 1), node="n%d" % (i + 1),
                                 finder_port=self.finder_port,
                                 finder_tls_port=self.finder_tls_port,
                                 extra=extra.format(me=self.raft[i]) +
                                 self.tls_conf("n%d" % (i + 1)) +
                                 ('metrics = { address = "127.0.0.%d:0"; };\n' % (i + 1)
                                  if metrics else ""))
                       for i in range(n)]

    def tls_conf(self, node: str) -> str:
        """agent.conf's tls section for node ("" without tls)."""
        if not self.tls:
            return ""
        return ('tls = {{ enabled = true; cert = "{d}/{n}.crt"; key = "{d}/{n}.key"; '
                'ca = "{d}/ca.crt"; crl = "{d}/ca.crl"; }};\n'.format(d=self.tls, n=node))

    def add_joiner(self) -> HostAgent:
        """One more agent (the next 127.0.0.x) configured to join the
        running cluster through the first ones (raft.join); not started."""
        i = len(self.agents)
        me = "127.0.0.%d:%d" % (i + 1, self.raft_port)
        extra = ('raft = { address = "%s"; peers = [%s]; join = true; election_timeout_ms = %d; '
                 'heartbeat_timeout_ms = %d; };\n'
                 % (me, ", ".join('"%s"' % a for a in self.raft), self.election_ms,
                    self.heartbeat_ms))
        a = HostAgent(os.path.join(self.base, "n%d" % (i + 1)), host="127.0.0.%d" % (i + 1),
                      node="n%d" % (i + 1), finder_port=self.finder_port,
                      finder_tls_port=self.finder_tls_port,
                      extra=extra + self.tls_conf("n%d" % (i + 1)))
        self.agents.append(a)
        return a

    def __getitem__(self, i: int) -> HostAgent:
        return self.agents[i]

    def __len__(self) -> int:
        return len(self.agents)

    @property
    def finders(self) -> str:
        """Every agent's finder, as cache-stores and clients take them."""
        return ",".join("%s:%d" % (a.host, self.finder_port) for a in self.agents)

    def start(self) -> "RaftAgents":
        for a in self.agents:
            a.start()
        return self

    def close(self) -> None:
        for a in self.agents:
            a.procs.stop_all()

    def running(self) -> list[HostAgent]:
        return [a for a in self.agents if a.proc is not None and a.proc.alive()]

    def leader(self, timeout: float = 20) -> HostAgent:
        """The one agent that serves the finder (waits for it)."""
        def serving():
            found = []
            for a in self.running():
                try:
                    if a.call("status")["finder"]["served_here"]:
                        found.append(a)
                except OSError:
                    pass
            return found[0] if len(found) == 1 else None
        return wait_for(serving, timeout=timeout, what="one agent serving the finder")

    def placeable(self, timeout: float = 20) -> HostAgent:
        """Waits until the leader knows what every running agent takes (its
        instance record: labels, max_instances), so that placement may use
        each; returns the leader."""
        leader = self.leader(timeout)
        want = {a.node for a in self.running()}

        def known():
            nodes = leader.call("nodes")["nodes"]
            return {n["name"] for n in nodes if n.get("max_instances") is not None} >= want
        wait_for(known, timeout=timeout, what="every node's instance record at the leader")
        return leader


# --- lazyfs: a disk that loses what was not fsynced -------------------------------

LAZYFS = binary("tests/lazyfs")
LAZYFS_CTL = ".lazyfs"


def lazyfs_unusable() -> str | None:
    """Why lazyfs (tests/lib/lazyfs.c) cannot run here, or None if it can."""
    if os.geteuid() != 0:
        return "lazyfs mounts a FUSE file system: needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse (the fuse kernel module)"
    if missing(LAZYFS):
        return "%s missing: build first (make; libfuse3-dev)" % LAZYFS
    return None


def _unescape_mount(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounted(path: str) -> bool:
    """True if path is a mount point now (/proc/self/mountinfo)."""
    path = os.path.realpath(path)
    try:
        with open("/proc/self/mountinfo") as f:
            return any(_unescape_mount(line.split()[4]) == path for line in f)
    except OSError:
        return False


def _umount(path: str, lazy: bool = False) -> bool:
    argv = ["umount"] + (["-l"] if lazy else []) + [path]
    return subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL).returncode == 0


def descendants(pid: int) -> list[int]:
    """The PIDs of every living descendant of pid (children first found
    first), from /proc/PID/task/*/children."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir("/proc/%d/task" % p)
        except OSError:
            continue
        for t in tasks:
            try:
                with open("/proc/%d/task/%s/children" % (p, t)) as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def _gone(pid: int) -> bool:
    """True once pid has exited (a zombie holds no files any more)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def kill_tree(proc: Proc) -> None:
    """SIGKILL to proc and every process it started (by PID): the parent is
    stopped first, so that it cannot start another one meanwhile."""
    if not proc.alive():
        return
    try:
        os.kill(proc.pid, signal.SIGSTOP)
    except ProcessLookupError:
        pass
    kids = descendants(proc.pid)
    for pid in kids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.kill(signal.SIGKILL)
    wait_for(lambda: all(_gone(pid) for pid in kids), timeout=STOP_GRACE,
             what="the processes started by %s (%s) to exit" % (proc.name, kids))


class LazyFs(Proc):
    """tests/lazyfs BACKING MOUNT: a FUSE mount whose unsynced writes,
    creates, renames and unlinks live only in lazyfs's memory, so that
    BACKING always holds exactly what was fsynced (file data by fsync of
    the file, directory entries by fsync of the directory; the rules are at
    the top of tests/lib/lazyfs.c). drop() is the power cut: every unsynced
    change is discarded at that instant and every later operation on the
    mount fails with EIO. Then kill what ran on it, unmount() (lazyfs exits)
    and mount BACKING again with a new LazyFs: it holds what survived.

    stop() (and Procs.stop_all) unmounts; kill() also detaches the mount,
    so that no mount outlives a test."""

    ready_marker = "]: mounted "

    def __init__(self, backing: str, mount: str, log_path: str, verbose: bool = False):
        self.backing = str(backing)
        self.mount = str(mount)
        os.makedirs(self.backing, exist_ok=True)
        os.makedirs(self.mount, exist_ok=True)
        assert not mounted(self.mount), "%s is mounted already" % self.mount
        self._unmounted = False
        super().__init__([LAZYFS] + (["-v"] if verbose else []) + [self.backing, self.mount],
                         log_path, name="lazyfs")

    def wait_ready(self, marker: str | None = None, timeout: float = START_TIMEOUT,
                   port: int | None = None, check: Callable[[], Any] | None = None) -> "Proc":
        return super().wait_ready(marker, timeout, port, check or (lambda: mounted(self.mount)))

    def path(self, *parts: str) -> str:
        """A path on the mount."""
        return os.path.join(self.mount, *parts)

    def status(self) -> dict[str, Any]:
        """The control file: {"state": "alive"|"dropped", "fsyncs": N,
        "dirsyncs": N, "unsynced_files": N, ..., "dropped_bytes": N}."""
        with open(self.path(LAZYFS_CTL)) as f:
            pairs = [line.split(None, 1) for line in f.read().splitlines() if line]
        return {k: (int(v) if v.isdigit() else v) for k, v in pairs}

    def drop(self) -> dict[str, Any]:
        """The power cut: discards every unsynced change now (returns when
        done) and returns the status, which counts what was dropped."""
        with open(self.path(LAZYFS_CTL), "w") as f:
            f.write("drop\n")
        st = self.status()
        assert st["state"] == "dropped", st
        return st

    def unmount(self, timeout: float = STOP_GRACE) -> int | None:
        """Unmounts (retrying while the mount is busy, then detaching it
        lazily) and waits for lazyfs to exit; returns its exit status. Once
        done, does nothing (the mount point may hold a newer lazyfs)."""
        if self._unmounted:
            return self.proc.poll()
        deadline = time.monotonic() + timeout
        while self.alive() and mounted(self.mount):
            if _umount(self.mount):
                break
            if time.monotonic() >= deadline:
                _umount(self.mount, lazy=True)
                break
            time.sleep(0.05)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            Proc.kill(self, signal.SIGKILL)
            rc = self.proc.wait(timeout=STOP_GRACE)
        if mounted(self.mount):  # ours: lazyfs died without unmounting
            _umount(self.mount) or _umount(self.mount, lazy=True)
        self._unmounted = True
        return rc

    def kill(self, sig: int = signal.SIGKILL) -> None:
        super().kill(sig)
        if sig == signal.SIGKILL:
            self.unmount()

    def stop(self, sig: int | None = None, grace: float = STOP_GRACE) -> int | None:
        if self.alive():
            self.stopped_by_us = True
        return self.unmount(grace)


def power_cut(fs: LazyFs, procs: Iterable[Proc]) -> dict[str, Any]:
    """Cuts the power of a machine whose disk is fs: drops every unsynced
    change, SIGKILLs procs and every process they started, unmounts fs.
    Returns fs's status at the cut (what was dropped)."""
    st = fs.drop()
    for p in procs:
        kill_tree(p)
    fs.unmount()
    return st
