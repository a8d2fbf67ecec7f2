"""dpr-agent against a real systemd: one node of tests/cluster/ (systemd as
PID 1 in its own namespaces), with dpr-agent, dpr-kv, the units and a
configuration installed into it. Checks what only systemd can show: units
started, adopted, restarted by systemd, rolled, stopped and cleaned up, all
followed through D-Bus.

Needs root and what tests/cluster/cluster.py needs (skipped otherwise).
Skipped for sanitizer builds (LeakSanitizer cannot ptrace inside the
hardened unit).
"""
import functools
import json
import os
import re
import shutil
import sys

import pytest

import dprtest
from dprtest import BUILD, BUILD_DIR, ROOT

sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
from test_health import EVENTS  # noqa: E402 (the events follower run inside a node)

# systemd and D-Bus inside a node are slower than a process on the host
wait_for = functools.partial(dprtest.wait_for, timeout=30.0, interval=0.2)

CLIENT = r'''
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/run/dpr/agent.sock")
try:
    s.sendall(sys.argv[1].encode() + b"\n")
except BrokenPipeError:
    pass  # refused at accept: its error line is there to read
f = s.makefile("rb")
print(f.readline().decode().strip())
'''

def stage(dest):
    """What `make install` puts into a node (the agent, dpr-kv, the units, the sysusers.d file), from BUILD_DIR."""
    def put(src, rel, mode):
        path = os.path.join(dest, rel.lstrip("/"))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(src, "rb") as f:
            data = f.read()
        with open(path, "wb") as f:
            f.write(data)
        os.chmod(path, mode)
    put(os.path.join(BUILD_DIR, "dpr-agent"), "/usr/local/bin/dpr-agent", 0o755)
    put(os.path.join(BUILD_DIR, "dpr-kv"), "/usr/local/bin/dpr-kv", 0o755)
    for unit in ("dpr-agent.service", "dpr-cachestore@.service"):
        put(os.path.join(ROOT, "units", unit), "/usr/local/lib/systemd/system/" + unit, 0o644)
    put(os.path.join(ROOT, "conf", "agent.conf"), "/etc/dpr/agent.conf", 0o644)
    # the dpr group and the dpr-cachestore user the instances run as
    # (provision.sh runs systemd-sysusers on it, as the package's postinst does)
    put(os.path.join(ROOT, "conf", "sysusers.conf"), "/usr/local/lib/sysusers.d/dpr-cluster.conf",
        0o644)
    for name, text in (("dpr-test-ctl", CLIENT), ("dpr-test-events", EVENTS)):
        path = os.path.join(dest, "usr/local/libexec", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)


def boot(tmp_path_factory, prepare=None):
    """A node with dpr-agent active (a generator: the node, then teardown);
    prepare(stage_dir) may change what is installed first. Skips the test
    where real systemd nodes cannot run."""
    if "asan" in BUILD:
        pytest.skip("sanitizer build: not run under systemd")
    if os.geteuid() != 0:
        pytest.skip("real systemd nodes need root")
    for binary in ("dpr-agent", "dpr-kv"):
        if not os.path.exists(os.path.join(BUILD_DIR, binary)):
            pytest.skip("%s is not built" % binary)
    import cluster as harness
    try:
        harness.preflight()
    except harness.HarnessError as e:
        pytest.skip(str(e))
    dest = str(tmp_path_factory.mktemp("stage"))
    stage(dest)
    if prepare is not None:
        prepare(dest)
    c = harness.Cluster(1, stage=dest, upper="tmpfs")
    try:
        n = c[0]
        wait_for(lambda: n.run("systemctl is-active dpr-agent", check=False).stdout.strip()
                 == "active", what="dpr-agent active")
        yield n
    finally:
        c.teardown()
        shutil.rmtree(dest, ignore_errors=True)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    yield from boot(tmp_path_factory)


def call(n, op, args=None, user=None):
    req = {"v": 1, "op": op, "args": args or {}}
    cmd = "python3 /usr/local/libexec/dpr-test-ctl '%s'" % json.dumps(req)
    if user:
        cmd = "setpriv --reuid=%s --regid=nogroup --clear-groups %s" % (user, cmd)
    out = n.run(cmd, check=False)
    assert out.stdout.strip(), out.stderr
    return json.loads(out.stdout)


