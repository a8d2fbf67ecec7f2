"""Fixtures for the tests of the Python package (python-dpr): the DPR client
(dpr.Client against real dpr-finder and dpr-kv processes) and the
management API and dprctl (against the real dpr-agent; the pure spec and
CLI tests need nothing). Every process a test starts is killed by PID when
the test ends, also when it fails. The agent runs without systemd here:
validation, plan, apply-recording, status, delete, events, nodes and
permissions are tested; unit behaviour is tested inside real systemd nodes
(tests/cluster).

Run: PYTHONPATH=python-dpr /usr/bin/python3 -m pytest -q tests/python-dpr
(without PYTHONPATH the source tree's python-dpr/ is used as well).
"""
import importlib.util
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
if importlib.util.find_spec("dpr") is None:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "python-dpr"))

from harness import FINDER, KV, Cluster  # noqa: E402
from agent_harness import agent, make_agent, pytest_runtest_makereport  # noqa: E402,F401


def _need(path):
    if not os.access(path, os.X_OK):
        pytest.fail("%s is missing: build it first (make all; make -f Makefile -f "
                    "cachestore/build.mk build/dpr-kv)" % path, pytrace=False)


@pytest.fixture
def cluster(tmp_path):
    """A running dpr-finder; start shards with cluster.start_shards(n)."""
    _need(FINDER)
    _need(KV)
    import dpr._libdpr
    try:
        dpr._libdpr.get_lib()
    except dpr._libdpr.LibdprNotFound as e:
        pytest.fail(str(e), pytrace=False)
    c = Cluster(str(tmp_path))
    try:
        c.start_finder()
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def cluster3(cluster):
    cluster.start_shards(3)
    return cluster
