"""A DPR deployment whose every link is TLS (issue 14; docs/tls.md): a
dpr-finder and two dpr-kv shards with TLS ports only (--port 0), the shards
registering and reporting over TLS with their node certificates
(--finder-tls), and a dpr.Session with an application's client
certificate (ssl_context=). Operations commit (the finder's cut moves over
TLS). Every byte of the session's links and of the shards' links to the
finder goes through a recording proxy: a value written never shows in it,
nor do the command names. Processes are killed by PID at the end; nothing
asserts on time."""
import os

import pytest

import dpr
import dprtest
from dpr import pki
from dprtest import free_port, wait_for
from tapproxy import TapProxy

CANARY = b"plaintext-canary-5c1b7e"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = str(tmp_path_factory.mktemp("tls"))
    pki.init(d, "c1")
    for n in ("finder", "kv1", "kv2"):
        pki.issue(d, "node", n, ips=["127.0.0.1"])
    pki.issue(d, "client", "app")
    return d


def files(d, name):
    return ["--tls-cert-file", os.path.join(d, name + ".crt"),
            "--tls-key-file", os.path.join(d, name + ".key"),
            "--tls-ca-cert-file", os.path.join(d, "ca.crt"),
            "--tls-crl-file", os.path.join(d, "ca.crl")]


@pytest.fixture
def tls_cluster(tmp_path, certs):
    """(cluster, proxies): the finder and two shards, TLS only; the shards
    talk to the finder through a TapProxy (proxies["finder<-kv"]), and
    proxies for a client of the finder and of each shard."""
    dprtest.need(dprtest.FINDER, dprtest.KV)
    proxies = {}
    with dprtest.Cluster(str(tmp_path)) as c:
        c.start_finder(args=["--port", "0", "--tls-port", "0", "--tls-cluster", "c1",
                             *files(certs, "finder")])
        assert "(TLS, client certificates: yes)" in c.finder.output()
        proxies["finder<-kv"] = TapProxy(("127.0.0.1", c.finder.port))
        for k, w in enumerate((1, 2)):
            port = free_port()
            kv = dprtest.Kv(proxies["finder<-kv"].address, w, c.kv_dir(w),
                            os.path.join(c.base, "kv%d.log" % w), port=free_port(),
                            interval_ms=100,
                            args=["--port", "0", "--tls-port", str(port), "--finder-tls",
                                  *files(certs, "kv%d" % (k + 1))])
            c.add(kv)
            kv.wait_ready()
            assert kv.port == port  # (TLS only: the only listening line)
            c.shards.append(kv)
        proxies["finder"] = TapProxy(("127.0.0.1", c.finder.port))
        for i, kv in enumerate(c.shards):
            proxies["shard%d" % i] = TapProxy(("127.0.0.1", kv.port))
        try:
            yield c, proxies
        finally:
            for p in proxies.values():
                p.close()


def test_session_over_tls_commits_and_nothing_shows(tls_cluster, certs):
    c, proxies = tls_cluster
    ctx = dpr.tls_context(os.path.join(certs, "ca.crt"), os.path.join(certs, "app.crt"),
                          os.path.join(certs, "app.key"))
    client = dpr.Client([proxies["shard0"].address, proxies["shard1"].address],
                        proxies["finder"].address, ssl_context=ctx)
    with client.session() as s:
        for i in range(20):
            assert s.set("k%d" % i, CANARY + b"-%d" % i) == b"OK"
        assert s.get("k7") == CANARY + b"-7"
        assert s.wait_committed(timeout=30) >= 21
        assert s.is_committed(21)
    assert sorted(client.worker_ids()) == [1, 2]
    # the shards reported over TLS: the finder's cut names both
    ctx_node = dpr.tls_context(os.path.join(certs, "ca.crt"), os.path.join(certs, "kv1.crt"),
                               os.path.join(certs, "kv1.key"))
    with dpr.resp.Connection(c.finder.address, ssl_context=ctx_node) as conn:
        wl, _, cut = conn.call("DPR.SYNC", "default")
        assert wl == 1 and sorted(cut[0::2]) == [1, 2]
        # a client certificate may read, not register (docs/protocol.md)
    with dpr.resp.Connection(c.finder.address, ssl_context=ctx) as conn:
        with pytest.raises(dpr.ResponseError, match="dpr://c1/client/app may not run "
                           "'DPR.WORKER.ADD'"):
            conn.call("DPR.WORKER.ADD", "default", "9")
        # an idle TLS connection is still alive (nothing unread), and serves
        assert conn.check_alive()
        assert conn.call("PING") == b"PONG"
    # what a capture of every link shows: TLS records, never the data
    for name, p in proxies.items():
        seen = p.captured()
        assert len(seen) > 1000, name  # the links were used
        for plain in (CANARY, b"DPR.BATCH", b"DPR.REPORT", b"DPR.SYNC", b"DPR.WORKER.ADD"):
            assert plain not in seen, (name, plain)


