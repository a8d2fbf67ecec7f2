#!/usr/bin/python3
"""bench/discovery.py - how fast DNS-SD follows the cluster (issue 12).

    sudo make bench-discovery     (= bench/discovery.py build [TRIALS])

Boots three systemd nodes in namespaces (tests/cluster/cluster.py; root),
each with its avahi-daemon on the test bridge, gives their agents one Raft
cluster, and measures two things.

  1. Instance ready → visible on another node. Every node streams its
     agent's events (`dprctl events --json`) and runs `avahi-browse -rp
     _dpr-cs._tcp` (resolving); both are time-stamped as their lines
     arrive. TRIALS times (default 3) 4 deployments of 4 shards (16
     instances) are applied and deleted; for every instance, the time from
     its "ready" event on its node to its record (with the instance's
     address) resolved by avahi-browse on each of the two other nodes.
     This includes the agent's publish tick (250 ms) and mDNS probing of a
     new name (RFC 6762: three probes 250 ms apart before announcing).
  2. Shard move → the client's first successful batch. A Python program on
     node1 that knows only the cluster's name (`dpr.Client.discover("demo",
     "kv")`) writes one key at a time to a 3-shard deployment; node3 (one
     shard) loses its power; its shard moves to the node holding its
     copies. Measured: the power cut to the moved shard's "ready" event,
     and that event to the first operation the session gets answered (the
     session asks the agents for the new layout by itself). TRIALS times,
     node3 booted again in between.

Writes the "## Discovery" section of docs/benchmarks.md (other sections
kept). Not a test: no timed assertions.
"""
import json
import os
import statistics
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "examples"))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import benchdoc  # noqa: E402
import demoutil  # noqa: E402

WAIT = 120
DEPLOYMENTS = ("a", "b", "c", "d")
SHARDS = 4

# Runs in a node: time-stamps every line of a command as it arrives.
STAMP = r"""
import subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True, bufsize=1)
for line in p.stdout:
    print("%.6f %s" % (time.time(), line.rstrip("\n")), flush=True)
"""

# Runs on node1: one session of a program that knows only the cluster's name.
WRITER = r"""
import os, sys, time
import dpr
c = dpr.Client.discover("demo", "kv", reply_timeout=30, reconnect_timeout=90,
                        rollback_timeout=90)
s = c.session()
print("start %.6f" % time.time(), flush=True)
last = time.time()
while not os.path.exists("/tmp/stop-writing"):
    try:
        s.set("k%d" % s.next_seq, "v")
    except dpr.RollbackError:
        print("rollback %.6f" % time.time(), flush=True)
        continue
    now = time.time()
    if now - last > 0.2:
        print("gap %.6f %.6f" % (last, now), flush=True)
    last = now
    time.sleep(0.002)
print("done %.6f" % time.time(), flush=True)
"""


class Stream(threading.Thread):
    """A stamped command in a node; keeps (time, line) pairs."""

    def __init__(self, node, cmd):
        super().__init__(daemon=True)
        self.node = node
        self.lines = []
        self.lock = threading.Lock()
        self.proc = node.spawn(["python3", "-u", "/root/stamp.py"] + cmd)
        self.start()

    def run(self):
        for line in self.proc.stdout:
            t, _, rest = line.rstrip("\n").partition(" ")
            with self.lock:
                self.lines.append((float(t), rest))

    def since(self, t0):
        with self.lock:
            return [(t, line) for t, line in self.lines if t >= t0]

    def stop(self):
        self.proc.kill()
        self.proc.wait()


def spec(deps, shards):
    return "name: demo\ncachestores:\n" + "".join(
        "  - {name: %s, version: \"1\", shards: %d, checkpoint_interval_ms: 100}\n"
        % (n, shards) for n in deps)


def apply(node, text):
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(text)
    node.run("cd /root && dprctl apply -f cluster.yaml", timeout=WAIT)


status = demoutil.status


def wait(what, fn, timeout=WAIT, interval=0.1):
    return demoutil.wait(what, fn, timeout, interval)


