"""dprctl - drive the local dpr-agent from the shell.

    dprctl apply -f cluster.yaml [--dry-run] [--wait [--timeout S]]
    dprctl plan -f cluster.yaml [--detailed-exitcode]
    dprctl diff FILE
    dprctl status [NAME] [-o table|wide|json|yaml]
    dprctl get deployment|instance NAME [-o table|wide|json|yaml]
    dprctl describe deployment|instance NAME [--events N]
    dprctl delete NAME [--dry-run] [--yes] [--ignore-not-found]
    dprctl events [-o table|wide|json|yaml]
    dprctl nodes [-o table|wide|json|yaml]
    dprctl rollout status NAME [-o table|wide|json|yaml]
    dprctl rollout pause|resume|undo NAME [--wait [--timeout S]]
    dprctl discover [--cluster C] [--domain D] [--timeout S] [-o json]
    dprctl dns-zone CLUSTER --domain D [--nsupdate] [--server IP[:PORT]] [--ttl N]

Global: --socket PATH (else $DPR_SOCKET, else /run/dpr/agent.sock); --version.
Exit status: 0 success, 1 error (one line per problem on stderr, saying what
to fix), 2 usage error, 130 interrupted; `plan --detailed-exitcode`: 0 no
changes, 2 changes pending (as terraform's), 1 error; `diff`: 0 no
differences, 1 differences, 2 error (as diff(1)).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Callable, NoReturn, Sequence

from . import render
from .render import FORMATS, one_line as _render_one_line, table

if TYPE_CHECKING:  # the commands import these when they run (a quick --help)
    from .cluster import Cluster, Node, Plan, Status
    from .discover import DiscoveredCluster
    from .mgmt_errors import AgentProtocolError
    from .spec import ClusterSpec

__all__ = ["main"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
EXIT_CHANGES = 2  # plan --detailed-exitcode: changes pending
EXIT_DIFF, EXIT_DIFF_ERROR = 1, 2  # diff: differences found; an error (as diff(1))
PROG = "dprctl"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # exit 2 with a hint, like argparse, but shorter
        self.print_usage(sys.stderr)
        sys.stderr.write("%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))
        raise SystemExit(EXIT_USAGE)


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds (got %r)" % text)
    if not v > 0:
        raise argparse.ArgumentTypeError("must be > 0 (got %s)" % text)
    return v


def version() -> str:
    """This package's version (dpr/_version.py says where it comes from)."""
    from ._version import version as package_version
    return package_version()


