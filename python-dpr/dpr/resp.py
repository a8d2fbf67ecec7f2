"""A small RESP2 connection: a TCP socket and a hiredis.Reader.

Used for dpr-kv shards and the finder. Commands are sequences of str, bytes
or int; replies come back as hiredis builds them (bytes, int, None, lists,
and ``hiredis.ReplyError`` instances for ``-ERR`` replies, which
:meth:`Connection.call` raises as :class:`dpr.errors.ResponseError`).

Pipelining: :meth:`Connection.send` any number of commands, then
:meth:`Connection.read` one reply per command, in order.
"""
from __future__ import annotations

import select
import socket
import ssl
from typing import Any, Iterable, Sequence

import hiredis

from .errors import ConnectionError, ProtocolError, ResponseError, TimeoutError

__all__ = ["Connection", "encode_command", "parse_address"]

Arg = "str | bytes | int | float"


def parse_address(addr: str) -> tuple[str, int]:
    """'HOST:PORT' (or '[v6]:PORT') -> (host, port); ValueError if malformed."""
    if not isinstance(addr, str) or ":" not in addr:
        raise ValueError("address %r: expected HOST:PORT, e.g. 127.0.0.1:7001" % (addr,))
    host, _, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        p = int(port)
    except ValueError:
        p = -1
    if not host or not 0 < p < 65536:
        raise ValueError("address %r: expected HOST:PORT with a port in 1..65535" % addr)
    return host, p


def _arg(a: Any) -> bytes:
    if isinstance(a, bytes):
        return a
    if isinstance(a, str):
        return a.encode("utf-8")
    if isinstance(a, (bytearray, memoryview)):
        return bytes(a)
    if isinstance(a, bool):
        raise TypeError("bool is not a valid command argument (use 0/1 or a string)")
    if isinstance(a, (int, float)):
        return repr(a).encode()
    raise TypeError("command arguments must be str, bytes, int or float, not %s"
                    % type(a).__name__)


