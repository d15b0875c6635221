"""The `nvidia` scheme: NVIDIA confidential-computing GPU evidence (`attester.tee.nvidia`).

What is checked, honestly: the report starts with an SPDM GET_MEASUREMENTS request
(code 0xE0) whose nonce (bytes 4..36) equals SHA-256(expected report data), and the
quote's `gpu_nonce` says the same. The SPDM signature, the device certificate chain to
NVIDIA's root, the OCSP status and the reference integrity manifests (RIMs) are NOT
checked here: `hardware=False` with the reason "collateral verification not
configured". Hand the report to NVIDIA's verifier (nvTrust local verifier or NRAS) for
that.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from bytereplay.errors import QuoteError
from verifier.tee.base import QuoteVerification, SchemeTrust, field_b64, same_bytes

KIND = NAME = "nvidia"
SPDM_GET_MEASUREMENTS = 0xE0
NONCE_AT = slice(4, 36)
MAX_REPORT = 1 << 16
REASON_NO_COLLATERAL = "collateral verification not configured"


def gpu_nonce(report_data: bytes) -> bytes:
    """The 32-byte SPDM nonce the attester asked the GPU for: SHA-256(report data)."""
    return hashlib.sha256(report_data).digest()


def _verify(quote: dict[str, Any], expected_report_data: bytes) -> QuoteVerification:
    expected = gpu_nonce(expected_report_data)
    report = field_b64(quote, "attestation_report")
    if len(report) > MAX_REPORT or len(report) < NONCE_AT.stop + 1:
        raise QuoteError("the NVIDIA attestation report has an impossible length")
    if report[1] != SPDM_GET_MEASUREMENTS:
        raise QuoteError("the NVIDIA attestation report does not start with an SPDM "
                         "GET_MEASUREMENTS request")
    if not same_bytes(report[NONCE_AT], expected) or not same_bytes(
            field_b64(quote, "gpu_nonce"), expected):
        raise QuoteError("the GPU nonce does not match SHA-256 of the expected report data: "
                         "the GPU evidence is not bound to this evidence")
    return QuoteVerification(
        provider=NAME, scheme=KIND, simulated=False, hardware=False, measurements={},
        report_data=expected_report_data, chain_ok=False,
        reasons=(f"{REASON_NO_COLLATERAL}: the SPDM signature, the GPU certificate chain to "
                 "NVIDIA's root, OCSP and RIMs were NOT checked",
                 "the SPDM request nonce binds nonce, run record digest and evidence key"),
    )


class NvidiaScheme:
    """The `QuoteVerifier` of NVIDIA GPU evidence: the nonce binding only."""

    kind = KIND

    def parse(self, quote: dict[str, Any]) -> dict[str, Any]:
        return quote

    def verify(self, parsed: dict[str, Any], expected_report_data: bytes, trust: SchemeTrust,
               at: datetime) -> QuoteVerification:
        del trust, at  # NVIDIA collateral (RIMs, OCSP, device root) is not checked yet
        return _verify(parsed, expected_report_data)


SCHEME = NvidiaScheme()
