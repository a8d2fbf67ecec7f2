"""DPR URLs (dpr.url, dpr.Client.from_url) and the client as a context
manager: the URL forms and their errors (pure), a client from a URL against
a real finder and real dpr-kv shards, and against a real dpr-agent's finder
port (DPR.CLUSTER.ENDPOINTS); `with Client(...)` closes the sessions'
sockets."""
import os

import pytest

import dpr
from dpr.url import parse_url


def test_deployment_form():
    u = parse_url("dpr://10.0.0.1:7100,10.0.0.2,[::1]:7002/web-cache?timeout=2.5&domain=x")
    assert u.tls is False
    assert u.hosts == ["10.0.0.1:7100", "10.0.0.2:7000", "[::1]:7002"]
    assert u.deployment == "web-cache" and u.shards is None
    assert u.options == {"timeout": 2.5, "domain": "x"}
    assert u.tls_files == {}


def test_shards_form_and_tls():
    u = parse_url("dprs://f:7000?shards=a:1,b:2&ca=/etc/dpr/ca.pem&cert=c.pem&key=k.pem")
    assert u.tls and u.hosts == ["f:7000"] and u.deployment is None
    assert u.shards == ["a:1", "b:2"]
    assert u.tls_files == {"ca": "/etc/dpr/ca.pem", "cert": "c.pem", "key": "k.pem"}
    assert parse_url("DPR://h/?shards=a:1").shards == ["a:1"]


@pytest.mark.parametrize("url,why", [
    ("http://h/kv", "expected dpr://"),
    ("h:7000/kv", "expected dpr://"),
    ("dpr:///kv", "no host"),
    ("dpr://h:7000", "no deployment"),
    ("dpr://h:7000/", "no deployment"),
    ("dpr://h:0/kv", "port in 1..65535"),
    ("dpr://h:x/kv", "port in 1..65535"),
    ("dpr://::1:7000/kv", "IPv6 address goes in brackets"),
    ("dpr://[::1:7000/kv", "closing ']'"),
    ("dpr://h,,g/kv", "empty host"),
    ("dpr://h,h:7000/kv", "listed twice"),
    ("dpr://user@h/kv", "no user"),
    ("dpr://h/kv#x", "fragment"),
    ("dpr://h/KV", "deployment 'KV'"),
    ("dpr://h/kv/more", "deployment 'kv/more'"),
    ("dpr://h/kv?timeout=0", "timeout='0'"),
    ("dpr://h/kv?timeout=nan", "timeout='nan'"),
    ("dpr://h/kv?resize_timeout=-1", "resize_timeout='-1'"),
    ("dpr://h/kv?timeout=1&timeout=2", "given twice"),
    ("dpr://h/kv?color=red", "unknown parameter color"),
    ("dpr://h/kv?timeout", "query"),
    ("dpr://h/kv?shards=a:1", "not both"),
    ("dpr://h/?shards=a:1,b", "shards=: address 'b'"),
    ("dpr://h/kv?ca=x.pem", "use dprs://"),
    ("dprs://h/kv?ca=", "ca= is empty"),
    ("dprs://h/kv?ca=a&key=k", "key= without cert="),
    ("dpr://" + ",".join("h%d" % i for i in range(17)) + "/kv", "17 hosts"),
])
def test_bad_urls_name_the_problem(url, why):
    with pytest.raises(ValueError) as e:
        parse_url(url)
    assert why in str(e.value)
    assert repr(url) in str(e.value)


def test_from_url_shards_form_builds_the_client():
    c = dpr.Client.from_url("dpr://127.0.0.1:7000,127.0.0.2:7000/?shards=127.0.0.1:7001,"
                            "127.0.0.1:7002&domain=kv&reconnect_timeout=3", timeout=4)
    assert c.shards == ["127.0.0.1:7001", "127.0.0.1:7002"]
    assert c.finders == ["127.0.0.1:7000", "127.0.0.2:7000"]
    assert c.domain == "kv" and c.reconnect_timeout == 3.0 and c.timeout == 4
    assert c.ssl_context is None


def test_from_url_option_errors():
    with pytest.raises(ValueError, match="timeout given both in the URL and as a keyword"):
        dpr.Client.from_url("dpr://h/?shards=a:1&timeout=2", timeout=3)
    with pytest.raises(ValueError, match="needs the cluster CA"):
        dpr.Client.from_url("dprs://h/?shards=a:1")
    with pytest.raises(ValueError, match="use dprs:// for TLS"):
        dpr.Client.from_url("dpr://h/?shards=a:1", ssl_context=object())
    with pytest.raises(ValueError, match="invalid domain name 'Bad'"):
        dpr.Client.from_url("dpr://h/?shards=a:1&domain=Bad")
    with pytest.raises(FileNotFoundError):
        dpr.Client.from_url("dprs://h/?shards=a:1&ca=/nonexistent/ca.pem")


def test_from_url_tls_files_make_the_context(tmp_path):
    from dpr import pki
    pki.init(str(tmp_path / "ca"), "demo")
    c = dpr.Client.from_url("dprs://h/?shards=a:1&ca=%s" % (tmp_path / "ca" / "ca.crt"))
    assert c.ssl_context is not None and c.ssl_context.check_hostname


def _fds():
    return len(os.listdir("/proc/self/fd"))


def test_with_client_closes_its_sessions(cluster3):
    url = "dpr://%s/?shards=%s" % (cluster3.finder.address, ",".join(cluster3.addresses))
    before = _fds()
    with dpr.Client.from_url(url) as c:
        assert c.shards == cluster3.addresses
        s1, s2 = c.session(), c.session()
        s1.set("a", 1)
        s2.set("b", 2)
        assert s1.wait_committed(timeout=10) == 1
        assert _fds() > before  # the sessions' sockets
        s2.close()  # closed before: closing again is fine
    assert c.closed
    assert _fds() == before
    with pytest.raises(dpr.SessionClosedError):
        s1.get("a")
    with pytest.raises(dpr.DprError, match="the client is closed"):
        c.session()


def test_from_url_asks_the_agent_for_the_deployment(agent):
    # the URL's host is asked for the deployment's endpoints on the finder
    # port of a real dpr-agent; one that runs no cluster of agents (no
    # cluster spec: tests/agent/test_agent_raft.py has those) refuses
    with pytest.raises(dpr.ResponseError, match="'DPR.CLUSTER.ENDPOINTS'"):
        dpr.Client.from_url("dpr://127.0.0.1:%d/kv?connect_timeout=2" % agent.finder_port)
