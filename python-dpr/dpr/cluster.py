"""Declarative management of a DPR cluster through the local dpr-agent.

    import dpr
    spec = dpr.ClusterSpec("demo", cachestores=[
        dpr.CacheStore("kv", impl="dpr-kv", version="1", shards=3)])
    with dpr.connect() as cluster:          # /run/dpr/agent.sock or $DPR_SOCKET
        plan = cluster.apply(spec)          # created / updated / deleted / unchanged
        cluster.wait_ready("kv", timeout=60)
        for inst in cluster.status("kv").instances:
            print(inst.name, inst.endpoint, inst.ready, inst.restarts)
        client = cluster.client("kv")       # a dpr.Client on the shards, in order,
                                            # in the deployment's DPR domain ("kv")

    dpr.connect(address="10.0.0.1:7403")    # an agent's control API over TCP
    dpr.connect(cluster="demo")             # found by DNS-SD (an agent publishing ctl=)

See docs/control-api.md for the protocol and python-dpr/README.md.
"""
from __future__ import annotations

import dataclasses
import os
import re
import time
from typing import Any, Callable, Mapping, Sequence

from .control import DEFAULT_TIMEOUT, ControlConnection, EventStream
from .errors import DiscoveryError
from .mgmt_errors import (AgentError, AgentProtocolError, AgentUnavailable, NotFound,
                          ReadyTimeout, RolloutHalted)
from .spec import ClusterSpec, load_spec

__all__ = ["connect", "Cluster", "Plan", "Status", "Deployment", "Instance", "FinderStatus",
           "FinderDomain", "Node"]

_SHARD_RE = re.compile(r"-(\d+)$")


def _fields(cls: Any, d: Mapping) -> dict:
    names = {f.name for f in dataclasses.fields(cls)} - {"raw"}
    return {k: d.get(k) for k in names if k in d}


@dataclasses.dataclass
class Plan:
    """What ``apply``/``plan``/``delete`` did (or would do): instance names,
    sorted, in four lists, and the cluster's generation (for a plan or a
    dry run: the current one)."""

    created: list = dataclasses.field(default_factory=list)
    updated: list = dataclasses.field(default_factory=list)
    deleted: list = dataclasses.field(default_factory=list)
    unchanged: list = dataclasses.field(default_factory=list)
    generation: int | None = None
    dry_run: bool = False
    # deployments whose shard count changes: dicts with "deployment",
    # "from", "to" (shard counts), "epoch" (the new layout) and "moves" (the
    # share of the deployment's keys that move to another shard)
    resizes: list = dataclasses.field(default_factory=list)
    # in a cluster of agents: each deployment's nodes in shard order
    # ({"kv": ["node1", "node2", "node3"]}; None on a single node), and the
    # generation of the cluster's spec record
    placement: dict | None = None
    cluster_generation: int | None = None

    @classmethod
    def from_result(cls, result: Any, dry_run: bool = False) -> "Plan":
        if not isinstance(result, Mapping):
            raise AgentProtocolError("dpr-agent answered with %r instead of a plan" % (result,),
                                     code="bad_reply")
        p = result.get("plan") or {}
        return cls(created=list(p.get("created") or []), updated=list(p.get("updated") or []),
                   deleted=list(p.get("deleted") or []),
                   unchanged=list(p.get("unchanged") or []),
                   generation=result.get("generation"), dry_run=dry_run,
                   resizes=[r for r in p.get("resizes") or [] if isinstance(r, Mapping)],
                   placement=dict(result["placement"])
                   if isinstance(result.get("placement"), Mapping) else None,
                   cluster_generation=result.get("cluster_generation"))

    @property
    def changed(self) -> bool:
        """True when something was (or would be) created, updated or deleted."""
        return bool(self.created or self.updated or self.deleted)

    def summary(self) -> str:
        return "%d created, %d updated, %d deleted, %d unchanged" % (
            len(self.created), len(self.updated), len(self.deleted), len(self.unchanged))

    def __str__(self) -> str:
        return "generation %s: %s" % (self.generation, self.summary())


