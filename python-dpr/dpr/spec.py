"""Cluster specs: the whole desired state of a DPR cluster.

    spec = dpr.ClusterSpec("demo", cachestores=[
        dpr.CacheStore("kv", impl="dpr-kv", version="1", shards=3,
                       checkpoint_interval_ms=100),
    ])
    spec = dpr.ClusterSpec.from_file("cluster.yaml")     # or from_yaml(text)
    spec.to_dict()                                       # the JSON the agent gets

The same spec in YAML:

    name: demo
    cachestores:
      - name: kv
        impl: dpr-kv
        version: "1"
        shards: 3
        checkpoint_interval_ms: 100
        maxmemory: 512mb          # optional: bytes, or as in Redis (k, kb, m, mb, g, gb)
        checkpoint_mode: full     # optional: log (dpr-kv's default) or full
        tls:                      # optional, with the agents' tls.enabled (docs/tls.md)
          clients: required       #   required (default), optional or "off" (quoted)
        node_selector:            # optional, in a cluster of agents: where it may run
          labels: [ssd]           #   nodes with every one of these labels (node.labels)
          nodes: [node1, node2]   #   and one of these names

``validate()`` checks the rules of docs/control-api.md ("The cluster spec")
on the client, so a mistake is reported before anything is sent, with the
same paths as the agent uses ("cachestores[0].shards: must be >= 1 (got 0)").
dpr-agent checks again and stays authoritative: only it knows the cluster's
name and which cache-store implementations it can run.

Fields left as None (``checkpoint_interval_ms``, ``max_clients``,
``maxmemory``, ``checkpoint_mode``) are not sent, so the agent's defaults
apply (100 ms and 10000 unless its configuration says otherwise; no memory
limit; dpr-kv's checkpoint mode, log).
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Iterable, Mapping

from .mgmt_errors import SpecError

__all__ = ["ClusterSpec", "CacheStore", "SpecError", "load_spec", "parse_memory",
           "format_memory"]

# docs/control-api.md, "The cluster spec"
NAME_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
NAME_MAX = 32
VERSION_RE = re.compile(r"^[A-Za-z0-9._+-]+$")
VERSION_MAX = 64
IMPL_MAX = 64
SHARDS_MIN, SHARDS_MAX = 1, 1024
CHECKPOINT_MIN, CHECKPOINT_MAX = 10, 60000
MAX_CLIENTS_MIN, MAX_CLIENTS_MAX = 1, 100000
MAXMEMORY_MIN, MAXMEMORY_MAX = 1 << 20, 1 << 44   # 0 (no limit), else 1mb .. 16384gb
CLUSTER_NAME_MAX = 63
# Redis' memory units (maxmemory 512mb), case-insensitive
_MEMORY_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2,
                 "g": 1000 ** 3, "gb": 1024 ** 3}
_MEMORY_RE = re.compile(r"^([0-9]+)([A-Za-z]*)$")
_MEMORY_HINT = ('bytes, or a string of digits with b, k, kb, m, mb, g or gb as in Redis: '
                '"512mb"')

SPEC_FIELDS = ("name", "cachestores")
CACHESTORE_FIELDS = ("name", "impl", "version", "shards", "checkpoint_interval_ms",
                     "max_clients", "maxmemory", "checkpoint_mode", "tls", "node_selector",
                     "replicas", "rollout")
# fields of a cache-store that may be left out (the agent's default applies)
OPTIONAL_FIELDS = ("checkpoint_interval_ms", "max_clients", "maxmemory", "checkpoint_mode",
                   "tls", "node_selector", "replicas", "rollout")
# checkpoint_mode: dpr-kv's --checkpoint-mode (absent: its default, log)
CHECKPOINT_MODES = ("log", "full")
# tls: {"clients": ...}: dpr-kv's --tls-auth-clients yes, optional, no
TLS_FIELDS = ("clients",)
TLS_CLIENTS = ("required", "optional", "off")
# rollout: how a change of its settings rolls through its instances
ROLLOUT_FIELDS = {"min_ready_seconds": (0, 86400), "max_unavailable": (1, SHARDS_MAX),
                  "partition": (0, SHARDS_MAX), "progress_deadline_seconds": (1, 86400),
                  # (rollout resume adds one: a node lifts its halt when it changes)
                  "resumed": (0, 1000000000)}
REPLICAS_MAX = 2
SELECTOR_FIELDS = ("nodes", "labels")
SELECTOR_MAX = 16
NODE_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,63}$")
LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9._=-]{0,61}[a-z0-9])?$")


def _kind(v: Any) -> str:
    """The kind of a JSON/YAML value, in the agent's words."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, int):
        return "an integer"
    if isinstance(v, float):
        return "a number with a fraction"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, Mapping):
        return "an object"
    return "a " + type(v).__name__


