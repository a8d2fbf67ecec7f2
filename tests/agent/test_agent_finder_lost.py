"""The agent's hosted finder loses its state (issue 8, item 6), on the host:
no systemd needed. dpr-kv runs by hand as the agent's instance kv-0 (the
worker id, token and settings of its instance file), commits a write, and
then the agent restarts without <state>/finder.

Checks that the loss is loud (status finder.state "lost" naming kv-0, an
error with the way out, a log line; events), that it is
not forgotten by another restart, and that it clears once the finder knows
the worker again: the state put back, or the instance registered anew (its
data reset). Also: maxmemory reaches the instance file as DPR_KV_MAXMEMORY.
"""
import json
import os
import shutil
import socket

import pytest

import dprtest

class Agent(dprtest.HostAgent):
    """The agent with one instance port (self.kv_port)."""

    def __init__(self, base):
        port = dprtest.free_port()
        super().__init__(base, port, port)
        self.kv_port = port


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    yield a
    a.procs.stop_all()


def start_kv(agent, name, reset=False):
    """dpr-kv as the agent would run it (its instance file's settings)."""
    env = agent.env(name)
    extra = {"DPR_KV_RESET": "1"} if reset else {}
    for var in ("DPR_KV_FINDER_TOKEN", "DPR_KV_DOMAIN"):
        if var in env:
            extra[var] = env[var]
    kv = dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]),
                    os.path.join(agent.base, "kv-" + name),
                    os.path.join(agent.base, "%s-%d.log" % (name, len(agent.procs.procs))),
                    port=agent.kv_port, interval_ms=50, env=extra)
    agent.procs.add(kv)
    return kv.wait_ready()


def finder_request(port, *args):
    """One RESP request to the finder; the first line of the reply."""
    req = b"*%d\r\n" % len(args)
    for x in args:
        x = str(x).encode()
        req += b"$%d\r\n%s\r\n" % (len(x), x)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(req)
        return s.makefile("rb").readline().rstrip(b"\r\n")


def committed_mark(agent, name):
    with open(os.path.join(agent.state, "agent.json")) as f:
        st = json.load(f)
    return [i.get("committed") for i in st["instances"] if i["name"] == name][0]


def test_finder_state_lost_is_loud_and_clears(agent):
    agent.start()
    agent.call("apply", {"spec": {"name": "demo", "cachestores": [
        {"name": "kv", "version": "1", "shards": 1, "maxmemory": "64mb"}]}})
    env = agent.env("kv-0")
    assert env["DPR_KV_MAXMEMORY"] == str(64 << 20) and env["DPR_MAXMEMORY"] == str(64 << 20)
    f = agent.call("status")["finder"]
    assert (f["state"], f["lost"], f["error"]) == ("ok", [], None)
    kv = start_kv(agent, "kv-0")
    c = kv.client()
    assert c.set("k", "v")
    c.connection_pool.disconnect()
    # the finder commits a version of kv-0: the agent records that it must know it
    dprtest.wait_for(lambda: (agent.instance("kv-0")["cut"] or 0) > 0, 30, "kv-0 in the cut")
    dprtest.wait_for(lambda: committed_mark(agent, "kv-0") is True, 30, "committed recorded")

    # the finder's state goes away while the agent is down
    agent.stop()
    saved = os.path.join(agent.base, "finder-copy")
    shutil.copytree(os.path.join(agent.state, "finder"), saved)
    shutil.rmtree(os.path.join(agent.state, "finder"))
    agent.start()
    f = agent.call("status")["finder"]
    assert f["state"] == "lost" and f["lost"] == ["kv-0"], f
    assert "does not know 1 worker whose versions it had committed (kv-0)" in f["error"]
    assert "The finder's state was lost" in f["error"]
    log = agent.log()
    assert "finder: the finder does not know 1 worker" in log, log

    # not forgotten once the new finder has a state of its own (another
    # worker registered: it saved one) and the agent restarts
    assert finder_request(agent.finder_port, "DPR.WORKER.ADD", "other", 99).startswith(b"*2")
    agent.stop()
    agent.start()
    assert "finder: restored 1 domain from " in agent.log()
    f = agent.call("status")["finder"]
    assert f["state"] == "lost" and f["lost"] == ["kv-0"], f

    # way out 1: the state put back: the finder knows kv-0 again
    agent.stop()
    shutil.rmtree(os.path.join(agent.state, "finder"))
    shutil.copytree(saved, os.path.join(agent.state, "finder"))
    agent.start()
    f = agent.call("status")["finder"]
    assert f["state"] == "ok" and f["lost"] == [] and f["error"] is None, f

    # way out 2: lost again, then kv-0 starts over (its data reset) and
    # registers anew: the agent says so as it happens, in one event
    agent.stop()
    kv.stop()
    shutil.rmtree(os.path.join(agent.state, "finder"))
    agent.start()
    assert agent.call("status")["finder"]["state"] == "lost"
    s, events = agent.events()
    try:
        start_kv(agent, "kv-0", reset=True)
        seen = []

        def finder_ok():
            ev = json.loads(events.readline())["event"]
            seen.append(ev)
            return ev if ev["type"] == "finder" and ev["state"] == "ok" else None
        ev = dprtest.wait_for(finder_ok, 30, "a finder event with state ok")
        assert ev["lost"] == []
        # one transition, one event: no finder event said "lost" on the way
        assert not [e for e in seen if e["type"] == "finder" and e["state"] == "lost"], seen
    finally:
        s.close()
    assert agent.call("status")["finder"]["state"] == "ok"
    assert "knows every worker it had committed versions of again" in agent.log()


def test_fresh_finder_with_nothing_committed_is_not_lost(agent):
    """Instances that never had a version committed lose nothing with the
    finder's state: no alarm (deleting finder/ of an idle cluster)."""
    agent.start()
    agent.call("apply", {"spec": {"name": "demo", "cachestores": [
        {"name": "kv", "version": "1", "shards": 1}]}})
    agent.stop()
    shutil.rmtree(os.path.join(agent.state, "finder"), ignore_errors=True)
    agent.start()
    assert agent.call("status")["finder"]["state"] == "ok"
    assert committed_mark(agent, "kv-0") is False
