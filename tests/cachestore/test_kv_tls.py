"""dpr-kv's TLS port (issue 14, Redis' model; docs/tls.md), and dpr-redis'
(the same options and behaviour; run with DPR_TEST_IMPL=dpr-redis).

Certificates come from dpr.pki (what `dprctl pki` runs), plus an expired one
and one of another CA made here. redis-cli --tls and redis-py ssl=True talk
to the TLS port; DPR.BATCH runs over it; each refusal (plain text, another
CA, expired, revoked, no client certificate where one is required) is
logged with its reason and nothing of what the client sent runs; SIGHUP
loads new certificates and a new CRL for new connections while an open
connection goes on with the old ones. Every process is killed by PID at
the end; nothing asserts on time.
"""
import os
import shutil
import signal
import socket
import ssl
import subprocess

import pytest
import redis

import certgen
from dpr import pki
from dprtest import IMPL, free_port, wait_for
from kvwire import Raw, batch, encode

CLUSTER = "c1"


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    """A CA (dir), the server's kv1, clients app/gone (revoked)/old
    (expired), and a client of another CA (foreign/)."""
    d = str(tmp_path_factory.mktemp("tls"))
    certgen.make_test_pki(d, CLUSTER, "client")
    pki.issue(d, "node", "kv1", ips=["127.0.0.1"], dns=["localhost"])
    _expired(d, "old")
    return d


def _expired(d, name):
    """name.crt/.key of d's CA, valid two days ago for one day."""
    certgen.sign_leaf(d, name, "dpr://%s/client/%s" % (CLUSTER, name), start_days=-2,
                      end_days=-1)


def p(certs, name):
    return os.path.join(certs, name)


def start(cluster, certs, auth="yes", crl=True, extra=(), tls_dir=None):
    """dpr-kv worker 1 with a TLS port (returned as kv.tls_port)."""
    d = tls_dir or certs
    port = free_port()
    args = ["--tls-port", str(port), "--tls-cert-file", p(d, "kv1.crt"),
            "--tls-key-file", p(d, "kv1.key"), "--tls-ca-cert-file", p(certs, "ca.crt"),
            "--tls-auth-clients", auth, *extra]
    if crl:
        args += ["--tls-crl-file", p(d, "ca.crl")]
    kv = cluster.start_kv(1, args=args)
    kv.wait_ready(marker="(TLS, client certificates: ")
    kv.tls_port = port
    return kv


def tls_info(c):
    """The TLS port's fields of INFO: dpr-kv's own INFO; dpr-redis' INFO is
    redis-server's, the proxy's are in INFO dpr (dpr_tls_port, ...)."""
    if IMPL == "dpr-kv":
        return c.info()
    return {k[len("dpr_"):]: v for k, v in c.info("dpr").items() if k.startswith("dpr_t")}


def context(certs, client=None, ca="ca.crt"):
    ctx = ssl.create_default_context(cafile=p(certs, ca))
    if client:
        ctx.load_cert_chain(p(certs, client + ".crt"), p(certs, client + ".key"))
    return ctx


class TlsRaw(Raw):
    """kvwire's Raw over TLS (server name 127.0.0.1: checked against its IP SAN)."""

    def __init__(self, port, ctx, timeout=10.0):
        plain = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock = ctx.wrap_socket(plain, server_hostname="127.0.0.1")
        self.buf = b""


def tls_client(kv, certs, client="app"):
    return redis.Redis(host="127.0.0.1", port=kv.tls_port, socket_timeout=10, ssl=True,
                       ssl_ca_certs=p(certs, "ca.crt"), ssl_check_hostname=True,
                       ssl_certfile=p(certs, client + ".crt") if client else None,
                       ssl_keyfile=p(certs, client + ".key") if client else None)


def redis_cli(kv, certs, *args, client="app"):
    argv = ["redis-cli", "-h", "127.0.0.1", "-p", str(kv.tls_port), "--tls",
            "--cacert", p(certs, "ca.crt")]
    if client:
        argv += ["--cert", p(certs, client + ".crt"), "--key", p(certs, client + ".key")]
    return subprocess.run(argv + list(args), capture_output=True, text=True, timeout=30)


