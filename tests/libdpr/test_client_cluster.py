"""The C client of a cluster (dpr/client.h "Clients of a cluster",
dpr/discover.h) against real processes on the host: three dpr-agents forming
a Raft cluster (dprtest.RaftAgents, agent i on 127.0.0.<i+1>), the dpr-kv
instances they place started by hand from their instance files (no systemd
here), a real knotd on loopback serving the cluster's records as
`dprctl dns-zone --nsupdate` puts them there (tests/python-dpr/dnssd_helpers.py),
and the C program tests/libdpr/client_driver.c ($DPR_BUILD/tests/client-driver)
as the client:

- from the agents' addresses alone (DPR.CLUSTER.ENDPOINTS);
- from the cluster's name by unicast DNS-SD (libdpr-discover, glibc's
  resolver against knotd), and what it says when the name, the zone or the
  server is wrong; mDNS needs avahi-daemon: without one on the host, the
  error says so (tests/cluster/test_discovery.py runs it inside real nodes);
- a single agent (state=single), whose shards come from the instance records;
- a shard whose node is lost moves to the node holding its copies: the
  session finds it again by itself (a newer layout from the agents), rolls
  back what the lost node took with it, and reads everything else back.

Skipped, with the reason, without dpr-agent, dpr-kv, the driver, or knotd,
nsupdate and dig (Debian: knot, bind9-dnsutils). Every process is stopped by
PID when the test ends.
"""
import os
import signal
import subprocess
import sys
import time

import pytest

import dprtest
from dprtest import AGENT, DPRCTL, KV, PYDIR, PYTHON, RaftAgents, wait_for

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "python-dpr"))
from dnssd_helpers import Knot, need_dns_tools  # noqa: E402

DRIVER = dprtest.binary("tests/client-driver")
ZONE = "dpr.test"

pytestmark = pytest.mark.skipif(
    bool(dprtest.missing(AGENT, KV, DRIVER)),
    reason="needs %s, %s and %s (make all)" % (AGENT, KV, DRIVER))


def spec(*deps):
    """Deployments (name, shards, replicas) of cluster demo."""
    return {"name": "demo", "cachestores": [dict(name=n, shards=k, version="1", replicas=r)
                                             for n, k, r in deps]}


def start_instance(agent, base, name):
    """dpr-kv as its unit would run it: the variables of its instance file
    (its address on the agent's node, the finders, its worker id and token,
    the replica socket and seed directory); it waits for the layout the
    agents give it."""
    env = {k: v for k, v in agent.env(name).items() if k.startswith("DPR_")}
    d = os.path.join(base, "kv-%s-%s" % (agent.node, name))
    os.makedirs(d, exist_ok=True)
    p = agent.procs.add(dprtest.Proc([KV, "--dir", d], d + ".log", env=env,
                                     name="dpr-kv %s on %s" % (name, agent.node)))
    return p.wait_ready("listening on ")


def instances(a, deployment):
    """name -> instance of deployment in agent a's status."""
    return {i["name"]: i for d in a.call("status")["deployments"] if d["name"] == deployment
            for i in d["instances"]}


def own_instances(a, deployment):
    """The instances of deployment on a's node whose instance files are
    written (None while there is none)."""
    return [name for name, i in instances(a, deployment).items() if i["node"] == a.node
            and os.path.exists(os.path.join(a.base, "run", "instances", name + ".env"))] or None


def endpoints(a, deployment):
    """(layout epoch, endpoints, workers) as agent a tells clients."""
    import redis
    c = redis.Redis(host=a.host, port=a.finder_port, socket_timeout=10)
    try:
        epoch, eps, workers = c.execute_command("DPR.CLUSTER.ENDPOINTS", deployment)
    finally:
        c.close()
    return epoch, [e.decode() if e is not None else None for e in eps], list(workers)


def run_own_instances(agents, base, deployment, n):
    """Starts every instance of deployment on its node; waits until the
    agents tell a layout (epoch >= 1) naming all n endpoints. Returns
    name -> the dpr-kv Proc, and the agents' answer."""
    kvs = {}
    placed = wait_for(lambda: (lambda i: i if len(i) == n else None)(
        instances(agents[0], deployment)), timeout=15, what="%s placed" % deployment)
    for a in agents:
        if a.node not in {i["node"] for i in placed.values()}:
            continue
        mine = wait_for(lambda a=a: own_instances(a, deployment), timeout=15,
                        what="%s's instances of %s and their files" % (a.node, deployment))
        for name in mine:
            kvs[name] = start_instance(a, base, name)
    assert sorted(kvs) == sorted(placed), (kvs, placed)
    told = wait_for(lambda: (lambda e: e if e[0] >= 1 and all(e[1]) else None)(
        endpoints(agents[0], deployment)), timeout=30,
        what="the layout of %s given and told by the agents" % deployment)
    return kvs, told


