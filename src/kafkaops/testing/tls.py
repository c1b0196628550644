"""A throwaway CA, a broker certificate (127.0.0.1 and localhost in its SAN) and a client pair."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    broker_keystore: Path
    client_cert: Path
    client_key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert(subject, key, issuer, issuer_key, *, ca: bool, san=None) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def make_tls_files(directory: Path) -> TlsFiles:
    """Write a CA, a PEM keystore for the broker (key then chain) and a client pair."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_name = _name("kafkaops test CA")
    ca_cert = _cert(ca_name, ca_key, ca_name, ca_key, ca=True)
    broker_key = _key()
    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    broker_cert = _cert(_name("localhost"), broker_key, ca_name, ca_key, ca=False, san=san)
    client_key = _key()
    client_cert = _cert(_name("kafkaops-client"), client_key, ca_name, ca_key, ca=False)

    pem = serialization.Encoding.PEM
    files = TlsFiles(
        ca=directory / "ca.pem",
        broker_keystore=directory / "broker-keystore.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
    )
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.broker_keystore.write_bytes(
        _pem_key(broker_key) + broker_cert.public_bytes(pem) + ca_cert.public_bytes(pem)
    )
    files.client_cert.write_bytes(client_cert.public_bytes(pem))
    files.client_key.write_bytes(_pem_key(client_key))
    return files
