"""What every process-test folder shares (tests/lib/dprtest.py): tests/lib on
sys.path, the `procs` and `cluster` fixtures, the logs of a failed test's
processes in its report, and no process left running after a test.

A folder's own conftest.py may override `cluster` (tests/cluster's is a
cluster of systemd nodes; tests/python-dpr's also needs libdpr).
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib"))

import dprtest  # noqa: E402


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Keeps each phase's report on the item (item.rep_setup, rep_call,
    rep_teardown) and adds the log tails of the test's processes to a
    failed report."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)
    first = getattr(item, "_dprtest_first", None)
    if rep.failed and first is not None and rep.when != "teardown":
        for p in dprtest.started()[first:]:
            rep.sections.append(("%s (pid %d) log" % (p.name, p.pid), p.describe()))


@pytest.fixture(autouse=True)
def _no_process_left(request):
    """Kills (by PID) any Proc the test started and left running, and fails
    the test if there was one."""
    request.node._dprtest_first = len(dprtest.started())
    yield
    left = [p for p in dprtest.started()[request.node._dprtest_first:] if p.alive()]
    names = ", ".join("%s (pid %d, %s)" % (p.name, p.pid, p.log_path) for p in left)
    for p in left:
        p.kill()
    if left:
        pytest.fail("left running after the test (now killed): " + names)


@pytest.fixture
def procs():
    """A dprtest.Procs: every process added is stopped at the end of the
    test, which fails on sanitizer reports in their logs."""
    with dprtest.Procs() as group:
        yield group


@pytest.fixture
def cluster(tmp_path):
    """A dprtest.Cluster in tmp_path with its finder running; start shards
    with cluster.start_kv(worker) or cluster.start_shards(n)."""
    dprtest.need(dprtest.FINDER, dprtest.KV)
    with dprtest.Cluster(str(tmp_path)) as c:
        c.start_finder()
        yield c
