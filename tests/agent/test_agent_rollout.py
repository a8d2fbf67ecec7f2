"""Roll-outs against a real systemd (one node of tests/cluster/, as in
test_agent_systemd.py): a change of version, impl or settings rolls through
a deployment's instances one at a time in shard order, each ready for
min_ready_seconds before the next; a partition updates only the shards
above it (a canary); pause and resume; a roll-out halts by itself when an
updated instance fails (an impl that exits) and says why; undo goes back;
`dprctl apply --wait` and `dprctl rollout` (python-dpr, staged into the
node) return only when every instance runs the applied generation; a
deployment's impl switched dpr-kv -> dpr-redis -> dpr-kv under a writing
session, every instance on its own state directory (docs/operations.md,
"Switching the implementation").

Needs root and what tests/cluster/cluster.py needs (skipped otherwise).
"""
import contextlib
import functools
import json
import os
import shutil
import sys
import time

import pytest

import dprtest
from dprtest import ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_agent_systemd import boot, call, ok  # noqa: E402

wait_for = functools.partial(dprtest.wait_for, timeout=60.0, interval=0.2)

MSGID_ROLLOUT_HALTED = "0a9e477766c2498094b121bf8cc7a709"  # common/msgid.h

# an implementation that exits at once: the version that fails to start;
# one that never gets ready (it never says READY=1): the version that stalls
BROKEN_IMPL = '    broken = "/bin/false";\n'
STALL_IMPL = '    stall = "/usr/local/bin/dpr-stall";\n'