@dataclasses.dataclass
class Instance:
    """One cache-store instance (a shard of a deployment) as the agent sees it.

    ``ready``: the unit is active and the cache-store signalled READY=1.
    ``restarts``: systemd's NRestarts. ``durable_version`` (the newest
    version the finder holds durable), ``world_line``, ``cut``: the DPR view
    in the deployment's domain (None when not known). ``health``: ``ok``,
    ``refusing-writes`` (checkpoints fail: writes are refused),
    ``finder-lost-worker`` (the finder does not know it: commits stopped) or
    ``failed`` (its unit failed, or it exits because it cannot go on, e.g. a
    damaged checkpoint; ``last_error`` says why); None while the agent cannot
    see the unit. ``status_text``: the cache-store's own status line
    (systemd's StatusText). ``memory_max``: the unit's MemoryMax in bytes
    (None: no limit). ``generation``: the spec generation of its settings;
    ``running_generation``, ``running_version``: those its process runs
    (older while a roll-out has not reached it); ``outdated``: it does not
    run its settings yet. ``metrics_endpoint``: its Prometheus endpoint
    (agent.conf cachestores.metrics_port_min/max; None: none). ``tls``:
    its endpoint speaks TLS only (the agents' tls.enabled), asking clients
    for certificates as this says (``required``, ``optional``, ``off``);
    None: plain. ``raw``: the
    whole status object."""

    name: str
    unit: str | None = None
    node: str | None = None
    worker: int | None = None
    shard: int | None = None
    endpoint: str | None = None
    metrics_endpoint: str | None = None
    tls: str | None = None
    active_state: str | None = None
    sub_state: str | None = None
    ready: bool = False
    restarts: int | None = None
    main_pid: int | None = None
    durable_version: int | None = None
    world_line: int | None = None
    cut: int | None = None
    last_error: str | None = None
    health: str | None = None
    status_text: str | None = None
    memory_max: int | None = None
    generation: int | None = None
    running_generation: int | None = None
    running_version: str | None = None
    outdated: bool | None = None
    # a cluster of agents: the nodes holding copies of its checkpoints, the
    # newest version copied to all of them, why the last copy failed
    replicas: list | None = None
    replicated: int | None = None
    replica_error: str | None = None
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Instance":
        kw = _fields(cls, d)
        kw.setdefault("name", "?")
        kw["ready"] = bool(kw.get("ready"))
        if not isinstance(kw.get("shard"), int):
            # the shard index from the name <deployment>-<shard>
            m = _SHARD_RE.search(str(kw["name"]))
            kw["shard"] = int(m.group(1)) if m else None
        return cls(raw=dict(d), **kw)

    @property
    def state(self) -> str:
        """``active_state/sub_state``, e.g. ``active/running``; ``unknown``
        while the agent knows no unit state (e.g. systemd not reachable)."""
        if self.active_state is None and self.sub_state is None:
            return "unknown"
        return "%s/%s" % (self.active_state or "?", self.sub_state or "?")

    @property
    def healthy(self) -> bool:
        """Not reported unhealthy (``health`` is ``ok``, or unknown)."""
        return self.health in (None, "ok")


