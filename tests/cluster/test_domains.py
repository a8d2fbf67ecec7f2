"""Issue 9: each deployment its own DPR domain, on a real systemd node.

Two deployments as in examples/cluster.yaml (`kv` and `sessions`, 3 shards
each) and one Python session writing into each (dpr.Client from the
agent's status: cluster.client(name), whose domain is the deployment's
name). Then, while both write:

  (a) kill -9 of a `kv` instance (systemd restarts it),
  (b) `systemctl restart` of another `kv` instance,
  (c) an update of `kv` (a version change: a rolling restart of all three).

Checked: the `sessions` session sees no rollback at all and its
deployment's world-line never moves (status after each step, and the
session itself); the `kv` session sees rollbacks and `kv`'s world-line
moves. At the end each session reads every key it wrote back: the
operations a rollback reported lost are absent, every other one (the
survivors, a prefix before each rollback, and everything committed) is
there; no rollback lost an operation of a commit point seen before it.

Needs root (skipped otherwise), like every test here.
"""
import json
import queue
import subprocess
import threading
import time

import cluster as harness

# systemd, recovery and rolling restarts on a machine shared with others
WAIT = 120

SPEC = """\
name: demo
cachestores:
  - name: kv
    version: "%s"
    shards: 3
    checkpoint_interval_ms: 100
  - name: sessions
    version: "1"
    shards: 3
    checkpoint_interval_ms: 100
"""

# Runs inside the node: one thread and one session per deployment, each
# writing key "<deployment>:<seq>" = "<seq>" until /tmp/stop-writing exists,
# reporting progress and rollbacks; then each reads everything back.
WRITERS = r'''
import os, sys, threading, time
import dpr

STOP = "/tmp/stop-writing"
lock = threading.Lock()

def out(*a):
    with lock:
        print(*a, flush=True)

class Writer(threading.Thread):
    def __init__(self, cluster, dep):
        super().__init__(daemon=True)
        self.dep = dep
        self.client = cluster.client(dep, timeout=30, reconnect_timeout=90,
                                     rollback_timeout=90)
        self.errors = 0            # RollbackErrors raised
        self.seen = []             # (rollbacks so far, commit point) observed
        self.result = "FAILED no result"

    def run(self):
        try:
            self.result = self.work()
        except Exception as e:  # noqa: BLE001 - reported, the test fails on it
            self.result = "FAILED %s: %s" % (type(e).__name__, " ".join(str(e).split()))
        out("@@result %s %s" % (self.dep, self.result))

    def work(self):
        s = self.client.session()
        wl0 = s.world_line
        out("@@start %s domain %s world-line %d" % (self.dep, self.client.domain, wl0))
        next_report = 0.0
        while not os.path.exists(STOP):
            try:
                if time.monotonic() >= next_report:
                    cp = s.commit_point()
                    self.seen.append((len(s.rollbacks), cp))
                    out("@@progress %s %d %d %d %d" % (self.dep, s.last_seq, cp,
                                                       len(s.rollbacks), s.world_line))
                    next_report = time.monotonic() + 0.5
                seq = s.next_seq
                s.set("%s:%d" % (self.dep, seq), str(seq))
            except dpr.RollbackError as e:
                self.errors += 1
                out("@@rollback %s %s" % (self.dep, " ".join(str(e).split())))
            time.sleep(0.005)
        # everything issued is committed before the read-back
        while True:
            try:
                s.wait_committed(timeout=90)
                break
            except dpr.RollbackError as e:
                self.errors += 1
                out("@@rollback %s %s" % (self.dep, " ".join(str(e).split())))
        last = s.last_seq
        wrong = []
        for k, rb in enumerate(s.rollbacks):
            # nothing a commit point had covered before the rollback is lost
            before = max([cp for n, cp in self.seen if n <= k] or [0])
            if rb.lost_count and rb.lost_from <= before:
                wrong.append("rollback %r lost operations up to commit point %d"
                             % (rb, before))
        kept = lost = 0
        for seq in range(1, last + 1):
            v = s.get("%s:%d" % (self.dep, seq))
            if s.lost(seq):
                lost += 1
                if v is not None:
                    wrong.append("operation %d reported lost reads %r" % (seq, v))
            else:
                kept += 1
                if v != str(seq).encode():
                    wrong.append("operation %d should have survived, reads %r" % (seq, v))
        wl1 = s.world_line  # before close(), which frees the C session
        s.close()
        return "%s issued=%d kept=%d lost=%d rollbacks=%d errors=%d world-line=%d->%d %s" % (
            "ok" if not wrong else "FAILED", last, kept, lost, len(s.rollbacks), self.errors,
            wl0, wl1, "; ".join(wrong[:5]))

with dpr.connect() as cluster:
    writers = [Writer(cluster, dep) for dep in sys.argv[1:]]
for w in writers:
    w.start()
for w in writers:
    w.join()
'''


