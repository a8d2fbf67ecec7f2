"""Each deployment its own DPR domain (issue 9), on the host: no systemd.

1. The upgrade: an agent.json with two deployments and a finder.state of
   format 2 (written by hand: a finder from before domains, one world-line
   for every worker) load in the new agent. Before it serves, the agent
   splits the finder's domain "default" into one domain per deployment:
   world-line, cuts, durable versions, tokens and the prefixes of ended
   world-lines are kept; a worker that belongs to no instance stays in
   "default"; a retired instance's worker is removed from its deployment's
   domain; instances marked committed are not reported lost. The split is
   saved (format 3) and not done again.
2. dpr-kv run by hand from the instance files of two deployments registers
   in two domains; a crash and restart of one moves only its deployment's
   world-line (status, events, log).
3. Resizes (the issue's second part), with dpr-kv run by hand from the
   instance files on their instance ports: the agent gives a new
   deployment's shards layout 1, drives a resize 2 -> 3 -> 2 (status shows
   the layout and the step; every key reads back from its owner), and
   refuses a shard count change while a resize runs.
"""
import json
import os
import signal
import struct
import sys
import zlib

import pytest
import redis

import dprtest

class Agent(dprtest.HostAgent):
    def finder(self):
        return redis.Redis(host="127.0.0.1", port=self.finder_port, socket_timeout=10)


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    yield a
    a.procs.stop_all()


def apply(agent, *deployments):
    return agent.call("apply", {"spec": {"name": "demo", "cachestores": [
        {"name": n, "version": "1", "shards": shards} for n, shards in deployments]}})


def format2_state(world_line, generation, workers, prefixes):
    """finder.state as a finder from before domains wrote it (format 2,
    docs/finder-store.md): workers [(id, cut, durable, token)], prefixes
    [(ended world-line, [(worker, version)])]."""
    b = b"DPRFIND\0" + bytes([2]) + struct.pack("<QQQ", world_line, generation, len(workers))
    for w, cut, durable, token in sorted(workers):
        b += struct.pack("<QQQB", w, cut, durable, len(token)) + token.encode()
    b += struct.pack("<Q", len(prefixes))
    for wl, cut in prefixes:
        b += struct.pack("<QQ", wl, len(cut))
        for w, v in sorted(cut):
            b += struct.pack("<QQ", w, v)
    return b + struct.pack("<I", zlib.crc32(b) & 0xffffffff)


def flat(a):
    return {int(a[i]): int(a[i + 1]) for i in range(0, len(a), 2)}