@dataclasses.dataclass
class Deployment:
    """One deployment (a ``CacheStore`` of the spec) and its instances,
    sorted by shard.

    Every deployment is a DPR domain of its own (``domain``, its name): its
    own world-lines, cut and recovery, so a crash, restart or update in one
    deployment never rolls back sessions of another. ``world_line``: the
    domain's current world-line (None until its first instance registered
    with the finder); ``max_version``: the newest durable version any of
    its shards reported; ``cut``: each shard's entry in the domain's cut, in
    shard order (None for a shard not registered)."""

    name: str
    impl: str | None = None
    version: str | None = None
    shards: int | None = None
    checkpoint_interval_ms: int | None = None
    max_clients: int | None = None
    maxmemory: int | None = None
    checkpoint_mode: str | None = None  # None: dpr-kv's default (log)
    # {"clients": "required" | "optional" | "off"}: its shards speak TLS only
    # (the agents' tls.enabled); None: plain
    tls: dict | None = None
    ready: int = 0
    domain: str | None = None
    world_line: int | None = None
    max_version: int | None = None
    cut: list = dataclasses.field(default_factory=list)
    instances: list = dataclasses.field(default_factory=list)
    # the layout its shards have: {"epoch", "shards", "resize": None or
    # {"from", "to", "epoch", "step", "moved_keys", "seconds", "error"}}
    layout: dict | None = None
    # a cluster of agents: why it cannot serve every shard (instances on a
    # node that is down wait for it), else None
    degraded: str | None = None
    # its roll-out on the agent's node: {"phase": done|progressing|paused|
    # halted, "updated", "targets", "unavailable", "paused", "halted": reason
    # or None, "can_undo", "settings"}
    rollout: dict | None = None
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Deployment":
        kw = _fields(cls, d)
        kw.setdefault("name", "?")
        insts = [Instance.from_dict(i) for i in d.get("instances") or [] if isinstance(i, Mapping)]
        insts.sort(key=lambda i: (i.shard is None, i.shard or 0, i.name))
        kw["instances"] = insts
        kw["ready"] = kw.get("ready") or sum(1 for i in insts if i.ready)
        kw["domain"] = kw.get("domain") or kw["name"]
        cut = kw.get("cut")
        if not isinstance(cut, list):
            # an agent that does not say: the instances' entries, in shard order
            cut = [i.cut for i in insts]
        kw["cut"] = list(cut)
        return cls(raw=dict(d), **kw)

    @property
    def is_ready(self) -> bool:
        """Every shard has an instance, every instance is ready, its shards
        have their layout, no resize is in progress (its keys are where its
        layout says), and its roll-out is done: every instance it updates
        runs the applied generation and stayed ready for
        min_ready_seconds."""
        n = self.shards if isinstance(self.shards, int) else len(self.instances)
        laid_out = not isinstance(self.layout, Mapping) or (self.layout.get("epoch") or 0) >= 1
        return (len(self.instances) == n and n > 0 and laid_out
                and all(i.ready for i in self.instances) and not self.resizing
                and self.rollout_done)

    @property
    def rollout_phase(self) -> str | None:
        """``done``, ``progressing``, ``paused``, ``halted`` (None: an agent
        from before roll-outs)."""
        return self.rollout.get("phase") if isinstance(self.rollout, Mapping) else None

    @property
    def rollout_halted(self) -> str | None:
        """Why its roll-out halted, or None."""
        if not isinstance(self.rollout, Mapping):
            return None
        return self.rollout.get("halted") or None

    @property
    def rollout_done(self) -> bool:
        """No instance waits for an update: the roll-out is done, and every
        instance it updates (shard >= partition) runs its settings."""
        if self.rollout_phase not in (None, "done"):
            return False
        part = 0
        if isinstance(self.rollout, Mapping):
            part = (self.rollout.get("settings") or {}).get("partition") or 0
        return not any(i.outdated for i in self.instances
                       if isinstance(i.shard, int) and i.shard >= part)

    @property
    def not_ready(self) -> list:
        return [i for i in self.instances if not i.ready]

    @property
    def unhealthy(self) -> list:
        """The instances whose health is not ``ok`` (refusing writes, lost by
        the finder, failed)."""
        return [i for i in self.instances if not i.healthy]

    @property
    def resizing(self) -> bool:
        """A resize of this deployment is in progress (its keys move)."""
        return bool(isinstance(self.layout, Mapping) and self.layout.get("resize"))

    @property
    def endpoints(self) -> list:
        """The instances' endpoints in shard order (what dpr.Client wants)."""
        return [i.endpoint for i in self.instances]

    def instance(self, name_or_shard: str | int) -> Instance:
        for i in self.instances:
            if i.name == name_or_shard or i.shard == name_or_shard:
                return i
        raise KeyError(name_or_shard)


@dataclasses.dataclass
class FinderDomain:
    """One DPR domain of the finder (a deployment's, named after it):
    its world-line, the newest durable version reported in it, and how many
    workers are registered."""

    name: str
    world_line: int | None = None
    max_version: int | None = None
    workers: int | None = None
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> "FinderDomain":
        kw = _fields(cls, d)
        kw.setdefault("name", "?")
        return cls(raw=dict(d), **kw)


@dataclasses.dataclass
class FinderStatus:
    """The hosted finder: its ``address`` and ``domains`` (FinderDomain,
    sorted by name; one per deployment whose instances registered).
    ``state``: ``ok``, or ``lost`` when it does not know workers whose
    versions it had committed (its state was lost or replaced; ``lost``
    names their instances, ``error`` says what to do: docs/operations.md,
    "The finder's state was lost")."""

    address: str | None = None
    # the finders' TLS ports (agent.conf finder.tls_listen); None: no TLS
    tls_address: str | None = None
    domains: list = dataclasses.field(default_factory=list)
    served_here: bool | None = None    # this node's agent serves it (the Raft leader)
    state: str | None = None
    lost: list = dataclasses.field(default_factory=list)
    error: str | None = None
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @property
    def is_lost(self) -> bool:
        return self.state == "lost"

    def domain(self, name: str) -> FinderDomain | None:
        """The finder's domain ``name``, or None when it has none (yet)."""
        for d in self.domains:
            if d.name == name:
                return d
        return None

    @classmethod
    def from_dict(cls, d: Any) -> "FinderStatus":
        if not isinstance(d, Mapping):
            return cls()
        kw = _fields(cls, d)
        kw["lost"] = [str(x) for x in kw.get("lost") or []]
        kw["domains"] = sorted((FinderDomain.from_dict(x) for x in kw.get("domains") or []
                                if isinstance(x, Mapping)), key=lambda x: x.name)
        return cls(raw=dict(d), **kw)