class Writers:
    """The writer script inside the node, its lines read on a thread."""

    def __init__(self, node, deps):
        with open(node.path("/root/writers.py"), "w") as f:
            f.write(WRITERS)
        node.run("rm -f /tmp/stop-writing")
        self.node = node
        self.proc = node.spawn(["python3", "-u", "/root/writers.py"] + list(deps),
                               stderr=subprocess.STDOUT)
        self.lines = queue.Queue()
        self.log = []
        self.progress = {}          # deployment -> (last_seq, commit point, rollbacks, wl)
        self.rollbacks = {d: [] for d in deps}
        self.results = {}
        self.ended = False
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def poll(self):
        """Takes in what the script said so far; False once it ended."""
        while not self.ended:
            try:
                line = self.lines.get_nowait()
            except queue.Empty:
                return True
            if line is None:
                self.ended = True
                break
            self.log.append(line)
            parts = line.split()
            if line.startswith("@@progress "):
                self.progress[parts[1]] = tuple(int(x) for x in parts[2:6])
            elif line.startswith("@@rollback "):
                self.rollbacks[parts[1]].append(" ".join(parts[2:]))
            elif line.startswith("@@result "):
                self.results[parts[1]] = " ".join(parts[2:])
        return False

    def last_seq(self, dep):
        self.poll()
        return self.progress.get(dep, (0,))[0]

    def moves_on(self, what, deps=("kv", "sessions"), ops=50):
        """Waits until every session issued `ops` more operations."""
        start = {d: self.last_seq(d) for d in deps}

        def progressed():
            if not self.poll():
                raise AssertionError("the writers ended early:\n" + "\n".join(self.log[-30:]))
            return all(self.last_seq(d) >= start[d] + ops for d in deps)
        harness.wait_for("both sessions writing (%s)" % what, progressed, WAIT, interval=0.3)

    def finish(self):
        self.node.run("touch /tmp/stop-writing")
        try:
            self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 10
        while self.poll() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.results


def status(node):
    return json.loads(node.run(["dprctl", "status", "--json"]).stdout)


def world_lines(st):
    return {d["name"]: d["world_line"] for d in st["deployments"]}


def instances(st):
    return {i["name"]: i for d in st["deployments"] for i in d["instances"]}


def all_ready(node):
    st = status(node)
    insts = instances(st)
    return st if len(insts) == 6 and all(i["ready"] for i in insts.values()) else None


def test_a_failure_in_one_deployment_never_rolls_back_another(cluster):
    node = cluster[0]
    harness.wait_for("dpr-agent", lambda: node.is_active("dpr-agent") == "active", 60)
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(SPEC % "1")
    node.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
             timeout=WAIT + 30)
    st = harness.wait_for("6 ready instances", lambda: all_ready(node), WAIT)
    wl0 = world_lines(st)
    assert wl0["kv"] >= 1 and wl0["sessions"] >= 1, st
    doms = {d["name"]: d for d in st["finder"]["domains"]}
    assert doms["kv"]["workers"] == doms["sessions"]["workers"] == 3, st["finder"]

    w = Writers(node, ["kv", "sessions"])
    try:
        w.moves_on("warm-up", ops=200)

        # (a) kill -9 of kv-1: systemd restarts it, kv moves to a new world-line
        pid = instances(st)["kv-1"]["main_pid"]
        node.run(["kill", "-9", str(pid)])

        def kv1_back():
            s = all_ready(node)
            return s if s and instances(s)["kv-1"]["main_pid"] not in (0, pid) and \
                world_lines(s)["kv"] > wl0["kv"] else None
        st = harness.wait_for("kv-1 restarted by systemd", kv1_back, WAIT)
        assert world_lines(st)["sessions"] == wl0["sessions"], st["deployments"]
        w.moves_on("after kill -9")

        # (b) systemctl restart of kv-2
        wl = world_lines(st)["kv"]
        pid = instances(st)["kv-2"]["main_pid"]
        node.systemctl("restart", "dpr-cachestore@kv-2.service")

        def kv2_back():
            s = all_ready(node)
            return s if s and instances(s)["kv-2"]["main_pid"] not in (0, pid) and \
                world_lines(s)["kv"] > wl else None
        st = harness.wait_for("kv-2 restarted", kv2_back, WAIT)
        assert world_lines(st)["sessions"] == wl0["sessions"], st["deployments"]
        w.moves_on("after systemctl restart")

        # (c) an update of kv: a rolling restart of kv-0, kv-1, kv-2
        pids = {n: i["main_pid"] for n, i in instances(st).items()}
        with open(node.path("/root/cluster.yaml"), "w") as f:
            f.write(SPEC % "2")
        out = node.run("cd /root && dprctl apply -f cluster.yaml").stdout
        assert "3 updated" in out, out

        def rolled():
            s = all_ready(node)
            return s if s and all(instances(s)[n]["main_pid"] != pids[n]
                                  for n in ("kv-0", "kv-1", "kv-2")) else None
        st = harness.wait_for("kv rolled out", rolled, WAIT)
        assert all(instances(st)["sessions-%d" % i]["main_pid"] == pids["sessions-%d" % i]
                   for i in range(3))
        w.moves_on("after the update")
    finally:
        results = w.finish()

    log = "\n".join(w.log[-40:])
    wl = world_lines(status(node))
    # sessions: never rolled back, same world-line throughout
    assert wl["sessions"] == wl0["sessions"], (wl0, wl)
    assert w.rollbacks["sessions"] == [], log
    r = results.get("sessions", "")
    assert r.startswith("ok ") and " rollbacks=0 errors=0 " in r, log
    assert "world-line=%d->%d" % (wl0["sessions"], wl0["sessions"]) in r, r
    # kv: rolled back (at least by the kill -9), and read back exactly
    assert wl["kv"] >= wl0["kv"] + 5, (wl0, wl)     # kill, restart, 3 rolling restarts
    r = results.get("kv", "")
    assert r.startswith("ok "), log
    assert " rollbacks=0 " not in r, r
