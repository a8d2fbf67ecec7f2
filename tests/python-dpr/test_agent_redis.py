"""The agent runs dpr-redis as an implementation (`impl: dpr-redis`,
docs/dpr-redis.md): its instance file names the proxy as the program and
carries the same DPR_* settings as dpr-kv's; started from that file as its
unit would start it (no systemd here), it registers with the agent's
finder with its token and serves a DPR session of its deployment."""
import os

import pytest

import dpr
import dpr.cluster
import dprtest
from dpr.spec import CacheStore, ClusterSpec

pytestmark = pytest.mark.skipif(
    bool(dprtest.missing(dprtest.REDIS_PROXY)),
    reason="needs %s (make)" % dprtest.REDIS_PROXY)


def env_file(agent, name):
    with open(os.path.join(agent.instances, name + ".env")) as f:
        return dict(line.split("=", 1) for line in f.read().splitlines()
                    if line and not line.startswith("#"))


def test_agent_runs_a_dpr_redis_deployment(make_agent, tmp_path):
    a = make_agent(impls={"dpr-kv": dprtest.binary("dpr-kv"),
                          "dpr-redis": dprtest.REDIS_PROXY})
    spec = ClusterSpec("demo", [CacheStore("rkv", impl="dpr-redis", version="1", shards=1,
                                           checkpoint_interval_ms=50)])
    with dpr.cluster.connect(a.socket) as c:
        p = c.apply(spec)
        assert p.created == ["rkv-0"]
        d = c.status().deployment("rkv")
        assert (d.impl, d.shards) == ("dpr-redis", 1)
    env = env_file(a, "rkv-0")
    assert env["DPR_CS_EXEC"] == dprtest.REDIS_PROXY
    assert env["DPR_KV_DOMAIN"] == "rkv" and env["DPR_KV_FINDER_TOKEN"]
    # what its unit would start: the instance file's variables
    env["DPR_KV_LISTEN"] = "127.0.0.1:0"  # not the allocated port: tests run in parallel
    # (nobody gives it a layout here: serve keys at once, as the other
    # agent suites do; tests/libdpr/test_client_cluster.py has the agents'
    # layout driver give dpr-redis shards theirs)
    assert env["DPR_KV_AWAIT_LAYOUT"] == "1"
    env["DPR_KV_AWAIT_LAYOUT"] = "0"
    env["STATE_DIRECTORY"] = str(tmp_path / "rkv-0")
    shard = a.procs.add(dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]),
                                   str(tmp_path / "rkv-0"), str(tmp_path / "rkv-0.log"),
                                   env={k: v for k, v in env.items() if k.startswith("DPR_")
                                        or k == "STATE_DIRECTORY"},
                                   domain="rkv", program=dprtest.REDIS_PROXY))
    shard.wait_ready()
    client = dpr.Client(shards=[shard.address], finder=env["DPR_KV_FINDER"], domain="rkv")
    with client.session() as s:
        for i in range(10):
            assert s.set("k%d" % i, i) == b"OK"
        assert s.get("k3") == b"3"
        assert s.wait_committed(timeout=10) >= 10
    info = shard.info()
    assert info["dpr_impl"] == "dpr-redis" and info["dpr_domain"] == "rkv"
    with dpr.cluster.connect(a.socket) as c:
        fd = c.status().finder.domain("rkv")
        assert fd is not None and fd.world_line == 1 and fd.workers == 1
    shard.stop()