@dataclasses.dataclass
class Status:
    """The answer of ``status``: the cluster, this node, the generation, the
    finder, and the deployments (sorted by name). ``retiring``: names of
    deleted instances whose units are still being stopped.
    ``systemd_connected``/``systemd_error``: whether the agent reaches
    systemd (None when the agent does not say)."""

    cluster: str | None = None
    node: str | None = None
    generation: int | None = None
    finder: FinderStatus = dataclasses.field(default_factory=FinderStatus)
    deployments: list = dataclasses.field(default_factory=list)
    retiring: list = dataclasses.field(default_factory=list)
    systemd_connected: bool | None = None
    systemd_error: str | None = None
    # a cluster of agents: this member's Raft view ({"role", "term", "leader",
    # "quorum", "address"}); None on a single node
    raft: dict | None = None
    # a cluster of agents: the nodes the leader marked down (no contact for
    # raft.node_down_after_ms)
    nodes_down: list = dataclasses.field(default_factory=list)
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_result(cls, r: Any) -> "Status":
        if not isinstance(r, Mapping):
            raise AgentProtocolError("dpr-agent answered status with %r" % (r,),
                                     code="bad_reply")
        deps = [Deployment.from_dict(d) for d in r.get("deployments") or []
                if isinstance(d, Mapping)]
        deps.sort(key=lambda d: d.name)
        sd: Mapping = r["systemd"] if isinstance(r.get("systemd"), Mapping) else {}
        return cls(cluster=r.get("cluster"), node=r.get("node"), generation=r.get("generation"),
                   finder=FinderStatus.from_dict(r.get("finder")), deployments=deps,
                   retiring=[str(x) for x in r.get("retiring") or []],
                   systemd_connected=sd.get("connected"), systemd_error=sd.get("error"),
                   raft=dict(r["raft"]) if isinstance(r.get("raft"), Mapping) else None,
                   nodes_down=[str(x) for x in ((r.get("cluster_spec") or {}).get("down")
                                                or [])]
                   if isinstance(r.get("cluster_spec"), Mapping) else [],
                   raw=dict(r))

    def deployment(self, name: str) -> Deployment:
        for d in self.deployments:
            if d.name == name:
                return d
        raise NotFound("no deployment %r in cluster %r (deployments: %s)"
                       % (name, self.cluster, ", ".join(d.name for d in self.deployments)
                          or "none"), code="not_found")

    @property
    def instances(self) -> list:
        return [i for d in self.deployments for i in d.instances]

    @property
    def world_lines(self) -> dict:
        """Deployment name -> its domain's world-line (None before its first
        instance registered)."""
        return {d.name: d.world_line for d in self.deployments}

    @property
    def cuts(self) -> dict:
        """Deployment name -> its shards' cut entries, in shard order."""
        return {d.name: list(d.cut) for d in self.deployments}

    @property
    def is_ready(self) -> bool:
        return all(d.is_ready for d in self.deployments)

    @property
    def unhealthy(self) -> list:
        """Every instance whose health is not ``ok``."""
        return [i for d in self.deployments for i in d.unhealthy]

    @property
    def finder_lost(self) -> bool:
        """The finder does not know workers it had committed versions of."""
        return self.finder.is_lost


@dataclasses.dataclass
class Node:
    """A node of the cluster. ``is_self``: the node of the agent answering
    (``self`` in the protocol); ``leader``: it runs the finder."""

    name: str
    address: str | None = None
    is_self: bool = False
    leader: bool = False
    state: str | None = None
    role: str | None = None            # voter, standby, spare; "single": no Raft
    term: int | None = None
    last_contact_ms: int | None = None  # as this node knows it (None: unknown)
    health: str | None = None           # ok, unreachable, unknown
    # what placement goes by (a cluster of agents; None until the node told)
    labels: list | None = None
    max_instances: int | None = None
    instances: int | None = None        # placed on it
    down: bool = False                  # marked down by the leader
    raw: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, d: Mapping) -> "Node":
        kw = _fields(cls, d)
        kw.setdefault("name", "?")
        kw["is_self"] = bool(d.get("self"))
        kw["leader"] = bool(kw.get("leader"))
        kw["down"] = bool(kw.get("down"))
        return cls(raw=dict(d), **kw)


