"""dpr.ClusterSpec / dpr.CacheStore: construction, dict and YAML round trips,
and client-side validation with the agent's paths and messages
(docs/control-api.md, "The cluster spec"). Pure: no agent needed."""
import os

import pytest

from dpr.errors import DprError
from dpr.mgmt_errors import SpecError
from dpr.spec import CacheStore, ClusterSpec, load_spec

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(ROOT, "examples", "cluster.yaml")


def spec_of(**cs):
    d = {"name": "kv", "impl": "dpr-kv", "version": "1", "shards": 3}
    d.update(cs)
    return {"name": "demo", "cachestores": [d]}


def problems(d):
    with pytest.raises(SpecError) as ei:
        ClusterSpec.from_dict(d)
    return ei.value.problems


def test_build_and_to_dict():
    spec = ClusterSpec("demo", cachestores=[
        CacheStore("kv", impl="dpr-kv", version="1", shards=3, checkpoint_interval_ms=100),
        CacheStore("sessions", version="2.0-rc1", shards=1, max_clients=50)])
    assert spec.validate() is spec
    assert spec.to_dict() == {"name": "demo", "cachestores": [
        {"name": "kv", "impl": "dpr-kv", "version": "1", "shards": 3,
         "checkpoint_interval_ms": 100},
        {"name": "sessions", "impl": "dpr-kv", "version": "2.0-rc1", "shards": 1,
         "max_clients": 50}]}
    assert spec.cachestore("sessions").shards == 1


def test_defaults_are_left_to_the_agent():
    d = CacheStore("kv", version="1", shards=2).to_dict()
    assert "checkpoint_interval_ms" not in d and "max_clients" not in d
    assert d["impl"] == "dpr-kv"


def test_dict_round_trip():
    d = spec_of(checkpoint_interval_ms=250, max_clients=7)
    assert ClusterSpec.from_dict(d).to_dict() == d


def test_yaml_round_trip():
    spec = ClusterSpec("demo", [CacheStore("kv", version="1", shards=3),
                                CacheStore("b-2", version="v9", shards=1024,
                                           checkpoint_interval_ms=60000, max_clients=100000)])
    text = spec.to_yaml()
    assert ClusterSpec.from_yaml(text) == spec
    assert ClusterSpec.from_yaml(text).to_yaml() == text


def test_example_file_is_valid(tmp_path):
    spec = ClusterSpec.from_file(EXAMPLE)
    assert spec.name == "demo"
    assert [(c.name, c.impl, c.shards) for c in spec.cachestores] == [
        ("kv", "dpr-kv", 3), ("sessions", "dpr-kv", 3)]
    p = tmp_path / "again.yaml"
    p.write_text(spec.to_yaml())
    assert ClusterSpec.load(str(p)) == spec
    assert load_spec(str(p)) == spec and load_spec(spec.to_dict()) == spec
    assert load_spec(spec) is spec


def test_json_is_yaml():
    import json
    d = spec_of()
    assert ClusterSpec.from_yaml(json.dumps(d)).to_dict() == d


def test_empty_cachestores_is_valid():
    assert ClusterSpec.from_dict({"name": "demo", "cachestores": []}).cachestores == []


