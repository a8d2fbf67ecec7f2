"""DNS-SD records without a network: TXT parsing and building, instance
names, master-file escaping, the zone builder (dpr.dnszone) from the
agent's status/nodes answers, the nsupdate script, argument checks of
dpr.discover and of dprctl discover / dns-zone (usage errors come before
any browse or connect). The same records against real servers:
test_discover_dns.py (knotd, nsupdate, dig) and test_discover_mdns.py
(python3-zeroconf on loopback)."""
import re

import pytest

from dpr import cli, discover as D, dnszone as Z
from dpr.errors import DiscoveryError


def run(capsys, *argv):
    try:
        rc = cli.main(list(argv))
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


# --- TXT ----------------------------------------------------------------------------

def test_parse_txt_rules():
    txt = D.parse_txt([b"txtvers=1", b"Cluster=demo", b"cluster=other", b"", b"=nokey",
                       b"flag", b"empty=", b"eq=a=b", b"utf=caf\xc3\xa9", b"bad=\xff"])
    assert txt == {"txtvers": "1", "cluster": "demo", "flag": "", "empty": "", "eq": "a=b",
                   "utf": "caf\u00e9", "bad": "\ufffd"}
    assert D.parse_txt(["node=n1"]) == {"node": "n1"}


def test_txt_wire_form_round_trip():
    strings = D.encode_txt(D.agent_txt("demo", "node1", "10.0.0.1:7000", state="member",
                                       raft="10.0.0.1:7400", ctl="10.0.0.1:7403"))
    raw = b"".join(bytes([len(s)]) + s for s in strings)
    assert D.txt_strings(raw) == strings
    assert D.parse_txt(D.txt_strings(raw)) == {
        "txtvers": "1", "cluster": "demo", "node": "node1", "api": "1",
        "finder": "10.0.0.1:7000", "raft": "10.0.0.1:7400", "state": "member",
        "ctl": "10.0.0.1:7403"}
    assert D.txt_strings(b"\x05ab") == [b"ab"]  # a length past the end keeps the rest


def test_txt_builders_carry_txtvers_first_and_optional_keys():
    a = D.agent_txt("demo", "n1", "127.0.0.1:7000", state="single")
    assert list(a)[0] == "txtvers" and "raft" not in a and "ctl" not in a
    f = D.finder_txt("demo", "n2", "10.0.0.2:7000", term=7)
    assert f == {"txtvers": "1", "cluster": "demo", "node": "n2", "term": "7",
                 "finder": "10.0.0.2:7000"}
    c = D.cachestore_txt("demo", "kv", 2, 3, 12, "1.4", "dpr-kv", "n3", "10.0.0.3:7102")
    assert c == {"txtvers": "1", "cluster": "demo", "deployment": "kv", "shard": "2",
                 "shards": "3", "worker": "12", "version": "1.4", "impl": "dpr-kv",
                 "node": "n3", "addr": "10.0.0.3:7102"}
    # a TLS-only port: tls= (the agent's TXT, publish.c), read back as .tls
    t = D.cachestore_txt("demo", "kv", 2, 3, 12, "1.4", "dpr-kv", "n3", "10.0.0.3:7102",
                         tls="required")
    assert t == dict(c, tls="required")
    rec = D.Service(D.CACHESTORE, "kv-2@demo", "n3.local", 7102, txt=t)
    assert rec.tls == "required" and rec.endpoint == "10.0.0.3:7102"
    assert D.Service(D.CACHESTORE, "kv-2@demo", "n3.local", 7102, txt=c).tls is None


def test_encode_txt_refuses_bad_strings():
    with pytest.raises(ValueError, match="255"):
        D.encode_txt({"k": "x" * 300})
    with pytest.raises(ValueError, match="without '='"):
        D.encode_txt({"a=b": "1"})
    with pytest.raises(ValueError, match="non-empty"):
        D.encode_txt({"": "1"})