# event types after which wait_ready looks at the status again
_WAKE_TYPES = {"instance", "apply", "delete", "node", "resize", "rollout"}
_POLL = 1.0


class Cluster:
    """The cluster as seen through the local dpr-agent (its control socket,
    or with ``address="HOST:PORT"`` an agent's control API over TCP). Use
    ``dpr.connect()``."""

    def __init__(self, path: str | os.PathLike | None = None, *,
                 timeout: float = DEFAULT_TIMEOUT, connect_timeout: float = 5.0,
                 address: str | None = None):
        self._conn = ControlConnection(path, timeout=timeout, connect_timeout=connect_timeout,
                                       address=address)

    # --- plumbing ---------------------------------------------------------------
    @property
    def socket_path(self) -> str:
        """The control socket's path (the TCP address when over TCP)."""
        return self._conn.path

    @property
    def address(self) -> str | None:
        """The TCP address of the agent's control API, or None on the socket."""
        return self._conn.address

    def request(self, op: str, args: dict | None = None, **kw: Any) -> Any:
        """A raw request (op and args of docs/control-api.md); returns the result."""
        return self._conn.request(op, args, **kw)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return "<dpr.Cluster via %s>" % self._conn.where

    # --- operations -------------------------------------------------------------
    def apply(self, spec: ClusterSpec | Mapping | str | os.PathLike, dry_run: bool = False,
              *, validate: bool = True) -> Plan:
        """Makes the cluster look like ``spec`` (the whole desired state:
        deployments not in it are deleted). Idempotent. Returns the Plan,
        with the new generation. ``spec`` may be a ClusterSpec, a mapping or
        a YAML file's path; it is validated here first (SpecError) unless
        ``validate=False``; the agent validates again. The call returns once
        the agent recorded the change and started the units; use
        ``wait_ready`` for readiness."""
        body = self._spec_body(spec, validate)
        r = self._conn.request("apply", {"spec": body, "dry_run": bool(dry_run)})
        return Plan.from_result(r, dry_run=bool(dry_run))

    def plan(self, spec: ClusterSpec | Mapping | str | os.PathLike, *,
             validate: bool = True) -> Plan:
        """What ``apply(spec)`` would do; changes nothing."""
        body = self._spec_body(spec, validate)
        return Plan.from_result(self._conn.request("plan", {"spec": body}), dry_run=True)

    @staticmethod
    def _spec_body(spec: Any, validate: bool) -> dict:
        if not validate:
            if isinstance(spec, ClusterSpec):
                return spec.to_dict()
            if isinstance(spec, Mapping):
                return dict(spec)
            return ClusterSpec.from_file(spec, validate=False).to_dict()
        s = load_spec(spec)
        s.validate()
        return s.to_dict()

    def status(self, name: str | None = None) -> Status:
        """The cluster's status (all deployments, or only ``name``:
        NotFound when it does not exist)."""
        args = {} if name is None else {"name": name}
        return Status.from_result(self._conn.request("status", args))

    def deployment(self, name: str) -> Deployment:
        """One deployment's status (NotFound when it does not exist)."""
        return self.status(name).deployment(name)

    def delete(self, name: str) -> Plan:
        """Stops and removes every instance of deployment ``name`` (NotFound
        when there is none). Returns the Plan (``deleted``) and generation."""
        return Plan.from_result(self._conn.request("delete", {"name": name}))

    def nodes(self) -> list:
        """The cluster's nodes (list of Node)."""
        r = self._conn.request("nodes", {})
        if not isinstance(r, Mapping):
            raise AgentProtocolError("dpr-agent answered nodes with %r" % (r,), code="bad_reply")
        return [Node.from_dict(n) for n in r.get("nodes") or [] if isinstance(n, Mapping)]

    def remove_node(self, name: str) -> str:
        """Takes member ``name`` (its node name or Raft address) out of the
        cluster: started by the leader, or sent to it from another node
        (NotFound for an unknown name). Returns what is being done; follow
        ``nodes()`` to see it done. The leader cannot remove itself."""
        r = self._conn.request("node_remove", {"name": name})
        if not isinstance(r, Mapping) or not isinstance(r.get("removing"), str):
            raise AgentProtocolError("dpr-agent answered node_remove with %r" % (r,),
                                     code="bad_reply")
        return r["removing"]

    # --- roll-outs (docs/operations.md "Roll-outs") -------------------------
    def rollout_status(self, name: str) -> dict:
        """Deployment ``name``'s roll-out: {"phase", "updated", "targets",
        "unavailable", "paused", "halted" (reason or None), "can_undo",
        "settings"}. NotFound when it does not exist."""
        r = self._conn.request("rollout", {"name": name, "action": "status"})
        if not isinstance(r, Mapping) or not isinstance(r.get("rollout"), Mapping):
            raise AgentProtocolError("dpr-agent answered rollout with %r" % (r,),
                                     code="bad_reply")
        return dict(r["rollout"])

    def rollout_pause(self, name: str) -> Plan:
        """Pauses ``name``'s roll-out (``rollout.paused`` in the spec): no
        instance is restarted for an update until resumed."""
        return Plan.from_result(self._conn.request("rollout", {"name": name,
                                                               "action": "pause"}))

    def rollout_resume(self, name: str) -> Plan:
        """Resumes a paused roll-out, or one that halted (the instance that
        failed is tried again), on every node of a cluster of agents (a spec
        change: ``rollout.resumed`` one higher)."""
        return Plan.from_result(self._conn.request("rollout", {"name": name,
                                                               "action": "resume"}))

    def rollout_undo(self, name: str) -> Plan:
        """Applies ``name``'s settings from before its last change again
        (impl, version, checkpoint_interval_ms, max_clients, maxmemory,
        checkpoint_mode): a
        roll-out of its own, which restarts only the instances that run the
        newer settings. NotFound when there is nothing to undo."""
        return Plan.from_result(self._conn.request("rollout", {"name": name,
                                                               "action": "undo"}))

    def events(self) -> EventStream:
        """A stream of state changes (a connection of its own): iterate it,
        or ``next(timeout)``; close it (``with``) when done."""
        return self._conn.events()

    def wait_ready(self, name: str | list | None = None, timeout: float = 60.0, *,
                   progress: Callable[[Status], None] | None = None,
                   use_events: bool = True) -> Status:
        """Waits until every instance of deployment ``name`` (a list of
        names, or None: every deployment) is ready, and returns the status.

        Wakes on the events stream and looks at ``status`` again on each
        instance/apply/delete event (and at least every second); without
        events (``use_events=False``, or the stream is not available) it
        polls. ``progress(status)`` is called whenever the readiness picture
        changes. Ready includes a finished roll-out: every instance runs the
        applied generation (shards below a roll-out's partition excepted).
        Raises ReadyTimeout (listing what is not ready and why) after
        ``timeout`` seconds, RolloutHalted at once when a roll-out halted
        (with its reason), NotFound when a deployment does not exist.
        """
        names = [name] if isinstance(name, str) else (list(name) if name is not None else None)
        deadline = time.monotonic() + timeout
        stream: EventStream | None = None
        if use_events:
            try:
                stream = self.events()
            except (AgentProtocolError, AgentUnavailable):
                stream = None       # fall back to polling
        last_key = None
        try:
            while True:
                st = self._status_of(names)
                key = tuple((i.name, i.ready, i.active_state, i.sub_state, i.restarts,
                             i.last_error) for i in st.instances) + tuple(
                    (d.layout or {}).get("epoch") for d in st.deployments) + tuple(
                    ((d.layout or {}).get("resize") or {}).get("step")
                    for d in st.deployments) + tuple(
                    (d.rollout_phase, (d.rollout or {}).get("updated")) for d in st.deployments)
                if progress is not None and key != last_key:
                    progress(st)
                last_key = key
                if all(d.is_ready for d in st.deployments):
                    return st
                for d in st.deployments:
                    if d.rollout_halted:
                        raise RolloutHalted("%s: roll-out halted: %s" % (d.name,
                                                                         d.rollout_halted),
                                            deployment=d.name, reason=d.rollout_halted,
                                            status=st)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _ready_timeout(st, timeout)
                if stream is not None:
                    try:
                        t_end = time.monotonic() + min(left, _POLL)
                        while True:
                            ev = stream.next(max(0.0, t_end - time.monotonic()))
                            if ev is None or ev.type in _WAKE_TYPES:
                                break
                    except AgentError:
                        stream.close()
                        stream = None
                else:
                    time.sleep(min(left, 0.2))
        finally:
            if stream is not None:
                stream.close()

    def _status_of(self, names: list | None) -> Status:
        if names is not None and len(names) == 1:
            return self.status(names[0])
        st = self.status()
        if names is not None:
            st.deployments = [st.deployment(n) for n in names]  # NotFound if missing
        return st

    def client(self, name: str, **kwargs: Any) -> Any:
        """A ``dpr.Client`` for deployment ``name``: its endpoints in shard
        order, its worker ids, the finder's address from the status, and the
        deployment's DPR domain (its name). Its sessions span this
        deployment only: a session's world-line, cut and rollbacks are its
        deployment's. With ``ssl_context=`` (agents with TLS: the
        deployment's shards speak TLS only) the finder is the agents' TLS
        ports; a deployment over TLS without it raises ValueError. Extra
        keyword arguments go to dpr.Client."""
        from .client import Client  # lazily: the management API needs no libdpr
        st = self.status(name)
        dep = st.deployment(name)
        if not dep.instances:
            raise NotFound("deployment %r has no instances yet" % name, code="not_found")
        missing = [i.name for i in dep.instances if not i.endpoint]
        if missing:
            raise AgentUnavailable("deployment %r: no endpoint known yet for %s; wait with "
                                   "cluster.wait_ready(%r)" % (name, ", ".join(missing), name),
                                   code="unavailable")
        shards = [i.shard for i in dep.instances]
        if shards != list(range(len(shards))):
            raise AgentUnavailable("deployment %r: instances are not shards 0..%d yet (%s); "
                                   "wait with cluster.wait_ready(%r)"
                                   % (name, len(shards) - 1,
                                      ", ".join(i.name for i in dep.instances), name),
                                   code="unavailable")
        finder = st.finder.address
        if kwargs.get("ssl_context") is not None:
            finder = st.finder.tls_address
            if not finder:
                raise ValueError("ssl_context given, but the agents do not speak TLS (no "
                                 "finder TLS port: agent.conf tls.enabled)")
        elif dep.tls:
            raise ValueError("deployment %r speaks TLS only (clients: %s): give "
                             "ssl_context=dpr.tls_context(CA, CERT, KEY)"
                             % (name, dep.tls.get("clients")))
        if not finder:
            raise AgentUnavailable("the agent reports no finder address yet; retry",
                                   code="unavailable")
        if "workers" not in kwargs and all(isinstance(i.worker, int) for i in dep.instances):
            kwargs["workers"] = [i.worker for i in dep.instances]
        kwargs.setdefault("domain", dep.domain or name)
        client = Client(shards=dep.endpoints, finder=finder, **kwargs)
        # in a cluster the agents (every finder port) know where shards
        # moved: a shard that stops answering is looked up there again
        client._agents, client._deployment = list(client.finders), name
        return client


