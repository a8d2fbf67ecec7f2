"""mDNS discovery (the domain "local") with python3-zeroconf, on loopback
only: a Zeroconf bound to 127.0.0.1 registers the records our agent
publishes (built by dpr.dnszone.cluster_services from a real dpr-agent's
status and nodes answers), and dpr.discover, dpr.Client.discover,
dpr.connect(cluster=...) and dprctl discover browse them back with
interfaces=["127.0.0.1"]. Another cluster's records and a record of an
unknown TXT format are published too and must be left out. Cluster names
are unique per run, so records of other runs (or of anything else on the
machine) do not disturb. Skipped without python3-zeroconf, or when no mDNS
socket can be opened on loopback.
"""
import json
import os
import random
import subprocess
import threading

import pytest

import dpr
from dpr import discover as D, dnszone as Z
from dpr.errors import DiscoveryError
from dpr.spec import CacheStore, ClusterSpec

from dnssd_helpers import Relay
from dprtest import DPRCTL, PYDIR, PYTHON

zeroconf = pytest.importorskip("zeroconf", reason="python3-zeroconf is not installed")

LO = ["127.0.0.1"]


class Publisher:
    """Registers DNS-SD records on loopback as an agent would (host
    <node>.local at 127.0.0.1); unregisters them all at close()."""

    def __init__(self):
        try:
            self.zc = zeroconf.Zeroconf(interfaces=LO)
        except OSError as e:
            pytest.skip("cannot open an mDNS socket on 127.0.0.1: %s" % e)

    def info(self, stype, instance, node, port, txt):
        return zeroconf.ServiceInfo(
            "%s.local." % stype, "%s.%s.local." % (instance, stype), port=port,
            properties=dict(txt), server="%s.local." % Z.host_label(node),
            parsed_addresses=["127.0.0.1"])

    def register(self, infos):
        """Registers every ServiceInfo at once (each probes for ~1s)."""
        errors = []

        def one(info):
            try:
                self.zc.register_service(info)
            except Exception as e:  # reported below
                errors.append("%s: %r" % (info.name, e))
        threads = [threading.Thread(target=one, args=(i,)) for i in infos]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors

    def close(self):
        try:
            self.zc.unregister_all_services()
        finally:
            self.zc.close()


def unique(prefix):
    return "%s%d%04d" % (prefix, os.getpid() % 100000, random.randrange(10000))


@pytest.fixture
def published(make_agent):
    """A real agent of a cluster with a unique name, kv with 2 shards
    applied, a relay to its control socket, and its records on loopback
    mDNS (with ctl= the relay), plus another cluster's agent and a record
    of an unknown TXT format."""
    name, other = unique("m"), unique("o")
    agent = make_agent(cluster=name)
    relay = Relay(agent.socket)
    pub = Publisher()
    try:
        with dpr.connect(agent.socket) as c:
            c.apply(ClusterSpec(name, [CacheStore("kv", version="1", shards=2)]))
            status = c.request("status", {})
            nodes = c.request("nodes", {})
        nodes["nodes"][0]["ctl"] = relay.address
        services, _, _ = Z.cluster_services(status, nodes)
        infos = [pub.info(s.type, s.instance, s.node, s.port, s.txt) for s in services]
        infos.append(pub.info(D.AGENT, D.agent_instance("node1", other), "node1-" + other,
                              7000, D.agent_txt(other, "node1", "127.0.0.1:7000",
                                                state="single")))
        infos.append(pub.info(D.AGENT, D.agent_instance("n9", name), "n9-" + name, 7000,
                              {"txtvers": "2", "cluster": name, "node": "n9"}))
        pub.register(infos)
        yield dict(cluster=name, other=other, agent=agent, relay=relay, status=status)
    finally:
        pub.close()
        relay.close()


def test_browse_on_loopback(published):
    name, other = published["cluster"], published["other"]
    st = published["status"]
    eps = [i["endpoint"] for i in st["deployments"][0]["instances"]]

    (a,) = D.agents(name, interfaces=LO)
    assert a.name == "node1@%s" % name and a.domain == "local"
    assert a.host == "node1.local" and a.addresses == ["127.0.0.1"]
    assert a.port == published["agent"].finder_port
    assert a.txt == {"txtvers": "1", "cluster": name, "node": "node1", "api": "1",
                     "finder": st["finder"]["address"], "state": "single",
                     "ctl": published["relay"].address}

    found = {c.name: c for c in D.clusters(interfaces=LO)}
    assert name in found and other in found
    c = found[name]
    assert [x.node for x in c.agents] == ["node1"]  # not n9 (txtvers=2)
    assert c.finder.term == 0 and c.finder.endpoint == st["finder"]["address"]
    assert [s.endpoint for s in c.deployments["kv"]] == eps
    assert [s.shard for s in c.deployments["kv"]] == [0, 1]

    with pytest.raises(DiscoveryError) as e:
        D.find_agents(unique("x"), interfaces=LO, timeout=2)
    assert "cluster %r (node1)" % other in str(e.value)
    assert "mDNS on 127.0.0.1" in str(e.value)


def test_client_and_connect_by_cluster_name(published):
    name = published["cluster"]
    eps = [i["endpoint"] for i in published["status"]["deployments"][0]["instances"]]
    client = dpr.Client.discover(name, "kv", interfaces=LO)
    assert client.shards == eps and client.domain == "kv"
    assert client.finder == published["status"]["finder"]["address"]
    with dpr.connect(cluster=name, interfaces=LO) as c:
        assert c.address == published["relay"].address
        assert c.status().cluster == name
    assert published["relay"].accepted == 1


def test_dprctl_discover_on_loopback(published):
    name = published["cluster"]
    env = dict(os.environ, PYTHONPATH=PYDIR)
    r = subprocess.run([PYTHON, DPRCTL, "discover", "--interface", "127.0.0.1", "--cluster",
                        name, "-o", "json"], capture_output=True, text=True, env=env,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["domain"] == "local"
    (c,) = out["clusters"]
    assert c["cluster"] == name and [a["txt"]["node"] for a in c["agents"]] == ["node1"]
    assert sorted(c["deployments"]) == ["kv"] and len(c["deployments"]["kv"]) == 2
    r = subprocess.run([PYTHON, DPRCTL, "discover", "--interface", "127.0.0.1", "--cluster",
                        name], capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("cluster %s, found in domain 'local' (mDNS on 127.0.0.1" % name)
    assert published["relay"].address in r.stdout
