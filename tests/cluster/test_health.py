"""Issue 8, items 4-7, on a real systemd node: what the agent reports about
its instances' health and memory (docs/operations.md, "Health", "Memory",
"The finder's state was lost").

One node (tests/cluster/cluster.py) with dpr-agent, dpr-kv and the units of
the build DPR_BUILD installed. The tests run in order on the same node:

1. A running instance's sd_notify STATUS= (systemd's StatusText) is in
   status as status_text, with health "ok"; maxmemory in the spec reaches
   the instance file (DPR_KV_MAXMEMORY) and the unit's MemoryMax (systemctl
   show), and goes away again (MemoryMax=infinity). Whether the kernel
   enforces it is not tested: test nodes may lack the memory controller.
2. The finder's state lost under running instances: the agent says so
   (status finder.state "lost", its STATUS=, the journal with MESSAGE_ID,
   the instances' health "finder-lost-worker"), holds a rolling update
   (restarted now, they could not recover), and carries on once the state is
   put back.
3. A shard whose checkpoints are damaged and that is killed: it cannot
   recover; status shows it failed with the damage as last_error, the agent
   logged it once (MESSAGE_ID), and the other shards keep serving on the
   same world-lines (each deployment's own).

Needs root (skipped otherwise); not run for sanitizer builds.
"""
import functools
import json
import os
import shutil
import sys
import time

import pytest

import dprtest
from dprtest import BUILD, BUILD_DIR, ROOT

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# systemd and D-Bus inside a node are slower than a process on the host;
# recovery loops take seconds (RestartSec, StartLimitBurst)
wait_for = functools.partial(dprtest.wait_for, timeout=90.0, interval=0.3)

MSGID_INSTANCE_FAILED = "d0be24b316d348e6b176f55f51bc0935"      # common/msgid.h
MSGID_FINDER_STATE_LOST = "0ec2aec8335241b38901ac3574ae27cd"

CLIENT = r'''
import json, socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect("/run/dpr/agent.sock")
s.sendall(sys.argv[1].encode() + b"\n")
print(s.makefile("rb").readline().decode().strip())
'''

# follows the events stream (creates /tmp/events-ready once the agent
# answered) until /tmp/stop-events exists (at most 300 s), then prints what
# it read
EVENTS = r'''
import os, select, socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.connect("/run/dpr/agent.sock")
s.sendall(b'{"v": 1, "op": "events"}\n')
buf, end = b"", time.monotonic() + 300
while not os.path.exists("/tmp/stop-events") and time.monotonic() < end:
    if select.select([s], [], [], 0.2)[0]:
        data = s.recv(65536)
        if not data:
            break
        buf += data
        if b"\n" in buf and not os.path.exists("/tmp/events-ready"):
            open("/tmp/events-ready", "w").close()
sys.stdout.write(buf.decode())
'''


