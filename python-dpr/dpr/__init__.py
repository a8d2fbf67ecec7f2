"""dpr - Python package of DPR Cluster.

Two halves:

- the management API over dpr-agent's control socket (:func:`connect`,
  :class:`ClusterSpec`, :class:`CacheStore`, :class:`Cluster`), also behind
  the ``dprctl`` command;
- a client for DPR cache-stores such as dpr-kv (:class:`Client`,
  :class:`Session`) with key routing (:mod:`dpr.route`).

    import dpr
    with dpr.connect() as cluster:
        cluster.apply(dpr.ClusterSpec("demo", cachestores=[
            dpr.CacheStore("kv", impl="dpr-kv", version="1", shards=3)]))
        cluster.wait_ready("kv", timeout=30)

    import dpr
    client = dpr.Client(shards=["127.0.0.1:7001", "127.0.0.1:7002"],
                        finder="127.0.0.1:7000")
    with client.session() as s:
        s.set("k", "v")
        s.wait_committed()

    with dpr.Client.from_url("dpr://10.0.0.1:7000,10.0.0.2:7000/kv") as client:
        ...                         # closes its sessions at the end (dpr.url)

Both halves can find a cluster by DNS-SD (:mod:`dpr.discover`, the
records the agents publish): ``dpr.connect(cluster="demo")`` (an agent's
control API over TCP) and ``dpr.Client.discover("demo", "kv")``.

The client's sessions use the C library libdpr.so, loaded when the first
session starts (see dpr._libdpr for where it is looked for; $DPR_LIBDPR
overrides); a missing library raises dpr.LibdprNotFound then, not on import.
"""
from .client import Client, RollbackInfo, Session
from .errors import (ConnectionError, DiscoveryError, DprError, ProtocolError, ResponseError,
                     RollbackError, SessionClosedError, SessionInDoubtError, TimeoutError)
from ._libdpr import LibdprNotFound
from .resp import tls_context
from .route import shard_of
from .cluster import (Cluster, Deployment, FinderDomain, FinderStatus, Instance, Node, Plan,
                      Status, connect)
from .control import Event, EventStream
from . import discover  # dpr.discover: DNS-SD browsing
from .mgmt_errors import (AgentError, AgentUnavailable, NotFound, PermissionDenied,
                          ReadyTimeout, RolloutHalted, SpecError)
from .spec import CacheStore, ClusterSpec

from ._version import version as _version
from .url import parse_url

__version__ = _version()

__all__ = [
    "Client", "Session", "RollbackInfo", "shard_of", "tls_context",
    "DprError", "ConnectionError", "TimeoutError", "ProtocolError", "ResponseError",
    "RollbackError", "SessionInDoubtError", "SessionClosedError", "LibdprNotFound",
    "DiscoveryError",
    "connect", "Cluster", "ClusterSpec", "CacheStore", "Plan", "Status", "Deployment",
    "Instance", "FinderStatus", "FinderDomain", "Node", "Event", "EventStream",
    "AgentError", "SpecError", "NotFound", "PermissionDenied", "AgentUnavailable",
    "ReadyTimeout", "RolloutHalted", "discover", "parse_url",
]