def test_redis_cli_and_redis_py(cluster, certs):
    kv = start(cluster, certs)
    r = redis_cli(kv, certs, "SET", "cli", "over-tls")
    assert r.returncode == 0 and r.stdout.strip() == "OK", r
    c = tls_client(kv, certs)
    assert c.get("cli") == b"over-tls"
    assert c.set("py", "1") and c.incr("py") == 2
    info = tls_info(c)
    assert info["tls_port"] == kv.tls_port and info["tls_connections_received"] >= 2
    if IMPL == "dpr-kv":  # (dpr-redis refuses CONFIG: redis-server's own)
        assert c.config_get("tls-auth-clients") == {"tls-auth-clients": "yes"}
    # the plain port still serves (beside the TLS one)
    assert kv.client().get("py") == b"2"
    c.close()


def test_batch_over_tls(cluster, certs):
    kv = start(cluster, certs)
    r = TlsRaw(kv.tls_port, context(certs, "app"))
    wl = int(kv.info()["dpr_world_line"])
    hdr, replies = batch(r, wl, 1, [["SET", "b", "1"], ["INCR", "b"], ["GET", "b"]])
    assert hdr["status"] == 0 and hdr["op_count"] == 3 and hdr["world_line"] == wl
    assert replies == [b"OK", 2, b"2"]
    assert r.sock.getpeercert()["subject"][-1] == (("commonName", "kv1"),)
    r.close()


def test_auth_clients_no_and_optional(cluster, certs):
    kv = start(cluster, certs, auth="optional")
    assert redis_cli(kv, certs, "SET", "anon", "1", client=None).stdout.strip() == "OK"
    assert redis_cli(kv, certs, "GET", "anon").stdout.strip() == "1"
    # optional: a certificate shown is still checked
    r = redis_cli(kv, certs, "SET", "old", "1", client="old")
    assert r.stdout.strip() != "OK"
    wait_for(lambda: "certificate has expired" in kv.output(), what="the refusal logged")
    kv.kill()
    kv.wait_exit()
    kv = start(cluster, certs, auth="no", crl=False)
    assert redis_cli(kv, certs, "PING", client=None).stdout.strip() == "PONG"


def _refused_by(kv, certs, how):
    """Tries SET refused:<how> 1 on the TLS port; True if the client saw a
    failure."""
    key = "refused:" + how
    if how == "plain":
        raw = Raw(kv.tls_port)
        raw.send(encode("SET", key, "1"))
        closed = raw.closed_by_peer(timeout=10)
        raw.close()
        return closed
    client = {"other-ca": "foreign", "expired": "old", "revoked": "gone", "no-cert": None}[how]
    try:
        r = TlsRaw(kv.tls_port, context(certs, client))
        reply = r.call("SET", key, "1")
        r.close()
        return reply != b"OK"
    except (ssl.SSLError, OSError, EOFError):
        return True


@pytest.mark.parametrize("how,reason", [
    ("plain", "plain text to a TLS port?"),
    ("other-ca", "unable to get local issuer certificate"),
    ("expired", "certificate has expired"),
    ("revoked", "certificate revoked"),
    ("no-cert", "peer did not return a certificate"),
])
def test_refused(cluster, certs, how, reason):
    kv = start(cluster, certs)
    assert _refused_by(kv, certs, how)
    wait_for(lambda: "TLS refused: TLS handshake failed: " in kv.output()
             and reason in kv.output(), what="the refusal logged with %r" % reason)
    line = [ln for ln in kv.output().splitlines() if "TLS refused" in ln][0]
    assert "client 127.0.0.1:" in line and reason in line, line
    # nothing it sent ran
    good = tls_client(kv, certs)
    assert good.get("refused:" + how) is None
    assert tls_info(good)["tls_refused"] == 1
    assert good.ping()
    good.close()