def test_upgrade_splits_the_default_domain_per_deployment(agent):
    agent.start()
    apply(agent, ("kv", 3), ("sessions", 2))
    apply(agent, ("kv", 2), ("sessions", 2))        # kv-2 retires
    agent.stop()
    path = os.path.join(agent.state, "agent.json")
    with open(path) as f:
        st = json.load(f)
    inst = {i["name"]: i for i in st["instances"]}
    (kv2,) = st["retiring"]
    assert kv2["name"] == "kv-2"
    # as the old agent left it: kv-2's unit stopped and cleaned, its worker
    # still to be removed from the finder; kv-0 and sessions-0 committed
    kv2["unit_retired"] = True
    inst["kv-0"]["committed"] = inst["sessions-0"]["committed"] = True
    with open(path, "w") as f:
        json.dump(st, f)
    w = {n: i["worker"] for n, i in inst.items()}
    w["kv-2"] = kv2["worker"]
    tok = {n: i["token"] for n, i in inst.items()}
    stray = 99                                  # registered by hand, no instance
    # (worker, cut, durable, token); sessions-1 registered before tokens
    workers = [(w["kv-0"], 5, 7, tok["kv-0"]), (w["kv-1"], 4, 4, tok["kv-1"]),
               (w["kv-2"], 6, 6, kv2["token"]), (w["sessions-0"], 9, 9, tok["sessions-0"]),
               (w["sessions-1"], 8, 10, ""), (stray, 2, 2, "")]
    prefixes = [(1, [(w["kv-0"], 2), (w["kv-1"], 1), (w["sessions-0"], 3), (stray, 1)]),
                (2, [(w["kv-0"], 3), (w["kv-1"], 3), (w["kv-2"], 4), (w["sessions-0"], 5),
                     (w["sessions-1"], 6)])]
    os.makedirs(os.path.join(agent.state, "finder"), mode=0o700, exist_ok=True)
    state_file = os.path.join(agent.state, "finder", "finder.state")
    with open(state_file, "wb") as f:
        f.write(format2_state(3, 40, workers, prefixes))
    os.chmod(state_file, 0o600)

    agent.start()
    log = agent.log()
    assert ("finder: upgrade: 3 workers of deployment 'kv' moved from domain 'default' into "
            "domain 'kv', keeping world-line 3") in log, log
    assert "finder: upgrade: 2 workers of deployment 'sessions' moved" in log, log
    assert "domain 'default' keeps 1 worker that belongs to no instance" in log, log
    # saved before serving, in the format with domains
    with open(state_file, "rb") as f:
        assert f.read()[8] == 3
    # the retired instance's worker leaves its deployment's domain
    dprtest.wait_for(lambda: agent.call("status")["retiring"] == [], 30, "kv-2 retired")
    s = agent.call("status")
    assert s["finder"]["state"] == "ok", s["finder"]    # kv-0, sessions-0 known: not lost
    doms = {d["name"]: d for d in s["finder"]["domains"]}
    assert sorted(doms) == ["default", "kv", "sessions"]
    assert {n: (d["world_line"], d["workers"]) for n, d in doms.items()} == \
        {"default": (3, 1), "kv": (3, 2), "sessions": (3, 2)}
    deps = {d["name"]: d for d in s["deployments"]}
    assert (deps["kv"]["world_line"], deps["kv"]["cut"]) == (3, [5, 4])
    # sessions-1's durable version 9 commits by the minimum rule once its
    # domain no longer holds the slower kv workers (docs/operations.md,
    # "Upgrading to domains")
    assert (deps["sessions"]["world_line"], deps["sessions"]["cut"]) == (3, [9, 9])
    assert [i["durable_version"] for i in deps["kv"]["instances"]] == [7, 4]
    assert [i["durable_version"] for i in deps["sessions"]["instances"]] == [9, 10]
    assert [i["world_line"] for i in deps["sessions"]["instances"]] == [3, 3]
    assert deps["kv"]["max_version"] >= 7 and deps["sessions"]["max_version"] >= 10

    # the finder serves each domain with what it had
    f = agent.finder()
    wl, _, cut = f.execute_command("DPR.SYNC", "kv")
    assert wl == 3 and flat(cut) == {w["kv-0"]: 5, w["kv-1"]: 4}
    wl, _, cut = f.execute_command("DPR.SYNC", "sessions")
    assert wl == 3 and flat(cut) == {w["sessions-0"]: 9, w["sessions-1"]: 9}
    wl, _, cut = f.execute_command("DPR.SYNC", "default")
    assert wl == 3 and flat(cut) == {stray: 2}
    # the prefixes of the ended world-lines, each domain's workers only
    assert flat(f.execute_command("DPR.PREFIX", "sessions", 2)) == \
        {w["sessions-0"]: 5, w["sessions-1"]: 6}
    p = flat(f.execute_command("DPR.PREFIX", "kv", 1))
    assert {k: v for k, v in p.items() if k != w["kv-2"]} == {w["kv-0"]: 2, w["kv-1"]: 1}
    assert flat(f.execute_command("DPR.PREFIX", "sessions", 1)) == {w["sessions-0"]: 3}
    # the tokens moved with the workers
    with pytest.raises(redis.ResponseError, match="registered by its owner"):
        f.execute_command("DPR.WORKER.ADD", "kv", w["kv-0"])
    f.close()

    # a second start: nothing to split any more, the same domains
    agent.stop()
    agent.start()
    assert "upgrade:" not in agent.log()
    assert "finder: restored 3 domains from " in agent.log()
    assert {d["name"]: d["world_line"] for d in agent.call("status")["deployments"]} == \
        {"kv": 3, "sessions": 3}

    # a restart of kv-0 (it registers again, with its token) moves kv's
    # world-line only; the event names the domain
    sock, events = agent.events()
    try:
        f = agent.finder()
        wl, restore = f.execute_command("DPR.WORKER.ADD", "kv", w["kv-0"], tok["kv-0"])
        f.close()
        assert (wl, restore) == (4, 5)

        def kv_event():
            ev = json.loads(events.readline())["event"]
            return ev if ev["type"] == "finder" and ev.get("domain") == "kv" else None
        ev = dprtest.wait_for(kv_event, 30, "a finder event of domain kv")
        assert ev["world_line"] == 4 and ev["state"] == "ok"
    finally:
        sock.close()
    assert {d["name"]: d["world_line"] for d in agent.call("status")["deployments"]} == \
        {"kv": 4, "sessions": 3}
    assert "finder: domain 'kv': world-line 4 (was 3)" in agent.log()
    agent.stop()


