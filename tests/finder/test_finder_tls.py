"""dpr-finder's TLS port and its authorization by identity (issue 14;
docs/tls.md, docs/protocol.md "Authorization").

Certificates come from dpr.pki (what `dprctl pki` runs). A node certificate
may run every command on the TLS port; a client certificate (and a
connection without one, with --tls-auth-clients optional) only the reads,
anything else gets "-ERR permission denied" naming the identity and the
command, and a log line, and changes nothing. The handshake refusals (plain
text, another CA, revoked, another cluster, no certificate) are logged and
nothing runs. SIGHUP loads new files for new connections. Every process is
killed by PID at the end; nothing asserts on time.
"""
import os
import shutil
import signal
import socket
import ssl

import pytest
import redis

import certgen
import dprtest
from dpr import pki
from dprtest import FINDER, free_port, wait_for

CLUSTER = "c1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA: the finder's node cert, kv1 (node), app (client), gone
    (revoked client), and others: foreign (another CA), stranger (another
    cluster's name, same CA directory layout)."""
    d = str(tmp_path_factory.mktemp("tls"))
    certgen.make_test_pki(d, CLUSTER, "node")
    pki.issue(d, "node", "finder", ips=["127.0.0.1"], dns=["localhost"])
    pki.issue(d, "node", "kv1")
    return d


def p(d, name):
    return os.path.join(d, name)


def tls_args(certs, port, auth="yes", cluster=True):
    args = ["--tls-port", str(port), "--tls-cert-file", p(certs, "finder.crt"),
            "--tls-key-file", p(certs, "finder.key"), "--tls-ca-cert-file", p(certs, "ca.crt"),
            "--tls-crl-file", p(certs, "ca.crl"), "--tls-auth-clients", auth]
    if cluster:
        args += ["--tls-cluster", CLUSTER]
    return args


@pytest.fixture
def finder(procs, tmp_path, certs):
    """Factory: finder(auth="yes", extra=()) -> a dpr-finder with a TLS port
    (f.tls_port); its plain port is f.port."""
    dprtest.need(FINDER)

    def start(auth="yes", extra=(), tls_only=False, cluster=True):
        port = free_port()
        args = tls_args(certs, port, auth, cluster) + list(extra)
        if tls_only:
            args += ["--port", "0"]
        f = procs.add(dprtest.Finder(str(tmp_path / "state"), str(tmp_path / "finder.log"),
                                     args=args))
        f.wait_ready()  # the first "listening on" line: the plain port (or the TLS one)
        wait_for(lambda: "(TLS, client certificates: %s)" % auth in f.output(),
                 what="the TLS port")
        f.tls_port = port
        return f

    return start


def client(f, certs, name="kv1", ca="ca.crt"):
    return redis.Redis(host="127.0.0.1", port=f.tls_port, socket_timeout=10, ssl=True,
                       ssl_ca_certs=p(certs, ca), ssl_check_hostname=True,
                       ssl_certfile=p(certs, name + ".crt") if name else None,
                       ssl_keyfile=p(certs, name + ".key") if name else None)


def refused_at_handshake(f, certs, name, ca="ca.crt"):
    """Runs DPR.WORKER.ADD with name's certificate; asserts it fails."""
    c = client(f, certs, name, ca)
    with pytest.raises((redis.ConnectionError, ssl.SSLError, OSError)):
        c.execute_command("DPR.WORKER.ADD", "default", "99")
    c.connection_pool.disconnect()


def test_node_and_client_roles(finder, certs):
    f = finder()
    node = client(f, certs, "kv1")
    assert node.execute_command("DPR.WORKER.ADD", "default", "1") == [1, 0]
    assert node.execute_command("DPR.REPORT", "default", "1", "1", "5") == b"OK"
    app = client(f, certs, "app")
    # reads are allowed; the durable cut is the node's report
    wl, _, cut = app.execute_command("DPR.SYNC", "default")
    assert wl == 1 and cut == [1, 5]
    assert app.execute_command("DPR.DOMAINS") == [b"default"]
    assert app.ping()
    # writes are refused, naming who and what, and change nothing
    for cmd in (["DPR.WORKER.ADD", "default", "2"], ["DPR.REPORT", "default", "1", "1", "9"],
                ["DPR.WORKER.REMOVE", "default", "1"], ["DPR.WORKER.LEAVE", "default", "1"]):
        with pytest.raises(redis.ResponseError) as e:
            app.execute_command(*cmd)
        assert str(e.value).startswith("permission denied: dpr://c1/client/app may not run "
                                       "'%s'" % cmd[0]), str(e.value)
    # the connection goes on after a refusal
    assert app.execute_command("DPR.SYNC", "default")[2] == [1, 5]
    wait_for(lambda: "refused: permission denied: dpr://c1/client/app may not run "
             "'DPR.WORKER.ADD'" in f.output(), what="the refusal's log line")
    # the plain port keeps serving everything (turn it off with --port 0)
    assert f.client().execute_command("DPR.SYNC", "default")[2] == [1, 5]
    node.connection_pool.disconnect()
    app.connection_pool.disconnect()


def test_no_certificate_reads_only_when_optional(finder, certs):
    # (--tls-cluster refuses a connection without a certificate: it has no cluster)
    f = finder(auth="optional", cluster=False)
    anon = client(f, certs, None)
    assert anon.execute_command("DPR.DOMAINS") == []
    with pytest.raises(redis.ResponseError, match="a connection without a certificate may not "
                       "run 'DPR.WORKER.ADD'"):
        anon.execute_command("DPR.WORKER.ADD", "default", "1")
    anon.connection_pool.disconnect()


def test_handshake_refusals(finder, certs):
    f = finder()
    # plain text to the TLS port: nothing runs
    with socket.create_connection(("127.0.0.1", f.tls_port), timeout=10) as s:
        s.sendall(b"*3\r\n$14\r\nDPR.WORKER.ADD\r\n$7\r\ndefault\r\n$2\r\n77\r\n")
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        assert b"+" not in data[:1] and b"*2" not in data
    wait_for(lambda: "TLS refused: TLS handshake failed: wrong version number" in f.output(),
             what="the plain-text refusal")
    refused_at_handshake(f, certs, "foreign")
    wait_for(lambda: "unable to get local issuer certificate" in f.output(),
             what="the other-CA refusal")
    refused_at_handshake(f, certs, "gone")
    wait_for(lambda: "certificate revoked" in f.output(), what="the revoked refusal")
    refused_at_handshake(f, certs, None)
    wait_for(lambda: "peer did not return a certificate" in f.output(),
             what="the missing-certificate refusal")
    certgen.sign_leaf(certs, "old", "dpr://c1/node/old", start_days=-2, end_days=-1)
    refused_at_handshake(f, certs, "old")
    wait_for(lambda: "certificate has expired" in f.output(), what="the expired refusal")
    # the server's certificate is checked by clients too
    refused_at_handshake(f, certs, "kv1", ca="foreign.crt")
    # none of it registered anything
    assert f.client().execute_command("DPR.DOMAINS") == []


def test_other_cluster_refused(finder, certs):
    certgen.sign_leaf(certs, "intruder", "dpr://c2/node/intruder")
    f = finder()
    refused_at_handshake(f, certs, "intruder")
    wait_for(lambda: "TLS refused" in f.output() and "c2" in f.output(),
             what="the other-cluster refusal")
    assert f.client().execute_command("DPR.DOMAINS") == []


def test_tls_only_and_reload(finder, certs, tmp_path):
    f = finder(tls_only=True)
    assert f.port == f.tls_port
    assert "dpr-finder listening on 127.0.0.1:%d (TLS" % f.tls_port in f.output()
    node = client(f, certs, "kv1")
    assert node.execute_command("DPR.WORKER.ADD", "default", "1") == [1, 0]
    # SIGHUP: new files for new connections; the open one goes on
    os.kill(f.pid, signal.SIGHUP)
    wait_for(lambda: "SIGHUP: TLS certificates reloaded for new connections" in f.output(),
             what="the reload")
    assert node.execute_command("DPR.SYNC", "default")[0] == 1
    fresh = client(f, certs, "kv1")
    assert fresh.ping()
    node.connection_pool.disconnect()
    fresh.connection_pool.disconnect()


@pytest.mark.parametrize("args,what", [
    (["--port", "0"], "--port 0 turns the plain listener off"),
    (["--tls-port", "1"], "--tls-port needs --tls-cert-file"),
    (["--tls-port", "1", "--tls-cert-file", "x", "--tls-key-file", "y"],
     "needs --tls-ca-cert-file"),
    (["--tls-auth-clients", "maybe"], "is not yes, optional or no"),
])
def test_bad_flags(tmp_path, args, what):
    import subprocess
    dprtest.need(FINDER)
    r = subprocess.run([FINDER, "--listen", "127.0.0.1:0", "--state", str(tmp_path), *args],
                       capture_output=True, timeout=10)
    assert r.returncode == 2 and what in r.stderr.decode(), r.stderr


def test_bad_certificate_file(tmp_path, certs):
    import subprocess
    dprtest.need(FINDER)
    args = tls_args(certs, free_port())
    args[args.index("--tls-key-file") + 1] = p(certs, "app.key")  # not finder.crt's key
    r = subprocess.run([FINDER, "--listen", "127.0.0.1:0", "--state", str(tmp_path), *args],
                       capture_output=True, timeout=10)
    assert r.returncode == 1 and b"cannot start the TLS port" in r.stderr, r.stderr


def test_kv_registers_over_tls_only_with_a_node_certificate(finder, certs, tmp_path):
    """dpr-kv --finder-tls: its node certificate registers it; an
    application's certificate is refused at DPR.WORKER.ADD (exit, the
    finder's reason in its log); without --finder-tls, plain text to the
    TLS port is refused by the finder."""
    import subprocess
    dprtest.need(dprtest.KV)
    f = finder()
    ok = dprtest.Kv("127.0.0.1:%d" % f.tls_port, 1, str(tmp_path / "kv1"),
                    str(tmp_path / "kv1.log"),
                    args=["--finder-tls", "--tls-cert-file", p(certs, "kv1.crt"),
                          "--tls-key-file", p(certs, "kv1.key"),
                          "--tls-ca-cert-file", p(certs, "ca.crt")])
    try:
        ok.wait_ready()
        assert f.client().execute_command("DPR.SYNC", "default")[0] == 1
    finally:
        ok.kill(signal.SIGKILL)
    base = [dprtest.KV, "--listen", "127.0.0.1:0", "--finder", "127.0.0.1:%d" % f.tls_port,
            "--worker", "2", "--finder-timeout-ms", "1000"]
    r = subprocess.run(base + ["--dir", str(tmp_path / "kv2"), "--finder-tls",
                               "--tls-cert-file", p(certs, "app.crt"),
                               "--tls-key-file", p(certs, "app.key"),
                               "--tls-ca-cert-file", p(certs, "ca.crt")],
                       capture_output=True, timeout=30)
    assert r.returncode != 0
    assert b"dpr://c1/client/app may not run 'DPR.WORKER.ADD'" in r.stderr, r.stderr
    r = subprocess.run(base + ["--dir", str(tmp_path / "kv3")], capture_output=True, timeout=30)
    assert r.returncode != 0 and b"not reachable" in r.stderr, r.stderr
    assert "wrong version number" in f.output()
    # the server's certificate is checked: another CA's finder is not trusted
    r = subprocess.run(base + ["--dir", str(tmp_path / "kv4"), "--finder-tls",
                               "--tls-cert-file", p(certs, "kv1.crt"),
                               "--tls-key-file", p(certs, "kv1.key"),
                               "--tls-ca-cert-file", p(certs, "foreign.crt")],
                       capture_output=True, timeout=30)
    assert r.returncode != 0 and b"certificate verify failed" in r.stderr, r.stderr
    assert sorted(f.client().execute_command("DPR.SYNC", "default")[2][0::2]) == [1]


def test_kv_rotates_its_finder_certificate(procs, certs, tmp_path):
    """SIGHUP makes dpr-kv's finder link use new files on its next
    connection: after a rotation and the old certificate's revocation, a
    restarted finder takes the shard's new certificate."""
    dprtest.need(FINDER, dprtest.KV)
    pki.issue(certs, "node", "kvrot")
    mine = str(tmp_path / "kvrot")
    os.mkdir(mine)
    for n in ("kvrot.crt", "kvrot.key"):
        shutil.copy(p(certs, n), os.path.join(mine, n))
    port = free_port()
    args = tls_args(certs, port) + ["--port", "0"]
    state = str(tmp_path / "state")
    f = procs.add(dprtest.Finder(state, str(tmp_path / "f1.log"), args=args)).wait_ready()
    kv = procs.add(dprtest.Kv("127.0.0.1:%d" % port, 1, str(tmp_path / "kv1"),
                              str(tmp_path / "kv1.log"), interval_ms=100,
                              args=["--finder-tls", "--tls-cert-file", p(mine, "kvrot.crt"),
                                    "--tls-key-file", p(mine, "kvrot.key"),
                                    "--tls-ca-cert-file", p(certs, "ca.crt")]))
    kv.wait_ready()
    # a new certificate for the shard (a rename each), SIGHUP; the old one revoked
    old = p(certs, "kvrot-old.crt")
    shutil.copy(p(certs, "kvrot.crt"), old)
    pki.issue(certs, "node", "kvrot", force=True)
    for n in ("kvrot.crt", "kvrot.key"):
        shutil.copy(p(certs, n), os.path.join(mine, n + ".new"))
        os.rename(os.path.join(mine, n + ".new"), os.path.join(mine, n))
    os.kill(kv.pid, signal.SIGHUP)
    wait_for(lambda: "SIGHUP: the finder link's TLS certificates reloaded" in kv.output(),
             what="the finder link's reload")
    pki.revoke(certs, old)

    def cut_of(fd):
        c = client(fd, certs, "kv1")
        try:
            return dict(zip(*[iter(c.execute_command("DPR.SYNC", "default")[2])] * 2))
        finally:
            c.connection_pool.disconnect()

    f.tls_port = port
    before = cut_of(f).get(1, 0)
    f.kill(signal.SIGKILL)
    f2 = procs.add(dprtest.Finder(state, str(tmp_path / "f2.log"), args=args)).wait_ready()
    f2.tls_port = port
    # the shard reconnects with its new certificate and reports again: a
    # write's checkpoint moves the cut (the old certificate is revoked)
    kv.client().set("after-rotation", "1")
    wait_for(lambda: cut_of(f2).get(1, 0) > before, what="a report over the new connection")
    assert "TLS refused" not in f2.output(), f2.output()