def _ready_timeout(st: Status, timeout: float) -> ReadyTimeout:
    parts = []
    not_ready = []
    for d in st.deployments:
        n = d.shards if isinstance(d.shards, int) else len(d.instances)
        if d.is_ready:
            continue
        bad = d.not_ready
        not_ready += bad
        # instances in the same situation are named together
        groups: dict = {}
        for i in bad:
            why = i.state
            if i.restarts:
                why += ", %d restarts" % i.restarts
            if i.last_error:
                why += ", last error: %s" % " ".join(str(i.last_error).split())
            groups.setdefault(why, []).append(i.name)
        what = ["%s (%s)" % (", ".join(names), why) for why, names in groups.items()]
        if len(d.instances) != n:
            what.append("%d of %d instances exist" % (len(d.instances), n))
        if d.resizing:
            r = d.layout["resize"]
            what.append("resizing from %s to %s shards: %s%s" % (
                r.get("from"), r.get("to"), r.get("step"),
                ", last error: %s" % r["error"] if r.get("error") else ""))
        elif isinstance(d.layout, Mapping) and not d.layout.get("epoch"):
            what.append("its shards have not been given their layout yet")
        if not d.rollout_done:
            ro = d.rollout if isinstance(d.rollout, Mapping) else {}
            old = [i.name for i in d.instances if i.outdated]
            what.append("roll-out %s: %s/%s updated%s" % (
                ro.get("phase", "?"), ro.get("updated", "?"), ro.get("targets", "?"),
                "; waiting for an update: %s" % ", ".join(old) if old else ""))
        parts.append("%s: %d/%d ready; not ready: %s"
                     % (d.name, sum(1 for i in d.instances if i.ready), n, "; ".join(what)))
    hint = ""
    if st.finder_lost:
        hint = " — the finder's state was lost: %s" % (st.finder.error or "see dprctl status")
    elif st.systemd_connected is False:
        hint = (" — the agent cannot reach systemd%s; see journalctl -u dpr-agent"
                % (": %s" % st.systemd_error if st.systemd_error else ""))
    elif not_ready:
        u = not_ready[0].unit or "dpr-cachestore@%s.service" % not_ready[0].name
        hint = " — see systemctl status %s and journalctl -u %s" % (u, u)
    return ReadyTimeout("not ready after %gs: %s%s" % (timeout, " | ".join(parts), hint),
                        not_ready=not_ready, status=st)


