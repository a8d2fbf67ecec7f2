"""Issue 12: the agents publish the cluster by DNS-SD (avahi-client).

Three agents in one Raft cluster on real systemd nodes, each with its own
avahi-daemon on the test bridge. From another node, `avahi-browse -rpt`
shows every agent (`_dpr-agent._tcp`), the finder on the leader
(`_dpr-finder._tcp`) and every running instance (`_dpr-cs._tcp`) with the
TXT of docs/discovery.md; a deleted deployment's records disappear; when
the leader changes, the finder record moves; when avahi-daemon restarts on
a node, that node's records come back; killed, the agent goes on with
discovery off and publishes again when it is back; a name another
publisher holds is published under another one. Needs root (skipped
otherwise).
"""
import json
import re
import shlex
import shutil
import subprocess
import threading

import pytest

import cluster as harness
import dprtest

WAIT = 120

SPEC = """\
name: demo
cachestores:
  - {name: kv, version: "1", shards: 3, checkpoint_interval_ms: 100}
"""

MORE = SPEC + """\
  - {name: tmp, version: "2", shards: 1, checkpoint_interval_ms: 100}
"""


def apply(node, text):
    with open(node.path("/root/cluster.yaml"), "w") as f:
        f.write(text)
    return node.run("cd /root && dprctl apply -f cluster.yaml --wait --timeout %d" % WAIT,
                    timeout=WAIT + 30)


def browse(node, service_type):
    """What avahi-browse -rpt finds on node: {instance name: (host, port, txt
    dict)}, IPv4 only, one entry per name."""
    r = node.run(["avahi-browse", "-rpt", service_type], check=False, timeout=30)
    out = {}
    for line in r.stdout.splitlines():
        f = line.split(";")
        if f[0] != "=" or len(f) < 10 or f[2] != "IPv4":
            continue
        txt = dict(s.split("=", 1) for s in shlex.split(f[9]) if "=" in s)
        name = re.sub(r"\\(\d{3})", lambda m: chr(int(m.group(1))), f[3])  # (\064 is @)
        out[name] = (f[6], int(f[8]), txt)
    return out


def status(node):
    return json.loads(node.run(["dprctl", "status", "--json"]).stdout)


