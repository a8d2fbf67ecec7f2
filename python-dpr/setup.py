"""python-dpr's build (pyproject.toml holds the metadata): the version is
the source tree's, the first line of debian/changelog next to python-dpr/
(dpr/_version.py reads it the same way)."""
import os
import runpy

from setuptools import setup

_here = os.path.dirname(os.path.abspath(__file__))
_v = runpy.run_path(os.path.join(_here, "dpr", "_version.py"))
VERSION = _v["changelog_version"]()
if not VERSION:
    raise SystemExit("python-dpr: no version: %s is missing or has no '(VERSION)' in its "
                     "first line (build from a DPR Cluster source tree)" % _v["CHANGELOG"])

setup(version=VERSION)