def test_tls_only(cluster, certs):
    kv = start(cluster, certs, extra=["--port", "0"])
    assert kv.port == kv.tls_port  # the one listening line names the TLS port
    c = tls_client(kv, certs)
    assert c.set("k", "v") and tls_info(c)["tcp_port"] == 0
    if IMPL == "dpr-kv":
        assert c.config_get("port") == {"port": "0"}
    c.close()


def test_bad_settings(cluster, certs, tmp_path):
    f = cluster.finder
    kv = cluster.start_kv(1, args=["--tls-port", str(free_port())], wait=False)
    assert kv.wait_exit() == 2
    assert "--tls-port needs --tls-cert-file and --tls-key-file" in kv.output()
    kv = cluster.start_kv(1, args=["--port", "0"], wait=False)
    assert kv.wait_exit() == 2
    # --finder-tls needs this node's certificate, key and the CA (also from
    # the environment)
    kv = cluster.start_kv(1, args=["--tls-cert-file", p(certs, "kv1.crt")],
                          env={"DPR_KV_FINDER_TLS": "yes"}, wait=False)
    assert kv.wait_exit() == 2
    assert "--finder-tls needs --tls-cert-file, --tls-key-file and --tls-ca-cert-file" \
        in kv.output()
    # a file that cannot be loaded: refused before registering with the finder
    (tmp_path / "bad.crt").write_text("not a certificate\n")
    kv = cluster.start_kv(1, args=["--tls-port", str(free_port()), "--tls-cert-file",
                                   str(tmp_path / "bad.crt"), "--tls-key-file",
                                   p(certs, "kv1.key"), "--tls-auth-clients", "no"], wait=False)
    assert kv.wait_exit() == 1
    assert "cannot start the TLS port: cannot load certificate file %s" % (tmp_path / "bad.crt") \
        in kv.output()
    with pytest.raises(redis.ResponseError, match="unknown domain"):
        f.sync()  # never registered: the finder knows no worker of any domain


def _serial(sock):
    from cryptography import x509
    return x509.load_der_x509_certificate(sock.getpeercert(binary_form=True)).serial_number


def _cert_serial(path):
    from cryptography import x509
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read()).serial_number


def test_reload(cluster, certs, tmp_path):
    """SIGHUP: a new server certificate and a new CRL for new connections;
    the open connection goes on with the old ones; a reload that fails
    keeps the last good files."""
    live = str(tmp_path / "live")
    os.makedirs(live)
    for n in ("kv1.crt", "kv1.key", "ca.crl"):
        shutil.copy(p(certs, n), os.path.join(live, n))
    kv = start(cluster, certs, tls_dir=live)
    old = TlsRaw(kv.tls_port, context(certs, "app"))
    assert old.call("SET", "r", "1") == b"OK"
    assert _serial(old.sock) == _cert_serial(p(certs, "kv1.crt"))

    # a new server certificate, and the app client revoked
    fresh = str(tmp_path / "fresh")
    ca_dir = str(tmp_path / "ca")
    shutil.copytree(certs, ca_dir, ignore=shutil.ignore_patterns("other"))
    pki.issue(ca_dir, "node", "kv1", out_dir=fresh, ips=["127.0.0.1"], force=True)
    pki.revoke(ca_dir, os.path.join(ca_dir, "app.crt"))
    for n in ("kv1.crt", "kv1.key"):
        shutil.copy(os.path.join(fresh, n), os.path.join(live, n))
    shutil.copy(os.path.join(ca_dir, "ca.crl"), os.path.join(live, "ca.crl"))
    kv.kill(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: TLS certificates reloaded for new connections" in kv.output(),
             what="the reload logged")

    # the open connection goes on, with the certificate it started with
    assert old.call("INCR", "r") == 2
    assert _serial(old.sock) == _cert_serial(p(certs, "kv1.crt"))
    # a new one gets the new certificate, and the revoked client is refused
    pki.issue(ca_dir, "client", "app2")
    new = TlsRaw(kv.tls_port, context(ca_dir, "app2"))
    assert new.call("GET", "r") == b"2"
    assert _serial(new.sock) == _cert_serial(os.path.join(fresh, "kv1.crt"))
    assert _serial(new.sock) != _serial(old.sock)
    assert _refused_by_client(kv, certs, "app")
    wait_for(lambda: "certificate revoked" in kv.output(), what="the revoked client refused")

    # a broken file: not reloaded, the last good certificate still served
    with open(os.path.join(live, "kv1.key"), "w") as f:
        f.write("garbage\n")
    kv.kill(signal.SIGHUP)
    wait_for(lambda: "SIGHUP: TLS certificates not reloaded" in kv.output(),
             what="the failed reload logged")
    again = TlsRaw(kv.tls_port, context(ca_dir, "app2"))
    assert again.call("PING") == b"PONG"
    assert _serial(again.sock) == _cert_serial(os.path.join(fresh, "kv1.crt"))
    for c in (old, new, again):
        c.close()
    assert kv.alive()


