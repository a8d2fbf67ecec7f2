"""Agents forming a Raft cluster on the host (no systemd): the finder runs
on the leader's agent only, with its state in the replicated log; followers
name the leader (NOTLEADER) or say there is none yet (TRYAGAIN); dpr-kv and
the Python client follow them; a leader killed with SIGKILL costs neither
the finder's state nor a committed operation.

Agent i listens on 127.0.0.<i+1> (every address of 127/8 is local), so all
agents share one finder port as the nodes of a real cluster do.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import redis

import dprtest
from dprtest import AGENT, Kv, RaftAgents, wait_for

if dprtest.PYDIR not in sys.path:
    sys.path.insert(0, dprtest.PYDIR)
import dpr  # noqa: E402



def finder_call(host_port: str, *args):
    host, port = host_port.rsplit(":", 1)
    c = redis.Redis(host=host, port=int(port), socket_timeout=10)
    try:
        return c.execute_command(*args)
    finally:
        c.close()


def finder_error(host_port: str, *args) -> str:
    with pytest.raises(redis.ResponseError) as e:
        finder_call(host_port, *args)
    return str(e.value)


@pytest.fixture
def agents(tmp_path):
    ra = RaftAgents(str(tmp_path), 3)
    try:
        yield ra.start()
    finally:
        ra.close()


def finder_of(a) -> str:
    return "%s:%d" % (a.host, a.finder_port)


def test_one_leader_serves_the_finder_and_followers_name_it(agents):
    leader = agents.leader()
    followers = [a for a in agents.agents if a is not leader]
    assert finder_call(finder_of(leader), "DPR.WORKER.ADD", "kv", "1")[0] == 1
    for f in followers:
        # (a follower names the leader once it heard from it: TRYAGAIN before)
        wait_for(lambda f=f: finder_error(finder_of(f), "DPR.SYNC", "kv") ==
                 "NOTLEADER " + finder_of(leader), timeout=10,
                 what="%s naming the leader" % f.node)
        assert finder_call(finder_of(f), "PING") in (b"PONG", True)
    nodes = followers[0].call("nodes")
    assert len(nodes["nodes"]) == 3
    assert [n["address"] for n in nodes["nodes"] if n["leader"]] == \
        ["%s:%d" % (leader.host, agents.raft_port)]
    assert nodes["raft"]["role"] == "follower" and nodes["raft"]["quorum"] is True
    st = followers[0].call("status")
    assert st["finder"]["served_here"] is False
    assert st["finder"]["address"] == agents.finders
    # a follower shows the replicated (committed) finder state
    wait_for(lambda: [d["name"] for d in followers[0].call("status")["finder"]["domains"]]
             == ["kv"], what="the follower's view of the replicated state")
    # dprctl names the leader
    env = dict(os.environ, PYTHONPATH=dprtest.PYDIR)
    out = subprocess.run(["/usr/bin/python3", "-m", "dpr.cli", "--socket", followers[0].sock,
                          "status"], capture_output=True, text=True, env=env).stdout
    assert "raft: leader %s:%d, term" % (leader.host, agents.raft_port) in out, out
    assert "this node is follower" in out, out
    out = subprocess.run(["/usr/bin/python3", "-m", "dpr.cli", "--socket", leader.sock,
                          "nodes"], capture_output=True, text=True, env=env).stdout
    assert out.splitlines()[0].split()[:3] == ["NODE", "ADDRESS", "SELF"], out
    assert len(out.splitlines()) == 4, out


def test_metrics_show_raft_roles_terms_and_the_finder(tmp_path):
    """Each agent's metrics: its Raft role and term, whether it serves the
    finder; a new leader after a kill -9 shows a higher term."""
    import promscrape
    ra = RaftAgents(str(tmp_path), 3, metrics=True)
    try:
        ra.start()
        leader = ra.leader()
        addrs = {a.node: promscrape.address(a.proc) for a in ra.agents}

        def roles():
            got = {}
            for a in ra.running():
                m = promscrape.scrape(addrs[a.node])
                role = [s.labels["role"] for s in m.samples["dpr_agent_raft_role"]
                        if s.value == 1]
                got[a.node] = (role[0] if role else None, m.value("dpr_agent_raft_term"),
                               m.value("dpr_agent_finder_serving"),
                               m.value("dpr_finder_serving"))
            return got
        seen = wait_for(lambda: (lambda r: r if sorted(x[0] for x in r.values()) ==
                                 ["follower", "follower", "leader"] else None)(roles()),
                        what="one leader and two followers in the metrics")
        assert seen[leader.node][0] == "leader" and seen[leader.node][2:] == (1, 1)
        term = seen[leader.node][1]
        assert term >= 1 and all(x[1] == term for x in seen.values()), seen
        assert all(x[2:] == (0, 0) for n, x in seen.items() if n != leader.node), seen
        m = promscrape.scrape(addrs[leader.node])
        assert m.value("dpr_agent_raft_member") == 1

        leader.proc.kill(signal.SIGKILL)
        new = ra.leader()
        assert new is not leader
        seen = wait_for(lambda: (lambda r: r if r.get(new.node, (None,))[0] == "leader"
                                 else None)(roles()), what="the new leader in its metrics")
        assert seen[new.node][1] > term and seen[new.node][2:] == (1, 1), seen
    finally:
        ra.close()


def test_leader_kill9_keeps_state_and_committed_operations(agents, procs, tmp_path):
    agents.leader()
    kvs = [procs.add(Kv(agents.finders, w, str(tmp_path / ("kv%d" % w)),
                        str(tmp_path / ("kv%d.log" % w)), port=dprtest.free_port(),
                        interval_ms=20, domain="kv"))
           for w in (11, 12)]
    for kv in kvs:
        kv.wait_ready()
    client = dpr.Client(shards=[kv.address for kv in kvs], finder=agents.finders, domain="kv",
                        reconnect_timeout=30)
    committed = {}
    with client.session() as s:
        for i in range(200):
            s.set("a%d" % i, "v%d" % i)
        s.wait_committed(timeout=20)
        committed.update({"a%d" % i: "v%d" % i for i in range(200)})
        leader = agents.leader()
        gone = leader.call("status")["node"]
        wl, _, cut_before = finder_sync(leader)
        leader.proc.kill(signal.SIGKILL)
        new = wait_for(lambda: agents.leader() if agents.leader() is not leader else None,
                       timeout=20, what="a new leader")
        assert new is not leader
        # the new leader sees the old one as unreachable
        wait_for(lambda: members(new).get(gone, {}).get("health") == "unreachable", timeout=10,
                 what="%s shown unreachable" % gone)
        wl2, _, cut_after = finder_sync(new)
        # the world-line is the same (no cache-store died), the cut never goes back
        assert wl2 == wl
        for w, v in cut_before.items():
            assert cut_after.get(w, 0) >= v, (w, cut_before, cut_after)
        for i in range(200, 400):
            s.set("a%d" % i, "v%d" % i)
        s.wait_committed(timeout=30)
        committed.update({"a%d" % i: "v%d" % i for i in range(200, 400)})
        for k, v in committed.items():
            assert s.get(k) == v.encode()
    # the old leader comes back as a follower of the cluster that moved on
    leader.start()
    wait_for(lambda: leader.call("nodes")["raft"]["role"] == "follower", timeout=20,
             what="the old leader rejoining as follower")
    assert agents.leader() is new
    assert all("raft: cannot apply" not in a.log() for a in agents.agents)


def finder_sync(a, domain="kv"):
    wl, maxv, flat = finder_call(finder_of(a), "DPR.SYNC", domain)
    return wl, maxv, dict(zip(flat[::2], flat[1::2]))


def test_two_of_three_lost_no_quorum_then_back(agents):
    leader = agents.leader()
    finder_call(finder_of(leader), "DPR.WORKER.ADD", "kv", "5")
    others = [a for a in agents.agents if a is not leader]
    others[0].proc.kill(signal.SIGKILL)
    others[1].proc.kill(signal.SIGKILL)
    # the lone agent stops serving the finder (its majority is gone)
    wait_for(lambda: not leader.call("status")["finder"]["served_here"], timeout=20,
             what="the leader without quorum to stop serving")
    err = wait_for(lambda: _error_or_none(finder_of(leader)), timeout=20,
                   what="a refusal without quorum")
    assert err.startswith("TRYAGAIN"), err
    assert leader.call("nodes")["raft"]["quorum"] is False
    others[0].start()
    new = agents.leader(timeout=30)
    assert finder_sync(new)[2] == {5: 0}


def _error_or_none(hp):
    try:
        finder_call(hp, "DPR.SYNC", "kv")
        return None
    except redis.ResponseError as e:
        return str(e)


@pytest.mark.parametrize("raft,why", [
    ('raft = { address = "node1:7400"; };', "'raft.address' must be IPV4:PORT"),
    ('raft = { peers = ["10.0.0.2:7400"]; };', "'raft.address' is required"),
    ('raft = { address = "10.0.0.1:7400"; peers = ["x"]; };', "'raft.peers' entry 1"),
    ('raft = { address = "10.0.0.1:7400"; peers = "10.0.0.2:7400"; };',
     "'raft.peers' must be a list"),
    ('raft = { address = "10.0.0.1:7400"; election_timeout_ms = 100; '
     'heartbeat_timeout_ms = 60; };', "at most half"),
    ('raft = { address = "10.0.0.1:7400"; bootstrap = true; };', "raft.bootstrap"),
    ('discovery = { enabled = false; };\nraft = { address = "10.0.0.1:7400"; join = true; };',
     "'raft.join' needs 'raft.peers'"),
    ('raft = { address = "10.0.0.1:7400"; peers = ["10.0.0.2:7400"]; expect = 3; };',
     "'raft.expect' is for a cluster without a seed list"),
    ('raft = { address = "10.0.0.1:7400"; node_down_after_ms = 900; };',
     "'raft.node_down_after_ms' is out of range"),
    ('raft = { address = "10.0.0.1:7400"; election_timeout_ms = 1000; '
     'node_down_after_ms = 2000; };', "above twice 'raft.election_timeout_ms'"),
    ('node = { labels = ["A"]; };', "'node.labels' entry 1 must be a label"),
    ('tls = { enabled = "yes"; };', "'tls.enabled' must be true or false"),
    ('tls = { enabled = true; cert = "n1.crt"; };', "'tls.cert' must be an absolute path"),
    ('tls = { enabled = true; certificate = "/x"; };', "tls.certificate"),
    ('tls = { enabled = true; cert = "/nonexistent/n1.crt"; };',
     "tls: cannot read /nonexistent/n1.crt"),
])
def test_bad_raft_settings_are_refused(tmp_path, raft, why):
    conf = tmp_path / "agent.conf"
    conf.write_text('cluster = "demo";\nfinder = { listen = "127.0.0.1:7000"; };\n' + raft + "\n")
    r = subprocess.run([AGENT, "--check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0
    assert why in r.stdout + r.stderr, r.stdout + r.stderr


def test_finder_port_zero_is_refused_in_a_cluster(tmp_path):
    conf = tmp_path / "agent.conf"
    conf.write_text('cluster = "demo";\nfinder = { listen = "127.0.0.1:0"; };\n'
                    'raft = { address = "127.0.0.1:7400"; };\n')
    r = subprocess.run([AGENT, "--check-config", str(conf)], capture_output=True, text=True)
    assert r.returncode != 0 and "needs a port" in r.stdout + r.stderr


def members(a):
    return {n["name"]: n for n in a.call("nodes")["nodes"]}


def test_nodes_are_named_and_join_and_removal_keep_five_voters(agents):
    leader = agents.leader()
    # every bootstrap member said hello: the leader's table names them all
    wait_for(lambda: sorted(members(leader)) == ["n1", "n2", "n3"], timeout=20,
             what="the three nodes named")
    view = members(leader)
    assert all(n["role"] == "voter" and n["health"] == "ok" for n in view.values()), view
    sock, stream = leader.events()  # the leader's events: nodes joining and leaving
    # three more agents join through the first three: voters up to five
    for k in range(3):
        j = agents.add_joiner().start()
        wait_for(lambda: j.call("nodes")["raft"]["role"] == "follower" and
                 "n%d" % (4 + k) in members(agents.leader()), timeout=30,
                 what="n%d joined" % (4 + k))
    view = wait_for(lambda: (lambda v: v if sorted(n["role"] for n in v.values()) ==
                             ["standby"] + ["voter"] * 5 else None)(members(agents.leader())),
                    timeout=30, what="five voters and one standby")
    standby = [name for name, n in view.items() if n["role"] == "standby"][0]
    leader = agents.leader()
    # removal from a follower is sent to the leader; a voter's place goes to the standby
    follower = [a for a in agents.agents if a is not leader][0]
    victim = [name for name, n in view.items() if n["role"] == "voter" and not n["leader"] and
              name != follower.call("status")["node"]][0]
    r = follower.request("node_remove", {"name": victim})
    assert r["ok"] is True and victim in r["result"]["removing"], r
    view = wait_for(lambda: (lambda v: v if victim not in v and
                             v.get(standby, {}).get("role") == "voter" else None)(
                                 members(agents.leader())),
                    timeout=30, what="%s removed and %s promoted" % (victim, standby))
    assert len(view) == 5 and all(n["role"] == "voter" for n in view.values()), view
    # the cluster goes on without it (a removed agent's pre-votes change nothing)
    assert agents.leader() is not None
    seen = []
    sock.settimeout(5)
    try:
        while not (len([e for e in seen if e.get("state") == "joined"]) == 3 and
                   any(e.get("state") == "left" for e in seen)):
            ev = json.loads(stream.readline())["event"]
            if ev["type"] == "node":
                seen.append(ev)
    finally:
        sock.close()
    # (a member the node table does not name yet is named by its address)
    assert any(e["name"] in ("n4", "127.0.0.4:%d" % agents.raft_port)
               for e in seen if e["state"] == "joined"), seen
    # refusals: unknown, the leader itself, not a cluster
    r = follower.request("node_remove", {"name": "nope"})
    assert r["ok"] is False and r["error"]["code"] == "not_found", r
    lead = agents.leader()
    r = lead.request("node_remove", {"name": lead.call("status")["node"]})
    assert r["ok"] is False and "is the leader" in r["error"]["message"], r


def test_a_single_nodes_finder_state_is_carried_into_its_new_cluster(tmp_path, procs):
    a = dprtest.HostAgent(str(tmp_path / "n1"), node="n1")
    procs.add(a.start().proc)
    hp = "127.0.0.1:%d" % a.finder_port
    finder_call(hp, "DPR.WORKER.ADD", "kv", "7", "a-token")
    finder_call(hp, "DPR.WORKER.ADD", "kv", "8")
    finder_call(hp, "DPR.WORKER.ADD", "kv", "7", "a-token")  # a restart: world-line 2
    before = finder_call(hp, "DPR.SYNC", "kv")
    assert before[0] == 2, before
    a.stop()
    # the same node becomes a one-member cluster (a seed list of itself)
    with open(a.conf, "a") as f:
        f.write('raft = { address = "127.0.0.1:%d"; peers = ["127.0.0.1:%d"]; '
                'election_timeout_ms = 300; heartbeat_timeout_ms = 50; };\n'
                % ((port := dprtest.free_port()), port))
    procs.add(a.start().proc)
    wait_for(lambda: a.call("status")["finder"]["served_here"], timeout=20,
             what="the one-member cluster's finder")
    assert finder_call(hp, "DPR.SYNC", "kv") == before
    assert "importing this node's single-node finder state" in a.log()
    # the token came along: only its owner re-registers worker 7
    err = finder_error(hp, "DPR.WORKER.ADD", "kv", "7", "another-token")
    assert "registered by its owner" in err, err
    # a restart reads the log, not the file again
    a.stop()
    procs.add(a.start().proc)
    wait_for(lambda: a.call("status")["finder"]["served_here"], timeout=20,
             what="the finder after a restart")
    assert finder_call(hp, "DPR.SYNC", "kv") == before
    assert "importing" not in a.log()


def test_c_client_follows_the_finder_across_a_leader_kill(agents, procs, tmp_path):
    """libdpr's client with the cluster's finders (a follower's first): it
    follows NOTLEADER, survives the leader's agent killed with SIGKILL, and
    reads back everything it wrote."""
    driver = dprtest.binary("tests/client-driver")
    leader = agents.leader()
    kv = procs.add(Kv(agents.finders, 21, str(tmp_path / "kv21"), str(tmp_path / "kv21.log"),
                      port=dprtest.free_port(), interval_ms=20, domain="kv"))
    kv.wait_ready()
    argv = [driver]
    for a in sorted(agents.agents, key=lambda a: a is leader):  # the leader last
        argv += ["--finder", "%s:%d" % (a.host, agents.finder_port)]
    p = procs.add(dprtest.Proc(argv + ["--shard", kv.address, "--domain", "kv",
                                       "--seconds", "4", "follow"],
                               str(tmp_path / "driver.log"), name="client-driver"))
    p.wait_ready("READY")
    time.sleep(1)
    leader.proc.kill(signal.SIGKILL)
    assert p.wait_exit(120) == 0, p.output()
    assert "PASS follow" in p.output()


def test_a_follower_lost_and_back_catches_up(agents):
    leader = agents.leader()
    follower = [a for a in agents.agents if a is not leader][0]
    follower.proc.kill(signal.SIGKILL)

    def add(w):
        # (on a loaded machine the two left may hold an election meanwhile:
        # the call goes to whichever leads; adding a worker twice is one add)
        try:
            return finder_call(finder_of(agents.leader()), "DPR.WORKER.ADD", "kv", str(w))
        except (redis.ConnectionError, redis.ResponseError):
            return None

    # the cluster goes on without it: many commits, enough for a snapshot
    for w in range(1, 40):
        wait_for(lambda: add(w), timeout=20, what="worker %d added" % w)
    want = finder_sync(agents.leader())
    follower.start()
    wait_for(lambda: follower.call("nodes")["raft"]["role"] == "follower", timeout=20,
             what="the follower back")
    # it caught up: its view of the replicated state is the leader's
    wait_for(lambda: {d["name"]: d["workers"] for d in
                      follower.call("status")["finder"]["domains"]} == {"kv": 39},
             timeout=20, what="the follower caught up")
    assert finder_sync(agents.leader()) == want


def test_the_leaders_agent_stops_cleanly_and_another_leads(agents):
    leader = agents.leader()
    finder_call(finder_of(leader), "DPR.WORKER.ADD", "kv", "3")
    want = finder_sync(leader)
    watcher = [a for a in agents.agents if a is not leader][0]
    sock, stream = watcher.events()
    leader.stop()  # SIGTERM: exits 0 (HostAgent.stop checks it)
    new = wait_for(lambda: agents.leader() if agents.leader() is not leader else None,
                   timeout=20, what="another leader")
    assert finder_sync(new) == want
    # the watcher's events tell the new leader
    new_raft = "%s:%d" % (new.host, agents.raft_port)
    sock.settimeout(10)
    try:
        while True:
            ev = json.loads(stream.readline())["event"]
            if ev["type"] == "raft" and ev["leader"] == new_raft:
                break
    finally:
        sock.close()
    leader.start()
    wait_for(lambda: leader.call("nodes")["raft"]["role"] == "follower", timeout=20,
             what="the stopped agent back as a follower")


def spec_of(*deps, **fields):
    return {"name": "demo", "cachestores": [dict(name=n, shards=k, version="1", **fields)
                                             for n, k in deps]}


def local_deployments(a):
    """The deployments a's status lists (the whole cluster's)."""
    return sorted(d["name"] for d in a.call("status")["deployments"])


def own_instances(a):
    """The instances a runs itself (its recorded state)."""
    return sorted(i["name"] for d in a.call("status")["deployments"] for i in d["instances"]
                  if i.get("node") == a.node and i.get("unit") and "active_state" in i
                  and "main_pid" in i)


def own_deployments(a):
    return sorted({n.rsplit("-", 1)[0] for n in own_instances(a)})


def test_apply_and_delete_on_any_node_go_through_the_leader(agents):
    leader = agents.placeable()
    n1, n2, n3 = agents.agents
    # kv applied on n2: its shards spread over the nodes; n2 runs its part
    r = n2.call("apply", {"spec": spec_of(("kv", 2))})
    assert r["placement"] == {"kv": ["n1", "n2"]} and r["cluster_generation"] == 1, r
    assert r["plan"]["created"] == ["kv-1"], r
    assert own_instances(n2) == ["kv-1"]
    for a in agents.agents:
        wait_for(lambda a=a: (a.call("status").get("cluster_spec") or {}).get("generation") == 1,
                 timeout=10, what="the record on every node")
    wait_for(lambda: own_instances(n1) == ["kv-0"], timeout=10, what="n1 running kv-0")
    # every node shows the whole deployment as its nodes published it; a
    # client finds it anywhere
    def whole_kv(a):
        deps = [d for d in a.call("status")["deployments"] if d["name"] == "kv"]
        return deps[0] if deps and all(i.get("endpoint") for i in deps[0]["instances"]) \
            else None
    kv = wait_for(lambda: whole_kv(n3), timeout=10, what="kv seen from n3")
    assert [i["node"] for i in kv["instances"]] == ["n1", "n2"] and kv["nodes"] == 2, kv
    assert [i["worker"] for i in kv["instances"]] == [1, 2], kv
    assert kv["instances"][0]["endpoint"].startswith("127.0.0.1:"), kv
    assert kv["instances"][1]["endpoint"].startswith("127.0.0.2:"), kv
    # (n1 may apply the last instance record a moment after n3)
    kv1 = wait_for(lambda: whole_kv(n1), timeout=10, what="kv seen from n1")
    assert [i["endpoint"] for i in kv1["instances"]] == [i["endpoint"] for i in kv["instances"]]
    with dpr.connect(n3.sock) as cluster:
        client = cluster.client("kv")
        assert client.shards == [i["endpoint"] for i in kv["instances"]]
        assert client.finders == agents.finders.split(",")
    assert local_deployments(n1) == ["kv"] and local_deployments(n3) == ["kv"]
    # n3 applies kv and sessions: kv stays, sessions goes where least runs (n3 first)
    r = n3.call("apply", {"spec": spec_of(("kv", 2), ("sessions", 2))})
    assert r["placement"] == {"kv": ["n1", "n2"], "sessions": ["n3", "n1"]}, r
    assert r["plan"]["created"] == ["sessions-0"], r
    wait_for(lambda: own_instances(n1) == ["kv-0", "sessions-1"], timeout=10,
             what="n1 running its part")
    # the nodes table says what placement goes by (once n2 took the record)
    def n2_nodes():
        nodes = {n["name"]: n for n in n2.call("nodes")["nodes"]}
        return nodes if nodes["n1"]["instances"] == 2 else None
    nodes = wait_for(n2_nodes, timeout=10, what="n2's view of the placement")
    assert nodes["n1"]["max_instances"] == 100 and nodes["n1"]["labels"] == [], nodes
    # plan on n1 shows its part and where each instance would go
    r = n1.call("plan", {"spec": spec_of(("kv", 2), ("sessions", 2), ("more", 1))})
    assert r["placement"]["more"] == ["n2"] and r["plan"]["created"] == [], r
    # a node selector naming one node
    r = n1.call("plan", {"spec": spec_of(("kv", 2), ("sessions", 2), ("more", 3),
                                         node_selector={"nodes": ["n1"]})})
    assert r["placement"]["more"] == ["n1", "n1", "n1"], r
    assert r["plan"]["created"] == ["more-0", "more-1", "more-2"], r
    r2 = n1.request("plan", {"spec": {"name": "demo", "cachestores": [
        dict(name="kv", shards=2, version="1"),
        dict(name="more", shards=3, version="1", node_selector={"labels": ["ssd"]})]}})
    assert r2["ok"] is False and r2["error"]["code"] == "spec_invalid", r2
    assert "node_selector" in json.dumps(r2["error"]), r2
    # a spread deployment's shard count cannot change (yet)
    r = n1.request("apply", {"spec": spec_of(("kv", 3), ("sessions", 2))})
    assert r["ok"] is False and r["error"]["code"] == "spec_invalid", r
    assert "several nodes" in json.dumps(r["error"]), r
    # a delete on n1 goes through the leader; n1 and n2 stop kv
    r = n1.call("delete", {"name": "kv"})
    assert r["placement"] == {"sessions": ["n3", "n1"]}, r
    wait_for(lambda: own_instances(n2) == [], timeout=10, what="kv deleted on n2")
    assert own_instances(n1) == ["sessions-1"]
    # refusals: a bad spec (checked where it was applied), an unknown deployment
    r = n1.request("apply", {"spec": {"name": "demo", "cachestores": [{"name": "x",
                                                                      "shards": 0}]}})
    assert r["ok"] is False and r["error"]["code"] == "spec_invalid", r
    r = n1.request("delete", {"name": "nope"})
    assert r["ok"] is False and r["error"]["code"] == "not_found", r
    # the leader's agent killed: apply still works through the new one
    leader.proc.kill(signal.SIGKILL)
    other = [a for a in agents.agents if a is not leader][0]
    r = other.call("apply", {"spec": spec_of(("sessions", 2), ("late", 1))})
    assert r["placement"]["sessions"] == ["n3", "n1"] and len(r["placement"]["late"]) == 1, r


def single_node_cluster(a, procs):
    """Agent a, which ran deployment kv (2 shards) alone, restarted as the
    only member of a Raft cluster: returns once kv is the cluster's record."""
    r = a.call("apply", {"spec": spec_of(("kv", 2))})
    assert r["plan"]["created"] == ["kv-0", "kv-1"], r
    a.stop()
    with open(a.conf, "a") as f:
        f.write('raft = { address = "127.0.0.1:%d"; election_timeout_ms = 300; '
                'heartbeat_timeout_ms = 50; };\n' % dprtest.free_port())
    procs.add(a.start().proc)
    wait_for(lambda: (a.call("status").get("cluster_spec") or {}).get("placement") ==
             {"kv": ["n1", "n1"]}, timeout=20, what="the record made of n1's deployments")


