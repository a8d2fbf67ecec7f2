"""The journal MESSAGE_IDs (common/include/common/msgid.h) and their message
catalog (conf/dpr-cluster.catalog): every id is defined once, has a catalog
entry and the other way round, and journalctl compiles the catalog and
lists each id with its subject. (tests/cluster/test_domains.py finds a
rollback's entry with its id in a real node's journal.)"""
import os
import re
import subprocess

import pytest

from dprtest import ROOT

MSGID_H = os.path.join(ROOT, "common", "include", "common", "msgid.h")
CATALOG = os.path.join(ROOT, "conf", "dpr-cluster.catalog")


def header_ids():
    with open(MSGID_H, encoding="utf-8") as f:
        return dict(re.findall(r'#define (DPR_MSGID_[A-Z_]+) "([0-9a-f]{32})"', f.read()))


def catalog_entries():
    with open(CATALOG, encoding="utf-8") as f:
        text = f.read()
    entries = {}
    for m in re.finditer(r"^-- ([0-9a-f]{32})\n(.*?)(?=^-- |\Z)", text, re.M | re.S):
        entries[m.group(1)] = m.group(2)
    return entries


def test_ids_are_unique_and_each_has_a_catalog_entry():
    ids = header_ids()
    assert len(ids) >= 14 and len(set(ids.values())) == len(ids), ids
    entries = catalog_entries()
    assert set(entries) == set(ids.values()), set(entries) ^ set(ids.values())
    for msgid, body in entries.items():
        assert re.search(r"^Subject: \S", body, re.M), msgid
        assert "Defined-By: dpr-cluster" in body, msgid


def test_the_agent_logs_the_new_ids():
    src = ""
    for name in ("report.c", "reconcile.c", "clusterspec.c"):
        with open(os.path.join(ROOT, "agent", "src", name), encoding="utf-8") as f:
            src += f.read()
    for name in ("DPR_MSGID_ROLLBACK", "DPR_MSGID_ROLLOUT_HALTED", "DPR_MSGID_ROLLOUT_RESUMED",
                 "DPR_MSGID_NODE_DOWN", "DPR_MSGID_NODE_UP"):
        assert "DPR_MSGID_FIELD(%s)" % name in src, name


def test_journalctl_compiles_the_catalog(tmp_path):
    if subprocess.run(["sh", "-c", "command -v journalctl"], capture_output=True).returncode:
        pytest.skip("needs journalctl (systemd)")
    catdir = tmp_path / "usr" / "lib" / "systemd" / "catalog"
    catdir.mkdir(parents=True)
    (catdir / "dpr-cluster.catalog").write_text(open(CATALOG, encoding="utf-8").read())
    r = subprocess.run(["journalctl", "--root", str(tmp_path), "--update-catalog"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    r = subprocess.run(["journalctl", "--root", str(tmp_path), "--list-catalog"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    listed = dict(line.split(" ", 1) for line in r.stdout.splitlines() if line.strip())
    entries = catalog_entries()
    assert set(listed) == set(entries), r.stdout
    for msgid, body in entries.items():
        subject = re.search(r"^Subject: (.*)$", body, re.M).group(1)
        assert listed[msgid].strip().endswith(subject), (msgid, listed[msgid])
