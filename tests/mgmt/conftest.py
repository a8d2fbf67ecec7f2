"""Fixtures for the management API and dprctl tests (python-dpr: dpr.spec,
dpr.control, dpr.cluster, dpr.cli).

    PYTHONPATH=python-dpr /usr/bin/python3 -m pytest -q tests/mgmt

The pure tests (spec, CLI arguments) need nothing. The protocol tests run
against the real dpr-agent (build/dpr-agent, or $DPR_AGENT): each test
starts its own agent with a temporary config (control socket, state and
instance directories in a temporary directory, free ports) and kills it by
PID at the end. Without the binary they are skipped with the reason. The
agent runs without systemd here: validation, plan, apply-recording, status,
delete, events, nodes and permissions are tested; unit behaviour is tested
inside real systemd nodes (tests/cluster).
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PYDIR = os.path.join(ROOT, "python-dpr")
if PYDIR not in sys.path:
    sys.path.insert(0, PYDIR)
sys.path.insert(0, HERE)

from agent_harness import agent, make_agent, pytest_runtest_makereport  # noqa: E402,F401