def stage(dest):
    """The agent, dpr-kv, the units, the sysusers.d file and the example
    configuration of BUILD_DIR, laid out as `make install` does, plus a
    control client."""
    files = [(os.path.join(BUILD_DIR, "dpr-agent"), "usr/local/bin/dpr-agent", 0o755),
             (os.path.join(BUILD_DIR, "dpr-kv"), "usr/local/bin/dpr-kv", 0o755),
             (os.path.join(ROOT, "conf", "agent.conf"), "etc/dpr/agent.conf", 0o644),
             # the dpr-cachestore user (provision.sh runs systemd-sysusers on it)
             (os.path.join(ROOT, "conf", "sysusers.conf"),
              "usr/local/lib/sysusers.d/dpr-cluster.conf", 0o644)]
    for unit in ("dpr-agent.service", "dpr-cachestore@.service"):
        files.append((os.path.join(ROOT, "units", unit), "usr/local/lib/systemd/system/" + unit,
                      0o644))
    for src, rel, mode in files:
        path = os.path.join(dest, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        shutil.copyfile(src, path)
        os.chmod(path, mode)
    conf = os.path.join(dest, "etc/dpr/agent.conf")
    with open(conf) as f:
        text = f.read()
    assert "\ncachestores = {\n" in text
    with open(conf, "w") as f:
        # the instances' metrics endpoints, found through the agent's /sd
        f.write(text.replace("\ncachestores = {\n", "\ncachestores = {\n  metrics_port_min = %d;"
                             " metrics_port_max = %d;\n" % KV_METRICS_PORTS, 1))
        f.write('metrics = { address = "%s"; };\n' % METRICS)
    for name, text in (("dpr-test-ctl", CLIENT), ("dpr-test-events", EVENTS)):
        path = os.path.join(dest, "usr/local/libexec", name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    if "asan" in BUILD:
        pytest.skip("sanitizer build: not run under systemd")
    if os.geteuid() != 0:
        pytest.skip("real systemd nodes need root")
    for binary in ("dpr-agent", "dpr-kv"):
        if not os.path.exists(os.path.join(BUILD_DIR, binary)):
            pytest.skip("%s is not built" % binary)
    import cluster as harness
    harness.preflight()
    dest = str(tmp_path_factory.mktemp("stage"))
    stage(dest)
    c = harness.Cluster(1, stage=dest, upper="tmpfs")
    try:
        n = c[0]
        wait_for(lambda: n.is_active("dpr-agent") == "active", what="dpr-agent active")
        yield n
    finally:
        c.teardown()
        shutil.rmtree(dest, ignore_errors=True)


def call(n, op, args=None):
    req = json.dumps({"v": 1, "op": op, "args": args or {}})
    out = n.run(["python3", "/usr/local/libexec/dpr-test-ctl", req], check=False)
    assert out.stdout.strip(), out.stderr
    reply = json.loads(out.stdout)
    assert reply["ok"] is True, reply
    return reply["result"]


def status(n):
    s = call(n, "status")
    return {i["name"]: i for d in s["deployments"] for i in d["instances"]}, s


def apply(n, *deployments):
    return call(n, "apply", {"spec": {"name": "demo", "cachestores": list(deployments)}})


def kv(name, shards, **kw):
    d = {"name": name, "version": "1", "shards": shards, "checkpoint_interval_ms": 50}
    d.update(kw)
    return d


def all_ready(n, count):
    """The instances, once count of them run, ready, and each deployment's
    shards have their layout (they serve keys)."""
    insts, s = status(n)
    if len(insts) == count and all(i["ready"] for i in insts.values()) and \
            not s["retiring"] and all(d["layout"]["epoch"] >= 1 for d in s["deployments"]):
        return insts
    return None


def owned(prefix, name, nshards=3):
    """A key instance `name` (kv-<shard>) owns under its layout."""
    if dprtest.PYDIR not in sys.path:
        sys.path.insert(0, dprtest.PYDIR)
    from dpr.route import shard_of
    shard = int(name.rsplit("-", 1)[1])
    return next(k for k in ("%s%s-%d" % (prefix, name, i) for i in range(1000))
                if shard_of(k, nshards) == shard)


def show(n, unit, prop):
    return n.run(["systemctl", "show", "-p", prop, "--value", unit]).stdout.strip()


def redis(n, endpoint, *args):
    host, port = endpoint.rsplit(":", 1)
    return n.run(["redis-cli", "-h", host, "-p", port] + [str(a) for a in args]).stdout.strip()


def journal(n, *matches):
    out = n.run(["journalctl", "--no-pager", "-o", "json"] + list(matches), check=False).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# the agent's Prometheus endpoint on the node (docs/operations.md, "Metrics")
METRICS = "127.0.0.1:9464"


# the instances' metrics ports (cachestores.metrics_port_min/max)
KV_METRICS_PORTS = (7800, 7899)


def fetch(n, url):
    """The body of GET url, fetched on the node."""
    return n.run(["python3", "-c", "import sys, urllib.request; sys.stdout.write(urllib.request."
                  "urlopen('%s', timeout=10).read().decode())" % url]).stdout


def metrics(n, addr=METRICS):
    """A metrics page (the agent's by default), fetched on the node, parsed
    here (python3-prometheus-client)."""
    import promscrape
    return promscrape.Scrape(fetch(n, "http://%s/metrics" % addr))


def memory_max(maxmemory, max_clients=10000):
    """agent_memory_max_of (agent/src/spec.h)."""
    return 2 * maxmemory + maxmemory // 2 + (64 << 20) + max_clients * (32 << 10)


SPEC = (kv("kv", 3), kv("mem", 1, maxmemory="64mb"))


def test_status_text_health_and_memory_max(node):
    apply(node, *SPEC)
    wait_for(lambda: all_ready(node, 4), what="4 ready instances")
    m = metrics(node)
    assert m.value("dpr_agent_instances") == 4 and m.value("dpr_agent_instances_ready") == 4
    assert m.value("dpr_agent_instances_health", health="ok") == 4
    assert m.value("dpr_agent_instance_ready", instance="kv-0", deployment="kv") == 1
    assert m.value("dpr_finder_workers", domain="kv") == 3
    # every instance's dpr-kv, started by systemd from its instance file,
    # serves its metrics where the agent's /sd says
    groups = json.loads(fetch(node, "http://%s/sd" % METRICS))
    targets = {g["labels"]["instance"]: g["targets"][0] for g in groups
               if g["labels"]["component"] == "dpr-kv"}
    assert sorted(targets) == ["kv-0", "kv-1", "kv-2", "mem-0"]
    for name, target in targets.items():
        assert KV_METRICS_PORTS[0] <= int(target.rsplit(":", 1)[1]) <= KV_METRICS_PORTS[1]
        page = metrics(node, target)
        assert page.families["dpr_kv_info"].samples[0].labels["instance"] == name
        assert page.value("dpr_kv_finder_connected") == 1

    def serving():
        insts = all_ready(node, 4)
        return insts if insts and all((i["status_text"] or "").startswith("serving on ")
                                      for i in insts.values()) else None
    insts = wait_for(serving, what="every instance's StatusText in status")
    for name, i in insts.items():
        assert i["health"] == "ok" and i["last_error"] is None, i
        # what status shows is systemd's StatusText of that unit (it moves on
        # every second: the same kind of line, for the same address)
        text = show(node, i["unit"], "StatusText")
        for t in (text, i["status_text"]):
            assert t.startswith("serving on ") and i["endpoint"] in t, (text, i)
    # maxmemory: the instance file and the unit's MemoryMax
    env = node.run("cat /run/dpr/instances/mem-0.env").stdout
    assert "\nDPR_KV_MAXMEMORY=%d\n" % (64 << 20) in env
    assert "\nDPR_KV_MAXMEMORY=0\n" in node.run("cat /run/dpr/instances/kv-0.env").stdout
    want = memory_max(64 << 20)
    assert show(node, "dpr-cachestore@mem-0.service", "MemoryMax") == str(want)
    assert insts["mem-0"]["memory_max"] == want
    assert show(node, "dpr-cachestore@kv-0.service", "MemoryMax") == "infinity"
    assert insts["kv-0"]["memory_max"] is None
    # a runtime property (SetUnitProperties), not a file of ours
    assert node.run("ls /run/systemd/system.control/dpr-cachestore@mem-0.service.d/",
                    check=False).returncode == 0
    mem = {d["name"]: d for d in call(node, "status")["deployments"]}["mem"]
    assert mem["maxmemory"] == 64 << 20

    # no maxmemory any more: an update; the limit goes with it
    r = apply(node, kv("kv", 3), kv("mem", 1))
    assert r["plan"]["updated"] == ["mem-0"] and r["plan"]["unchanged"] == ["kv-0", "kv-1",
                                                                            "kv-2"]

    def unlimited():
        insts = all_ready(node, 4)
        return insts if insts and insts["mem-0"]["main_pid"] != \
            insts_before["mem-0"]["main_pid"] else None
    insts_before = insts
    insts = wait_for(unlimited, what="mem-0 restarted without maxmemory")
    assert show(node, "dpr-cachestore@mem-0.service", "MemoryMax") == "infinity"
    assert insts["mem-0"]["memory_max"] is None
    assert "\nDPR_KV_MAXMEMORY=0\n" in node.run("cat /run/dpr/instances/mem-0.env").stdout


def test_finder_state_lost_is_loud_and_holds_restarts(node):
    insts = wait_for(lambda: all_ready(node, 4), what="ready")
    # data in every kv shard, committed: the finder must know these workers
    for name in ("kv-0", "kv-1", "kv-2"):
        assert redis(node, insts[name]["endpoint"], "SET", owned("key-", name), name) == "OK"
    wait_for(lambda: all((status(node)[0][n]["cut"] or 0) > 0 for n in ("kv-0", "kv-1", "kv-2")),
             what="kv shards in the cut")
    pids = {name: i["main_pid"] for name, i in insts.items()}

    node.systemctl("stop", "dpr-agent")
    node.run("cp -a /var/lib/dpr/finder /var/lib/dpr/finder.saved && rm -rf /var/lib/dpr/finder")
    node.systemctl("start", "dpr-agent")
    _, s = status(node)
    assert s["finder"]["state"] == "lost", s["finder"]
    assert set(s["finder"]["lost"]) >= {"kv-0", "kv-1", "kv-2"}, s["finder"]
    assert "STATE LOST" in show(node, "dpr-agent.service", "StatusText")
    entries = journal(node, "MESSAGE_ID=" + MSGID_FINDER_STATE_LOST, "SYSLOG_IDENTIFIER=dpr-agent")
    assert entries and "its state was lost" in entries[-1]["MESSAGE"], entries

    # the running shards notice too (their STATUS=): commits stopped
    def lost_workers():
        insts = status(node)[0]
        return insts if all(insts[n]["health"] == "finder-lost-worker"
                            for n in ("kv-0", "kv-1", "kv-2")) else None
    wait_for(lost_workers, what="kv shards report finder-lost-worker")

    # an update now would restart them into a failed recovery: it waits
    r = apply(node, kv("kv", 3, version="2"), kv("mem", 1))
    assert r["plan"]["updated"] == ["kv-0", "kv-1", "kv-2"]
    time.sleep(5)  # a negative check: nothing may restart meanwhile
    insts = status(node)[0]
    assert {n: insts[n]["main_pid"] for n in pids} == pids

    # way out: the state put back; the agent says so, the roll-out goes on
    node.systemctl("stop", "dpr-agent")
    node.run("rm -rf /var/lib/dpr/finder && mv /var/lib/dpr/finder.saved /var/lib/dpr/finder")
    node.systemctl("start", "dpr-agent")
    assert call(node, "status")["finder"]["state"] == "ok"

    def rolled():
        insts = all_ready(node, 4)
        return insts if insts and all(insts[n]["main_pid"] != pids[n]
                                      for n in ("kv-0", "kv-1", "kv-2")) else None
    insts = wait_for(rolled, what="the held update rolled out")
    assert "DPR_VERSION=2" in node.run("cat /run/dpr/instances/kv-1.env").stdout
    assert insts["mem-0"]["main_pid"] == pids["mem-0"]
    wait_for(lambda: all(i["health"] == "ok" for i in status(node)[0].values()),
             what="every instance healthy")
    assert "STATE LOST" not in show(node, "dpr-agent.service", "StatusText")


def test_damaged_checkpoint_is_reported_and_others_go_on(node):
    insts = wait_for(lambda: all_ready(node, 4), what="ready")
    for name in ("kv-0", "kv-1", "kv-2"):
        assert redis(node, insts[name]["endpoint"], "SET", owned("after-", name), "x") == "OK"
    wait_for(lambda: all((status(node)[0][n]["cut"] or 0) > 0 for n in ("kv-0", "kv-1", "kv-2")),
             what="kv shards in the cut")
    # kv-1 idle: its newest checkpoint committed, no file comes or goes any
    # more (a new checkpoint would let the damaged ones be collected)
    wait_for(lambda: status(node)[0]["kv-1"]["cut"] == status(node)[0]["kv-1"]["durable_version"],
             what="kv-1's newest checkpoint committed")

    def stable_listing():
        a = node.run("ls /var/lib/dpr/kv-1").stdout.split()
        time.sleep(1.5)
        b = node.run("ls /var/lib/dpr/kv-1").stdout.split()
        return a if a == b and any(f.endswith(".kv") for f in a) else None
    files = wait_for(stable_listing, what="kv-1's checkpoint files settled")
    ckpts = [f for f in files if f.startswith("ckpt-") and f.endswith(".kv")]
    _, s = status(node)
    world_lines = {d["name"]: d["world_line"] for d in s["deployments"]}
    # one byte of the first record of every checkpoint: each fails its CRC
    for f in ckpts:
        node.run(["python3", "-c", "import sys; f = open(sys.argv[1], 'r+b'); f.seek(64); "
                  "b = f.read(1); f.seek(64); f.write(bytes([b[0] ^ 0xff]))",
                  "/var/lib/dpr/kv-1/" + f])
    node.run("rm -f /tmp/stop-events /tmp/events-ready")
    events = node.spawn(["python3", "/usr/local/libexec/dpr-test-events"])
    wait_for(lambda: node.run("test -e /tmp/events-ready", check=False).returncode == 0,
             what="the events stream")
    node.run("kill -9 %d" % insts["kv-1"]["main_pid"])

    def failed():
        i = status(node)[0]["kv-1"]
        return i if i["active_state"] == "failed" else None
    i = wait_for(failed, what="kv-1 failed (systemd gave up restarting it)")
    assert i["health"] == "failed" and not i["ready"], i
    assert "damaged" in i["last_error"] and "ckpt-" in i["last_error"], i
    assert i["status_text"].startswith("failed: "), i
    assert i["status_text"] in i["last_error"], i
    # logged with its reason, each reason once, however many times systemd
    # tried: the kill (if the agent saw the unit fail), then the damage
    msgs = [e["MESSAGE"] for e in journal(node, "MESSAGE_ID=" + MSGID_INSTANCE_FAILED,
                                           "DPR_INSTANCE=kv-1", "SYSLOG_IDENTIFIER=dpr-agent")]
    assert 1 <= len(msgs) <= 2 and len(set(msgs)) == len(msgs), msgs
    assert "damaged" in msgs[-1] and "ckpt-" in msgs[-1], msgs
    # the others: same world-line, ready, healthy, serving their data
    insts, s = status(node)
    assert {d["name"]: d["world_line"] for d in s["deployments"]} == world_lines
    for name in ("kv-0", "kv-2", "mem-0"):
        assert insts[name]["ready"] and insts[name]["health"] == "ok", insts[name]
        assert insts[name]["world_line"] == world_lines[name.rsplit("-", 1)[0]]
    assert redis(node, insts["kv-2"]["endpoint"], "GET", owned("after-", "kv-2")) == "x"
    assert "1 unhealthy (kv-1 failed)" in show(node, "dpr-agent.service", "StatusText")
    # the metrics say the same: one failed instance with systemd's restarts
    m = metrics(node)
    assert m.value("dpr_agent_instances_ready") == 3
    assert m.value("dpr_agent_instances_health", health="failed") == 1
    assert m.value("dpr_agent_instance_ready", instance="kv-1", deployment="kv") == 0
    assert m.value("dpr_agent_instance_restarts_total", instance="kv-1") == \
        int(show(node, "dpr-cachestore@kv-1.service", "NRestarts"))
    assert m.value("dpr_agent_instance_restarts_total", instance="kv-1") >= 1
    assert m.value("dpr_agent_instance_failures_total", instance="kv-1") >= 1
    assert m.value("dpr_agent_instance_restarts_total", instance="kv-0") == 0
    # the events: one health event, kv-1 entering "failed", through all of
    # systemd's restarts; none for the others
    node.run("touch /tmp/stop-events")
    out, _ = events.communicate(timeout=60)
    lines = [json.loads(line) for line in out.splitlines() if line.strip()]
    assert lines and lines[0]["ok"] is True, out
    health = [e["event"] for e in lines[1:] if e["event"]["type"] == "health"]
    assert [(e["name"], e["previous"], e["health"]) for e in health] == \
        [("kv-1", "ok", "failed")], health
    assert [e for e in lines[1:] if e["event"]["type"] == "instance"
            and e["event"]["name"] == "kv-1"], lines
