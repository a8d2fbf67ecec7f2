"""dprctl pki (python-dpr/dpr/pki.py, docs/tls.md): the CA, node and client
certificates with their SANs and file modes, checked with the openssl CLI;
revocation through the CRL; refusals of bad input. No agent needed."""
import os
import stat
import subprocess

import pytest

from dprtest import DPRCTL, PYDIR, PYTHON


def dprctl(*args):
    env = dict(os.environ, PYTHONPATH=PYDIR)
    return subprocess.run([PYTHON, DPRCTL, "pki"] + list(args), capture_output=True, text=True,
                          env=env, timeout=60)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def openssl(*args):
    return subprocess.run(["openssl"] + list(args), capture_output=True, text=True, timeout=30)


def text(cert):
    r = openssl("x509", "-in", cert, "-noout", "-text")
    assert r.returncode == 0, r.stderr
    return r.stdout


def verify(ca_dir, cert, crl=True):
    args = ["verify", "-CAfile", os.path.join(ca_dir, "ca.crt")]
    if crl:
        args += ["-crl_check", "-CRLfile", os.path.join(ca_dir, "ca.crl")]
    return openssl(*args, cert)


@pytest.fixture
def ca(tmp_path):
    d = str(tmp_path / "tls")
    r = dprctl("init", "--dir", d, "--cluster", "prod")
    assert r.returncode == 0, r.stderr
    return d


def test_init(ca):
    assert mode(os.path.join(ca, "ca.key")) == 0o600
    assert mode(os.path.join(ca, "ca.crt")) == 0o644
    assert mode(os.path.join(ca, "ca.crl")) == 0o644
    t = text(os.path.join(ca, "ca.crt"))
    assert "Subject: O = prod, CN = DPR cluster prod CA" in t
    assert "CA:TRUE" in t and "Certificate Sign, CRL Sign" in t
    r = openssl("crl", "-in", os.path.join(ca, "ca.crl"), "-noout", "-text")
    assert r.returncode == 0 and "No Revoked Certificates" in r.stdout
    # a second init would orphan every certificate issued: refused
    r = dprctl("init", "--dir", ca, "--cluster", "prod")
    assert r.returncode == 1 and "already holds a CA" in r.stderr and "--force" in r.stderr


def test_issue_node(ca, tmp_path):
    r = dprctl("issue", "node", "--node", "node-a", "--ip", "10.0.0.1", "--ip", "fd00::1",
               "--dns", "node-a.example.com", "--dir", ca)
    assert r.returncode == 0, r.stderr
    crt, key = os.path.join(ca, "node-a.crt"), os.path.join(ca, "node-a.key")
    assert mode(key) == 0o600 and mode(crt) == 0o644
    t = text(crt)
    assert "Subject: O = prod, CN = node-a" in t
    assert ("URI:dpr://prod/node/node-a, DNS:node-a, DNS:node-a.example.com, "
            "IP Address:10.0.0.1, IP Address:FD00:0:0:0:0:0:0:1") in t
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in t
    assert "CA:FALSE" in t
    assert verify(ca, crt).returncode == 0
    # the key is the certificate's
    pub_cert = openssl("x509", "-in", crt, "-noout", "-pubkey").stdout
    pub_key = openssl("pkey", "-in", key, "-pubout").stdout
    assert pub_cert and pub_cert == pub_key
    # not again without --force
    r = dprctl("issue", "node", "--node", "node-a", "--dir", ca)
    assert r.returncode == 1 and "exists" in r.stderr
    assert dprctl("issue", "node", "--node", "node-a", "--dir", ca, "--force").returncode == 0
    assert verify(ca, crt).returncode == 0


def test_issue_client_elsewhere(ca, tmp_path):
    out = str(tmp_path / "app")
    r = dprctl("issue", "client", "--name", "app1", "--dir", ca, "--out", out)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(out)) == ["app1.crt", "app1.key", "ca.crt"]  # never ca.key
    assert mode(os.path.join(out, "app1.key")) == 0o600
    t = text(os.path.join(out, "app1.crt"))
    assert "URI:dpr://prod/client/app1" in t and "DNS:" not in t
    assert "TLS Web Client Authentication" in t and "Server Authentication" not in t
    assert verify(out, os.path.join(out, "app1.crt"), crl=False).returncode == 0


def test_issue_group(ca, tmp_path):
    # a key for a service of another user (the cache-stores, dpr-cachestore):
    # its group may read it, nobody else
    import grp
    group = grp.getgrgid(os.getgid()).gr_name if os.getuid() else "nogroup"
    r = dprctl("issue", "node", "--node", "cs1", "--dir", ca, "--group", group)
    assert r.returncode == 0, r.stderr
    key = os.path.join(ca, "cs1.key")
    assert mode(key) == 0o640 and os.stat(key).st_gid == grp.getgrnam(group).gr_gid
    assert mode(os.path.join(ca, "cs1.crt")) == 0o644
    r = dprctl("issue", "node", "--node", "cs2", "--dir", ca, "--group", "no-such-group-x")
    assert r.returncode == 1 and "no group 'no-such-group-x'" in r.stderr
    assert not os.path.exists(os.path.join(ca, "cs2.key"))
    assert not os.path.exists(os.path.join(ca, "cs2.crt"))