def test_instance_names_fit_one_label():
    assert D.agent_instance("node1", "demo") == "node1@demo"
    assert D.finder_instance("demo") == "finder@demo"
    assert D.cachestore_instance("kv", 3, "demo") == "kv-3@demo"
    # longer than a label: the agent's rule (agent/src/dnssd.c): the start of
    # the node's name, "~", FNV-1a of it in 8 hex digits, "@cluster"
    node = "n" * 40 + "x" * 23
    name = D.agent_instance(node, "demo")
    assert name == node[:49] + "~%08x" % D._fnv1a(node.encode()) + "@demo"
    assert len(name) == 63
    assert D.agent_instance("n" * 62 + "y", "demo") != D.agent_instance("n" * 62 + "z", "demo")
    assert D._fnv1a(b"") == 0x811C9DC5 and D._fnv1a(b"a") == 0xE40C292C
    long_cluster = D.agent_instance("node1", "c" * 63)
    assert len(long_cluster.encode()) <= 63


# --- arguments of dpr.discover --------------------------------------------------------

@pytest.mark.parametrize("text,want", [
    ("10.0.0.53", ("10.0.0.53", 53)), ("127.0.0.1:5353", ("127.0.0.1", 5353)),
    ("::1", ("::1", 53)), ("[::1]:5300", ("::1", 5300)), (" 10.0.0.1 ", ("10.0.0.1", 53)),
])
def test_parse_nameserver(text, want):
    assert D.parse_nameserver(text) == want


@pytest.mark.parametrize("text", ["", "ns.example.com", "10.0.0.1:0", "10.0.0.1:x",
                                  "[::1", "[::1]x", "10.0.0.1:70000"])
def test_parse_nameserver_refuses(text):
    with pytest.raises(ValueError, match="nameserver"):
        D.parse_nameserver(text)


def test_check_domain():
    assert D.check_domain("local.") == "local"
    assert D.check_domain("dpr.example.com") == "dpr.example.com"
    for bad in ("", ".", "a..b", "a b", "-a.b", "x" * 64 + ".com", "a/b"):
        with pytest.raises(ValueError, match="domain"):
            D.check_domain(bad)


def test_browse_refuses_mixed_back_end_arguments():
    with pytest.raises(ValueError, match="nameserver is for unicast"):
        D.browse(D.AGENT, nameserver="127.0.0.1")
    with pytest.raises(ValueError, match="interfaces are for mDNS"):
        D.browse(D.AGENT, domain="dpr.test", interfaces=["127.0.0.1"])
    with pytest.raises(ValueError, match="service type"):
        D.browse("dpr-agent")
    with pytest.raises(ValueError, match="timeout"):
        D.browse(D.AGENT, domain="dpr.test", nameserver="127.0.0.1:1", timeout=0)


def svc(stype, name, **txt):
    t = {"txtvers": "1"}
    t.update({k: str(v) for k, v in txt.items()})
    return D.Service(stype, name, "h.local", 7000, ["10.0.0.1"], t)


def test_filtering_sorting_and_grouping():
    found = [svc(D.AGENT, "b@demo", cluster="demo", node="b"),
             svc(D.AGENT, "a@demo", cluster="demo", node="a"),
             svc(D.AGENT, "a@other", cluster="other", node="a"),
             D.Service(D.AGENT, "x@demo", "h", 1, [], {"txtvers": "2", "cluster": "demo"}),
             D.Service(D.AGENT, "y@demo", "h", 1, [], {"cluster": "demo"})]
    assert [s.name for s in D._keep(found, "demo")] == ["a@demo", "b@demo"]
    assert [s.name for s in D._keep(found, None)] == ["a@demo", "a@other", "b@demo"]
    insts = [svc(D.CACHESTORE, "kv-10@demo", deployment="kv", shard=10),
             svc(D.CACHESTORE, "kv-2@demo", deployment="kv", shard=2),
             svc(D.CACHESTORE, "a-0@demo", deployment="a", shard=0)]
    assert [s.name for s in D._keep(insts, None)] == ["a-0@demo", "kv-2@demo", "kv-10@demo"]
    fs = [svc(D.FINDER, "finder@demo", term=3), svc(D.FINDER, "finder@demo", term=9)]
    c = D.DiscoveredCluster("demo", finders=D._keep(fs, None), instances=D._keep(insts, None))
    assert c.finder.term == 9
    assert list(c.deployments) == ["a", "kv"]
    assert c.as_dict()["finder"]["txt"]["term"] == "9"


