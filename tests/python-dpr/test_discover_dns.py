"""Unicast DNS-SD for real: a knotd on 127.0.0.1 (a free port, temporary
zones that take dynamic updates from 127.0.0.1) is fed the records of
`dprctl dns-zone` through the real nsupdate, and dpr.discover, dig,
dprctl discover, dpr.Client.discover and dpr.connect(cluster=...) read them
back. The cluster behind the records is a real dpr-agent (one node) or
three agents forming a Raft cluster (dprtest.RaftAgents). The control API
over TCP is tested through a relay to the agent's real control socket
(dnssd_helpers.Relay). Skipped, with the reason, without knotd, nsupdate
and dig (Debian: knot, bind9-dnsutils) or without the agent binary.
"""
import json
import os
import subprocess

import pytest

import dpr
from dpr import discover as D, dnszone as Z
from dpr.errors import DiscoveryError
from dpr.mgmt_errors import AgentUnavailable
from dpr.spec import CacheStore, ClusterSpec

import dprtest
from dnssd_helpers import Knot, Relay, need_dns_tools
from dprtest import DPRCTL, PYDIR, PYTHON

ZONE = "dpr.test"


def dprctl(*args, socket_path=None, timeout=60):
    env = dict(os.environ)
    env.pop("DPR_SOCKET", None)
    env["PYTHONPATH"] = PYDIR
    argv = [PYTHON, DPRCTL] + (["--socket", socket_path] if socket_path else []) + list(args)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.fixture
def knot(tmp_path):
    """A running knotd serving the empty zones dpr.test and file.test."""
    need_dns_tools()
    k = Knot(str(tmp_path / "knot"), {ZONE: "", "file.test": ""})
    k.start()
    yield k
    k.stop()


def publish(knot, agent_socket, cluster="demo", zone=ZONE):
    """dprctl dns-zone --nsupdate of the agent, fed to nsupdate."""
    r = dprctl("dns-zone", cluster, "--domain", zone, "--nsupdate", "--server", knot.server,
               "--ttl", "30", socket_path=agent_socket)
    assert r.returncode == 0, r.stderr
    knot.nsupdate(r.stdout)
    return r


def kv_spec(cluster="demo", shards=2):
    return ClusterSpec(cluster, [CacheStore("kv", version="3", shards=shards)])


def uni(knot, **kw):
    kw.setdefault("domain", ZONE)
    kw.setdefault("nameserver", knot.server)
    return kw


# --- one real agent -----------------------------------------------------------------

