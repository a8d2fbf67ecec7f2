#!/usr/bin/python3
"""bench/placement.py - placement on three real systemd nodes (issue 11).

    sudo make bench-placement     (= bench/placement.py build [TRIALS])

Boots three systemd nodes in namespaces (tests/cluster/cluster.py; root),
gives their agents one Raft cluster, then TRIALS times (default 3):

  1. apply: `dprctl apply` (from node1) of 4 deployments of 4 shards (16
     instances, spread over the nodes by the leader), timed from the
     command's start until `dprctl status` on node1 shows every instance
     ready and every layout given; then the deployments are deleted and
     the time until every unit is gone is not counted;
  2. node loss: 200 keys are written to each deployment (one session
     each, committed: every instance has a checkpoint, copied to one other
     node: replicas default to 1); the power of node3 is cut and the clock
     runs until node1's status lists it down (raft.node_down_after_ms,
     default 10 s: detection) and then until every instance is ready again
     on node1 and node2 (its instances moved to the nodes holding their
     copies and restored the cut: restore); the keys are read back;
  3. node3 boots again: the time until it is marked up and its old
     instances are retired (no cache-store unit runs on it);
  4. the deployments are deleted (not counted).

Writes the "## Placement on three nodes" section of docs/benchmarks.md
(other sections kept). Not a test: no timed assertions.
"""
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import benchdoc  # noqa: E402
import demoutil  # noqa: E402

WAIT = 120
DEPLOYMENTS = ("a", "b", "c", "d")
SHARDS = 4


def spec(names):
    return "name: demo\ncachestores:\n" + "".join(
        "  - {name: %s, version: \"1\", shards: %d, checkpoint_interval_ms: 100}\n"
        % (n, SHARDS) for n in names)


status = demoutil.status


def all_ready(st, n):
    insts = [i for d in st.get("deployments") or [] for i in d["instances"]]
    laid = all((d.get("layout") or {}).get("epoch", 0) >= 1 for d in st.get("deployments") or [])
    return len(insts) == n and all(i["ready"] for i in insts) and laid


def wait(what, fn, timeout=WAIT, interval=0.05):
    return demoutil.wait(what, fn, timeout, interval)


WRITE = r"""
import sys, dpr
with dpr.connect() as c:
    for d in sys.argv[2:]:
        cl = c.client(d, timeout=30, reconnect_timeout=60)
        with cl.session() as s:
            for i in range(200):
                if sys.argv[1] == "write":
                    s.set("k%d" % i, "v%d" % i)
                elif s.get("k%d" % i) == b"v%d" % i:
                    print("ok")
            s.wait_committed(timeout=60)
"""


def on_node(st, node):
    return [i["name"] for d in st.get("deployments") or [] for i in d["instances"]
            if i["node"] == node]


def run(harness, build, trials, box):
    c, _ = demoutil.raft_cluster(harness, build, 3, box, WAIT)
    n1, n3 = c[0], c[2]
    with open(n1.path("/root/keys.py"), "w") as f:
        f.write(WRITE)
    total = len(DEPLOYMENTS) * SHARDS
    applies, downs, serving, backs, spreads, moved, kept = [], [], [], [], [], [], []
    for _ in range(trials):
        with open(n1.path("/root/cluster.yaml"), "w") as f:
            f.write(spec(DEPLOYMENTS))
        t0 = time.monotonic()
        n1.run("cd /root && dprctl apply -f cluster.yaml", timeout=WAIT)
        st = wait("every instance ready", lambda: (lambda s: s if all_ready(s, total)
                                                   else None)(status(n1)))
        applies.append(time.monotonic() - t0)
        spreads.append(sorted(sum(1 for d in st["deployments"] for i in d["instances"]
                                  if i["node"] == n.name) for n in c))
        n1.run(["python3", "/root/keys.py", "write"] + list(DEPLOYMENTS), timeout=WAIT)
        moved.append(len(on_node(st, n3.name)))

        t0 = time.monotonic()
        n3.power_cut()
        wait("node3 marked down", lambda: (status(n1).get("cluster_spec") or {}).get("down")
             == [n3.name], interval=0.05)
        downs.append(time.monotonic() - t0)
        try:
            wait("every instance ready on node1 and node2", lambda: (
                lambda s: all_ready(s, total) and not on_node(s, n3.name))(status(n1)),
                interval=0.05)
        except RuntimeError:  # what did not get there, for whoever reads the failure
            demoutil.print_deployments(status(n1))
            print(n1.journal(lines=150))
            raise
        serving.append(time.monotonic() - t0)
        out = n1.run(["python3", "/root/keys.py", "read"] + list(DEPLOYMENTS), timeout=WAIT)
        kept.append(out.stdout.split().count("ok"))

        t0 = time.monotonic()
        n3.boot()
        wait("node3 back, its old instances retired", lambda: not (
            status(n1).get("cluster_spec") or {}).get("down") and not n3.run(
                "systemctl list-units --state=active --no-legend 'dpr-cachestore@*'",
                check=False).stdout.strip(), interval=0.1)
        backs.append(time.monotonic() - t0)

        with open(n1.path("/root/cluster.yaml"), "w") as f:
            f.write("name: demo\ncachestores: []\n")
        n1.run("cd /root && dprctl apply -f cluster.yaml", timeout=WAIT)
        wait("every instance gone", lambda: not status(n1).get("deployments")
             and not any(status(n).get("retiring") for n in c), interval=0.2)
    return applies, downs, serving, backs, spreads, moved, kept


