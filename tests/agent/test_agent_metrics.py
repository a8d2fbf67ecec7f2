"""dpr-agent's Prometheus endpoint (agent.conf metrics.address): an agent
on the host (no systemd, tests/agent/test_agent_host.py's harness) scraped
with python3-prometheus-client; the instance counts, control requests and
the hosted finder's dpr_finder_* follow applies and a dpr-kv started by
hand from its instance file."""
import json
import os
import re
import signal

import yaml

import dprtest
from dprtest import wait_for
import promscrape
import test_agent_host
from test_agent_host import Agent, env_file, kv, result_of, spec

# its autouse fixture: every Agent a test made is stopped, also on failure
stop_every_agent = test_agent_host.stop_every_agent

METRICS = 'metrics = { address = "127.0.0.1:0"; };\n'


def test_agent_metrics_follow_applies_and_the_finder(tmp_path):
    dprtest.need(dprtest.KV)
    a = Agent(tmp_path / "a", extra_conf=METRICS).start()
    addr = promscrape.address(a.proc)
    first = promscrape.scrape(addr)
    assert first.value("dpr_agent_instances") == 0
    assert first.value("dpr_agent_spec_generation") == 0
    assert first.value("dpr_agent_raft_member") == 0 and first.value("dpr_agent_raft_term") == 0
    assert first.value("dpr_agent_finder_serving") == 1
    assert first.value("dpr_agent_control_requests_total", op="apply") == 0
    info = first.families["dpr_agent_info"].samples[0].labels
    assert info["node"] and info["cluster"]
    # the hosted finder's metrics come with the agent's
    assert first.families["dpr_finder_info"].samples[0].labels["mode"] == "agent"
    assert first.value("dpr_finder_domains") == 0

    result_of(a.call("apply", {"spec": spec(kv(shards=2))}))
    result_of(a.call("status"))
    now = promscrape.scrape(addr)
    assert now.value("dpr_agent_instances") == 2
    assert now.value("dpr_agent_spec_generation") == 1
    assert now.value("dpr_agent_control_requests_total", op="apply") == 1
    assert now.value("dpr_agent_control_requests_total", op="status") == 1
    # no systemd here: nothing runs, nothing is ready
    assert now.value("dpr_agent_instances_ready") == 0
    assert now.value("dpr_agent_instance_ready", instance="kv-0", deployment="kv") == 0
    assert now.value("dpr_agent_instance_failures_total", instance="kv-1") == 0

    # kv-0 runs (as its unit would) and reports to the agent's finder
    env = env_file(a, "kv-0")
    env["DPR_KV_LISTEN"] = "127.0.0.1:0"
    env["DPR_KV_CHECKPOINT_INTERVAL_MS"] = "50"
    env["DPR_KV_AWAIT_LAYOUT"] = "0"  # (no layout here: serve keys at once)
    env["DPR_KV_METRICS_ADDRESS"] = "127.0.0.1:0"
    kvp = a.procs.add(dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]),
                                 str(tmp_path / "kv-0"), str(tmp_path / "kv-0.log"),
                                 env={k: v for k, v in env.items() if k.startswith("DPR_")}))
    kvp.wait_ready()
    kvp.client().set("x", "1")
    wait_for(lambda: promscrape.scrape(addr).value("dpr_finder_reports_total", result="ok") >= 1,
             what="kv-0's report in the agent's metrics")
    now = promscrape.scrape(addr)
    assert now.value("dpr_finder_workers", domain="kv") == 1
    assert now.value("dpr_finder_world_line", domain="kv") == 1
    assert now.value("dpr_finder_worker_durable_version", domain="kv",
                     worker=env["DPR_KV_WORKER"]) >= 1
    assert now.value("dpr_finder_max_cut_lag_versions", domain="kv") >= 0

    # every metric the example dashboard queries is served (agent + finder, dpr-kv)
    served = now.names() | promscrape.scrape(promscrape.address(kvp)).names()
    check_examples(served)

    result_of(a.call("apply", {"spec": spec(kv(shards=3))}))
    now = promscrape.scrape(addr)
    assert now.value("dpr_agent_instances") == 3 and now.value("dpr_agent_spec_generation") == 2
    assert now.value("dpr_agent_control_requests_total", op="apply") == 2
    kvp.stop()
    a.stop()
    assert a.proc.returncode == 0, a.log()
    assert os.path.exists(a.conf)