def test_single_agent_records_through_nsupdate(knot, agent):
    with dpr.connect(agent.socket) as c:
        c.apply(kv_spec())
        st = c.status()
    eps = st.deployment("kv").endpoints
    workers = [i.worker for i in st.deployment("kv").instances]
    finder = st.finder.address
    r = publish(knot, agent.socket)
    assert "loopback" in r.stderr  # the test agent's node.address is 127.0.0.1

    # dig: the records exist, names escaped as they must be
    assert sorted(knot.dig("_services._dns-sd._udp." + ZONE, "PTR")) == sorted(
        "%s.%s." % (t, ZONE) for t in D.SERVICE_TYPES)
    assert knot.dig("_dpr-agent._tcp." + ZONE, "PTR") == [
        r"node1\@demo._dpr-agent._tcp.%s." % ZONE]
    srv = knot.dig(r"node1\@demo._dpr-agent._tcp." + ZONE, "SRV")
    assert srv == ["0 0 %d node1.%s." % (agent.finder_port, ZONE)]
    assert knot.dig("node1." + ZONE, "A") == ["127.0.0.1"]
    assert len(knot.dig("_dpr-cs._tcp." + ZONE, "PTR")) == 2

    # dpr.discover, unicast
    (a,) = D.agents("demo", **uni(knot))
    assert (a.name, a.host, a.port, a.addresses) == (
        "node1@demo", "node1." + ZONE, agent.finder_port, ["127.0.0.1"])
    assert a.txt == {"txtvers": "1", "cluster": "demo", "node": "node1", "api": "1",
                     "finder": finder, "state": "single"}
    (f,) = D.finders("demo", **uni(knot))
    assert f.txt["term"] == "0" and f.endpoint == finder and f.node == "node1"
    insts = D.instances("demo", "kv", **uni(knot))
    assert [s.endpoint for s in insts] == eps
    assert [(s.shard, s.shards, s.worker, s.txt["version"], s.txt["impl"], s.node)
            for s in insts] == [(i, 2, w, "3", "dpr-kv", "node1") for i, w in enumerate(workers)]
    assert D.instances("demo", "nope", **uni(knot)) == []
    (c,) = D.clusters(**uni(knot))
    assert c.name == "demo" and c.finder.node == "node1" and list(c.deployments) == ["kv"]

    # a single agent: the client's shards come from the instance records
    client = dpr.Client.discover("demo", "kv", **uni(knot))
    assert client.shards == eps and client.finder == finder and client.domain == "kv"
    assert client._workers == workers

    # publishing again replaces, it does not add
    publish(knot, agent.socket)
    assert len(knot.dig(r"node1\@demo._dpr-agent._tcp." + ZONE, "TXT")) == 1
    assert len(knot.dig("_dpr-cs._tcp." + ZONE, "PTR")) == 2

    # dprctl discover, table and JSON
    r = dprctl("discover", "--domain", ZONE, "--nameserver", knot.server)
    assert r.returncode == 0, r.stderr
    assert "cluster demo, found in domain 'dpr.test'" in r.stdout
    assert "finder: %s on node1, term 0" % finder in r.stdout
    for ep in eps:
        assert ep in r.stdout
    r = dprctl("discover", "--domain", ZONE, "--nameserver", knot.server, "--cluster", "demo",
               "-o", "json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [c["cluster"] for c in out["clusters"]] == ["demo"]
    assert [s["txt"]["addr"] for s in out["clusters"][0]["deployments"]["kv"]] == eps
    r = dprctl("discover", "--domain", ZONE, "--nameserver", knot.server, "--cluster", "x")
    assert r.returncode == 1 and "no records of cluster 'x'" in r.stderr
    assert "seen: clusters demo" in r.stderr


def test_dns_zone_checks_the_cluster_name(knot, agent):
    r = dprctl("dns-zone", "other", "--domain", ZONE, socket_path=agent.socket)
    assert r.returncode == 1 and r.stdout == ""
    assert "belongs to cluster 'demo', not 'other'" in r.stderr


def test_zone_file_output_loads_into_knot(tmp_path, agent):
    """The master-file form of the records, as a zone file knot loads."""
    need_dns_tools()
    with dpr.connect(agent.socket) as c:
        c.apply(kv_spec(shards=3))
    r = dprctl("dns-zone", "demo", "--domain", "file.test", socket_path=agent.socket)
    assert r.returncode == 0, r.stderr
    k = Knot(str(tmp_path / "knot"), {"file.test": r.stdout})
    k.start()
    try:
        insts = D.instances("demo", domain="file.test", nameserver=k.server)
        assert [s.name for s in insts] == ["kv-0@demo", "kv-1@demo", "kv-2@demo"]
        assert [a.node for a in D.agents("demo", domain="file.test", nameserver=k.server)] == [
            "node1"]
    finally:
        k.stop()


# --- escaping and filtering, with records made up --------------------------------------------

def odd_status(cluster, node, ctl=None):
    status = {"cluster": cluster, "node": node, "raft": None,
              "finder": {"address": "127.0.0.9:7000"},
              "deployments": [{"name": "kv", "impl": "dpr-kv", "version": "1", "shards": 1,
                               "instances": [{"name": "kv-0", "node": node, "worker": 7,
                                              "shard": 0, "endpoint": "127.0.0.9:7100"}]}]}
    nodes = {"nodes": [{"name": node, "address": "127.0.0.9", "self": True, "leader": True,
                        "ctl": ctl}]}
    return status, nodes


def test_odd_names_survive_nsupdate_zone_files_and_browsing(knot, tmp_path):
    node = 'we ird"x\\y.z;(a)@b$c\u00e9'
    zone = Z.build_zone(*odd_status("odd", node), ZONE)
    knot.nsupdate(Z.nsupdate_script(zone, knot.server))
    (a,) = D.agents("odd", **uni(knot))
    assert a.name == node + "@odd" and a.node == node
    assert a.host == "we-ird-x-y-z-a-b-c." + ZONE and a.addresses == ["127.0.0.9"]
    (i,) = D.instances("odd", **uni(knot))
    assert i.name == "kv-0@odd" and i.worker == 7 and i.endpoint == "127.0.0.9:7100"
    # the same through knot's zone-file parser
    text = Z.zone_text(Z.build_zone(*odd_status("odd", node), "file.test"))
    k = Knot(str(tmp_path / "knot2"), {"file.test": text})
    k.start()
    try:
        (a,) = D.agents("odd", domain="file.test", nameserver=k.server)
        assert a.name == node + "@odd" and a.node == node
    finally:
        k.stop()


def test_other_clusters_and_other_formats_are_left_out(knot):
    for cluster in ("blue", "green"):
        knot.nsupdate(Z.nsupdate_script(Z.build_zone(*odd_status(cluster, "n1"), ZONE),
                                        knot.server))
    # a record of a future TXT format of cluster blue
    knot.nsupdate("server 127.0.0.1 %d\nzone %s.\n"
                  "update add _dpr-agent._tcp.%s. 30 PTR n9\\@blue._dpr-agent._tcp.%s.\n"
                  "update add n9\\@blue._dpr-agent._tcp.%s. 30 SRV 0 0 7000 n1.%s.\n"
                  "update add n9\\@blue._dpr-agent._tcp.%s. 30 TXT \"txtvers=2\" "
                  "\"cluster=blue\" \"node=n9\"\nsend\n"
                  % ((knot.port,) + (ZONE,) * 6))
    assert len(knot.dig("_dpr-agent._tcp." + ZONE, "PTR")) == 3
    assert [(a.cluster, a.node) for a in D.agents("blue", **uni(knot))] == [("blue", "n1")]
    assert [c.name for c in D.clusters(**uni(knot))] == ["blue", "green"]
    assert [c.name for c in D.clusters("green", **uni(knot))] == ["green"]
    with pytest.raises(DiscoveryError) as e:
        D.find_agents("red", **uni(knot))
    msg = str(e.value)
    assert "no dpr-agent of cluster 'red' found in domain 'dpr.test'" in msg
    assert "cluster 'blue' (n1)" in msg and "cluster 'green' (n1)" in msg
    assert "1 agent record(s) of another TXT format" in msg
    with pytest.raises(DiscoveryError, match="cluster 'blue'"):
        dpr.Client.discover("red", "kv", **uni(knot))


def test_unicast_errors(knot, tmp_path):
    # nothing in the zone
    with pytest.raises(DiscoveryError, match="no _dpr-agent._tcp records there"):
        D.find_agents("demo", **uni(knot))
    # a zone the server does not serve: REFUSED
    with pytest.raises(DiscoveryError, match="failed on"):
        D.agents("demo", domain="elsewhere.test", nameserver=knot.server)
    # no DNS server on that port
    port = dprtest.free_port()
    with pytest.raises(DiscoveryError, match="did not answer"):
        D.agents("demo", domain=ZONE, nameserver="127.0.0.1:%d" % port, timeout=0.5)
    r = dprctl("discover", "--domain", ZONE, "--nameserver", "127.0.0.1:%d" % port,
               "--timeout", "0.5")
    assert r.returncode == 1 and "did not answer" in r.stderr and "Traceback" not in r.stderr


# --- a cluster of three agents -------------------------------------------------------------

def test_raft_cluster_records_and_client_discover(knot, tmp_path):
    dprtest.need(dprtest.AGENT, skip=True)
    agents = dprtest.RaftAgents(str(tmp_path / "raft"), 3).start()
    try:
        agents.placeable()
        n1 = agents[0]
        n1.call("apply", {"spec": kv_spec(shards=3).to_dict()})

        def endpoints():
            st = n1.call("status")
            dep = [d for d in st["deployments"] if d["name"] == "kv"]
            eps = [i.get("endpoint") for i in dep[0]["instances"]] if dep else []
            return eps if len(eps) == 3 and all(eps) else None
        eps = dprtest.wait_for(endpoints, timeout=20, what="kv's endpoints in n1's status")
        publish(knot, n1.sock)
        st = n1.call("status")
        leader = [n for n in n1.call("nodes")["nodes"] if n["leader"]][0]

        found = D.agents("demo", **uni(knot))
        assert [a.node for a in found] == ["n1", "n2", "n3"]
        for i, a in enumerate(found):
            host = "127.0.0.%d" % (i + 1)
            assert a.txt["finder"] == "%s:%d" % (host, agents.finder_port)
            assert a.txt["raft"] == agents.raft[i] and a.state == "member"
            assert a.addresses == [host] and a.host == "n%d.%s" % (i + 1, ZONE)
        (f,) = D.finders("demo", **uni(knot))
        assert f.node == leader["name"] and f.term == st["raft"]["term"] >= 1
        assert [s.endpoint for s in D.instances("demo", "kv", **uni(knot))] == eps

        # the agents (their finder ports) tell the client the shards
        client = dpr.Client.discover("demo", "kv", **uni(knot))
        assert client.shards == eps and client.domain == "kv"
        assert client.finders == [a.txt["finder"] for a in found]
        with pytest.raises(dpr.ResponseError, match="no deployment 'nope'"):
            dpr.Client.discover("demo", "nope", **uni(knot))
    finally:
        agents.close()


# --- the control API over TCP ------------------------------------------------------------------

@pytest.fixture
def relay(agent):
    r = Relay(agent.socket)
    yield r
    r.close()


def test_control_api_over_tcp(agent, relay):
    with dpr.connect(address=relay.address) as c:
        assert c.address == relay.address and c.socket_path == relay.address
        assert "(TCP)" in repr(c)
        assert c.status().cluster == "demo"
        assert c.nodes()[0].name == "node1"
        with c.events() as stream:
            c.apply(kv_spec())
            ev = None
            while ev is None or ev.type != "apply":
                ev = stream.next(10)
                assert ev is not None, "no apply event over TCP"
        assert [d.name for d in c.status().deployments] == ["kv"]
    assert relay.accepted >= 2  # the requests and the event stream
    with dpr.control.EventStream(address=relay.address) as s:
        assert not s.closed


def test_control_api_over_tcp_errors(agent):
    port = dprtest.free_port()
    with pytest.raises(AgentUnavailable) as e:
        dpr.connect(address="127.0.0.1:%d" % port)
    msg = str(e.value)
    assert "127.0.0.1:%d (TCP): connection refused" % port in msg
    assert "control.listen" in msg
    with pytest.raises(ValueError, match="HOST:PORT"):
        dpr.connect(address="nowhere")
    with pytest.raises(ValueError, match="give one of path, address and cluster"):
        dpr.connect(agent.socket, address="127.0.0.1:1")
    with pytest.raises(ValueError, match="not both"):
        dpr.control.ControlConnection(agent.socket, address="127.0.0.1:1")
    # the unix socket is unchanged
    with dpr.connect(agent.socket) as c:
        assert c.address is None and c.status().node == "node1"


def test_connect_by_cluster_name(knot, agent, relay):
    with dpr.connect(agent.socket) as c:
        status = c.request("status", {})
        nodes = c.request("nodes", {})
    # what the agent publishes with control.listen on: ctl= in its record
    nodes["nodes"][0]["ctl"] = relay.address
    knot.nsupdate(Z.nsupdate_script(Z.build_zone(status, nodes, ZONE), knot.server))
    with dpr.connect(cluster="demo", **uni(knot)) as c:
        assert c.address == relay.address
        assert c.status().cluster == "demo"
    assert relay.accepted == 1
    with pytest.raises(DiscoveryError, match="no dpr-agent of cluster 'other'"):
        dpr.connect(cluster="other", **uni(knot))


def test_connect_by_cluster_name_without_ctl(knot, agent):
    publish(knot, agent.socket)
    with pytest.raises(DiscoveryError) as e:
        dpr.connect(cluster="demo", **uni(knot))
    msg = str(e.value)
    assert "found 1 dpr-agent(s) of cluster 'demo'" in msg and "(node1)" in msg
    assert "no ctl=" in msg and "control.listen is off" in msg


def test_connect_by_cluster_name_when_ctl_does_not_answer(knot, agent):
    with dpr.connect(agent.socket) as c:
        status = c.request("status", {})
        nodes = c.request("nodes", {})
    port = dprtest.free_port()
    nodes["nodes"][0]["ctl"] = "127.0.0.1:%d" % port
    knot.nsupdate(Z.nsupdate_script(Z.build_zone(status, nodes, ZONE), knot.server))
    with pytest.raises(AgentUnavailable) as e:
        dpr.connect(cluster="demo", **uni(knot))
    assert "no control API of cluster 'demo' answered: node1:" in str(e.value)
    assert "connection refused" in str(e.value)


# --- the agent's own TCP listener (control.listen), when the binary has it ---------------------

def listening_agent(make_agent, access):
    """A started agent with control.listen on a free loopback port and
    control.remote_access = access; (agent, "127.0.0.1:PORT"). Skips when
    this dpr-agent does not know control.listen."""
    a = make_agent(start=False)
    port = dprtest.free_port()
    with open(a.conf) as f:
        text = f.read()
    with open(a.conf, "w") as f:
        f.write(text.replace("control = {\n", 'control = {\n  listen = "127.0.0.1:%d";\n'
                             '  remote_access = "%s";\n' % (port, access), 1))
    r = subprocess.run([dprtest.AGENT, "--check-config", a.conf], capture_output=True,
                       text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip("this dpr-agent has no control.listen: %s" % (r.stdout + r.stderr).strip())
    a.start()
    dprtest.wait_for(lambda: dprtest.accepts(port), what="the agent's TCP listener")
    return a, "127.0.0.1:%d" % port


def test_the_agents_own_tcp_listener_read_only(make_agent):
    a, addr = listening_agent(make_agent, "read-only")
    with dpr.connect(address=addr) as c:
        assert c.status().cluster == "demo" and c.nodes()[0].name == "node1"
        assert c.plan(kv_spec()).created == ["kv-0", "kv-1"]
        with pytest.raises(dpr.PermissionDenied, match="read-only"):
            c.apply(kv_spec())
        with c.events() as stream:
            assert not stream.closed
        assert c.status().deployments == []  # nothing changed, same connection


def test_the_agents_own_tcp_listener_full(make_agent):
    a, addr = listening_agent(make_agent, "full")
    with dpr.connect(address=addr) as c:
        with c.events() as stream:
            c.apply(kv_spec())
            ev = None
            while ev is None or ev.type != "apply":
                ev = stream.next(10)
                assert ev is not None, "no apply event over TCP"
        assert [d.name for d in c.status().deployments] == ["kv"]
