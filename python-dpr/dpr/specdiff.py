"""Field-level differences between a cluster spec and what the cluster has
(``dprctl diff``): pure functions, no I/O.

    changes = specdiff.diff(spec.to_dict(), status_result)
    print(specdiff.format_changes(changes))
    #   ~ deployments.cache.shards: 3 -> 4
    #   + deployments.new
    #   - deployments.old

The spec side is a spec as a mapping (dpr.spec.ClusterSpec.to_dict()); the
cluster side the agent's ``status`` result (docs/control-api.md), whose
deployments carry the recorded settings. A field the spec leaves out takes
the agent's default (``checkpoint_interval_ms``, ``max_clients``) and is not
compared, except where leaving it out means something the status shows:
``impl`` (``dpr-kv``), ``maxmemory`` (no limit), ``replicas`` and
``node_selector`` (automatic, any node: a recorded value would go). Of
``rollout``, the fields the spec gives are compared with the recorded
settings. Values are compared as the agent records them (``maxmemory`` in
bytes, shown in Redis' units).
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

__all__ = ["Change", "diff", "format_changes", "normalize_spec", "normalize_status"]

# compared when the spec gives them; (field, value when the spec leaves it out or
# _SKIP: not compared then)
_SKIP = object()
_FIELDS = (("impl", "dpr-kv"), ("version", _SKIP), ("shards", _SKIP),
           ("checkpoint_interval_ms", _SKIP), ("max_clients", _SKIP), ("maxmemory", 0),
           ("checkpoint_mode", None), ("tls", _SKIP), ("replicas", None), ("node_selector", None))
_ROLLOUT = ("min_ready_seconds", "max_unavailable", "partition", "progress_deadline_seconds",
            "paused")


@dataclasses.dataclass(frozen=True)
class Change:
    """One difference: ``op`` is ``+`` (only in the spec: apply creates
    it), ``-`` (only in the cluster: apply deletes it) or ``~`` (both, with
    other values: ``old`` the cluster's, ``new`` the spec's); ``path`` is
    dotted (``deployments.kv.shards``)."""

    op: str
    path: str
    old: Any = None
    new: Any = None

    def __str__(self) -> str:
        if self.op == "~":
            return "~ %s: %s -> %s" % (self.path, _show(self.path, self.old),
                                      _show(self.path, self.new))
        return "%s %s" % (self.op, self.path)


def _show(path: str, v: Any) -> str:
    if v is None:
        return "(none)"
    if path.endswith(".maxmemory") and isinstance(v, int) and not isinstance(v, bool):
        from .spec import format_memory
        return format_memory(v) or "0 (no limit)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Mapping):
        return "{%s}" % ", ".join("%s: %s" % (k, _show("", v[k])) for k in sorted(v))
    if isinstance(v, (list, tuple)):
        return "[%s]" % ", ".join(_show("", x) for x in v)
    return str(v)


def _selector(v: Any) -> Any:
    """A node_selector as compared: its non-empty lists, sorted; None when
    it selects every node."""
    if not isinstance(v, Mapping):
        return None
    out = {k: sorted(str(x) for x in v[k]) for k in ("nodes", "labels") if v.get(k)}
    return out or None


def _tls(v: Any) -> Any:
    """tls as compared: its clients ({} means required); None: plain."""
    if not isinstance(v, Mapping):
        return None
    return v.get("clients") or "required"


def normalize_spec(spec: Mapping) -> dict:
    """A spec mapping as ``{"name": ..., "deployments": {name: {field:
    value}}}`` with the fields it gives (and the defaults that mean
    something), maxmemory in bytes. Raises ValueError for a maxmemory that
    does not parse (the spec's validation reports it first)."""
    from .spec import parse_memory
    deps: dict = {}
    for cs in spec.get("cachestores") or []:
        if not isinstance(cs, Mapping) or not isinstance(cs.get("name"), str):
            continue
        d: dict = {}
        for field, default in _FIELDS:
            v = cs.get(field)
            if v is None:
                if default is _SKIP:
                    continue
                v = default
            if field == "maxmemory" and isinstance(v, (int, str)):
                v = parse_memory(v)
            elif field == "node_selector":
                v = _selector(v)
            elif field == "tls":
                v = _tls(v)
            d[field] = v
        ro = cs.get("rollout")
        if isinstance(ro, Mapping):
            for k in _ROLLOUT:
                if ro.get(k) is not None:
                    d["rollout." + k] = ro[k]
        deps[cs["name"]] = d
    return {"name": spec.get("name"), "deployments": deps}


def normalize_status(status: Mapping) -> dict:
    """The agent's status result in the shape of normalize_spec (every
    field the agent reports)."""
    deps: dict = {}
    for dep in status.get("deployments") or []:
        if not isinstance(dep, Mapping) or not isinstance(dep.get("name"), str):
            continue
        d: dict = {}
        for field, default in _FIELDS:
            v = dep.get(field)
            if field == "node_selector":
                v = _selector(v)
            elif field == "tls":
                v = _tls(v)
            elif v is None and default is not _SKIP:
                v = default
            if v is not None or field in ("replicas", "node_selector"):
                d[field] = v
        ro = dep.get("rollout")
        settings = ro.get("settings") if isinstance(ro, Mapping) else None
        if isinstance(settings, Mapping):
            for k in _ROLLOUT:
                if k in settings:
                    d["rollout." + k] = settings[k]
        deps[dep["name"]] = d
    return {"name": status.get("cluster"), "deployments": deps}


def diff(spec: Mapping, status: Mapping) -> list:
    """The Changes that applying ``spec`` (a mapping) would make to the
    cluster whose ``status`` result is given: deployments in name order,
    fields in the spec's order. Empty: nothing differs."""
    want, have = normalize_spec(spec), normalize_status(status)
    out: list = []
    if want["name"] is not None and have["name"] is not None and want["name"] != have["name"]:
        out.append(Change("~", "name", have["name"], want["name"]))
    names = sorted(set(want["deployments"]) | set(have["deployments"]))
    for name in names:
        w, h = want["deployments"].get(name), have["deployments"].get(name)
        path = "deployments." + name
        if h is None:
            out.append(Change("+", path))
        elif w is None:
            out.append(Change("-", path))
        else:
            for field, v in w.items():
                if field not in h and field.startswith("rollout."):
                    continue  # an agent that does not report it
                if h.get(field) != v:
                    out.append(Change("~", "%s.%s" % (path, field), h.get(field), v))
    return out


def format_changes(changes: Sequence[Change]) -> str:
    """One line per change; "no differences" when there is none."""
    return "\n".join(str(c) for c in changes) if changes else "no differences"
