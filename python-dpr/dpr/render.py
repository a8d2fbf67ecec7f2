"""Output formats of dprctl (``-o table|wide|json|yaml``): pure functions
from the control API's JSON (or the objects of dpr.cluster) to text, so that
tests compare them with golden files without an agent.

    render.to_json(result)          # the agent's JSON, sorted keys, indented
    render.to_yaml(result)          # the same as YAML (python3-yaml)
    render.table(headers, rows)     # an aligned text table

``json`` is the control API's answer as it is (docs/control-api.md), with
its keys sorted so that the output is stable; ``yaml`` the same data;
``table`` the default, for people; ``wide`` the table with more columns.
"""
from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

__all__ = ["FORMATS", "table", "to_json", "to_json_line", "to_yaml", "event_line",
           "deployment_table", "instance_table", "describe_deployment",
           "describe_instance", "rollout_status"]

FORMATS = ("table", "wide", "json", "yaml")


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned text table (two spaces between columns, no trailing blanks;
    None is shown as "-")."""
    cells = [[str(h) for h in headers]] + [["-" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = []
    for r in cells:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(r)).rstrip())
    return "\n".join(lines)


def to_json(obj: Any) -> str:
    """Indented JSON with sorted keys (stable output)."""
    return json.dumps(obj, indent=2, sort_keys=True)


def to_json_line(obj: Any) -> str:
    """One line of JSON with sorted keys (an event of ``events -o json``)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def to_yaml(obj: Any, document: bool = False) -> str:
    """Block-style YAML with sorted keys; ``document``: starts with ``---``
    (one event of a stream). Ends with a newline."""
    import yaml
    text = yaml.safe_dump(obj, sort_keys=True, default_flow_style=False, allow_unicode=False,
                          width=100)
    return ("---\n" + text) if document else text


def one_line(s: Any, limit: int | None = 60) -> Any:
    """s on one line (runs of white space made one blank), cut to limit
    characters with "..." (None: not cut); None stays None."""
    if s is None:
        return None
    s = " ".join(str(s).split())
    return s if limit is None or len(s) <= limit else s[:limit - 3] + "..."


def event_line(d: Mapping, wide: bool = False) -> str:
    """An event for people: the line of dpr.control.format_event; ``wide``
    also shows the fields that are null (as "-") instead of leaving them
    out."""
    from .control import format_event
    line = format_event(d)
    if not wide:
        return line
    shown = {"time", "seq", "type", "name", "active_state", "sub_state", "ready", "plan"}
    missing = ["%s=-" % ("pid" if k == "main_pid" else k) for k, v in d.items()
               if v is None and k not in shown]
    return " ".join([line] + missing)


def _memory(v: Any) -> Any:
    from .spec import format_memory
    return format_memory(v) if isinstance(v, int) and not isinstance(v, bool) else None


def _selector(sel: Any) -> Any:
    if not isinstance(sel, Mapping):
        return None
    parts = []
    if sel.get("nodes"):
        parts.append("nodes=" + ",".join(str(n) for n in sel["nodes"]))
    if sel.get("labels"):
        parts.append("labels=" + ",".join(str(n) for n in sel["labels"]))
    return ";".join(parts) or None


def _rollout(ro: Any) -> Any:
    if not isinstance(ro, Mapping) or ro.get("phase") is None:
        return None
    return "%s %s/%s" % (ro.get("phase"), ro.get("updated", "-"), ro.get("targets", "-"))


def _cut(cut: Any) -> Any:
    """A deployment's cut, its shards' entries in order: ``55,54,57``."""
    if not cut or all(c is None for c in cut):
        return None
    return one_line(",".join("-" if c is None else str(c) for c in cut), 40)


def _yn(v: Any) -> str:
    return "yes" if v else "no"


DEPLOYMENT_HEADERS = ["DEPLOYMENT", "IMPL", "VERSION", "SHARDS", "READY", "CHECKPOINT",
                      "MAXMEMORY", "WORLD-LINE", "CUT"]
DEPLOYMENT_WIDE = ["MAX-CLIENTS", "MAX-VERSION", "ROLLOUT", "LAYOUT", "REPLICAS", "SELECTOR"]