def check_examples(served):
    """examples/grafana-dpr.json queries only metrics in served; the
    scrape config names a job for each daemon."""
    with open(os.path.join(dprtest.ROOT, "examples", "grafana-dpr.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    assert len(exprs) > 20
    used = {m for e in exprs for m in re.findall(r"\bdpr_[a-z_]+", e)}
    assert used - served == set(), "not served: %s" % sorted(used - served)
    for prefix in ("dpr_agent_", "dpr_finder_", "dpr_kv_"):
        assert any(m.startswith(prefix) for m in used), prefix
    with open(os.path.join(dprtest.ROOT, "examples", "prometheus.yml")) as f:
        prom = yaml.safe_load(f)
    jobs = {j["job_name"]: j for j in prom["scrape_configs"]}
    assert set(jobs) == {"dpr-agent", "dpr-kv", "dpr-finder"}
    # the agents' and instances' targets come from the agents' /sd
    for name in ("dpr-agent", "dpr-kv"):
        assert all(c["url"].endswith("/sd") for c in jobs[name]["http_sd_configs"])
        assert jobs[name]["relabel_configs"][0]["source_labels"] == ["component"]


def test_no_metrics_without_the_setting(tmp_path):
    a = Agent(tmp_path / "a").start()
    assert "metrics on" not in a.log()
    a.stop()


def run_instance(a, tmp_path, name):
    """Runs name's dpr-kv by hand from its instance file, with the metrics
    address the agent gave it."""
    env = env_file(a, name)
    env["DPR_KV_LISTEN"] = "127.0.0.1:0"
    env["DPR_KV_AWAIT_LAYOUT"] = "0"  # (no layout here: serve keys at once)
    kvp = a.procs.add(dprtest.Kv(env["DPR_KV_FINDER"], int(env["DPR_KV_WORKER"]),
                                 str(tmp_path / name), str(tmp_path / (name + ".log")),
                                 env={k: v for k, v in env.items() if k.startswith("DPR_")}))
    kvp.wait_ready()
    return kvp


def sd_groups(addr):
    status, headers, body = promscrape.get(addr, "/sd")
    assert status == 200 and headers["Content-Type"] == "application/json", body
    return json.loads(body)


def test_instances_get_metrics_ports_found_through_sd(tmp_path):
    """cachestores.metrics_port_min/max: each instance gets a metrics
    address (its instance file, the status), stable across restarts of the
    agent and moved by a new range; the agent's /sd lists itself and the
    instances, and each target serves its dpr-kv's metrics."""
    dprtest.need(dprtest.KV)
    base, _ = dprtest.free_port_range(8)
    cs = "metrics_port_min = %d; metrics_port_max = %d;" % (base, base + 3)
    a = Agent(tmp_path / "a", extra_conf=METRICS, cs_extra=cs).start()
    addr = promscrape.address(a.proc)
    groups = sd_groups(addr)
    assert groups == [{"targets": [addr], "labels": {
        "component": "dpr-agent", "cluster": "demo", "node": "node1", "instance": "node1"}}]

    result_of(a.call("apply", {"spec": spec(kv(shards=2))}))
    ports = {n: env_file(a, n)["DPR_KV_METRICS_ADDRESS"] for n in ("kv-0", "kv-1")}
    assert ports == {"kv-0": "127.0.0.1:%d" % base, "kv-1": "127.0.0.1:%d" % (base + 1)}
    st = result_of(a.call("status"))
    shown = {i["name"]: i["metrics_endpoint"] for d in st["deployments"] for i in d["instances"]}
    assert shown == ports
    groups = sd_groups(addr)
    assert groups[0]["labels"]["component"] == "dpr-agent"
    assert sorted((g["targets"], g["labels"]) for g in groups[1:]) == [
        (["127.0.0.1:%d" % (base + s)], {"component": "dpr-kv", "cluster": "demo",
                                         "node": "node1", "deployment": "kv",
                                         "shard": str(s), "instance": "kv-%d" % s})
        for s in (0, 1)]

    # every target of /sd serves a page; the instances' count their writes
    kvs = {n: run_instance(a, tmp_path, n) for n in ("kv-0", "kv-1")}
    pages = {g["labels"]["instance"]: promscrape.scrape(g["targets"][0]) for g in groups}
    assert pages["node1"].value("dpr_agent_instances") == 2
    for n, kvp in kvs.items():
        assert pages[n].value("dpr_kv_keys") == 0
        c = kvp.client()
        for i in range(5):
            c.set("%s-%d" % (n, i), "v")
        now = promscrape.scrape(ports[n])
        assert now.value("dpr_kv_keys") == 5
        assert now.value("dpr_kv_commands_total") > pages[n].value("dpr_kv_commands_total")

    # a third instance takes the next free port; the first two keep theirs,
    # also across a restart of the agent
    result_of(a.call("apply", {"spec": spec(kv(shards=3))}))
    assert env_file(a, "kv-2")["DPR_KV_METRICS_ADDRESS"] == "127.0.0.1:%d" % (base + 2)
    a.proc.stop(signal.SIGTERM)
    a.start()
    addr = promscrape.address(a.proc)
    assert {g["labels"]["instance"]: g["targets"][0] for g in sd_groups(addr)[1:]} == {
        "kv-0": ports["kv-0"], "kv-1": ports["kv-1"], "kv-2": "127.0.0.1:%d" % (base + 2)}

    # a range too small for the instances: the agent says so and stops
    with open(a.conf) as f:
        conf = f.read()
    with open(a.conf, "w") as f:
        f.write(conf.replace(cs, "metrics_port_min = %d; metrics_port_max = %d;"
                             % (base + 4, base + 5)))
    a.proc.stop(signal.SIGTERM)
    a.start(wait=False)
    assert a.wait_exit() != 0
    assert "not enough free ports for the 3 instances" in a.log()
    # a new range: every instance moves into it, recorded
    with open(a.conf, "w") as f:
        f.write(conf.replace(cs, "metrics_port_min = %d; metrics_port_max = %d;"
                             % (base + 4, base + 7)))
    a.start()
    moved = {n: env_file(a, n)["DPR_KV_METRICS_ADDRESS"] for n in ("kv-0", "kv-1", "kv-2")}
    assert moved == {"kv-%d" % s: "127.0.0.1:%d" % (base + 4 + s) for s in range(3)}
    with open(a.state) as f:
        recorded = {i["name"]: i["metrics_port"] for i in json.load(f)["instances"]}
    assert recorded == {"kv-%d" % s: base + 4 + s for s in range(3)}
    for kvp in kvs.values():
        kvp.stop()
    a.stop()
    assert a.proc.returncode == 0, a.log()


def test_no_metrics_ports_without_the_range(tmp_path):
    """No cachestores.metrics_port_min/max: no instance has a metrics
    address, /sd lists the agent only; metrics.workers = false leaves the
    hosted finder's per-worker families out."""
    a = Agent(tmp_path / "a", extra_conf=METRICS.replace("; }", "; workers = false; }")).start()
    result_of(a.call("apply", {"spec": spec(kv(shards=1))}))
    assert "DPR_KV_METRICS_ADDRESS" not in env_file(a, "kv-0")
    st = result_of(a.call("status"))
    assert st["deployments"][0]["instances"][0]["metrics_endpoint"] is None
    addr = promscrape.address(a.proc)
    assert len(sd_groups(addr)) == 1
    names = promscrape.scrape(addr).names()
    assert "dpr_finder_max_cut_lag_versions" in names
    assert not {n for n in names if n.startswith("dpr_finder_worker_")}
    a.stop()
