"""The `simulated` TEE provider: a software stand-in for development and tests.

NOT HARDWARE. A simulated platform CA (self-signed X.509, P-256, CN says so)
certifies an attestation key (leaf certificate). Both are generated once into
`Home.simulated_ca` (private keys mode 0600):

    simulated-tee/ca.pem                 CA certificate (what a verifier trusts)
    simulated-tee/ca-key.pem             CA private key (0600)
    simulated-tee/attestation.pem        attestation key certificate, issued by the CA
    simulated-tee/attestation-key.pem    attestation private key (0600)

A quote is a JSON object:

    {"provider": "simulated", "simulated": true, "version": 1,
     "platform": "SIMULATED TEE - software stand-in, not hardware evidence",
     "measurements": {"container_digest", "model_digest", "runtime"},
     "report_data": <64 bytes, unpadded base64url>,
     "timestamp": <RFC 3339 UTC>,
     "alg": "ES256",
     "cert_chain": [<leaf DER, base64>, <CA DER, base64>],
     "signature": <ECDSA P-256 / SHA-256 DER signature, unpadded base64url>}

The signature covers the RFC 8785 (JCS) bytes of the object without `signature`, so
every other field (measurements, report data, timestamp, chain) is signed. The
verifier's side is `verifier.tee.simulated`.
"""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attester.tee.base import require_report_data
from bytereplay.encoding import b64_encode, b64url_encode, jcs
from bytereplay.errors import KeyConfigError
from bytereplay.home import SIMULATED_CA_FILE

NAME = "simulated"
VERSION = 1
PLATFORM = "SIMULATED TEE - software stand-in, not hardware evidence"
CA_CN = "bytereplay SIMULATED TEE platform CA — not hardware"
LEAF_CN = "bytereplay SIMULATED TEE attestation key — not hardware"
ORG = "bytereplay (SIMULATED)"
CA_DAYS = 3650
LEAF_DAYS = 730
CA_FILE, CA_KEY_FILE = SIMULATED_CA_FILE, "ca-key.pem"
LEAF_FILE, LEAF_KEY_FILE = "attestation.pem", "attestation-key.pem"


# -- key material -------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue_ca(key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    name = _name(CA_CN)
    return (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=False, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )


def _issue_leaf(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate,
                key: ec.EllipticCurvePrivateKey, now: datetime) -> x509.Certificate:
    not_after = min(now + timedelta(days=LEAF_DAYS), ca.not_valid_after_utc)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(LEAF_CN)).issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _read_key(path: Path) -> ec.EllipticCurvePrivateKey:
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()
    except OSError as exc:
        raise KeyConfigError(f"cannot read {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyConfigError(f"{path} is readable by others (mode {mode:o}); expected 0600")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise KeyConfigError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeyConfigError(f"{path} is not an EC private key")
    return key


def _read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise KeyConfigError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise KeyConfigError(f"{path} is not a PEM certificate: {exc}") from None


def _create(folder: Path) -> None:
    """Generate CA and attestation key into a temporary folder, then rename it into place.

    Two processes starting at once: one rename wins, the other uses the winner's files.
    """
    folder.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = folder.parent / f".{folder.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir(mode=0o700)
    try:
        now = datetime.now(UTC)
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = _issue_ca(ca_key, now)
        leaf_key = ec.generate_private_key(ec.SECP256R1())
        leaf = _issue_leaf(ca_key, ca, leaf_key, now)
        _write(tmp / CA_KEY_FILE, _key_pem(ca_key), 0o600)
        _write(tmp / LEAF_KEY_FILE, _key_pem(leaf_key), 0o600)
        _write(tmp / CA_FILE, ca.public_bytes(serialization.Encoding.PEM), 0o644)
        _write(tmp / LEAF_FILE, leaf.public_bytes(serialization.Encoding.PEM), 0o644)
        try:
            os.rename(tmp, folder)  # replaces an empty folder; fails on a populated one
        except OSError:
            if not (folder / CA_FILE).exists():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@dataclass(frozen=True)
class SimulatedPlatform:
    """The simulated platform's CA certificate and its certified attestation key."""

    ca: x509.Certificate
    leaf: x509.Certificate
    attestation_key: ec.EllipticCurvePrivateKey

    @classmethod
    def load_or_create(cls, folder: Path) -> SimulatedPlatform:
        if not (folder / CA_FILE).exists():
            _create(folder)
        ca = _read_cert(folder / CA_FILE)
        leaf = _read_cert(folder / LEAF_FILE)
        key = _read_key(folder / LEAF_KEY_FILE)
        if leaf.public_key() != key.public_key():
            raise KeyConfigError(f"{folder}: the attestation certificate does not match its key")
        now = datetime.now(UTC)
        if leaf.not_valid_after_utc <= now + timedelta(days=1):
            leaf = cls._reissue_leaf(folder, ca, key, now)
        return cls(ca=ca, leaf=leaf, attestation_key=key)

    @staticmethod
    def _reissue_leaf(folder: Path, ca: x509.Certificate, key: ec.EllipticCurvePrivateKey,
                      now: datetime) -> x509.Certificate:
        ca_key = _read_key(folder / CA_KEY_FILE)
        leaf = _issue_leaf(ca_key, ca, key, now)
        tmp = folder / f".{LEAF_FILE}.{secrets.token_hex(4)}"
        _write(tmp, leaf.public_bytes(serialization.Encoding.PEM), 0o644)
        os.replace(tmp, folder / LEAF_FILE)
        return leaf

    @property
    def ca_pem(self) -> str:
        return self.ca.public_bytes(serialization.Encoding.PEM).decode("ascii")


# -- the provider ---------------------------------------------------------------------

_ES256 = ec.ECDSA(hashes.SHA256())  # immutable: one for every quote


def _now_text() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _signed_bytes(quote: dict[str, Any]) -> bytes:
    return jcs({k: v for k, v in quote.items() if k != "signature"})


class SimulatedProvider:
    """Quotes signed by the simulated attestation key. `simulated` is always True."""

    name = NAME
    simulated = True

    def __init__(self, folder: Path) -> None:
        self.platform = SimulatedPlatform.load_or_create(folder)
        der = [c.public_bytes(serialization.Encoding.DER)
               for c in (self.platform.leaf, self.platform.ca)]
        self._chain = [b64_encode(d) for d in der]

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        require_report_data(report_data)
        body: dict[str, Any] = {
            "provider": NAME,
            "simulated": True,
            "version": VERSION,
            "platform": PLATFORM,
            "measurements": dict(measurements),
            "report_data": b64url_encode(report_data),
            "timestamp": _now_text(),
            "alg": "ES256",
            "cert_chain": list(self._chain),
        }
        sig = self.platform.attestation_key.sign(_signed_bytes(body), _ES256)
        body["signature"] = b64url_encode(sig)
        return body