def test_service_endpoint():
    assert svc(D.CACHESTORE, "kv-0@d", addr="10.0.0.9:7100").endpoint == "10.0.0.9:7100"
    assert svc(D.AGENT, "n@d", finder="10.0.0.1:7000").endpoint == "10.0.0.1:7000"
    assert svc(D.AGENT, "n@d").endpoint == "10.0.0.1:7000"  # address and SRV port
    assert D.Service(D.AGENT, "n", "h.local", 9, ["fd00::1"], {}).endpoint == "[fd00::1]:9"
    assert D.Service(D.AGENT, "n", None, 9, [], {}).endpoint is None


def test_no_agents_message_names_what_was_seen():
    seen = [svc(D.AGENT, "n1@other", cluster="other", node="n1"),
            svc(D.AGENT, "n2@other", cluster="other", node="n2"),
            D.Service(D.AGENT, "x@demo", "h", 1, [], {"txtvers": "9", "cluster": "demo"})]
    msg = D.no_agents_message("demo", "local", 3, None, ["127.0.0.1"], seen)
    assert msg.startswith("no dpr-agent of cluster 'demo' found in domain 'local' (mDNS on "
                          "127.0.0.1, 3s)")
    assert "cluster 'other' (n1, n2)" in msg and "1 agent record(s) of another TXT" in msg
    msg = D.no_agents_message("demo", "local", 3, None, None, [])
    assert "mDNS does not cross routers" in msg
    msg = D.no_agents_message("demo", "dpr.test", 3, "127.0.0.1:53", None, [])
    assert "DNS server 127.0.0.1:53" in msg and "dprctl dns-zone demo --domain dpr.test" in msg


# --- master-file escaping ---------------------------------------------------------------

@pytest.mark.parametrize("label,want", [
    ("node1@demo", r"node1\@demo"),
    ("kv-0@demo", r"kv-0\@demo"),
    ("a.b", r"a\.b"),
    ("a b", r"a\032b"),
    ('a"b', r'a\"b'),
    ("a\\b", r"a\\b"),
    ("a;b(c)$", r"a\;b\(c\)\$"),
    ("tab\there", r"tab\009here"),
    ("caf\u00e9", r"caf\195\169"),
    ("under_score-x", "under_score-x"),
])
def test_escape_label(label, want):
    assert Z.escape_label(label) == want


def test_escape_label_refuses_empty_and_long():
    with pytest.raises(ValueError, match="1 to 63 bytes"):
        Z.escape_label("")
    with pytest.raises(ValueError, match="1 to 63 bytes"):
        Z.escape_label("x" * 64)


def test_txt_data_quotes():
    assert Z.txt_data({"txtvers": "1", "v": 'a"b\\c d', "u": "\u00e9"}) == \
        r'"txtvers=1" "v=a\"b\\c d" "u=\195\169"'


# --- the zone builder ----------------------------------------------------------------------

SINGLE_STATUS = {
    "cluster": "demo", "node": "node1", "generation": 1, "raft": None,
    "finder": {"address": "10.0.0.1:7000", "served_here": True},
    "deployments": [{"name": "kv", "impl": "dpr-kv", "version": "1", "shards": 2,
                     "instances": [
                         {"name": "kv-0", "node": "node1", "worker": 1, "shard": 0,
                          "endpoint": "10.0.0.1:7100"},
                         {"name": "kv-1", "node": "node1", "worker": 2, "shard": 1,
                          "endpoint": "10.0.0.1:7101"}]}]}
SINGLE_NODES = {"nodes": [{"name": "node1", "address": "10.0.0.1", "self": True,
                           "leader": True, "state": "up", "role": "single"}]}


def recs(zone):
    return [(r.name, r.ttl, r.type, r.data) for r in zone.records]


