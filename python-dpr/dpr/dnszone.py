"""A cluster's DNS-SD records for a unicast DNS zone (``dprctl dns-zone``).

mDNS does not cross routers. To find a cluster from another network, its
records go into an ordinary DNS zone, with the same names and TXT as the
agents publish over mDNS (RFC 6763; docs/discovery.md):

    _services._dns-sd._udp.<D>        PTR  _dpr-agent._tcp.<D>  (and the other two types)
    _dpr-agent._tcp.<D>               PTR  node1\\@demo._dpr-agent._tcp.<D>
    node1\\@demo._dpr-agent._tcp.<D>  SRV  0 0 7000 node1.<D>
    node1\\@demo._dpr-agent._tcp.<D>  TXT  "txtvers=1" "cluster=demo" ...
    node1.<D>                         A    10.0.0.1

Pure functions, no I/O: :func:`build_zone` takes the agent's ``status``
and ``nodes`` results (docs/control-api.md) and returns the records;
:func:`zone_text` prints them as master-file lines, :func:`nsupdate_script`
as an nsupdate(1) script.

    status = cluster.request("status"); nodes = cluster.request("nodes")
    zone = build_zone(status, nodes, "dpr.example.com")
    print(zone_text(zone))
"""
from __future__ import annotations

import dataclasses
import ipaddress
import re
from typing import Any, Iterable, Mapping, Sequence

from .discover import (AGENT, CACHESTORE, FINDER, SERVICE_TYPES, agent_instance, agent_txt,
                       cachestore_instance, cachestore_txt, check_domain, encode_txt,
                       finder_instance, finder_txt)

__all__ = ["Record", "Zone", "build_zone", "zone_records", "cluster_services", "zone_text",
           "nsupdate_script", "escape_label", "owner_name", "txt_data", "DEFAULT_TTL",
           "SERVICES_NAME"]

DEFAULT_TTL = 120                   # seconds, like Avahi's host records
TTL_MAX = 2147483647                # RFC 2181
SERVICES_NAME = "_services._dns-sd._udp"
UPDATES_PER_SEND = 200              # update lines per nsupdate message

# characters a master file takes as they are inside a label (RFC 1035 5.1):
# printable ASCII but the special ones, which get a backslash
_PLAIN = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_*+/,:=!#%&'<>?"
             "[]^`{|}~")
_SPECIAL = set('.\\"()@$;')
_HOST_BAD = re.compile(r"[^A-Za-z0-9_-]+")


@dataclasses.dataclass(frozen=True)
class Record:
    """One resource record in presentation form: ``name`` the absolute
    owner name (escaped, with the final dot), ``ttl``, ``type`` (PTR, SRV,
    TXT, A, AAAA), ``data`` the RDATA as a master file writes it."""

    name: str
    ttl: int
    type: str
    data: str

    def line(self) -> str:
        return "%s %d IN %s %s" % (self.name, self.ttl, self.type, self.data)


@dataclasses.dataclass
class Service:
    """One service instance as the agents publish it: ``type``, the
    instance name (one label, unescaped), the node whose host is the SRV
    target, the SRV port and the TXT."""

    type: str
    instance: str
    node: str
    port: int
    txt: dict


@dataclasses.dataclass
class Zone:
    """The records of a cluster for a domain, and warnings about what could
    not be published (printed as comments)."""

    cluster: str
    domain: str
    records: list = dataclasses.field(default_factory=list)
    warnings: list = dataclasses.field(default_factory=list)


# --- names and data in presentation form ---------------------------------------------

def escape_label(label: str) -> str:
    """One label in master-file form (RFC 1035 5.1): letters, digits and
    other plain printable ASCII as they are; ``. \\ " ( ) @ $ ;`` with a
    backslash; space, control characters and every byte of non-ASCII UTF-8
    as ``\\DDD``. ValueError for an empty label or one over 63 bytes."""
    b = label.encode("utf-8")
    if not b or len(b) > 63:
        raise ValueError("DNS label %r: must be 1 to 63 bytes (is %d)" % (label, len(b)))
    out = []
    for byte in b:
        c = chr(byte)
        if c in _PLAIN:
            out.append(c)
        elif c in _SPECIAL:
            out.append("\\" + c)
        else:
            out.append("\\%03d" % byte)
    return "".join(out)


