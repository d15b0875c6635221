"""The two NVIDIA trust anchors shipped in `verifier/tee/nvidia_roots/` and the one
certificate-link check both chains use (the GPU device chain in `verifier.tee.nvidia`, the
RIM signing chain in `verifier.tee.nvidia_rim`).

`pinned_root(file, sha256, what)` loads a shipped root and refuses it (RuntimeError: the
package itself is wrong) unless its DER SHA-256 is the pinned one; `signed_by(child,
parent)` says whether `parent` (an EC key) issued and signed `child`; `check_links(certs,
at, what)` refuses a chain (leaf first) with a certificate outside its validity at `at`
or a link that `signed_by` does not hold, naming the certificate or the position.

`check_ocsp(certs, url, at)` asks the OCSP responder at `url` (RFC 6960, DER over HTTP
POST) about every certificate of a chain (leaf first) but the last, each with the next
as its issuer (CertID with SHA-384, as NVIDIA's responder is asked). An answer counts
only when it is `successful`, names that certificate, is signed by the issuer or by a
responder certificate the issuer signed for OCSP signing (`id-kp-OCSPSigning`), and is
current at `at` (`thisUpdate` not after it, `nextUpdate` not before it). `revoked` and
`unknown` refuse the chain; so does any answer that does not count. It returns the
revocation fact, `"good"`.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from datetime import datetime
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import ExtendedKeyUsageOID

from bytereplay import fetch
from bytereplay.errors import QuoteError

MAX_OCSP = 1 << 16
GOOD = "good"


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


@functools.cache
def pinned_root(file: str, sha256: str, what: str) -> x509.Certificate:
    data = (resources.files("verifier.tee") / "nvidia_roots" / file).read_bytes()
    certs = x509.load_pem_x509_certificates(data)
    if len(certs) != 1 or fingerprint(certs[0]) != sha256:
        raise RuntimeError(f"verifier/tee/nvidia_roots/{file} is not the pinned {what} "
                           "(SHA-256 differs)")
    return certs[0]


def signed_by(child: x509.Certificate, parent: x509.Certificate) -> bool:
    if child.issuer != parent.subject or not isinstance(parent.public_key(),
                                                        ec.EllipticCurvePublicKey):
        return False
    try:
        child.verify_directly_issued_by(parent)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def check_links(certs: list[x509.Certificate], at: datetime, what: str) -> None:
    for cert in certs:
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise QuoteError(f"{what} certificate {cert.subject.rfc4514_string()!r} is not "
                             f"valid at {at.isoformat()}")
    for i, (child, parent) in enumerate(itertools.pairwise(certs)):
        if not signed_by(child, parent):
            raise QuoteError(f"{what} certificate chain breaks at position {i}: "
                             f"{child.subject.rfc4514_string()!r} is not signed by "
                             f"{parent.subject.rfc4514_string()!r}")


def _ocsp_signer(answer: ocsp.OCSPResponse, issuer: x509.Certificate,
                 at: datetime) -> x509.Certificate:
    """The issuer, or a delegated responder certificate in the answer that it signed."""
    if answer.responder_name == issuer.subject or answer.responder_key_hash == \
            x509.SubjectKeyIdentifier.from_public_key(issuer.public_key()).digest:
        return issuer
    for cert in answer.certificates:
        try:
            eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            continue
        if ExtendedKeyUsageOID.OCSP_SIGNING in eku and signed_by(cert, issuer) and \
                cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            return cert
    raise QuoteError("OCSP answer is signed by neither the issuer nor a responder it names")


def _ocsp_one(cert: x509.Certificate, issuer: x509.Certificate, url: str,
              at: datetime) -> None:
    request = (ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA384())
               .build().public_bytes(serialization.Encoding.DER))
    body = fetch.http_post(url, request, "application/ocsp-request", "OCSP responder", MAX_OCSP)
    read_ocsp_answer(body, cert, issuer, at)


def read_ocsp_answer(body: bytes, cert: x509.Certificate, issuer: x509.Certificate,
                     at: datetime) -> None:
    """Accept the responder's DER answer about `cert` only when it counts and says good."""
    name = cert.subject.rfc4514_string()
    try:
        answer = ocsp.load_der_ocsp_response(body)
        if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            raise QuoteError(f"OCSP responder answered {answer.response_status.name} for {name!r}")
        signer = _ocsp_signer(answer, issuer, at)
        key = signer.public_key()
        algorithm = answer.signature_hash_algorithm
        if not isinstance(key, ec.EllipticCurvePublicKey) or algorithm is None:
            raise QuoteError("OCSP answer is not signed with ECDSA")
        try:
            key.verify(answer.signature, answer.tbs_response_bytes, ec.ECDSA(algorithm))
        except InvalidSignature:
            raise QuoteError(f"OCSP answer for {name!r}: the signature is invalid") from None
        single = next((r for r in answer.responses if r.serial_number == cert.serial_number),
                      None)
        if single is None:
            raise QuoteError(f"OCSP answer does not name {name!r}")
        if single.this_update_utc > at or (single.next_update_utc is not None
                                           and single.next_update_utc < at):
            raise QuoteError(f"OCSP answer for {name!r} is not current at {at.isoformat()}")
        status = single.certificate_status
    except QuoteError:
        raise
    except Exception:  # ValueError and friends from a malformed answer
        raise QuoteError(f"OCSP answer for {name!r} is malformed") from None
    if status != ocsp.OCSPCertStatus.GOOD:
        raise QuoteError(f"certificate {name!r} is {status.name.lower()} (OCSP)")


def check_ocsp(certs: list[x509.Certificate], url: str, at: datetime) -> str:
    for cert, issuer in itertools.pairwise(certs):
        _ocsp_one(cert, issuer, url, at)
    return GOOD
