"""DPR client sessions over dpr-kv shards.

    client = dpr.Client(shards=["127.0.0.1:7001", "127.0.0.1:7002"],
                        finder="127.0.0.1:7000")   # domain "default"
    with client.session() as s:
        s.set("a", 1)
        s.incr("b")
        s.wait_committed()          # everything so far survives any crash

A key goes to shard ``dpr.route.shard_of(key, len(shards))`` (the same
function as libdpr's dpr_route_shard), so every client must list the shards
in the same order. Every operation is sent as a DPR batch (``DPR.BATCH``,
docs/protocol.md) and gets a sequence number (1, 2, 3, ...). The bookkeeping
(dependencies, commit point, which operations a rollback lost) is done by
libdpr's C session through ctypes, so it follows exactly the same rules as
C clients.

Domains: a client and its sessions belong to one DPR domain (``domain``,
"default" when not given; in a cluster, the deployment's name, which
``dpr.Cluster.client(name)`` passes). The domain has its own world-lines,
cut and recovery: a crash or restart in another domain never rolls back a
session of this one. Every finder command names the domain (``DPR.SYNC
<domain>``, ``DPR.PREFIX <domain> <world-line>``) and every batch header
carries the domain's id, so a shard of another domain refuses the batch. A
session spans one domain: to work with two deployments, use two clients.

Worker ids: shard i's DPR worker id is ``workers[i]`` when given, else it is
read from the shard's ``INFO dpr`` (field ``dpr_worker_id``) the first time
it is needed. Every new connection to a shard checks that field, so a shard
list in the wrong order or a wrong address is an error, not silent
misrouting.

Layouts: a deployment that is resized moves its keys to the shards that
own them under the new shard count (docs/dpr-kv.md, "Layouts and
resizing"). A shard answers a key it does not own with ``MOVED <shard>
<host:port> <epoch>`` and, while a resize is in progress, every key with
``TRYAGAIN``; either way nothing of the batch ran. The session then forgets
the batch (libdpr's dpr_session_cancel_batch), and for MOVED fetches the
new layout (``DPR.LAYOUT``: epoch and every shard's address) from the
shards, re-routes and sends the operations again under the same sequence
numbers; for TRYAGAIN it waits and retries, up to ``resize_timeout``. A
shard that cannot be reached also makes the session look for a newer
layout (a shard removed by a resize is gone for good). So a client started
before a resize keeps working after it.

Rollbacks: when a shard refuses a batch (the domain has moved to a newer
world-line), when a shard's connection breaks while a batch is in flight
(the session waits up to ``rollback_timeout`` for the domain's world-line to
move on), or when ``commit_point()`` sees a newer world-line, the session
asks the finder for the cut the domain rolled back to (``DPR.PREFIX`` of
the session's world-line), lets libdpr decide which operations survived,
moves to the new world-line and raises :class:`dpr.RollbackError`.

Planned restarts (a shard stopped with SIGTERM: ``systemctl restart``, an
update, a move) roll nothing back: the stopping shard answers batches
``TRYAGAIN`` (retried as during a resize) and comes back on the same
world-line; the session reconnects within ``reconnect_timeout``. A batch
whose connection the stopping shard closed before answering it never ran:
when the shard answers again as another process (``dpr_run_id``) on the
session's world-line, the batch is sent again (docs/dpr-kv.md, "SIGTERM").
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import ssl
import threading
import time
import weakref
from typing import Any, Sequence

import hiredis

from . import _libdpr as L
from .errors import (ConnectionError, DiscoveryError, DprError, ProtocolError, ResponseError,
                     RollbackError, SessionClosedError, SessionInDoubtError, TimeoutError)
from .resp import Connection, encode_command, parse_address
from .route import shard_of, to_bytes
from .url import parse_url

__all__ = ["Client", "Session", "RollbackInfo"]

_POLL = 0.01  # seconds between finder polls while waiting
_REFRESH_AFTER = 1.0  # seconds a shard is unreachable before other shards are asked

# dpr/domain.h: 1..63 bytes of [a-z0-9._-], starting with a letter or digit
_DOMAIN_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,%d}" % (L.DOMAIN_MAX - 1))


def check_domain(name: str | None) -> str:
    """The domain name a client uses: ``name``, or "default" for None.
    Raises ValueError for a name that is not a valid DPR domain name (the
    rule of libdpr's dpr_domain_valid), TypeError for a non-string."""
    if name is None:
        return L.DOMAIN_DEFAULT
    if not isinstance(name, str):
        raise TypeError("domain must be a string, not %s" % type(name).__name__)
    if not _DOMAIN_RE.fullmatch(name):
        raise ValueError("invalid domain name %r: expected 1 to %d characters a-z, 0-9, '.', "
                         "'_' or '-', starting with a letter or a digit"
                         % (name, L.DOMAIN_MAX))
    return name


def _parse_info(text: bytes) -> dict[str, str]:
    out = {}
    for line in text.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#") and ":" in line:
            k, _, v = line.partition(":")
            out[k.strip()] = v.strip()
    return out


def _flat_cut(flat: Any, what: str) -> dict[int, int]:
    if not isinstance(flat, list) or len(flat) % 2:
        raise ProtocolError("finder: %s is not a flat [worker, version, ...] array: %r"
                            % (what, flat))
    try:
        return {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
    except (TypeError, ValueError) as e:
        raise ProtocolError("finder: bad %s %r" % (what, flat)) from e


class _Redirect(Exception):
    """A batch was refused before it ran: MOVED (moved=True; address: the
    owner a shard named) or TRYAGAIN. The session cancelled it."""

    def __init__(self, text: str, moved: bool, address: str | None):
        super().__init__(text)
        self.text = text
        self.moved = moved
        self.address = address


class RollbackInfo:
    """One rollback a session went through (see Session.rollbacks)."""

    __slots__ = ("old_world_line", "world_line", "lost_from", "lost_count", "last_seq_before",
                 "reason")

    def __init__(self, old_world_line: int, world_line: int, lost_from: int, lost_count: int,
                 last_seq_before: int, reason: str):
        self.old_world_line = old_world_line
        self.world_line = world_line
        self.lost_from = lost_from
        self.lost_count = lost_count
        self.last_seq_before = last_seq_before
        self.reason = reason

    def lost(self, seq: int) -> bool:
        return self.lost_count > 0 and self.lost_from <= seq <= self.last_seq_before

    def __repr__(self) -> str:
        return ("RollbackInfo(world_line %d -> %d, lost %d from %d, last seq %d)"
                % (self.old_world_line, self.world_line, self.lost_count, self.lost_from,
                   self.last_seq_before))


def _finder_list(finder: str | Sequence[str]) -> list[str]:
    """The finder addresses of a Client: one "HOST:PORT", "H:P,H:P,...", or
    a list of them."""
    items = finder.split(",") if isinstance(finder, str) else list(finder)
    out = [str(a).strip() for a in items]
    if not out or len(out) > 16:
        raise ValueError("finder: 1 to 16 addresses, got %d" % len(out))
    for a in out:
        parse_address(a)
    return out


class Client:
    """A dpr-kv cluster: its shards (in routing order) and its finder.

    Parameters:
      shards: "HOST:PORT" of every shard; shard i holds the keys
        ``dpr.route.shard_of(key, len(shards)) == i``.
      finder: "HOST:PORT" of the DPR finder; in a cluster, the finders of
        any agents: a list of "HOST:PORT" or one string "H:P,H:P,...". The
        agent that does not run the finder names the one that does
        (NOTLEADER); one that knows no leader yet answers TRYAGAIN; an
        unreachable one is skipped.
      workers: the DPR worker id of each shard (optional; by default read
        from each shard's INFO).
      timeout: seconds to wait for any one reply.
      connect_timeout: seconds for one connection attempt.
      reconnect_timeout: how long an operation keeps trying to reach a shard
        (or the finder) that is down, e.g. while it restarts, before raising
        dpr.ConnectionError.
      rollback_timeout: how long an operation whose shard connection broke
        mid-batch waits for the cluster to start a new world-line.
      resize_timeout: how long an operation waits (retrying) while its
        deployment is being resized (its shards answer TRYAGAIN).
      domain: the DPR domain of the shards (dpr-kv --domain; in a cluster,
        the deployment's name). None means "default", dpr-kv's default. An
        invalid name raises ValueError at once; shards whose INFO names
        another domain are refused (dpr.DprError) when first connected.
      ssl_context: an ssl.SSLContext: every connection (shards, finder,
        agents) is TLS (docs/tls.md); dpr.tls_context(ca, cert, key) makes
        one from the cluster CA and the application's certificate. A refused
        handshake raises dpr.ConnectionError.

    A Client holds no connections itself; it may be shared by threads. Each
    Session has its own connections and must be used by one thread at a time.
    ``with Client(...) as c:`` (or ``c.close()``) closes every session the
    client made that is still open; a closed client makes no new sessions.
    """

    def __init__(self, shards: Sequence[str], finder: str | Sequence[str],
                 workers: Sequence[int] | None = None,
                 *, timeout: float = 10.0, connect_timeout: float = 2.0,
                 reconnect_timeout: float = 15.0, rollback_timeout: float = 30.0,
                 resize_timeout: float = 120.0, domain: str | None = None,
                 ssl_context: "ssl.SSLContext | None" = None):
        self.domain = check_domain(domain)
        self.ssl_context = ssl_context
        if isinstance(shards, str):
            raise TypeError("shards must be a list of 'HOST:PORT' strings, not one string")
        self.shards = list(shards)
        if not self.shards:
            raise ValueError("a Client needs at least one shard")
        for a in self.shards:
            parse_address(a)
        self.finders = _finder_list(finder)
        self.finder = ",".join(self.finders)
        if workers is not None:
            workers = [int(w) for w in workers]
            if len(workers) != len(self.shards):
                raise ValueError("workers has %d ids for %d shards"
                                 % (len(workers), len(self.shards)))
            if len(set(workers)) != len(workers):
                raise ValueError("workers %r: every shard needs its own worker id" % workers)
        self._workers: list[int | None] = list(workers) if workers else [None] * len(self.shards)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.reconnect_timeout = reconnect_timeout
        self.rollback_timeout = rollback_timeout
        self.resize_timeout = resize_timeout
        self.layout_epoch = 0  # of the layout self.shards follows (0: as given)
        self._lock = threading.Lock()
        # a cluster's agents (their finder ports) and the deployment's name:
        # asked for the shards' endpoints again when a shard stops answering
        self._agents: list[str] = []
        self._deployment: str | None = None
        self._sessions: weakref.WeakSet[Session] = weakref.WeakSet()
        self.closed = False

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> "Client":
        """A Client from a DPR URL (dpr.url): ``dpr://HOST[:PORT][,...]/DEPLOYMENT``
        (the agents' finder ports, asked for the deployment's shards as in
        :meth:`for_deployment`), ``dpr://FINDER[,...]/?shards=H:P,H:P`` (no
        agent), ``dprs://...`` for TLS (``ca=``, ``cert=``, ``key=`` or the
        ``ssl_context`` keyword), and ``timeout=`` etc. in the query. Other
        keyword arguments go to Client(). A bad URL, or an option given both
        in the URL and as a keyword, raises ValueError."""
        u = parse_url(url)
        both = sorted(set(u.options) & set(kwargs))
        if both:
            raise ValueError("%s: %s given both in the URL and as a keyword argument"
                             % (url, ", ".join(both)))
        kwargs.update(u.options)
        if kwargs.get("ssl_context") is not None:
            if not u.tls:
                raise ValueError("%s: an ssl_context with a dpr:// URL (plain TCP): use "
                                 "dprs:// for TLS" % url)
            if u.tls_files:
                raise ValueError("%s: TLS files in the URL and an ssl_context keyword: give "
                                 "one of them" % url)
        elif u.tls:
            if "ca" not in u.tls_files:
                raise ValueError("%s: dprs:// needs the cluster CA: ca=PATH in the URL or an "
                                 "ssl_context keyword" % url)
            from .resp import tls_context
            kwargs["ssl_context"] = tls_context(u.tls_files["ca"], u.tls_files.get("cert"),
                                                u.tls_files.get("key"))
        if u.shards is not None:
            return cls(u.shards, u.hosts, **kwargs)
        assert u.deployment is not None
        return cls.for_deployment(u.deployment, u.hosts, **kwargs)

    @classmethod
    def for_deployment(cls, name: str, agents: str | Sequence[str], **kwargs: Any) -> "Client":
        """A Client for deployment ``name`` of a cluster, knowing only its
        agents: their finder ports ("HOST:PORT" list, or "H:P,H:P,..."). Any
        agent tells the deployment's shard endpoints and worker ids
        (``DPR.CLUSTER.ENDPOINTS``); the agents are also its finders. When a
        shard stops answering, the client asks the agents (and the other
        shards) again, so a shard that moved to another node (its node was
        lost) is followed. Other keyword arguments go to Client()."""
        agents = _finder_list(agents)
        got = _endpoints_from(agents, name, kwargs.get("timeout", 10.0),
                              kwargs.get("connect_timeout", 2.0), strict=True,
                              ssl_context=kwargs.get("ssl_context"))
        assert got is not None  # (strict: raises instead)
        epoch, endpoints, workers = got
        missing = [i for i, e in enumerate(endpoints) if e is None]
        if missing:
            raise ConnectionError("deployment %r: no endpoint known yet for shard(s) %s (a "
                                  "node down, or not started yet); try again"
                                  % (name, ", ".join(str(i) for i in missing)))
        kwargs.setdefault("domain", name)
        c = cls([e for e in endpoints if e is not None], agents, workers, **kwargs)
        c.layout_epoch = epoch
        c._agents, c._deployment = agents, name
        return c

    @classmethod
    def discover(cls, cluster: str, deployment: str, domain: str = "local",
                 timeout: float | None = None, nameserver: str | None = None, *,
                 interfaces: Sequence[str] | None = None, **kwargs: Any) -> "Client":
        """A Client for ``deployment`` of ``cluster``, its agents found by
        DNS-SD (docs/discovery.md): their ``_dpr-agent._tcp`` records in
        ``domain`` (``local``: mDNS, limited to the addresses in
        ``interfaces`` when given; another domain: unicast DNS-SD, asking
        ``nameserver`` "IP[:PORT]" or the system's resolver), for at most
        ``timeout`` seconds. Their ``finder=`` addresses go to
        :meth:`for_deployment`. A single agent (``state=single``: it runs
        its cluster alone) does not answer for the cluster's shards: its
        deployment's ``_dpr-cs._tcp`` records give them instead. Raises
        dpr.DiscoveryError when no agent of the cluster is found (naming
        what was seen) or the single agent's records do not hold every
        shard. Other keyword arguments go to Client(); since ``timeout`` is
        the browse's here, ``reply_timeout`` is Client's ``timeout`` (seconds
        for any one reply)."""
        from . import discover as D
        t = D.DEFAULT_TIMEOUT if timeout is None else timeout
        if "reply_timeout" in kwargs:
            kwargs["timeout"] = kwargs.pop("reply_timeout")
        agents, more = D.find_agents(cluster, domain, t, nameserver, interfaces=interfaces,
                                     also=[D.CACHESTORE])
        finders = []
        for a in agents:
            ep = a.endpoint
            if ep and ep not in finders:
                try:
                    parse_address(ep)
                except ValueError:
                    continue
                finders.append(ep)
        if not finders:
            raise DiscoveryError("the dpr-agent records of cluster %r (%s) hold no usable "
                                 "finder= address" % (cluster, ", ".join(a.name for a in agents)))
        if len(agents) == 1 and agents[0].state == "single":
            return cls._from_records(cluster, deployment, finders[0], more[D.CACHESTORE],
                                     kwargs)
        return cls.for_deployment(deployment, finders[:16], **kwargs)

    @classmethod
    def _from_records(cls, cluster: str, deployment: str, finder: str, records: Sequence[Any],
                      kwargs: dict) -> "Client":
        """The Client of a single agent's deployment from its instances'
        ``_dpr-cs._tcp`` records (shard, addr=, worker=)."""
        mine = [r for r in records if r.deployment == deployment]
        if not mine:
            seen = sorted({str(r.deployment) for r in records})
            raise DiscoveryError("cluster %r: no instance records (_dpr-cs._tcp) of deployment "
                                 "%r (seen: %s); its instances publish them once running"
                                 % (cluster, deployment, ", ".join(seen) or "none"))
        n = mine[0].shards
        by_shard = {r.shard: r for r in mine if r.shards == n}
        if not isinstance(n, int) or n < 1 or set(by_shard) != set(range(n)):
            raise DiscoveryError("cluster %r, deployment %r: instance records for shard(s) %s "
                                 "of %s found; wait until every instance runs"
                                 % (cluster, deployment,
                                    ", ".join(str(r.shard) for r in mine) or "none", n))
        recs = [by_shard[i] for i in range(n)]
        if any(r.worker is None or not r.endpoint for r in recs):
            raise DiscoveryError("cluster %r, deployment %r: an instance record lacks worker= "
                                 "or addr=" % (cluster, deployment))
        kwargs.setdefault("domain", deployment)
        kwargs.setdefault("workers", [r.worker for r in recs])
        return cls([r.endpoint for r in recs], finder, **kwargs)

    def __repr__(self) -> str:
        return "dpr.Client(shards=%r, finder=%r, domain=%r)" % (self.shards, self.finder,
                                                                 self.domain)

    def shard_of(self, key: str | bytes | int) -> int:
        """Index of the shard that holds key."""
        return shard_of(key, len(self.shards))

    def _known_worker(self, i: int) -> int | None:
        with self._lock:
            return self._workers[i]

    def _learn_worker(self, i: int, worker: int) -> None:
        with self._lock:
            known = self._workers[i]
            if known is None:
                if worker in self._workers:
                    raise DprError("shards %s and %s both report DPR worker id %d: check "
                                   "the shard list" % (self.shards[self._workers.index(worker)],
                                                       self.shards[i], worker))
                self._workers[i] = worker

    def _adopt_layout(self, epoch: int, shards: Sequence[str | bytes]) -> bool:
        """Follows a layout a shard gave (DPR.LAYOUT) if it is newer than
        the one followed. Worker ids of addresses that stay are kept."""
        addrs = [a.decode() if isinstance(a, bytes) else str(a) for a in shards]
        if not addrs:
            return False
        for a in addrs:
            parse_address(a)
        with self._lock:
            if epoch <= self.layout_epoch:
                return False
            known = dict(zip(self.shards, self._workers))
            self.shards = addrs
            self._workers = [known.get(a) for a in addrs]
            self.layout_epoch = epoch
        return True

    def refresh_layout(self, hint: str | None = None) -> bool:
        """Asks the shards (``hint`` first, e.g. the address a MOVED named)
        for their layout and follows the newest; True if it changed."""
        with self._lock:
            candidates = ([hint] if hint else []) + list(self.shards)
        best: tuple[int, list[Any]] | None = None
        for a in dict.fromkeys(candidates):  # each once, in order
            try:
                with Connection(a, self.timeout, self.connect_timeout, self.ssl_context) as c:
                    r = c.call("DPR.LAYOUT")
            except (ConnectionError, ResponseError):
                continue
            if (isinstance(r, list) and len(r) == 3 and isinstance(r[0], int)
                    and isinstance(r[2], list) and (best is None or r[0] > best[0])):
                best = (r[0], r[2])
        if self._agents and self._deployment:
            # the cluster's view: the endpoints its agents know (a shard that
            # moved, when no other shard can tell)
            got = _endpoints_from(self._agents, self._deployment, self.timeout,
                                  self.connect_timeout, strict=False,
                                  ssl_context=self.ssl_context)
            if (got is not None and all(got[1]) and (best is None or got[0] > best[0])):
                best = (got[0], got[1])
        return best is not None and best[0] > 0 and self._adopt_layout(best[0], best[1])

    def worker_ids(self) -> list[int]:
        """The worker id of every shard, asking shards' INFO where unknown."""
        for i in range(len(self.shards)):
            if self._known_worker(i) is None:
                conn = Connection(self.shards[i], self.timeout, self.connect_timeout,
                                  self.ssl_context)
                try:
                    _connect_shard(self, conn, i, time.monotonic() + self.reconnect_timeout)
                finally:
                    conn.close()
        return [w for w in self._workers if w is not None]

    def session(self) -> "Session":
        """A new session (use it as a context manager, or call close())."""
        if self.closed:
            raise DprError("the client is closed")
        s = Session(self)
        self._sessions.add(s)
        return s

    def close(self) -> None:
        """Closes every session of this client that is still open
        (idempotent); session() refuses afterwards."""
        self.closed = True
        for s in list(self._sessions):
            s.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- plain reads, outside any session (tests, tools) ------------------

    def info(self, shard: int) -> dict[str, str]:
        """INFO dpr of a shard, as a dict of strings."""
        with Connection(self.shards[shard], self.timeout, self.connect_timeout,
                        self.ssl_context) as c:
            return _parse_info(c.call("INFO", "dpr"))


def _endpoints_from(agents: Sequence[str], name: str, timeout: float, connect_timeout: float,
                    strict: bool, ssl_context: "ssl.SSLContext | None" = None
                    ) -> tuple[int, list[str | None], list[int]] | None:
    """(layout epoch, endpoint or None per shard, worker per shard) of
    deployment name, from the first agent that answers. None when none does
    (strict: raises dpr.ConnectionError, or dpr.ResponseError for the
    agent's refusal, e.g. an unknown deployment)."""
    last: Exception | None = None
    for a in agents:
        try:
            with Connection(a, timeout, connect_timeout, ssl_context) as c:
                r = c.call("DPR.CLUSTER.ENDPOINTS", name)
        except ConnectionError as e:
            last = e
            continue
        except ResponseError as e:
            if strict and not str(e).startswith(("NOTLEADER", "TRYAGAIN")):
                raise
            last = e
            continue
        if (not isinstance(r, list) or len(r) != 3 or not isinstance(r[0], int)
                or not isinstance(r[1], list) or not isinstance(r[2], list)
                or len(r[1]) != len(r[2]) or not r[1]
                or not all(isinstance(w, int) for w in r[2])):
            last = ProtocolError("%s: DPR.CLUSTER.ENDPOINTS answered %r" % (a, r))
            continue
        eps = [e.decode() if isinstance(e, bytes) else None for e in r[1]]
        return r[0], eps, list(r[2])
    if strict:
        raise ConnectionError("no agent of %s told the endpoints of deployment %r: %s"
                              % (",".join(agents), name, last))
    return None


def _connect_shard(client: Client, conn: Connection, i: int, deadline: float) -> None:
    """Connects conn to shard i, retrying until deadline, and checks (or
    learns) the worker id in its INFO, and checks its domain there (a shard
    that does not tell its domain is taken at its word)."""
    last: Exception | None = None
    while True:
        try:
            conn.connect()
            info = _parse_info(conn.call("INFO", "dpr"))
            break
        except ConnectionError as e:  # includes TimeoutError
            conn.close()
            last = e
        except ResponseError as e:  # e.g. "max number of clients reached"
            conn.close()
            last = e
        if time.monotonic() >= deadline:
            raise ConnectionError("shard %d (%s) unreachable for %.1fs: %s"
                                  % (i, client.shards[i], client.reconnect_timeout, last))
        time.sleep(0.05)
    wid = info.get("dpr_worker_id")
    if wid is None or not wid.isdigit():
        conn.close()
        raise ProtocolError("%s is not a dpr-kv shard (no dpr_worker_id in INFO dpr)"
                            % client.shards[i])
    worker = int(wid)
    domain = info.get("dpr_domain")
    if domain is not None and domain != client.domain:
        conn.close()
        raise DprError("shard %d (%s) belongs to DPR domain %r, not to the client's domain %r"
                       % (i, client.shards[i], domain, client.domain))
    conn.peer_info = info
    known = client._known_worker(i)
    if known is None:
        client._learn_worker(i, worker)
    elif known != worker:
        conn.close()
        raise DprError("shard %d (%s) is DPR worker %d, expected worker %d: the shard list "
                       "must be in the same order as the workers" % (i, client.shards[i],
                                                                     worker, known))


class Session:
    """A DPR session: operations numbered 1, 2, 3, ... whose survivors after
    any failure are a prefix.

    Operations (``set``, ``get``, ``incr``, ``delete``, ``execute``) return
    the Redis reply (``b"OK"``, bytes or None, an int). An error reply raises
    :class:`dpr.ResponseError`; the operation still ran and has its
    sequence number. Any operation, ``commit_point()`` and
    ``wait_committed()`` can raise :class:`dpr.RollbackError`; the session
    then continues on the new world-line.

    Batches are strictly ordered (libdpr's strict mode): an operation is sent
    only when the previous one was answered, so the operations that survive
    a rollback are always a prefix.

    A session belongs to its client's domain (``domain``): its world-line
    and cut are that domain's, and only failures in that domain roll it
    back.
    """

    def __init__(self, client: Client):
        self.client = client
        self._closed = True
        L.get_lib()  # LibdprNotFound (a DprError and an ImportError) if missing
        self._c = L.Session()
        self._finder_at = 0  # index into client.finders, or -1: self._leader
        self._leader = ""
        self._finder = Connection(client.finders[0], client.timeout, client.connect_timeout,
                                  client.ssl_context)
        self._shards = [Connection(a, client.timeout, client.connect_timeout, client.ssl_context)
                        for a in client.shards]
        self._shard_addrs = list(client.shards)
        self._in_doubt = False  # a batch was abandoned; a rollback must settle it
        self._refused_by = 0  # newest world-line a refusal named, not yet rolled back to
        self.rollbacks: list[RollbackInfo] = []
        try:
            wl, _, _ = self._sync(time.monotonic() + client.reconnect_timeout)
        except BaseException:
            self._finder.close()  # (the one connection _sync may have opened)
            raise
        raw = os.urandom(16)
        sid = L.SessionId(int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:], "big"))
        r = L.lib.dpr_session_init(ctypes.byref(self._c), sid, L.domain_id(client.domain), wl, 0)
        if r < 0:
            self._finder.close()
            raise DprError("dpr_session_init: %s" % L.errname(r))
        self._closed = False

    # --- life cycle ---------------------------------------------------------

    def close(self) -> None:
        """Closes the connections and frees the C session (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for c in self._shards:
            c.close()
        self._finder.close()
        L.lib.dpr_session_free(ctypes.byref(self._c))

    def __enter__(self) -> "Session":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - never raise from a finalizer
            pass

    def __repr__(self) -> str:
        if self._closed:
            return "<dpr.Session closed>"
        return ("<dpr.Session %s domain %s, world-line %d, last seq %d, commit point %d>"
                % (self.id, self.domain, self.world_line, self.last_seq, self._c.commit_point))

    def _check_open(self) -> None:
        if self._closed:
            raise SessionClosedError("the session is closed")

    # --- state ----------------------------------------------------------------

    @property
    def id(self) -> str:
        """The 128-bit session id, as 32 hex digits."""
        return "%016x%016x" % (self._c.id.hi, self._c.id.lo)

    @property
    def domain(self) -> str:
        """The session's DPR domain (its client's)."""
        return self.client.domain

    @property
    def world_line(self) -> int:
        """The session's world-line, one of its domain's."""
        return self._c.world_line

    @property
    def last_seq(self) -> int:
        """Sequence number of the last operation issued (0: none yet)."""
        return self._c.next_seq - 1

    @property
    def next_seq(self) -> int:
        """Sequence number the next operation will get."""
        return self._c.next_seq

    @property
    def known_commit_point(self) -> int:
        """The commit point as of the last commit_point() call (no I/O)."""
        return self._c.commit_point

    def is_committed(self, seq: int) -> bool:
        """Whether operation seq is committed under the last cut seen (no
        I/O; call commit_point() to refresh). False for lost operations."""
        self._check_open()
        return bool(L.lib.dpr_session_is_committed(ctypes.byref(self._c), seq))

    def lost(self, seq: int) -> bool:
        """Whether a rollback reported operation seq lost."""
        return any(r.lost(seq) for r in self.rollbacks)

    # --- operations -------------------------------------------------------------

    def set(self, key: str | bytes | int, value: Any) -> Any:
        """SET key value; returns b"OK"."""
        return self.execute("SET", key, value)

    def get(self, key: str | bytes | int) -> bytes | None:
        """GET key."""
        return self.execute("GET", key)

    def incr(self, key: str | bytes | int, amount: int = 1) -> int:
        """INCR key (INCRBY when amount != 1); returns the new value."""
        if amount == 1:
            return self.execute("INCR", key)
        return self.execute("INCRBY", key, int(amount))

    def delete(self, key: str | bytes | int) -> int:
        """DEL key; returns how many keys were removed (0 or 1)."""
        return self.execute("DEL", key)

    def exists(self, key: str | bytes | int) -> int:
        return self.execute("EXISTS", key)

    def execute(self, *args: Any, key: str | bytes | int | None = None) -> Any:
        """Runs one command as one DPR operation, on the shard of ``key``
        (default: the command's first argument after its name)."""
        if len(args) < 2 and key is None:
            raise ValueError("execute(%r): a command without a key needs key=..." % (args,))
        k = to_bytes(args[1] if key is None else key)
        reply = self._batch(k, [args])[0]
        if isinstance(reply, hiredis.ReplyError):
            raise ResponseError(str(reply))
        return reply

    def execute_many(self, key: str | bytes | int, commands: Sequence[Sequence[Any]]) -> list[Any]:
        """Runs several commands as one DPR batch on the shard of ``key``
        (so their keys should share it, e.g. through a hash tag
        ``"user:{42}:name"``). They get consecutive sequence numbers. Returns
        their replies; error replies are returned as dpr.ResponseError
        objects, not raised."""
        if not commands:
            return []
        replies = self._batch(to_bytes(key), list(commands))
        return [ResponseError(str(r)) if isinstance(r, hiredis.ReplyError) else r
                for r in replies]

    # --- the batch round trip -------------------------------------------------

    def _follow_layout(self) -> None:
        """Connections for the client's current shard list (kept for the
        addresses that stay)."""
        addrs = list(self.client.shards)
        if addrs == self._shard_addrs:
            return
        old = dict(zip(self._shard_addrs, self._shards))
        self._shards = [old.pop(a) if a in old else Connection(a, self.client.timeout,
                                                               self.client.connect_timeout,
                                                               self.client.ssl_context)
                        for a in addrs]
        for c in old.values():
            c.close()
        self._shard_addrs = addrs

    def _shard(self, i: int, deadline: float | None = None) -> Connection:
        """An open connection to shard i (reconnecting while it restarts,
        until deadline: by default reconnect_timeout from now)."""
        conn = self._shards[i]
        if conn.check_alive():
            return conn
        if deadline is None:
            deadline = time.monotonic() + self.client.reconnect_timeout
        _connect_shard(self.client, conn, i, deadline)
        return conn

    def _shard_or_moved(self, i: int) -> Connection:
        """_shard(i), asking the other shards for a newer layout after every
        second the shard stays unreachable: a shard removed by a resize
        never comes back, and one that moved to another node (its node was
        lost) answers at another address; a newer layout routes there."""
        deadline = time.monotonic() + self.client.reconnect_timeout
        while True:
            try:
                return self._shard(i, min(deadline, time.monotonic() + _REFRESH_AFTER))
            except ConnectionError as e:
                if self.client.refresh_layout():
                    raise _Redirect("shard %d (%s) unreachable; the layout changed"
                                    % (i, self._shard_addrs[i]), True, None) from None
                if time.monotonic() >= deadline:
                    raise e

    def _batch(self, key: bytes, commands: list[Sequence[Any]]) -> list[Any]:
        """Runs commands as one batch on the shard of key, following the
        deployment's layout: a batch refused before it ran (MOVED,
        TRYAGAIN) is cancelled and sent again."""
        self._check_open()
        payload = b"".join(encode_command(c) for c in commands)  # bad arguments raise here
        deadline = time.monotonic() + self.client.resize_timeout
        delay = 0.01
        while True:
            self._follow_layout()
            i = self.client.shard_of(key)
            try:
                return self._batch_once(i, commands, payload)
            except _Redirect as r:
                if r.moved:
                    self.client.refresh_layout(r.address)
                    self._follow_layout()
                    if self.client.shard_of(key) != i:
                        continue  # another shard owns it now: at once
                if time.monotonic() >= deadline:
                    raise TimeoutError("%s for %.1fs (resize_timeout): %s"
                                       % ("the deployment was being resized" if not r.moved
                                          else "the shards kept redirecting",
                                          self.client.resize_timeout, r.text)) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    def _batch_once(self, i: int, commands: list[Sequence[Any]], payload: bytes) -> list[Any]:
        self._settle()
        conn = self._shard_or_moved(i)
        worker = self.client._known_worker(i)
        assert worker is not None
        hdr = L.RequestHdr()
        first = ctypes.c_uint64(0)
        r = L.lib.dpr_session_begin_batch(ctypes.byref(self._c), worker, len(commands),
                                          ctypes.byref(hdr), ctypes.byref(first))
        if r < 0:
            raise DprError("cannot start a batch: dpr_session_begin_batch: %s" % L.errname(r))
        where = "shard %d (%s, worker %d)" % (i, conn.address, worker)
        # from here on the batch must be resolved or abandoned, whatever happens
        try:
            header = L.encode_request(hdr, self._c.deps)
            conn.send_raw(encode_command(("DPR.BATCH", header)) + payload)
            reply = conn.read()
        except (ConnectionError, ProtocolError) as e:
            run_id = conn.peer_info.get("dpr_run_id")
            conn.close()
            if self._stopped_on_purpose(i, e, run_id):
                # the shard's planned stop answered every batch it ran before
                # its end of stream: this one never ran
                r = L.lib.dpr_session_cancel_batch(ctypes.byref(self._c), hdr.batch_id)
                if r == 0:
                    raise _Redirect("%s: %s; it restarted on the same world-line (a planned "
                                    "restart): batch %d never ran" % (where, e, hdr.batch_id),
                                    False, None) from None
            self._abandon(hdr.batch_id)
            self._settle(wait=True, reason="%s: %s" % (where, e))
            raise  # not reached: _settle raises (an abandoned operation is always lost)
        except BaseException:  # KeyboardInterrupt, ...: the answer is lost to us
            conn.close()
            self._abandon(hdr.batch_id)
            raise
        if isinstance(reply, hiredis.ReplyError) and str(reply).startswith(("MOVED ",
                                                                          "TRYAGAIN ")):
            # refused before any of it ran: as if it had never been begun
            r = L.lib.dpr_session_cancel_batch(ctypes.byref(self._c), hdr.batch_id)
            if r < 0:
                conn.close()
                self._abandon(hdr.batch_id)
                raise ProtocolError("%s: cannot cancel batch %d: %s"
                                    % (where, hdr.batch_id, L.errname(r)))
            text = str(reply)
            parts = text.split()
            raise _Redirect("%s: %s" % (where, text), text.startswith("MOVED "),
                            parts[2] if text.startswith("MOVED ") and len(parts) >= 3 else None)
        if isinstance(reply, hiredis.ReplyError):
            # the batch as a whole was not executed (e.g. "ERR DPR.BATCH not
            # executed: ..."); libdpr can only count it as in doubt
            conn.close()
            self._abandon(hdr.batch_id)
            raise SessionInDoubtError(
                "%s rejected batch %d: %s. Its operations (from %d) are in doubt; the "
                "session cannot continue until a rollback: open a new session"
                % (where, hdr.batch_id, reply, first.value))
        if (not isinstance(reply, list) or len(reply) != 2 or not isinstance(reply[0], bytes)
                or not isinstance(reply[1], list)):
            conn.close()
            self._abandon(hdr.batch_id)
            raise ProtocolError("%s answered DPR.BATCH with %r, expected [header, replies]"
                                % (where, reply))
        try:
            rh, _buf = L.decode_response(reply[0])
        except ValueError as e:
            conn.close()
            self._abandon(hdr.batch_id)
            raise ProtocolError("%s: %s" % (where, e)) from e
        r = L.lib.dpr_session_resolve(ctypes.byref(self._c), ctypes.byref(rh))
        if r == -errno.ESTALE:
            self._refused_by = max(self._refused_by, rh.world_line)
            self._settle(reason="%s refused batch %d: the cluster is on world-line %d"
                                % (where, hdr.batch_id, rh.world_line))
            raise DprError("batch %d was refused but no rollback followed" % hdr.batch_id)
        if r < 0:
            conn.close()
            self._abandon(hdr.batch_id)
            raise ProtocolError("%s: answer to batch %d does not match it: %s"
                                % (where, hdr.batch_id, L.errname(r)))
        if len(reply[1]) != len(commands):
            raise ProtocolError("%s: %d replies for %d operations" % (where, len(reply[1]),
                                                                      len(commands)))
        return reply[1]

    def _stopped_on_purpose(self, i: int, e: Exception, run_id: str | None) -> bool:
        """Shard i closed the connection (e) while a batch was in flight: did
        it stop on purpose? Then it comes back (reconnecting up to
        reconnect_timeout) as another process (another dpr_run_id) on the
        session's world-line: a crash restart would have moved the
        world-line, and a planned stop writes every answer of a batch it ran
        before its end of stream (docs/dpr-kv.md, "SIGTERM"). Not for a
        timeout: the client gave up on an answer that may have come."""
        if not run_id or not isinstance(e, ConnectionError) or isinstance(e, TimeoutError):
            return False
        try:
            conn = self._shard(i)
        except DprError:
            return False
        info = conn.peer_info
        return (info.get("dpr_run_id") not in (None, run_id) and
                info.get("dpr_world_line") == str(self._c.world_line))

    def _abandon(self, batch_id: int) -> None:
        if L.lib.dpr_session_abandon_batch(ctypes.byref(self._c), batch_id) == 0:
            self._in_doubt = True

    # --- the finder -----------------------------------------------------------

    def _finder_address(self) -> str:
        return self._leader if self._finder_at < 0 else self.client.finders[self._finder_at]

    def _finder_move(self, leader: str | None) -> None:
        """Asks leader next (a NOTLEADER answer), or the next address of the
        list (None: unreachable, or TRYAGAIN)."""
        self._finder.close()
        if leader:
            self._finder_at, self._leader = -1, leader
        else:
            self._finder_at = (self._finder_at + 1) % len(self.client.finders)
        self._finder = Connection(self._finder_address(), self.client.timeout,
                                  self.client.connect_timeout, self.client.ssl_context)

    def _finder_call(self, deadline: float, *args: Any) -> Any:
        """A finder command, retried (reconnecting, following NOTLEADER,
        waiting out TRYAGAIN) until deadline. The domain goes in as the
        first argument. Another error answer raises ResponseError naming the
        finder and the command."""
        args = (args[0], self.client.domain) + args[1:]
        hops = 0
        while True:
            at = self._finder_address()
            try:
                return self._finder.call(*args)
            except ResponseError as e:
                text = str(e)
                word, _, rest = text.partition(" ")
                if word == "NOTLEADER" and rest and hops < 4:
                    hops += 1
                    self._finder_move(rest.strip())
                    continue
                if word not in ("NOTLEADER", "TRYAGAIN"):
                    raise ResponseError("finder %s: %s: %s"
                                        % (at, " ".join(map(str, args)), e)) from e
                hops = 0
                self._finder_move(None)
                if time.monotonic() >= deadline:
                    raise ConnectionError("finder %s: %s" % (at, text)) from e
            except ConnectionError as e:
                self._finder_move(None)
                if time.monotonic() >= deadline:
                    raise ConnectionError("finder %s: %s" % (at, e)) from e
            time.sleep(0.05)

    def _sync(self, deadline: float) -> tuple[int, int, dict[int, int]]:
        """DPR.SYNC <domain>: the domain's (world-line, max version, cut).
        ResponseError when the finder refuses, e.g. "unknown domain": no
        shard of the domain ever registered with this finder."""
        reply = self._finder_call(deadline, "DPR.SYNC")
        if not (isinstance(reply, list) and len(reply) == 3 and isinstance(reply[0], int)):
            raise ProtocolError("finder: DPR.SYNC answered %r" % (reply,))
        return reply[0], reply[1], _flat_cut(reply[2], "DPR.SYNC cut")

    # --- rollbacks --------------------------------------------------------------

    def _settle(self, wait: bool = False, reason: str = "") -> None:
        """If a refusal was seen or a batch abandoned, roll back (raising
        RollbackError), or raise SessionInDoubtError if the finder has not
        moved on (after waiting up to rollback_timeout when wait)."""
        if not self._in_doubt and not self._refused_by:
            return
        deadline = time.monotonic() + (self.client.rollback_timeout if wait else 0)
        conn_deadline = time.monotonic() + self.client.reconnect_timeout
        while True:
            wl, _, _ = self._sync(max(deadline, conn_deadline))
            wl = max(wl, self._refused_by)
            if wl > self._c.world_line:
                self._rollback(wl, reason or "a newer world-line was seen earlier")
                return
            if time.monotonic() >= deadline:
                break
            time.sleep(_POLL)
        raise SessionInDoubtError(
            "%s; the answer never came, so operations from %d on are in doubt, and the "
            "finder is still on world-line %d (waited %.1fs). If the shard restarts, the "
            "next call reports the rollback; otherwise open a new session"
            % (reason or "a batch was abandoned", self._first_in_doubt(), self._c.world_line,
               self.client.rollback_timeout if wait else 0.0))

    def _first_in_doubt(self) -> int:
        c = self._c
        for k in range(c.ops_len):
            op = c.ops[(c.ops_head + k) & (c.ops_cap - 1)]
            if op.version == 0:
                return op.seq
        return c.next_seq

    def _rollback(self, world_line: int, reason: str) -> None:
        """Rolls the session back to the cut that ended its world-line
        (DPR.PREFIX <domain> <world-line>) and moves it to world_line;
        raises RollbackError if anything was lost."""
        old = self._c.world_line
        deadline = time.monotonic() + self.client.reconnect_timeout
        try:
            flat = self._finder_call(deadline, "DPR.PREFIX", old)
        except ResponseError as e:
            raise DprError("cannot learn which operations of world-line %d survived: finder "
                           "says %s. Open a new session" % (old, e)) from e
        cut = L.depset_from_dict(_flat_cut(flat, "DPR.PREFIX %d" % old))
        res = L.RollbackResult()
        last = self.last_seq
        try:
            r = L.lib.dpr_session_rollback(ctypes.byref(self._c), world_line, ctypes.byref(cut),
                                           ctypes.byref(res))
        finally:
            L.lib.dpr_depset_free(ctypes.byref(cut))
            if res.survived_above:
                L.free(res.survived_above)
        if r < 0:
            raise DprError("dpr_session_rollback to world-line %d: %s" % (world_line,
                                                                         L.errname(r)))
        self._in_doubt = False
        self._refused_by = 0
        info = RollbackInfo(old, world_line, res.lost_from, res.lost_count, last, reason)
        self.rollbacks.append(info)
        if res.lost_count:
            raise RollbackError(res.lost_from, res.lost_count, world_line, old, last, reason)

    # --- commit point -------------------------------------------------------------

    def commit_point(self) -> int:
        """Asks the finder for the cut and returns the commit point: every
        operation with a sequence number <= it is committed (survives any
        failure), except operations an earlier rollback reported lost.
        Raises RollbackError if the cluster has rolled back and operations
        of this session were lost."""
        self._check_open()
        self._settle()
        wl, _, cut = self._sync(time.monotonic() + self.client.reconnect_timeout)
        if wl > self._c.world_line:
            self._rollback(wl, "the finder is on world-line %d" % wl)
        elif wl == self._c.world_line:
            cs = L.depset_from_dict(cut)
            try:
                L.lib.dpr_session_commit_point(ctypes.byref(self._c), ctypes.byref(cs))
            finally:
                L.lib.dpr_depset_free(ctypes.byref(cs))
        return self._c.commit_point

    def wait_committed(self, seq: int | None = None, timeout: float = 10.0) -> int:
        """Waits until operation seq (default: the last one issued) is
        committed; returns the commit point. Raises dpr.TimeoutError after
        timeout seconds, RollbackError if a rollback happens meanwhile, and
        DprError if seq was lost in an earlier rollback."""
        self._check_open()
        if seq is None:
            seq = self.last_seq
        if seq < 0 or seq > self.last_seq:
            raise ValueError("operation %d was not issued (last is %d)" % (seq, self.last_seq))
        deadline = time.monotonic() + timeout
        while True:
            for rb in self.rollbacks:
                if rb.lost(seq):
                    raise DprError("operation %d was lost in the rollback from world-line %d "
                                   "to %d" % (seq, rb.old_world_line, rb.world_line))
            cp = self.commit_point()
            if seq == 0 or self.is_committed(seq):
                return cp
            if time.monotonic() >= deadline:
                raise TimeoutError("operation %d is not committed after %.1fs (commit point %d)"
                                   % (seq, timeout, cp))
            time.sleep(_POLL)