def ready_events(stream, t0):
    """{instance name: first time it was reported ready} since t0."""
    out = {}
    for t, line in stream.since(t0):
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        if ev.get("type") == "instance" and ev.get("ready") and ev["name"] not in out:
            out[ev["name"]] = t
    return out


def seen_records(stream, t0):
    """{(instance name, addr): first time avahi-browse resolved it} since t0."""
    out = {}
    for t, line in stream.since(t0):
        f = line.split(";")
        if f[0] != "=" or len(f) < 10 or f[2] != "IPv4":
            continue
        name = f[3].replace("\\064", "@").split("@")[0]
        addr = [x[len('"addr='):-1] for x in f[9].split(" ") if x.startswith('"addr=')]
        key = (name, addr[0] if addr else "")
        out.setdefault(key, t)
    return out


def visibility(c, events, browsers, trials):
    """Part 1: seconds from ready to resolved on each other node."""
    n1 = c[0]
    total = len(DEPLOYMENTS) * SHARDS
    lat = []
    for _ in range(trials):
        t0 = time.time()
        apply(n1, spec(DEPLOYMENTS, SHARDS))
        st = wait("every instance ready", lambda: (lambda s: s if len(
            [i for d in s.get("deployments") or [] for i in d["instances"] if i["ready"]])
            == total else None)(status(n1)))
        insts = {i["name"]: i for d in st["deployments"] for i in d["instances"]}

        def all_seen():
            for n in c:
                seen = seen_records(browsers[n.name], t0)
                for name, i in insts.items():
                    if i["node"] != n.name and (name, i["endpoint"]) not in seen:
                        return False
            return True
        wait("every record on the other nodes", all_seen, interval=0.5)
        for name, i in insts.items():
            ready = ready_events(events[i["node"]], t0).get(name)
            if ready is None:
                raise RuntimeError("no ready event of %s on %s; its events:\n%s" % (
                    name, i["node"], "\n".join(line for _, line in events[i["node"]].since(t0))))
            for n in c:
                if n.name != i["node"]:
                    lat.append(seen_records(browsers[n.name], t0)[(name, i["endpoint"])]
                               - ready)
        apply(n1, "name: demo\ncachestores: []\n")
        wait("every instance gone", lambda: not status(n1).get("deployments")
             and not any(status(n).get("retiring") for n in c), interval=0.5)
    return lat


def moves(c, events, trials):
    """Part 2: (power cut → moved shard ready, ready → first answered op)."""
    n1, n3 = c[0], c[2]
    with open(n1.path("/root/writer.py"), "w") as f:
        f.write(WRITER)
    restore, follow = [], []
    for _ in range(trials):
        apply(n1, spec(["kv"], 3))
        st = wait("kv ready", lambda: (lambda s: s if s.get("deployments") and all(
            i["ready"] for i in s["deployments"][0]["instances"]) and (
                s["deployments"][0].get("layout") or {}).get("epoch", 0) >= 1 else None)(
                    status(n1)))
        victim = [i["name"] for i in st["deployments"][0]["instances"] if i["node"] == n3.name]
        assert len(victim) == 1, st
        n1.run("rm -f /tmp/stop-writing")
        w = Stream(n1, ["python3", "-u", "/root/writer.py"])
        wait("the writer's start", lambda: any(line.startswith("start") for _, line in w.since(0)))
        time.sleep(2)
        t0 = time.time()
        n3.power_cut()
        def moved():
            got = [ready_events(events[n.name], t0).get(victim[0]) for n in c[:2]]
            got = [t for t in got if t is not None]
            return min(got) if got else None
        ready = wait("%s ready elsewhere" % victim[0], moved, interval=0.2)
        first = wait("an operation answered after the move", lambda: [
            float(line.split()[2]) for _, line in w.since(t0)
            if line.startswith("gap ") and float(line.split()[2]) > ready], interval=0.2)[0]
        n1.run("touch /tmp/stop-writing")
        wait("the writer to end", lambda: w.proc.poll() is not None, interval=0.2)
        w.stop()
        for t, line in w.since(t0):
            print("  writer at +%.2f s: %s" % (t - t0, line))
        print("  %s ready at +%.2f s" % (victim[0], ready - t0))
        restore.append(ready - t0)
        follow.append(first - ready)
        apply(n1, "name: demo\ncachestores: []\n")
        n3.boot()
        wait("node3 back, nothing left", lambda: not (status(n1).get("cluster_spec") or {})
             .get("down") and not status(n1).get("deployments") and not any(
                 status(n).get("retiring") for n in c), interval=0.5)
    return restore, follow