def driver(*args, timeout=120):
    """Runs the driver to its end: (exit status, output); a sanitizer report
    (an ASan build) fails the test."""
    r = subprocess.run([DRIVER] + [str(a) for a in args], capture_output=True, text=True,
                       timeout=timeout, env=dprtest.server_env())
    out = r.stdout + r.stderr
    assert not dprtest.sanitizer_reports(out), out
    return r.returncode, out


def client_lines(out):
    """The CLIENT line and the (endpoint, worker) of each SHARD line."""
    client = [line for line in out.splitlines() if line.startswith("CLIENT ")]
    shards = [line.split()[2:4] for line in out.splitlines() if line.startswith("SHARD ")]
    return client, [(ep, int(w)) for ep, w in shards]


def dprctl(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=PYDIR)
    env.pop("DPR_SOCKET", None)
    return subprocess.run([PYTHON, DPRCTL] + list(args), capture_output=True, text=True,
                          env=env, timeout=timeout)


def publish(knot, agent):
    """The cluster's records as agent sees them, into knot's zone through
    dprctl dns-zone --nsupdate and the real nsupdate."""
    r = dprctl("--socket", agent.sock, "dns-zone", "demo", "--domain", ZONE, "--nsupdate",
               "--server", knot.server, "--ttl", "30")
    assert r.returncode == 0, r.stderr
    knot.nsupdate(r.stdout)


@pytest.fixture
def knot(tmp_path):
    need_dns_tools()
    k = Knot(str(tmp_path / "knot"), {ZONE: ""})
    k.start()
    yield k
    k.stop()


@pytest.fixture
def raft(tmp_path):
    agents = RaftAgents(str(tmp_path / "raft"), 3, down_ms=1500).start()
    try:
        agents.placeable()
        yield agents
    finally:
        for a in agents.agents:
            if a.proc is not None and a.proc.alive():
                a.proc.kill(signal.SIGCONT)  # (never leave one stopped)
        agents.close()