@pytest.mark.parametrize("field,value,message", [
    ("shards", 0, "must be >= 1 (got 0)"),
    ("shards", -3, "must be >= 1 (got -3)"),
    ("shards", 1025, "must be <= 1024 (got 1025)"),
    ("shards", "3", "must be an integer, 1 to 1024 (got a string; remove the quotes)"),
    ("shards", 2.5, "must be an integer, 1 to 1024 (got a number with a fraction)"),
    ("shards", True, "must be an integer, 1 to 1024 (got a boolean)"),
    ("checkpoint_interval_ms", 9, "must be >= 10 (got 9)"),
    ("checkpoint_interval_ms", 60001, "must be <= 60000 (got 60001)"),
    ("checkpoint_interval_ms", None, "must be an integer, 10 to 60000 (got null)"),
    ("max_clients", 0, "must be >= 1 (got 0)"),
    ("max_clients", 100001, "must be <= 100000 (got 100001)"),
    ("version", "", "must be 1 to 64 characters of A-Z a-z 0-9 . _ + - (got '')"),
    ("version", "a b", "must be 1 to 64 characters of A-Z a-z 0-9 . _ + - (got 'a b')"),
    ("version", "x" * 65, "must be 1 to 64 characters of A-Z a-z 0-9 . _ + - (got '"
     + "x" * 57 + "...')"),
    ("version", 1, "must be a string (got an integer; quote it in YAML: version: \"1\")"),
    ("version", None, "must be a string (got null)"),
    ("impl", None, "must be a string (got null)"),
    ("impl", "", "unknown implementation '' (e.g. dpr-kv)"),
    ("name", "Kv", "must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most 32 characters "
     "(got 'Kv')"),
    ("name", "kv-", "must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most 32 characters "
     "(got 'kv-')"),
    ("name", "k--v", "must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most 32 characters "
     "(got 'k--v')"),
    ("name", "1kv", "must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most 32 characters "
     "(got '1kv')"),
    ("name", "k" * 33, "must match ^[a-z][a-z0-9]*(-[a-z0-9]+)*$ and have at most 32 "
     "characters (got '" + "k" * 33 + "')"),
    ("name", 5, "must be a string (got an integer)"),
])
def test_field_rules(field, value, message):
    assert problems(spec_of(**{field: value})) == [("cachestores[0].%s" % field, message)]


@pytest.mark.parametrize("value,message", [
    ("1.5gb", "not a memory size: '1.5gb' (bytes, or a string of digits with b, k, kb, m, mb, "
     "g or gb as in Redis: \"512mb\")"),
    ("1tb", "not a memory size: '1tb' (bytes, or a string of digits with b, k, kb, m, mb, "
     "g or gb as in Redis: \"512mb\")"),
    (" 1mb", "not a memory size: ' 1mb' (bytes, or a string of digits with b, k, kb, m, mb, "
     "g or gb as in Redis: \"512mb\")"),
    (1000, "must be 0 (no limit) or at least 1048576 bytes (1mb) (got 1000)"),
    ("1000k", "must be 0 (no limit) or at least 1048576 bytes (1mb) (got 1000000)"),
    ("16385gb", "must be at most 17592186044416 bytes (16384gb) (got 17593259786240)"),
    ("99999999999999999999", "too large: '99999999999999999999' (at most 16384gb)"),
    (-1, "must be 0 (no limit) or a size in bytes, or a string of digits with b, k, kb, m, mb, "
     "g or gb as in Redis: \"512mb\" (got -1)"),
    (True, "must be a memory size: bytes, or a string of digits with b, k, kb, m, mb, g or gb "
     "as in Redis: \"512mb\" (got a boolean)"),
    (1.5, "must be a memory size: bytes, or a string of digits with b, k, kb, m, mb, g or gb "
     "as in Redis: \"512mb\" (got a number with a fraction)"),
    (None, "must be a memory size: bytes, or a string of digits with b, k, kb, m, mb, g or gb "
     "as in Redis: \"512mb\" (got null)"),
])
def test_maxmemory_rules(value, message):
    assert problems(spec_of(maxmemory=value)) == [("cachestores[0].maxmemory", message)]


@pytest.mark.parametrize("value,bytes_", [
    (0, 0), ("0", 0), (1 << 20, 1 << 20), ("512mb", 512 << 20), ("512MB", 512 << 20),
    ("2gb", 2 << 30), ("2g", 2 * 10 ** 9), ("1024kb", 1 << 20), ("1048576b", 1 << 20),
    ("16384gb", 1 << 44),
])
def test_maxmemory_accepted(value, bytes_):
    from dpr.spec import parse_memory
    spec = ClusterSpec.from_dict(spec_of(maxmemory=value))
    assert spec.cachestores[0].maxmemory == value          # sent as written
    assert spec.to_dict()["cachestores"][0]["maxmemory"] == value
    assert parse_memory(value) == bytes_


def test_maxmemory_yaml_and_default():
    spec = ClusterSpec.from_yaml("name: demo\ncachestores:\n  - {name: kv, version: '1', "
                                 "shards: 1, maxmemory: 256mb}\n")
    assert spec.cachestores[0].maxmemory == "256mb"
    assert "maxmemory" not in CacheStore("kv", version="1", shards=1).to_dict()


