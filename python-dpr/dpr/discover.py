"""DNS-SD discovery of DPR clusters: agents, finders and cache-store instances.

Every dpr-agent publishes its records with Avahi (docs/discovery.md):

    _dpr-agent._tcp   <node>@<cluster>                one per agent
    _dpr-finder._tcp  finder@<cluster>                by the agent serving the finder
    _dpr-cs._tcp      <deployment>-<shard>@<cluster>  one per running instance

each with a TXT record holding ``txtvers=1`` and ``cluster=<name>``. This
module browses them and returns plain :class:`Service` objects:

    from dpr import discover
    for a in discover.agents("demo"):                 # mDNS, python3-zeroconf
        print(a.node, a.endpoint, a.txt)
    discover.instances("demo", "kv", domain="dpr.example",
                       nameserver="10.0.0.53")        # unicast DNS-SD, python3-dnspython
    for c in discover.clusters():                     # everything on the network
        print(c.name, [a.node for a in c.agents], c.finder, sorted(c.deployments))

Two back ends behind :func:`browse`: the domain ``local`` is browsed with
multicast DNS (python3-zeroconf: a browse for ``timeout`` seconds, or until
nothing new arrived for ``settle`` seconds, then every instance resolved);
any other domain with unicast DNS-SD queries (RFC 6763: PTR ``<type>.<domain>``,
then SRV and TXT of every instance, then the addresses of the SRV target),
sent to ``nameserver`` ("IP[:PORT]") or the system's resolver. Records of
another cluster (several share a LAN) and records with a ``txtvers`` other
than 1 are left out. Both packages are imported only when browsed with.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
import threading
import time
from typing import Any, Iterable, Mapping, Sequence

from .errors import DiscoveryError

__all__ = ["Service", "DiscoveredCluster", "AGENT", "FINDER", "CACHESTORE", "SERVICE_TYPES",
           "browse", "browse_types", "agents", "finders", "instances", "clusters",
           "find_agents", "parse_txt", "txt_strings", "encode_txt", "agent_txt", "finder_txt",
           "cachestore_txt", "agent_instance", "finder_instance", "cachestore_instance",
           "instance_name", "parse_nameserver", "check_domain", "is_mdns", "DEFAULT_TIMEOUT",
           "SETTLE", "TXTVERS"]

AGENT = "_dpr-agent._tcp"
FINDER = "_dpr-finder._tcp"
CACHESTORE = "_dpr-cs._tcp"
SERVICE_TYPES = (AGENT, FINDER, CACHESTORE)
TXTVERS = "1"          # the TXT format version every record carries
API_VERSION = "1"      # the control API version agents publish as api=
MDNS_DOMAIN = "local"
DEFAULT_TIMEOUT = 3.0  # seconds a browse takes at most (mDNS: plus resolving)
SETTLE = 1.0           # mDNS: stop once nothing new arrived for this long
MIN_BROWSE = 1.5       # mDNS: but not before the browser's second query (at ~1 s) is answered
RESOLVE_TIMEOUT = 1.0  # mDNS: the least time left for resolving the instances found
LABEL_MAX = 63         # bytes of one DNS label (an instance name is one)
TXT_STRING_MAX = 255   # bytes of one TXT string ("key=value")

_TYPE_RE = re.compile(r"_[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?\._(tcp|udp)")
_DOMAIN_LABEL_RE = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?")


# --- records: TXT, instance names -------------------------------------------------

def txt_strings(raw: bytes) -> list[bytes]:
    """The strings of a TXT record's wire form (length-prefixed, RFC 1035
    3.3.14). A length running past the end keeps what is there."""
    out, i = [], 0
    while i < len(raw):
        n = raw[i]
        out.append(bytes(raw[i + 1:i + 1 + n]))
        i += 1 + n
    return out


def parse_txt(strings: Iterable[bytes | str]) -> dict[str, str]:
    """A TXT record's ``key=value`` strings as a dict (RFC 6763 6.3-6.5):
    keys are case-insensitive (lowered here), the first occurrence of a key
    wins, a string without ``=`` is a key with the value "", empty strings
    and strings starting with ``=`` are ignored; values are UTF-8 (bad bytes
    are replaced)."""
    out: dict[str, str] = {}
    for s in strings:
        b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        key, eq, value = b.partition(b"=")
        if not key:
            continue
        k = key.decode("ascii", "replace").lower()
        if k not in out:
            out[k] = value.decode("utf-8", "replace") if eq else ""
    return out


def encode_txt(txt: Mapping[str, Any]) -> list[bytes]:
    """The ``key=value`` strings of a TXT record, in the mapping's order
    (``txtvers`` should come first). ValueError for an empty key, a key
    with ``=``, or a string longer than 255 bytes."""
    out = []
    for k, v in txt.items():
        if not k or "=" in k:
            raise ValueError("TXT key %r: must be non-empty and without '='" % (k,))
        s = ("%s=%s" % (k, v)).encode("utf-8")
        if len(s) > TXT_STRING_MAX:
            raise ValueError("TXT string %r is %d bytes (at most %d)"
                             % (s[:40], len(s), TXT_STRING_MAX))
        out.append(s)
    return out


def agent_txt(cluster: str, node: str, finder: str, *, state: str, raft: str | None = None,
              ctl: str | None = None, api: str = API_VERSION) -> dict[str, str]:
    """The TXT of an agent's ``_dpr-agent._tcp`` record: ``raft=`` only in a
    cluster of agents, ``ctl=`` only when it serves its control API over
    TCP; ``state`` is ``single``, ``fresh`` or ``member``."""
    txt = {"txtvers": TXTVERS, "cluster": cluster, "node": node, "api": str(api),
           "finder": finder}
    if raft:
        txt["raft"] = raft
    txt["state"] = state
    if ctl:
        txt["ctl"] = ctl
    return txt


def finder_txt(cluster: str, node: str, finder: str, term: int = 0) -> dict[str, str]:
    """The TXT of the ``_dpr-finder._tcp`` record (the node serving it; the
    Raft term, 0 on a single node)."""
    return {"txtvers": TXTVERS, "cluster": cluster, "node": node, "term": str(int(term)),
            "finder": finder}


def cachestore_txt(cluster: str, deployment: str, shard: int, shards: int, worker: int,
                   version: str, impl: str, node: str, addr: str,
                   tls: str | None = None) -> dict[str, str]:
    """The TXT of an instance's ``_dpr-cs._tcp`` record (``tls``: its port
    speaks TLS only, asking clients for certificates as it says)."""
    txt = {"txtvers": TXTVERS, "cluster": cluster, "deployment": deployment,
           "shard": str(int(shard)), "shards": str(int(shards)), "worker": str(int(worker)),
           "version": str(version), "impl": str(impl), "node": node, "addr": addr}
    if tls:
        txt["tls"] = str(tls)
    return txt


def _fnv1a(data: bytes) -> int:
    """32-bit FNV-1a (what the agent hashes a long name with)."""
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def instance_name(who: str, cluster: str) -> str:
    """The instance name ``<who>@<cluster>``, fitted into one DNS label (63
    bytes) the way the agent does it: a longer one keeps ``@<cluster>`` and
    the start of ``who``, followed by ``~`` and 8 hex digits of the FNV-1a
    hash of ``who`` (so that long names stay apart). Clients go by the TXT,
    never by the name."""
    name = "%s@%s" % (who, cluster)
    if len(name.encode("utf-8")) <= LABEL_MAX:
        return name
    w, tail = who.encode("utf-8"), ("@" + cluster).encode("utf-8")
    keep = LABEL_MAX - len(tail) - 9
    if keep < 1:  # a cluster name too long for any (the agent publishes none)
        b = name.encode("utf-8")
        return b[:LABEL_MAX - 9].decode("utf-8", "ignore") + "~%08x" % _fnv1a(b)
    return "%s~%08x%s" % (w[:keep].decode("utf-8", "ignore"), _fnv1a(w), "@" + cluster)


def agent_instance(node: str, cluster: str) -> str:
    """The instance name of an agent's record: ``<node>@<cluster>``."""
    return instance_name(node, cluster)