def test_zone_of_a_single_node():
    zone = Z.build_zone(SINGLE_STATUS, SINGLE_NODES, "dpr.example.com.", ttl=60)
    d = "dpr.example.com."
    agent = r"node1\@demo._dpr-agent._tcp." + d
    finder = r"finder\@demo._dpr-finder._tcp." + d
    kv0, kv1 = (r"kv-%d\@demo._dpr-cs._tcp.%s" % (i, d) for i in (0, 1))
    assert recs(zone) == [
        ("_services._dns-sd._udp." + d, 60, "PTR", "_dpr-agent._tcp." + d),
        ("_services._dns-sd._udp." + d, 60, "PTR", "_dpr-finder._tcp." + d),
        ("_services._dns-sd._udp." + d, 60, "PTR", "_dpr-cs._tcp." + d),
        ("_dpr-agent._tcp." + d, 60, "PTR", agent),
        (agent, 60, "SRV", "0 0 7000 node1." + d),
        (agent, 60, "TXT", '"txtvers=1" "cluster=demo" "node=node1" "api=1" '
                           '"finder=10.0.0.1:7000" "state=single"'),
        ("_dpr-finder._tcp." + d, 60, "PTR", finder),
        (finder, 60, "SRV", "0 0 7000 node1." + d),
        (finder, 60, "TXT", '"txtvers=1" "cluster=demo" "node=node1" "term=0" '
                            '"finder=10.0.0.1:7000"'),
        ("_dpr-cs._tcp." + d, 60, "PTR", kv0),
        ("_dpr-cs._tcp." + d, 60, "PTR", kv1),
        (kv0, 60, "SRV", "0 0 7100 node1." + d),
        (kv0, 60, "TXT", '"txtvers=1" "cluster=demo" "deployment=kv" "shard=0" "shards=2" '
                         '"worker=1" "version=1" "impl=dpr-kv" "node=node1" '
                         '"addr=10.0.0.1:7100"'),
        (kv1, 60, "SRV", "0 0 7101 node1." + d),
        (kv1, 60, "TXT", '"txtvers=1" "cluster=demo" "deployment=kv" "shard=1" "shards=2" '
                         '"worker=2" "version=1" "impl=dpr-kv" "node=node1" '
                         '"addr=10.0.0.1:7101"'),
        ("node1." + d, 60, "A", "10.0.0.1"),
    ]
    assert zone.warnings == [] and zone.domain == "dpr.example.com"


def test_zone_of_a_single_node_with_a_wildcard_finder_and_loopback():
    st = dict(SINGLE_STATUS, finder={"address": "0.0.0.0:7000"}, deployments=[])
    nodes = {"nodes": [dict(SINGLE_NODES["nodes"][0], address="127.0.0.1")]}
    zone = Z.build_zone(st, nodes, "dpr.test")
    txt = [r.data for r in zone.records if r.type == "TXT"][0]
    assert '"finder=127.0.0.1:7000"' in txt
    assert any("loopback" in w for w in zone.warnings)
    assert not any(r.name.startswith("_dpr-cs") for r in zone.records)


CLUSTER_STATUS = {
    "cluster": "prod", "node": "n2", "generation": 4,
    "raft": {"address": "10.0.0.2:7400", "role": "follower", "term": 5,
             "leader": "10.0.0.1:7400", "quorum": True},
    "finder": {"address": "10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000,10.0.0.4:7000",
               "served_here": False},
    "deployments": [
        {"name": "kv", "impl": "dpr-kv", "version": "2", "shards": 3, "instances": [
            {"name": "kv-0", "node": "n1", "worker": 4, "shard": 0,
             "endpoint": "10.0.0.1:7100"},
            {"name": "kv-1", "node": "n2", "worker": 5, "shard": 1,
             "endpoint": "10.0.0.2:7100"},
            {"name": "kv-2", "node": "n3", "worker": 6, "shard": 2,
             "endpoint": "10.0.0.3:7100", "ready": False, "health": "node-down",
             "node_down": True}]},
        {"name": "new", "version": "1", "shards": 1, "instances": [
            {"name": "new-0", "node": "n1", "worker": 9, "shard": 0, "ready": False}]}]}
CLUSTER_NODES = {"nodes": [
    {"name": "n1", "address": "10.0.0.1:7400", "leader": True, "state": "leader",
     "role": "voter", "term": 5},
    {"name": "n2", "address": "10.0.0.2:7400", "self": True, "leader": False,
     "state": "follower", "role": "voter", "term": 5},
    {"name": "n3", "address": "10.0.0.3:7400", "leader": False, "state": "member",
     "role": "voter", "term": 5, "down": True},
    {"name": "10.0.0.4:7400", "address": "10.0.0.4:7400", "leader": False,
     "state": "member", "role": "standby", "ctl": "10.0.0.4:7403"}]}


