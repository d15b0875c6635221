"""The `simulated` scheme: quotes of the simulated TEE (`attester.tee.simulated`).

NOT HARDWARE. The quote is a JSON object signed by an attestation key that a simulated
platform CA certified (the format is in the attester's module). Verification checks the
leaf against a *configured* CA, the trust's `roots` (PEM text; never the CA the quote
carries): issuer signature, validity at the verification time, basicConstraints and
keyUsage; then the quote signature over the RFC 8785 (JCS) bytes of the object without
`signature`; then the report data. `hardware` is always False.

Three caches, each a pure function of certificate bytes (validity is checked at `at`
every time, never cached): the configured anchors parsed once per configuration, the
issuer signature once per (leaf, CA) pair, and the leaf's checked key once per
certificate. They pay: turned off, an in-process appraisal costs about 11% (anchors),
25% (issuer signature) and 5% (the key: OpenSSL's precomputation is per key object)
more CPU. Parsing the leaf (about 1.5 us) is done every time.
"""

from __future__ import annotations

import binascii
import functools
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bytereplay.encoding import b64_decode, jcs
from bytereplay.errors import BytereplayError, KeyConfigError, QuoteError
from bytereplay.home import SIMULATED_CA_FILE
from verifier.tee.base import (
    QuoteVerification,
    SchemeTrust,
    field_b64,
    field_str,
    same_bytes,
)

KIND = NAME = "simulated"
VERSION = 1
MAX_CHAIN = 4
MAX_CERT_B64 = 8192
REASON = "simulated TEE: a software stand-in, not hardware evidence"
_ES256 = ec.ECDSA(hashes.SHA256())  # immutable: one for every quote


def signed_bytes(quote: dict[str, Any]) -> bytes:
    """What the quote signature covers: the JCS bytes of the quote without `signature`."""
    return jcs({k: v for k, v in quote.items() if k != "signature"})


def load_ca_pem(folder: Path) -> str | None:
    """The simulated CA certificate (PEM) in `folder`, or None when there is none.

    For the verifier: an attester and a verifier sharing a home trust this CA.
    """
    path = folder / SIMULATED_CA_FILE
    if not path.exists():
        return None
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except OSError as exc:
        raise KeyConfigError(f"cannot read {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise KeyConfigError(f"{path} is not a PEM certificate: {exc}") from None
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")



@dataclass(frozen=True)
class _Anchor:
    """A configured simulated CA, parsed once: the certificate, its DER and whether it
    carries basicConstraints CA:TRUE."""

    cert: x509.Certificate
    der: bytes
    is_ca: bool


def _load_anchor(pem: str) -> _Anchor:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode("ascii"))
        return _Anchor(cert, cert.public_bytes(serialization.Encoding.DER),
                       _basic_ca(cert) is True)
    except Exception as exc:  # ValueError, UnicodeEncodeError, or its extensions unreadable
        raise QuoteError(f"a configured simulated CA is not a PEM certificate: {exc}") from None


@functools.lru_cache(maxsize=16)
def _anchors(pems: tuple[str, ...]) -> tuple[_Anchor, ...]:
    """The configured anchors, parsed once per configuration (a refusal is not cached)."""
    return tuple(_load_anchor(pem) for pem in pems)


def _basic_ca(cert: x509.Certificate) -> bool | None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return None
    return bc.ca


def _check_validity(cert: x509.Certificate, now: datetime, what: str) -> None:
    if now < cert.not_valid_before_utc:
        raise QuoteError(f"the {what} certificate is not valid yet (from {cert.not_valid_before_utc})")
    if now > cert.not_valid_after_utc:
        raise QuoteError(f"the {what} certificate expired at {cert.not_valid_after_utc}")


def _parse_leaf(der: bytes) -> x509.Certificate:
    """The attestation key certificate (cryptography parses it lazily: about 1.5 us,
    not worth remembering)."""
    try:
        return x509.load_der_x509_certificate(der)
    except Exception as exc:  # ValueError, x509.InvalidVersion, ...: junk from outside
        raise QuoteError(f"the attestation key certificate cannot be read: {exc}") from None


def _leaf_from_chain(quote: dict[str, Any]) -> tuple[bytes, x509.Certificate]:
    chain = quote.get("cert_chain")
    if not isinstance(chain, list) or not 1 <= len(chain) <= MAX_CHAIN:
        raise QuoteError(f"quote field 'cert_chain' must be a list of 1..{MAX_CHAIN} certificates")
    first = chain[0]
    if not isinstance(first, str) or len(first) > MAX_CERT_B64:
        raise QuoteError("quote 'cert_chain' entries are base64 DER text")
    try:
        der = b64_decode(first)
    except (binascii.Error, ValueError) as exc:
        raise QuoteError(f"the attestation key certificate cannot be read: {exc}") from None
    return der, _parse_leaf(der)


