#!/usr/bin/python3
"""examples/demo.py [--build DIR] - DPR Cluster end to end on one local node.

What `sudo make demo` runs (as root; needs what tests/cluster/cluster.py
needs, see docs/testing-clusters.md):

 1. installs the build into a staging tree (`make install DESTDIR=`), boots
    one real systemd node in private namespaces (tests/cluster/cluster.py)
    with the build installed, and waits for dpr-agent;
 2. `dprctl plan` / `dprctl apply --wait` of examples/cluster.yaml inside the
    node, then `dprctl status`;
 3. a client inside the node (dpr.Client of deployment "kv", addresses from
    the agent's status) writes one key per operation across the 3 shards in
    one session and prints its last sequence number against the commit point;
 4. kill -9 of one cache-store's main PID: systemd restarts it, deployment
    "kv" (its own DPR domain) moves to a new world-line, and the client gets
    dpr.RollbackError. It shows what was kept (the prefix of operations
    before lost_from) and what was lost, and reads every key back to check
    exactly that. Deployment "sessions", a domain of its own, keeps its
    world-line: nothing there rolls back;
 5. tears everything down (also on errors and Ctrl-C) and prints a summary.
"""
import argparse
import json
import os
import queue
import subprocess
import sys
import threading
import time

import demoutil  # noqa: E402
from demoutil import ROOT, indent, section  # noqa: E402

DEPLOYMENT = "kv"     # the deployment the client writes to
VICTIM = "kv-1"       # the cache-store killed with SIGKILL
KILL_MARK = "@@kill-now"

# The client, run inside the node with the node's python3 and the installed
# dpr package. Talks to the agent only for addresses (cluster.client()).
CLIENT = r'''
import sys, time
import dpr

WARMUP = float(sys.argv[1])
DEPLOYMENT = sys.argv[2]

def out(*a):
    print(*a, flush=True)

with dpr.connect() as cluster:
    client = cluster.client(DEPLOYMENT, reconnect_timeout=20, rollback_timeout=20)
out("client: deployment %s (its DPR domain: %s), shards %s, finder %s"
    % (DEPLOYMENT, client.domain, " ".join(client.shards), client.finder))
s = client.session()
out("session %s on world-line %d" % (s.id[:12], s.world_line))
out("%7s  %9s  %12s  %s" % ("time", "last_seq", "commit point", "not yet committed"))
keys = {}                         # seq -> key written by that operation
t0 = time.monotonic()
next_report = t0 + 0.5
marked = False
err = None
while True:
    now = time.monotonic()
    try:
        if now >= next_report:
            cp = s.commit_point()
            out("%6.1fs  %9d  %12d  %d" % (now - t0, s.last_seq, cp, s.last_seq - cp))
            next_report += 0.5
        if not marked and now - t0 >= WARMUP:
            out("%s %d" % ("@@kill-now", s.last_seq))   # the demo kills a cache-store now
            marked = True
        if marked and now - t0 > WARMUP + 25:
            out("ERROR: no rollback within 25s of the kill")
            sys.exit(1)
        seq = s.next_seq
        key = "demo:%06d" % seq
        keys[seq] = key
        s.set(key, "v%d" % seq)
    except dpr.RollbackError as e:
        err = e
        break
    if s.rollbacks:               # a rollback that lost nothing raises nothing
        break
    time.sleep(0.0005)            # a steady stream, not a flood

if err is not None:
    rb_from, rb_last, lost_count = err.lost_from, err.last_seq_before, err.lost_count
    out("")
    out("dpr.RollbackError: %s" % err)
    out("")
    out("  world-line      %d -> %d" % (err.old_world_line, err.world_line))
    out("  lost_from       %d" % err.lost_from)
    out("  kept (prefix)   operations 1..%d" % (err.lost_from - 1))
    out("  lost            operations %d..%d (%d)" % (err.lost_from, err.last_seq_before,
                                                        err.lost_count))
else:
    rb = s.rollbacks[-1]
    rb_last, rb_from, lost_count = rb.last_seq_before, rb.last_seq_before + 1, 0
    out("")
    out("rollback from world-line %d to %d lost nothing: operations 1..%d kept"
        % (rb.old_world_line, rb.world_line, rb_last))

issued = [q for q in sorted(keys) if q <= rb_last]
lost_by_shard = {}
for q in issued:
    if q >= rb_from:
        sh = client.shard_of(keys[q])
        lost_by_shard[sh] = lost_by_shard.get(sh, 0) + 1
if lost_by_shard:
    out("  lost per shard  " + ", ".join("%s-%d: %d" % (DEPLOYMENT, sh, n)
                                          for sh, n in sorted(lost_by_shard.items()))
        + "  (not only on the killed one: every shard rolled back to the cut)")

out("")
out("reading all %d keys back (session continues on world-line %d) ..."
    % (len(issued), s.world_line))
kept = lost = wrong = 0
for q in issued:
    v = s.get(keys[q])
    if q < rb_from:
        if v == b"v%d" % q:
            kept += 1
        else:
            wrong += 1
            if wrong <= 5:
                out("  WRONG: operation %d (%s) should have survived, reads %r" % (q, keys[q], v))
    else:
        if v is None:
            lost += 1
        else:
            wrong += 1
            if wrong <= 5:
                out("  WRONG: operation %d (%s) was reported lost, reads %r" % (q, keys[q], v))
s.set("demo:after", "1")
cp = s.wait_committed(timeout=10)
out("  %d of %d kept keys read back, %d of %d lost keys absent, %d wrong"
    % (kept, rb_from - 1, lost, lost_count, wrong))
out("  a new write after the rollback committed (commit point %d; the reads were "
    "operations of the session too)" % cp)
s.close()
out("@@result %s %d %d %d" % ("ok" if wrong == 0 else "FAILED", rb_from, lost_count, rb_last))
sys.exit(0 if wrong == 0 else 1)
'''


