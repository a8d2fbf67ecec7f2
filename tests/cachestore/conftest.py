"""Fixtures for the dpr-kv tests. `cluster` (a dpr-finder in a temporary
directory; tests/conftest.py) and `kv` (dpr-kv worker 1 against it): every
process a test starts is killed by PID when it ends (also when it fails)."""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # kvwire


@pytest.fixture
def kv(cluster):
    return cluster.start_kv(1)
