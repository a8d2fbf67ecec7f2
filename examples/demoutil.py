"""examples/demoutil.py - what the demos (demo.py, cluster-demo.py) share:
the checks before booting nodes, signal handling, teardown and printing."""
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))


def section(title):
    print("\n== %s ==" % title, flush=True)


def indent(text, pad="   "):
    return "\n".join(pad + line if line else "" for line in text.rstrip("\n").splitlines())


@contextlib.contextmanager
def staged(build):
    """`make install DESTDIR=` of the build into a temporary tree: its path
    (removed afterwards; the nodes copy it when they start)."""
    stage = tempfile.mkdtemp(prefix="dpr-demo-stage-")
    try:
        r = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "install",
                            "DESTDIR=" + stage, "PREFIX=/usr/local", "BUILD=" + build],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError("make install DESTDIR=%s failed:\n%s%s"
                               % (stage, r.stdout, r.stderr))
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def prepare(target):
    """Root, the harness's preflight, stale leftovers removed, SIGTERM and
    SIGHUP turned into KeyboardInterrupt (before the harness installs its
    own). The harness module, or None after printing why not (exit 2)."""
    if os.geteuid() != 0:
        print("make %s needs root: it boots systemd nodes in Linux namespaces "
              "(run: sudo make %s)" % (target, target), file=sys.stderr)
        return None
    import cluster as harness
    try:
        harness.preflight()
    except harness.HarnessError as e:
        print("demo: %s" % e, file=sys.stderr)
        return None
    harness.cleanup_stale(log=lambda *a: None)

    def stop(signum, frame):
        raise KeyboardInterrupt
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    return harness


def ignore_signals():
    """From here on a signal cannot interrupt the teardown."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)


def teardown(harness, cluster, rc):
    """Ignores further signals and tears cluster down (None: nothing was
    started): (a note saying what happened, the exit code: rc, or 1 when
    something was left behind)."""
    ignore_signals()
    note = "nothing was started"
    if cluster is not None:
        try:
            cluster.teardown()
            left = harness.leftovers(cluster.id)
            note = "cluster %s removed" % cluster.id
            if left:
                note += ", but left behind: %s" % left
                rc = rc or 1
        except Exception as e:  # noqa: BLE001 - reported, and the run fails
            note = "teardown failed: %s" % e
            rc = rc or 1
    return note, rc


def raft_cluster(harness, build, n, box, wait=120):
    """n systemd nodes booted from the build (staged), each agent active,
    their agents one Raft cluster: (the Cluster, its leader). The cluster
    is appended to box as soon as it exists (teardown() takes it)."""
    with staged(build) as stage:
        c = harness.Cluster(n, stage=stage, upper="tmpfs", boot=False)
        box.append(c)
        c.start()
    for node in c:
        harness.wait_for("dpr-agent", lambda node=node: node.is_active("dpr-agent") == "active",
                         60)
    c.configure_raft()
    return c, harness.wait_for("a Raft leader", c.raft_leader, wait)


def print_deployments(st):
    """Each deployment of a `dprctl status --json` and its instances: what
    did not get ready, for whoever reads a failure."""
    for d in st.get("deployments") or []:
        print("deployment %s: layout %s, degraded %s" % (
            d["name"], d.get("layout"), d.get("degraded")))
        for i in d["instances"]:
            print("  %s on %s: ready %s, health %s, %s" % (
                i["name"], i["node"], i["ready"], i.get("health"), i.get("last_error")))


def bench_main(target, run, report):
    """main() of a benchmark on systemd nodes (bench/placement.py, ...):
    argv BUILD [TRIALS] (default build, 3); res = run(harness, build,
    trials, box) with box as in raft_cluster; the nodes torn down; then,
    when it went well, report(build, trials, res). The exit code."""
    build = sys.argv[1] if len(sys.argv) > 1 else "build"
    trials = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    harness = prepare(target)
    if harness is None:
        return 2
    box, rc, res = [], 1, None
    try:
        res = run(harness, build, trials, box)
        rc = 0
    except KeyboardInterrupt:
        rc = 130
    finally:
        note, rc = teardown(harness, box[0] if box else None, rc)
        print(note)
    if rc == 0:
        report(build, trials, res)
    return rc


def status(node):
    """`dprctl status --json` in node ({} when it does not answer)."""
    return json.loads(node.run(["dprctl", "status", "--json"], check=False).stdout or "{}")


def wait(what, fn, timeout=120, interval=0.05):
    """fn() once it is true, polled every interval (RuntimeError after timeout)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = fn()
        if v:
            return v
        time.sleep(interval)
    raise RuntimeError("timed out waiting for %s" % what)