def test_a_single_nodes_deployments_become_its_clusters_spec(tmp_path, procs):
    a = dprtest.HostAgent(str(tmp_path / "n1"), node="n1")
    procs.add(a.start().proc)
    single_node_cluster(a, procs)
    assert own_deployments(a) == ["kv"]
    assert [i["name"] for i in a.call("status")["deployments"][0]["instances"]] == \
        ["kv-0", "kv-1"]
    # and applying through the cluster changes it like before
    r = a.call("apply", {"spec": spec_of(("kv", 3))})
    assert r["plan"]["created"] == ["kv-2"], r


def test_sigterm_while_the_leader_writes_its_log(tmp_path, procs):
    """SIGTERM right after an apply whose follow-up entries (a resize's
    layout) are still being written: the agent waits for them before it
    closes Raft (c-raft 0.15 crashed in raft_close with an append in flight)
    and exits 0. Ten rounds: the crash came in the first one or two."""
    for i in range(10):
        a = dprtest.HostAgent(str(tmp_path / ("n%d" % i)), node="n1")
        procs.add(a.start().proc)
        single_node_cluster(a, procs)
        a.call("apply", {"spec": spec_of(("kv", 3))})
        a.stop()  # (exit status 0, checked)
        assert not dprtest.sanitizer_reports(a.log()), a.log()