def prepare(dest):
    """The broken impl in agent.conf; python-dpr (and libdpr) for dprctl
    and a session."""
    conf = os.path.join(dest, "etc/dpr/agent.conf")
    with open(conf) as f:
        text = f.read()
    text = text.replace('    dpr-kv = "/usr/local/bin/dpr-kv";\n',
                        '    dpr-kv = "/usr/local/bin/dpr-kv";\n' + BROKEN_IMPL + STALL_IMPL)
    assert BROKEN_IMPL in text and STALL_IMPL in text
    with open(conf, "w") as f:
        f.write(text)
    # dpr-redis (agent.conf names it), for the switch of impl
    shutil.copy(os.path.join(dprtest.BUILD_DIR, "dpr-redis"),
                os.path.join(dest, "usr/local/bin/dpr-redis"))
    stall = os.path.join(dest, "usr/local/bin/dpr-stall")
    with open(stall, "w") as f:
        f.write("#!/bin/sh\nexec sleep 600\n")
    os.chmod(stall, 0o755)
    shutil.copytree(os.path.join(ROOT, "python-dpr", "dpr"),
                    os.path.join(dest, "usr/local/lib/dpr-python/dpr"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    # (the DPR client of python-dpr runs on libdpr)
    shutil.copy(os.path.join(dprtest.BUILD_DIR, "libdpr.so"),
                os.path.join(dest, "usr/local/lib/libdpr.so"))


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    yield from boot(tmp_path_factory, prepare)


def dprctl(n, *args, input=None):
    return n.run("PYTHONPATH=/usr/local/lib/dpr-python python3 -m dpr.cli %s"
                 % " ".join(args), check=False, input=input, timeout=180)


def spec_of(version="1", impl="dpr-kv", **rollout):
    ro = {"min_ready_seconds": 2}
    ro.update(rollout)
    return {"name": "demo", "cachestores": [{"name": "kv", "impl": impl, "version": version,
                                             "shards": 3, "rollout": ro}]}


def apply(n, **kw):
    return ok(call(n, "apply", {"spec": spec_of(**kw)}))


def kv(n):
    s = ok(call(n, "status", {"name": "kv"}))
    d = s["deployments"][0]
    return {i["name"]: i for i in d["instances"]}, d


def settled(n, version):
    """Every instance ready and running version; the roll-out done."""
    insts, d = kv(n)
    if len(insts) == 3 and d["rollout"]["phase"] == "done" and all(
            i["ready"] and i["running_version"] == version and not i["outdated"]
            for i in insts.values()):
        return insts
    return None


def watch(n, until, timeout=90.0):
    """Polls status until until(insts, d) holds; returns the samples
    (time, {name: (main_pid, ready, running_version)}, rollout)."""
    samples = []
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        insts, d = kv(n)
        samples.append((time.monotonic(), {k: (v["main_pid"], v["ready"], v["running_version"])
                                           for k, v in insts.items()}, d["rollout"]))
        if until(insts, d):
            return samples
        time.sleep(0.1)
    raise AssertionError("timed out; last: %r" % (samples[-1:],))


def at_rest(n):
    """The version kv runs once its roll-out is done and every instance is
    ready."""
    return wait_for(lambda: (lambda i, d: d["version"] if d["rollout"]["phase"] == "done" and
                             len(i) == 3 and all(x["ready"] and not x["outdated"]
                                                 for x in i.values()) else None)(*kv(n)),
                    what="kv at rest")


def restart_agent(n):
    n.systemctl("restart", "dpr-agent")
    wait_for(lambda: n.run("systemctl is-active dpr-agent", check=False).stdout.strip()
             == "active", what="agent back")


def test_start(node):
    apply(node, version="1")
    insts = wait_for(lambda: settled(node, "1"), what="kv ready on version 1")
    assert all(i["generation"] == i["running_generation"] == 1 for i in insts.values())


def test_update_rolls_one_at_a_time_in_shard_order(node):
    before = settled(node, "1")
    r = apply(node, version="2")
    assert r["plan"]["updated"] == ["kv-0", "kv-1", "kv-2"]
    gen = r["generation"]
    samples = watch(node, lambda insts, d: d["rollout"]["phase"] == "done" and all(
        i["running_version"] == "2" and i["ready"] for i in insts.values()))
    # when each instance got its new process, and when it was ready again
    restarted, ready_again = {}, {}
    for t, insts, _ in samples:
        for name, (pid, ready, _ver) in insts.items():
            if pid != before[name]["main_pid"] and name not in restarted:
                restarted[name] = t
            if name in restarted and ready and name not in ready_again:
                ready_again[name] = t
        # never more than one instance down (max_unavailable 1)
        assert sum(1 for pid, ready, _ in insts.values() if not ready) <= 1, insts
    assert sorted(restarted, key=restarted.get) == ["kv-0", "kv-1", "kv-2"]
    # each one ready, and ready for min_ready_seconds (2), before the next
    assert restarted["kv-1"] >= ready_again["kv-0"] + 1.5
    assert restarted["kv-2"] >= ready_again["kv-1"] + 1.5
    insts, d = kv(node)
    assert all(i["running_generation"] == gen for i in insts.values())
    assert d["rollout"]["updated"] == 3 and d["rollout"]["halted"] is None
    assert d["rollout"]["can_undo"] is True
    out = node.run("journalctl --no-pager -o cat SYSLOG_IDENTIFIER=dpr-agent "
                   "DPR_INSTANCE=kv-1").stdout
    assert "roll-out: restarting it for generation %d" % gen in out


def test_partition_updates_only_the_canary(node):
    before = settled(node, "2")
    r = apply(node, version="3", partition=2)
    gen = r["generation"]
    insts = wait_for(lambda: (lambda i, d: i if d["rollout"]["phase"] == "done" and
                              i["kv-2"]["ready"] and i["kv-2"]["running_version"] == "3"
                              else None)(*kv(node)), what="kv-2 on version 3")
    assert insts["kv-2"]["main_pid"] != before["kv-2"]["main_pid"]
    assert insts["kv-2"]["running_generation"] == gen
    for name in ("kv-0", "kv-1"):
        assert insts[name]["main_pid"] == before[name]["main_pid"]
        assert insts[name]["running_version"] == "2" and insts[name]["outdated"]
    _, d = kv(node)
    assert d["rollout"]["targets"] == 1 and d["rollout"]["updated"] == 1
    # the partition lowered: the rest follows
    apply(node, version="3", partition=0)
    wait_for(lambda: settled(node, "3"), what="every instance on version 3")


def test_pause_and_resume(node):
    before = settled(node, "3")
    r = ok(call(node, "rollout", {"name": "kv", "action": "pause"}))
    apply(node, version="4", paused=True)
    time.sleep(3)
    insts, d = kv(node)
    assert d["rollout"]["phase"] == "paused" and d["rollout"]["paused"] is True
    assert {k: v["main_pid"] for k, v in insts.items()} == \
        {k: v["main_pid"] for k, v in before.items()}
    assert all(i["outdated"] and i["running_version"] == "3" for i in insts.values())
    st = ok(call(node, "rollout", {"name": "kv", "action": "status"}))
    assert st["rollout"]["phase"] == "paused"
    # dprctl rollout resume --wait: back when every instance runs version 4
    out = dprctl(node, "rollout", "resume", "kv", "--wait", "--timeout", "120")
    assert out.returncode == 0, out.stderr
    insts = settled(node, "4")
    assert insts, kv(node)
    assert r["generation"] >= 1


def test_failing_version_halts_and_says_why(node):
    before = settled(node, "4")
    # apply --wait fails fast with the reason (not after its timeout)
    spec = json.dumps(spec_of(version="5", impl="broken"))
    t0 = time.monotonic()
    out = dprctl(node, "apply", "-f", "-", "--wait", "--timeout", "150", input=spec)
    took = time.monotonic() - t0
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert "roll-out halted" in out.stderr and "kv-0" in out.stderr, out.stderr
    assert took < 100, took
    insts, d = kv(node)
    ro = d["rollout"]
    assert ro["phase"] == "halted" and "kv-0" in ro["halted"], ro
    # nothing after kv-0 was touched
    for name in ("kv-1", "kv-2"):
        assert insts[name]["main_pid"] == before[name]["main_pid"]
        assert insts[name]["running_version"] == "4" and insts[name]["ready"]
    time.sleep(2)
    insts2, _ = kv(node)
    assert insts2["kv-1"]["main_pid"] == before["kv-1"]["main_pid"]
    st = dprctl(node, "rollout", "status", "kv")
    assert st.returncode == 0 and "halted: kv-0" in st.stdout, st.stdout
    # one journal error with the roll-out's MESSAGE_ID (common/msgid.h) and the deployment
    out = node.run("journalctl --no-pager -o json SYSLOG_IDENTIFIER=dpr-agent "
                   "MESSAGE_ID=" + MSGID_ROLLOUT_HALTED).stdout
    halts = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert len(halts) == 1, halts
    assert "roll-out halted: kv-0" in halts[0]["MESSAGE"], halts
    assert halts[0]["DPR_DEPLOYMENT"] == "kv" and halts[0]["PRIORITY"] == "3", halts


def test_undo_goes_back(node):
    out = dprctl(node, "rollout", "undo", "kv", "--wait", "--timeout", "120")
    if out.returncode != 0:
        print(json.dumps(kv(node), indent=1))
        print(node.run("journalctl --no-pager -o short-monotonic | tail -80").stdout)
    assert out.returncode == 0, (out.stdout, out.stderr)
    insts = settled(node, "4")
    assert insts, kv(node)
    _, d = kv(node)
    assert d["rollout"]["halted"] is None and d["impl"] == "dpr-kv" and d["version"] == "4"
    env = node.run("cat /run/dpr/instances/kv-0.env").stdout
    assert "/usr/local/bin/dpr-kv" in env and "DPR_VERSION=4" in env


def test_apply_wait_returns_when_every_instance_runs_it(node):
    before = settled(node, "4")
    spec = json.dumps(spec_of(version="6"))
    out = dprctl(node, "apply", "-f", "-", "--wait", "--timeout", "150", input=spec)
    if out.returncode != 0:
        print(node.run("journalctl --no-pager -o short-monotonic | tail -80").stdout)
    assert out.returncode == 0, out.stderr
    insts, d = kv(node)
    gen = ok(call(node, "status"))["generation"]
    assert d["rollout"]["phase"] == "done"
    for name, i in insts.items():
        assert i["ready"] and i["running_version"] == "6" and i["running_generation"] == gen
        assert i["main_pid"] != before[name]["main_pid"]


# Runs in the node: one DPR session writing key w<seq> until /tmp/stop-rw
# exists; then waits for its commit and reads everything back. Prints the
# world-lines, RollbackErrors and keys missing.
WRITER = """\
import os, time, dpr
with dpr.connect() as c:
    cl = c.client("kv", timeout=30, reconnect_timeout=60, rollback_timeout=60)
    with cl.session() as s:
        wl0, errors = s.world_line, 0
        print("started", flush=True)
        while not os.path.exists("/tmp/stop-rw"):
            try:
                s.set("w%d" % s.next_seq, "v")
            except dpr.RollbackError:
                errors += 1
            time.sleep(0.002)
        s.wait_committed(timeout=60)
        last = s.last_seq
        missing = sum(1 for q in range(1, last + 1) if s.get("w%d" % q) != b"v")
        print("RESULT", wl0, s.world_line, errors, last, missing, flush=True)
"""


@contextlib.contextmanager
def a_session_writing(n, deployment="kv"):
    """A DPR session (WRITER) writes to deployment while the block runs;
    after it, it saw no RollbackError and the same world-line, and every
    operation reads back."""
    with open(n.path("/root/rw.py"), "w") as f:
        f.write(WRITER.replace('c.client("kv"', 'c.client("%s"' % deployment))
    n.run("rm -f /tmp/stop-rw")
    p = n.spawn("PYTHONPATH=/usr/local/lib/dpr-python exec python3 -u /root/rw.py")
    try:
        assert p.stdout.readline().strip() == "started", p.stderr.read()
        time.sleep(1)
        yield
        time.sleep(1)
        n.run("touch /tmp/stop-rw")
        stdout, stderr = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    result = [line.split()[1:] for line in stdout.splitlines() if line.startswith("RESULT")]
    assert result, (stdout, stderr)
    wl0, wl1, errors, last, missing = (int(x) for x in result[0])
    assert (wl1, errors, missing) == (wl0, 0, 0), (stdout, stderr)
    assert last > 100, stdout


def test_an_update_under_a_session_rolls_nobody_back(node):
    """Every restart of the roll-out is a planned stop: the session writing
    meanwhile sees reconnects, no RollbackError, the same world-line, and
    every operation reads back."""
    v0 = at_rest(node)
    with a_session_writing(node):
        out = dprctl(node, "apply", "-f", "-", "--wait", "--timeout", "150",
                     input=json.dumps(spec_of(version=v0 + "u")))
        assert out.returncode == 0, out.stderr


def test_rollout_survives_an_agent_restart(node):
    """The generation each instance runs, and a pause, are in the state file."""
    v0 = at_rest(node)
    apply(node, version="7", paused=True)
    restart_agent(node)
    insts, d = wait_for(lambda: (lambda i, d: (i, d) if len(i) == 3 and all(
        x["ready"] for x in i.values()) else None)(*kv(node)), what="status after restart")
    assert d["rollout"]["phase"] == "paused"
    assert all(i["running_version"] == v0 and i["outdated"] for i in insts.values())
    ok(call(node, "rollout", {"name": "kv", "action": "resume"}))
    try:
        wait_for(lambda: settled(node, "7"), what="version 7 everywhere")
    except AssertionError:
        print(json.dumps(kv(node), indent=1))
        print(node.run("journalctl --no-pager -o cat SYSLOG_IDENTIFIER=dpr-agent | tail -40").stdout)
        raise


def test_a_canary_under_a_session(node):
    """A version update with partition 2 while a session writes: only kv-2
    gets it (status says so), then partition 0 rolls the rest; no
    RollbackError, the same world-line, everything reads back."""
    v0 = at_rest(node)
    before, _ = kv(node)
    canary = v0 + "c"
    with a_session_writing(node):
        out = dprctl(node, "apply", "-f", "-", "--wait", "--timeout", "150",
                     input=json.dumps(spec_of(version=canary, partition=2)))
        assert out.returncode == 0, out.stderr
        gen = ok(call(node, "status"))["generation"]
        insts, d = kv(node)
        ro = d["rollout"]
        assert (ro["phase"], ro["targets"], ro["updated"], ro["halted"]) == \
            ("done", 1, 1, None), ro
        assert ro["settings"]["partition"] == 2
        assert insts["kv-2"]["running_version"] == canary and \
            insts["kv-2"]["running_generation"] == gen and not insts["kv-2"]["outdated"]
        assert insts["kv-2"]["main_pid"] != before["kv-2"]["main_pid"]
        for name in ("kv-0", "kv-1"):
            i = insts[name]
            assert i["running_version"] == v0 and i["running_generation"] < gen, i
            assert i["outdated"] and i["generation"] == gen and i["ready"], i
            assert i["main_pid"] == before[name]["main_pid"], i
        time.sleep(2)  # (the session writes to the canary and the others)
        out = dprctl(node, "apply", "-f", "-", "--wait", "--timeout", "150",
                     input=json.dumps(spec_of(version=canary, partition=0)))
        assert out.returncode == 0, out.stderr
        insts = settled(node, canary)
        assert insts, kv(node)
        assert all(i["main_pid"] != before[k]["main_pid"] for k, i in insts.items())


def test_a_stalled_update_halts_after_an_agent_restart(node):
    """The agent restarts while an updated instance is not ready yet: its
    progress deadline still runs out (the roll-out's restart is in
    agent.json), the roll-out halts and says why; restarted again, it stays
    halted with that reason; resume gives kv-0 a new deadline (it halts
    again: it still does not get ready); undo goes back."""
    v0 = at_rest(node)
    before, _ = kv(node)
    apply(node, version="stall", impl="stall", progress_deadline_seconds=10)
    wait_for(lambda: (lambda i: i["running_version"] == "stall" and not i["outdated"] and
                      not i["ready"])(kv(node)[0]["kv-0"]), what="kv-0 restarted, stalling")
    restart_agent(node)
    insts, d = kv(node)
    assert d["rollout"]["phase"] in ("progressing", "halted"), d["rollout"]
    _, d = wait_for(lambda: (lambda i, d: (i, d) if d["rollout"]["phase"] == "halted"
                             else None)(*kv(node)), what="the roll-out halted")
    reason = d["rollout"]["halted"]
    assert "kv-0 was not ready within 10 s" in reason, reason
    restart_agent(node)
    time.sleep(3)
    insts, d = kv(node)
    assert d["rollout"]["phase"] == "halted" and d["rollout"]["halted"] == reason, d["rollout"]
    for name in ("kv-1", "kv-2"):
        assert insts[name]["main_pid"] == before[name]["main_pid"]
        assert insts[name]["running_version"] == v0 and insts[name]["outdated"]
    st = dprctl(node, "rollout", "status", "kv")
    assert st.returncode == 0 and "halted: kv-0 was not ready" in st.stdout, st.stdout
    # resume: kv-0 has a new deadline (not halted at once), then halts again
    ok(call(node, "rollout", {"name": "kv", "action": "resume"}))
    _, d = kv(node)
    assert d["rollout"]["phase"] == "progressing" and d["rollout"]["halted"] is None, \
        d["rollout"]
    wait_for(lambda: kv(node)[1]["rollout"]["phase"] == "halted", what="halted again")
    assert kv(node)[0]["kv-1"]["main_pid"] == before["kv-1"]["main_pid"]
    out = dprctl(node, "rollout", "undo", "kv", "--wait", "--timeout", "120")
    assert out.returncode == 0, (out.stdout, out.stderr)
    insts = settled(node, v0)
    assert insts, kv(node)
    assert insts["kv-1"]["main_pid"] == before["kv-1"]["main_pid"]


def test_bad_requests(node):
    e = call(node, "rollout", {"name": "kv", "action": "explode"})["error"]
    assert e["code"] == "bad_request" and "status, pause, resume or undo" in e["message"]
    e = call(node, "rollout", {"name": "nope", "action": "status"})["error"]
    assert e["code"] == "not_found"
    bad = spec_of(max_unavailable=0, partition=-1, paused="yes")
    e = call(node, "apply", {"spec": bad})["error"]
    assert e["code"] == "spec_invalid"
    paths = sorted(p["path"] for p in e["details"])
    assert paths == ["cachestores[0].rollout.max_unavailable",
                     "cachestores[0].rollout.partition", "cachestores[0].rollout.paused"]


def checkpoint_modes(n):
    """dpr_checkpoint_mode of each instance (INFO dpr on its endpoint)."""
    insts, _ = kv(n)
    out = {}
    for name, i in insts.items():
        host, port = i["endpoint"].rsplit(":", 1)
        info = n.run("redis-cli -h %s -p %s INFO dpr" % (host, port), check=False).stdout
        out[name] = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                          if line.startswith("dpr_checkpoint_mode:")), None)
    return out


