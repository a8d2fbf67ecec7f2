"""Fixtures for the dpr-kv tests: every process a test starts is killed by
PID when it ends (also when it fails)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from kvharness import Finder, Kv  # noqa: E402

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:")


class Cluster:
    """A finder plus dpr-kv processes in one temporary directory."""

    def __init__(self, base):
        self.base = base
        self.procs = []
        self.finder = None

    def start_finder(self, name="finder", port=0):
        f = Finder(os.path.join(self.base, name), os.path.join(self.base, name + ".log"), port)
        self.procs.append(f)
        self.finder = f.wait_ready()
        return f

    def kv_dir(self, worker):
        return os.path.join(self.base, "kv%d" % worker)

    def start_kv(self, worker=1, args=(), env=None, wait=True, finder=None):
        finder = finder or self.finder
        kv = Kv(finder.port, worker, self.kv_dir(worker),
                os.path.join(self.base, "kv%d.log" % worker), args=args, env=env)
        self.procs.append(kv)
        return kv.wait_ready() if wait else kv

    def cleanup(self):
        for p in reversed(self.procs):
            p.cleanup()
        found = [(p.argv[0], line) for p in self.procs for line in p.output().splitlines()
                 if any(m in line for m in SANITIZER_MARKERS)]
        assert not found, "sanitizer reports: %r" % found[:5]


@pytest.fixture
def cluster(tmp_path):
    c = Cluster(str(tmp_path))
    try:
        c.start_finder()
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def kv(cluster):
    return cluster.start_kv(1)
