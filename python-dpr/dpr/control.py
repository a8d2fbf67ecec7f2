"""Transport for dpr-agent's control socket (docs/control-api.md).

Newline-delimited JSON over a Unix stream socket, or over TCP when the agent
also serves its control API there (agent.conf ``control.listen``; pass
``address="HOST:PORT"``; docs/discovery.md). Each request is
``{"v": 1, "id": N, "op": ..., "args": {...}}``; the reply carries the same
id and either ``"ok": true, "result": ...`` or ``"ok": false, "error": ...``,
which is raised as the matching exception of dpr.mgmt_errors.

    conn = ControlConnection()              # path: argument, $DPR_SOCKET, default
    conn = ControlConnection(address="10.0.0.1:7403")   # the same over TCP
    result = conn.request("status")
    with conn.events() as stream:           # a second connection, a stream
        for event in stream: ...

Most code uses dpr.connect() (dpr.cluster) instead of this module.
"""
from __future__ import annotations

import errno
import itertools
import json
import os
import select
import socket
import threading
import time
from typing import Any, Iterator, Mapping

from .mgmt_errors import (AgentError, AgentProtocolError, AgentUnavailable, PermissionDenied,
                          error_from_reply)

__all__ = ["ControlConnection", "EventStream", "Event", "DEFAULT_SOCKET", "PROTOCOL_VERSION",
           "socket_path", "TCP"]

DEFAULT_SOCKET = "/run/dpr/agent.sock"
PROTOCOL_VERSION = 1
MAX_LINE = 1 << 20          # the agent refuses longer lines; so do we
DEFAULT_TIMEOUT = 30.0      # seconds for one reply
CONNECT_TIMEOUT = 5.0
_HINT_RUNNING = "is dpr-agent running? (systemctl status dpr-agent)"
TCP = "tcp"                 # the origin of a TCP address (``address=``)


def socket_path(path: str | os.PathLike | None = None) -> tuple[str, str]:
    """(path, where it came from): the argument, then $DPR_SOCKET, then
    /run/dpr/agent.sock."""
    if path is not None and os.fspath(path) != "":
        return os.fspath(path), "argument"
    env = os.environ.get("DPR_SOCKET")
    if env:
        return env, "$DPR_SOCKET"
    return DEFAULT_SOCKET, "default"


def _at(path: str, origin: str) -> str:
    if origin == TCP:
        return "%s (TCP)" % path
    return "%s (from $DPR_SOCKET)" % path if origin == "$DPR_SOCKET" else path


def tcp_address(address: str) -> str:
    """A checked ``HOST:PORT`` (or ``[v6]:PORT``) of a control API over
    TCP; ValueError otherwise."""
    from .resp import parse_address
    if not isinstance(address, str):
        raise ValueError("address must be a 'HOST:PORT' string, not %s"
                         % type(address).__name__)
    parse_address(address)
    return address


def tcp_connect_error(address: str, e: OSError) -> AgentError:
    """The exception for a failed TCP connect to an agent's control API."""
    where = _at(address, TCP)
    en = getattr(e, "errno", None)
    hint = ("is dpr-agent running there, with control.listen set to this address in its "
            "agent.conf?")
    if isinstance(e, socket.gaierror):
        return AgentUnavailable("cannot reach dpr-agent at %s: cannot resolve the host: %s"
                                % (where, e.strerror or e))
    if isinstance(e, socket.timeout) or en == errno.ETIMEDOUT:
        return AgentUnavailable("cannot reach dpr-agent at %s: no answer to connect within "
                                "the timeout — a firewall, or the wrong address? (%s)"
                                % (where, hint))
    if en == errno.ECONNREFUSED:
        return AgentUnavailable("cannot reach dpr-agent at %s: connection refused — %s"
                                % (where, hint))
    if en in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return AgentUnavailable("cannot reach dpr-agent at %s: %s — check the address and "
                                "the route to that node" % (where, e.strerror or e))
    return AgentUnavailable("cannot reach dpr-agent at %s: %s — %s"
                            % (where, e.strerror or e, hint))


