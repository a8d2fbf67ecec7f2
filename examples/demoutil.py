"""examples/demoutil.py - what the demos (demo.py, cluster-demo.py) share:
the checks before booting nodes, signal handling, teardown and printing."""
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile

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