def _short(s: str) -> str:
    s = "".join(c if " " <= c < "\x7f" else "?" for c in s)
    return s if len(s) <= 60 else s[:57] + "..."


def _check_int(problems: list, path: str, v: Any, lo: int, hi: int) -> None:
    if isinstance(v, bool) or not isinstance(v, int):
        hint = ""
        if isinstance(v, str) and v.strip().lstrip("-").isdigit():
            hint = "; remove the quotes"
        problems.append((path, "must be an integer, %d to %d (got %s%s)"
                         % (lo, hi, _kind(v), hint)))
    elif v < lo:
        problems.append((path, "must be >= %d (got %d)" % (lo, v)))
    elif v > hi:
        problems.append((path, "must be <= %d (got %d)" % (hi, v)))


def parse_memory(v: int | str) -> int:
    """A memory size in bytes: an integer, or a string as Redis reads
    ``maxmemory`` (digits with an optional unit b, k = 1000, kb = 1024, m,
    mb, g, gb; case-insensitive): ``parse_memory("512mb") == 536870912``.
    Raises ValueError for anything else (signs, fractions, spaces, tb)."""
    if isinstance(v, bool):
        raise ValueError("not a memory size: %r" % (v,))
    if isinstance(v, int):
        if v < 0:
            raise ValueError("not a memory size: %d" % v)
        return v
    if not isinstance(v, str):
        raise ValueError("not a memory size: %r" % (v,))
    m = _MEMORY_RE.match(v)
    unit = m.group(2).lower() if m else None
    if m is None or unit not in _MEMORY_UNITS:
        raise ValueError("not a memory size: %r" % (v,))
    return int(m.group(1)) * _MEMORY_UNITS[unit]