def connect_error(path: str, origin: str, e: OSError) -> AgentError:
    """The exception (with a message that says what to do) for a failed
    connect() to the control socket."""
    where = _at(path, origin)
    en = e.errno
    if isinstance(e, socket.timeout) or en == errno.ETIMEDOUT:
        return AgentUnavailable("cannot reach dpr-agent at %s: no answer to connect within "
                                "the timeout — is it stuck? (journalctl -u dpr-agent)" % where)
    if en == errno.ENOENT:
        d = os.path.dirname(path) or "."
        if not os.path.isdir(d):
            return AgentUnavailable("cannot reach dpr-agent at %s: no such file (%s does not "
                                    "exist) — %s" % (where, d, _HINT_RUNNING))
        return AgentUnavailable("cannot reach dpr-agent at %s: no such file — %s"
                                % (where, _HINT_RUNNING))
    if en == errno.ECONNREFUSED and not _is_socket(path):
        return AgentUnavailable("cannot reach dpr-agent at %s: not a socket — is that the "
                                "agent's control socket? (config control.socket)" % where)
    if en == errno.ECONNREFUSED:
        return AgentUnavailable("cannot reach dpr-agent at %s: connection refused (the socket "
                                "exists but nobody listens) — %s" % (where, _HINT_RUNNING))
    if en in (errno.EACCES, errno.EPERM):
        return PermissionDenied("cannot open %s: permission denied — run as root or as a "
                                "member of group dpr (e.g. sudo usermod -aG dpr $USER, then "
                                "log in again)" % where, code="permission_denied")
    if en == errno.ENOTSOCK or en == errno.ECONNRESET:
        return AgentUnavailable("cannot reach dpr-agent at %s: %s — is that the agent's "
                                "control socket? (config control.socket)"
                                % (where, e.strerror or e))
    return AgentUnavailable("cannot reach dpr-agent at %s: %s — %s"
                            % (where, e.strerror or e, _HINT_RUNNING))


def _is_socket(path: str) -> bool:
    import stat
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return True  # cannot tell: do not claim otherwise


