"""dprctl's output formats (-o table|wide|json|yaml), `diff`, `get` and
`describe`: the pure renderers and the spec diff against golden files made
from fixed control-API JSON (golden/*.json), and the commands against the
real dpr-agent (tests/python-dpr/conftest.py; no systemd: nothing runs).

Regenerate the goldens after a deliberate change of the output with
DPR_UPDATE_GOLDEN=1 and review the diff.
"""
import json
import os
import subprocess

import pytest
import yaml

from dpr import cli, render, specdiff
from dpr.cluster import Deployment, Node, Status
from dpr.spec import CacheStore, ClusterSpec

from dprtest import DPRCTL, PYDIR, PYTHON

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")


def fixture(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return json.load(f)


def golden(name, text):
    """text must equal golden/<name> (written instead with DPR_UPDATE_GOLDEN=1)."""
    path = os.path.join(GOLDEN, name)
    if os.environ.get("DPR_UPDATE_GOLDEN"):
        with open(path, "w") as f:
            f.write(text)
    with open(path) as f:
        want = f.read()
    assert text == want, "output differs from golden/%s" % name


# --- the renderers, against goldens ---------------------------------------------------

@pytest.mark.parametrize("wide", [False, True])
def test_status_table_golden(wide):
    st = Status.from_result(fixture("status.json"))
    golden("status.%s" % ("wide" if wide else "table"), cli.format_status(st, wide) + "\n")


def test_status_wide_has_more_columns_and_full_errors():
    st = Status.from_result(fixture("status.json"))
    table, wide = cli.format_status(st).splitlines(), cli.format_status(st, True).splitlines()
    dep_hdr = next(line for line in wide if line.startswith("DEPLOYMENT"))
    assert dep_hdr.split()[-6:] == ["MAX-CLIENTS", "MAX-VERSION", "ROLLOUT", "LAYOUT",
                                    "REPLICAS", "SELECTOR"]
    inst_hdr = next(line for line in wide if line.startswith("INSTANCE"))
    for col in ("SHARD", "UNIT", "GENERATION", "OUTDATED", "MEMORY-MAX", "REPLICATED"):
        assert col in inst_hdr.split()
    kv2 = [line for line in wide if line.startswith("kv-2 ")][0]
    assert kv2.endswith("damaged (bad checksum)") and "4 (runs 3)" in kv2
    assert [line for line in table if line.startswith("kv-2 ")][0].endswith("...")
    # the default table is what it was before -o existed
    assert next(line for line in table if line.startswith("DEPLOYMENT")).split() == \
        render.DEPLOYMENT_HEADERS


@pytest.mark.parametrize("what", ["status", "nodes"])
def test_json_and_yaml_are_the_agents_answer_sorted(what):
    data = fixture("%s.json" % what)
    text = render.to_json(data)
    golden("%s.json.out" % what, text + "\n")
    assert json.loads(text) == data
    keys = [line.strip().split('"')[1] for line in text.splitlines()
            if line.startswith('  "')]
    assert keys == sorted(keys)
    y = render.to_yaml(data)
    golden("%s.yaml" % what, y)
    assert yaml.safe_load(y) == data


@pytest.mark.parametrize("wide", [False, True])
def test_nodes_golden(wide):
    nodes = [Node.from_dict(n) for n in fixture("nodes.json")["nodes"]]
    text = cli.format_nodes(nodes, wide) + "\n"
    golden("nodes.%s" % ("wide" if wide else "table"), text)
    if wide:
        assert text.splitlines()[0].split()[-3:] == ["RAFT-ID", "DOWN", "CONTACT-MS"]


def test_events_golden():
    evs = fixture("events.json")
    golden("events.table", "".join(render.event_line(e) + "\n" for e in evs))
    golden("events.wide", "".join(render.event_line(e, True) + "\n" for e in evs))
    golden("events.jsonl", "".join(render.to_json_line(e) + "\n" for e in evs))
    y = "".join(render.to_yaml(e, document=True) for e in evs)
    golden("events.yaml", y)
    assert list(yaml.safe_load_all(y)) == evs
    # wide shows what the table leaves out (null fields), nothing else differs
    assert render.event_line(evs[1]) == ("2026-11-25T08:00:01.000Z #18 instance kv-2 "
                                         "inactive/dead not-ready")
    assert render.event_line(evs[1], True).endswith("not-ready restarts=- pid=- health=-")


def test_rollout_golden():
    ro = fixture("rollout.json")
    d = Status.from_result(fixture("status.json")).deployment("kv")
    golden("rollout.table", render.rollout_status("kv", ro) + "\n")
    text = render.rollout_status("kv", ro, True, d.instances) + "\n"
    golden("rollout.wide", text)
    lines = text.splitlines()
    # wide: the table's lines, then the other nodes' phases and the instances
    assert lines[:3] == render.rollout_status("kv", ro).splitlines()
    assert lines[3] == "nodes: node2 done, node3 progressing"
    assert lines[5].split() == render.ROLLOUT_WIDE_HEADERS
    # below the partition (1): no target of the roll-out
    assert [x.split()[:4] for x in lines[6:]] == [["kv-0", "node1", "0", "no"],
                                                  ["kv-1", "node1", "1", "yes"],
                                                  ["kv-2", "node1", "2", "yes"]]
    assert "4 (runs 3)" in lines[8] and lines[8].split()[-1] == "failed"
    assert render.rollout_status("kv", ro, True).endswith("\n\nno instances")
    j = render.to_json(ro)
    golden("rollout.json.out", j + "\n")
    assert json.loads(j) == ro
    y = render.to_yaml(ro)
    golden("rollout.yaml", y)
    assert yaml.safe_load(y) == ro
    # an agent from before the settings (or a broken answer): no crash
    assert render.rollout_status("kv", {"phase": "done"}, True, d.instances).startswith(
        "kv: roll-out done, None/None updated, None unavailable\npartition None, ")


def test_describe_golden():
    st = Status.from_result(fixture("status.json"))
    d = st.deployment("kv")
    events = ["2026-11-25T08:00:00+0000 node1 dpr-agent[99]: kv-2: the unit failed "
              "(result: exit-code)"]
    golden("describe_deployment", render.describe_deployment(d, events) + "\n")
    golden("describe_instance", render.describe_instance(d.instance("kv-2"), "kv") + "\n")
    golden("get_deployment.table", render.deployment_table([d]) + "\n\n" +
           render.instance_table(d.instances) + "\n")


# --- the spec diff -------------------------------------------------------------------

def status_with(*deployments, cluster="demo"):
    return {"cluster": cluster, "deployments": list(deployments)}


def dep(name, **kw):
    d = {"name": name, "impl": "dpr-kv", "version": "1", "shards": 3,
         "checkpoint_interval_ms": 100, "max_clients": 10000, "maxmemory": 0,
         "rollout": {"phase": "done", "settings": {"min_ready_seconds": 0,
                                                   "max_unavailable": 1, "partition": 0,
                                                   "progress_deadline_seconds": 120,
                                                   "paused": False}}}
    d.update(kw)
    return d


def spec(*cs, name="demo"):
    return ClusterSpec(name, list(cs)).to_dict()


def test_diff_nothing():
    assert specdiff.diff(spec(CacheStore("kv", version="1", shards=3)), status_with(dep("kv"))) \
        == []
    # defaults the spec leaves to the agent are no difference
    assert specdiff.diff(spec(CacheStore("kv", version="1", shards=3)),
                         status_with(dep("kv", checkpoint_interval_ms=250))) == []
    # maxmemory compared in bytes
    assert specdiff.diff(spec(CacheStore("kv", version="1", shards=3, maxmemory="512mb")),
                         status_with(dep("kv", maxmemory=512 << 20))) == []
    assert specdiff.format_changes([]) == "no differences"


def test_diff_fields_and_deployments():
    s = spec(CacheStore("cache", version="2", shards=4, maxmemory="1gb", max_clients=50,
                        rollout={"partition": 2, "paused": True}),
             CacheStore("new", version="1", shards=1))
    st = status_with(dep("cache", replicas=1), dep("old"))
    changes = specdiff.diff(s, st)
    assert [str(c) for c in changes] == [
        "~ deployments.cache.version: 1 -> 2",
        "~ deployments.cache.shards: 3 -> 4",
        "~ deployments.cache.max_clients: 10000 -> 50",
        "~ deployments.cache.maxmemory: 0 (no limit) -> 1gb",
        "~ deployments.cache.replicas: 1 -> (none)",
        "~ deployments.cache.rollout.partition: 0 -> 2",
        "~ deployments.cache.rollout.paused: false -> true",
        "+ deployments.new",
        "- deployments.old",
    ]
    assert changes[1] == specdiff.Change("~", "deployments.cache.shards", 3, 4)


def test_diff_selector_impl_and_cluster_name():
    s = spec(CacheStore("kv", impl="other", version="1", shards=3,
                        node_selector={"labels": ["b", "a"]}), name="prod")
    st = status_with(dep("kv", node_selector={"labels": ["a", "b"], "nodes": []}),
                     cluster="demo")
    assert [str(c) for c in specdiff.diff(s, st)] == [
        "~ name: demo -> prod", "~ deployments.kv.impl: dpr-kv -> other"]
    s = spec(CacheStore("kv", version="1", shards=3))
    assert [str(c) for c in specdiff.diff(s, st)] == [
        "~ deployments.kv.node_selector: {labels: [a, b]} -> (none)"]


def test_diff_checkpoint_mode():
    # given on one side only: a difference (absent is dpr-kv's default)
    s = spec(CacheStore("kv", version="1", shards=3, checkpoint_mode="full"))
    assert [str(c) for c in specdiff.diff(s, status_with(dep("kv")))] == [
        "~ deployments.kv.checkpoint_mode: (none) -> full"]
    st = status_with(dep("kv", checkpoint_mode="full"))
    assert specdiff.diff(s, st) == []
    assert [str(c) for c in specdiff.diff(spec(CacheStore("kv", version="1", shards=3)), st)] \
        == ["~ deployments.kv.checkpoint_mode: full -> (none)"]


def test_diff_tls():
    # compared when the spec gives it ({} is required); left out: not compared
    st = status_with(dep("kv", tls={"clients": "required"}))
    assert specdiff.diff(spec(CacheStore("kv", version="1", shards=3)), st) == []
    assert specdiff.diff(spec(CacheStore("kv", version="1", shards=3, tls={})), st) == []
    s = spec(CacheStore("kv", version="1", shards=3, tls={"clients": "off"}))
    assert [str(c) for c in specdiff.diff(s, st)] == ["~ deployments.kv.tls: required -> off"]


def test_diff_ignores_what_it_cannot_read():
    # an older agent without rollout settings; odd entries in the status
    st = status_with({"name": "kv", "version": "1", "shards": 3}, "junk", {"no": "name"})
    s = spec(CacheStore("kv", version="1", shards=3, rollout={"partition": 1}))
    assert specdiff.diff(s, st) == []


# --- against the real agent ----------------------------------------------------------

def dprctl(agent, *args, input=None):
    env = dict(os.environ)
    env.pop("DPR_SOCKET", None)
    env["PYTHONPATH"] = PYDIR
    return subprocess.run([PYTHON, DPRCTL, "--socket", agent.socket] + list(args),
                          capture_output=True, text=True, env=env, input=input, timeout=30)


SPEC = "name: demo\ncachestores:\n  - name: kv\n    version: '1'\n    shards: 2\n"


def apply_spec(agent, tmp_path):
    """dprctl apply of SPEC (deployment kv, 2 shards)."""
    f = tmp_path / "c.yaml"
    f.write_text(SPEC)
    r = dprctl(agent, "apply", "-f", str(f))
    assert r.returncode == 0, r.stderr


def test_dprctl_diff_exit_codes(agent, tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(SPEC)
    r = dprctl(agent, "diff", str(f))
    assert (r.returncode, r.stdout) == (1, "+ deployments.kv\n"), r.stderr
    assert dprctl(agent, "apply", "-f", str(f)).returncode == 0
    r = dprctl(agent, "diff", str(f))
    assert (r.returncode, r.stdout, r.stderr) == (0, "no differences\n", "")
    r = dprctl(agent, "diff", "-", input=SPEC.replace("shards: 2", "shards: 3")
               .replace("'1'", "'2'"))
    assert r.returncode == 1
    assert r.stdout.splitlines() == ["~ deployments.kv.version: 1 -> 2",
                                     "~ deployments.kv.shards: 2 -> 3"]
    # errors: 2 (as diff(1)), one line saying what
    r = dprctl(agent, "diff", "-", input=SPEC.replace("shards: 2", "shards: 0"))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.startswith("dprctl: <stdin>: cachestores[0].shards: "), r.stderr
    r = dprctl(agent, "diff", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "nope.yaml" in r.stderr
    r = subprocess.run([PYTHON, DPRCTL, "--socket", str(tmp_path / "no.sock"), "diff",
                        str(f)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=PYDIR))
    assert r.returncode == 2 and "cannot reach dpr-agent" in r.stderr


def test_dprctl_output_formats(agent, tmp_path):
    apply_spec(agent, tmp_path)
    j = json.loads(dprctl(agent, "status", "-o", "json").stdout)
    assert [d["name"] for d in j["deployments"]] == ["kv"]
    assert json.loads(dprctl(agent, "status", "--json").stdout) == j  # the old spelling
    r = dprctl(agent, "status", "-o", "yaml")
    assert r.returncode == 0 and yaml.safe_load(r.stdout)["cluster"] == "demo"
    assert yaml.safe_load(r.stdout)["deployments"][0]["instances"][1]["name"] == "kv-1"
    r = dprctl(agent, "status", "-o", "wide")
    assert r.returncode == 0
    assert "MAX-CLIENTS" in r.stdout and "GENERATION" in r.stdout
    assert "MAX-CLIENTS" not in dprctl(agent, "status").stdout
    r = dprctl(agent, "nodes", "-o", "yaml")
    assert yaml.safe_load(r.stdout)["nodes"][0]["name"] == "node1"
    r = dprctl(agent, "nodes", "-o", "wide")
    assert r.stdout.splitlines()[0].split()[-3:] == ["RAFT-ID", "DOWN", "CONTACT-MS"]
    r = dprctl(agent, "nodes", "-o", "xml")
    assert r.returncode == 2 and "invalid choice: 'xml'" in r.stderr


def test_dprctl_rollout_status_output(agent, tmp_path):
    apply_spec(agent, tmp_path)
    r = dprctl(agent, "rollout", "status", "kv", "-o", "json")
    assert r.returncode == 0, r.stderr
    ro = json.loads(r.stdout)
    assert r.stdout == render.to_json(ro) + "\n"  # sorted keys
    assert ro["targets"] == 2 and ro["settings"]["partition"] == 0
    assert dprctl(agent, "rollout", "status", "kv", "--json").stdout == r.stdout
    r = dprctl(agent, "rollout", "status", "kv", "-o", "yaml")
    assert r.returncode == 0 and yaml.safe_load(r.stdout) == ro
    table = dprctl(agent, "rollout", "status", "kv", "-o", "table").stdout
    assert table == dprctl(agent, "rollout", "status", "kv").stdout
    assert table.startswith("kv: roll-out ") and "INSTANCE" not in table
    r = dprctl(agent, "rollout", "status", "kv", "-o", "wide")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:len(table.splitlines())] == table.splitlines()
    head = lines.index(next(x for x in lines if x.startswith("INSTANCE")))
    assert lines[head].split() == render.ROLLOUT_WIDE_HEADERS
    # nothing runs without systemd; the applied generation is every instance's
    assert [x.split()[:4] for x in lines[head + 1:]] == [["kv-0", "node1", "0", "yes"],
                                                         ["kv-1", "node1", "1", "yes"]]
    # -o is for status; errors as for the other commands
    r = dprctl(agent, "rollout", "pause", "kv", "-o", "json")
    assert r.returncode == 2 and r.stdout == ""
    assert "-o and --json are for rollout status" in r.stderr
    r = dprctl(agent, "rollout", "status", "kv", "-o", "xml")
    assert r.returncode == 2 and "invalid choice: 'xml'" in r.stderr
    r = dprctl(agent, "rollout", "status", "nope", "-o", "wide")
    assert r.returncode == 1 and r.stdout == "" and "no deployment named 'nope'" in r.stderr


def test_dprctl_get_and_describe(agent, tmp_path):
    apply_spec(agent, tmp_path)
    r = dprctl(agent, "get", "deployment", "kv", "-o", "json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    assert d["name"] == "kv" and [i["name"] for i in d["instances"]] == ["kv-0", "kv-1"]
    r = dprctl(agent, "get", "deployment", "kv")
    lines = r.stdout.splitlines()
    assert lines[0].split()[0] == "DEPLOYMENT" and lines[1].split()[:4] == ["kv", "dpr-kv",
                                                                           "1", "2"]
    assert [x.split()[0] for x in lines[4:]] == ["kv-0", "kv-1"]
    r = dprctl(agent, "get", "instance", "kv-1", "-o", "yaml")
    i = yaml.safe_load(r.stdout)
    assert i["name"] == "kv-1" and i["endpoint"].startswith("127.0.0.1:")
    assert Deployment.from_dict(d).instance("kv-1").endpoint == i["endpoint"]
    r = dprctl(agent, "get", "instance", "kv-1")
    assert [x.split()[0] for x in r.stdout.splitlines()] == ["INSTANCE", "kv-1"]
    r = dprctl(agent, "describe", "deployment", "kv")
    assert r.returncode == 0, r.stderr
    assert "Name:" in r.stdout and "Instances:" in r.stdout and "Recent events" in r.stdout
    r = dprctl(agent, "describe", "instance", "kv-0")
    assert r.returncode == 0 and r.stdout.splitlines()[1].split() == ["Deployment:", "kv"]
    # not found: one clear line, exit 1
    for argv, needle in ((["get", "deployment", "nope"], "no deployment named 'nope'"),
                         (["get", "instance", "kv-9"],
                          "no instance named 'kv-9' in this cluster (instances: kv-0 kv-1)"),
                         (["describe", "instance", "kv-9"], "no instance named 'kv-9'"),
                         (["describe", "deployment", "nope"], "no deployment named 'nope'")):
        r = dprctl(agent, *argv)
        assert r.returncode == 1 and r.stdout == "", (argv, r.stdout)
        assert len(r.stderr.splitlines()) == 1 and needle in r.stderr, (argv, r.stderr)


def test_completion_of_the_new_commands(tmp_path):
    from test_manpages import complete
    assert complete("status", "-o", "") == {"table", "wide", "json", "yaml"}
    assert complete("rollout", "status", "kv", "-o", "") == {"table", "wide", "json", "yaml"}
    assert complete("get", "") == {"deployment", "instance"}
    assert complete("describe", "") == {"deployment", "instance"}
    assert complete("discover", "-o", "") == {"table", "json"}
    (tmp_path / "a.yaml").write_text("")
    (tmp_path / "b.txt").write_text("")
    got = complete("diff", str(tmp_path) + "/")
    assert str(tmp_path / "a.yaml") in got and str(tmp_path / "b.txt") not in got


@pytest.mark.parametrize("output", ["json", "yaml", "wide"])
def test_dprctl_events_output(agent, tmp_path, output):
    import threading
    env = dict(os.environ, PYTHONPATH=PYDIR)
    p = subprocess.Popen([PYTHON, DPRCTL, "--socket", agent.socket, "events", "-o", output],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert p.stderr.readline().startswith("following events from ")
        apply_spec(agent, tmp_path)
        timer = threading.Timer(10, p.kill)
        timer.start()
        got = ""
        try:
            for line in p.stdout:
                got += line
                if output == "json" or (output == "yaml" and "type: apply" in line) or \
                        (output == "wide" and " apply " in line):
                    break
        finally:
            timer.cancel()
    finally:
        p.kill()
        p.wait()
        p.stdout.close()
        p.stderr.close()
    if output == "json":
        ev = json.loads(got)
        assert ev["type"] == "apply" and ev["plan"]["created"] == ["kv-0", "kv-1"]
        assert got.strip() == render.to_json_line(ev)  # sorted keys, one line
    elif output == "yaml":
        ev = next(yaml.safe_load_all(got))
        assert got.startswith("---\n") and ev["plan"]["created"] == ["kv-0", "kv-1"]
    else:
        assert " apply +kv-0 +kv-1 generation=" in got


def test_wide_and_describe_show_tls():
    """An instance over TLS: its TLS column (-o wide) and describe's line."""
    from dpr.cluster import Instance
    from dpr.render import INSTANCE_HEADERS, INSTANCE_WIDE, describe_instance, instance_row
    i = Instance.from_dict({"name": "kv-0", "endpoint": "10.0.0.1:7100", "tls": "required"})
    row = instance_row(i, wide=True)
    assert row[(INSTANCE_HEADERS + INSTANCE_WIDE).index("TLS")] == "required"
    assert "TLS:             required" in describe_instance(i, "kv")
    plain = Instance.from_dict({"name": "kv-0"})
    assert instance_row(plain, wide=True)[(INSTANCE_HEADERS + INSTANCE_WIDE).index("TLS")] is None
