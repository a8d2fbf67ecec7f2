"""Process harness for the dpr-kv tests: start dpr-finder and dpr-kv on
loopback with port 0 and temporary directories, find their ports in their
logs, talk raw RESP, and kill by PID what was started."""
import os
import signal
import socket
import struct
import subprocess
import time

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DPR_BUILD", "build")
BUILD_DIR = BUILD if os.path.isabs(BUILD) else os.path.join(ROOT, BUILD)
FINDER = os.path.join(BUILD_DIR, "dpr-finder")
KV = os.path.join(BUILD_DIR, "dpr-kv")
START_TIMEOUT = 15.0


class Proc:
    """A started server process whose stderr goes to a log file."""

    ready_marker = None  # text before "ADDR:PORT" in the log

    def __init__(self, argv, log_path, env=None):
        self.argv = argv
        self.log_path = log_path
        self.log = open(log_path, "ab")
        full_env = dict(os.environ)
        for k in list(full_env):
            if k.startswith("DPR_KV_") or k in ("STATE_DIRECTORY", "NOTIFY_SOCKET",
                                                "WATCHDOG_USEC"):
                del full_env[k]
        full_env.update(env or {})
        self.log_start = self.log.tell()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=self.log, env=full_env)
        self.port = None

    @property
    def pid(self):
        return self.proc.pid

    def output(self):
        with open(self.log_path, "rb") as f:
            f.seek(self.log_start)
            return f.read().decode("utf-8", "replace")

    def wait_ready(self, timeout=START_TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.output().splitlines():
                i = line.find(self.ready_marker)
                if i >= 0:
                    self.port = int(line[i + len(self.ready_marker):].rsplit(":", 1)[1])
                    return self
            if self.proc.poll() is not None:
                raise AssertionError("%s exited %d before listening:\n%s"
                                     % (self.argv[0], self.proc.returncode, self.output()))
            time.sleep(0.02)
        raise AssertionError("%s did not start:\n%s" % (self.argv[0], self.output()))

    def wait_exit(self, timeout=30.0):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("%s did not exit:\n%s" % (self.argv[0], self.output()))

    def signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def alive(self):
        return self.proc.poll() is None

    def cleanup(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        try:
            self.proc.wait(timeout=10)
        finally:
            self.log.close()


class Finder(Proc):
    ready_marker = "dpr-finder listening on "

    def __init__(self, state_dir, log_path, port=0):
        super().__init__([FINDER, "--listen", "127.0.0.1:%d" % port, "--state", state_dir],
                         log_path)
        self.state_dir = state_dir

    def client(self):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10)

    def sync(self):
        """(world-line, max-version, {worker: cut version})"""
        wl, maxv, flat = self.client().execute_command("DPR.SYNC")
        cut = {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
        return int(wl), int(maxv), cut


class Kv(Proc):
    ready_marker = "listening on "

    def __init__(self, finder_port, worker, state_dir, log_path, args=(), env=None):
        argv = [KV, "--listen", "127.0.0.1:0", "--finder", "127.0.0.1:%d" % finder_port,
                "--worker", str(worker), "--dir", state_dir, *args]
        super().__init__(argv, log_path, env)
        self.worker = worker
        self.state_dir = state_dir

    def client(self, **kw):
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=10, **kw)

    def info_dpr(self):
        return {k: v for k, v in self.client().info("dpr").items()}

    def checkpoints(self):
        return sorted(int(n[5:-3]) for n in os.listdir(self.state_dir)
                      if n.startswith("ckpt-") and n.endswith(".kv"))


def run_versioned(client, *commands):
    """Runs the commands and INFO dpr in one pipelined round trip and returns
    the version the commands ran in. (Reading dpr_version in a second round
    trip races with the checkpoint timer: it may name the next, still empty
    open version, which an idle server never checkpoints.)"""
    p = client.pipeline(transaction=False)
    for cmd in commands:
        p.execute_command(*cmd)
    p.info("dpr")
    return p.execute()[-1]["dpr_version"]


def wait_for(pred, timeout=15.0, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s (last: %r)" % (what, last))


# --- raw RESP ------------------------------------------------------------------

def encode(*args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        if isinstance(a, int):
            a = str(a).encode()
        elif isinstance(a, str):
            a = a.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


class RespError(Exception):
    pass


class Raw:
    """A plain socket speaking RESP: for framing and malformed input."""

    def __init__(self, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def _line(self):
        while b"\r\n" not in self.buf:
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        """One reply: bytes, int, None, list, or RespError for '-' replies."""
        line = self._line()
        t, rest = line[:1], line[1:]
        if t == b"+":
            return rest
        if t == b"-":
            return RespError(rest.decode())
        if t == b":":
            return int(rest)
        if t == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                self._fill()
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if t == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise AssertionError("bad reply type %r" % line)

    def call(self, *args):
        self.send(encode(*args))
        return self.read()

    def closed_by_peer(self, timeout=5.0):
        """True if the server closes the connection (EOF) within timeout."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False


# --- DPR batch headers (libdpr wire format, docs/protocol.md) --------------------

def request_header(world_line, batch_id, op_count, version_lb=0, deps=(),
                   session=(1, 2)):
    hdr = struct.pack("<BBHIQQQQQII", 1, 0x51, 0, op_count, session[0], session[1],
                      world_line, version_lb, batch_id, len(deps), 0)
    for w, v in deps:
        hdr += struct.pack("<QQ", w, v)
    return hdr


def parse_response_header(b):
    fmt, kind, status, _r8, op_count, wl, batch_id, nver, _r32 = \
        struct.unpack_from("<BBBBIQQII", b, 0)
    assert fmt == 1 and kind == 0x52, b
    versions = list(struct.unpack_from("<%dQ" % nver, b, 32))
    assert len(b) == 32 + 8 * nver
    return {"status": status, "op_count": op_count, "world_line": wl,
            "batch_id": batch_id, "versions": versions}


def batch(raw, world_line, batch_id, commands, version_lb=0, deps=()):
    """Sends DPR.BATCH + commands; returns (response header dict, replies)."""
    data = encode("DPR.BATCH", request_header(world_line, batch_id, len(commands),
                                              version_lb, deps))
    data += b"".join(encode(*c) for c in commands)
    raw.send(data)
    reply = raw.read()
    if isinstance(reply, RespError):
        raise reply
    hdr, replies = reply
    return parse_response_header(hdr), replies
