"""dpr-agent's Prometheus endpoint (agent.conf metrics.address): an agent
on the host (no systemd, tests/agent/test_agent_host.py's harness) scraped
with python3-prometheus-client; the instance counts, control requests and
the hosted finder's dpr_finder_* follow applies and a dpr-kv started by
hand from its instance file."""
import json
import os
import re

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
    assert {j["job_name"] for j in prom["scrape_configs"]} == {"dpr-agent", "dpr-kv",
                                                               "dpr-finder"}


def test_no_metrics_without_the_setting(tmp_path):
    a = Agent(tmp_path / "a").start()
    assert "metrics on" not in a.log()
    a.stop()