def start_kv(agent, tmp, name):
    """dpr-kv as the unit would run it: its instance file's variables (on a
    port of its own: tests run in parallel)."""
    env = {k: v for k, v in agent.env(name).items() if k.startswith("DPR_")}
    env["DPR_KV_LISTEN"] = "127.0.0.1:0"
    # off its instance port the agent cannot give it a layout: serve at once
    env["DPR_KV_AWAIT_LAYOUT"] = "0"
    kv = dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]), str(tmp / name),
                    str(tmp / (name + ".log")), interval_ms=50, env=env)
    agent.procs.add(kv)
    return kv.wait_ready()


def test_a_crash_moves_only_its_deployments_world_line(agent, tmp_path):
    dprtest.need(dprtest.KV)
    agent.start()
    apply(agent, ("kv", 1), ("sessions", 1))
    assert agent.env("kv-0")["DPR_KV_DOMAIN"] == "kv"
    assert agent.env("sessions-0")["DPR_KV_DOMAIN"] == "sessions"
    kv = start_kv(agent, tmp_path, "kv-0")
    start_kv(agent, tmp_path, "sessions-0")
    assert kv.info()["dpr_domain"] == "kv"
    dprtest.wait_for(lambda: {n: d["world_line"] for n, d in agent.deployments().items()}
                     == {"kv": 1, "sessions": 1}, 30, "both deployments registered")
    doms = agent.call("status")["finder"]["domains"]
    assert [(d["name"], d["workers"]) for d in doms] == [("kv", 1), ("sessions", 1)]
    c = kv.client()
    assert c.set("k", "v")
    c.connection_pool.disconnect()
    dprtest.wait_for(lambda: (agent.deployments()["kv"]["cut"][0] or 0) > 0, 30,
                     "kv-0's write committed")

    sock, events = agent.events()
    try:
        kv.kill()
        kv = agent.procs.add(kv.again()).wait_ready()

        def kv_event():
            ev = json.loads(events.readline())["event"]
            return ev if ev["type"] == "finder" and ev.get("domain") == "kv" and \
                ev["world_line"] == 2 else None
        dprtest.wait_for(kv_event, 30, "a finder event: kv on world-line 2")
    finally:
        sock.close()
    deps = agent.deployments()
    assert (deps["kv"]["world_line"], deps["sessions"]["world_line"]) == (2, 1)
    assert deps["kv"]["instances"][0]["world_line"] == 2
    assert deps["sessions"]["instances"][0]["world_line"] == 1
    assert "finder: domain 'kv': world-line 2 (was 1)" in agent.log()
    assert "domain 'sessions': world-line" not in agent.log()
    agent.stop()


def test_an_update_restart_keeps_the_world_line(agent, tmp_path):
    """Issue 13: an update restarts the instances (systemd's RestartUnit:
    SIGTERM, then a start). The stopping shard leaves the agent's finder on
    purpose and comes back on the same world-line: no rollback of its
    deployment, its data reads back."""
    dprtest.need(dprtest.KV)
    agent.start()
    apply(agent, ("kv", 2))
    kvs = [start_kv(agent, tmp_path, "kv-%d" % i) for i in range(2)]
    dprtest.wait_for(lambda: agent.deployments()["kv"]["world_line"] == 1, 30,
                     "kv registered")
    for i, kv in enumerate(kvs):
        c = kv.client()
        assert c.set("k%d" % i, "v%d" % i)
        c.connection_pool.disconnect()
    dprtest.wait_for(lambda: all((v or 0) > 0 for v in agent.deployments()["kv"]["cut"]), 30,
                     "both writes committed")
    r = agent.call("apply", {"spec": {"name": "demo", "cachestores": [
        {"name": "kv", "version": "2", "shards": 2}]}})
    assert r["plan"]["updated"] == ["kv-0", "kv-1"]
    # what the unit's restart does (KillMode=mixed: SIGTERM to dpr-kv)
    kvs[0].kill(signal.SIGTERM)
    assert kvs[0].wait_exit() == 0
    assert "left the finder on purpose" in kvs[0].output()
    again = agent.procs.add(kvs[0].again()).wait_ready()
    assert "world-line 1, restore version" in again.output()
    c = again.client()
    assert c.get("k0") == b"v0"
    assert c.set("k0", "w0")
    c.connection_pool.disconnect()
    dprtest.wait_for(lambda: again.info()["dpr_cut_version"] >= 2, 30,
                     "the restarted shard's write committed")
    deps = agent.deployments()
    assert deps["kv"]["world_line"] == 1
    assert [i["world_line"] for i in deps["kv"]["instances"]] == [1, 1]
    assert "domain 'kv': world-line 2" not in agent.log()
    assert kvs[1].info()["dpr_rollbacks"] == 0
    agent.stop()


