"""The installation's own CA and the server certificate nodes and browsers check.

Nodes reach the headend over the public 4G network: MQTT on 8883 and media over HTTPS, both
with this certificate. Each node holds the CA (DER, what MicroPython's ``ssl`` reads) from its
provisioning and refuses any server it did not sign, and any name but the one it dialled.

The CA lives ten years (nodes on poles cannot be re-flashed every year); the server
certificate lives about two years and is issued again by :func:`ensure` when it is missing,
names other hosts, or is within 30 days of expiry, so a headend restarted now and then rotates
it without anyone touching the nodes. An operator may bring their own (:func:`use_operator`).
Files are under ``<home>/tls/``, keys 0600.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from headend.core.home import Home, write_private

__all__ = ["CA_DAYS", "RENEW_DAYS", "SERVER_DAYS", "TlsError", "TlsFiles", "ensure",
           "installed", "use_operator"]

CA_DAYS: Final = 3650
SERVER_DAYS: Final = 825  # what browsers accept for a server certificate
RENEW_DAYS: Final = 30  # issued again when it has less than this left


class TlsError(Exception):
    """Certificates that cannot be made, read or trusted."""


@dataclass(frozen=True)
class TlsFiles:
    """Where the broker and the web server find their certificate, and what nodes pin."""

    cert: Path  # the server certificate (PEM)
    key: Path  # its private key (PEM, 0600)
    ca: Path  # the CA certificate (PEM)

    def ca_der(self) -> bytes:
        """The CA as DER: what a node's config carries (MicroPython reads DER only)."""
        return _load_cert(self.ca).public_bytes(serialization.Encoding.DER)

    def names(self) -> list[str]:
        return _names(_load_cert(self.cert))

    def expires(self) -> dt.datetime:
        return _load_cert(self.cert).not_valid_after_utc


def _paths(home: Home) -> tuple[Path, Path, Path, Path]:
    d = home.tls_dir
    return d / "ca.pem", d / "ca.key", d / "server.pem", d / "server.key"


def installed(home: Home) -> TlsFiles:
    """The state directory's certificate files (made by :func:`ensure` or the operator's)."""
    ca_pem, _, cert_path, key_path = _paths(home)
    return TlsFiles(cert_path, key_path, ca_pem)


def ensure(home: Home, names: Sequence[str], now: dt.datetime | None = None) -> TlsFiles:
    """The CA (made once) and a server certificate for ``names`` (host names or IP
    addresses), issued again when missing, for other names, or near its end."""
    if not names:
        raise TlsError("a server certificate needs at least one host name or address")
    now = now or dt.datetime.now(dt.UTC)
    ca_pem, ca_key_path, cert_path, key_path = _paths(home)
    home.tls_dir.mkdir(mode=0o700, exist_ok=True)
    if (home.tls_dir / "operator").exists():
        files = TlsFiles(cert_path, key_path, ca_pem)
        if set(names) - set(files.names()):
            raise TlsError(f"the operator's certificate does not name {sorted(set(names))}")
        return files
    if not ca_pem.exists() or not ca_key_path.exists():
        _make_ca(ca_pem, ca_key_path, now)
    ca = _load_cert(ca_pem)
    current = _load_cert(cert_path) if cert_path.exists() and key_path.exists() else None
    if (current is None or set(_names(current)) != set(names)
            or current.not_valid_after_utc - now < dt.timedelta(days=RENEW_DAYS)
            or current.issuer != ca.subject):
        _issue(ca, _load_key(ca_key_path), list(names), cert_path, key_path, now)
    return TlsFiles(cert_path, key_path, ca_pem)


def use_operator(home: Home, cert: Path, key: Path, ca: Path) -> TlsFiles:
    """Install the operator's certificate, key and CA instead of LoaXa's own, once each is
    checked: the key is the certificate's, and the CA signed it."""
    try:
        server, ca_cert = _load_cert(cert), _load_cert(ca)
        private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise TlsError(f"cannot read the certificate, key or CA: {e}") from None
    if private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) != \
            server.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        raise TlsError(f"{key} is not the key of {cert}")
    try:
        server.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        raise TlsError(f"{ca} did not sign {cert}") from None
    ca_pem, _, cert_path, key_path = _paths(home)
    home.tls_dir.mkdir(mode=0o700, exist_ok=True)
    write_private(ca_pem, ca.read_text())
    write_private(cert_path, cert.read_text())
    write_private(key_path, key.read_text())
    write_private(home.tls_dir / "operator", f"{cert}\n")
    return TlsFiles(cert_path, key_path, ca_pem)


def _make_ca(pem: Path, key_path: Path, now: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())  # small for a node's flash and handshake
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "LoaXa installation CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    write_private(key_path, _key_pem(key))
    write_private(pem, cert.public_bytes(serialization.Encoding.PEM).decode())


def _issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: list[str],
           cert_path: Path, key_path: Path, now: dt.datetime) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    alt: list[x509.GeneralName] = []
    for n in names:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            alt.append(x509.DNSName(n))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(ca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    write_private(key_path, _key_pem(key))  # the key first: a cert without its key is no use
    write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _load_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as e:
        raise TlsError(f"cannot read certificate {path}: {e}") from None


def _load_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{path} is not LoaXa's CA key")
    return key


def _names(cert: x509.Certificate) -> list[str]:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [str(n.value) for n in alt]