def test_zone_of_a_cluster():
    zone = Z.build_zone(CLUSTER_STATUS, CLUSTER_NODES, "dpr.test")
    by = {}
    for r in zone.records:
        by.setdefault((r.name, r.type), []).append(r.data)
    n1 = r"n1\@prod._dpr-agent._tcp.dpr.test."
    assert by[(n1, "SRV")] == ["0 0 7000 n1.dpr.test."]
    assert by[(n1, "TXT")] == ['"txtvers=1" "cluster=prod" "node=n1" "api=1" '
                               '"finder=10.0.0.1:7000" "raft=10.0.0.1:7400" "state=member"']
    # a member not named yet: its address as the name, a host label made of it
    unnamed = r"10\.0\.0\.4:7400\@prod._dpr-agent._tcp.dpr.test."
    assert by[(unnamed, "SRV")] == ["0 0 7000 10-0-0-4-7400.dpr.test."]
    assert '"ctl=10.0.0.4:7403"' in by[(unnamed, "TXT")][0]
    assert by[("10-0-0-4-7400.dpr.test.", "A")] == ["10.0.0.4"]
    # the finder: on the leader, with the term
    f = r"finder\@prod._dpr-finder._tcp.dpr.test."
    assert by[(f, "SRV")] == ["0 0 7000 n1.dpr.test."]
    assert by[(f, "TXT")] == ['"txtvers=1" "cluster=prod" "node=n1" "term=5" '
                              '"finder=10.0.0.1:7000"']
    # instances: not the one on a node down, not the one without endpoint
    assert sorted(by[("_dpr-cs._tcp.dpr.test.", "PTR")]) == [
        r"kv-0\@prod._dpr-cs._tcp.dpr.test.", r"kv-1\@prod._dpr-cs._tcp.dpr.test."]
    assert by[(r"kv-1\@prod._dpr-cs._tcp.dpr.test.", "SRV")] == ["0 0 7100 n2.dpr.test."]
    assert any("kv-2" in w and "down" in w for w in zone.warnings)
    assert any("new-0" in w for w in zone.warnings)
    assert {(r.name, r.data) for r in zone.records if r.type == "A"} == {
        ("n1.dpr.test.", "10.0.0.1"), ("n2.dpr.test.", "10.0.0.2"),
        ("n3.dpr.test.", "10.0.0.3"), ("10-0-0-4-7400.dpr.test.", "10.0.0.4")}


def test_zone_without_a_leader_has_no_finder_record():
    nodes = {"nodes": [dict(n, leader=False) for n in CLUSTER_NODES["nodes"]]}
    zone = Z.build_zone(CLUSTER_STATUS, nodes, "dpr.test")
    assert not any("_dpr-finder" in r.name for r in zone.records)
    assert any("no leader" in w for w in zone.warnings)


def test_zone_records_check_their_arguments():
    with pytest.raises(ValueError, match="ttl"):
        Z.build_zone(SINGLE_STATUS, SINGLE_NODES, "dpr.test", ttl=-1)
    with pytest.raises(ValueError, match="domain"):
        Z.build_zone(SINGLE_STATUS, SINGLE_NODES, "bad domain")
    with pytest.raises(ValueError, match="no cluster"):
        Z.build_zone({}, SINGLE_NODES, "dpr.test")
    with pytest.raises(ValueError, match="status and nodes"):
        Z.build_zone([], SINGLE_NODES, "dpr.test")


def test_zone_text_is_master_file_lines():
    text = Z.zone_text(Z.build_zone(SINGLE_STATUS, SINGLE_NODES, "dpr.test"))
    lines = text.splitlines()
    assert lines[0].startswith("; DNS-SD records of DPR cluster demo for dpr.test.")
    body = [x for x in lines if not x.startswith(";")]
    assert len(body) == 16
    for line in body:
        assert re.fullmatch(r"\S+ \d+ IN (PTR|SRV|TXT|A) .+", line), line


def test_nsupdate_script():
    zone = Z.build_zone(SINGLE_STATUS, SINGLE_NODES, "dpr.test", ttl=30)
    lines = Z.nsupdate_script(zone, "127.0.0.1:5300").splitlines()
    assert lines[1:3] == ["server 127.0.0.1 5300", "zone dpr.test."]
    assert lines[-1] == "send" and lines.count("send") == 1
    agent = r"node1\@demo._dpr-agent._tcp.dpr.test."
    i = lines.index("update delete " + agent)
    assert lines[i + 1] == "update add %s 30 IN SRV 0 0 7000 node1.dpr.test." % agent
    assert lines[i + 2].startswith("update add %s 30 IN TXT \"txtvers=1\"" % agent)
    assert "update delete node1.dpr.test. A" in lines
    assert "update delete node1.dpr.test. AAAA" in lines
    # shared PTR sets are added to, never deleted
    assert not any(x.startswith("update delete _") for x in lines)
    assert "update add _services._dns-sd._udp.dpr.test. 30 IN PTR _dpr-cs._tcp.dpr.test." \
        in lines
    # every delete comes before the adds of its name
    for n, line in enumerate(lines):
        if line.startswith("update add ") and "PTR" not in line:
            name = line.split()[2]
            assert any(x.startswith("update delete " + name) for x in lines[:n]), line
    assert "server" not in Z.nsupdate_script(zone)
    with pytest.raises(ValueError, match="nameserver"):
        Z.nsupdate_script(zone, "dns.example")