def start_instance(agent, tmp, name):
    """dpr-kv as the unit would run it, on its instance port (the address
    the agent gives its layout)."""
    env = {k: v for k, v in agent.env(name).items() if k.startswith("DPR_")}
    kv = dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]), str(tmp / name),
                    str(tmp / (name + ".log")), port=int(env["DPR_KV_LISTEN"].rsplit(":", 1)[1]),
                    interval_ms=50, env=env)
    agent.procs.add(kv)
    return kv.wait_ready()


def test_resizes_driven_by_the_agent(tmp_path):
    dprtest.need(dprtest.KV)
    if dprtest.PYDIR not in sys.path:
        sys.path.insert(0, dprtest.PYDIR)
    from dpr.route import shard_of
    base = dprtest.free_port()
    agent = Agent(tmp_path, base, base + 9)
    try:
        agent.start()
        apply(agent, ("kv", 2))
        kvs = {n: start_instance(agent, tmp_path, n) for n in ("kv-0", "kv-1")}

        def layout():
            return agent.deployments()["kv"]["layout"]
        dprtest.wait_for(lambda: layout() == {"epoch": 1, "shards": 2, "resize": None}, 30,
                         "layout 1 given to the shards")
        assert kvs["kv-1"].info()["dpr_layout_shard"] == 1
        keys = {"k%d" % i: b"%d" % i for i in range(400)}
        for k, v in keys.items():
            kvs["kv-%d" % shard_of(k, 2)].client().set(k, v)

        # grow: the plan and the status say so; kv-2 starts empty
        r = agent.call("plan", {"spec": {"name": "demo", "cachestores": [
            {"name": "kv", "version": "1", "shards": 3}]}})
        assert r["plan"]["resizes"] == [{"deployment": "kv", "from": 2, "to": 3, "epoch": 2,
                                        "moves": pytest.approx(1 / 3)}]
        apply(agent, ("kv", 3))
        assert layout()["resize"]["from"] == 2 and layout()["resize"]["to"] == 3
        # another count while it runs is refused
        reply = agent.request("apply", {"spec": {"name": "demo", "cachestores": [
            {"name": "kv", "version": "1", "shards": 4}]}})
        assert reply["ok"] is False and "being resized from 2 to 3 shards" in json.dumps(reply)
        kvs["kv-2"] = start_instance(agent, tmp_path, "kv-2")
        dprtest.wait_for(lambda: layout() == {"epoch": 2, "shards": 3, "resize": None}, 60,
                         "the resize to 3 shards")
        for k, v in keys.items():
            assert kvs["kv-%d" % shard_of(k, 3)].client().get(k) == v, k
        assert sum(kv.client().dbsize() for kv in kvs.values()) == len(keys)
        assert "deployment 'kv' resized from 2 to 3 shards (layout 2)" in agent.log()

        # shrink: kv-2 gives its keys to kv-0 and kv-1, then retires
        apply(agent, ("kv", 2))
        dprtest.wait_for(lambda: layout() == {"epoch": 3, "shards": 2, "resize": None}, 60,
                         "the resize to 2 shards")
        for k, v in keys.items():
            assert kvs["kv-%d" % shard_of(k, 2)].client().get(k) == v, k
        assert kvs["kv-2"].client().dbsize() == 0
        assert sum(kvs["kv-%d" % i].client().dbsize() for i in (0, 1)) == len(keys)
        agent.stop()
    finally:
        agent.procs.stop_all()