@functools.lru_cache(maxsize=512)
def _issued_by(leaf_der: bytes, ca_der: bytes) -> bool:
    """Whether the CA's key signed the leaf (and the names chain): a pure function of the
    two certificates, so it is remembered per pair. Validity times are NOT part of it."""
    leaf = _parse_leaf(leaf_der)
    ca = x509.load_der_x509_certificate(ca_der)
    try:
        leaf.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _chains_to(leaf_der: bytes, anchors: tuple[_Anchor, ...], now: datetime) -> x509.Certificate:
    problems: list[str] = []
    for anchor in anchors:
        if not _issued_by(leaf_der, anchor.der):
            continue
        ca = anchor.cert
        if not anchor.is_ca:
            problems.append("the matching CA lacks basicConstraints CA:TRUE")
            continue
        try:
            _check_validity(ca, now, "simulated CA")
        except QuoteError as exc:
            problems.append(exc.detail)
            continue
        return ca
    detail = "; ".join(problems) if problems else "no configured CA issued it"
    raise QuoteError(
        f"the simulated attestation key certificate does not chain to a trusted simulated CA: {detail}"
    )


@functools.lru_cache(maxsize=256)
def _leaf_key(leaf_der: bytes) -> ec.EllipticCurvePublicKey:
    """The attestation key of a leaf certificate that is fit to be one (basicConstraints,
    keyUsage, EC P-256): a pure function of the DER, so remembered per certificate (a
    refusal is not cached). The same key object for every quote lets OpenSSL keep its
    precomputation: verifying with a fresh one costs about 35 us more per quote.
    Time-dependent checks are `_check_leaf`'s."""
    leaf = _parse_leaf(leaf_der)
    if _basic_ca(leaf) is not False:
        raise QuoteError("the attestation key certificate must carry basicConstraints CA:FALSE")
    try:
        ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        if not ku.digital_signature:
            raise QuoteError("the attestation key certificate does not allow digital signatures")
    except x509.ExtensionNotFound:
        pass
    public = leaf.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise QuoteError("the simulated attestation key must be an EC P-256 key")
    return public


def _check_leaf(leaf_der: bytes, leaf: x509.Certificate, anchors: tuple[_Anchor, ...],
                now: datetime) -> ec.EllipticCurvePublicKey:
    """The chain (signature cached per certificate pair; validity at `now` every time),
    then the leaf's own validity and what `_leaf_key` checks."""
    _chains_to(leaf_der, anchors, now)
    _check_validity(leaf, now, "simulated attestation key")
    return _leaf_key(leaf_der)


def _verify(quote: dict[str, Any], trust: SchemeTrust, expected_report_data: bytes,
            now: datetime) -> QuoteVerification:
    if quote.get("simulated") is not True:
        raise QuoteError("a simulated quote must say 'simulated': true")
    if quote.get("version") != VERSION:
        raise QuoteError(f"unsupported simulated quote version {quote.get('version')!r}")
    if field_str(quote, "alg") != "ES256":
        raise QuoteError("simulated quotes are signed with ES256")
    if not trust.roots:
        raise QuoteError("no simulated platform CA is configured as trusted; simulated quotes are refused")
    anchors = _anchors(tuple(trust.roots))
    leaf_der, leaf = _leaf_from_chain(quote)
    try:
        public = _check_leaf(leaf_der, leaf, anchors, now)
    except BytereplayError:
        raise
    except Exception as exc:  # cryptography's parse errors on a junk certificate's fields
        raise QuoteError(f"the attestation key certificate cannot be read: {exc}") from None
    signature = field_b64(quote, "signature")
    try:
        public.verify(signature, signed_bytes(quote), _ES256)
    except InvalidSignature:
        raise QuoteError("the simulated quote signature does not verify") from None
    except BytereplayError as exc:  # jcs() refusing the quote's content
        raise QuoteError(f"the simulated quote cannot be canonicalised: {exc.detail}") from None
    report_data = field_b64(quote, "report_data")
    if not same_bytes(report_data, expected_report_data):
        raise QuoteError("the quote's report data does not match SHA-512(nonce || record digest "
                         "|| evidence key thumbprint): the quote is not bound to this evidence")
    measurements = quote.get("measurements")
    if not isinstance(measurements, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in measurements.items()):
        raise QuoteError("quote field 'measurements' must map names to text")
    field_str(quote, "timestamp")
    return QuoteVerification(
        provider=NAME, scheme=KIND, simulated=True, hardware=False, measurements=dict(measurements),
        report_data=report_data, chain_ok=True,
        reasons=(REASON, "attestation key chains to a configured simulated CA",
                 "report data binds nonce, run record digest and evidence key"),
    )


class SimulatedScheme:
    """The `QuoteVerifier` of simulated quotes."""

    kind = KIND

    def parse(self, quote: dict[str, Any]) -> dict[str, Any]:
        # The checks need the quote object as signed: it is its own parsed form.
        return quote

    def verify(self, parsed: dict[str, Any], expected_report_data: bytes, trust: SchemeTrust,
               at: datetime) -> QuoteVerification:
        return _verify(parsed, trust, expected_report_data, at)


SCHEME = SimulatedScheme()