def owner_name(labels: Sequence[str], domain: str) -> str:
    """An absolute name: ``labels`` (each escaped) under ``domain`` (a
    checked DNS name, written as it is)."""
    return "".join(escape_label(x) + "." for x in labels) + check_domain(domain) + "."


def _quote(s: bytes) -> str:
    out = []
    for byte in s:
        c = chr(byte)
        if c in '"\\':
            out.append("\\" + c)
        elif 0x20 <= byte < 0x7F:
            out.append(c)
        else:
            out.append("\\%03d" % byte)
    return '"%s"' % "".join(out)


def txt_data(txt: Mapping[str, Any]) -> str:
    """TXT RDATA: one quoted string per ``key=value``, in order (``"`` and
    ``\\`` escaped, bytes outside printable ASCII as ``\\DDD``)."""
    return " ".join(_quote(s) for s in encode_txt(txt))


def host_label(node: str) -> str:
    """The host label of a node: its name, with every run of characters
    other than letters, digits, ``-`` and ``_`` (``.`` and ``:`` of a
    member not named yet, say) made ``-``."""
    label = _HOST_BAD.sub("-", node).strip("-") or "node"
    return label[:63]


# --- the services of a cluster from the agent's answers ----------------------------------

def _split(addr: str) -> tuple[str, int | None]:
    """HOST:PORT (or [v6]:PORT, or a bare host) -> (host, port or None)."""
    a = str(addr).strip()
    if a.startswith("["):
        host, _, rest = a[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if a.count(":") == 1:
        host, _, port = a.partition(":")
        return host, int(port) if port.isdigit() else None
    return a, None


def _join(host: str, port: int) -> str:
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _nodes(status: Mapping, nodes: Mapping) -> list[dict]:
    """Per node: name, ip (its host), finder and raft addresses, state,
    whether it leads, ctl (when the agent tells one)."""
    finder = (status.get("finder") or {}).get("address") or ""
    finders = [f.strip() for f in str(finder).split(",") if f.strip()]
    raft = status.get("raft")
    entries = [n for n in (nodes.get("nodes") or []) if isinstance(n, Mapping)]
    out = []
    if not isinstance(raft, Mapping):  # one node, its own cluster
        me = next((n for n in entries if n.get("self")), entries[0] if entries else {})
        name = me.get("name") or status.get("node") or "node"
        host, _ = _split(me.get("address") or (finders[0] if finders else ""))
        fhost, fport = _split(finders[0]) if finders else (host, None)
        fip = _ip(fhost)
        if fport is not None and (not fhost or (fip and fip.is_unspecified)):
            fhost = host
        elif _ip(host) is None and fip is not None:
            host = fhost  # node.address names an interface: the finder has its address
        out.append({"name": name, "ip": host, "raft": None, "state": "single", "leader": True,
                    "finder": _join(fhost, fport) if fport else None, "ctl": me.get("ctl")})
        return out
    port = next((p for _, p in map(_split, finders) if p), None)
    by_host = {_split(f)[0]: f for f in finders}
    for n in entries:
        host, _ = _split(n.get("address") or "")
        f = by_host.get(host) or (_join(host, port) if port and host else None)
        out.append({"name": n.get("name") or n.get("address") or "node", "ip": host,
                    "raft": n.get("address"), "state": "member", "leader": bool(n.get("leader")),
                    "finder": f, "ctl": n.get("ctl")})
    return out


def cluster_services(status: Mapping, nodes: Mapping) -> tuple[list[Service], list[dict],
                                                                list[str]]:
    """(services, nodes, warnings): every record the cluster's agents
    publish, from the ``status`` and ``nodes`` results of one agent; the
    nodes with their ``name`` and ``ip``."""
    cluster = str(status.get("cluster") or "")
    if not cluster:
        raise ValueError("the status names no cluster")
    node_list = _nodes(status, nodes)
    warnings = []
    services = []
    for n in node_list:
        if not n["finder"]:
            warnings.append("node %s: its finder address is not known: no agent record"
                            % n["name"])
            continue
        _, fport = _split(n["finder"])
        services.append(Service(AGENT, agent_instance(n["name"], cluster), n["name"], fport or 0,
                                agent_txt(cluster, n["name"], n["finder"], state=n["state"],
                                          raft=n["raft"], ctl=n["ctl"])))
    leader = next((n for n in node_list if n["leader"] and n["finder"]), None)
    if leader is None:
        warnings.append("no leader known (an election, or no quorum): no finder record")
    else:
        raft: Mapping = status["raft"] if isinstance(status.get("raft"), Mapping) else {}
        services.append(Service(FINDER, finder_instance(cluster), leader["name"],
                                _split(leader["finder"])[1] or 0,
                                finder_txt(cluster, leader["name"], leader["finder"],
                                           int(raft.get("term") or 0))))
    known = {n["name"] for n in node_list}
    for d in status.get("deployments") or []:
        if not isinstance(d, Mapping):
            continue
        for i in d.get("instances") or []:
            s = _instance_service(cluster, d, i, known, warnings)
            if s is not None:
                services.append(s)
    return services, node_list, warnings


def _instance_service(cluster: str, d: Mapping, i: Any, known: set,
                      warnings: list) -> Service | None:
    if not isinstance(i, Mapping):
        return None
    name = i.get("name") or "?"
    if i.get("node_down") or i.get("health") == "node-down":
        warnings.append("instance %s: its node %s is down: not published" % (name, i.get("node")))
        return None
    endpoint, node, shard, worker = (i.get("endpoint"), i.get("node"), i.get("shard"),
                                     i.get("worker"))
    if not endpoint or not node or not isinstance(shard, int) or not isinstance(worker, int):
        warnings.append("instance %s: no endpoint, node, shard or worker known yet: not "
                        "published" % name)
        return None
    if node not in known:
        warnings.append("instance %s: its node %s is not a member: no host record for it"
                        % (name, node))
    _, port = _split(endpoint)
    dep = str(d.get("name"))
    shards = d["shards"] if isinstance(d.get("shards"), int) else len(d.get("instances") or [])
    return Service(CACHESTORE, cachestore_instance(dep, shard, cluster), node, port or 0,
                   cachestore_txt(cluster, dep, shard, shards, worker, d.get("version") or "",
                                  d.get("impl") or "dpr-kv", node, endpoint,
                                  tls=i.get("tls") if isinstance(i.get("tls"), str)
                                  else None))


# --- records ------------------------------------------------------------------------------

def zone_records(services: Iterable[Service], nodes: Iterable[Mapping], domain: str,
                 ttl: int = DEFAULT_TTL, warnings: list | None = None) -> list[Record]:
    """The records of ``services`` under ``domain``: the service types'
    PTR under ``_services._dns-sd._udp``, per type a PTR to each instance,
    per instance its SRV (target: the node's host) and TXT, and per node an
    A or AAAA record of its host name ``<node>.<domain>``."""
    d = check_domain(domain)
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 0 <= ttl <= TTL_MAX:
        raise ValueError("ttl must be an integer 0..%d (got %r)" % (TTL_MAX, ttl))
    services = list(services)
    warnings = warnings if warnings is not None else []
    types = [t for t in SERVICE_TYPES if any(s.type == t for s in services)]
    recs = [Record(owner_name(SERVICES_NAME.split("."), d), ttl, "PTR",
                   owner_name(t.split("."), d)) for t in types]
    for t in types:
        of_type = [s for s in services if s.type == t]
        recs += [Record(owner_name(t.split("."), d), ttl, "PTR",
                        owner_name([s.instance] + t.split("."), d)) for s in of_type]
        for s in of_type:
            owner = owner_name([s.instance] + t.split("."), d)
            recs.append(Record(owner, ttl, "SRV", "0 0 %d %s"
                               % (s.port, owner_name([host_label(s.node)], d))))
            recs.append(Record(owner, ttl, "TXT", txt_data(s.txt)))
    seen = set()
    for n in nodes:
        label = host_label(n["name"])
        if label in seen:
            continue
        seen.add(label)
        ip = _ip(n.get("ip") or "")
        if ip is None or ip.is_unspecified:
            warnings.append("node %s: address %r is not an IP address: no host record"
                            % (n["name"], n.get("ip")))
            continue
        if ip.is_loopback:
            warnings.append("node %s: its address %s is a loopback address (only that machine "
                            "reaches it; agent.conf node.address)" % (n["name"], ip))
        recs.append(Record(owner_name([label], d), ttl, "A" if ip.version == 4 else "AAAA",
                           str(ip)))
    return recs


def build_zone(status: Mapping, nodes: Mapping, domain: str, ttl: int = DEFAULT_TTL) -> Zone:
    """Every record of the cluster for ``domain``, from one agent's
    ``status`` and ``nodes`` results (dicts, as the control API answers)."""
    if not isinstance(status, Mapping) or not isinstance(nodes, Mapping):
        raise ValueError("status and nodes must be the agent's results (objects)")
    services, node_list, warnings = cluster_services(status, nodes)
    zone = Zone(str(status.get("cluster")), check_domain(domain), warnings=warnings)
    zone.records = zone_records(services, node_list, domain, ttl, warnings)
    return zone


# --- output ---------------------------------------------------------------------------------

def _header(zone: Zone, what: str) -> list[str]:
    lines = ["; DNS-SD records of DPR cluster %s for %s. (%s; docs/discovery.md)"
             % (zone.cluster, zone.domain, what)]
    lines += ["; warning: %s" % " ".join(w.split()) for w in zone.warnings]
    return lines


def zone_text(zone: Zone) -> str:
    """Master-file lines (absolute names: paste them into the zone file,
    or $INCLUDE them)."""
    lines = _header(zone, "zone file lines")
    lines += [r.line() for r in zone.records]
    return "\n".join(lines) + "\n"


def _shared(r: Record) -> bool:
    """A PTR RRset other publishers share (other clusters, other services):
    added to, never deleted."""
    return r.type == "PTR"


def nsupdate_script(zone: Zone, server: str | None = None) -> str:
    """An nsupdate(1) script: ``server`` (when given: "IP[:PORT]"), ``zone``,
    then for every name the cluster owns ``update delete`` (an instance's
    name: all its records; a host name: its A and AAAA records) and
    ``update add`` of its new records; the PTR records (shared with other
    clusters and services) are only added. ``send`` after every 200
    updates."""
    from .discover import parse_nameserver
    lines = _header(zone, "nsupdate script")
    if server is not None:
        host, port = parse_nameserver(server)
        lines.append("server %s %d" % (host, port))
    lines.append("zone %s." % zone.domain)
    updates = []
    owned: dict[str, list[Record]] = {}
    for r in zone.records:
        if not _shared(r):
            owned.setdefault(r.name, []).append(r)
    for name, recs in owned.items():
        if all(r.type in ("A", "AAAA") for r in recs):
            # a host name: its addresses only
            updates += ["update delete %s A" % name, "update delete %s AAAA" % name]
        else:
            updates.append("update delete %s" % name)  # an instance: every RRset
        updates += ["update add %s" % r.line() for r in recs]
    updates += ["update add %s" % r.line() for r in zone.records if _shared(r)]
    for i in range(0, len(updates), UPDATES_PER_SEND):
        lines += updates[i:i + UPDATES_PER_SEND]
        lines.append("send")
    return "\n".join(lines) + "\n"