def ok(reply):
    assert reply["ok"] is True, reply
    return reply["result"]


def instances(n):
    s = ok(call(n, "status"))
    return {i["name"]: i for d in s["deployments"] for i in d["instances"]}, s


def all_ready(n, count):
    """The instances, once count of them run, ready, and each deployment's
    shards have their layout (no resize going on)."""
    insts, s = instances(n)
    if len(insts) == count and all(i["ready"] for i in insts.values()) and \
            not s["retiring"] and all(d["layout"]["epoch"] >= 1 and not d["layout"]["resize"]
                                      for d in s["deployments"]):
        return insts
    return None


def spec(*deployments):
    return {"spec": {"name": "demo", "cachestores": list(deployments)}}


def kv(name, shards=3, **kw):
    d = {"name": name, "version": "1", "shards": shards}
    d.update(kw)
    return d


def main_pid(n, unit):
    return int(n.run("systemctl show -p MainPID --value " + unit).stdout.strip())


def test_apply_starts_units_and_status_is_ready(node):
    r = ok(call(node, "apply", spec(kv("kv"), kv("web"))))
    assert len(r["plan"]["created"]) == 6 and "warnings" not in r
    insts = wait_for(lambda: all_ready(node, 6), what="6 ready instances")
    for name, i in insts.items():
        assert node.is_active("dpr-cachestore@%s.service" % name)
        assert i["main_pid"] == main_pid(node, i["unit"])
        assert i["restarts"] == 0 and i["world_line"] >= 1 and i["last_error"] is None
    # the cache-stores serve
    ep = insts["kv-1"]["endpoint"]
    host, port = ep.rsplit(":", 1)
    # (-c: a key of another shard is redirected, MOVED)
    out = node.run("redis-cli -c -h %s -p %s SET a 1 && redis-cli -c -h %s -p %s GET a"
                   % (host, port, host, port)).stdout.split()
    assert out == ["OK", "1"]
    assert ok(call(node, "status"))["systemd"] == {"connected": True, "error": None}


def test_apply_twice_is_unchanged(node):
    r = ok(call(node, "apply", spec(kv("kv"), kv("web"))))
    assert r["plan"]["created"] == [] and len(r["plan"]["unchanged"]) == 6


def world_lines(n):
    """Deployment -> the world-line of its DPR domain."""
    return {d["name"]: d["world_line"] for d in ok(call(n, "status"))["deployments"]}


def test_kill_9_is_restarted_by_systemd(node):
    insts = wait_for(lambda: all_ready(node, 6), what="ready")
    wl = world_lines(node)
    node.run("kill -9 %d" % insts["kv-0"]["main_pid"])

    def restarted():
        i = instances(node)[0]["kv-0"]
        return i if i["restarts"] == 1 and i["ready"] else None
    i = wait_for(restarted, what="kv-0 restarted by systemd")
    assert i["main_pid"] != insts["kv-0"]["main_pid"]
    assert "signal" in i["last_error"]
    # kv's world-line moved on; web, a domain of its own, kept its own
    after = world_lines(node)
    assert after["kv"] > wl["kv"] and after["web"] == wl["web"]


def test_instances_register_with_their_finder_tokens(node):
    """Issue 8: the instance files hold each instance's finder token and are
    mode 0600 (systemd reads them as root); with it, the kill -9 above was
    accepted as a crash restart; without it, anyone's DPR.WORKER.ADD of a
    running instance is refused and nothing rolls back."""
    insts = wait_for(lambda: all_ready(node, 6), what="ready")
    assert node.run("stat -c %a /run/dpr/instances/kv-0.env").stdout.strip() == "600"
    env = node.run("cat /run/dpr/instances/kv-0.env").stdout
    assert re.search(r"^DPR_KV_FINDER_TOKEN=[0-9a-f]{32}$", env, re.M), env
    s = ok(call(node, "status"))
    host, port = s["finder"]["address"].rsplit(":", 1)
    assert "DPR_KV_DOMAIN=kv\n" in env and "DPR_DOMAIN=kv\n" in env, env
    out = node.run("redis-cli -h %s -p %s DPR.WORKER.ADD kv %d"
                   % (host, port, insts["kv-0"]["worker"]), check=False).stdout
    assert "is registered by its owner" in out, out
    after = ok(call(node, "status"))
    assert [d["world_line"] for d in after["deployments"]] == \
        [d["world_line"] for d in s["deployments"]]
    assert instances(node)[0]["kv-0"]["main_pid"] == insts["kv-0"]["main_pid"]


