"""Sessions writing inside a node while a test breaks things
(tests/cluster/test_domains.py, test_raft.py).

Writers(node, deployments) runs a script in the node (or, with
address="IP:PORT", wherever `node` runs it: tests/vm/ runs it on the host
and reaches an agent's control API over TCP): one thread and one
dpr session per deployment (dpr.connect().client(deployment), or with
discover="CLUSTER" dpr.Client.discover(CLUSTER, deployment): a program that
knows only the cluster's name, test_discovery.py), each writing
key "<deployment>:<seq>" = "<seq>" until told to stop, reporting progress
and rollbacks; then each reads every key back and says whether exactly the
operations a rollback reported lost are absent and every other one (the
survivors, and everything committed) is there.
"""
import queue
import subprocess
import threading
import time

import cluster as harness

WAIT = 120

# Runs inside the node: one thread and one session per deployment, each
# writing key "<deployment>:<seq>" = "<seq>" until /tmp/stop-writing exists,
# reporting progress and rollbacks; then each reads everything back.
WRITERS = r'''
import os, sys, threading, time
import dpr

STOP = os.environ.get("WRITERS_STOP", "/tmp/stop-writing")
DISCOVER = os.environ.get("WRITERS_DISCOVER")  # a cluster's name: found by DNS-SD
ADDRESS = os.environ.get("WRITERS_ADDRESS")    # an agent's control over TCP (tests/vm)
TLS = os.environ.get("WRITERS_TLS")            # "CA,CERT,KEY": the shards speak TLS only
lock = threading.Lock()

def out(*a):
    with lock:
        print(*a, flush=True)

class Writer(threading.Thread):
    def __init__(self, cluster, dep):
        super().__init__(daemon=True)
        self.dep = dep
        if DISCOVER:
            self.client = dpr.Client.discover(DISCOVER, dep, reply_timeout=30,
                                              reconnect_timeout=90, rollback_timeout=90)
        else:
            tls = {"ssl_context": dpr.tls_context(*TLS.split(","))} if TLS else {}
            self.client = cluster.client(dep, timeout=30, reconnect_timeout=90,
                                         rollback_timeout=90, **tls)
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

if DISCOVER:
    writers = [Writer(None, dep) for dep in sys.argv[1:]]
else:
    with dpr.connect(address=ADDRESS) as cluster:
        writers = [Writer(cluster, dep) for dep in sys.argv[1:]]
for w in writers:
    w.start()
for w in writers:
    w.join()
'''


class Writers:
    """The writer script inside the node, its lines read on a thread."""

    def __init__(self, node, deps, discover=None, address=None, script="/root/writers.py",
                 stop="/tmp/stop-writing", tls=None):
        """tls: (CA, CERT, KEY) paths in the node: the sessions speak TLS
        (agents with tls.enabled: the shards speak TLS only)."""
        with open(node.path(script), "w") as f:
            f.write(WRITERS)
        node.run("rm -f " + stop)
        self.node = node
        self.stop = stop
        env = {"WRITERS_STOP": stop}
        if discover:
            env["WRITERS_DISCOVER"] = discover
        if address:
            env["WRITERS_ADDRESS"] = address
        if tls:
            env["WRITERS_TLS"] = ",".join(tls)
        self.proc = node.spawn(["python3", "-u", script] + list(deps),
                               stderr=subprocess.STDOUT, env=env)
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

    def commit_point(self, dep):
        self.poll()
        return self.progress.get(dep, (0, 0))[1]

    def moves_on(self, what, deps=("kv", "sessions"), ops=50, timeout=WAIT):
        """Waits until every session issued `ops` more operations."""
        start = {d: self.last_seq(d) for d in deps}

        def progressed():
            if not self.poll():
                raise AssertionError("the writers ended early:\n" + "\n".join(self.log[-30:]))
            return all(self.last_seq(d) >= start[d] + ops for d in deps)
        harness.wait_for("the sessions writing (%s)" % what, progressed, timeout, interval=0.3)

    def finish(self):
        self.node.run("touch " + self.stop)
        try:
            self.proc.wait(timeout=600)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        deadline = time.monotonic() + 10
        while self.poll() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.results
