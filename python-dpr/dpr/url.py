"""DPR URLs: where a dpr.Client finds a deployment, in one string.

    dpr://HOST[:PORT][,HOST[:PORT]...]/DEPLOYMENT[?PARAMS]
        the agents' finder ports (``finder.listen`` of agent.conf, default
        port 7000); any of them tells the deployment's shards and worker ids
        (dpr.Client.for_deployment). The client's domain is DEPLOYMENT.
    dpr://HOST[:PORT][,...]/?shards=H:P,H:P,...[&PARAMS]
        no agent: the finder(s) and the shards in routing order (dpr.Client).
    dprs://...
        the same over TLS (docs/tls.md): give the cluster CA with ``ca=``
        (and ``cert=``, ``key=``: the application's certificate, when the
        servers ask for one), or an ``ssl_context=`` keyword.

PARAMS (each at most once): ``timeout``, ``connect_timeout``,
``reconnect_timeout``, ``rollback_timeout``, ``resize_timeout`` (seconds,
> 0), ``domain`` (the DPR domain, when it is not the deployment's name),
``shards`` (the second form only), and ``ca``, ``cert``, ``key`` (file
paths; dprs:// only). An IPv6 address goes in brackets: ``[::1]:7000``.

parse_url() checks the URL and returns its parts (pure: no file is read,
nothing is connected); dpr.Client.from_url builds the client. A bad URL
raises ValueError naming what is wrong.
"""
from __future__ import annotations

import dataclasses
import re
import urllib.parse

from .resp import parse_address

__all__ = ["DprUrl", "parse_url", "DEFAULT_PORT", "SCHEMES"]

DEFAULT_PORT = 7000  # an agent's finder.listen (conf/agent.conf)
SCHEMES = ("dpr", "dprs")
MAX_HOSTS = 16  # a Client's finder list
TIMEOUTS = ("timeout", "connect_timeout", "reconnect_timeout", "rollback_timeout",
            "resize_timeout")
TLS_FILES = ("ca", "cert", "key")
# agent.conf/spec: a deployment name is a DNS label-like name
_DEPLOYMENT_RE = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")


@dataclasses.dataclass
class DprUrl:
    """The parts of a DPR URL (see the module's docstring)."""

    tls: bool
    hosts: list[str]                 # "HOST:PORT" each, the port filled in
    deployment: str | None           # None: the shards= form
    shards: list[str] | None         # the shards= form only
    options: dict[str, object]       # Client keyword arguments (timeouts, domain)
    tls_files: dict[str, str]        # ca, cert, key given


def _bad(url: str, why: str) -> ValueError:
    return ValueError("bad DPR URL %r: %s" % (url, why))


def _host(url: str, text: str) -> str:
    if not text:
        raise _bad(url, "an empty host in the host list")
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise _bad(url, "%r: an IPv6 address needs its closing ']'" % text)
        rest = text[end + 1:]
        if rest and not rest.startswith(":"):
            raise _bad(url, "%r: expected [IPv6]:PORT" % text)
        addr = text if rest else "%s:%d" % (text, DEFAULT_PORT)
    elif text.count(":") > 1:
        raise _bad(url, "%r: an IPv6 address goes in brackets: [IPv6]:PORT" % text)
    else:
        addr = text if ":" in text else "%s:%d" % (text, DEFAULT_PORT)
    try:
        parse_address(addr)
    except ValueError as e:
        raise _bad(url, str(e)) from None
    return addr


def _seconds(url: str, name: str, text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise _bad(url, "%s=%r: expected a number of seconds > 0" % (name, text))
    return v


def parse_url(url: str) -> DprUrl:
    """The parts of a DPR URL; ValueError naming the problem if it is not
    one."""
    if not isinstance(url, str):
        raise TypeError("a DPR URL is a string, not %s" % type(url).__name__)
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise _bad(url, "expected dpr://HOST[:PORT][,...]/DEPLOYMENT or dprs://... (TLS)")
    tls = scheme.lower() == "dprs"
    if "#" in rest:
        raise _bad(url, "a DPR URL has no #fragment")
    rest, _, query = rest.partition("?")  # (a file path in the query may hold '/')
    netloc, _, path = rest.partition("/")
    if "@" in netloc:
        raise _bad(url, "a DPR URL has no user or password (TLS certificates go in ca=, "
                        "cert=, key=)")
    if not netloc:
        raise _bad(url, "no host: expected dpr://HOST[:PORT]/DEPLOYMENT")
    hosts = [_host(url, h) for h in netloc.split(",")]
    if len(hosts) > MAX_HOSTS:
        raise _bad(url, "%d hosts: at most %d" % (len(hosts), MAX_HOSTS))
    if len(set(hosts)) != len(hosts):
        raise _bad(url, "a host is listed twice")
    try:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError as e:
        raise _bad(url, "query: %s" % e) from None
    params: dict[str, str] = {}
    for k, v in pairs:
        if k in params:
            raise _bad(url, "%s= is given twice" % k)
        params[k] = v
    known = TIMEOUTS + ("domain", "shards") + TLS_FILES
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise _bad(url, "unknown parameter %s (known: %s)" % (", ".join(unknown),
                                                             ", ".join(known)))
    deployment = urllib.parse.unquote(path) if path else None
    shards = None
    if "shards" in params:
        if deployment is not None:
            raise _bad(url, "either a /DEPLOYMENT (asked of the agents) or shards=, not both")
        shards = [s.strip() for s in params.pop("shards").split(",")]
        for s in shards:
            try:
                parse_address(s)
            except ValueError as e:
                raise _bad(url, "shards=: %s" % e) from None
    elif deployment is None:
        raise _bad(url, "no deployment: expected dpr://HOST[:PORT]/DEPLOYMENT (or "
                        "?shards=H:P,... without an agent)")
    elif not _DEPLOYMENT_RE.fullmatch(deployment):
        raise _bad(url, "deployment %r: expected a name like 'kv' or 'web-cache' (a-z, 0-9, "
                        "'-')" % deployment)
    options: dict[str, object] = {}
    for k in TIMEOUTS:
        if k in params:
            options[k] = _seconds(url, k, params.pop(k))
    if "domain" in params:
        options["domain"] = params.pop("domain")
    tls_files = {k: params.pop(k) for k in TLS_FILES if k in params}
    if tls_files and not tls:
        raise _bad(url, "%s= are TLS files: use dprs:// for TLS" % "=, ".join(tls_files))
    for k, v in tls_files.items():
        if not v:
            raise _bad(url, "%s= is empty: expected a file path" % k)
    if "key" in tls_files and "cert" not in tls_files:
        raise _bad(url, "key= without cert=")
    assert not params  # every known parameter was taken
    return DprUrl(tls, hosts, deployment, shards, options, tls_files)
