"""Wire helpers for the dpr-kv tests: a raw RESP socket (for framing and
malformed input), DPR batch headers (libdpr wire format, docs/protocol.md),
and the version a pipelined write ran in. Processes: tests/lib/dprtest.py."""
import socket
import struct


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

REQUEST_FORMAT = 2  # DPR_WIRE_REQUEST_FORMAT: the header names the session's domain
DEFAULT_DOMAIN = "default"  # DPR_DOMAIN_DEFAULT


def domain_id(name):
    """dpr_domain_id (libdpr/include/dpr/domain.h): FNV-1a 64 of the name,
    0 becoming 1."""
    h = 14695981039346656037
    for byte in name.encode():
        h = ((h ^ byte) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h or 1


def request_header(world_line, batch_id, op_count, version_lb=0, deps=(),
                   session=(1, 2), domain=DEFAULT_DOMAIN, fmt=REQUEST_FORMAT):
    """A request header of wire format 2 (64 fixed bytes, the domain id at
    offset 56). domain: a name, or an int taken as the id itself (0 makes a
    malformed header). fmt=1 gives the 56-byte header of before domains,
    which a shard refuses."""
    did = domain if isinstance(domain, int) else domain_id(domain)
    hdr = struct.pack("<BBHIQQQQQII", fmt, 0x51, 0, op_count, session[0], session[1],
                      world_line, version_lb, batch_id, len(deps), 0)
    if fmt != 1:
        hdr += struct.pack("<Q", did)
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


def batch(raw, world_line, batch_id, commands, version_lb=0, deps=(), domain=DEFAULT_DOMAIN):
    """Sends DPR.BATCH + commands; returns (response header dict, replies)."""
    data = encode("DPR.BATCH", request_header(world_line, batch_id, len(commands),
                                              version_lb, deps, domain=domain))
    data += b"".join(encode(*c) for c in commands)
    raw.send(data)
    reply = raw.read()
    if isinstance(reply, RespError):
        raise reply
    hdr, replies = reply
    return parse_response_header(hdr), replies


def fill_until_refused(client, size=1000, limit=100000):
    """SETs k0, k1, ... of `size` bytes until one is refused: (how many were
    accepted, the error's text). AssertionError if none is within limit."""
    n = 0
    try:
        while n < limit:
            client.set("k%d" % n, "x" * size)
            n += 1
    except Exception as e:  # redis.ResponseError; kvwire does not import redis
        return n, str(e)
    raise AssertionError("%d SETs of %d bytes accepted" % (limit, size))
