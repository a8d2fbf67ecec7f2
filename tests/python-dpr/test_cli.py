"""dprctl: argument handling, exit codes and messages when there is no agent,
and the table output (from the status example of docs/control-api.md).
No agent needed; the commands against a real agent are in test_agent.py."""
import json
import os
import socket
import subprocess

import pytest

from dpr import cli
from dpr.cluster import Status
from dpr.mgmt_errors import AgentUnavailable

from dprtest import DPRCTL, PYDIR, PYTHON, ROOT

EXAMPLE = os.path.join(ROOT, "examples", "cluster.yaml")


def dprctl(*args, env=None, input=None, timeout=30):
    e = dict(os.environ)
    e.pop("DPR_SOCKET", None)
    e["PYTHONPATH"] = PYDIR
    e.update(env or {})
    return subprocess.run([PYTHON, DPRCTL] + list(args), capture_output=True, text=True,
                          env=e, input=input, timeout=timeout)


@pytest.fixture
def nosock(tmp_path, monkeypatch):
    monkeypatch.delenv("DPR_SOCKET", raising=False)
    return str(tmp_path / "agent.sock")


def run(capsys, *argv):
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_help_exits_0():
    r = dprctl("--help")
    assert r.returncode == 0
    for cmd in ("apply", "plan", "status", "delete", "events", "nodes"):
        assert cmd in r.stdout
    r = dprctl("apply", "--help")
    assert r.returncode == 0 and "--dry-run" in r.stdout and "--wait" in r.stdout


