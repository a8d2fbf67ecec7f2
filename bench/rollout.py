#!/usr/bin/python3
"""bench/rollout.py - what a roll-out costs the clients (issue 13).

    sudo make bench-rollout     (= bench/rollout.py build [TRIALS])

Boots three systemd nodes in namespaces (tests/cluster/cluster.py; root),
gives their agents one Raft cluster and applies `kv`, 3 shards (one per
node), rollout.min_ready_seconds 1. A Python DPR session on node1 writes
one key at a time (2 ms apart) and time-stamps every answered operation.
TRIALS times (default 3) the deployment's version is changed with `dprctl
apply --wait` from node1: the roll-out restarts the three instances one at
a time (planned stops: no rollback). Reported: the roll-out's total time
(apply to --wait's return), the stalls the session saw (gaps between two
answered operations above 20 ms, while the roll-out ran: one per restarted
instance is expected), and the RollbackErrors (0 expected). At the end the
session reads every key back.

Writes the "## Roll-out" section of docs/benchmarks.md (other sections
kept). Not a test: no timed assertions.
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
from discovery import STAMP, Stream  # noqa: E402

WAIT = 120
GAP = 0.020

# Runs on node1: one session; "gap START END" for every pause above GAP,
# "rollback T" for every RollbackError; at the end the read-back.
WRITER = r"""
import os, sys, time
import dpr
GAP = float(sys.argv[1])
with dpr.connect() as c:
    cl = c.client("kv", timeout=30, reconnect_timeout=60, rollback_timeout=60)
    with cl.session() as s:
        wl0 = s.world_line
        print("start %.6f" % time.time(), flush=True)
        last = time.time()
        while not os.path.exists("/tmp/stop-writing"):
            try:
                s.set("k%d" % s.next_seq, "v")
            except dpr.RollbackError:
                print("rollback %.6f" % time.time(), flush=True)
                continue
            now = time.time()
            if now - last > GAP:
                print("gap %.6f %.6f" % (last, now), flush=True)
            last = now
            time.sleep(0.002)
        s.wait_committed(timeout=60)
        n = s.last_seq
        missing = sum(1 for q in range(1, n + 1) if s.get("k%d" % q) != b"v")
        print("done %d %d %d %d" % (n, missing, wl0, s.world_line), flush=True)
"""


def spec(version):
    return ("name: demo\ncachestores:\n  - {name: kv, version: \"%s\", shards: 3, "
            "checkpoint_interval_ms: 100, rollout: {min_ready_seconds: 1}}\n" % version)


def apply(node, version, wait=True):
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(spec(version))
    node.run("cd /root && dprctl apply -f cluster.yaml%s" % (
        " --wait --timeout %d" % WAIT if wait else ""), timeout=WAIT + 30)


def run(harness, build, trials, box):
    c, _ = demoutil.raft_cluster(harness, build, 3, box, WAIT)
    n1 = c[0]
    apply(n1, "1")
    st = demoutil.status(n1)
    nodes = [i["node"] for i in st["deployments"][0]["instances"]]
    for name, text in (("stamp.py", STAMP), ("writer.py", WRITER)):
        with open(n1.path("/root/" + name), "w") as f:
            f.write(text)
    n1.run("rm -f /tmp/stop-writing")
    w = Stream(n1, ["python3", "-u", "/root/writer.py", str(GAP)])
    demoutil.wait("the writer's start", lambda: any(
        line.startswith("start") for _, line in w.since(0)), WAIT)
    time.sleep(2)
    totals, stalls = [], []
    for t in range(trials):
        t0 = time.time()
        apply(n1, str(t + 2))
        t1 = time.time()
        totals.append(t1 - t0)
        stalls.append([float(b) - float(a) for _, line in w.since(t0)
                       if line.startswith("gap ") for a, b in [line.split()[1:3]]
                       if float(b) <= t1 + 0.5])
        time.sleep(2)
    n1.run("touch /tmp/stop-writing")
    done = demoutil.wait("the writer's read-back", lambda: [
        line for _, line in w.since(0) if line.startswith("done ")], WAIT, 0.5)[0]
    rollbacks = sum(1 for _, line in w.since(0) if line.startswith("rollback "))
    w.stop()
    ops, missing, wl0, wl1 = (int(x) for x in done.split()[1:])
    return totals, stalls, rollbacks, ops, missing, (wl0, wl1), nodes


def write_doc(build, trials, totals, stalls, rollbacks, ops, missing, wls, nodes):
    flat = [s for trial in stalls for s in trial]
    rows = ["| roll-out of 3 instances (apply → `--wait` returns) | %d | %.2f | %.2f | %.2f |"
            % (len(totals), min(totals), statistics.median(totals), max(totals))]
    if flat:
        rows.append("| session stall (gap > 20 ms between answered operations) | %d | %.3f | "
                    "%.3f (p99 %.3f) | %.3f |" % (len(flat), min(flat), statistics.median(flat),
                                                   benchdoc.pct(flat, 99), max(flat)))
    section = """## Roll-out

- Command: `sudo make bench-rollout` (runs `bench/rollout.py %s %d`)
- Machine: %s
- Date: %s

Three systemd nodes in namespaces, their agents one Raft cluster; `kv` has
3 shards (on %s), `rollout.min_ready_seconds` 1. A Python DPR session on
node1 writes one key at a time (2 ms apart) while, %d times, the version
is changed with `dprctl apply --wait`: the roll-out restarts each instance
in turn with a planned stop (TRYAGAIN while it checkpoints and leaves the
finder, a reconnect to the new process on the same world-line). Seconds:

| what | samples | min | p50 | max |
|---|---:|---:|---:|---:|
%s

Stalls per trial: %s. The session issued %d operations; RollbackErrors:
%d; world-line %d → %d; operations missing at the read-back: %d. A
roll-out's total is mostly `min_ready_seconds` per instance and each new
process's start (restore, registration, readiness).
""" % (build, trials, benchdoc.machine(), benchdoc.now(), ", ".join(nodes), trials,
       "\n".join(rows), "; ".join(", ".join("%.3f" % s for s in trial) or "none"
                                   for trial in stalls),
       ops, rollbacks, wls[0], wls[1], missing)
    benchdoc.write_section("Roll-out", section)


def report(build, trials, res):
    write_doc(build, trials, *res)
    totals, stalls, rollbacks, ops, missing, wls, _ = res
    print("roll-outs %s s; stalls %s; %d operations, %d rollbacks, %d missing, world-line %s"
          % (", ".join("%.2f" % t for t in totals),
             "; ".join(", ".join("%.3f" % s for s in trial) for trial in stalls),
             ops, rollbacks, missing, "%d->%d" % wls))


def main():
    return demoutil.bench_main("bench-rollout", run, report)


if __name__ == "__main__":
    sys.exit(main())