def write_doc(build, trials, applies, downs, serving, backs, spreads, moved, kept):
    def row(what, v, goal, met):
        return "| %s | %.2f | %.2f | %.2f | %s | %s |" % (
            what, min(v), statistics.median(v), max(v), goal,
            "—" if met is None else "**met**" if met else "**not met**")
    restore = [s - d for s, d in zip(serving, downs)]
    rows = [row("apply 16 instances → all ready (layouts given)", applies, "< 3 s",
                max(applies) < 3),
            row("node power cut → marked down (raft.node_down_after_ms 10 s): detection",
                downs, "—", None),
            row("marked down → its instances serving on the other nodes: restore", restore,
                "—", None),
            row("node power cut → its instances serving on the other nodes", serving,
                "< 12 s", max(serving) < 12),
            row("node boots → marked up, its old instances retired", backs, "—", None)]
    section = """## Placement on three nodes

- Command: `sudo make bench-placement` (runs `bench/placement.py %s %d`)
- Machine: %s
- Date: %s

Three systemd nodes in namespaces on one bridge (tests/cluster/cluster.py,
tmpfs upper layers), their agents one Raft cluster (election 300 ms). Each
trial applies 4 deployments of 4 shards from node1 (the leader places the
16 instances, each with its checkpoints copied to one other node;
instances per node in each trial: %s) and polls node1's `dprctl status`
every 50 ms until every instance is ready and every layout given; writes
and commits 200 keys to each deployment; cuts node3's power and waits
until node1's status lists it down, then until every instance is ready
again with none on node3 (node3's %s instances moved to the nodes holding
their copies, restored the cut, and the layouts were given again); reads
the keys back (%s of %d read back in each trial); boots node3 and waits
until it is marked up and its old instances are retired; then deletes
everything. Seconds, %d trials:

| step | min | p50 | max | goal | |
|---|---:|---:|---:|---|---|
%s

Detection is `raft.node_down_after_ms` plus up to one cluster tick
(250 ms) and the poll; restore is the new placement's Raft commit, the
finder's token hand-over, the copies taken over by dpr-kv, its
registration and restore, and the new layouts.
""" % (build, trials, benchdoc.machine(), benchdoc.now(),
       "; ".join("/".join(str(x) for x in s) for s in spreads),
       "/".join(str(m) for m in moved), "/".join(str(k) for k in kept),
       200 * len(DEPLOYMENTS), trials, "\n".join(rows))
    benchdoc.write_section("Placement on three nodes", section)


def report(build, trials, res):
    write_doc(build, trials, *res)
    print("applies %s s; marked down after %s s; serving elsewhere after %s s; "
          "back after boot %s s" % tuple(", ".join("%.2f" % x for x in v) for v in res[:4]))


def main():
    return demoutil.bench_main("bench-placement", run, report)

if __name__ == "__main__":
    sys.exit(main())