@pytest.mark.nodes(3)
def test_records_follow_the_cluster(cluster):
    c = cluster
    n1, n2, n3 = c[0], c[1], c[2]
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    c.configure_raft()
    lead = harness.wait_for("a raft leader", lambda: c.raft_leader(), WAIT)
    apply(n1, MORE)

    # every agent, with its Raft address and membership
    def agents():
        got = browse(n3, "_dpr-agent._tcp")
        return got if len(got) == 3 and all(t["state"] == "member" for _, _, t in got.values()) \
            else None
    got = harness.wait_for("3 agent records", agents, WAIT)
    for n in c:
        host, port, txt = got["%s@demo" % n.name]
        assert host == "%s.local" % n.name and port == c.FINDER_PORT
        assert txt["cluster"] == "demo" and txt["txtvers"] == "1" and txt["node"] == n.name
        assert txt["raft"] == "%s:%d" % (n.ip4, c.RAFT_PORT)
        assert txt["finder"] == "%s:%d" % (n.ip4, c.FINDER_PORT)
        assert txt["api"] == "1"

    # one finder record, on the leader
    def finder_on(node):
        got = browse(n3, "_dpr-finder._tcp")
        return got if list(got) == ["finder@demo"] and got["finder@demo"][2]["node"] == \
            node.name else None
    host, port, txt = harness.wait_for("the finder record", lambda: finder_on(lead),
                                       WAIT)["finder@demo"]
    assert host == "%s.local" % lead.name and port == c.FINDER_PORT
    assert int(txt["term"]) >= 1

    # every instance, where it runs
    def instances(want):
        got = browse(n3, "_dpr-cs._tcp")
        return got if sorted(got) == sorted(want) else None
    want = ["kv-0@demo", "kv-1@demo", "kv-2@demo", "tmp-0@demo"]
    got = harness.wait_for("4 instance records", lambda: instances(want), WAIT)
    st = status(n1)
    for d in st["deployments"]:
        for inst in d["instances"]:
            host, port, txt = got["%s@demo" % inst["name"]]
            node = c[inst["node"]]
            assert host == "%s.local" % node.name
            assert txt["addr"] == "%s:%d" % (node.ip4, port) == inst["endpoint"]
            assert txt["deployment"] == d["name"] and txt["shard"] == str(inst["shard"])
            assert txt["shards"] == str(len(d["instances"]))
            assert txt["worker"] == str(inst["worker"]) and txt["impl"] == "dpr-kv"
            assert txt["version"] == ("1" if d["name"] == "kv" else "2")
            assert txt["node"] == node.name and txt["cluster"] == "demo"
    assert st["discovery"]["state"] == "on", st["discovery"]

    # a deleted deployment's records go
    apply(n1, SPEC)
    harness.wait_for("tmp-0's record to go", lambda: instances(want[:3]), WAIT)

    # the leader changes: the finder record moves
    lead.run("kill -9 $(systemctl show -P MainPID dpr-agent)")
    new = harness.wait_for("another leader", lambda: c.raft_leader() not in (None, lead) and
                           c.raft_leader(), WAIT)
    harness.wait_for("the finder record on %s" % new.name, lambda: finder_on(new), WAIT)

    # avahi-daemon restarts on a node: its records come back
    n2.systemctl("restart", "avahi-daemon.service")
    harness.wait_for("node2's agent record back",
                     lambda: "node2@demo" in browse(n3, "_dpr-agent._tcp"), WAIT)
    mine = [i["name"] for d in status(n1)["deployments"] for i in d["instances"]
            if i["node"] == "node2"]
    harness.wait_for("node2's instance records back",
                     lambda: all("%s@demo" % m in browse(n3, "_dpr-cs._tcp") for m in mine), WAIT)

    # avahi-daemon killed on a node: its agent goes on without it, and
    # publishes again when it is back. (Browsed on node2 itself: a new
    # daemon has an empty cache, so what it shows node2 published again;
    # the other nodes' caches keep the records until their TTL.)
    n2.run("systemctl kill -s KILL avahi-daemon.service")
    st = harness.wait_for("node2's discovery off", lambda: (lambda s: s if s["discovery"]["state"]
                                                            != "on" else None)(status(n2)), WAIT)
    assert st["discovery"]["reason"], st["discovery"]
    assert n2.run(["redis-cli", "-h", n2.ip4, "-p", str(c.FINDER_PORT), "PING"]).stdout.strip() \
        == "PONG"  # (its finder port; the instances are untouched)
    n2.systemctl("start", "avahi-daemon.service")
    harness.wait_for("node2's discovery on", lambda: status(n2)["discovery"]["state"] == "on", WAIT)
    harness.wait_for("node2's records published again", lambda: "node2@demo" in browse(
        n2, "_dpr-agent._tcp") and all("%s@demo" % m in browse(n2, "_dpr-cs._tcp") for m in mine),
        WAIT)

    # another publisher holds node2's name on the network when its agent
    # starts: the agent publishes under another name, same TXT
    n2.systemctl("stop", "dpr-agent")  # (its records go; its instances run on)
    harness.wait_for("node2's agent record gone",
                     lambda: "node2@demo" not in browse(n1, "_dpr-agent._tcp"), WAIT)
    n3.run("systemd-run --unit=dprt-squat --collect avahi-publish -s node2@demo "
           "_dpr-agent._tcp 9 cluster=squatter")
    harness.wait_for("the squatter", lambda: (browse(n1, "_dpr-agent._tcp").get("node2@demo")
                                              or (0, 0, {}))[2].get("cluster") == "squatter", WAIT)
    n2.systemctl("start", "dpr-agent")

    def renamed():
        got = browse(n1, "_dpr-agent._tcp")
        return [(name, rec) for name, rec in got.items()
                if name != "node2@demo" and rec[2].get("node") == "node2"]
    (name, (host, port, txt)), = harness.wait_for("node2's agent under another name", renamed,
                                                 WAIT)
    assert name.startswith("node2@demo #"), name
    assert txt["cluster"] == "demo" and port == c.FINDER_PORT and host == "node2.local"
    assert "is taken" in n2.journal("dpr-agent", lines=100)
    n3.systemctl("stop", "dprt-squat")