def test_a_joining_node_keeps_deployments_the_cluster_does_not_hold(agents, tmp_path):
    agents.placeable()
    n1 = agents[0]
    kv_at = n1.call("apply", {"spec": spec_of(("kv", 1))})["placement"]["kv"]
    # a node that ran "own" alone, then joins
    me = "127.0.0.4:%d" % agents.raft_port
    j = dprtest.HostAgent(os.path.join(agents.base, "n4"), host="127.0.0.4", node="n4",
                          finder_port=agents.finder_port)
    agents.agents.append(j)
    j.start()
    j.call("apply", {"spec": spec_of(("own", 1))})
    j.stop()
    with open(j.conf, "a") as f:
        f.write('raft = { address = "%s"; peers = [%s]; join = true; election_timeout_ms = 300; '
                'heartbeat_timeout_ms = 50; };\n'
                % (me, ", ".join('"%s"' % a for a in agents.raft)))
    j.start()
    wait_for(lambda: "does not hold: not taking the cluster's spec" in j.log(), timeout=20,
             what="the joiner refusing the spec")
    assert own_deployments(j) == ["own"]
    # applied from the joiner, "own" is placed on it and everything goes on
    agents.placeable()
    r = j.call("apply", {"spec": spec_of(("kv", 1), ("own", 1))})
    assert r["placement"] == {"kv": kv_at, "own": ["n4"]}, r
    assert r["plan"]["unchanged"] == ["own-0"], r
    owner = {a.node: a for a in agents.agents}[kv_at[0]]
    assert own_deployments(j) == ["own"] and own_deployments(owner) == ["kv"]