class _LineSocket:
    """A connected Unix (or, origin TCP, TCP) socket read line by line with
    deadlines."""

    def __init__(self, path: str, origin: str, connect_timeout: float):
        self.path, self.origin = path, origin
        self.where = _at(path, origin)
        self.buf = bytearray()
        if origin == TCP:
            self.sock: socket.socket | None = _tcp_socket(path, connect_timeout)
            return
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        s.settimeout(connect_timeout)
        try:
            s.connect(path)
        except OSError as e:
            s.close()
            raise connect_error(path, origin, e) from None
        self.sock = s

    def close(self) -> None:
        s, self.sock = self.sock, None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    @property
    def closed(self) -> bool:
        return self.sock is None

    def closed_by_agent(self) -> bool:
        """Whether the agent has closed this connection while it sat idle
        between requests. On a request/reply connection nothing arrives
        unasked, so anything readable now is the agent's closing notice
        (idle timeout, input budget; docs/control-api.md) or the end of the
        stream."""
        if self.sock is None or self.buf:
            return self.sock is None
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def refusal(self) -> dict | None:
        """After a failed send: the error line the agent may have written
        before closing (permission_denied, a limit), or None."""
        try:
            line = self.read_line(time.monotonic() + 1.0)
        except (EOFError, OSError, AgentError):
            return None
        if not line:
            return None
        try:
            reply = _decode(line, self.where)
        except AgentError:
            return None
        return reply if reply.get("ok") is False else None

    def send_line(self, obj: Any) -> None:
        data = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
        if len(data) > MAX_LINE:
            raise AgentProtocolError("request too large (%d bytes; the control protocol "
                                     "allows %d per line)" % (len(data), MAX_LINE),
                                     code="bad_request")
        assert self.sock is not None
        self.sock.settimeout(DEFAULT_TIMEOUT)
        self.sock.sendall(data)

    def read_line(self, deadline: float | None) -> bytes | None:
        """One line without its newline; None when the timeout passed first.
        Raises EOFError when the agent closed the connection."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 1]
                return line
            if len(self.buf) > MAX_LINE:
                raise AgentProtocolError("dpr-agent at %s sent a line longer than %d bytes"
                                         % (self.where, MAX_LINE), code="bad_reply")
            if self.sock is None:
                raise EOFError
            if deadline is None:
                self.sock.settimeout(None)
            else:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            except InterruptedError:
                continue
            if not chunk:
                raise EOFError
            self.buf += chunk


def _tcp_socket(address: str, connect_timeout: float) -> socket.socket:
    from .resp import parse_address
    host, port = parse_address(address)
    try:
        s = socket.create_connection((host, port), timeout=connect_timeout)
    except OSError as e:
        raise tcp_connect_error(address, e) from None
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError:
        pass
    return s


def _decode(line: bytes, where: str) -> dict:
    try:
        msg = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise AgentProtocolError("dpr-agent at %s sent a line that is not JSON (%s): %r"
                                 % (where, e, line[:200]), code="bad_reply") from None
    if not isinstance(msg, dict):
        raise AgentProtocolError("dpr-agent at %s sent %s instead of a JSON object"
                                 % (where, type(msg).__name__), code="bad_reply")
    v = msg.get("v", PROTOCOL_VERSION)
    if v != PROTOCOL_VERSION:
        raise AgentProtocolError("dpr-agent at %s speaks control protocol version %r; this "
                                 "dpr package speaks %d — install matching versions"
                                 % (where, v, PROTOCOL_VERSION), code="unsupported_version")
    return msg


class ControlConnection:
    """One connection to dpr-agent's control socket; requests are answered
    in order. Thread-safe (requests are serialized). When the connection
    broke or a reply timed out, the next request reconnects.

    ``address="HOST:PORT"`` connects over TCP instead (an agent whose
    ``control.listen`` is set; the same protocol); it cannot be given
    together with ``path``."""

    def __init__(self, path: str | os.PathLike | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 lazy: bool = False, address: str | None = None):
        if address is not None:
            if path is not None:
                raise ValueError("give the control socket's path or a TCP address, not both")
            self.path, self.origin = tcp_address(address), TCP
        else:
            self.path, self.origin = socket_path(path)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._sock: _LineSocket | None = None
        if not lazy:
            self._sock = _LineSocket(self.path, self.origin, connect_timeout)

    @property
    def where(self) -> str:
        return _at(self.path, self.origin)

    @property
    def address(self) -> str | None:
        """The TCP address connected to, or None on the Unix socket."""
        return self.path if self.origin == TCP else None

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None

    def __enter__(self) -> "ControlConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<dpr ControlConnection %s%s>" % (self.where, "" if self._sock else " (closed)")

    def request(self, op: str, args: dict | None = None, *,
                timeout: float | None = None) -> Any:
        """Sends one request and returns its ``result``; raises the mapped
        exception for an error reply, AgentUnavailable when the agent cannot
        be reached or does not answer within ``timeout`` seconds."""
        msg: dict = {"v": PROTOCOL_VERSION, "id": None, "op": op}
        if args is not None:
            msg["args"] = args
        timeout = self.timeout if timeout is None else timeout
        with self._lock:
            if self._sock is not None and self._sock.closed_by_agent():
                # the agent closed it while we were idle: nothing of this
                # request was sent yet, so a fresh connection is safe
                self._sock.close()
                self._sock = None
            if self._sock is None:
                self._sock = _LineSocket(self.path, self.origin, self.connect_timeout)
            sock = self._sock
            rid = next(self._ids)
            msg["id"] = rid
            try:
                try:
                    sock.send_line(msg)
                except (BrokenPipeError, ConnectionResetError) as e:
                    # the agent may have refused us with an error line first
                    # (permission_denied) and closed: read it if it is there
                    reply = sock.refusal()
                    if reply is not None:
                        raise error_from_reply(reply.get("error")) from None
                    raise AgentUnavailable("dpr-agent at %s closed the connection (%s) — %s"
                                           % (self.where, e.strerror or e, _HINT_RUNNING)
                                           ) from None
                except socket.timeout:
                    raise AgentUnavailable("dpr-agent at %s does not read its socket — is it "
                                           "stuck? (journalctl -u dpr-agent)" % self.where
                                           ) from None
                deadline = time.monotonic() + timeout if timeout is not None else None
                while True:
                    try:
                        line = sock.read_line(deadline)
                    except EOFError:
                        raise AgentUnavailable("dpr-agent at %s closed the connection before "
                                               "answering %r — was it restarted? "
                                               "(journalctl -u dpr-agent)"
                                               % (self.where, op)) from None
                    except OSError as e:
                        raise AgentUnavailable("connection to dpr-agent at %s broke: %s"
                                               % (self.where, e.strerror or e)) from None
                    if line is None:
                        raise AgentUnavailable("dpr-agent at %s did not answer %r within %gs "
                                               "— is it stuck? (journalctl -u dpr-agent)"
                                               % (self.where, op, timeout))
                    if not line.strip():
                        continue
                    reply = _decode(line, self.where)
                    if "event" in reply and "ok" not in reply:
                        continue  # not ours (only a stream carries events)
                    if reply.get("id") != rid:
                        if reply.get("ok") is False and reply.get("id") is None:
                            # an error about the connection itself (e.g.
                            # permission_denied right after connect)
                            raise error_from_reply(reply.get("error"))
                        raise AgentProtocolError(
                            "dpr-agent at %s answered request id %r while id %r was expected"
                            % (self.where, reply.get("id"), rid), code="bad_reply")
                    break
            except BaseException:
                # the connection's state is unknown now: start afresh next time
                sock.close()
                self._sock = None
                raise
        return _result(reply, op, self.where)

    def events(self, *, timeout: float | None = None) -> "EventStream":
        """Opens a second connection carrying the ``events`` stream."""
        return EventStream(self.path, self.origin, timeout=self.timeout if timeout is None
                           else timeout, connect_timeout=self.connect_timeout)


def _result(reply: dict, op: str, where: str) -> Any:
    ok = reply.get("ok")
    if ok is True:
        return reply.get("result")
    if ok is False:
        raise error_from_reply(reply.get("error"))
    raise AgentProtocolError("dpr-agent at %s sent a reply to %r without \"ok\": %r"
                             % (where, op, reply), code="bad_reply")


class Event:
    """One state change from the ``events`` stream.

    ``seq``, ``time`` (an ISO 8601 string), ``type`` (``instance``,
    ``apply``, ``delete``, ``finder``, ``node``, ...), ``name`` (instance or
    deployment, when the event has one) and ``data`` (the whole event
    object); other fields are read with ``event["field"]`` or
    ``event.get("field")``."""

    __slots__ = ("data",)

    def __init__(self, data: dict):
        self.data = data

    seq = property(lambda self: self.data.get("seq"))
    time = property(lambda self: self.data.get("time"))
    type = property(lambda self: self.data.get("type"))
    name = property(lambda self: self.data.get("name"))

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def __repr__(self) -> str:
        return "Event(%r)" % (self.data,)

    def __str__(self) -> str:
        return format_event(self.data)


def format_event(d: Mapping[str, Any]) -> str:
    """One line for people, e.g.
    ``2026-11-25T08:00:00.123Z #17 instance kv-0 active/running ready restarts=1 pid=4242``."""
    parts = [str(d.get("time", "-")), "#%s" % d.get("seq", "?"), str(d.get("type", "?"))]
    if d.get("name") is not None:
        parts.append(str(d["name"]))
    rest = dict(d)
    for k in ("time", "seq", "type", "name"):
        rest.pop(k, None)
    if "active_state" in rest or "sub_state" in rest:
        parts.append("%s/%s" % (rest.pop("active_state", "?"), rest.pop("sub_state", "?")))
    if "ready" in rest:
        parts.append("ready" if rest.pop("ready") else "not-ready")
    plan = rest.pop("plan", None)
    if isinstance(plan, dict):
        for key, sign in (("created", "+"), ("updated", "~"), ("deleted", "-")):
            for n in plan.get(key) or []:
                parts.append(sign + str(n))
    if "main_pid" in rest:
        rest["pid"] = rest.pop("main_pid")
    for k, v in rest.items():
        if v is None:
            continue
        if isinstance(v, (dict, list)):
            v = json.dumps(v, separators=(",", ":"))
        parts.append("%s=%s" % (k, v))
    return " ".join(parts)


