"""The version of the dpr package: where it is installed from.

In order: ``VERSION`` in dpr/_install.py (written by ``make install`` and
the .deb), the source tree's (the first line of debian/changelog, next to
python-dpr/), the installed distribution's (``importlib.metadata``, e.g.
after ``pip install python-dpr``), else "unknown". python-dpr/setup.py
builds the distribution with the source tree's.
"""
from __future__ import annotations

import importlib.metadata
import os

DISTRIBUTION = "dpr-cluster"
CHANGELOG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "debian",
                         "changelog")


def changelog_version(path: str = CHANGELOG) -> str | None:
    """The version of the first entry of a Debian changelog ("pkg (1.2.3)
    unstable; ..."), or None if the file is missing or has none."""
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline()
    except OSError:
        return None
    start, end = first.find("("), first.find(")")
    if start < 0 or end <= start + 1:
        return None
    return first[start + 1:end]


def version() -> str:
    """The version this package is (see the module's docstring)."""
    try:
        from ._install import VERSION
        return str(VERSION)
    except ImportError:
        pass
    v = changelog_version()
    if v:
        return v
    try:
        return importlib.metadata.version(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
