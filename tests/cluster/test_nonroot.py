"""Issue 16: cache-store instances run without root.

test_instances_run_as_dpr_cachestore: three nodes (the build installed as
`make install` does, provision.sh runs systemd-sysusers), `kv` with a copy
of each shard's checkpoints on another node and `sessions`, both written
by a session meanwhile. Every instance's process runs as the system user
dpr-cachestore (its uids in /proc/PID/status) with no capabilities, owns
its state directory (0700); the checkpoint copies from other nodes are
group dpr-cachestore, not world-readable. As that user nothing of the
agent's can be read: agent.json, the Raft and finder state, the instance
files with their finder tokens, a TLS key issued without --group; a key
issued with `dprctl pki issue --group dpr-cachestore` can (0640). The
agent's capabilities are the two its unit gives. kill -9 of an instance:
systemd restarts it, again as dpr-cachestore. Then node3's power is cut:
its shard moves to the node with its copies and starts there from them
(the seed, read as dpr-cachestore). At the end every committed operation
of both sessions reads back (writers.py).

test_dpr_redis_runs_as_dpr_cachestore: the same user for dpr-redis and its
redis-server, and a write kept across a kill -9 of the proxy.

Needs root (skipped otherwise).
"""
import re
import time

import pytest

import cluster as harness
from test_node_loss import WAIT, check_results, dep, inst, start, status
from writers import Writers

CS_USER = "dpr-cachestore"


def ids(node, pid, field):
    """The (real, effective, saved, fs) uids or gids of pid in the node."""
    text = node.run("cat /proc/%s/status" % pid).stdout
    return [int(x) for x in re.search(r"^%s:\s+(.*)$" % field, text, re.M).group(1).split()]


def cap_eff(node, pid):
    text = node.run("cat /proc/%s/status" % pid).stdout
    return int(re.search(r"^CapEff:\s+([0-9a-f]+)$", text, re.M).group(1), 16)


def main_pid(node, instance):
    return node.systemctl("show", "-p", "MainPID", "--value",
                          "dpr-cachestore@%s.service" % instance)


def as_cs_user(node, cmd):
    """cmd in the node as dpr-cachestore (its groups too): the return code."""
    return node.run("setpriv --reuid=%s --regid=%s --init-groups -- %s" % (CS_USER, CS_USER, cmd),
                    check=False).returncode


def check_instance(node, instance, uid, gid):
    pid = main_pid(node, instance)
    assert pid not in ("", "0"), instance
    assert ids(node, pid, "Uid") == [uid] * 4, (instance, ids(node, pid, "Uid"))
    assert ids(node, pid, "Gid") == [gid] * 4, (instance, ids(node, pid, "Gid"))
    assert cap_eff(node, pid) == 0, instance
    st = node.run("stat -c '%%U %%G %%a' /var/lib/dpr/%s" % instance).stdout.split()
    assert st == [CS_USER, CS_USER, "700"], (instance, st)
    return pid


