"""Making a local certificate authority and the certificates it signs, as ``nomad tls
ca create`` and ``nomad tls cert create`` do, for turning on TLS between Cube's
components (:mod:`cube.tls`).

The CA is an EC P-256 key and a self-signed certificate that may sign leaf certificates
only (path length 0). A leaf certificate names the host names and addresses its
component answers on, and is good both for serving and for being a client. Keys are
written readable by their owner only, and nothing is ever overwritten: a CA replaced by
mistake would silently untrust every certificate it signed.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cube.tls import CA_ENV, CERT_ENV, KEY_ENV

SERVER_AUTH, CLIENT_AUTH = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH

CA_FILE = "cube-ca.pem"
CA_KEY_FILE = "cube-ca-key.pem"
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
LABEL = re.compile(r"^(\*|[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)$")
MAX_HOSTS = 100


@dataclass(frozen=True)
class Issued:
    """Where a certificate and its key were written."""

    cert: Path
    key: Path


def create_ca(directory: Path, *, days: int = 5 * 365, name: str = "Cube CA") -> Issued:
    """A new certificate authority in ``directory`` (``cube-ca.pem`` and, readable by
    its owner only, ``cube-ca-key.pem``). Refuses to overwrite one: every certificate
    it signed would stop being trusted."""
    paths = Issued(directory / CA_FILE, directory / CA_KEY_FILE)
    _refuse_existing(paths)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    _write(paths, cert, key)
    return paths


def create_cert(
    ca_dir: Path,
    name: str,
    hosts: list[str],
    out_dir: Path | None = None,
    *,
    days: int = 365,
) -> Issued:
    """A certificate for ``name`` (``NAME.pem``, ``NAME-key.pem`` in ``out_dir``,
    default the CA's directory) valid for each of ``hosts`` (DNS names or IP
    addresses), signed by the CA in ``ca_dir``; usable to serve and to be a client."""
    if not NAME.fullmatch(name):
        raise ValueError(f"name must be letters, digits, '.', '_' or '-', not {name!r}")
    names = [_san(host) for host in hosts]
    if not names or len(names) > MAX_HOSTS:
        raise ValueError(f"hosts must name 1 to {MAX_HOSTS} host names or addresses")
    ca_cert, ca_key = _load_ca(ca_dir)
    out = out_dir or ca_dir
    paths = Issued(out / f"{name}.pem", out / f"{name}-key.pem")
    _refuse_existing(paths)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(ca=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([SERVER_AUTH, CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    _write(paths, cert, key)
    return paths


@dataclass(frozen=True)
class LocalTLS:
    """A CA and one certificate for 127.0.0.1 and localhost, shared by the components
    of a cluster on one machine (``LocalCluster(tls=True)``, ``cube up --tls``)."""

    ca: Path
    cert: Path
    key: Path

    def env(self) -> dict[str, str]:
        """The settings (see :mod:`cube.tls`) that make a component serve and verify."""
        return {CERT_ENV: str(self.cert), KEY_ENV: str(self.key), CA_ENV: str(self.ca)}


def local_tls(directory: Path) -> LocalTLS:
    """The cluster's CA and certificate in ``directory``, made on first use and kept,
    so a cluster started again on the same data directory trusts what it trusted."""
    if not (directory / CA_FILE).exists():
        create_ca(directory)
    if not (directory / "local.pem").exists():
        create_cert(directory, "local", ["127.0.0.1", "localhost"])
    return LocalTLS(directory / CA_FILE, directory / "local.pem", directory / "local-key.pem")


def _san(host: str) -> x509.GeneralName:
    """An IP address or a DNS name, refused when it is neither."""
    host = host.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        pass
    labels = host.rstrip(".").split(".")
    if host and all(LABEL.fullmatch(label) for label in labels):
        return x509.DNSName(host)
    raise ValueError(f"hosts: {host!r} is neither a host name nor an IP address")


def _usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / CA_FILE, ca_dir / CA_KEY_FILE
    if not cert_path.is_file() or not key_path.is_file():
        raise FileNotFoundError(
            f"no CA in {ca_dir}: expected {CA_FILE} and {CA_KEY_FILE} (cube tls ca create)"
        )
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{key_path} is not an EC key made by cube tls ca create")
    return cert, key


def _refuse_existing(paths: Issued) -> None:
    for path in (paths.cert, paths.key):
        if path.exists():
            raise FileExistsError(f"{path} exists already; remove it first to replace it")


def _write(paths: Issued, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    """The key is created readable by its owner only, before any byte is written."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(paths.key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    paths.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