def format_memory(n: int | None) -> str | None:
    """Bytes as a Redis-style size, exact: 536870912 -> "512mb", 1500 ->
    "1500b"; None or 0 -> None (no limit)."""
    if not n:
        return None
    for unit, mul in (("gb", 1024 ** 3), ("mb", 1024 ** 2), ("kb", 1024)):
        if n % mul == 0:
            return "%d%s" % (n // mul, unit)
    return "%db" % n


def _check_memory(problems: list, path: str, v: Any) -> None:
    """maxmemory: 0 (no limit), or 1mb to 16384gb (the agent's messages)."""
    if isinstance(v, bool) or not isinstance(v, (int, str)):
        problems.append((path, "must be a memory size: %s (got %s)" % (_MEMORY_HINT, _kind(v))))
        return
    if isinstance(v, int) and v < 0:
        problems.append((path, "must be 0 (no limit) or a size in %s (got %d)"
                         % (_MEMORY_HINT, v)))
        return
    try:
        n = parse_memory(v)
    except ValueError:
        problems.append((path, "not a memory size: '%s' (%s)" % (_short(str(v)), _MEMORY_HINT)))
        return
    if isinstance(v, str) and n >= 1 << 64:
        problems.append((path, "too large: '%s' (at most 16384gb)" % _short(v)))
    elif 0 < n < MAXMEMORY_MIN:
        problems.append((path, "must be 0 (no limit) or at least %d bytes (1mb) (got %d)"
                         % (MAXMEMORY_MIN, n)))
    elif n > MAXMEMORY_MAX:
        problems.append((path, "must be at most %d bytes (16384gb) (got %d)"
                         % (MAXMEMORY_MAX, n)))


def _unknown(problems: list, path: str, keys: Iterable[Any], known: tuple) -> None:
    for k in keys:
        if k not in known:
            p = "%s.%s" % (path, k) if path else str(k)
            near = _closest(str(k), known)
            hint = "did you mean '%s'? " % near if near else ""
            problems.append((p, "unknown field (%sknown: %s)" % (hint, ", ".join(known))))


def _closest(word: str, options: tuple) -> str | None:
    import difflib
    m = difflib.get_close_matches(word, options, n=1, cutoff=0.6)
    return m[0] if m else None


def _name_ok(v: Any, limit: int) -> bool:
    return isinstance(v, str) and len(v) <= limit and NAME_RE.match(v) is not None


def _check_selector(out: list, path: str, v: Any) -> None:
    """node_selector: {"nodes": [node names], "labels": [labels]} (the
    agent's rules and messages)."""
    if not isinstance(v, Mapping):
        out.append((path, 'must be an object: {"nodes": [node names], "labels": [labels '
                    'every node must have]} (got %s)' % _kind(v)))
        return
    _unknown(out, path, v.keys(), SELECTOR_FIELDS)
    for key, rx, what, rule in (
            ("nodes", NODE_NAME_RE, "node name", "A-Z a-z 0-9 . _ -, at most 63"),
            ("labels", LABEL_RE, "label", "a-z 0-9 . _ - =, at most 63")):
        if key not in v:
            continue
        items = v[key]
        if not isinstance(items, list) or len(items) > SELECTOR_MAX:
            out.append(("%s.%s" % (path, key), "must be a list of at most %d %ss (got %s)"
                        % (SELECTOR_MAX, what, _kind(items))))
            continue
        seen: set = set()
        for i, e in enumerate(items):
            where = "%s.%s[%d]" % (path, key, i)
            if not isinstance(e, str) or not rx.match(e):
                out.append((where, "not a %s (%s)%s" % (what, rule, ": '%s'" % _short(e)
                                                        if isinstance(e, str) else "")))
            elif e in seen:
                out.append((where, "'%s' is listed twice" % e))
            else:
                seen.add(e)


def _check_tls(out: list, path: str, v: Any) -> None:
    """tls: {"clients": "required" | "optional" | "off"} (the agent's rules
    and messages; whether the agents speak TLS only they know)."""
    if not isinstance(v, Mapping):
        out.append((path, 'must be an object such as {"clients": "required"} (got %s)'
                    % _kind(v)))
        return
    _unknown(out, path, v.keys(), TLS_FIELDS)
    if "clients" not in v:
        return
    c = v["clients"]
    if not isinstance(c, str):
        # (YAML 1.1 reads a bare off as false)
        hint = "; quote it in YAML: clients: \"off\"" if c is False else ""
        out.append((path + ".clients", "must be a string (got %s%s)" % (_kind(c), hint)))
    elif c not in TLS_CLIENTS:
        out.append((path + ".clients", "must be \"required\" (every client shows a "
                    "certificate of the cluster's CA), \"optional\" (checked when shown) or "
                    "\"off\" (none asked for) (got '%s')" % _short(c)))


def _check_rollout(out: list, path: str, v: Any) -> None:
    """rollout: {"min_ready_seconds", "max_unavailable", "partition",
    "progress_deadline_seconds", "paused", "resumed"} (the agent's rules and
    messages)."""
    if not isinstance(v, Mapping):
        out.append((path, 'must be an object: {"min_ready_seconds", "max_unavailable", '
                    '"partition", "progress_deadline_seconds", "paused"} (got %s)' % _kind(v)))
        return
    _unknown(out, path, v.keys(), tuple(ROLLOUT_FIELDS) + ("paused",))
    for f, (lo, hi) in ROLLOUT_FIELDS.items():
        if f in v:
            _check_int(out, "%s.%s" % (path, f), v[f], lo, hi)
    if "paused" in v and not isinstance(v["paused"], bool):
        out.append((path + ".paused", "must be true or false (got %s)" % _kind(v["paused"])))


@dataclasses.dataclass
class CacheStore:
    """One deployment: ``shards`` instances of a cache-store implementation,
    named ``<name>-0`` ... ``<name>-<shards-1>``.

    ``version`` is recorded and shown; changing it is an update (a rolling
    restart). ``checkpoint_interval_ms`` (10..60000) and ``max_clients``
    (1..100000) left as None take the agent's defaults. ``maxmemory``: the
    most data each instance holds before it refuses writes (Redis'
    ``noeviction``), in bytes or as in Redis (``"512mb"``, ``"2gb"``); None
    or 0: no limit. The agent derives each unit's ``MemoryMax`` from it.
    ``checkpoint_mode``: ``"log"`` (change logs between full images) or
    ``"full"`` (a full image every checkpoint), dpr-kv's
    ``--checkpoint-mode``; None: dpr-kv's default (log); a change restarts
    the instances through the roll-out.
    ``tls`` (the agents' ``tls.enabled``; docs/tls.md): ``{"clients":
    "required" | "optional" | "off"}``: whether clients of its TLS port
    must show a certificate of the cluster's CA (dpr-kv's
    ``--tls-auth-clients``); None: required when the agents speak TLS.
    ``node_selector`` (a cluster of agents): ``{"nodes": [names],
    "labels": [labels]}``: its instances go only to nodes named in
    ``nodes`` (if given) that have every label of ``labels`` (agent.conf
    ``node.labels``); None: any node. ``replicas`` (0..2, a cluster of
    agents): how many other nodes hold a copy of each instance's
    checkpoints before they count as durable; None: 1 when two nodes or
    more match the selector, else 0. ``rollout``: how a change of impl,
    version or settings rolls through the instances (``min_ready_seconds``,
    ``max_unavailable``, ``partition``, ``progress_deadline_seconds``,
    ``paused``; docs/operations.md "Roll-outs"); None: one at a time.
    """

    name: str
    impl: str = "dpr-kv"
    version: str | None = None
    shards: int | None = None
    checkpoint_interval_ms: int | None = None
    max_clients: int | None = None
    maxmemory: int | str | None = None
    checkpoint_mode: str | None = None
    tls: Mapping | None = None
    node_selector: Mapping | None = None
    replicas: int | None = None
    rollout: Mapping | None = None

    def to_dict(self) -> dict:
        d = {"name": self.name, "impl": self.impl, "version": self.version,
             "shards": self.shards}
        for f in OPTIONAL_FIELDS:
            v = getattr(self, f)
            if v is not None:
                d[f] = v
        return d

    @classmethod
    def from_dict(cls, d: Mapping, path: str = "cachestores[0]") -> "CacheStore":
        """From a mapping (as in JSON or YAML). Raises SpecError for unknown
        fields or a value that is not a mapping; the values themselves are
        checked by validate()."""
        problems: list = []
        cs = cls._from_dict(d, path, problems)
        if problems:
            raise SpecError(problems)
        assert cs is not None  # (a non-mapping is a problem)
        return cs

    @classmethod
    def _from_dict(cls, d: Any, path: str, problems: list) -> "CacheStore | None":
        if not isinstance(d, Mapping):
            problems.append((path, "must be an object (got %s)" % _kind(d)))
            return None
        _unknown(problems, path, d.keys(), CACHESTORE_FIELDS)
        kw = {k: d[k] for k in CACHESTORE_FIELDS if k in d}
        kw.setdefault("name", None)
        cs = cls(**kw)
        cs._given = set(d.keys())  # type: ignore[attr-defined]
        return cs

    def problems(self, path: str = "cachestores[0]") -> list[tuple[str, str]]:
        """Every rule this deployment breaks, as (path, message) (the same
        paths and messages as dpr-agent's, plus hints)."""
        out: list = []
        given = getattr(self, "_given", None)
        p = path + "."
        # name
        v: Any = self.name
        if v is None:
            out.append((p + "name", "required (a string)"))
        elif not isinstance(v, str):
            out.append((p + "name", "must be a string (got %s)" % _kind(v)))
        elif not _name_ok(v, NAME_MAX):
            out.append((p + "name", "must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most "
                        "%d characters (got '%s')" % (NAME_MAX, _short(v))))
        # impl (which ones exist only the agent knows)
        v = self.impl
        if not isinstance(v, str):
            out.append((p + "impl", "must be a string (got %s)" % _kind(v)))
        elif not v or len(v) > IMPL_MAX:
            out.append((p + "impl", "unknown implementation '%s' (e.g. dpr-kv)" % _short(v)))
        # version
        v = self.version
        if v is None and (given is None or "version" not in given):
            out.append((p + "version", "required (a string)"))
        elif not isinstance(v, str):
            hint = ""
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                hint = "; quote it in YAML: version: \"%s\"" % v
            out.append((p + "version", "must be a string (got %s%s)" % (_kind(v), hint)))
        elif not (0 < len(v) <= VERSION_MAX) or not VERSION_RE.match(v):
            out.append((p + "version", "must be 1 to %d characters of A-Z a-z 0-9 . _ + - "
                        "(got '%s')" % (VERSION_MAX, _short(v))))
        # shards
        if self.shards is None and (given is None or "shards" not in given):
            out.append((p + "shards", "required (an integer, %d to %d)"
                        % (SHARDS_MIN, SHARDS_MAX)))
        else:
            _check_int(out, p + "shards", self.shards, SHARDS_MIN, SHARDS_MAX)
        # optional integers (None = agent default; null given in a file is an error)
        for f, lo, hi in (("checkpoint_interval_ms", CHECKPOINT_MIN, CHECKPOINT_MAX),
                          ("max_clients", MAX_CLIENTS_MIN, MAX_CLIENTS_MAX),
                          ("replicas", 0, REPLICAS_MAX)):
            v = getattr(self, f)
            if v is None and (given is None or f not in given):
                continue
            _check_int(out, p + f, v, lo, hi)
        if self.maxmemory is not None or (given is not None and "maxmemory" in given):
            _check_memory(out, p + "maxmemory", self.maxmemory)
        v = self.checkpoint_mode
        if v is not None or (given is not None and "checkpoint_mode" in given):
            if not isinstance(v, str):
                out.append((p + "checkpoint_mode", "must be a string (got %s)" % _kind(v)))
            elif v not in CHECKPOINT_MODES:
                out.append((p + "checkpoint_mode", "must be \"log\" (change logs between full "
                            "images, dpr-kv's default) or \"full\" (a full image every "
                            "checkpoint) (got '%s')" % _short(v)))
        if self.tls is not None or (given is not None and "tls" in given):
            _check_tls(out, p + "tls", self.tls)
        if self.node_selector is not None or (given is not None and "node_selector" in given):
            _check_selector(out, p + "node_selector", self.node_selector)
        if self.rollout is not None or (given is not None and "rollout" in given):
            _check_rollout(out, p + "rollout", self.rollout)
        return out


@dataclasses.dataclass
class ClusterSpec:
    """The whole desired state of a cluster: its name (must equal the
    agent's configured cluster name) and its deployments. An empty
    ``cachestores`` list deletes every deployment when applied."""

    name: str
    cachestores: list = dataclasses.field(default_factory=list)

    # --- conversion -----------------------------------------------------------
    def to_dict(self) -> dict:
        return {"name": self.name,
                "cachestores": [c.to_dict() if isinstance(c, CacheStore) else c
                                for c in self.cachestores]}

    def to_yaml(self) -> str:
        import yaml
        return yaml.safe_dump(self.to_dict(), sort_keys=False, default_flow_style=False)

    @classmethod
    def from_dict(cls, d: Any, *, validate: bool = True) -> "ClusterSpec":
        """From a mapping (parsed JSON or YAML). Raises SpecError listing
        every problem (unknown fields, wrong types, values out of range);
        with validate=False only the structure is checked."""
        problems: list = []
        spec = cls._from_dict(d, problems)
        if spec is not None and validate:
            problems += spec.problems(_structure_done=True)
        if problems:
            raise SpecError(_ordered(problems))
        return spec  # type: ignore[return-value]

    @classmethod
    def _from_dict(cls, d: Any, problems: list) -> "ClusterSpec | None":
        if not isinstance(d, Mapping):
            problems.append(("", "the spec must be an object with name and cachestores "
                             "(got %s)" % _kind(d)))
            return None
        _unknown(problems, "", d.keys(), SPEC_FIELDS)
        items = d.get("cachestores", [])
        stores: list = []
        if "cachestores" not in d:
            problems.append(("cachestores", "required (a list of deployments; an empty "
                             "list deletes every deployment)"))
        elif not isinstance(items, (list, tuple)):
            problems.append(("cachestores", "must be a list (got %s)" % _kind(items)))
        else:
            for i, item in enumerate(items):
                cs = CacheStore._from_dict(item, "cachestores[%d]" % i, problems)
                stores.append(cs)
        name: Any = d.get("name")  # checked by validate(), like the rest
        spec = cls(name=name, cachestores=stores)
        spec._given = set(d.keys())  # type: ignore[attr-defined]
        return spec

    @classmethod
    def from_yaml(cls, text: str | bytes, source: str = "<string>", *,
                  validate: bool = True) -> "ClusterSpec":
        """From YAML text (yaml.safe_load; duplicate keys are an error).
        ``source`` names the text in messages (e.g. a file name)."""
        import yaml
        try:
            data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader
        except yaml.YAMLError as e:
            raise SpecError([("", "%s: not valid YAML: %s" % (source, _yaml_msg(e)))]) from None
        if data is None:
            raise SpecError([("", "%s: empty; a cluster spec needs name and cachestores"
                              % source)])
        return cls.from_dict(data, validate=validate)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, validate: bool = True) -> "ClusterSpec":
        """From a YAML (or JSON, which is YAML) file; "-" reads stdin."""
        import sys
        path = os.fspath(path)
        if path == "-":
            return cls.from_yaml(sys.stdin.read(), "<stdin>", validate=validate)
        try:
            with open(path, "rb") as f:
                text = f.read()
        except FileNotFoundError:
            raise SpecError([("", "%s: no such file" % path)]) from None
        except IsADirectoryError:
            raise SpecError([("", "%s: is a directory, not a spec file" % path)]) from None
        except OSError as e:
            raise SpecError([("", "%s: cannot read: %s" % (path, e.strerror or e))]) from None
        return cls.from_yaml(text, path, validate=validate)

    load = from_file

    # --- validation -----------------------------------------------------------
    def problems(self, _structure_done: bool = False) -> list[tuple[str, str]]:
        """Every rule of docs/control-api.md this spec breaks, as
        ``[(path, message), ...]`` (empty: valid as far as a client can tell;
        only the agent knows its cluster's name and its implementations)."""
        out: list = []
        given = getattr(self, "_given", None)
        v = self.name
        if v is None and (given is None or "name" not in given):
            out.append(("name", "required (a string: the agent's cluster name)"))
        elif not isinstance(v, str):
            out.append(("name", "must be a string (got %s)" % _kind(v)))
        elif not _name_ok(v, CLUSTER_NAME_MAX):
            out.append(("name", "not a valid cluster name: must match "
                        "^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most %d characters "
                        "(got '%s')" % (CLUSTER_NAME_MAX, _short(v))))
        if not isinstance(self.cachestores, (list, tuple)):
            if not _structure_done:
                out.append(("cachestores", "must be a list (got %s)" % _kind(self.cachestores)))
            return out
        names: list = []
        for i, cs in enumerate(self.cachestores):
            path = "cachestores[%d]" % i
            names.append(None)
            if cs is None and _structure_done:
                continue  # already reported by from_dict
            if not isinstance(cs, CacheStore):
                if isinstance(cs, Mapping):
                    sub: list = []
                    cs = CacheStore._from_dict(cs, path, sub)
                    out += sub
                    if cs is None:
                        continue
                else:
                    out.append((path, "must be a dpr.CacheStore or an object (got %s)"
                                % _kind(cs)))
                    continue
            out += cs.problems(path)
            if _name_ok(cs.name, NAME_MAX):
                names[i] = cs.name
        for i, n in enumerate(names):
            if n is not None and n in names[:i]:
                out.append(("cachestores[%d].name" % i, "duplicate name '%s' (also "
                            "cachestores[%d])" % (n, names.index(n))))
        return out

    def validate(self) -> "ClusterSpec":
        """Raises SpecError listing every problem; returns self when valid."""
        p = self.problems()
        if p:
            raise SpecError(_ordered(p))
        return self

    def cachestore(self, name: str) -> CacheStore:
        for cs in self.cachestores:
            if isinstance(cs, CacheStore) and cs.name == name:
                return cs
        raise KeyError(name)