def test_nsupdate_script_sends_in_parts():
    insts = [{"name": "kv-%d" % i, "node": "node1", "worker": i + 1, "shard": i,
              "endpoint": "10.0.0.1:%d" % (7100 + i)} for i in range(150)]
    st = dict(SINGLE_STATUS, deployments=[dict(SINGLE_STATUS["deployments"][0], shards=150,
                                               instances=insts)])
    text = Z.nsupdate_script(Z.build_zone(st, SINGLE_NODES, "dpr.test"))
    updates = [x for x in text.splitlines() if x.startswith("update ")]
    assert text.count("\nsend\n") == -(-len(updates) // Z.UPDATES_PER_SEND) > 1


# --- dprctl: usage errors before any network ------------------------------------------------

@pytest.mark.parametrize("argv,needle", [
    (["dns-zone", "demo"], "the following arguments are required: --domain"),
    (["dns-zone", "demo", "--domain", "local"], "'local' is the mDNS domain"),
    (["dns-zone", "demo", "--domain", "dpr.test", "--server", "127.0.0.1"],
     "--server goes with --nsupdate"),
    (["dns-zone", "demo", "--domain", "dpr.test", "--nsupdate", "--server", "ns.example"],
     "expected an IP address"),
    (["dns-zone", "demo", "--domain", "a..b"], "domain 'a..b'"),
    (["dns-zone", "demo", "--domain", "dpr.test", "--ttl", "-5"], "must be 0..2147483647"),
    (["dns-zone", "demo", "--domain", "dpr.test", "--ttl", "x"], "whole number"),
    (["discover", "--nameserver", "127.0.0.1"], "--nameserver is for unicast"),
    (["discover", "--domain", "dpr.test", "--interface", "127.0.0.1"],
     "--interface is for mDNS"),
    (["discover", "-o", "yaml"], "invalid choice: 'yaml'"),
    (["discover", "--timeout", "0"], "must be > 0"),
])
def test_dprctl_usage_errors(capsys, argv, needle):
    rc, out, err = run(capsys, *argv)
    assert rc == 2, (out, err)
    assert needle in err and "Traceback" not in err


def test_dprctl_dns_zone_without_agent(capsys, tmp_path, monkeypatch):
    monkeypatch.delenv("DPR_SOCKET", raising=False)
    rc, out, err = run(capsys, "--socket", str(tmp_path / "none.sock"), "dns-zone", "demo",
                       "--domain", "dpr.test")
    assert rc == 1 and out == ""
    assert "cannot reach dpr-agent" in err and "Traceback" not in err


def test_client_discover_without_agents_says_what_it_saw(monkeypatch):
    import dpr
    seen = {D.AGENT: [svc(D.AGENT, "n1@other", cluster="other", node="n1")],
            D.CACHESTORE: []}
    monkeypatch.setattr(D, "_browse_raw", lambda *a, **k: seen)
    with pytest.raises(DiscoveryError) as e:
        dpr.Client.discover("demo", "kv", domain="dpr.test", nameserver="127.0.0.1:53")
    assert "no dpr-agent of cluster 'demo' found in domain 'dpr.test'" in str(e.value)
    assert "cluster 'other' (n1)" in str(e.value)


def test_zone_of_a_node_whose_address_is_an_interface():
    nodes = {"nodes": [dict(SINGLE_NODES["nodes"][0], address="eth1")]}
    zone = Z.build_zone(SINGLE_STATUS, nodes, "dpr.test")
    assert [(r.name, r.data) for r in zone.records if r.type == "A"] == [
        ("node1.dpr.test.", "10.0.0.1")]
