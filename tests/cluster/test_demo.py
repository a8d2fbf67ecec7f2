"""The main command, `make demo`, as a test: a real systemd node, the agent,
dprctl apply of examples/cluster.yaml, a Python session inside the node,
kill -9 of a cache-store, and the client's check that exactly the operations
before RollbackError.lost_from survived (it reads every key back).

This covers issue 4's "a Python session works" and "sessions lose only
uncommitted operations (prefix property holds)" on a real systemd node.
"""
import os
import re
import subprocess
import sys

import pytest

from dprtest import BUILD, ROOT

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="boots a systemd node: needs root")


def test_demo_keeps_exactly_the_prefix():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "examples", "demo.py"),
                        "--build", BUILD], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    m = re.search(r"^demo OK .*world-line (\d+) -> (\d+); operations 1\.\.(\d+) kept", out, re.M)
    assert m, out[-6000:]
    assert int(m.group(2)) > int(m.group(1))          # the kill moved the world-line
    assert re.search(r"(\d+) of \1 kept keys read back, (\d+) of \2 lost keys absent, 0 wrong",
                     out), out[-6000:]