@pytest.mark.nodes(3)
def test_instances_run_as_dpr_cachestore(cluster):
    c = cluster
    n1, victim = c[0], c[2]
    pw = n1.run("getent passwd %s" % CS_USER).stdout.split(":")
    uid, gid = int(pw[2]), int(pw[3])
    assert 0 < uid < 1000, pw
    st = start(c, replicas=1)
    copy_on = inst(status(victim), "kv-2")["replicas"]
    assert copy_on in (["node1"], ["node2"]), inst(status(victim), "kv-2")
    holder = c[{"node1": 0, "node2": 1}[copy_on[0]]]

    w = Writers(n1, ["kv", "sessions"])
    try:
        w.moves_on("warm-up", ops=200)
        harness.wait_for("kv-2's checkpoints copied", lambda: (
            inst(status(victim), "kv-2").get("replicated") or 0) > 0, WAIT)
        for n in c:
            for i in [x for d in status(n)["deployments"] for x in d["instances"]
                      if x["node"] == n.name]:
                check_instance(n, i["name"], uid, gid)

        # the agent: root, with the capabilities of its unit only
        agent = n1.systemctl("show", "-p", "MainPID", "--value", "dpr-agent")
        assert ids(n1, agent, "Uid") == [0] * 4
        # CAP_CHOWN 0, CAP_DAC_READ_SEARCH 2
        assert cap_eff(n1, agent) == (1 << 0) | (1 << 2), hex(cap_eff(n1, agent))

        # the copies kv-2's node sent: the instances' group may read them, nobody else
        copies = holder.run("find /var/lib/dpr/replicas -printf '%y %g %m %p\\n'").stdout
        lines = copies.splitlines()
        assert any(ln.startswith("f ") and "/kv/%d/ckpt-" % inst(st, "kv-2")["worker"] in ln
                   for ln in lines), copies
        for ln in lines:
            kind, group, mode, path = ln.split(" ", 3)
            assert group == CS_USER, ln
            assert mode == ("750" if kind == "d" else "640"), ln
        # the socket the instances ask for copies on: theirs too (0660)
        assert holder.run("stat -c '%G %a' /run/dpr/replica.sock").stdout.split() == \
            [CS_USER, "660"]

        # what dpr-cachestore cannot read: the agent's state and secrets
        for path in ("/var/lib/dpr/agent.json", "/run/dpr/instances/kv-0.env"):
            assert n1.run("test -f %s" % path, check=False).returncode == 0, path
            assert as_cs_user(n1, "cat %s" % path) != 0, path
        for d in ("/var/lib/dpr", "/var/lib/dpr/raft", "/var/lib/dpr/finder"):
            if n1.run("test -d %s" % d, check=False).returncode == 0:
                assert as_cs_user(n1, "ls %s" % d) != 0, d
        # its own state it can (the instance's directory, by path)
        assert as_cs_user(n1, "ls /var/lib/dpr/kv-0") == 0
        # TLS keys: a node key (0600 root) no; one issued for the instances yes
        n1.run("dprctl pki init --dir /etc/dpr/tls --cluster dprt")
        n1.run("dprctl pki issue node --node node1 --dir /etc/dpr/tls")
        n1.run("dprctl pki issue node --node node1-kv --dir /etc/dpr/tls --group %s" % CS_USER)
        assert n1.run("stat -c '%U %G %a' /etc/dpr/tls/node1-kv.key").stdout.split() == \
            ["root", CS_USER, "640"]
        for key, ok in (("ca.key", False), ("node1.key", False), ("node1-kv.key", True)):
            assert (as_cs_user(n1, "cat /etc/dpr/tls/%s" % key) == 0) == ok, key

        # kill -9: systemd restarts it, as dpr-cachestore again
        old = main_pid(n1, "kv-0")
        n1.run("kill -9 %s" % old)
        harness.wait_for("kv-0 restarted", lambda: main_pid(n1, "kv-0") not in ("0", "", old) and
                         inst(status(n1), "kv-0")["ready"], WAIT)
        check_instance(n1, "kv-0", uid, gid)
        w.moves_on("after kill -9 of kv-0", ops=200)

        # node3 lost: kv-2 starts on the node that holds its copies, from them
        victim.power_cut()
        try:
            harness.wait_for("kv-2 serving on %s" % holder.name, lambda: (
                lambda s: s if inst(s, "kv-2")["node"] == holder.name and inst(s, "kv-2")["ready"]
                else None)(status(n1)), WAIT)
        except harness.HarnessError:
            print(holder.journal(lines=300))
            raise
        pid = check_instance(holder, "kv-2", uid, gid)
        j = holder.journal("dpr-cachestore@kv-2.service", lines=400)
        assert "took over" in j and pid, j[-3000:]
        assert dep(status(n1), "kv")["degraded"] is None
        w.moves_on("kv after the move", deps=("kv",), ops=200)
    finally:
        results = w.finish()
    check_results(w, results)


REDIS_SPEC = """\
name: demo
cachestores:
  - {name: rd, version: "1", shards: 1, impl: dpr-redis, checkpoint_interval_ms: 100}
"""


def test_dpr_redis_runs_as_dpr_cachestore(cluster):
    """dpr-redis (the proxy and its redis-server child) runs as
    dpr-cachestore too, keeps what it writes after a kill -9 of the proxy
    (systemd restarts it from its checkpoint, as dpr-cachestore)."""
    n = cluster[0]
    harness.wait_for("dpr-agent", lambda: n.is_active("dpr-agent") == "active", 60)
    pw = n.run("getent passwd %s" % CS_USER).stdout.split(":")
    uid, gid = int(pw[2]), int(pw[3])
    n.run("cat > /root/rd.yaml", input=REDIS_SPEC)
    n.run("dprctl apply -f /root/rd.yaml --wait --timeout %d" % WAIT, timeout=WAIT + 30)
    harness.wait_for("rd-0 ready", lambda: inst(status(n), "rd-0")["ready"], WAIT)
    pid = check_instance(n, "rd-0", uid, gid)
    children = n.run("pgrep -P %s" % pid).stdout.split()
    assert children, "no redis-server under dpr-redis %s" % pid
    for child in children:
        assert ids(n, child, "Uid") == [uid] * 4, child
    endpoint = inst(status(n), "rd-0")["endpoint"]
    host, port = endpoint.rsplit(":", 1)
    cli = "redis-cli -h %s -p %s " % (host, port)
    # (the layout may reach the shard a moment after the apply's answer:
    # TRYAGAIN until then)
    harness.wait_for("SET through dpr-redis",
                     lambda: n.run(cli + "SET nonroot yes").stdout.strip() == "OK", WAIT)
    time.sleep(1)  # (a few checkpoints: the write is in one)
    n.run("kill -9 %s" % pid)
    harness.wait_for("rd-0 restarted", lambda: main_pid(n, "rd-0") not in ("0", "", pid) and
                     inst(status(n), "rd-0")["ready"], WAIT)
    check_instance(n, "rd-0", uid, gid)
    harness.wait_for("the write read back after the restart",
                     lambda: n.run(cli + "GET nonroot").stdout.strip() == "yes", WAIT)