def finder_instance(cluster: str) -> str:
    """The instance name of the finder's record: ``finder@<cluster>``."""
    return instance_name("finder", cluster)


def cachestore_instance(deployment: str, shard: int, cluster: str) -> str:
    """The instance name of a cache-store's record: ``<deployment>-<shard>@<cluster>``."""
    return instance_name("%s-%d" % (deployment, int(shard)), cluster)


# --- what a browse returns ------------------------------------------------------------

def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


@dataclasses.dataclass
class Service:
    """One DNS-SD service instance, resolved.

    ``type``: ``_dpr-agent._tcp``, ``_dpr-finder._tcp`` or ``_dpr-cs._tcp``;
    ``name``: the instance name (``node1@demo``); ``host``: the SRV target
    without the final dot (``node1.local``); ``port``: the SRV port;
    ``addresses``: the target's IPv4/IPv6 addresses; ``txt``: the TXT
    record (keys lowered); ``domain``: where it was found."""

    type: str
    name: str
    host: str | None
    port: int
    addresses: list = dataclasses.field(default_factory=list)
    txt: dict = dataclasses.field(default_factory=dict)
    domain: str = MDNS_DOMAIN

    cluster = property(lambda self: self.txt.get("cluster"))
    node = property(lambda self: self.txt.get("node"))
    deployment = property(lambda self: self.txt.get("deployment"))
    state = property(lambda self: self.txt.get("state"))
    ctl = property(lambda self: self.txt.get("ctl") or None)
    shard = property(lambda self: _int(self.txt.get("shard")))
    shards = property(lambda self: _int(self.txt.get("shards")))
    worker = property(lambda self: _int(self.txt.get("worker")))
    term = property(lambda self: _int(self.txt.get("term")))
    # an instance whose port speaks TLS only: required, optional or off
    tls = property(lambda self: self.txt.get("tls") or None)

    @property
    def endpoint(self) -> str | None:
        """The ``HOST:PORT`` to connect to: ``addr=`` of an instance,
        ``finder=`` of an agent or the finder; else the first address (or
        the host) with the SRV port."""
        for key in ("addr", "finder"):
            if self.txt.get(key):
                return self.txt[key]
        host = self.addresses[0] if self.addresses else self.host
        if not host:
            return None
        return "[%s]:%d" % (host, self.port) if ":" in host else "%s:%d" % (host, self.port)

    def as_dict(self) -> dict:
        """A JSON-ready dict of the record."""
        return {"type": self.type, "name": self.name, "domain": self.domain, "host": self.host,
                "port": self.port, "addresses": list(self.addresses), "txt": dict(self.txt)}