def test_agent_restart_and_kill_9_adopt_running_units(node):
    insts = wait_for(lambda: all_ready(node, 6), what="ready")
    pids = {name: i["main_pid"] for name, i in insts.items()}
    node.systemctl("restart", "dpr-agent")
    after = wait_for(lambda: all_ready(node, 6), what="ready after restart")
    assert {name: i["main_pid"] for name, i in after.items()} == pids
    node.run("kill -9 %d" % main_pid(node, "dpr-agent.service"))
    wait_for(lambda: node.run("systemctl is-active dpr-agent", check=False).stdout.strip()
             == "active" and main_pid(node, "dpr-agent.service") != 0, what="agent back")
    after = wait_for(lambda: all_ready(node, 6), what="ready after kill -9")
    assert {name: i["main_pid"] for name, i in after.items()} == pids
    for name, i in after.items():
        assert node.is_active(i["unit"])


def test_change_converges(node):
    before = wait_for(lambda: all_ready(node, 6), what="ready")
    r = ok(call(node, "apply", spec(kv("kv", checkpoint_interval_ms=50), kv("web", shards=2))))
    assert r["plan"]["updated"] == ["kv-0", "kv-1", "kv-2"]
    assert r["plan"]["deleted"] == ["web-2"]
    after = wait_for(lambda: all_ready(node, 5), what="converged")
    for name in ("kv-0", "kv-1", "kv-2"):
        assert after[name]["main_pid"] != before[name]["main_pid"]
    assert after["web-0"]["main_pid"] == before["web-0"]["main_pid"]
    env = node.run("cat /run/dpr/instances/kv-0.env").stdout
    assert "DPR_KV_CHECKPOINT_INTERVAL_MS=50" in env
    assert node.run("systemctl is-active dpr-cachestore@web-2", check=False).stdout.strip() \
        != "active"
    assert node.run("test -e /var/lib/dpr/web-2", check=False).returncode != 0
    assert node.run("test -e /run/dpr/instances/web-2.env", check=False).returncode != 0


def test_delete_stops_and_removes(node):
    r = ok(call(node, "delete", {"name": "web"}))
    assert r["plan"]["deleted"] == ["web-0", "web-1"]
    wait_for(lambda: all_ready(node, 3), what="web gone")
    for name in ("web-0", "web-1"):
        assert node.run("systemctl is-active dpr-cachestore@%s" % name,
                        check=False).stdout.strip() != "active"
        assert node.run("test -e /var/lib/dpr/%s" % name, check=False).returncode != 0
    assert call(node, "delete", {"name": "web"})["error"]["code"] == "not_found"


def test_update_survives_an_agent_crash_mid_rollout(node):
    before = wait_for(lambda: all_ready(node, 3), what="ready")
    ok(call(node, "apply", spec(kv("kv", version="2", checkpoint_interval_ms=50))))
    node.run("kill -9 %d" % main_pid(node, "dpr-agent.service"))
    wait_for(lambda: node.run("systemctl is-active dpr-agent", check=False).stdout.strip()
             == "active", what="agent back")

    def rolled():
        insts = all_ready(node, 3)
        return insts if insts and all(insts[n]["main_pid"] != before[n]["main_pid"]
                                      for n in before) else None
    wait_for(rolled, what="every kv instance restarted with version 2")
    for name in before:
        assert "DPR_VERSION=2" in node.run("cat /run/dpr/instances/%s.env" % name).stdout


def test_others_are_refused(node):
    r = call(node, "status", user="nobody")
    assert r["ok"] is False and r["error"]["code"] == "permission_denied"


def test_journal_has_structured_fields(node):
    out = node.run("journalctl --no-pager -o json SYSLOG_IDENTIFIER=dpr-agent DPR_INSTANCE=kv-0",
                   check=False).stdout
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert entries and all(e["DPR_INSTANCE"] == "kv-0" for e in entries)
    assert entries[0]["DPR_CLUSTER"] == "demo"