def test_format_memory():
    from dpr.spec import format_memory
    assert [format_memory(n) for n in (None, 0, 1 << 20, 512 << 20, 2 << 30, 1500, 3072)] == \
        [None, None, "1mb", "512mb", "2gb", "1500b", "3kb"]


@pytest.mark.parametrize("field,value", [
    ("shards", 1), ("shards", 1024), ("checkpoint_interval_ms", 10),
    ("checkpoint_interval_ms", 60000), ("max_clients", 1), ("max_clients", 100000),
    ("version", "1.2.3+build_7-x"), ("version", "v" * 64), ("name", "a"),
    ("name", "k" * 32), ("name", "kv-eu1-2"), ("impl", "some-other-impl"),
])
def test_field_limits_accepted(field, value):
    assert ClusterSpec.from_dict(spec_of(**{field: value}))


def test_required_fields():
    d = {"name": "demo", "cachestores": [{"impl": "dpr-kv"}]}
    assert problems(d) == [
        ("cachestores[0].name", "required (a string)"),
        ("cachestores[0].version", "required (a string)"),
        ("cachestores[0].shards", "required (an integer, 1 to 1024)")]
    assert problems({"cachestores": []}) == [
        ("name", "required (a string: the agent's cluster name)")]
    assert problems({"name": "demo"}) == [
        ("cachestores", "required (a list of deployments; an empty list deletes every "
         "deployment)")]


def test_impl_defaults_to_dpr_kv():
    d = spec_of()
    del d["cachestores"][0]["impl"]
    assert ClusterSpec.from_dict(d).cachestores[0].impl == "dpr-kv"


def test_unknown_fields_everywhere():
    d = spec_of(shard=3)
    d["cachestore"] = []
    assert problems(d) == [
        ("cachestore", "unknown field (did you mean 'cachestores'? known: name, cachestores)"),
        ("cachestores[0].shard", "unknown field (did you mean 'shards'? known: name, impl, "
         "version, shards, checkpoint_interval_ms, max_clients, maxmemory, checkpoint_mode, "
         "tls, node_selector, replicas, rollout)")]


def test_rollout_settings():
    """rollout: the agent's rules and messages (spec.c, get_rollout)."""
    d = spec_of(rollout={"min_ready_seconds": 5, "max_unavailable": 2, "partition": 1,
                         "progress_deadline_seconds": 60, "paused": True})
    assert ClusterSpec.from_dict(d).to_dict()["cachestores"][0]["rollout"]["partition"] == 1
    ClusterSpec.from_dict(spec_of(rollout={}))  # every field optional
    assert problems(spec_of(rollout=3)) == [
        ("cachestores[0].rollout", 'must be an object: {"min_ready_seconds", '
         '"max_unavailable", "partition", "progress_deadline_seconds", "paused"} '
         "(got an integer)")]
    got = problems(spec_of(rollout={"max_unavailable": 0, "partition": -1, "paused": "yes",
                                    "surge": 1}))
    assert sorted(p for p, _ in got) == [
        "cachestores[0].rollout.max_unavailable", "cachestores[0].rollout.partition",
        "cachestores[0].rollout.paused", "cachestores[0].rollout.surge"]
    assert ("cachestores[0].rollout.paused", "must be true or false (got a string)") in got
    # resumed: the count `rollout resume` raises (a spec read back holds it)
    d = spec_of(rollout={"resumed": 3})
    assert ClusterSpec.from_dict(d).to_dict()["cachestores"][0]["rollout"]["resumed"] == 3
    assert problems(spec_of(rollout={"resumed": -1})) == [
        ("cachestores[0].rollout.resumed", "must be >= 0 (got -1)")]


def test_every_problem_at_once_in_order():
    d = {"name": "Demo", "cachestores": [
        {"name": "kv", "version": 1, "shards": 0, "extra": 1},
        {"name": "kv", "version": "1", "shards": 1},
        "oops",
        {"name": "b", "version": "1", "shards": 1, "max_clients": 0}]}
    got = problems(d)
    assert [p for p, _ in got] == [
        "name",
        "cachestores[0].extra", "cachestores[0].version", "cachestores[0].shards",
        "cachestores[2]", "cachestores[3].max_clients", "cachestores[1].name"]
    assert got[4] == ("cachestores[2]", "must be an object (got a string)")
    assert got[6] == ("cachestores[1].name", "duplicate name 'kv' (also cachestores[0])")