@dataclasses.dataclass
class DiscoveredCluster:
    """What the network holds of one cluster: its ``agents`` (sorted by
    node), the ``finders`` records (normally one; more while a stale one
    has not expired after a fail-over: highest term first) and its cache-store
    ``instances`` (sorted by deployment and shard)."""

    name: str
    agents: list = dataclasses.field(default_factory=list)
    finders: list = dataclasses.field(default_factory=list)
    instances: list = dataclasses.field(default_factory=list)

    @property
    def finder(self) -> Service | None:
        """The finder's record with the highest term, or None."""
        return self.finders[0] if self.finders else None

    @property
    def deployments(self) -> dict:
        """Deployment name -> its instances' records, in shard order."""
        out: dict = {}
        for s in self.instances:
            out.setdefault(s.deployment or "?", []).append(s)
        return out

    def as_dict(self) -> dict:
        f = self.finder
        return {"cluster": self.name,
                "agents": [s.as_dict() for s in self.agents],
                "finder": f.as_dict() if f else None,
                "finders": [s.as_dict() for s in self.finders],
                "deployments": {d: [s.as_dict() for s in insts]
                                for d, insts in sorted(self.deployments.items())}}


def _sort_key(s: Service) -> tuple:
    if s.type == FINDER:
        return (-(s.term or 0), s.node or "", s.name)
    if s.type == CACHESTORE:
        return (s.deployment or "", s.shard if s.shard is not None else 1 << 30, s.name)
    return (s.node or "", s.name)


def _supported(s: Service) -> bool:
    return s.txt.get("txtvers") == TXTVERS


def _keep(services: Iterable[Service], cluster: str | None) -> list[Service]:
    """The records of a known txtvers (of ``cluster``, when given), sorted."""
    kept = [s for s in services if _supported(s) and (cluster is None or s.cluster == cluster)]
    return sorted(kept, key=_sort_key)


# --- arguments -----------------------------------------------------------------------

def _check_type(t: str) -> str:
    if not isinstance(t, str) or not _TYPE_RE.fullmatch(t):
        raise ValueError("service type %r: expected _name._tcp or _name._udp, e.g. %s"
                         % (t, AGENT))
    return t