def test_a_node_that_stops_answering_is_marked_down_and_back(tmp_path):
    agents = RaftAgents(str(tmp_path), 3, down_ms=1500).start()
    try:
        leader = agents.placeable()
        n1, n2, n3 = agents.agents
        # kv keeps its checkpoints on its nodes only (it waits for a lost
        # node); mv's are copied to one other node (its instances move)
        spec = spec_of(("kv", 3), replicas=0)
        spec["cachestores"].append(dict(name="mv", shards=3, version="1"))
        r = n1.call("apply", {"spec": spec})
        assert r["placement"] == {"kv": ["n1", "n2", "n3"], "mv": ["n1", "n2", "n3"]}, r
        victim = n3 if leader is not n3 else n2
        watcher = n1 if leader is not n1 else [a for a in agents.agents
                                               if a not in (leader, victim)][0]
        wait_for(lambda: victim.node in own_nodes(watcher), timeout=10,
                 what="the victim's instance published")
        # any agent tells a client where the shards are (a follower too)
        before = wait_for(lambda: (lambda e: e if all(e[1]) else None)(
            endpoints_of(watcher, "mv")), timeout=10, what="mv's endpoints published")
        agents_list = [finder_of(a) for a in agents.agents]
        c = dpr.Client.for_deployment("mv", agents_list)
        assert c.shards == before[1] and c.domain == "mv", (c, before)
        assert c.worker_ids() == before[2]
        assert c.finders == agents_list
        with dpr.Client.from_url("dpr://%s/mv" % ",".join(agents_list)) as u:
            assert (u.shards, u.finders, u.domain) == (c.shards, agents_list, "mv")
        assert "no deployment 'nope'" in finder_error(finder_of(watcher),
                                                       "DPR.CLUSTER.ENDPOINTS", "nope")
        sock, stream = watcher.events()
        try:
            victim.proc.kill(signal.SIGSTOP)  # alive but silent, like a lost machine
            t0 = time.monotonic()
            st = wait_for(lambda: (lambda s: s if s["cluster_spec"].get("down") else None)(
                watcher.call("status")), timeout=20, what="the node marked down")
            took = time.monotonic() - t0
            assert st["cluster_spec"]["down"] == [victim.node], st["cluster_spec"]
            assert 1.0 < took < 10, took
            kv = [d for d in st["deployments"] if d["name"] == "kv"][0]
            inst = [i for i in kv["instances"] if i["node"] == victim.node][0]
            assert inst["ready"] is False and inst["health"] == "node-down", inst
            assert kv["degraded"] and victim.node in kv["degraded"], kv
            mv = [d for d in st["deployments"] if d["name"] == "mv"][0]
            assert victim.node not in [i["node"] for i in mv["instances"]], mv
            assert mv["degraded"] is None, mv
            # the agents tell the moved shard's new address (same worker)
            moved = int(victim.node[1:]) - 1
            after = wait_for(lambda: (lambda e: e if e[1][moved] not in (None, before[1][moved])
                                      else None)(endpoints_of(watcher, "mv")),
                             timeout=10, what="mv's moved shard published")
            assert after[2] == before[2], (before, after)
            assert after[1][:moved] + after[1][moved + 1:] == \
                before[1][:moved] + before[1][moved + 1:], (before, after)
            kv_eps = endpoints_of(watcher, "kv")
            assert kv_eps[1][moved] is None, kv_eps  # waits on its node: no address
            nodes = {n["name"]: n for n in watcher.call("nodes")["nodes"]}
            assert nodes[victim.node]["down"] is True, nodes
            # no new instance goes there
            spec["cachestores"].append(dict(name="more", shards=3, version="1"))
            r = n1.call("plan", {"spec": spec})
            assert victim.node not in r["placement"]["more"], r
            ev = next_event(stream, lambda e: e["type"] == "node" and e.get("state") == "down")
            assert ev["name"] == victim.node, ev
            # back: marked up
            victim.proc.kill(signal.SIGCONT)
            wait_for(lambda: not watcher.call("status")["cluster_spec"].get("down"),
                     timeout=20, what="the node marked up")
            ev = next_event(stream, lambda e: e["type"] == "node" and e.get("state") == "up")
            assert ev["name"] == victim.node, ev
            kv = [d for d in watcher.call("status")["deployments"] if d["name"] == "kv"][0]
            assert kv["degraded"] is None, kv
        finally:
            sock.close()
            victim.proc.kill(signal.SIGCONT)  # (never leave it stopped)
    finally:
        agents.close()


def endpoints_of(a, deployment):
    """(layout epoch, endpoints, workers) of deployment as agent a tells
    clients (DPR.CLUSTER.ENDPOINTS on its finder port)."""
    epoch, eps, workers = finder_call(finder_of(a), "DPR.CLUSTER.ENDPOINTS", deployment)
    return epoch, [e.decode() if e is not None else None for e in eps], list(workers)


def own_nodes(a):
    """The nodes whose instances a's status shows with an endpoint."""
    return {i["node"] for d in a.call("status")["deployments"] for i in d["instances"]
            if i.get("endpoint")}


def next_event(stream, pred, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = stream.readline()
        if not line:
            break
        ev = json.loads(line).get("event") or {}
        if pred(ev):
            return ev
    raise AssertionError("no such event within %ss" % timeout)