@pytest.mark.parametrize("argv,needle", [
    ([], "the following arguments are required: COMMAND"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["apply"], "the following arguments are required: -f/--file"),
    (["plan"], "the following arguments are required: -f/--file"),
    (["delete"], "the following arguments are required: NAME"),
    (["status", "a", "b"], "unrecognized arguments: b"),
    (["apply", "-f", "x.yaml", "--wait", "--timeout", "0"], "must be > 0 (got 0)"),
    (["apply", "-f", "x.yaml", "--timeout", "soon"], "must be a number of seconds"),
    (["--socket"], "expected one argument"),
])
def test_usage_errors_exit_2(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc == 2
    assert needle in err
    assert "(see dprctl" in err and "--help)" in err
    assert out == ""


def test_usage_error_through_the_script():
    r = dprctl("delete")
    assert r.returncode == 2 and "NAME" in r.stderr


def test_no_agent_says_what_to_do(nosock):
    r = dprctl("--socket", nosock, "status")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr == ("dprctl: cannot reach dpr-agent at %s: no such file — is dpr-agent "
                        "running? (systemctl status dpr-agent)\n" % nosock)


def test_socket_option_after_the_command(capsys, nosock):
    rc, out, err = run(capsys, "status", "--socket", nosock)
    assert rc == 1 and ("at %s: no such file" % nosock) in err


def test_dpr_socket_environment(nosock):
    r = dprctl("nodes", env={"DPR_SOCKET": nosock})
    assert r.returncode == 1
    assert ("cannot reach dpr-agent at %s (from $DPR_SOCKET): no such file" % nosock) in r.stderr
    # --socket wins over $DPR_SOCKET
    r = dprctl("--socket", nosock + ".x", "nodes", env={"DPR_SOCKET": nosock})
    assert ("at %s.x: no such file" % nosock) in r.stderr


def test_default_socket_path(monkeypatch):
    from dpr.control import socket_path
    monkeypatch.delenv("DPR_SOCKET", raising=False)
    assert socket_path() == ("/run/dpr/agent.sock", "default")
    monkeypatch.setenv("DPR_SOCKET", "/x.sock")
    assert socket_path() == ("/x.sock", "$DPR_SOCKET")
    assert socket_path("/y.sock") == ("/y.sock", "argument")


def test_missing_directory(capsys, tmp_path):
    p = str(tmp_path / "no" / "agent.sock")
    rc, out, err = run(capsys, "--socket", p, "status")
    assert rc == 1
    assert "no such file (%s does not exist)" % os.path.dirname(p) in err


def test_stale_socket_is_connection_refused(capsys, tmp_path):
    p = str(tmp_path / "agent.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(p)
    s.close()  # the file stays, nobody listens
    rc, out, err = run(capsys, "--socket", p, "status")
    assert rc == 1
    assert err == ("dprctl: cannot reach dpr-agent at %s: connection refused (the socket "
                   "exists but nobody listens) — is dpr-agent running? (systemctl status "
                   "dpr-agent)\n" % p)
    import dpr.cluster
    with pytest.raises(AgentUnavailable):
        dpr.cluster.connect(p)


def test_not_a_socket(capsys, tmp_path):
    p = tmp_path / "agent.sock"
    p.write_text("")
    rc, out, err = run(capsys, "--socket", str(p), "status")
    assert rc == 1
    assert err == ("dprctl: cannot reach dpr-agent at %s: not a socket — is that the agent's "
                   "control socket? (config control.socket)\n" % p)


def test_invalid_spec_is_reported_before_connecting(tmp_path, nosock):
    f = tmp_path / "bad.yaml"
    f.write_text("name: demo\ncachestores:\n  - name: kv\n    version: 1\n    shards: 0\n"
                 "    sharts: 1\n")
    r = dprctl("--socket", nosock, "apply", "-f", str(f))
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines() == [
        "dprctl: %s: cachestores[0].sharts: unknown field (did you mean 'shards'? known: "
        "name, impl, version, shards, checkpoint_interval_ms, max_clients, maxmemory, "
        "checkpoint_mode, tls, node_selector, replicas, rollout)" % f,
        "dprctl: %s: cachestores[0].version: must be a string (got an integer; quote it in "
        "YAML: version: \"1\")" % f,
        "dprctl: %s: cachestores[0].shards: must be >= 1 (got 0)" % f]
    r = dprctl("--socket", nosock, "plan", "-f", "-", input=f.read_text())
    assert r.returncode == 1
    assert r.stderr.splitlines()[2] == ("dprctl: <stdin>: cachestores[0].shards: must be >= 1 "
                                        "(got 0)")


def test_spec_file_errors(capsys, tmp_path, nosock):
    rc, out, err = run(capsys, "--socket", nosock, "plan", "-f", str(tmp_path / "nope.yaml"))
    assert rc == 1 and err == "dprctl: %s: no such file\n" % (tmp_path / "nope.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("name: demo\ncachestores: [\n")
    rc, out, err = run(capsys, "--socket", nosock, "apply", "-f", str(f))
    assert rc == 1
    assert err.startswith("dprctl: %s: not valid YAML: line 3 column 1: " % f)
    assert len(err.splitlines()) == 1


def test_valid_example_gets_as_far_as_the_socket(capsys, nosock):
    rc, out, err = run(capsys, "--socket", nosock, "apply", "-f", EXAMPLE, "--wait")
    assert rc == 1 and "cannot reach dpr-agent" in err


DOC_STATUS = {
    "cluster": "demo", "node": "node1", "generation": 4,
    "finder": {"address": "127.0.0.1:7000",
               "domains": [{"name": "sessions", "world_line": 1, "max_version": 9,
                            "workers": 1},
                           {"name": "kv", "world_line": 2, "max_version": 57, "workers": 3}]},
    "deployments": [
        {"name": "kv", "impl": "dpr-kv", "version": "1", "shards": 3,
         "checkpoint_interval_ms": 100, "ready": 2, "domain": "kv", "world_line": 2,
         "max_version": 57, "cut": [55, 55, 55],
         "instances": [
             {"name": "kv-%d" % i, "unit": "dpr-cachestore@kv-%d.service" % i,
              "node": "node1", "worker": i + 1, "endpoint": "127.0.0.1:710%d" % i,
              "active_state": "active" if i != 1 else "activating",
              "sub_state": "running" if i != 1 else "start", "ready": i != 1,
              "restarts": 1 if i == 2 else 0, "main_pid": 4242 + i,
              "version": 57, "world_line": 2, "cut": 55,
              "last_error": None if i != 2 else "unit failed:\n exit-code"}
             for i in (2, 0, 1)]}]}


def test_status_objects_and_table():
    st = Status.from_result(DOC_STATUS)
    d = st.deployment("kv")
    assert [i.name for i in d.instances] == ["kv-0", "kv-1", "kv-2"]  # shard order
    assert d.endpoints == ["127.0.0.1:7100", "127.0.0.1:7101", "127.0.0.1:7102"]
    assert d.ready == 2 and not d.is_ready and [i.name for i in d.not_ready] == ["kv-1"]
    assert d.instance(2).restarts == 1 and d.instance("kv-1").state == "activating/start"
    # the deployment's domain: its world-line and cut
    assert d.domain == "kv" and d.world_line == 2 and d.max_version == 57
    assert d.cut == [55, 55, 55]
    assert st.world_lines == {"kv": 2} and st.cuts == {"kv": [55, 55, 55]}
    assert [x.name for x in st.finder.domains] == ["kv", "sessions"]    # sorted
    assert st.finder.domain("kv").world_line == 2 and st.finder.domain("kv").workers == 3
    assert st.finder.domain("nope") is None
    text = cli.format_status(st)
    lines = text.splitlines()
    assert lines[0] == "cluster demo  node node1  generation 4  finder 127.0.0.1:7000"
    assert lines[2].split() == ["DEPLOYMENT", "IMPL", "VERSION", "SHARDS", "READY",
                                "CHECKPOINT", "MAXMEMORY", "WORLD-LINE", "CUT"]
    assert lines[3].split() == ["kv", "dpr-kv", "1", "3", "2/3", "100ms", "-", "2",
                                "55,55,55"]
    header = lines[5]
    assert header.split()[:4] == ["INSTANCE", "NODE", "WORKER", "ENDPOINT"]
    rows = lines[6:]
    assert len(rows) == 3
    # aligned: every column starts at the same offset as its header
    col = header.index("ENDPOINT")
    assert all(r[col:col + 14] == "127.0.0.1:710%d" % i for i, r in enumerate(rows))
    assert rows[2].endswith("unit failed: exit-code")
    assert all(line == line.rstrip() for line in lines)


def test_status_per_deployment_domains():
    """Two deployments, two domains: each its own world-line and cut; a
    deployment whose instances have not registered yet has none; an agent
    that does not send the deployment's cut: the instances' entries."""
    st = json.loads(json.dumps(DOC_STATUS))
    st["deployments"].append(
        {"name": "sessions", "impl": "dpr-kv", "version": "1", "shards": 2, "ready": 0,
         "domain": "sessions", "world_line": None, "max_version": None, "cut": [None, None],
         "instances": [{"name": "sessions-%d" % i, "worker": 4 + i, "cut": None,
                        "world_line": None} for i in (0, 1)]})
    del st["deployments"][0]["cut"]
    del st["deployments"][0]["domain"]
    s = Status.from_result(st)
    assert s.world_lines == {"kv": 2, "sessions": None}
    assert s.cuts == {"kv": [55, 55, 55], "sessions": [None, None]}
    assert s.deployment("kv").domain == "kv"
    lines = cli.format_status(s).splitlines()
    assert lines[3].split()[-2:] == ["2", "55,55,55"]
    assert lines[4].split()[-2:] == ["-", "-"]
    # a long cut is shortened
    st["deployments"][0]["cut"] = list(range(1000, 1030))
    lines = cli.format_status(Status.from_result(st)).splitlines()
    assert lines[3].split()[-1].endswith("...") and len(lines[3].split()[-1]) == 40


def _health_status():
    """The status example of docs/control-api.md with the health fields: kv-0
    refuses writes, kv-1 cannot recover (its unit failed), the finder lost
    kv-2's worker."""
    st = json.loads(json.dumps(DOC_STATUS))
    st["finder"].update({"state": "lost", "lost": ["kv-2"],
                         "error": "the finder does not know 1 worker whose versions it had "
                                  "committed (kv-2): its state was lost or replaced"})
    d = st["deployments"][0]
    d["maxmemory"] = 512 << 20
    texts = {"kv-0": ("refusing-writes", "refusing writes: checkpoints failing: cannot write "
                      "ckpt-58.kv: No space left on device"),
             "kv-1": ("failed", "failed: cannot recover: /var/lib/dpr/kv-1/ckpt-57.kv is "
                      "damaged (bad checksum)"),
             "kv-2": ("finder-lost-worker", "commits stopped: the finder does not know this "
                      "worker (its state was lost?)")}
    for i in d["instances"]:
        i["health"], i["status_text"] = texts[i["name"]]
        i["memory_max"] = 1342177280 + (64 << 20) + 10000 * 32768
    d["instances"][2]["active_state"], d["instances"][2]["sub_state"] = "failed", "failed"
    return st


def test_health_in_objects_and_table():
    st = Status.from_result(_health_status())
    d = st.deployment("kv")
    assert d.maxmemory == 512 << 20
    assert [i.health for i in d.instances] == ["refusing-writes", "failed", "finder-lost-worker"]
    assert [i.name for i in st.unhealthy] == ["kv-0", "kv-1", "kv-2"]
    assert not d.instance(0).healthy and d.instance(1).status_text.startswith("failed: ")
    assert st.finder_lost and st.finder.lost == ["kv-2"]
    lines = cli.format_status(st).splitlines()
    assert lines[1].startswith("warning: the finder's state was lost: the finder does not "
                               "know 1 worker")
    assert lines[4].split()[-3] == "512mb"
    header = lines[6]
    assert "HEALTH" in header.split()
    col = header.index("HEALTH")
    assert [r[col:].split()[0] for r in lines[7:10]] == ["refusing-writes", "failed",
                                                         "finder-lost-worker"]
    assert lines[11] == "unhealthy:"
    assert lines[12] == ("  kv-0 [refusing-writes] refusing writes: checkpoints failing: "
                         "cannot write ckpt-58.kv: No space left on device")
    assert lines[13].startswith("  kv-1 [failed] failed: cannot recover: ")
    assert lines[14].startswith("  kv-2 [finder-lost-worker] commits stopped: ")
    # an agent without these fields: healthy as far as anyone can tell
    st = Status.from_result(DOC_STATUS)
    assert st.unhealthy == [] and not st.finder_lost
    assert "unhealthy:" not in cli.format_status(st)


def test_health_event_line():
    from dpr.control import Event
    ev = Event({"seq": 20, "time": "t", "type": "health", "name": "kv-0",
                "health": "refusing-writes", "previous": "ok",
                "status_text": "refusing writes: checkpoints failing: disk full"})
    assert str(ev) == ("t #20 health kv-0 health=refusing-writes previous=ok "
                       "status_text=refusing writes: checkpoints failing: disk full")


def test_status_table_empty():
    st = Status.from_result({"cluster": "demo", "node": "n", "generation": 0,
                             "finder": None, "deployments": []})
    assert cli.format_status(st).endswith(
        "no deployments (apply a spec: dprctl apply -f cluster.yaml)")


def test_table():
    assert cli.table(["A", "BB"], [["xxx", None], [1, "y"]]) == "A    BB\nxxx  -\n1    y"


def test_event_line():
    from dpr.control import Event
    ev = Event({"seq": 17, "time": "2026-11-25T08:00:00.123Z", "type": "instance",
                "name": "kv-0", "active_state": "active", "sub_state": "running",
                "ready": True, "restarts": 1, "main_pid": 4242})
    assert str(ev) == ("2026-11-25T08:00:00.123Z #17 instance kv-0 active/running ready "
                       "restarts=1 pid=4242")
    ev = Event({"seq": 18, "time": "t", "type": "apply", "generation": 5,
                "plan": {"created": ["kv-3"], "updated": ["kv-0"], "deleted": [],
                         "unchanged": ["kv-1"]}})
    assert str(ev) == "t #18 apply +kv-3 ~kv-0 generation=5"
    assert ev.type == "apply" and ev["generation"] == 5 and json.dumps(ev.data)