def build_parser() -> argparse.ArgumentParser:
    # --socket is accepted before and after the command
    common = _Parser(add_help=False)
    common.add_argument("--socket", metavar="PATH", default=argparse.SUPPRESS,
                        help="dpr-agent's control socket (default: $DPR_SOCKET, else "
                             "/run/dpr/agent.sock)")
    p = _Parser(prog=PROG, parents=[common],
                description="Deploy and watch DPR cache-store clusters through the local "
                            "dpr-agent.",
                epilog="exit status: 0 ok, 1 error, 2 usage. Docs: docs/control-api.md, "
                       "python-dpr/README.md")
    p.add_argument("--version", action="version", version="%s %s" % (PROG, version()),
                   help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    a = sub.add_parser("apply", parents=[common], help="make the cluster match a spec file",
                       description="Apply a cluster spec (YAML): the whole desired state; "
                                   "deployments not in it are deleted.")
    a.add_argument("-f", "--file", required=True, metavar="FILE",
                   help="the cluster spec (YAML or JSON; - reads stdin)")
    a.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    a.add_argument("--wait", action="store_true",
                   help="wait until every instance of the spec is ready")
    a.add_argument("--timeout", type=_positive, default=120.0, metavar="SECONDS",
                   help="how long --wait waits (default 120)")

    pl = sub.add_parser("plan", parents=[common], help="show what apply would do",
                        description="Show what `apply` would do with a spec; changes nothing.")
    pl.add_argument("-f", "--file", required=True, metavar="FILE",
                    help="the cluster spec (YAML or JSON; - reads stdin)")
    pl.add_argument("--detailed-exitcode", action="store_true",
                    help="exit 0 when there is nothing to do, 2 when apply would change "
                         "something (1 on errors)")

    st = sub.add_parser("status", parents=[common], help="deployments and instances",
                        description="Show deployments and their instances.")
    st.add_argument("name", nargs="?", metavar="NAME", help="only this deployment")
    _output_options(st, "table (default), wide (more columns), json (the agent's answer, "
                        "sorted keys) or yaml")

    d = sub.add_parser("delete", parents=[common], help="delete a deployment",
                       description="Stop and remove every instance of a deployment, with "
                                   "its data (checkpoints). Asks first on a terminal; "
                                   "elsewhere it needs --yes.")
    d.add_argument("name", metavar="NAME", help="the deployment")
    d.add_argument("--dry-run", action="store_true",
                   help="show which instances would go, change nothing")
    d.add_argument("-y", "--yes", action="store_true", help="do not ask")
    d.add_argument("--ignore-not-found", action="store_true",
                   help="a deployment that does not exist is no error")

    e = sub.add_parser("events", parents=[common], help="follow state changes",
                       description="Print state changes as they happen (Ctrl-C stops).")
    _output_options(e, "table (default: one line per event), wide (null fields too), json "
                       "(one object per line) or yaml (one document per event)")

    n = sub.add_parser("nodes", parents=[common], help="the cluster's nodes",
                       description="Show the cluster's nodes (Raft members), or remove one: "
                                   "dprctl nodes remove NAME.")
    _output_options(n, "table (default), wide (more columns), json (the agent's answer, "
                       "sorted keys) or yaml")
    n.add_argument("action", nargs="?", choices=["remove"], help="remove a member")
    n.add_argument("target", nargs="?", metavar="NAME", help="the member's node name or "
                   "Raft address")

    df = sub.add_parser("diff", parents=[common],
                        help="what differs between a spec file and the cluster",
                        description="Field by field, what differs between a spec file and "
                                    "what the cluster has: ~ a field apply would change "
                                    "(cluster's -> spec's), + a deployment it would create, "
                                    "- one it would delete. Fields the spec leaves out take "
                                    "the agent's defaults and are not compared. Exit 0: no "
                                    "differences, 1: differences, 2: an error (as diff(1)).")
    df.add_argument("file", metavar="FILE", help="the cluster spec (YAML or JSON; - reads "
                    "stdin)")

    g = sub.add_parser("get", parents=[common], help="one deployment or instance",
                       description="Show one deployment or instance: a table, or the "
                                   "agent's JSON for it (-o json|yaml).")
    g.add_argument("kind", choices=KINDS, help="deployment or instance")
    g.add_argument("name", metavar="NAME", help="its name (an instance: DEPLOYMENT-SHARD)")
    g.add_argument("-o", "--output", choices=FORMATS, default="table",
                   help="table (default), wide (more columns), json or yaml")

    de = sub.add_parser("describe", parents=[common],
                        help="one deployment or instance in full, for people",
                        description="Describe one deployment or instance: its settings, "
                                    "roll-out and instances, and its recent log entries from "
                                    "this host's journal (DPR_INSTANCE=).")
    de.add_argument("kind", choices=KINDS, help="deployment or instance")
    de.add_argument("name", metavar="NAME", help="its name (an instance: DEPLOYMENT-SHARD)")
    de.add_argument("--events", type=_count, default=10, metavar="N",
                    help="how many recent log entries to show (default 10; 0: none)")

    ro = sub.add_parser("rollout", parents=[common], help="follow or steer a roll-out",
                        description="A deployment's roll-out (a change of impl, version or "
                                    "settings rolling through its instances): status, pause, "
                                    "resume (also after it halted), undo (its settings "
                                    "before the last change, rolled out in turn).")
    ro.add_argument("action", choices=["status", "pause", "resume", "undo"])
    ro.add_argument("name", metavar="NAME", help="the deployment")
    _output_options(ro, "status: table (default), wide (also each node's phase and each "
                        "instance's generation, running version and readiness), json (the "
                        "agent's answer, sorted keys) or yaml", default=None)
    ro.add_argument("--wait", action="store_true",
                    help="resume, undo: wait until the roll-out is done and every instance "
                         "ready")
    ro.add_argument("--timeout", type=_positive, default=120.0, metavar="SECONDS",
                    help="how long --wait waits (default 120)")

    w = sub.add_parser("wait", parents=[common], help="wait until deployments are ready",
                       description="Wait until every instance of the named deployments (or "
                                   "of all deployments) is ready.")
    w.add_argument("names", nargs="*", metavar="NAME")
    w.add_argument("--timeout", type=_positive, default=120.0, metavar="SECONDS",
                   help="how long to wait (default 120)")

    ds = sub.add_parser("discover", parents=[common], help="find clusters by DNS-SD",
                        description="List the agents, finders and cache-store instances the "
                                    "agents publish by DNS-SD, per cluster: mDNS in the domain "
                                    "'local' (this network only), else unicast DNS-SD "
                                    "(docs/discovery.md).")
    ds.add_argument("--cluster", metavar="NAME", help="only this cluster")
    ds.add_argument("--domain", default="local", metavar="DOMAIN",
                    help="'local' (mDNS, the default) or a unicast DNS domain")
    ds.add_argument("--timeout", type=_positive, default=3.0, metavar="SECONDS",
                    help="how long to browse (default 3; mDNS stops earlier once answers "
                         "stop coming)")
    ds.add_argument("--nameserver", metavar="IP[:PORT]",
                    help="unicast DNS-SD: the DNS server to ask (default: the system's)")
    ds.add_argument("--interface", action="append", metavar="ADDRESS",
                    help="mDNS: browse on the interface with this address only (repeatable; "
                         "default: every interface)")
    ds.add_argument("-o", "--output", choices=["table", "json"], default="table",
                    help="table (default) or json")

    dz = sub.add_parser("dns-zone", parents=[common],
                        help="the cluster's DNS-SD records for a unicast zone",
                        description="Print the DNS-SD records of the local agent's cluster "
                                    "(the ones its agents publish by mDNS) for a unicast DNS "
                                    "zone: master-file lines, or an nsupdate(1) script "
                                    "(docs/discovery.md).")
    dz.add_argument("cluster", metavar="CLUSTER", help="the cluster (must be the agent's)")
    dz.add_argument("--domain", required=True, metavar="DOMAIN",
                    help="the zone the records go into, e.g. dpr.example.com")
    dz.add_argument("--nsupdate", action="store_true",
                    help="print an nsupdate script instead of zone-file lines")
    dz.add_argument("--server", metavar="IP[:PORT]",
                    help="with --nsupdate: the DNS server to send the updates to")
    dz.add_argument("--ttl", type=_ttl, default=120, metavar="SECONDS",
                    help="the records' TTL (default 120)")
    _pki_parser(sub)
    return p


KINDS = ("deployment", "instance")


def _output_options(p: argparse.ArgumentParser, help_: str,
                    default: str | None = "table") -> None:
    """-o table|wide|json|yaml (args.output) and --json, the same as -o json."""
    p.add_argument("-o", "--output", choices=FORMATS, default=default, help=help_)
    p.add_argument("--json", dest="output", action="store_const", const="json",
                   help="the same as -o json")


def _whole(text: str, lo: int, hi: int, unit: str) -> int:
    """An argument that is a whole number lo..hi (of unit, for the message)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a whole number%s (got %r)" % (unit, text))
    if not lo <= v <= hi:
        raise argparse.ArgumentTypeError("must be %d..%d (got %s)" % (lo, hi, text))
    return v


def _count(text: str) -> int:
    return _whole(text, 0, 1000, "")


def _days(text: str) -> int:
    return _whole(text, 1, 36500, " of days")


def _pki_parser(sub: argparse._SubParsersAction) -> None:
    pk = sub.add_parser("pki", help="the cluster's TLS certificates (docs/tls.md)",
                        description="Make a cluster CA and issue node and client certificates "
                                    "(docs/tls.md; no agent needed). Keys are written 0600, "
                                    "certificates 0644; the CA key stays in the CA directory.")
    ps = pk.add_subparsers(dest="pki_command", metavar="SUBCOMMAND", parser_class=_Parser)
    ps.required = True
    dir_help = "the CA directory (default /etc/dpr/tls)"
    i = ps.add_parser("init", help="make the cluster's CA")
    i.add_argument("--dir", default="/etc/dpr/tls", metavar="DIR", help=dir_help)
    i.add_argument("--cluster", required=True, metavar="NAME", help="the cluster's name")
    i.add_argument("--days", type=_days, default=3650, metavar="N",
                   help="validity in days (default 3650)")
    i.add_argument("--force", action="store_true", help="replace an existing CA")
    s = ps.add_parser("issue", help="a node or client key and certificate")
    s.add_argument("kind", choices=["node", "client"], metavar="node|client",
                   help="node (server and client use) or client (an application)")
    s.add_argument("--node", "--name", dest="name", required=True, metavar="NAME",
                   help="the node's (or client's) name: CN, DNS SAN for a node, and "
                        "dpr://CLUSTER/KIND/NAME")
    s.add_argument("--ip", action="append", default=[], metavar="IP",
                   help="an IP address SAN (repeatable)")
    s.add_argument("--dns", action="append", default=[], metavar="NAME",
                   help="another DNS SAN (repeatable)")
    s.add_argument("--dir", default="/etc/dpr/tls", metavar="DIR", help=dir_help)
    s.add_argument("--out", metavar="DIR",
                   help="where NAME.key, NAME.crt (and a copy of ca.crt) go (default: --dir)")
    s.add_argument("--days", type=_days, default=825, metavar="N",
                   help="validity in days (default 825)")
    s.add_argument("--force", action="store_true", help="replace existing files")
    s.add_argument("--group", metavar="GROUP",
                   help="the key's group, mode 0640 (e.g. dpr-cachestore: the cache-store "
                        "instances run as that user; default: 0600, the caller's group)")
    r = ps.add_parser("revoke", help="add a certificate to the CA's CRL (ca.crl)")
    r.add_argument("cert", metavar="CERT", help="the certificate file")
    r.add_argument("--dir", default="/etc/dpr/tls", metavar="DIR", help=dir_help)
    c = ps.add_parser("crl", help="sign ca.crl again (it is valid for 365 days)")
    c.add_argument("--dir", default="/etc/dpr/tls", metavar="DIR", help=dir_help)


def _ttl(text: str) -> int:
    return _whole(text, 0, 2147483647, " of seconds")


# --- output helpers --------------------------------------------------------------

def _yn(v: bool) -> str:
    return "yes" if v else "no"


def _plan_lines(plan: Plan, dry: bool) -> str:
    lines = []
    if dry:
        head = "plan against generation %s: %s" % (plan.generation, plan.summary())
        if not plan.changed:
            head += " — nothing to do"
    else:
        head = "applied, generation %s: %s" % (plan.generation, plan.summary())
        if not plan.changed:
            head += " — already up to date"
    lines.append(head)
    verbs = {"created": ("create", "created"), "updated": ("update", "updated"),
             "deleted": ("delete", "deleted")}
    for key, sign in (("created", "+"), ("updated", "~"), ("deleted", "-")):
        for name in getattr(plan, key):
            lines.append("  %s %s  (%s)" % (sign, name, verbs[key][0 if dry else 1]))
    for r in plan.resizes:
        grow = (r.get("to") or 0) > (r.get("from") or 0)
        lines.append("  > %s: %s shards -> %s: about %d%% of its keys move %s; while they "
                     "move the deployment pauses (clients get TRYAGAIN and retry), then "
                     "clients with the old shard list are redirected (MOVED)"
                     % (r.get("deployment"), r.get("from"), r.get("to"),
                        round(100 * float(r.get("moves") or 0)),
                        "to the new shards" if grow else "off the removed shards"))
    if plan.placement:
        # a cluster of agents: the plan above is this node's part
        lines.append("placement (each deployment's nodes, shard 0 first; the plan above is "
                     "this node's part):")
        for name, nodes in sorted(plan.placement.items()):
            lines.append("  %s: %s" % (name, " ".join(str(n) for n in nodes)))
    return "\n".join(lines)


def format_status(st: Status, wide: bool = False) -> str:
    """`dprctl status` for people (a dpr.cluster.Status); wide: more columns."""
    f = st.finder
    head = "cluster %s  node %s  generation %s  finder %s" % (
        st.cluster or "-", st.node or "-", "-" if st.generation is None else st.generation,
        f.address or "-")
    if st.raft:
        if st.raft.get("leader"):
            head += "\nraft: leader %s, term %s; this node is %s%s" % (
                st.raft["leader"], st.raft.get("term", "-"), st.raft.get("role", "-"),
                " and serves the finder" if f.served_here else "")
        else:
            head += "\nwarning: raft: no leader (an election, or no quorum): the finder is " \
                    "not served; commits wait"
    if st.systemd_connected is False:
        head += "\nwarning: the agent cannot reach systemd%s: no instance can run" % (
            " (%s)" % st.systemd_error if st.systemd_error else "")
    if f.is_lost:
        head += "\nwarning: the finder's state was lost: %s" % (
            _one_line(f.error, 400) or "it does not know %s" % " ".join(f.lost))
    if st.nodes_down:
        head += "\nwarning: nodes down (no contact): %s" % " ".join(st.nodes_down)
    for d in st.deployments:
        if d.degraded:
            head += "\nwarning: deployment %s is degraded: %s" % (d.name,
                                                                  _one_line(d.degraded, 300))
        for i in d.instances:
            if i.replica_error:
                head += "\nwarning: %s: checkpoints not copied (commits wait): %s" % (
                    i.name, _one_line(i.replica_error, 300))
    if st.retiring:
        head += "\nstopping deleted instances: %s" % " ".join(st.retiring)
    if not st.deployments:
        return head + "\n\nno deployments (apply a spec: dprctl apply -f cluster.yaml)"
    # each deployment is a DPR domain: its own world-line and cut
    from .render import deployment_table, instance_table
    deps = deployment_table(st.deployments, wide)
    insts = instance_table([i for d in st.deployments for i in d.instances], wide)
    parts = [head, deps, insts]
    resizing = ["  %s: %s -> %s shards (layout %s): %s, %s keys moved, %.1fs%s" % (
        d.name, r.get("from"), r.get("to"), r.get("epoch"), r.get("step"),
        r.get("moved_keys"), float(r.get("seconds") or 0),
        "; last error: %s" % _one_line(r.get("error"), 200) if r.get("error") else "")
        for d in st.deployments if d.resizing for r in [d.layout["resize"]]]
    if resizing:
        parts.append("resizing:\n" + "\n".join(resizing))
    # what an unhealthy instance says about itself, in full
    sick = ["  %s [%s] %s" % (i.name, i.health, _one_line(i.status_text or i.last_error, 200)
                              or "-") for i in st.unhealthy]
    if sick:
        parts.append("unhealthy:\n" + "\n".join(sick))
    return "\n\n".join(parts)


def _one_line(s: Any, limit: int = 60) -> Any:
    return _render_one_line(s, limit)


def format_nodes(nodes: Sequence[Node], wide: bool = False) -> str:
    """`dprctl nodes` for people (dpr.cluster.Node objects); wide: also each
    node's Raft id and the agent's reasons (down, labels in full)."""
    def contact(n: Node) -> str:
        return "-" if n.last_contact_ms is None else "%.1fs" % (n.last_contact_ms / 1000.0)
    def load(n: Node) -> str:
        if n.instances is None:
            return "-"
        return "%d/%s" % (n.instances, "-" if n.max_instances is None else n.max_instances)
    headers = ["NODE", "ADDRESS", "SELF", "LEADER", "STATE", "ROLE", "TERM", "CONTACT",
               "HEALTH", "INSTANCES", "LABELS"]
    rows: list[list[Any]] = [
        [n.name, n.address, _yn(n.is_self), _yn(n.leader), n.state, n.role or "-",
         "-" if n.term is None else str(n.term), contact(n),
         "down" if n.down else n.health or "-", load(n),
         ",".join(n.labels) if n.labels else "-"] for n in nodes]
    if wide:
        headers += ["RAFT-ID", "DOWN", "CONTACT-MS"]
        for r, n in zip(rows, nodes):
            r += [(n.raw or {}).get("raft_id"), _yn(n.down), n.last_contact_ms]
    return table(headers, rows)


class _Progress:
    """Progress of a wait on stderr: one line whenever the picture changes."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self.t0 = time.monotonic()
        self.last: str | None = None

    def __call__(self, st: Status) -> None:
        parts = []
        for d in st.deployments:
            n = d.shards if isinstance(d.shards, int) else len(d.instances)
            ready = sum(1 for i in d.instances if i.ready)
            bad = ["%s %s%s" % (i.name, i.state, " (%d restarts)" % i.restarts
                                if i.restarts else "") for i in d.not_ready]
            ro = ""
            if not d.rollout_done and isinstance(d.rollout, dict):
                ro = ", roll-out %s %s/%s updated" % (d.rollout.get("phase"),
                                                      d.rollout.get("updated"),
                                                      d.rollout.get("targets"))
            parts.append("%s %d/%d ready%s%s" % (d.name, ready, n, ro,
                                                 " [%s]" % ", ".join(bad) if bad else ""))
        line = "; ".join(parts) or "no deployments"
        if line != self.last:
            self.stream.write("[%5.1fs] waiting: %s\n" % (time.monotonic() - self.t0, line))
            self.stream.flush()
            self.last = line


# --- commands --------------------------------------------------------------------

def _connect(args: argparse.Namespace) -> Cluster:
    from .cluster import connect
    return connect(getattr(args, "socket", None))


def _load(args: argparse.Namespace) -> ClusterSpec:
    from .spec import ClusterSpec
    return ClusterSpec.from_file(args.file)


def _plan_warnings(plan: Plan, dry: bool) -> list[str]:
    """What a plan does to clients and data, said before it happens (on
    stderr): instances deleted with their data, shard counts that change,
    instances restarted."""
    will = "will" if dry else "did"
    out = []
    if plan.deleted:
        out.append("warning: %s delete %s with its data (checkpoints; what the cut has not "
                   "reached is lost with them): %s" % (will, "instances" if len(plan.deleted) > 1
                                                       else "an instance",
                                                       " ".join(plan.deleted)))
    for r in plan.resizes:
        out.append("warning: deployment %s %s go from %s to %s shards: keys move, the "
                   "deployment pauses while they do and sessions are redirected"
                   % (r.get("deployment"), "will" if dry else "does", r.get("from"), r.get("to")))
    if plan.updated:
        out.append("warning: %s restart %s (a roll-out, one at a time: a short reconnect for "
                   "their sessions, no rollback): %s"
                   % (will, "instances" if len(plan.updated) > 1 else "an instance",
                      " ".join(plan.updated)))
    return out


def cmd_apply(args: argparse.Namespace) -> int:
    spec = _load(args)
    with _connect(args) as cluster:
        plan = cluster.apply(spec, dry_run=args.dry_run)
        print(_plan_lines(plan, args.dry_run))
        sys.stdout.flush()
        for w in _plan_warnings(plan, args.dry_run):
            sys.stderr.write("%s: %s\n" % (PROG, w))
        if args.wait and not args.dry_run:
            names = [c.name for c in spec.cachestores]
            if names:
                t0 = time.monotonic()
                st = cluster.wait_ready(names, timeout=args.timeout, progress=_Progress())
                sys.stderr.write("ready: %d instances of %s in %.1fs\n"
                                 % (len(st.instances), ", ".join(names),
                                    time.monotonic() - t0))
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    spec = _load(args)
    with _connect(args) as cluster:
        plan = cluster.plan(spec)
    print(_plan_lines(plan, True))
    sys.stdout.flush()
    for w in _plan_warnings(plan, True):
        sys.stderr.write("%s: %s\n" % (PROG, w))
    return EXIT_CHANGES if args.detailed_exitcode and plan.changed else EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with _connect(args) as cluster:
        r = cluster.request("status", {} if args.name is None else {"name": args.name})
        _print_result(r, args.output, lambda: format_status(_status_of(r),
                                                            args.output == "wide"))
    return EXIT_OK


def _confirm(question: str) -> bool:
    """Asks on the terminal; False unless the answer is yes."""
    sys.stderr.write("%s [y/N] " % question)
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def cmd_delete(args: argparse.Namespace) -> int:
    from .mgmt_errors import NotFound
    try:
        return _delete(args)
    except NotFound:
        if not args.ignore_not_found:
            raise
        print("%s: no such deployment, nothing to delete" % args.name)
        return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    with _connect(args) as cluster:
        st = cluster.status(args.name)  # (NotFound: cmd_delete)
        names = [i.name for d in st.deployments if d.name == args.name for i in d.instances]
        what = " ".join(names) or "no instances"
        if args.dry_run:
            print("would delete %s, generation %s: %s" % (args.name, st.generation, what))
            return EXIT_OK
        if not args.yes:
            if not sys.stdin.isatty():
                sys.stderr.write("%s: delete %s removes its instances (%s) with their data: "
                                 "give --yes to do it without a terminal to ask on\n"
                                 % (PROG, args.name, what))
                return EXIT_ERROR
            if not _confirm("delete deployment %s and the data of %s?" % (args.name, what)):
                sys.stderr.write("%s: not deleted\n" % PROG)
                return EXIT_ERROR
        plan = cluster.delete(args.name)
        print("deleted %s, generation %s: %s" % (args.name, plan.generation,
                                                 " ".join(plan.deleted) or "no instances"))
    return EXIT_OK


def _print_result(result: Any, output: str, for_people: Callable[[], str]) -> None:
    """The agent's answer as -o asks: json and yaml as it is, else
    for_people() (a table, wide or not)."""
    if output == "json":
        print(render.to_json(result))
    elif output == "yaml":
        sys.stdout.write(render.to_yaml(result))
    else:
        print(for_people())


def _status_of(result: Any) -> Status:
    from .cluster import Status
    return Status.from_result(result)


def _nodes_of(result: Any) -> list[Node]:
    from .cluster import Node
    if not isinstance(result, dict):
        raise _protocol_error("dpr-agent answered nodes with %r" % (result,))
    return [Node.from_dict(n) for n in result.get("nodes") or [] if isinstance(n, dict)]


def cmd_events(args: argparse.Namespace) -> int:
    with _connect(args) as cluster:
        with cluster.events() as stream:
            sys.stderr.write("following events from %s (Ctrl-C stops)\n" % cluster.socket_path)
            sys.stderr.flush()
            for ev in stream:
                if args.output == "json":
                    print(render.to_json_line(ev.data))
                elif args.output == "yaml":
                    sys.stdout.write(render.to_yaml(ev.data, document=True))
                else:
                    print(render.event_line(ev.data, args.output == "wide"))
                sys.stdout.flush()
    return EXIT_OK


def _usage_error(message: str) -> int:
    sys.stderr.write("%s (see dprctl --help)\n" % message)
    return EXIT_USAGE


def cmd_nodes(args: argparse.Namespace) -> int:
    if args.action == "remove":
        if not args.target:
            return _usage_error("dprctl nodes remove: which node? (dprctl nodes lists them)")
        with _connect(args) as cluster:
            print(cluster.remove_node(args.target))
        return EXIT_OK
    if args.target:
        return _usage_error("dprctl nodes: unexpected argument %r" % args.target)
    with _connect(args) as cluster:
        r = cluster.request("nodes", {})
        _print_result(r, args.output, lambda: format_nodes(_nodes_of(r),
                                                           args.output == "wide"))
    return EXIT_OK


def cmd_rollout(args: argparse.Namespace) -> int:
    if args.output is not None and args.action != "status":
        return _usage_error("dprctl rollout %s: -o and --json are for rollout status"
                            % args.action)
    with _connect(args) as cluster:
        if args.action == "status":
            ro = cluster.rollout_status(args.name)
            output = args.output or "table"
            _print_result(ro, output, lambda: render.rollout_status(
                args.name, ro, output == "wide",
                cluster.deployment(args.name).instances if output == "wide" else ()))
            return EXIT_OK
        plan = getattr(cluster, "rollout_" + args.action)(args.name)
        print("%s: rollout %s, generation %s%s" % (
            args.name, args.action, plan.generation,
            ": updated %s" % " ".join(plan.updated) if plan.updated else ""))
        sys.stdout.flush()
        if args.wait and args.action != "pause":
            t0 = time.monotonic()
            st = cluster.wait_ready([args.name], timeout=args.timeout, progress=_Progress())
            sys.stderr.write("ready: %d instances of %s in %.1fs\n"
                             % (len(st.instances), args.name, time.monotonic() - t0))
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    with _connect(args) as cluster:
        names = args.names or None
        t0 = time.monotonic()
        st = cluster.wait_ready(names, timeout=args.timeout, progress=_Progress())
        sys.stderr.write("ready: %d instances in %.1fs\n"
                         % (len(st.instances), time.monotonic() - t0))
    return EXIT_OK


def format_discovered(clusters: Sequence[DiscoveredCluster], where: str) -> str:
    """The clusters dprctl discover found: per cluster its finder, agents
    and instances."""
    if not clusters:
        return "no DPR cluster found in %s" % where
    parts = []
    for c in clusters:
        f = c.finder
        head = "cluster %s, found in %s\nfinder: %s" % (
            c.name, where, "none published" if f is None else "%s on %s, term %s" % (
                f.endpoint or "-", f.node or "-", "-" if f.term is None else f.term))
        agents = table(["NODE", "HOST", "FINDER", "RAFT", "STATE", "CONTROL", "API"],
                       [[a.node, a.host, a.txt.get("finder") or a.endpoint, a.txt.get("raft"),
                         a.state, a.ctl, a.txt.get("api")] for a in c.agents]) \
            if c.agents else "no agent records"
        insts = table(["DEPLOYMENT", "SHARD", "ENDPOINT", "WORKER", "NODE", "VERSION", "IMPL"],
                      [[s.deployment, "%s/%s" % ("-" if s.shard is None else s.shard,
                                                 "-" if s.shards is None else s.shards),
                        s.endpoint, s.worker, s.node, s.txt.get("version"), s.txt.get("impl")]
                       for s in c.instances]) if c.instances else "no cache-store instances"
        parts.append("\n\n".join([head, agents, insts]))
    return "\n\n".join(parts)


def cmd_discover(args: argparse.Namespace) -> int:
    from . import discover
    try:
        if args.nameserver is not None:
            discover.parse_nameserver(args.nameserver)
        if discover.is_mdns(discover.check_domain(args.domain)):
            if args.nameserver is not None:
                return _usage_error("dprctl discover: --nameserver is for unicast DNS-SD (a "
                                    "--domain other than local)")
        elif args.interface:
            return _usage_error("dprctl discover: --interface is for mDNS (--domain local)")
    except ValueError as e:
        return _usage_error("dprctl discover: %s" % e)
    kw = dict(domain=args.domain, timeout=args.timeout, nameserver=args.nameserver,
              interfaces=args.interface)
    found = discover.clusters(**kw)
    where = discover.describe_where(args.domain, args.timeout, args.nameserver, args.interface)
    if args.cluster is not None:
        mine = [c for c in found if c.name == args.cluster]
        if not mine:
            seen = ", ".join(c.name for c in found)
            sys.stderr.write("%s: no records of cluster %r found in %s%s\n"
                             % (PROG, args.cluster, where,
                                "; seen: clusters %s" % seen if seen else ""))
            if args.output == "json":
                print(json.dumps({"domain": args.domain, "clusters": []}, indent=2))
            return EXIT_ERROR
        found = mine
    if args.output == "json":
        print(json.dumps({"domain": discover.check_domain(args.domain),
                          "clusters": [c.as_dict() for c in found]}, indent=2))
    else:
        print(format_discovered(found, where))
    return EXIT_OK


def cmd_dns_zone(args: argparse.Namespace) -> int:
    from . import discover, dnszone
    try:
        domain = discover.check_domain(args.domain)
        if discover.is_mdns(domain):
            return _usage_error("dprctl dns-zone: 'local' is the mDNS domain, where the agents "
                                "publish by themselves; give a unicast DNS zone")
        if args.server is not None:
            if not args.nsupdate:
                return _usage_error("dprctl dns-zone: --server goes with --nsupdate")
            discover.parse_nameserver(args.server)
    except ValueError as e:
        return _usage_error("dprctl dns-zone: %s" % e)
    with _connect(args) as cluster:
        status = cluster.request("status", {})
        nodes = cluster.request("nodes", {})
    if not isinstance(status, dict) or not isinstance(nodes, dict):
        raise _protocol_error("dpr-agent answered status or nodes with something else than "
                              "an object")
    if status.get("cluster") != args.cluster:
        sys.stderr.write("%s: the agent at %s belongs to cluster %r, not %r\n"
                         % (PROG, cluster.socket_path, status.get("cluster"), args.cluster))
        return EXIT_ERROR
    try:
        zone = dnszone.build_zone(status, nodes, domain, args.ttl)
        text = (dnszone.nsupdate_script(zone, args.server) if args.nsupdate
                else dnszone.zone_text(zone))
    except ValueError as e:
        sys.stderr.write("%s: cannot build the records of cluster %s: %s\n"
                         % (PROG, args.cluster, e))
        return EXIT_ERROR
    for w in zone.warnings:
        sys.stderr.write("%s: warning: %s\n" % (PROG, " ".join(w.split())))
    sys.stdout.write(text)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace) -> int:
    from . import specdiff
    from .spec import ClusterSpec
    spec = ClusterSpec.from_file(args.file)
    with _connect(args) as cluster:
        status = cluster.request("status", {})
    if not isinstance(status, dict):
        raise _protocol_error("dpr-agent answered status with something else than an object")
    try:
        changes = specdiff.diff(spec.to_dict(), status)
    except ValueError as e:
        sys.stderr.write("%s: %s: %s\n" % (PROG, _source(args.file), e))
        return EXIT_DIFF_ERROR
    print(specdiff.format_changes(changes))
    return EXIT_DIFF if changes else EXIT_OK