def test_plain_client_refused(tls_cluster, certs):
    c, _ = tls_cluster
    plain = dpr.Client(c.addresses, c.finder.address, reconnect_timeout=1)
    with pytest.raises(dpr.DprError):
        with plain.session() as s:
            s.set("a", "1")
    wait_for(lambda: "TLS refused" in c.shards[0].output() + c.shards[1].output()
             + c.finder.output(), what="a TLS refusal in a log")


def test_untrusted_server_refused(tls_cluster, tmp_path):
    c, _ = tls_cluster
    other = str(tmp_path / "other")
    pki.init(other, "c1")
    pki.issue(other, "client", "app")
    ctx = dpr.tls_context(os.path.join(other, "ca.crt"), os.path.join(other, "app.crt"),
                          os.path.join(other, "app.key"))
    with pytest.raises(dpr.ConnectionError, match="TLS with .* failed: .*certificate verify "
                       "failed"):
        with dpr.resp.Connection(c.finder.address, ssl_context=ctx) as conn:
            conn.call("PING")


def test_c_client_over_tls(tls_cluster, certs):
    """libdpr's C client (tests/libdpr/client_driver.c, scenario basic) with
    dpr_client_config.tls_*: through the recording proxies; then without
    the CA's trust (another CA): it cannot start."""
    import subprocess
    c, proxies = tls_cluster
    driver = dprtest.binary("tests/client-driver")
    dprtest.need(driver)
    taps = {n: TapProxy(("127.0.0.1", p)) for n, p in
            [("finder", c.finder.port)] + [("shard%d" % i, kv.port)
                                           for i, kv in enumerate(c.shards)]}
    try:
        tls = ["--tls-ca", os.path.join(certs, "ca.crt"),
               "--tls-cert", os.path.join(certs, "app.crt"),
               "--tls-key", os.path.join(certs, "app.key")]
        args = [driver, "--finder", taps["finder"].address,
                "--shard", taps["shard0"].address, "--shard", taps["shard1"].address, *tls]
        r = subprocess.run(args + ["basic"], capture_output=True, timeout=120)
        assert r.returncode == 0 and b"PASS basic" in r.stdout, r.stdout + r.stderr
        for name, p in taps.items():
            seen = p.captured()
            assert len(seen) > 1000, name
            for plain in (b"DPR.BATCH", b"DPR.SYNC", b"INFO", b"dpr_worker_id"):
                assert plain not in seen, (name, plain)
    finally:
        for p in taps.values():
            p.close()
    # the finder's certificate is checked: with a CA that did not sign it,
    # the client does not start
    r = subprocess.run([driver, "--finder", c.finder.address, "--shard", c.shards[0].address,
                        "--tls-ca", os.path.join(certs, "app.crt"), "basic"],
                       capture_output=True, timeout=120)
    assert r.returncode != 0 and b"certificate verify failed" in r.stdout + r.stderr, \
        r.stdout + r.stderr