def test_spec_shape_errors():
    assert problems([1, 2]) == [("", "the spec must be an object with name and cachestores "
                                     "(got a list)")]
    assert problems({"name": "demo", "cachestores": {"kv": {}}}) == [
        ("cachestores", "must be a list (got an object)")]
    assert problems({"name": "a_b", "cachestores": []})[0][0] == "name"


def test_validate_on_objects():
    spec = ClusterSpec("demo", [CacheStore("kv", version="1", shards=0),
                                CacheStore("kv", version="1", shards=1)])
    with pytest.raises(SpecError) as ei:
        spec.validate()
    assert ei.value.problems == [
        ("cachestores[0].shards", "must be >= 1 (got 0)"),
        ("cachestores[1].name", "duplicate name 'kv' (also cachestores[0])")]
    assert str(ei.value) == ("invalid cluster spec (2 problems): cachestores[0].shards: must "
                             "be >= 1 (got 0); cachestores[1].name: duplicate name 'kv' (also "
                             "cachestores[0])")
    # a version left out is an error in Python as in a file
    assert CacheStore("kv", shards=1).problems() == [
        ("cachestores[0].version", "required (a string)")]


def test_spec_error_types():
    with pytest.raises(SpecError) as ei:
        ClusterSpec.from_dict(spec_of(shards=0))
    e = ei.value
    assert isinstance(e, DprError) and isinstance(e, ValueError)
    assert e.code == "spec_invalid"
    assert str(e) == "invalid cluster spec: cachestores[0].shards: must be >= 1 (got 0)"


def test_yaml_errors():
    with pytest.raises(SpecError) as ei:
        ClusterSpec.from_yaml("name: demo\nname: other\ncachestores: []\n", "c.yaml")
    assert ei.value.problems == [("", "c.yaml: not valid YAML: line 2 column 1: duplicate key "
                                      "'name' (first at line 1) (while constructing a "
                                      "mapping)")]
    with pytest.raises(SpecError) as ei:
        ClusterSpec.from_yaml("name: [demo\n", "c.yaml")
    assert ei.value.problems[0][1].startswith("c.yaml: not valid YAML: line 2 column 1: ")
    with pytest.raises(SpecError) as ei:
        ClusterSpec.from_yaml("", "c.yaml")
    assert ei.value.problems == [("", "c.yaml: empty; a cluster spec needs name and "
                                      "cachestores")]
    # safe_load: no Python objects
    with pytest.raises(SpecError):
        ClusterSpec.from_yaml("!!python/object/apply:os.system ['true']\n")


def test_file_errors(tmp_path):
    with pytest.raises(SpecError) as ei:
        ClusterSpec.from_file(str(tmp_path / "nope.yaml"))
    assert ei.value.problems == [("", "%s: no such file" % (tmp_path / "nope.yaml"))]
    with pytest.raises(SpecError) as ei:
        ClusterSpec.from_file(str(tmp_path))
    assert "is a directory" in ei.value.problems[0][1]


def test_validate_false_keeps_bad_values():
    spec = ClusterSpec.from_dict(spec_of(shards=0), validate=False)
    assert spec.cachestores[0].shards == 0
    with pytest.raises(SpecError):  # structure is still checked
        ClusterSpec.from_dict(spec_of(bogus=1), validate=False)