def _source(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _find(args: argparse.Namespace, cluster: Cluster) -> tuple[Any, Any, Any]:
    """(the status result, the deployment's or instance's dict, the
    deployment's name) of get/describe; NotFound with what there is."""
    from .mgmt_errors import NotFound
    if args.kind == "deployment":
        r = cluster.request("status", {"name": args.name})  # (NotFound from the agent)
        for d in (r.get("deployments") or []) if isinstance(r, dict) else []:
            if isinstance(d, dict) and d.get("name") == args.name:
                return r, d, args.name
        raise NotFound("no deployment named '%s' in this cluster" % args.name,
                       code="not_found")
    r = cluster.request("status", {})
    names = []
    for d in (r.get("deployments") or []) if isinstance(r, dict) else []:
        for i in (d.get("instances") or []) if isinstance(d, dict) else []:
            if isinstance(i, dict) and i.get("name") == args.name:
                return r, i, d.get("name")
            if isinstance(i, dict):
                names.append(str(i.get("name")))
    raise NotFound("no instance named '%s' in this cluster (%s)" % (
        args.name, "instances: " + " ".join(sorted(names)) if names else "no instances"),
        code="not_found")


def cmd_get(args: argparse.Namespace) -> int:
    from .cluster import Deployment, Instance
    with _connect(args) as cluster:
        _, obj, _ = _find(args, cluster)
    wide = args.output == "wide"
    if args.kind == "deployment":
        def people() -> str:
            d = Deployment.from_dict(obj)
            return "%s\n\n%s" % (render.deployment_table([d], wide),
                                  render.instance_table(d.instances, wide))
    else:
        def people() -> str:
            return render.instance_table([Instance.from_dict(obj)], wide)
    _print_result(obj, args.output, people)
    return EXIT_OK


def journal_lines(instances: Sequence[str], count: int) -> list[str]:
    """The last count entries of this host's journal about these
    instances (the agent logs them with DPR_INSTANCE=), oldest first;
    [] when there is no journal to read."""
    import shutil
    import subprocess
    if count <= 0 or not instances or shutil.which("journalctl") is None:
        return []
    cmd = ["journalctl", "--no-pager", "--quiet", "--output=short-iso", "--lines=%d" % count]
    cmd += ["DPR_INSTANCE=%s" % n for n in instances]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return []
    if out.returncode != 0:
        return []
    return [line for line in out.stdout.splitlines() if line.strip()]


def cmd_describe(args: argparse.Namespace) -> int:
    from .cluster import Deployment, Instance
    with _connect(args) as cluster:
        _, obj, deployment = _find(args, cluster)
        local = cluster.address is None  # the journal is this host's
    if args.kind == "deployment":
        d = Deployment.from_dict(obj)
        names = [i.name for i in d.instances]
        events = journal_lines(names, args.events) if local else []
        print(render.describe_deployment(d, events))
    else:
        events = journal_lines([args.name], args.events) if local else []
        print(render.describe_instance(Instance.from_dict(obj), deployment, events))
    return EXIT_OK


def cmd_pki(args: argparse.Namespace) -> int:
    from . import pki
    if args.pki_command == "init":
        paths = pki.init(args.dir, args.cluster, days=args.days, force=args.force)
        print("CA of cluster %s: %s (key, keep it here), %s, %s"
              % (args.cluster, paths["ca.key"], paths["ca.crt"], paths["ca.crl"]))
    elif args.pki_command == "issue":
        paths = pki.issue(args.dir, args.kind, args.name, out_dir=args.out, ips=args.ip,
                          dns=args.dns, days=args.days, force=args.force, group=args.group)
        print("%s %s: %s" % (args.kind, args.name, ", ".join(paths[k] for k in
                                                            ("key", "crt", "ca") if k in paths)))
    elif args.pki_command == "revoke":
        serial = pki.revoke(args.dir, args.cert)
        print("revoked serial %X in %s; reload the servers (systemctl reload) to apply it"
              % (serial, os.path.join(args.dir, "ca.crl")))
    else:
        print("signed %s again" % pki.refresh_crl(args.dir))
    return EXIT_OK


def _protocol_error(message: str) -> AgentProtocolError:
    from .mgmt_errors import AgentProtocolError
    return AgentProtocolError(message, code="bad_reply")


COMMANDS = {"apply": cmd_apply, "plan": cmd_plan, "status": cmd_status, "delete": cmd_delete,
            "events": cmd_events, "nodes": cmd_nodes, "wait": cmd_wait, "rollout": cmd_rollout,
            "discover": cmd_discover, "dns-zone": cmd_dns_zone, "pki": cmd_pki,
            "diff": cmd_diff, "get": cmd_get, "describe": cmd_describe}


def _error_lines(e: BaseException, args: argparse.Namespace) -> list[str]:
    from .mgmt_errors import SpecError
    if isinstance(e, SpecError):
        src = getattr(args, "file", None)
        prefix = "" if not src else ("<stdin>" if src == "-" else src) + ": "
        lines = []
        for path, msg in e.problems:
            if path:
                lines.append("%s%s: %s" % (prefix, path, msg))
            elif src and msg.startswith(src if src != "-" else "<stdin>"):
                lines.append(msg)
            else:
                lines.append(prefix + msg)
        return lines or [str(e)]
    return [" ".join(str(e).split()) or type(e).__name__]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        from .errors import DprError
    except Exception as e:  # the package itself is broken
        sys.stderr.write("%s: cannot load the dpr package: %s\n" % (PROG, e))
        return EXIT_ERROR
    try:
        return COMMANDS[args.command](args)
    except DprError as e:
        for line in _error_lines(e, args):
            sys.stderr.write("%s: %s\n" % (PROG, line))
        return EXIT_DIFF_ERROR if args.command == "diff" else EXIT_ERROR
    except KeyboardInterrupt:
        sys.stderr.write("%s: interrupted\n" % PROG)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout went away (e.g. `dprctl events | head`): not an error
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
