"""A cluster's certificates (`dprctl pki`, docs/tls.md): a CA, node and client
certificates with the SANs the TLS links check, and the CA's revocation list.

Layout of a CA directory (default /etc/dpr/tls):

    ca.key   the CA's private key, 0600 (never copied anywhere)
    ca.crt   the CA certificate, 0644 (subject O=CLUSTER)
    ca.crl   the CA's revocation list, 0644
    NAME.key / NAME.crt   what `issue` wrote there (or into --out)

Every node and client certificate carries the URI SAN
``dpr://CLUSTER/node/NAME`` or ``dpr://CLUSTER/client/NAME`` (common/tls.h
reads the cluster from it), CN=NAME and O=CLUSTER. Keys are ECDSA P-256.
Uses Debian's python3-cryptography.
"""
from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import re
from typing import Any, Sequence

from .errors import DprError

__all__ = ["PkiError", "DEFAULT_DIR", "init", "issue", "revoke", "refresh_crl", "cluster_of"]

DEFAULT_DIR = "/etc/dpr/tls"
NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,63}\Z")
CA_DAYS = 3650
CERT_DAYS = 825
CRL_DAYS = 365


class PkiError(DprError):
    """A CA directory or a name that cannot be used; the message says which."""


def _x509() -> tuple[Any, ...]:
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError as e:  # pragma: no cover - Debian's package is a dependency
        raise PkiError("python3-cryptography is needed (apt-get install python3-cryptography): "
                       "%s" % e)
    return x509, hashes, serialization, ec, ExtendedKeyUsageOID, NameOID


def _check_name(what: str, name: str) -> None:
    if not NAME_RE.match(name or ""):
        raise PkiError("bad %s %r: 1 to 63 characters of A-Z a-z 0-9 . _ -" % (what, name))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)


def _write(path: str, data: bytes, mode: int, force: bool, gid: int = -1) -> None:
    """Writes path with mode and group gid (-1: the caller's; both set before
    any byte is written); an existing file only with force."""
    if os.path.lexists(path) and not force:
        raise PkiError("%s exists (use --force to replace it)" % path)
    tmp = path + ".tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        if gid != -1:
            try:
                os.fchown(fd, -1, gid)
            except OSError as e:
                raise PkiError("%s: cannot give it group %d: %s" % (path, gid, e.strerror))
        os.fchmod(fd, mode)  # whatever the umask
        os.write(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    os.replace(tmp, path)


def _key_pem(key: Any) -> bytes:
    _, _, serialization, _, _, _ = _x509()
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _cert_pem(cert: Any) -> bytes:
    _, _, serialization, _, _, _ = _x509()
    return cert.public_bytes(serialization.Encoding.PEM)


def _load_ca(ca_dir: str) -> tuple[Any, Any]:
    x509, _, serialization, _, _, _ = _x509()
    try:
        with open(os.path.join(ca_dir, "ca.crt"), "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(os.path.join(ca_dir, "ca.key"), "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
    except FileNotFoundError as e:
        raise PkiError("%s: no CA there (run dprctl pki init first): %s is missing"
                       % (ca_dir, e.filename))
    except (OSError, ValueError) as e:
        raise PkiError("cannot read the CA in %s: %s" % (ca_dir, e))
    return cert, key


def cluster_of(ca_cert: Any) -> str:
    """The cluster name of a CA certificate (its O=)."""
    _, _, _, _, _, NameOID = _x509()
    attrs = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not attrs:
        raise PkiError("the CA certificate names no cluster (no O= in its subject)")
    return attrs[0].value


def _crl(ca_cert: Any, ca_key: Any, revoked: list) -> bytes:
    x509, hashes, serialization, _, _, _ = _x509()
    now = _now()
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - datetime.timedelta(minutes=5))
         .next_update(now + datetime.timedelta(days=CRL_DAYS)))
    for r in revoked:
        b = b.add_revoked_certificate(r)
    return b.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def init(ca_dir: str, cluster: str, days: int = CA_DAYS, force: bool = False) -> dict:
    """Makes the CA of cluster in ca_dir: ca.key (0600), ca.crt and an empty
    ca.crl (0644). Returns the paths written."""
    x509, hashes, _, ec, _, NameOID = _x509()
    _check_name("cluster name", cluster)
    os.makedirs(ca_dir, mode=0o755, exist_ok=True)
    if not force:
        for n in ("ca.key", "ca.crt"):
            if os.path.lexists(os.path.join(ca_dir, n)):
                raise PkiError("%s exists: %s already holds a CA (use --force to replace it, "
                               "which invalidates every certificate it issued)"
                               % (os.path.join(ca_dir, n), ca_dir))
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
                      x509.NameAttribute(NameOID.COMMON_NAME, "DPR cluster %s CA" % cluster)])
    now = _now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False),
                           critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    paths = {n: os.path.join(ca_dir, n) for n in ("ca.key", "ca.crt", "ca.crl")}
    _write(paths["ca.key"], _key_pem(key), 0o600, True)
    _write(paths["ca.crt"], _cert_pem(cert), 0o644, True)
    _write(paths["ca.crl"], _crl(cert, key, []), 0o644, True)
    return paths