def deployment_row(d: Any, wide: bool = False) -> list:
    """A dpr.cluster.Deployment as a row of DEPLOYMENT_HEADERS (and
    DEPLOYMENT_WIDE)."""
    row = [d.name, d.impl, d.version, d.shards,
           "%d/%s" % (sum(1 for i in d.instances if i.ready),
                      d.shards if d.shards is not None else len(d.instances)),
           "%sms" % d.checkpoint_interval_ms if d.checkpoint_interval_ms else None,
           _memory(d.maxmemory), d.world_line, _cut(d.cut)]
    if wide:
        raw = d.raw or {}
        layout = d.layout if isinstance(d.layout, Mapping) else {}
        row += [d.max_clients, d.max_version, _rollout(d.rollout), layout.get("epoch"),
                raw.get("replicas"), _selector(raw.get("node_selector"))]
    return row


def deployment_table(deployments: Sequence[Any], wide: bool = False) -> str:
    """The deployments table of ``dprctl status`` (dpr.cluster.Deployment
    objects)."""
    return table(DEPLOYMENT_HEADERS + (DEPLOYMENT_WIDE if wide else []),
                 [deployment_row(d, wide) for d in deployments])


INSTANCE_HEADERS = ["INSTANCE", "NODE", "WORKER", "ENDPOINT", "STATE", "READY", "HEALTH",
                    "RESTARTS", "PID", "DURABLE", "WORLD-LINE", "CUT"]
INSTANCE_WIDE = ["SHARD", "UNIT", "GENERATION", "OUTDATED", "MEMORY-MAX", "REPLICAS",
                 "REPLICATED", "TLS"]


def _generation(i: Any) -> Any:
    if i.generation is None:
        return None
    if i.running_generation is None or i.running_generation == i.generation:
        return i.generation
    return "%s (runs %s)" % (i.generation, i.running_generation)


def instance_row(i: Any, wide: bool = False) -> list:
    """A dpr.cluster.Instance as a row of INSTANCE_HEADERS (and
    INSTANCE_WIDE), then LAST ERROR (cut at 60 characters unless wide)."""
    row = [i.name, i.node, i.worker, i.endpoint, i.state, _yn(i.ready), i.health, i.restarts,
           i.main_pid or None, i.durable_version, i.world_line, i.cut]
    if wide:
        row += [i.shard, i.unit, _generation(i),
                None if i.outdated is None else _yn(i.outdated), _memory(i.memory_max),
                ",".join(str(r) for r in i.replicas) if i.replicas else None, i.replicated,
                i.tls]
    return row + [one_line(i.last_error, None if wide else 60)]


def instance_table(instances: Sequence[Any], wide: bool = False) -> str:
    """The instances table of ``dprctl status`` (dpr.cluster.Instance
    objects)."""
    return table(INSTANCE_HEADERS + (INSTANCE_WIDE if wide else []) + ["LAST ERROR"],
                 [instance_row(i, wide) for i in instances])


def _fields(pairs: Sequence[tuple]) -> str:
    width = max(len(k) for k, _ in pairs) + 1
    return "\n".join(("%-*s %s" % (width, k + ":", "-" if v is None else v)).rstrip()
                     for k, v in pairs)


def describe_deployment(d: Any, events: Sequence[str] = ()) -> str:
    """``dprctl describe deployment``: a dpr.cluster.Deployment for people:
    its spec, roll-out, layout, its instances and the recent log lines
    given (``events``)."""
    raw = d.raw or {}
    ro = d.rollout if isinstance(d.rollout, Mapping) else {}
    layout = d.layout if isinstance(d.layout, Mapping) else {}
    resize = layout.get("resize")
    pairs = [("Name", d.name), ("Impl", d.impl), ("Version", d.version),
             ("Shards", d.shards), ("Ready", "%d/%s" % (sum(1 for i in d.instances if i.ready),
                                                        d.shards)),
             ("Checkpoint interval", "%sms" % d.checkpoint_interval_ms
              if d.checkpoint_interval_ms else None),
             ("Max clients", d.max_clients), ("Maxmemory", _memory(d.maxmemory) or "no limit"),
             ("Replicas", raw.get("replicas", "auto")),
             ("TLS", "clients %s" % d.tls.get("clients") if isinstance(d.tls, Mapping)
              else "no (plain)"),
             ("Node selector", _selector(raw.get("node_selector")) or "any node"),
             ("Domain", d.domain), ("World-line", d.world_line),
             ("Max version", d.max_version), ("Cut", _cut(d.cut)),
             ("Layout", None if not layout else "epoch %s%s" % (
                 layout.get("epoch"), ", resizing %s -> %s: %s" % (
                     resize.get("from"), resize.get("to"), resize.get("step"))
                 if isinstance(resize, Mapping) else "")),
             ("Roll-out", _rollout(ro)), ]
    if ro.get("halted"):
        pairs.append(("Roll-out halted", one_line(ro["halted"], None)))
    if isinstance(ro.get("settings"), Mapping):
        pairs.append(("Roll-out settings", ", ".join(
            "%s=%s" % (k, json.dumps(ro["settings"][k])) for k in sorted(ro["settings"]))))
    if d.degraded:
        pairs.append(("Degraded", one_line(d.degraded, None)))
    parts = [_fields(pairs), "Instances:\n" + _indent(instance_table(d.instances))
             if d.instances else "Instances: none"]
    parts.append(_recent(events))
    return "\n\n".join(parts)