def connect(path: str | os.PathLike | None = None, *, timeout: float = DEFAULT_TIMEOUT,
            connect_timeout: float = 5.0, address: str | None = None,
            cluster: str | None = None, domain: str = "local",
            discover_timeout: float | None = None, nameserver: str | None = None,
            interfaces: Sequence[str] | None = None) -> Cluster:
    """Connects to dpr-agent's control socket: ``path``, else $DPR_SOCKET,
    else /run/dpr/agent.sock. Raises AgentUnavailable (no agent there) or
    PermissionDenied. The returned Cluster is a context manager.

    ``address="HOST:PORT"``: an agent's control API over TCP instead (its
    agent.conf sets ``control.listen``). ``cluster="demo"``: finds the
    cluster's agents by DNS-SD (``_dpr-agent._tcp`` records in ``domain``:
    ``local`` is mDNS, another domain is asked by unicast DNS, of
    ``nameserver`` "IP[:PORT]" or the system's resolver; ``interfaces``
    limits mDNS to these addresses; ``discover_timeout`` seconds) and
    connects to the first, by node name, that publishes ``ctl=`` (its
    control API over TCP). Raises DiscoveryError when no agent of the
    cluster is found or none publishes ``ctl=``, AgentUnavailable when
    none of those answers. Give one of ``path``, ``address`` and
    ``cluster``."""
    given = [n for n, v in (("path", path), ("address", address), ("cluster", cluster))
             if v is not None]
    if len(given) > 1:
        raise ValueError("dpr.connect(): give one of path, address and cluster (got %s)"
                         % " and ".join(given))
    if cluster is not None:
        return _connect_discovered(cluster, domain, discover_timeout, nameserver, interfaces,
                                   timeout, connect_timeout)
    return Cluster(path, timeout=timeout, connect_timeout=connect_timeout, address=address)