CONF = """\
cluster = "{cluster}";
node = {{ name = "{name}"; address = "{ip}"; }};
finder = {{ listen = "{ip}:{finder}"; }};
raft = {{ address = "{ip}:{raft}"; {mode}
         election_timeout_ms = 300; heartbeat_timeout_ms = 50; }};
"""


def configure(c, node, cluster, mode):
    with open(node.path("/etc/dpr/agent.conf"), "w") as f:
        f.write(CONF.format(cluster=cluster, name=node.name, ip=node.ip4, finder=c.FINDER_PORT,
                            raft=c.RAFT_PORT, mode=mode))


def members(node):
    """The Raft members node's agent knows, by name, once it has a leader."""
    r = node.run(["dprctl", "nodes", "--json"], check=False)
    try:
        got = json.loads(r.stdout)
    except ValueError:
        return None
    if not (got.get("raft") or {}).get("leader"):
        return None
    return sorted(n["name"] for n in got.get("nodes") or [])


@pytest.mark.nodes(4)
def test_agents_without_seed_lists_form_their_clusters(cluster):
    c = cluster
    n1, n2, n3, n4 = c[0], c[1], c[2], c[3]
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    # three agents of "demo" that only know to expect three; one of
    # "other" on the same bridge, alone
    for n in (n1, n2, n3):
        configure(c, n, "demo", "expect = 3;")
    configure(c, n4, "other", "expect = 1;")
    for n in c:
        n.run("systemctl stop dpr-agent && rm -rf /var/lib/dpr/raft && systemctl start dpr-agent")
    for n in (n1, n2, n3):
        harness.wait_for("%s in one cluster of three" % n.name,
                         lambda n=n: members(n) == ["node1", "node2", "node3"], WAIT)
    harness.wait_for("node4 alone in its own", lambda: members(n4) == ["node4"], WAIT)
    lead = harness.wait_for("a leader", lambda: c.raft_leader([n1, n2, n3]), WAIT)
    assert lead is not n4

    # node4 becomes a new node of "demo" that only knows to join: it asks
    # the members it finds
    configure(c, n4, "demo", "join = true;")
    n4.run("systemctl stop dpr-agent && rm -rf /var/lib/dpr/raft /var/lib/dpr/finder "
           "&& systemctl start dpr-agent")
    want = ["node1", "node2", "node3", "node4"]
    for n in c:
        harness.wait_for("%s in one cluster of four" % n.name, lambda n=n: members(n) == want,
                         WAIT)


IFACE_CONF = """\
cluster = "demo";
node = { address = "eth0"; };
finder = { listen = "0.0.0.0:7000"; };
"""

ONE = """\
name: demo
cachestores:
  - {name: kv, version: "1", shards: 1, checkpoint_interval_ms: 100}
"""