def test_from_agents_and_by_name_through_unicast_dns_sd(raft, knot, tmp_path):
    raft[0].call("apply", {"spec": spec(("kv", 3, 0))})
    _, (epoch, eps, workers) = run_own_instances(raft.agents, str(tmp_path), "kv", 3)
    want = list(zip(eps, workers))
    agents = ["%s:%d" % (a.host, raft.finder_port) for a in raft.agents]

    # the agents' addresses (one that is not there first: skipped)
    dead = "127.0.0.1:%d" % dprtest.free_port()
    args = ["--agent", dead] + [x for a in agents for x in ("--agent", a)]
    rc, out = driver(*args, "--deployment", "kv", "basic")
    assert rc == 0 and "PASS basic" in out, out
    client, shards = client_lines(out)
    assert client == ["CLIENT shards=3 epoch=%d domain=kv" % epoch], out
    assert shards == want, out
    rc, out = driver(*args, "--deployment", "nope", "shards")
    assert rc == 1, out
    assert "FAIL: client: deployment 'nope': agent %s answered: ERR no deployment 'nope' in " \
        "the cluster's spec (No such file or directory)" % agents[0] in out, out

    # the cluster's name, in a unicast zone
    publish(knot, raft[0])
    by_name = ["--cluster", "demo", "--dns-domain", ZONE, "--nameserver", knot.server]
    rc, out = driver(*by_name, "--deployment", "kv", "basic")
    assert rc == 0 and "PASS basic" in out, out
    assert client_lines(out) == (["CLIENT shards=3 epoch=%d domain=kv" % epoch], want), out
    # (a final dot, the system resolver's syntax, is fine)
    rc, out = driver("--cluster", "demo", "--dns-domain", ZONE + ".", "--nameserver",
                     knot.server, "--deployment", "kv", "shards")
    assert rc == 0 and client_lines(out)[1] == want, out

    # what goes wrong, said
    rc, out = driver("--cluster", "red", "--dns-domain", ZONE, "--nameserver", knot.server,
                     "--deployment", "kv", "shards")
    assert rc == 1, out
    assert "no dpr-agent of cluster 'red' found in domain 'dpr.test' (unicast DNS-SD, DNS " \
        "server %s); seen instead: agents of cluster 'demo' (n1, n2, n3) (No such file or " \
        "directory)" % knot.server in out, out
    rc, out = driver("--cluster", "demo", "--dns-domain", "elsewhere.test", "--nameserver",
                     knot.server, "--deployment", "kv", "shards")
    assert rc == 1, out
    assert "unicast DNS-SD in domain 'elsewhere.test': the DNS server %s failed on " \
        "_dpr-agent._tcp.elsewhere.test. PTR: REFUSED (Remote I/O error)" % knot.server in out, out
    silent = "127.0.0.1:%d" % dprtest.free_port()
    t0 = time.monotonic()
    rc, out = driver("--cluster", "demo", "--dns-domain", ZONE, "--nameserver", silent,
                     "--discover-timeout", "1000", "--deployment", "kv", "shards")
    took = time.monotonic() - t0
    assert rc == 1, out
    assert "unicast DNS-SD in domain 'dpr.test': the DNS server %s did not answer " \
        "_dpr-agent._tcp.dpr.test. PTR" % silent in out, out
    assert "(Connection timed out)" in out and took < 10, (took, out)
    rc, out = driver("--cluster", "demo", "--dns-domain", ZONE, "--nameserver", "ns.example",
                     "--deployment", "kv", "shards")
    assert rc == 1 and "nameserver 'ns.example': expected an IP address" in out, out
    rc, out = driver("--cluster", "demo", "--dns-domain", "bad domain", "--deployment", "kv",
                     "shards")
    assert rc == 1 and "domain 'bad domain': expected a DNS name" in out, out
    if not os.path.exists("/run/dbus/system_bus_socket"):
        # mDNS (the domain local) through avahi-daemon, which is not here
        rc, out = driver("--cluster", "demo", "--deployment", "kv", "shards")
        assert rc == 1, out
        assert "mDNS (domain 'local') needs avahi-daemon: " in out, out
        assert "(Connection refused)" in out, out


def test_a_single_agent_gives_the_shards_in_its_records(knot, tmp_path):
    """A node running its cluster alone answers no DPR.CLUSTER.ENDPOINTS:
    its _dpr-cs._tcp records (addr=, worker=) give the shards, its finder=
    the finder."""
    a = dprtest.HostAgent(str(tmp_path / "single"), *dprtest.free_port_range(20))
    a.start()
    try:
        a.call("apply", {"spec": spec(("kv", 2, 0))})
        kvs = {name: start_instance(a, str(tmp_path), name) for name in ("kv-0", "kv-1")}
        assert len(kvs) == 2
        st = instances(a, "kv")
        want = [(st[n]["endpoint"], st[n]["worker"]) for n in ("kv-0", "kv-1")]
        publish(knot, a)
        rc, out = driver("--cluster", "demo", "--dns-domain", ZONE, "--nameserver",
                         knot.server, "--deployment", "kv", "basic")
        assert rc == 0 and "PASS basic" in out, out
        assert client_lines(out) == (["CLIENT shards=2 epoch=0 domain=kv"], want), out
        rc, out = driver("--cluster", "demo", "--dns-domain", ZONE, "--nameserver",
                         knot.server, "--deployment", "other", "shards")
        assert rc == 1, out
        assert "cluster 'demo': no instance records (_dpr-cs._tcp) of deployment 'other' " \
            "(seen: kv); its instances publish them once running" in out, out
    finally:
        a.procs.stop_all()