def _connect_discovered(cluster: str, domain: str, discover_timeout: float | None,
                        nameserver: str | None, interfaces: Sequence[str] | None,
                        timeout: float, connect_timeout: float) -> Cluster:
    """The first agent of ``cluster`` found by DNS-SD whose control API
    (``ctl=``) answers."""
    from . import discover
    dt = discover.DEFAULT_TIMEOUT if discover_timeout is None else discover_timeout
    agents, _ = discover.find_agents(cluster, domain, dt, nameserver, interfaces=interfaces)
    with_ctl = [a for a in agents if a.ctl]
    if not with_ctl:
        raise DiscoveryError(
            "found %d dpr-agent(s) of cluster %r in %s (%s), but none serves its control API "
            "over TCP: no ctl= in their %s records (agent.conf control.listen is off). Set "
            "control.listen on a node, or run this on a node (its control socket)"
            % (len(agents), cluster, discover.describe_where(domain, dt, nameserver, interfaces),
               ", ".join(a.node or a.name for a in agents), discover.AGENT))
    failures = []
    for a in with_ctl:
        try:
            return Cluster(timeout=timeout, connect_timeout=connect_timeout, address=a.ctl)
        except ValueError:
            failures.append("%s: ctl=%r is not HOST:PORT" % (a.node or a.name, a.ctl))
        except AgentUnavailable as e:
            failures.append("%s: %s" % (a.node or a.name, e))
    raise AgentUnavailable("no control API of cluster %r answered: %s"
                           % (cluster, "; ".join(failures)), code="unavailable")