@pytest.mark.nodes(2)
def test_address_and_link_are_followed(cluster):
    """node.address = "eth0": a new address is published within seconds and
    the instance answers on it without a restart; link down/up marks the
    node degraded/healthy (status and events)."""
    import time
    n1, n2 = cluster[0], cluster[1]
    with open(n2.path("/etc/dpr/agent.conf"), "w") as f:
        f.write(IFACE_CONF)
    n2.systemctl("restart", "dpr-agent")
    harness.wait_for("dpr-agent", lambda: n2.is_active("dpr-agent") == "active", 60)
    apply(n2, ONE)
    st = status(n2)
    assert st["network"]["state"] == "healthy" and st["network"]["interface"] == "eth0"
    assert st["network"]["address"] == n2.ip4
    inst = st["deployments"][0]["instances"][0]
    pid = inst["main_pid"]
    port = int(inst["endpoint"].rsplit(":", 1)[1])
    assert inst["endpoint"] == "%s:%d" % (n2.ip4, port)

    def record():
        got = browse(n1, "_dpr-cs._tcp").get("kv-0@demo")
        return got and got[2]["addr"]
    assert harness.wait_for("kv-0's record", record, WAIT) == "%s:%d" % (n2.ip4, port)

    # another address, then the first one goes
    new = n2.ip4.rsplit(".", 1)[0] + ".200"
    # (the new one, a secondary of the same subnet, stays when the first goes)
    n2.run("sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1")
    n2.run("ip addr add %s/24 dev eth0" % new)
    t0 = time.monotonic()
    n2.run("ip addr del %s/24 dev eth0" % n2.ip4)
    harness.wait_for("the new address published", lambda: record() == "%s:%d" % (new, port),
                     WAIT)
    took = time.monotonic() - t0
    print("re-published %.2f s after the address changed" % took)
    st = status(n2)
    assert st["network"]["address"] == new and st["network"]["state"] == "healthy"
    assert st["deployments"][0]["instances"][0]["endpoint"] == "%s:%d" % (new, port)
    assert st["deployments"][0]["instances"][0]["main_pid"] == pid  # not restarted
    agent = browse(n1, "_dpr-agent._tcp")["node2@demo"]
    assert agent[0] == "node2.local"
    assert n1.run(["redis-cli", "-h", new, "-p", str(port), "PING"]).stdout.strip() == "PONG"
    assert took < 10, took

    # the link goes down and comes back
    n2.run("ip link set eth0 down")
    st = harness.wait_for("degraded", lambda: (lambda s: s if s["network"]["state"] ==
                                               "degraded" else None)(status(n2)), 30)
    assert "link eth0 is down" in st["network"]["reason"], st["network"]
    n2.run("ip link set eth0 up")
    harness.wait_for("healthy again", lambda: status(n2)["network"]["state"] == "healthy", 30)
    events = n2.run("journalctl -b -u dpr-agent -o cat | grep -c 'link eth0 is down'",
                    check=False).stdout.strip()
    assert int(events or 0) >= 1


def kv_on_three_nodes(c):
    """The agents of c's 3 nodes in one Raft cluster, SPEC applied on node1
    (kv-i on node i+1); node1's status."""
    for n in c:
        harness.wait_for("dpr-agent", lambda n=n: n.is_active("dpr-agent") == "active", 60)
    c.configure_raft()
    harness.wait_for("a raft leader", lambda: c.raft_leader(), WAIT)
    apply(c[0], SPEC)
    st = status(c[0])
    assert [i["node"] for i in st["deployments"][0]["instances"]] == \
        ["node1", "node2", "node3"], st
    return st


@pytest.mark.nodes(3)
def test_a_program_that_knows_only_the_cluster_name(cluster):
    """dpr.Client.discover("demo", "kv") from node1: a session writes, node3
    (holding a shard) loses its power, the shard moves to the node with its
    copies, the session follows it by itself; every committed operation
    reads back and survivors are a prefix (writers.py)."""
    from writers import Writers
    c = cluster
    n1, victim = c[0], c[2]
    kv_on_three_nodes(c)
    w = Writers(n1, ["kv"], discover="demo")
    try:
        w.moves_on("warm-up", deps=("kv",), ops=200)
        assert any("@@start kv" in line for line in w.log), w.log
        victim.power_cut()
        harness.wait_for("kv-2 moved off node3", lambda: [
            i for i in status(n1)["deployments"][0]["instances"]
            if i["name"] == "kv-2" and i["node"] != "node3" and i["ready"]], WAIT)
        w.moves_on("after the move", deps=("kv",), ops=200)
    finally:
        results = w.finish()
    assert results.get("kv", "").startswith("ok "), "\n".join(w.log[-40:])


