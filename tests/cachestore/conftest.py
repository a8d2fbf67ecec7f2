"""Fixtures for the dpr-kv tests. `cluster` (a dpr-finder in a temporary
directory; tests/conftest.py) and `kv` (dpr-kv worker 1 against it): every
process a test starts is killed by PID when it ends (also when it fails).
`small_tmpfs` mounts a small file system to fill (dpr-kv's and dpr-redis'
disk-full tests)."""
import os
import signal
import subprocess
import sys

import pytest

import dprtest
from dprtest import wait_for

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # kvwire


@pytest.fixture
def kv(cluster):
    return cluster.start_kv(1)


def _mounted(path):
    path = os.path.realpath(path)
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A function mounting a tmpfs of the given size on a new directory and
    returning its path; at the end every process started meanwhile is
    killed and the tmpfs unmounted (also when the test failed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounts = []
    first = len(dprtest.started())

    def mount(size):
        path = str(tmp_path / ("tmpfs%d" % len(mounts)))
        os.makedirs(path)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%s,mode=0700" % size, "tmpfs",
                            path], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip("cannot mount a tmpfs: %s" % r.stderr.strip())
        mounts.append(path)
        return path

    yield mount
    for p in dprtest.started()[first:]:
        p.kill(signal.SIGKILL)  # their checkpoint children die with them
    for path in mounts:
        def unmounted(path=path):
            if not _mounted(path):
                return True
            subprocess.run(["umount", path], capture_output=True)
            return not _mounted(path)
        try:
            wait_for(unmounted, timeout=10, what="umount %s" % path)
        except AssertionError:
            subprocess.run(["umount", "-l", path], capture_output=True)
            raise