def status_json(node):
    return json.loads(node.run(["dprctl", "status", "--json"]).stdout)


def deployment(st, name):
    for d in st["deployments"]:
        if d["name"] == name:
            return d
    raise KeyError(name)


def instance(st, name):
    for d in st["deployments"]:
        for i in d["instances"]:
            if i["name"] == name:
                return i
    raise KeyError(name)


def demo(harness, build, t_start):
    section("1. Install the build and boot a node")
    with demoutil.staged(build) as stage:
        print("   make install DESTDIR=%s  (binaries, units, agent.conf, dprctl, python dpr)" % stage)
        cluster = harness.Cluster(1, stage=stage, upper="tmpfs", boot=False)
        yield cluster           # the caller tears it down, whatever happens next
        cluster.start()
    node = cluster[0]
    print("   node %s booted (systemd as PID 1, own namespaces) in %.1fs; %s"
          % (node.name, node.boot_seconds, cluster.id))
    harness.wait_for("dpr-agent", lambda: node.is_active("dpr-agent") == "active", 30)
    print("   dpr-agent: %s (pid %s)" % (node.is_active("dpr-agent"),
                                          node.systemctl("show", "-p", "MainPID", "--value",
                                                         "dpr-agent")))

    section("2. dprctl apply -f cluster.yaml (inside the node)")
    with open(os.path.join(ROOT, "examples", "cluster.yaml")) as f:
        spec = f.read()
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(spec)
    print("   $ dprctl plan -f cluster.yaml")
    print(indent(node.run("cd /root && dprctl plan -f cluster.yaml").stdout, "     "))
    print("   $ dprctl apply -f cluster.yaml --wait")
    r = node.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout 30")
    print(indent(r.stdout, "     "))
    print(indent(r.stderr.strip().splitlines()[-1], "     "))
    print("   $ dprctl status")
    print(indent(node.run(["dprctl", "status"]).stdout, "     "))

    section("3. Client workload: one session writing across the shards of %r" % DEPLOYMENT)
    with open(node.path("/root/demo-client.py"), "w") as f:
        f.write(CLIENT)
    proc = node.spawn(["python3", "-u", "/root/demo-client.py", "3", DEPLOYMENT],
                      stderr=subprocess.STDOUT)
    lines = queue.Queue()

    def pump():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)
    threading.Thread(target=pump, daemon=True).start()

    def next_line(timeout=40):
        try:
            return lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError("the client said nothing for %ss" % timeout) from None

    while True:
        line = next_line()
        if line is None:
            raise RuntimeError("the client exited (%s) before the kill" % proc.wait())
        if line.startswith(KILL_MARK):
            break
        print("   " + line, flush=True)

    section("4. kill -9 the main PID of cache-store %s" % VICTIM)
    before = status_json(node)
    victim = instance(before, VICTIM)
    pid = victim["main_pid"]
    wl = {d["name"]: d["world_line"] for d in before["deployments"]}
    print("   before: %s pid %d, restarts %d; world-lines: %s"
          % (VICTIM, pid, victim["restarts"],
             ", ".join("%s %s" % (n, w) for n, w in sorted(wl.items()))))
    t_kill = time.monotonic()
    node.run(["kill", "-9", str(pid)])
    print("   $ kill -9 %d    (%s, while the client keeps writing)" % (pid, victim["unit"]))

    def restarted():
        st = status_json(node)
        i = instance(st, VICTIM)
        if i["restarts"] >= 1 and i["ready"] and i["main_pid"] not in (0, pid) \
                and deployment(st, DEPLOYMENT)["world_line"] > wl[DEPLOYMENT]:
            return st
        return None
    after = harness.wait_for("systemd to restart %s" % VICTIM, restarted, 30, interval=0.1)
    i = instance(after, VICTIM)
    wl_after = {d["name"]: d["world_line"] for d in after["deployments"]}
    print("   systemd restarted it (Restart=on-failure) within %.1fs:" % (time.monotonic() - t_kill))
    print("   after:  %s pid %d, restarts %d; world-lines: %s"
          % (VICTIM, i["main_pid"], i["restarts"],
             ", ".join("%s %s" % (n, w) for n, w in sorted(wl_after.items()))))
    print("           last error: %s" % i["last_error"])
    others = sorted(n for n in wl if n != DEPLOYMENT)
    if any(wl_after.get(n) != wl[n] for n in others):
        raise RuntimeError("a crash in %s moved the world-line of another deployment: %s -> %s"
                           % (DEPLOYMENT, wl, wl_after))
    print("           %s: a DPR domain of its own, still on world-line %s (nothing rolled back)"
          % (", ".join(others), ", ".join(str(wl[n]) for n in others)))
    print("   $ dprctl status %s" % DEPLOYMENT)
    print(indent(node.run(["dprctl", "status", DEPLOYMENT]).stdout, "     "))

    section("5. What the client saw: rollback, kept prefix, lost suffix")
    result = None
    while True:
        line = next_line()
        if line is None:
            break
        if line.startswith("@@result"):
            result = line.split()[1:]
            continue
        print(("   " + line).rstrip(), flush=True)
    rc = proc.wait()
    if rc != 0 or result is None or result[0] != "ok":
        raise RuntimeError("the client failed (exit %s)" % rc)
    return {"lost_from": int(result[1]), "lost": int(result[2]), "issued": int(result[3]),
            "wl": (wl[DEPLOYMENT], wl_after[DEPLOYMENT]),
            "pid": pid, "new_pid": i["main_pid"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default=os.environ.get("BUILD", "build"),
                    help="the build directory to install from (default build)")
    a = ap.parse_args()
    harness = demoutil.prepare("demo")
    if harness is None:
        return 2
    print("DPR Cluster demo: one systemd node, examples/cluster.yaml, a client, a crash")
    t0 = time.monotonic()
    cluster = None
    summary, rc = None, 1
    steps = demo(harness, a.build, t0)
    try:
        cluster = next(steps)
        try:
            next(steps)
        except StopIteration as stop:
            summary = stop.value
        rc = 0
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        rc = 130
    except Exception as e:  # noqa: BLE001 - report, tear down, fail
        print("\ndemo FAILED: %s" % e, file=sys.stderr)
        if cluster is not None and cluster.nodes and cluster[0].running:
            print(indent(cluster[0].journal(lines=30)), file=sys.stderr)
    finally:
        # tear down first, print afterwards (stdout may be a closed pipe)
        demoutil.ignore_signals()
        steps.close()
        note, rc = demoutil.teardown(harness, cluster, rc)
        try:
            section("6. Teardown")
            print("   " + note)
        except BrokenPipeError:
            pass
    took = time.monotonic() - t0
    if rc == 0 and summary:
        print("\ndemo OK in %.0fs: kill -9 of %s (pid %d -> %d), world-line %d -> %d; "
              "operations 1..%d kept, %d..%d lost (%d), verified by reading back"
              % (took, VICTIM, summary["pid"], summary["new_pid"], summary["wl"][0],
                 summary["wl"][1], summary["lost_from"] - 1, summary["lost_from"],
                 summary["issued"], summary["lost"]))
    elif rc == 130:
        print("\ndemo interrupted after %.0fs; everything was torn down" % took)
    else:
        print("\ndemo FAILED after %.0fs (exit %d)" % (took, rc))
    return rc


if __name__ == "__main__":
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:          # e.g. | head: the cluster is already torn down
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 1
    sys.exit(code)