def check_domain(domain: str) -> str:
    """A browse domain without its final dot (``local`` for mDNS).
    ValueError for one that is not a DNS name of letters, digits, ``-``
    and ``_``."""
    if not isinstance(domain, str):
        raise ValueError("domain must be a string, not %s" % type(domain).__name__)
    d = domain[:-1] if domain.endswith(".") else domain
    labels = d.split(".")
    if not d or len(d) > 253 or not all(_DOMAIN_LABEL_RE.fullmatch(x) for x in labels):
        raise ValueError("domain %r: expected a DNS name such as local or dpr.example.com "
                         "(labels of letters, digits, '-' and '_', at most 63 each)" % domain)
    return d


def is_mdns(domain: str) -> bool:
    return domain.lower() == MDNS_DOMAIN


def parse_nameserver(text: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]:PORT`` or a bare IPv6 address -> (ip,
    port), port 53 by default. ValueError for anything else (a host name
    included: the server is asked for names, it cannot be one)."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("nameserver: expected IP or IP:PORT, got %r" % (text,))
    t = text.strip()
    host, port = t, "53"
    if t.startswith("["):
        host, sep, rest = t[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError("nameserver %r: expected [IPv6]:PORT" % text)
        port = rest[1:] if rest else "53"
    elif t.count(":") == 1:
        host, _, port = t.partition(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError("nameserver %r: expected an IP address, optionally with :PORT "
                         "(e.g. 10.0.0.53 or 127.0.0.1:5353)" % text) from None
    p = _int(port)
    if p is None or not 0 < p < 65536:
        raise ValueError("nameserver %r: port must be 1..65535" % text)
    return host, p


# --- browsing ---------------------------------------------------------------------------

def browse(service_type: str, cluster: str | None = None, domain: str = MDNS_DOMAIN,
           timeout: float = DEFAULT_TIMEOUT, nameserver: str | None = None, *,
           interfaces: Sequence[str] | None = None, settle: float | None = SETTLE
           ) -> list[Service]:
    """The instances of ``service_type`` (e.g. ``_dpr-agent._tcp``) in
    ``domain``, of ``cluster`` only when given, of a known ``txtvers``.

    ``domain="local"``: mDNS with python3-zeroconf, on every interface or on
    ``interfaces`` (addresses, e.g. ``["127.0.0.1"]``); browses for
    ``timeout`` seconds, or, once something answered, until nothing new
    arrived for ``settle`` seconds (None: always the whole timeout) but at
    least 1.5 s (a responder does not repeat a record it multicast in the
    last second: the browser's second query, at about 1 s, gets it), then
    resolves what it found. Any other domain: unicast DNS-SD with
    python3-dnspython, asking ``nameserver`` ("IP[:PORT]") or the
    system's resolver, within ``timeout`` seconds. Raises DiscoveryError
    when a DNS server does not answer or a package is missing, ValueError
    for bad arguments."""
    return browse_types([service_type], cluster, domain, timeout, nameserver,
                        interfaces=interfaces, settle=settle)[service_type]


def browse_types(types: Sequence[str], cluster: str | None = None, domain: str = MDNS_DOMAIN,
                 timeout: float = DEFAULT_TIMEOUT, nameserver: str | None = None, *,
                 interfaces: Sequence[str] | None = None, settle: float | None = SETTLE
                 ) -> dict[str, list[Service]]:
    """:func:`browse` of several types at once (one mDNS browse): service
    type -> its instances."""
    found = _browse_raw(types, domain, timeout, nameserver, interfaces, settle)
    return {t: _keep(found.get(t, []), cluster) for t in found}


def _browse_raw(types: Sequence[str], domain: str, timeout: float, nameserver: str | None,
                interfaces: Sequence[str] | None, settle: float | None
                ) -> dict[str, list[Service]]:
    """Every record found, unfiltered (other clusters, unknown txtvers)."""
    types = list(dict.fromkeys(_check_type(t) for t in types))
    d = check_domain(domain)
    if not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError("timeout must be a number of seconds > 0 (got %r)" % (timeout,))
    if is_mdns(d):
        if nameserver is not None:
            raise ValueError("nameserver is for unicast DNS-SD; the domain 'local' is browsed "
                             "with multicast DNS")
        return _browse_mdns(types, float(timeout), settle, interfaces)
    if interfaces is not None:
        raise ValueError("interfaces are for mDNS (the domain 'local'); domain %r is asked "
                         "by unicast DNS" % d)
    return _browse_unicast(types, d, float(timeout), nameserver)


def agents(cluster: str | None = None, **kw: Any) -> list[Service]:
    """The ``_dpr-agent._tcp`` records (of ``cluster``), sorted by node.
    Keyword arguments as :func:`browse`."""
    return browse(AGENT, cluster, **kw)


def finders(cluster: str | None = None, **kw: Any) -> list[Service]:
    """The ``_dpr-finder._tcp`` records (of ``cluster``), highest term first."""
    return browse(FINDER, cluster, **kw)


def instances(cluster: str | None = None, deployment: str | None = None,
              **kw: Any) -> list[Service]:
    """The ``_dpr-cs._tcp`` records (of ``cluster``, of ``deployment``),
    sorted by deployment and shard."""
    found = browse(CACHESTORE, cluster, **kw)
    return [s for s in found if deployment is None or s.deployment == deployment]


def clusters(cluster: str | None = None, **kw: Any) -> list[DiscoveredCluster]:
    """Every cluster on the network (or only ``cluster``), sorted by name,
    with its agents, finder and instances (one browse of the three types)."""
    found = browse_types(SERVICE_TYPES, cluster, **kw)
    by_name: dict[str, DiscoveredCluster] = {}
    for t, attr in ((AGENT, "agents"), (FINDER, "finders"), (CACHESTORE, "instances")):
        for s in found[t]:
            name = s.cluster or "?"
            c = by_name.setdefault(name, DiscoveredCluster(name))
            getattr(c, attr).append(s)
    return [by_name[n] for n in sorted(by_name)]


def find_agents(cluster: str, domain: str = MDNS_DOMAIN, timeout: float = DEFAULT_TIMEOUT,
                nameserver: str | None = None, *, interfaces: Sequence[str] | None = None,
                settle: float | None = SETTLE, also: Sequence[str] = ()
                ) -> tuple[list[Service], dict[str, list[Service]]]:
    """The agents of ``cluster`` (and the records of the types in ``also``
    of that cluster, found in the same browse). Raises DiscoveryError when
    there is no agent of the cluster, saying what was seen instead."""
    if not isinstance(cluster, str) or not cluster:
        raise ValueError("cluster: expected the cluster's name, got %r" % (cluster,))
    types = [AGENT] + [t for t in also if t != AGENT]
    raw = _browse_raw(types, domain, timeout, nameserver, interfaces, settle)
    mine = _keep(raw[AGENT], cluster)
    if not mine:
        raise DiscoveryError(no_agents_message(cluster, domain, timeout, nameserver,
                                               interfaces, raw[AGENT]))
    return mine, {t: _keep(raw[t], cluster) for t in types if t != AGENT}


def describe_where(domain: str, timeout: float, nameserver: str | None,
                   interfaces: Sequence[str] | None) -> str:
    """``domain 'local' (mDNS on every interface, 3s)`` and the like."""
    d = check_domain(domain)
    if is_mdns(d):
        on = "on %s" % ", ".join(interfaces) if interfaces else "on every interface"
        return "domain 'local' (mDNS %s, %gs)" % (on, timeout)
    return "domain '%s' (unicast DNS-SD, DNS server %s)" % (
        d, nameserver if nameserver else "of the system's resolver")


def no_agents_message(cluster: str, domain: str, timeout: float, nameserver: str | None,
                      interfaces: Sequence[str] | None, seen: Sequence[Service]) -> str:
    """Why no agent of ``cluster`` was found, from every agent record seen."""
    where = describe_where(domain, timeout, nameserver, interfaces)
    others: dict[str, list[str]] = {}
    unknown = 0
    for s in seen:
        if not _supported(s):
            unknown += 1
        elif s.cluster != cluster:
            others.setdefault(s.cluster or "(no cluster=)", []).append(s.node or s.name)
    parts = []
    if others:
        parts.append("agents of " + "; ".join("cluster %r (%s)" % (c, ", ".join(sorted(n)))
                                              for c, n in sorted(others.items())))
    if unknown:
        parts.append("%d agent record(s) of another TXT format (txtvers not %s), ignored"
                     % (unknown, TXTVERS))
    msg = "no dpr-agent of cluster %r found in %s" % (cluster, where)
    if parts:
        return msg + "; seen instead: " + "; ".join(parts)
    if is_mdns(check_domain(domain)):
        return (msg + "; no dpr-agent at all — are the agents (and avahi-daemon) running on "
                "the nodes? mDNS does not cross routers: from another network use a "
                "unicast zone (dprctl dns-zone) and its domain")
    return (msg + "; no %s records there — load the cluster's records into the zone "
            "(dprctl dns-zone %s --domain %s)" % (AGENT, cluster, check_domain(domain)))


# --- mDNS (python3-zeroconf) ------------------------------------------------------------

def _import_zeroconf() -> Any:
    try:
        import zeroconf
    except ImportError as e:
        raise DiscoveryError("mDNS discovery (the domain 'local') needs python3-zeroconf "
                             "(apt install python3-zeroconf): %s" % e) from None
    return zeroconf


def _browse_mdns(types: Sequence[str], timeout: float, settle: float | None,
                 interfaces: Sequence[str] | None) -> dict[str, list[Service]]:
    zc_mod = _import_zeroconf()
    try:
        zc = zc_mod.Zeroconf(interfaces=list(interfaces) if interfaces
                             else zc_mod.InterfaceChoice.All)
    except (OSError, ValueError) as e:
        raise DiscoveryError("cannot open the mDNS socket (UDP port 5353%s): %s"
                             % (" on %s" % ", ".join(interfaces) if interfaces else "", e)
                             ) from None
    try:
        names = _collect_names(zc_mod, zc, types, timeout, settle)
        return _resolve_all(zc_mod, zc, types, names, timeout)
    finally:
        zc.close()


def _collect_names(zc_mod: Any, zc: Any, types: Sequence[str], timeout: float,
                   settle: float | None) -> list[tuple[str, str]]:
    """(type with .local., full name) of every instance announced within
    the browse."""
    cond = threading.Condition()
    names: dict[tuple[str, str], None] = {}
    last = [0.0]
    added = (zc_mod.ServiceStateChange.Added, zc_mod.ServiceStateChange.Updated)

    def on_change(zeroconf: Any, service_type: str, name: str, state_change: Any) -> None:
        with cond:
            if state_change in added:
                if (service_type, name) not in names:
                    names[(service_type, name)] = None
                    last[0] = time.monotonic()
            else:
                names.pop((service_type, name), None)
            cond.notify_all()

    start = time.monotonic()
    deadline = start + timeout
    # multicast questions only (QM): an answer sent by unicast to port 5353
    # may be delivered to another socket bound there (avahi-daemon on the
    # same host, another browser), never to this one
    browser = zc_mod.ServiceBrowser(zc, [t + ".local." for t in types], handlers=[on_change],
                                    question_type=zc_mod.DNSQuestionType.QM)
    try:
        with cond:
            while True:
                now = time.monotonic()
                end = deadline
                if settle is not None and names:
                    end = min(deadline, max(start + MIN_BROWSE, last[0] + settle))
                if now >= end:
                    break
                cond.wait(end - now)
            return list(names)
    finally:
        browser.cancel()


def _resolve_all(zc_mod: Any, zc: Any, types: Sequence[str], names: list[tuple[str, str]],
                 timeout: float) -> dict[str, list[Service]]:
    """Resolves every instance (SRV, TXT, addresses), several at once; an
    instance that does not resolve in time is left out."""
    out: dict[str, list[Service]] = {t: [] for t in types}
    infos = []
    for stype, name in names:
        info = zc_mod.ServiceInfo(stype, name)
        infos.append(info)
    budget_ms = int(max(RESOLVE_TIMEOUT, min(timeout, 3.0)) * 1000)

    def resolve(info: Any) -> None:
        try:
            if not info.load_from_cache(zc):
                info.request(zc, budget_ms, question_type=zc_mod.DNSQuestionType.QM)
        except Exception:  # a record that fails to resolve is just missing
            pass

    threads = [threading.Thread(target=resolve, args=(i,), daemon=True) for i in infos]
    for th in threads:
        th.start()
    for th in threads:
        th.join(budget_ms / 1000.0 + 1.0)
    for info in infos:
        s = _service_of_info(info)
        if s is not None:
            out.setdefault(s.type, []).append(s)
    return out


def _service_of_info(info: Any) -> Service | None:
    if info.port is None or not info.server:
        return None
    stype = info.type[:-len(".local.")] if info.type.endswith(".local.") else info.type
    suffix = "." + info.type
    name = info.name[:-len(suffix)] if info.name.endswith(suffix) else info.name
    try:
        addrs = list(info.parsed_addresses())
    except Exception:
        addrs = []
    return Service(type=stype, name=name, host=info.server.rstrip("."), port=int(info.port),
                   addresses=addrs, txt=parse_txt(txt_strings(info.text or b"")),
                   domain=MDNS_DOMAIN)


# --- unicast DNS-SD (python3-dnspython) ----------------------------------------------------

def _import_dns() -> Any:
    try:
        import dns.exception
        import dns.name
        import dns.rdatatype
        import dns.resolver
    except ImportError as e:
        raise DiscoveryError("unicast DNS-SD (a domain other than 'local') needs "
                             "python3-dnspython (apt install python3-dnspython): %s" % e
                             ) from None
    return dns


class _Unicast:
    """The queries of one unicast browse, against one resolver, with one
    deadline; the addresses of every host asked once."""

    def __init__(self, domain: str, timeout: float, nameserver: str | None):
        self.dns = _import_dns()
        self.domain = domain
        self.server = nameserver or "of the system's resolver"
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        if nameserver is None:
            try:
                self.res = self.dns.resolver.Resolver()
            except self.dns.exception.DNSException as e:
                raise DiscoveryError("no DNS resolver configured (/etc/resolv.conf): %s; "
                                     "give a nameserver" % e) from None
        else:
            host, port = parse_nameserver(nameserver)
            self.res = self.dns.resolver.Resolver(configure=False)
            self.res.nameservers = [host]
            self.res.port = port
        self.hosts: dict[Any, list[str]] = {}

    def rrs(self, qname: Any, rdtype: str) -> list:
        """The records of (qname, rdtype); [] for NXDOMAIN or no data."""
        d = self.dns
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise DiscoveryError("unicast DNS-SD in domain %r: the DNS server %s did not "
                                 "answer everything within %gs (last: %s %s)"
                                 % (self.domain, self.server, self.timeout, qname, rdtype))
        try:
            ans = self.res.resolve(qname, rdtype, search=False, raise_on_no_answer=False,
                                   lifetime=left)
        except (d.resolver.NXDOMAIN, d.resolver.NoAnswer):
            return []
        except d.exception.Timeout:
            raise DiscoveryError("unicast DNS-SD in domain %r: the DNS server %s did not "
                                 "answer %s %s within %gs" % (self.domain, self.server, qname,
                                                              rdtype, self.timeout)) from None
        except d.exception.DNSException as e:
            raise DiscoveryError("unicast DNS-SD in domain %r: the DNS server %s failed on "
                                 "%s %s: %s" % (self.domain, self.server, qname, rdtype, e)
                                 ) from None
        return list(ans.rrset) if ans.rrset is not None else []

    def addresses(self, host: Any) -> list[str]:
        if host not in self.hosts:
            self.hosts[host] = [rr.address for t in ("A", "AAAA") for rr in self.rrs(host, t)]
        return self.hosts[host]

    def browse(self, stype: str) -> list[Service]:
        """PTR <type>.<domain> -> SRV and TXT per instance -> the SRV
        target's addresses. An instance without SRV is left out."""
        d = self.dns
        ptr = d.name.from_text("%s.%s." % (stype, self.domain))
        out = []
        for rr in self.rrs(ptr, "PTR"):
            inst = rr.target
            if len(inst.labels) != len(ptr.labels) + 1 or not inst.is_subdomain(ptr):
                continue  # not an instance of this type (one label below it)
            srv = self.rrs(inst, "SRV")
            if not srv:
                continue
            best = min(srv, key=lambda r: (r.priority, -r.weight))
            txt = self.rrs(inst, "TXT")
            host = best.target
            out.append(Service(type=stype, name=inst.labels[0].decode("utf-8", "replace"),
                               host=host.to_text(omit_final_dot=True), port=int(best.port),
                               addresses=self.addresses(host) if host != d.name.root else [],
                               txt=parse_txt(txt[0].strings) if txt else {},
                               domain=self.domain))
        return out


def _browse_unicast(types: Sequence[str], domain: str, timeout: float,
                    nameserver: str | None) -> dict[str, list[Service]]:
    u = _Unicast(domain, timeout, nameserver)
    return {t: u.browse(t) for t in types}