def _refused_by_client(kv, certs, client):
    try:
        r = TlsRaw(kv.tls_port, context(certs, client))
        reply = r.call("PING")
        r.close()
        return reply != b"PONG"
    except (ssl.SSLError, OSError, EOFError):
        return True


def test_environment_variables(cluster, certs):
    """DPR_KV_* as in an instance file (EnvironmentFile=): the same settings."""
    port = free_port()
    env = {"DPR_KV_TLS_PORT": str(port), "DPR_KV_TLS_CERT_FILE": p(certs, "kv1.crt"),
           "DPR_KV_TLS_KEY_FILE": p(certs, "kv1.key"),
           "DPR_KV_TLS_CA_CERT_FILE": p(certs, "ca.crt"),
           "DPR_KV_TLS_CRL_FILE": p(certs, "ca.crl"), "DPR_KV_TLS_AUTH_CLIENTS": "optional"}
    kv = cluster.start_kv(1, env=env)
    kv.wait_ready(marker="(TLS, client certificates: optional)")
    kv.tls_port = port
    assert redis_cli(kv, certs, "PING", client=None).stdout.strip() == "PONG"
    assert redis_cli(kv, certs, "PING", client="gone").stdout.strip() != "PONG"  # the CRL
    wait_for(lambda: "certificate revoked" in kv.output(), what="the revoked client refused")
    bad = cluster.start_kv(2, env=dict(env, DPR_KV_TLS_AUTH_CLIENTS="maybe"), wait=False)
    assert bad.wait_exit() == 2
    assert "invalid value 'maybe' for DPR_KV_TLS_AUTH_CLIENTS" in bad.output()


def test_max_clients_counts_tls_clients(cluster, certs):
    """--max-clients counts the clients of both ports: over the limit a TLS
    client is closed, one of the plain port gets the error first; the
    client within the limit goes on."""
    kv = start(cluster, certs, extra=["--max-clients", "1"])
    first = TlsRaw(kv.tls_port, context(certs, "app"))
    assert first.call("PING") == b"PONG"
    assert _refused_by_client(kv, certs, "app")
    plain = Raw(kv.port)
    try:
        reply = plain.read()
        assert "max number of clients reached" in str(reply)
    except (EOFError, OSError):
        pytest.fail("the plain client got no error before the close")
    plain.close()
    assert first.call("PING") == b"PONG"
    first.close()


def test_sighup_while_recovering(cluster, certs):
    """systemctl reload may come before dpr-kv serves (it waits for its
    finder): it is ignored then, not fatal."""
    fport = free_port()
    kv = cluster.start_kv(1, finder=type("F", (), {"address": "127.0.0.1:%d" % fport})(),
                          wait=False)
    wait_for(lambda: "not reachable" in kv.output(), what="dpr-kv waiting for its finder")
    kv.kill(signal.SIGHUP)
    cluster.start_finder(name="finder2", port=fport)
    kv.wait_ready()
    assert kv.alive() and kv.client().ping()
