"""Pytest fixtures for real systemd nodes (docs/testing-clusters.md).

    def test_x(cluster):                      # 1 node
        cluster[0].run("systemctl is-active dbus")

    @pytest.mark.nodes(3)
    def test_y(cluster):                      # 3 nodes
        ...

    def test_z(make_cluster):                 # any number of clusters, any options
        c = make_cluster(2, upper="tmpfs")

Every node gets the build installed (`make install DESTDIR=` once per session,
see dpr_stage). Clusters are torn down when the test ends, also when it fails;
on failure each node's console and journal tail go into the report.
Environment: DPRT_STAGE=DIR uses an existing `make install DESTDIR=DIR` tree;
DPRT_NO_BUILD=1 boots nodes without the build; DPRT_KEEP=1 keeps the state
directories (/var/tmp/dprt-*) for inspection. (request.node.rep_call, read on
failure, is kept by tests/conftest.py.)
"""
import os
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cluster as harness  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def pytest_configure(config):
    config.addinivalue_line("markers", "nodes(n): number of nodes of the `cluster` fixture")


@pytest.fixture(scope="session")
def harness_ready():
    """Skip when not root; otherwise fail loudly if something is missing.
    Removes what dead runs left behind (clusters of live runs stay)."""
    if os.geteuid() != 0:
        pytest.skip("real systemd nodes need root")
    harness.preflight()
    harness.cleanup_stale(log=lambda *a: None)
    yield harness


@pytest.fixture(scope="session")
def dpr_stage(harness_ready, tmp_path_factory):
    """A `make install DESTDIR=` tree of the build, installed into every node."""
    if os.environ.get("DPRT_NO_BUILD") == "1":
        return None
    if os.environ.get("DPRT_STAGE"):
        return os.environ["DPRT_STAGE"]
    stage = str(tmp_path_factory.mktemp("dprt-stage"))
    r = subprocess.run(["make", "-C", ROOT, "--no-print-directory", "install",
                        "DESTDIR=" + stage, "PREFIX=/usr/local"],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail("make install DESTDIR=%s failed:\n%s%s" % (stage, r.stdout[-3000:], r.stderr[-3000:]))
    return stage


def _report(request, clusters):
    rep = getattr(request.node, "rep_call", None)
    if rep is None or not rep.failed:
        return
    for c in clusters:
        for node in c:
            parts = ["console (tail):\n" + node.console()[-3000:]]
            if node.running:
                try:
                    parts.append("journal (tail):\n" + node.journal(lines=60))
                    parts.append(node.run("systemctl --failed --no-pager", check=False).stdout)
                except harness.HarnessError as e:
                    parts.append("journal unavailable: %s" % e)
            request.node.add_report_section("call", "node %s" % node, "\n".join(parts))


@pytest.fixture
def make_cluster(request, dpr_stage):
    """Factory: make_cluster(n=1, **Cluster options) -> a booted Cluster."""
    made = []

    def make(n=1, **kw):
        kw.setdefault("stage", dpr_stage)
        c = harness.Cluster(n, **kw)
        made.append(c)
        return c

    yield make
    _report(request, made)
    errors = []
    for c in made:
        try:
            c.teardown()
        except harness.HarnessError as e:
            errors.append(str(e))
    if errors:
        pytest.fail("teardown: " + "; ".join(errors))


@pytest.fixture
def cluster(request, make_cluster):
    """A booted cluster; size from @pytest.mark.nodes(N) or indirect
    parametrization, default 1 node."""
    n = getattr(request, "param", None)
    if n is None:
        m = request.node.get_closest_marker("nodes")
        n = m.args[0] if m else 1
    return make_cluster(n)
