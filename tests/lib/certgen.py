"""Certificates that `dprctl pki` would not make, for the TLS tests: signed
by a pki directory's CA (ca.crt, ca.key) with a chosen dpr:// URI and
validity, e.g. an expired one or one naming another cluster."""
import datetime
import os


def sign_leaf(ca_dir: str, name: str, uri: str, start_days: float = -1, end_days: float = 10,
              org: str | None = None, eku=None) -> None:
    """Writes ca_dir/name.crt and name.key: CN=name (and O=org), the URI
    SAN uri, valid from now + start_days to now + end_days; eku: None or
    a list of "server"/"client"."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    with open(os.path.join(ca_dir, "ca.crt"), "rb") as f:
        ca = x509.load_pem_x509_certificate(f.read())
    with open(os.path.join(ca_dir, "ca.key"), "rb") as f:
        ca_key = serialization.load_pem_private_key(f.read(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.utcnow()
    subject = ([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []) + \
        [x509.NameAttribute(NameOID.COMMON_NAME, name)]
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name(subject))
         .issuer_name(ca.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number())
         .not_valid_before(now + datetime.timedelta(days=start_days))
         .not_valid_after(now + datetime.timedelta(days=end_days))
         .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(uri)]),
                        critical=False))
    if eku:
        oids = {"server": ExtendedKeyUsageOID.SERVER_AUTH,
                "client": ExtendedKeyUsageOID.CLIENT_AUTH}
        b = b.add_extension(x509.ExtendedKeyUsage([oids[e] for e in eku]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    with open(os.path.join(ca_dir, name + ".crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(os.path.join(ca_dir, name + ".key"), "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))


def make_test_pki(d: str, cluster: str, foreign_role: str) -> None:
    """The TLS tests' common certificates in d: the cluster's CA, clients
    app and gone (revoked in ca.crl), and foreign.crt/.key of the same role
    and cluster name issued by another CA (d/other)."""
    import shutil

    from dpr import pki
    pki.init(d, cluster)
    pki.issue(d, "client", "app")
    pki.issue(d, "client", "gone")
    pki.revoke(d, os.path.join(d, "gone.crt"))
    other = os.path.join(d, "other")
    pki.init(other, cluster)  # same cluster name, another CA
    pki.issue(other, foreign_role, "foreign")
    for n in ("foreign.crt", "foreign.key"):
        shutil.copy(os.path.join(other, n), os.path.join(d, n))