def test_checkpoint_mode_rolls_out(node):
    """The spec's checkpoint_mode reaches every instance's dpr-kv through a
    roll-out (its instance file); leaving it out again is dpr-kv's default,
    log."""
    v = at_rest(node)
    assert set(checkpoint_modes(node).values()) == {"log"}
    spec = spec_of(version=v)
    spec["cachestores"][0]["checkpoint_mode"] = "full"
    r = ok(call(node, "apply", {"spec": spec}))
    assert r["plan"]["updated"] == ["kv-0", "kv-1", "kv-2"], r
    wait_for(lambda: settled(node, v) and kv(node)[1]["checkpoint_mode"] == "full",
             timeout=120, what="kv rolled out to full")
    assert checkpoint_modes(node) == {"kv-0": "full", "kv-1": "full", "kv-2": "full"}
    assert "\nDPR_KV_CHECKPOINT_MODE=full\n" in node.run("cat /run/dpr/instances/kv-2.env").stdout
    # the same spec again: nothing to do
    assert ok(call(node, "apply", {"spec": spec}))["plan"]["updated"] == []
    spec["cachestores"][0]["checkpoint_mode"] = "fast"
    e = call(node, "apply", {"spec": spec})["error"]
    assert e["code"] == "spec_invalid"
    assert [p["path"] for p in e["details"]] == ["cachestores[0].checkpoint_mode"]
    # absent: dpr-kv's default again (an update too)
    r = apply(node, version=v)
    assert r["plan"]["updated"] == ["kv-0", "kv-1", "kv-2"], r
    wait_for(lambda: settled(node, v) and "checkpoint_mode" not in kv(node)[1],
             timeout=120, what="kv rolled back to the default mode")
    assert set(checkpoint_modes(node).values()) == {"log"}
    assert "CHECKPOINT_MODE" not in node.run("cat /run/dpr/instances/kv-2.env").stdout