def encode_command(args: Sequence[Any]) -> bytes:
    """RESP encoding of one command (an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = _arg(a)
        out.append(b"$%d\r\n" % len(b))
        out.append(b)
        out.append(b"\r\n")
    return b"".join(out)


class Connection:
    """One RESP connection. Not thread-safe: use one per thread.

    ``ssl_context`` (an :class:`ssl.SSLContext`, e.g. from :func:`tls_context`)
    makes it a TLS connection; the server's certificate is checked against
    the host of ``address`` when the context checks host names.

    ``timeout`` bounds each socket operation (connect, a send, waiting for a
    reply); on a timeout or any I/O error the connection is closed and
    :class:`dpr.TimeoutError` or :class:`dpr.ConnectionError` is raised,
    since the stream position is then unknown.
    """

    def __init__(self, address: str, timeout: float = 10.0, connect_timeout: float | None = None,
                 ssl_context: ssl.SSLContext | None = None):
        self.address = address
        self.ssl_context = ssl_context
        self.host, self.port = parse_address(address)
        self.timeout = timeout
        self.connect_timeout = timeout if connect_timeout is None else connect_timeout
        self._sock: socket.socket | None = None
        self._reader: hiredis.Reader | None = None
        # what the server said about itself when its owner connected (the
        # client keeps a shard's INFO dpr fields here); {} until then
        self.peer_info: dict[str, str] = {}

    def __repr__(self) -> str:
        return "<dpr.resp.Connection %s %s>" % (self.address,
                                                 "open" if self._sock else "closed")

    @property
    def connected(self) -> bool:
        return self._sock is not None

    def connect(self) -> None:
        """Opens the connection if it is closed."""
        if self._sock is not None:
            return
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except socket.timeout as e:
            raise TimeoutError("connecting to %s timed out after %.1fs"
                               % (self.address, self.connect_timeout)) from e
        except OSError as e:
            raise ConnectionError("cannot connect to %s: %s" % (self.address,
                                                                e.strerror or e)) from e
        if self.ssl_context is not None:
            try:
                sock = self.ssl_context.wrap_socket(sock, server_hostname=self.host)
            except OSError as e:  # ssl.SSLError, a timeout: OSErrors too
                sock.close()
                raise ConnectionError("TLS with %s failed: %s" % (self.address, e)) from e
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.timeout)
        self._sock = sock
        self._reader = hiredis.Reader()

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
        self._sock = None
        self._reader = None

    def __enter__(self) -> "Connection":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fail(self, what: str, e: BaseException) -> None:
        self.close()
        if isinstance(e, socket.timeout):
            raise TimeoutError("%s %s timed out after %.1fs" % (what, self.address,
                                                                 self.timeout)) from e
        raise ConnectionError("%s %s failed: %s" % (what, self.address,
                                                    getattr(e, "strerror", None) or e)) from e

    def check_alive(self) -> bool:
        """Closes the connection if the peer went away while it was idle (the
        server restarted, say); returns whether it is still open. Never
        blocks. Unsolicited bytes also count as a broken stream."""
        if self._sock is None:
            return False
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            readable = [self._sock]
        if not readable or (isinstance(self._sock, ssl.SSLSocket) and self._tls_idle()):
            return True
        self.close()  # EOF, an error, or bytes nobody asked for
        return False

    def _tls_idle(self) -> bool:
        """A readable TLS socket may only hold TLS records that carry no data
        (a key update): true when that is all (nothing read, not closed)."""
        assert isinstance(self._sock, ssl.SSLSocket)
        self._sock.setblocking(False)
        try:
            self._sock.recv(1)
            return False  # data nobody asked for, or EOF
        except ssl.SSLWantReadError:
            return True
        except OSError:
            return False
        finally:
            self._sock.settimeout(self.timeout)

    def send_raw(self, data: bytes) -> None:
        self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except OSError as e:  # socket.timeout is an OSError
            self._fail("sending to", e)

    def send(self, *commands: Sequence[Any]) -> None:
        """Sends commands (each a sequence of arguments) without waiting."""
        self.send_raw(b"".join(encode_command(c) for c in commands))

    def read(self) -> Any:
        """The next reply. Error replies are returned as hiredis.ReplyError
        objects (not raised), also inside arrays."""
        if self._sock is None or self._reader is None:
            raise ConnectionError("connection to %s is closed" % self.address)
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as e:
                self.close()
                raise ProtocolError("bad reply from %s: %s" % (self.address, e)) from e
            if reply is not False:
                return reply
            try:
                chunk = self._sock.recv(65536)
            except OSError as e:
                self._fail("reading from", e)
            if not chunk:
                self.close()
                raise ConnectionError("%s closed the connection" % self.address)
            self._reader.feed(chunk)

    def call(self, *args: Any) -> Any:
        """Sends one command and returns its reply; an error reply is raised
        as dpr.ResponseError."""
        self.send(args)
        reply = self.read()
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    def pipeline(self, commands: Iterable[Sequence[Any]]) -> list[Any]:
        """Sends every command at once, then returns their replies (error
        replies as hiredis.ReplyError objects, not raised)."""
        cmds = list(commands)
        if not cmds:
            return []
        self.send(*cmds)
        return [self.read() for _ in cmds]



def tls_context(ca_file: str, cert_file: str | None = None, key_file: str | None = None,
                check_hostname: bool = True) -> ssl.SSLContext:
    """An SSLContext for DPR servers of a cluster (docs/tls.md): the cluster
    CA's certificate (ca_file), and the application's certificate and key
    (`dprctl pki issue client`) when the servers ask for one. The server's
    certificate must name the host connected to (its DNS/IP SANs) unless
    check_hostname is false."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = check_hostname
    if cert_file:
        ctx.load_cert_chain(cert_file, key_file)
    return ctx