def describe_instance(i: Any, deployment: str, events: Sequence[str] = ()) -> str:
    """``dprctl describe instance``: a dpr.cluster.Instance for people, with
    the recent log lines given (``events``)."""
    pairs = [("Name", i.name), ("Deployment", deployment), ("Shard", i.shard),
             ("Node", i.node), ("Unit", i.unit), ("Worker", i.worker),
             ("Endpoint", i.endpoint), ("TLS", i.tls or "no (plain)"), ("State", i.state),
             ("Ready", _yn(i.ready)),
             ("Health", i.health), ("Restarts", i.restarts), ("PID", i.main_pid or None),
             ("Memory max", _memory(i.memory_max)), ("Generation", _generation(i)),
             ("Running version", i.running_version),
             ("Outdated", None if i.outdated is None else _yn(i.outdated)),
             ("Durable version", i.durable_version), ("World-line", i.world_line),
             ("Cut", i.cut)]
    if i.replicas:
        pairs += [("Replicas", ", ".join(str(r) for r in i.replicas)),
                  ("Replicated", i.replicated)]
    if i.replica_error:
        pairs.append(("Replica error", one_line(i.replica_error, None)))
    pairs += [("Status", one_line(i.status_text, None)),
              ("Last error", one_line(i.last_error, None))]
    return "\n\n".join([_fields(pairs), _recent(events)])


def _indent(text: str) -> str:
    return "\n".join("  " + line if line else line for line in text.splitlines())


def _recent(events: Sequence[str]) -> str:
    if not events:
        return ("Recent events: none found in this host's journal (reading it may need "
                "group systemd-journal or adm)")
    return "Recent events:\n" + "\n".join("  " + one_line(e, None) for e in events)


ROLLOUT_WIDE_HEADERS = ["INSTANCE", "NODE", "SHARD", "TARGET", "GENERATION", "RUNNING-VERSION",
                        "OUTDATED", "READY", "STATE", "HEALTH"]


def rollout_status(name: str, ro: Mapping, wide: bool = False,
                   instances: Sequence[Any] = ()) -> str:
    """``dprctl rollout status``: a deployment's roll-out (the control API's
    ``rollout`` object) for people. ``wide`` also shows each other node's
    phase (``nodes``, in a cluster of agents) and the deployment's
    ``instances`` (dpr.cluster.Instance objects): whether the roll-out
    updates it (shard >= partition), the generation of its settings and
    the one and version its process runs, outdated and ready."""
    settings = ro.get("settings")
    st: Mapping = settings if isinstance(settings, Mapping) else {}
    lines = ["%s: roll-out %s, %s/%s updated, %s unavailable" % (
        name, ro.get("phase"), ro.get("updated"), ro.get("targets"), ro.get("unavailable"))]
    if ro.get("halted"):
        lines.append("halted: %s" % ro["halted"])
    lines.append("partition %s, max_unavailable %s, min_ready_seconds %s, "
                 "progress_deadline_seconds %s%s%s" % (
                     st.get("partition"), st.get("max_unavailable"),
                     st.get("min_ready_seconds"), st.get("progress_deadline_seconds"),
                     ", paused" if ro.get("paused") else "",
                     "" if ro.get("can_undo") else ", nothing to undo"))
    if not wide:
        return "\n".join(lines)
    nodes = ro.get("nodes")
    if isinstance(nodes, Mapping) and nodes:
        lines.append("nodes: " + ", ".join("%s %s" % (n, nodes[n]) for n in sorted(nodes)))
    partition = st.get("partition")
    part = partition if isinstance(partition, int) else 0
    rows = [[i.name, i.node, i.shard,
             None if not isinstance(i.shard, int) else _yn(i.shard >= part), _generation(i),
             i.running_version, None if i.outdated is None else _yn(i.outdated), _yn(i.ready),
             i.state, i.health] for i in instances]
    parts = ["\n".join(lines)]
    parts.append(table(ROLLOUT_WIDE_HEADERS, rows) if rows else "no instances")
    return "\n\n".join(parts)