@pytest.mark.parametrize("shards", [3, 1])
def test_a_session_follows_a_shard_whose_node_was_lost(raft, tmp_path, shards):
    """mv (one copy of each shard's checkpoints on another node): the node
    of a shard stops answering (SIGSTOP: alive but silent, like a lost
    machine) and its dpr-kv dies with it. The agents move the shard to the
    node with its copies; the test starts it there from its new instance
    file. The C session writing through it meanwhile finds it by itself (a
    newer layout: from the other shards and the agents with 3 shards, from
    the agents alone with 1), rolls back what was lost, goes on, and reads
    back everything not reported lost."""
    leader = raft.leader()
    followers = [a.node for a in raft.agents if a is not leader]
    dep = dict(name="mv", shards=shards, version="1", replicas=1)
    if shards == 1:
        dep["node_selector"] = {"nodes": followers}  # (the copy on the other one)
    leader.call("apply", {"spec": {"name": "demo", "cachestores": [dep]}})
    kvs, (epoch, eps, workers) = run_own_instances(raft.agents, str(tmp_path), "mv", shards)
    # the victim: a node that does not lead, nor drive the layout (shard 0)
    # unless it is the only shard; one holding the copies of another shard
    # first: that shard's copies to it then hang (the node is silent) until
    # its agent gives them up, once the placement names another replica node
    # (the cut waited for them for 30 s before; the session's commits too)
    victims = [(a, own_instances(a, "mv")[0]) for a in raft.agents
               if a.node in followers and own_instances(a, "mv")
               and (shards == 1 or own_instances(a, "mv")[0] != "mv-0")]
    held = {node for a in raft.agents for name in own_instances(a, "mv") or ()
            for node in instances(a, "mv")[name].get("replicas") or ()}
    victim, vname = sorted(victims, key=lambda v: v[0].node in held)[-1]
    shard = int(vname.split("-")[1])
    watcher = leader

    stop = str(tmp_path / "stop-writing")
    args = [x for a in raft.agents for x in ("--agent", "%s:%d" % (a.host, raft.finder_port))]
    log = str(tmp_path / "driver.log")
    p = dprtest.Proc([DRIVER] + args + ["--deployment", "mv", "--reconnect-timeout", "60000",
                                        "--rollback-timeout", "60000", "--seconds", "120",
                                        "--stop-file", stop, "roam"], log, name="client-driver")
    try:
        p.wait_ready("READY")
        wait_for(lambda: progress(p)[0] >= 100, timeout=30, what="the session writing")
        # its checkpoints are copied to another node, which the move can use
        wait_for(lambda: instances(victim, "mv")[vname].get("replicated"), timeout=30,
                 what="%s's checkpoints copied" % vname)
        victim.proc.kill(signal.SIGSTOP)
        kvs[vname].kill(signal.SIGKILL)
        # moved: the node with its copies runs it now
        new = wait_for(lambda: (lambda i: i if i["node"] != victim.node else None)(
            instances(watcher, "mv")[vname]), timeout=30, what="%s moved" % vname)
        (target,) = [a for a in raft.agents if a.node == new["node"]]
        wait_for(lambda: vname in (own_instances(target, "mv") or []), timeout=15,
                 what="%s's instance file on %s" % (vname, target.node))
        # (systemd would start it once the leader handed its worker over)
        handed = "worker %d of 'mv' belongs to its instance on %s now" % (
            workers[shard], target.node)
        wait_for(lambda: handed in leader.log(), timeout=15,
                 what="the leader's hand-over of worker %d" % workers[shard])
        start_instance(target, str(tmp_path), vname)
        # the agents tell the new address at a newer epoch once the layout
        # is given again (with 1 shard too: the new driving node goes above
        # the epoch the old one published, though no shard kept it)
        after = wait_for(lambda: (lambda e: e if e[0] > epoch and all(e[1]) and
                                  e[1][shard] != eps[shard] else None)(
            endpoints(watcher, "mv")), timeout=30, what="the new address told by the agents")
        assert after[2] == workers, (eps, workers, after)
        # the session writing again
        before = progress(p)[0]
        wait_for(lambda: progress(p)[0] >= before + 100, timeout=60,
                 what="the session writing after the move")
        open(stop, "w").close()
        assert p.wait_exit(120) == 0, p.describe()
        assert not dprtest.sanitizer_reports(p.output()), p.describe()
    finally:
        if p.alive():
            p.kill()
        victim.proc.kill(signal.SIGCONT)
    out = p.output()
    assert "PASS roam epoch=" in out, out
    # the layout the session ended with (after PASS): the shard's new address
    tail = out[out.index("PASS roam"):]
    final = [line.split()[2] for line in tail.splitlines() if line.startswith("SHARD ")]
    assert final == after[1], out
    # what the lost node took with it was reported lost, nothing committed
    assert "ROLLBACK lost_from=" in out, out


def progress(p):
    """(last sequence number, commit point, layout epoch, rollbacks) of the
    driver's last PROGRESS line."""
    lines = [line for line in p.output().splitlines() if line.startswith("PROGRESS ")]
    if not lines:
        if not p.alive():
            raise AssertionError("the driver ended: %s" % p.describe())
        return (0, 0, 0, 0)
    return tuple(int(x) for x in lines[-1].split()[1:5])
