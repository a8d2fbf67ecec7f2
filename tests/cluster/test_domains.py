"""Issue 9: each deployment its own DPR domain, on a real systemd node.

Two deployments as in examples/cluster.yaml (`kv` and `sessions`, 3 shards
each) and one Python session writing into each (dpr.Client from the
agent's status: cluster.client(name), whose domain is the deployment's
name). Then, while both write:

  (a) kill -9 of a `kv` instance (systemd restarts it),
  (b) `systemctl restart` of another `kv` instance,
  (c) an update of `kv` (a version change: a rolling restart of all three).

Checked: the `sessions` session sees no rollback at all and its
deployment's world-line never moves (status after each step, and the
session itself); the `kv` session sees the kill -9's rollback and `kv`'s
world-line moves once: (b) and (c) are planned restarts (issue 13), which
roll nobody back. At the end each session reads every key it wrote back: the
operations a rollback reported lost are absent, every other one (the
survivors, a prefix before each rollback, and everything committed) is
there; no rollback lost an operation of a commit point seen before it.

Needs root (skipped otherwise), like every test here.
"""
import json

import cluster as harness
from writers import Writers

# systemd, recovery and rolling restarts on a machine shared with others
WAIT = 120

SPEC = """\
name: demo
cachestores:
  - name: kv
    version: "%s"
    shards: 3
    checkpoint_interval_ms: 100
  - name: sessions
    version: "1"
    shards: 3
    checkpoint_interval_ms: 100
"""

def status(node):
    return json.loads(node.run(["dprctl", "status", "--json"]).stdout)


def world_lines(st):
    return {d["name"]: d["world_line"] for d in st["deployments"]}


def instances(st):
    return {i["name"]: i for d in st["deployments"] for i in d["instances"]}


def all_ready(node):
    st = status(node)
    insts = instances(st)
    return st if len(insts) == 6 and all(i["ready"] for i in insts.values()) else None


MSGID_ROLLBACK = "892d967b7a6c449397bf100928d6aff0"  # common/msgid.h


def check_rollback_logged(node, domain, old, new):
    """The agent logged the domain's new world-line once, with its
    MESSAGE_ID and fields, and the journal's catalog explains the id
    (conf/dpr-cluster.catalog, installed by make install)."""
    def entries():
        out = node.run(["journalctl", "--no-pager", "-o", "json", "MESSAGE_ID=" + MSGID_ROLLBACK,
                        "SYSLOG_IDENTIFIER=dpr-agent", "DPR_DOMAIN=" + domain,
                        "DPR_WORLD_LINE=%d" % new], check=False).stdout
        got = [json.loads(line) for line in out.splitlines() if line.strip()]
        return got or None
    got = harness.wait_for("the rollback's journal entry", entries, 30)
    assert len(got) == 1, got
    e = got[0]
    assert (int(e["DPR_OLD_WORLD_LINE"]), int(e["DPR_WORLD_LINE"])) == (old, new), e
    assert e["PRIORITY"] == "5" and "rolled back" in e["MESSAGE"], e
    text = node.run(["journalctl", "--no-pager", "--dump-catalog", MSGID_ROLLBACK]).stdout
    assert "Subject: DPR domain @DPR_DOMAIN@ rolled back" in text, text
    explained = node.run(["journalctl", "--no-pager", "-x", "-o", "with-unit",
                          "MESSAGE_ID=" + MSGID_ROLLBACK]).stdout
    assert "DPR domain %s rolled back: world-line %d" % (domain, new) in explained, explained


def test_a_failure_in_one_deployment_never_rolls_back_another(cluster):
    node = cluster[0]
    harness.wait_for("dpr-agent", lambda: node.is_active("dpr-agent") == "active", 60)
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(SPEC % "1")
    node.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
             timeout=WAIT + 30)
    st = harness.wait_for("6 ready instances", lambda: all_ready(node), WAIT)
    wl0 = world_lines(st)
    assert wl0["kv"] >= 1 and wl0["sessions"] >= 1, st
    doms = {d["name"]: d for d in st["finder"]["domains"]}
    assert doms["kv"]["workers"] == doms["sessions"]["workers"] == 3, st["finder"]

    w = Writers(node, ["kv", "sessions"])
    try:
        w.moves_on("warm-up", ops=200)

        # (a) kill -9 of kv-1: systemd restarts it, kv moves to a new world-line
        pid = instances(st)["kv-1"]["main_pid"]
        node.run(["kill", "-9", str(pid)])

        def kv1_back():
            s = all_ready(node)
            return s if s and instances(s)["kv-1"]["main_pid"] not in (0, pid) and \
                world_lines(s)["kv"] > wl0["kv"] else None
        st = harness.wait_for("kv-1 restarted by systemd", kv1_back, WAIT)
        assert world_lines(st)["sessions"] == wl0["sessions"], st["deployments"]
        check_rollback_logged(node, "kv", wl0["kv"], world_lines(st)["kv"])
        w.moves_on("after kill -9")

        # (b) systemctl restart of kv-2
        wl = world_lines(st)["kv"]
        pid = instances(st)["kv-2"]["main_pid"]
        node.systemctl("restart", "dpr-cachestore@kv-2.service")

        def kv2_back():
            s = all_ready(node)
            return s if s and instances(s)["kv-2"]["main_pid"] not in (0, pid) else None
        st = harness.wait_for("kv-2 restarted", kv2_back, WAIT)
        assert world_lines(st)["kv"] == wl, st["deployments"]  # a planned restart
        assert world_lines(st)["sessions"] == wl0["sessions"], st["deployments"]
        w.moves_on("after systemctl restart")

        # (c) an update of kv: a rolling restart of kv-0, kv-1, kv-2
        pids = {n: i["main_pid"] for n, i in instances(st).items()}
        with open(node.path("/root/cluster.yaml"), "w") as f:
            f.write(SPEC % "2")
        out = node.run("cd /root && dprctl apply -f cluster.yaml").stdout
        assert "3 updated" in out, out

        def rolled():
            s = all_ready(node)
            return s if s and all(instances(s)[n]["main_pid"] != pids[n]
                                  for n in ("kv-0", "kv-1", "kv-2")) else None
        st = harness.wait_for("kv rolled out", rolled, WAIT)
        assert all(instances(st)["sessions-%d" % i]["main_pid"] == pids["sessions-%d" % i]
                   for i in range(3))
        w.moves_on("after the update")
    finally:
        results = w.finish()

    log = "\n".join(w.log[-40:])
    wl = world_lines(status(node))
    # sessions: never rolled back, same world-line throughout
    assert wl["sessions"] == wl0["sessions"], (wl0, wl)
    assert w.rollbacks["sessions"] == [], log
    r = results.get("sessions", "")
    assert r.startswith("ok ") and " rollbacks=0 errors=0 " in r, log
    assert "world-line=%d->%d" % (wl0["sessions"], wl0["sessions"]) in r, r
    # kv: rolled back (at least by the kill -9), and read back exactly
    assert wl["kv"] == wl0["kv"] + 1, (wl0, wl)  # the kill -9 only: the rest were planned
    r = results.get("kv", "")
    assert r.startswith("ok "), log
    assert " rollbacks=0 " not in r, r