def test_node_selector():
    ok = ClusterSpec.from_dict({"name": "demo", "cachestores": [
        {"name": "kv", "version": "1", "shards": 2,
         "node_selector": {"nodes": ["node1", "Node_2"], "labels": ["zone=a"]}}]})
    ok.validate()
    assert ok.to_dict()["cachestores"][0]["node_selector"] == {"nodes": ["node1", "Node_2"],
                                                               "labels": ["zone=a"]}
    assert "node_selector" not in CacheStore("kv", version="1", shards=1).to_dict()
    d = {"name": "demo", "cachestores": [
        {"name": "a", "version": "1", "shards": 1, "node_selector": ["n1"]},
        {"name": "b", "version": "1", "shards": 1,
         "node_selector": {"nodes": ["n 1", "n2", "n2"], "labels": ["SSD"], "zone": "a"}},
        {"name": "c", "version": "1", "shards": 1, "node_selector": {"labels": "ssd"}}]}
    got = problems(d)
    assert ("cachestores[0].node_selector",
            'must be an object: {"nodes": [node names], "labels": [labels every node must '
            'have]} (got a list)') in got, got
    wheres = [w for w, _ in got]
    assert "cachestores[1].node_selector.nodes[0]" in wheres, got
    assert ("cachestores[1].node_selector.nodes[2]", "'n2' is listed twice") in got, got
    assert "cachestores[1].node_selector.labels[0]" in wheres, got
    assert "cachestores[1].node_selector.zone" in wheres, got
    assert "cachestores[2].node_selector.labels" in wheres, got


def test_replicas():
    assert CacheStore("kv", version="1", shards=1, replicas=1).to_dict()["replicas"] == 1
    assert "replicas" not in CacheStore("kv", version="1", shards=1).to_dict()
    got = problems({"name": "demo", "cachestores": [
        {"name": "a", "version": "1", "shards": 1, "replicas": 3}]})
    assert got == [("cachestores[0].replicas", "must be <= 2 (got 3)")], got


@pytest.mark.parametrize("value, message", [
    ("fast", "must be \"log\" (change logs between full images, dpr-kv's default) or "
             "\"full\" (a full image every checkpoint) (got 'fast')"),
    ("", "must be \"log\" (change logs between full images, dpr-kv's default) or "
         "\"full\" (a full image every checkpoint) (got '')"),
    (1, "must be a string (got an integer)"),
    (None, "must be a string (got null)"),
])
def test_checkpoint_mode_rules(value, message):
    assert problems(spec_of(checkpoint_mode=value)) == [("cachestores[0].checkpoint_mode",
                                                         message)]


@pytest.mark.parametrize("value, where, message", [
    ("yes", "tls", "must be an object such as {\"clients\": \"required\"} (got a string)"),
    ({"clients": "yes"}, "tls.clients", "must be \"required\" (every client shows a "
     "certificate of the cluster's CA), \"optional\" (checked when shown) or \"off\" (none "
     "asked for) (got 'yes')"),
    ({"clients": 1}, "tls.clients", "must be a string (got an integer)"),
    ({"clients": None}, "tls.clients", "must be a string (got null)"),
])
def test_tls_rules(value, where, message):
    """tls: the agent's rules and messages (spec.c, get_tls)."""
    assert problems(spec_of(tls=value)) == [("cachestores[0]." + where, message)]


def test_tls_sent_only_when_given():
    for clients in ("required", "optional", "off"):
        spec = ClusterSpec.from_yaml("name: demo\ncachestores:\n- {name: kv, version: '1', "
                                     "shards: 1, tls: {clients: '%s'}}\n" % clients)
        assert spec.cachestores[0].to_dict()["tls"] == {"clients": clients}
    ClusterSpec.from_dict(spec_of(tls={}))  # (the agent reads {} as required)
    # YAML 1.1 reads a bare off as false
    got = ClusterSpec.from_yaml("name: demo\ncachestores:\n- {name: kv, version: '1', "
                                "shards: 1, tls: {clients: off}}\n", validate=False)
    assert got.problems() == [("cachestores[0].tls.clients", "must be a string (got a "
                               "boolean; quote it in YAML: clients: \"off\")")]
    assert "tls" not in CacheStore("kv", version="1", shards=1).to_dict()


def test_checkpoint_mode_sent_only_when_given():
    for mode in ("log", "full"):
        spec = ClusterSpec.from_yaml("name: demo\ncachestores:\n- {name: kv, version: '1', "
                                     "shards: 1, checkpoint_mode: %s}\n" % mode)
        assert spec.cachestores[0].to_dict()["checkpoint_mode"] == mode
    assert "checkpoint_mode" not in CacheStore("kv", version="1", shards=1).to_dict()