def test_revoke(ca):
    assert dprctl("issue", "client", "--name", "gone", "--dir", ca).returncode == 0
    assert dprctl("issue", "client", "--name", "kept", "--dir", ca).returncode == 0
    crt = os.path.join(ca, "gone.crt")
    r = dprctl("revoke", crt, "--dir", ca)
    assert r.returncode == 0 and "reload" in r.stdout, r.stderr
    v = verify(ca, crt)
    assert v.returncode != 0 and "certificate revoked" in v.stdout + v.stderr
    assert verify(ca, os.path.join(ca, "kept.crt")).returncode == 0
    # revoking twice keeps one entry; a refreshed CRL keeps it too
    assert dprctl("revoke", crt, "--dir", ca).returncode == 0
    assert dprctl("crl", "--dir", ca).returncode == 0
    r = openssl("crl", "-in", os.path.join(ca, "ca.crl"), "-noout", "-text")
    assert r.stdout.count("Serial Number:") == 1
    assert verify(ca, crt).returncode != 0


def test_refusals(ca, tmp_path):
    r = dprctl("init", "--dir", str(tmp_path / "x"), "--cluster", "bad name")
    assert r.returncode == 1 and "bad cluster name 'bad name'" in r.stderr
    r = dprctl("issue", "node", "--node", "a/b", "--dir", ca)
    assert r.returncode == 1 and "bad node name" in r.stderr
    r = dprctl("issue", "node", "--node", "n", "--ip", "10.0.0.300", "--dir", ca)
    assert r.returncode == 1 and "bad IP address '10.0.0.300'" in r.stderr
    r = dprctl("issue", "node", "--node", "n", "--dir", str(tmp_path / "none"))
    assert r.returncode == 1 and "no CA there" in r.stderr
    r = dprctl("issue", "server", "--node", "n", "--dir", ca)
    assert r.returncode == 2
    other = str(tmp_path / "other")
    assert dprctl("init", "--dir", other, "--cluster", "prod").returncode == 0
    assert dprctl("issue", "client", "--name", "x", "--dir", other).returncode == 0
    r = dprctl("revoke", os.path.join(other, "x.crt"), "--dir", ca)
    assert r.returncode == 1 and "was not issued by the CA" in r.stderr
    r = dprctl("issue", "node", "--node", "ca", "--dir", ca)
    assert r.returncode == 1 and "the CA's own" in r.stderr
    assert mode(os.path.join(ca, "ca.key")) == 0o600


def test_openssl_commands_of_the_docs(tmp_path, ca):
    """docs/tls.md's plain-openssl block, run as written (in tmp_path instead
    of /etc/dpr/tls), makes what dprctl pki makes."""
    from dprtest import ROOT
    with open(os.path.join(ROOT, "docs", "tls.md")) as f:
        doc = f.read()
    start = doc.index("### The same with the `openssl` command")
    begin = doc.index("```sh\n", start) + 6
    block = doc[begin:doc.index("\n```", begin)]
    d = str(tmp_path / "openssl")
    os.makedirs(d)
    script = "set -euo pipefail\n" + block.replace("/etc/dpr/tls", d)
    r = subprocess.run(["bash", "-c", script], cwd=d, capture_output=True, text=True, timeout=120)
    # its `openssl verify` of node1 runs before billing is revoked
    assert "node1.crt: OK" in r.stdout, r.stdout + r.stderr
    assert mode(os.path.join(d, "ca.key")) == 0o600
    assert mode(os.path.join(d, "node1.key")) == 0o600
    mine = text(os.path.join(d, "node1.crt"))
    assert "Subject: O = prod, CN = node1" in mine
    assert ("URI:dpr://prod/node/node1, DNS:node1, DNS:node1.example.com, IP Address:10.0.0.1"
            in mine)
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in mine
    v = verify(d, os.path.join(d, "billing.crt"))
    assert v.returncode != 0 and "certificate revoked" in v.stdout + v.stderr
    # the same extensions as dprctl's node certificate
    assert dprctl("issue", "node", "--node", "node1", "--ip", "10.0.0.1", "--dns",
                  "node1.example.com", "--dir", ca).returncode == 0
    theirs = text(os.path.join(ca, "node1.crt"))
    for line in ("URI:dpr://prod/node/node1, DNS:node1, DNS:node1.example.com, IP Address:10.0.0.1",
                 "CA:FALSE", "Digital Signature",
                 "TLS Web Server Authentication, TLS Web Client Authentication"):
        assert line in mine and line in theirs, line
    assert "URI:dpr://prod/client/billing" in text(os.path.join(d, "billing.crt"))