def test_invalid_spec_changes_nothing(node):
    before = ok(call(node, "status"))
    e = call(node, "apply", spec(kv("kv", shards=0), kv("Bad", impl="nope")))["error"]
    assert e["code"] == "spec_invalid" and len(e["details"]) == 3
    after = ok(call(node, "status"))
    assert after["generation"] == before["generation"]
    assert node.run("systemctl list-units --no-legend 'dpr-cachestore@*'").stdout.count(
        "running") == 3


def follow_events(n):
    """Starts following the agent's events inside the node; returns a
    function that stops and gives the events read."""
    n.run("rm -f /tmp/stop-events /tmp/events-ready")
    p = n.spawn(["python3", "/usr/local/libexec/dpr-test-events"])
    wait_for(lambda: n.run("test -e /tmp/events-ready", check=False).returncode == 0,
             what="the events stream")

    def stop():
        n.run("touch /tmp/stop-events")
        out, _ = p.communicate(timeout=60)
        lines = [json.loads(line) for line in out.splitlines() if line.strip()]
        assert lines and lines[0]["ok"] is True, out
        return [x["event"] for x in lines[1:]]
    return stop


def test_each_unit_transition_is_one_event(node):
    """A roll-out restarts every instance: each state it passes through is
    one instance event (systemd announces a change on the Service interface,
    MainPID, and on the Unit interface, the states: one event, not one per
    signal with the PID of the one before), and the events come in order."""
    ok(call(node, "apply", spec(kv("kv", version="2", checkpoint_interval_ms=50))))
    before = wait_for(lambda: all_ready(node, 3), what="ready")
    stop = follow_events(node)
    ok(call(node, "apply", spec(kv("kv", version="3", checkpoint_interval_ms=50))))

    def rolled():
        insts = all_ready(node, 3)
        return insts if insts and all(insts[n]["main_pid"] != before[n]["main_pid"] and
                                      not insts[n]["outdated"] for n in before) else None
    wait_for(rolled, what="every kv instance restarted with version 3")
    events = stop()
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs), seqs
    # the apply comes before what it causes (the roll-out, the restarts)
    assert events[0]["type"] == "apply", [(e["seq"], e["type"]) for e in events]
    for name in before:
        mine = [e for e in events if e["type"] == "instance" and e["name"] == name]
        states = ["%s/%s" % (e["active_state"], e["sub_state"]) for e in mine]
        assert "deactivating/stop-sigterm" in states or "inactive/dead" in states, (name,
                                                                                    states)
        assert states[-1] == "active/running", (name, states)
        # no state twice in a row (the second with or without the PID)
        twice = [(a, b) for a, b in zip(mine, mine[1:])
                 if (a["active_state"], a["sub_state"]) == (b["active_state"], b["sub_state"])
                 and a.get("last_error") == b.get("last_error")
                 and a["restarts"] == b["restarts"] and a["ready"] == b["ready"]]
        assert not twice, (name, [(e["seq"], "%s/%s" % (e["active_state"], e["sub_state"]),
                                   e["main_pid"], e["restarts"], e["ready"], e["health"])
                                  for e in mine])
        # a stopped process has no PID
        assert all(e["main_pid"] is None for e in mine if e["sub_state"] == "dead"), mine


def test_delete_is_logged_before_what_it_does(node):
    ok(call(node, "apply", spec(kv("kv", version="3", checkpoint_interval_ms=50),
                                kv("gone", shards=1))))
    wait_for(lambda: all_ready(node, 4), what="gone-0 ready")
    cursor = node.run("journalctl -n 0 --show-cursor -q", check=False).stdout
    cursor = cursor.strip().rsplit("cursor: ", 1)[-1]
    ok(call(node, "delete", {"name": "gone"}))
    wait_for(lambda: all_ready(node, 3), what="gone deleted")
    out = node.run(["journalctl", "--no-pager", "-o", "cat", "--after-cursor", cursor,
                    "SYSLOG_IDENTIFIER=dpr-agent"]).stdout.splitlines()
    first = next(i for i, line in enumerate(out) if "gone" in line)
    assert out[first].startswith("delete 'gone' requested by "), out
    # then what it does, then the steps
    assert out[first + 1] == "delete: generation %d (0 created, 0 updated, 1 deleted)" % (
        ok(call(node, "status"))["generation"]), out
    assert out[first + 2].startswith("gone-0: deleted (generation "), out
