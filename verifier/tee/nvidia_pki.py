"""The two NVIDIA trust anchors shipped in `verifier/tee/nvidia_roots/` and the one
certificate-link check both chains use (the GPU device chain in `verifier.tee.nvidia`, the
RIM signing chain in `verifier.tee.nvidia_rim`).

`pinned_root(file, sha256, what)` loads a shipped root and refuses it (RuntimeError: the
package itself is wrong) unless its DER SHA-256 is the pinned one; `signed_by(child,
parent)` says whether `parent` (an EC key) issued and signed `child`; `check_links(certs,
at, what)` refuses a chain (leaf first) with a certificate outside its validity at `at`
or a link that `signed_by` does not hold, naming the certificate or the position.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from datetime import datetime
from importlib import resources

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bytereplay.errors import QuoteError


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