class Lines:
    """A program started inside a node; its output lines (stdout and stderr)
    collected on a thread."""

    def __init__(self, node, argv):
        self.proc = node.spawn(argv, stderr=subprocess.STDOUT)
        self.lines = []
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def text(self):
        return "\n".join(self.lines)

    def last(self, prefix):
        """The fields after prefix of the last line starting with it."""
        found = [line for line in list(self.lines) if line.startswith(prefix)]
        if not found and self.proc.poll() is not None:
            raise AssertionError("ended (%s):\n%s" % (self.proc.returncode, self.text()))
        return found[-1][len(prefix):].split() if found else None

    def wait(self, timeout):
        self.proc.wait(timeout=timeout)
        self._t.join(10)
        return self.proc.returncode


@pytest.mark.nodes(3)
def test_a_c_program_that_knows_only_the_cluster_name(cluster):
    """The C client, libdpr-discover: client-driver --cluster demo (mDNS
    through node1's avahi-daemon; the agents tell the shards) writes with
    exec; node3, holding a shard, loses its power; the shard moves to the
    node with its copies; the session gives the silent connection up, rolls
    back, finds the shard's new address from the agents by itself and goes
    on; every operation not reported lost reads back, nothing committed was
    lost (tests/libdpr/client_driver.c, scenario roam)."""
    driver = dprtest.binary("tests/client-driver")
    dprtest.need(driver)
    c = cluster
    n1, victim = c[0], c[2]
    st = kv_on_three_nodes(c)
    eps = [i["endpoint"] for i in st["deployments"][0]["instances"]]
    shutil.copy(driver, n1.path("/root/client-driver"))
    p = Lines(n1, ["/root/client-driver", "--cluster", "demo", "--deployment", "kv",
                   "--reconnect-timeout", "90000", "--rollback-timeout", "90000",
                   "--seconds", "600", "--stop-file", "/tmp/stop-roaming", "roam"])

    def progress():
        """(last sequence number, commit point, layout epoch, rollbacks)"""
        f = p.last("PROGRESS ")
        return [int(x) for x in f] if f else [0, 0, 0, 0]
    try:
        harness.wait_for("the session writing", lambda: progress()[0] >= 200, WAIT)
        head = p.text().split("READY")[0]
        assert "CLIENT shards=3 epoch=" in head and "domain=kv" in head, p.text()
        assert [line.split()[2] for line in head.splitlines() if line.startswith("SHARD ")] \
            == eps, p.text()
        epoch = progress()[2]
        victim.power_cut()
        moved = harness.wait_for("kv-2 moved off node3", lambda: [
            i for i in status(n1)["deployments"][0]["instances"]
            if i["name"] == "kv-2" and i["node"] != "node3" and i["ready"]], WAIT)[0]
        seq = progress()[0]
        harness.wait_for("the session writing on a newer layout", lambda: (
            progress()[2] > epoch and progress()[0] >= seq + 200), WAIT)
        n1.run("touch /tmp/stop-roaming")
        assert p.wait(300) == 0, p.text()[-4000:]
    finally:
        if p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait(10)
    out = p.text()
    print("\n".join(line for line in out.splitlines() if line.startswith(("ROLLBACK", "PASS"))))
    assert "PASS roam" in out and "ROLLBACK lost_from=" in out, out[-4000:]
    tail = out[out.index("PASS roam"):]
    assert [line.split()[2] for line in tail.splitlines() if line.startswith("SHARD ")] == \
        eps[:2] + [moved["endpoint"]], out[-4000:]