def run(harness, build, trials, box):
    c, _ = demoutil.raft_cluster(harness, build, 3, box, WAIT)
    for n in c:
        with open(n.path("/root/stamp.py"), "w") as f:
            f.write(STAMP)
    events = {n.name: Stream(n, ["dprctl", "events", "--json"]) for n in c}
    browsers = {n.name: Stream(n, ["avahi-browse", "-rp", "_dpr-cs._tcp"]) for n in c}
    time.sleep(2)  # the streams have subscribed (nothing to wait on: they print nothing yet)
    try:
        lat = visibility(c, events, browsers, trials)
        for b in browsers.values():
            b.stop()
        restore, follow = moves(c, events, trials)
    except RuntimeError:  # what did not get there, for whoever reads the failure
        demoutil.print_deployments(status(c[0]))
        print(c[0].journal(lines=60))
        raise
    finally:
        for s in list(events.values()) + list(browsers.values()):
            if s.proc.poll() is None:
                s.stop()
    return lat, restore, follow


def write_doc(build, trials, lat, restore, follow):
    def row(what, v, n):
        return "| %s | %d | %.2f | %.2f | %.2f | %.2f |" % (
            what, n, min(v), statistics.median(v), benchdoc.pct(v, 90), max(v))
    rows = [row("instance ready → resolved by avahi-browse on another node", lat, len(lat)),
            row("node power cut → its shard ready on another node", restore, len(restore)),
            row("moved shard ready → the session's first answered operation", follow,
                len(follow)),
            row("node power cut → the session's first answered operation",
                [r + f for r, f in zip(restore, follow)], len(follow))]
    section = """## Discovery

- Command: `sudo make bench-discovery` (runs `bench/discovery.py %s %d`)
- Machine: %s
- Date: %s

Three systemd nodes in namespaces on one bridge, each with its own
avahi-daemon, their agents one Raft cluster (election 300 ms). First, %d
times, 4 deployments of 4 shards are applied and deleted: for each of the
16 instances, the time from its agent's "ready" event to its `_dpr-cs._tcp`
record (with the instance's address) resolved by a running `avahi-browse
-rp` on each of the two other nodes (both stamped as their lines arrive,
one clock). Then, %d times, a Python program on node1 that knows only the
cluster's name (`dpr.Client.discover("demo", "kv")`) writes one key at a
time to 3 shards while node3 loses its power: its shard moves to the node
holding its copies, and the session finds it by asking the agents. Seconds:

| step | samples | min | p50 | p90 | max |
|---|---:|---:|---:|---:|---:|
%s

Ready → visible is the agent's publish tick (250 ms), mDNS probing of the
new name (three probes 250 ms apart, RFC 6762 §8.1) and the announcement.
A shard's move waits for the node to be marked down
(`raft.node_down_after_ms`, 10 s by default: "Placement on three nodes"
above). After the moved shard is ready the session, blocked on an
operation for it, asks the agents for the deployment's layout every second
the shard stays unreachable (DPR.CLUSTER.ENDPOINTS), reconnects to the new
address and learns of the rollback of the lost node's uncommitted
operations (a RollbackError); its next operation is the one counted.
""" % (build, trials, benchdoc.machine(), benchdoc.now(), trials, trials, "\n".join(rows))
    benchdoc.write_section("Discovery", section)


def report(build, trials, res):
    write_doc(build, trials, *res)
    lat, restore, follow = res
    print("ready → visible p50 %.2f s max %.2f s; power cut → moved shard ready %s s; "
          "→ first answered operation %s s" % (
              statistics.median(lat), max(lat), ", ".join("%.2f" % x for x in restore),
              ", ".join("%.2f" % x for x in follow)))


def main():
    return demoutil.bench_main("bench-discovery", run, report)

if __name__ == "__main__":
    sys.exit(main())