def impls_running(n, name):
    """dpr_impl of each instance of deployment name (INFO dpr), and the
    status' deployment."""
    s = ok(call(n, "status", {"name": name}))
    d = s["deployments"][0]
    out = {}
    for i in d["instances"]:
        host, port = i["endpoint"].rsplit(":", 1)
        info = n.run("redis-cli -h %s -p %s INFO dpr" % (host, port), check=False).stdout
        out[i["name"]] = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                               if line.startswith("dpr_impl:")), None)
    return out, d


def test_impl_switch_under_a_session(node):
    """A 2-shard deployment switches impl dpr-kv -> dpr-redis -> dpr-kv, each
    a roll-out of planned restarts on the instances' own state directories
    (dpr-redis recovers from dpr-kv's checkpoints and back): the session
    writing meanwhile sees no RollbackError and the same world-line, every
    operation reads back, and the roll-outs reach done."""
    def spec(impl):
        return {"name": "demo", "cachestores": [{"name": "sw", "impl": impl, "version": "1",
                                                 "shards": 2,
                                                 "rollout": {"min_ready_seconds": 2}}]}
    out = dprctl(node, "apply", "-f", "-", "--wait", "--timeout", "150",
                 input=json.dumps(spec("dpr-kv")))
    assert out.returncode == 0, out.stderr
    assert impls_running(node, "sw")[0] == {"sw-0": "dpr-kv", "sw-1": "dpr-kv"}
    with a_session_writing(node, "sw"):
        for impl in ("dpr-redis", "dpr-kv"):
            out = dprctl(node, "apply", "-f", "-", "--wait", "--timeout", "150",
                         input=json.dumps(spec(impl)))
            if out.returncode != 0:
                print(node.run("journalctl --no-pager -o short-monotonic | tail -80").stdout)
            assert out.returncode == 0, out.stderr
            running, d = impls_running(node, "sw")
            assert running == {"sw-0": impl, "sw-1": impl}, running
            assert d["impl"] == impl and d["rollout"]["phase"] == "done", d
            time.sleep(1)
    log = node.run("journalctl --no-pager -o cat -u dpr-cachestore@sw-0.service").stdout
    assert "the deployment switched from dpr-kv" in log
    assert "the deployment switched from dpr-redis" in log