_INDEX_RE = re.compile(r"^cachestores\[(\d+)\]")


def _ordered(problems: list) -> list:
    """The agent's order: the spec's own fields, then each deployment in
    turn, then duplicate names."""
    def key(pm: tuple[str, str]) -> tuple[int, int]:
        path, msg = pm
        m = _INDEX_RE.match(path)
        if not m:
            return (0, 0)
        if msg.startswith("duplicate name"):
            return (2, int(m.group(1)))
        return (1, int(m.group(1)))
    return sorted(problems, key=key)


def load_spec(source: Any) -> ClusterSpec:
    """A ClusterSpec from a ClusterSpec (returned as is), a mapping, or the
    path of a YAML file."""
    if isinstance(source, ClusterSpec):
        return source
    if isinstance(source, Mapping):
        return ClusterSpec.from_dict(source)
    if isinstance(source, (str, os.PathLike)):
        return ClusterSpec.from_file(source)
    raise TypeError("expected a dpr.ClusterSpec, a mapping or a file path, not %s"
                    % type(source).__name__)


# --- YAML ------------------------------------------------------------------------

def _yaml_msg(e: Exception) -> str:
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e)
    ctx = getattr(e, "context", None)
    where = ""
    if mark is not None:
        where = "line %d column %d: " % (mark.line + 1, mark.column + 1)
    text = "%s%s" % (where, problem)
    if ctx and ctx not in text:
        text += " (%s)" % ctx
    return text


def _make_loader() -> Any:
    import yaml

    class StrictLoader(yaml.SafeLoader):
        """SafeLoader that refuses duplicate keys (a silent override would
        hide a typo)."""

    def construct_mapping(loader: Any, node: Any, deep: bool = False) -> dict:
        loader.flatten_mapping(node)
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = loader.construct_object(key_node, deep=deep)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "found an unhashable key", key_node.start_mark)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark,
                    "duplicate key %r (first at line %d)" % (key, seen[key] + 1),
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
                                 construct_mapping)
    return StrictLoader


class _LazyLoader:
    _cls: Any = None

    def __call__(self, stream: Any) -> Any:
        if _LazyLoader._cls is None:
            _LazyLoader._cls = _make_loader()
        return _LazyLoader._cls(stream)


_StrictLoader = _LazyLoader()