def issue(ca_dir: str, kind: str, name: str, out_dir: str | None = None,
          ips: Sequence[str] = (), dns: Sequence[str] = (),
          days: int = CERT_DAYS, force: bool = False, group: str | None = None) -> dict:
    """Issues a node or client certificate NAME of the CA in ca_dir into
    out_dir (default ca_dir): NAME.key (0600; with group: 0640 and that
    group, for a service that runs as another user, e.g. dpr-cachestore),
    NAME.crt (0644), and ca.crt when out_dir is another directory. Returns
    the paths written."""
    x509, hashes, _, ec, EKU, NameOID = _x509()
    gid = -1
    if group is not None:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError:
            raise PkiError("no group %r on this machine" % group)
    if kind not in ("node", "client"):
        raise PkiError("bad kind %r: node or client" % kind)
    _check_name("%s name" % kind, name)
    ca_cert, ca_key = _load_ca(ca_dir)
    cluster = cluster_of(ca_cert)
    san = [x509.UniformResourceIdentifier("dpr://%s/%s/%s" % (cluster, kind, name))]
    if kind == "node":
        san.append(x509.DNSName(name))
    for d in dns:
        if not re.match(r"[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})\Z", d):
            raise PkiError("bad DNS name %r" % d)
        san.append(x509.DNSName(d))
    for ip in ips:
        try:
            san.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError:
            raise PkiError("bad IP address %r" % ip)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    usages = [EKU.CLIENT_AUTH] if kind == "client" else [EKU.SERVER_AUTH, EKU.CLIENT_AUTH]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster),
                                     x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=False,
                                         crl_sign=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectAlternativeName(san), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    out_dir = out_dir or ca_dir
    os.makedirs(out_dir, mode=0o755, exist_ok=True)
    paths = {"key": os.path.join(out_dir, name + ".key"),
             "crt": os.path.join(out_dir, name + ".crt")}
    if os.path.realpath(paths["key"]) == os.path.realpath(os.path.join(ca_dir, "ca.key")):
        raise PkiError("the name 'ca' is the CA's own")
    _write(paths["key"], _key_pem(key), 0o640 if group is not None else 0o600, force, gid)
    _write(paths["crt"], _cert_pem(cert), 0o644, force)
    if os.path.realpath(out_dir) != os.path.realpath(ca_dir):
        paths["ca"] = os.path.join(out_dir, "ca.crt")
        _write(paths["ca"], _cert_pem(ca_cert), 0o644, True)
    return paths


def _signed_by(cert: Any, ca_cert: Any) -> bool:
    """Whether ca_cert's key signed cert (two CAs of one cluster share a
    subject name)."""
    from cryptography.exceptions import InvalidSignature
    _, _, _, ec, _, _ = _x509()
    try:
        ca_cert.public_key().verify(cert.signature, cert.tbs_certificate_bytes,
                                    ec.ECDSA(cert.signature_hash_algorithm))
    except (InvalidSignature, TypeError, ValueError):
        return False
    return True


def _revoked(ca_dir: str) -> list:
    x509, _, _, _, _, _ = _x509()
    crl_path = os.path.join(ca_dir, "ca.crl")
    try:
        with open(crl_path, "rb") as f:
            return list(x509.load_pem_x509_crl(f.read()))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as e:
        raise PkiError("cannot read %s: %s" % (crl_path, e))


def refresh_crl(ca_dir: str) -> str:
    """Signs ca.crl again with the same entries and a new expiry (a CRL is
    valid for CRL_DAYS days; an expired one makes servers refuse every
    certificate of the CA). Returns its path."""
    ca_cert, ca_key = _load_ca(ca_dir)
    crl_path = os.path.join(ca_dir, "ca.crl")
    _write(crl_path, _crl(ca_cert, ca_key, _revoked(ca_dir)), 0o644, True)
    return crl_path


def revoke(ca_dir: str, cert_path: str) -> int:
    """Adds the certificate at cert_path (issued by the CA in ca_dir) to
    ca.crl; returns its serial number. Servers read the CRL at start and on
    reload (SIGHUP)."""
    x509, _, _, _, _, _ = _x509()
    ca_cert, ca_key = _load_ca(ca_dir)
    try:
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
    except (OSError, ValueError) as e:
        raise PkiError("cannot read certificate %s: %s" % (cert_path, e))
    if cert.issuer != ca_cert.subject or not _signed_by(cert, ca_cert):
        raise PkiError("%s was not issued by the CA in %s" % (cert_path, ca_dir))
    crl_path = os.path.join(ca_dir, "ca.crl")
    revoked = _revoked(ca_dir)
    if all(r.serial_number != cert.serial_number for r in revoked):
        revoked.append(x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                       .revocation_date(_now()).build())
    _write(crl_path, _crl(ca_cert, ca_key, revoked), 0o644, True)
    return cert.serial_number