class EventStream:
    """The agent's ``events`` stream on a connection of its own. Iterate it
    (blocks for the next event), or call ``next(timeout)`` (None when
    nothing came in time). Close it (or use ``with``) when done.
    ``address="HOST:PORT"`` opens it over TCP instead of the Unix socket."""

    def __init__(self, path: str | None = None, origin: str = "argument", *,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = CONNECT_TIMEOUT,
                 address: str | None = None):
        if address is not None:
            if path is not None:
                raise ValueError("give the control socket's path or a TCP address, not both")
            path, origin = tcp_address(address), TCP
        elif path is None:
            path, origin = socket_path(None)
        self.where = _at(path, origin)
        self._sock: _LineSocket | None = _LineSocket(path, origin, connect_timeout)
        try:
            try:
                self._sock.send_line({"v": PROTOCOL_VERSION, "id": 1, "op": "events",
                                      "args": {}})
            except (BrokenPipeError, ConnectionResetError):
                # refused at connect (permission_denied, a limit): say why
                reply = self._sock.refusal()
                if reply is not None:
                    raise error_from_reply(reply.get("error")) from None
                raise
            deadline = time.monotonic() + timeout
            while True:
                try:
                    line = self._sock.read_line(deadline)
                except EOFError:
                    raise AgentUnavailable("dpr-agent at %s closed the connection before "
                                           "answering 'events'" % self.where) from None
                if line is None:
                    raise AgentUnavailable("dpr-agent at %s did not answer 'events' within %gs"
                                           % (self.where, timeout))
                if line.strip():
                    break
            reply = _decode(line, self.where)
            result = _result(reply, "events", self.where)
            if not isinstance(result, dict) or result.get("stream") != "events":
                raise AgentProtocolError("dpr-agent at %s answered 'events' with %r instead of "
                                         "a stream" % (self.where, result), code="bad_reply")
        except (BrokenPipeError, ConnectionResetError):
            self.close()
            raise AgentUnavailable("dpr-agent at %s closed the connection" % self.where
                                   ) from None
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        s, self._sock = self._sock, None
        if s is not None:
            s.close()

    @property
    def closed(self) -> bool:
        return self._sock is None

    def __enter__(self) -> "EventStream":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def fileno(self) -> int:
        if self._sock is None or self._sock.sock is None:
            raise ValueError("the event stream is closed")
        return self._sock.sock.fileno()

    def next(self, timeout: float | None = None) -> Event | None:
        """The next event; None when ``timeout`` seconds passed first (None:
        wait for ever). Raises AgentUnavailable when the agent closed the
        stream (it was restarted, or this reader was too slow)."""
        if self._sock is None:
            raise AgentUnavailable("the event stream from dpr-agent at %s is closed"
                                   % self.where)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                line = self._sock.read_line(deadline)
            except (EOFError, OSError) as e:
                self.close()
                why = "" if isinstance(e, EOFError) else " (%s)" % (e.strerror or e)
                raise AgentUnavailable("dpr-agent at %s closed the event stream%s — it was "
                                       "restarted, or this reader fell behind; open a new one"
                                       % (self.where, why)) from None
            if line is None:
                return None
            if not line.strip():
                continue
            msg = _decode(line, self.where)
            ev = msg.get("event")
            if isinstance(ev, dict):
                return Event(ev)
            if msg.get("ok") is False:
                self.close()
                raise error_from_reply(msg.get("error"))
            # anything else on a stream is ignored (forward compatible)

    def __iter__(self) -> Iterator[Event]:
        while True:
            ev = self.next(None)
            if ev is not None:
                yield ev
