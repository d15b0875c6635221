"""Quote trust and Evidence checks for tests: the verifier's own functions, put together
the way the pipeline puts them (`verifier.pipeline`), without its store or policy."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bytereplay.errors import QuoteError
from bytereplay.evidence import MAX_EVIDENCE_BYTES, DecodedEvidence, decode_evidence
from verifier.pipeline import measurement_differences
from verifier.tee.base import QuoteVerification, SchemeTrust, verify_quote

Trusts = dict[str, SchemeTrust]


def sim_trusts(*pems: str) -> Trusts:
    """Trust in simulated quotes under these CAs (none: simulated quotes are refused)."""
    return {"simulated": SchemeTrust(configured=True, roots=tuple(pems))}


def all_trusts(*pems: str) -> Trusts:
    """As `sim_trusts`, and every real scheme configured (with no collateral)."""
    return {**sim_trusts(*pems), **{k: SchemeTrust(configured=True)
                                    for k in ("tdx", "snp", "nvidia")}}


def verify(quote: Any, trusts: Trusts, report_data: bytes,
           at: datetime | None = None) -> QuoteVerification:
    """`verify_quote` at `at` (default: now; the simulated certificates are made now)."""
    return verify_quote(quote, trusts, report_data, at or datetime.now(UTC))


@dataclass(frozen=True)
class VerifiedEvidence:
    evidence: DecodedEvidence
    quote: QuoteVerification


def verify_evidence(data: bytes | str, trusts: Trusts, fmt: str | None = None, *,
                    max_bytes: int = MAX_EVIDENCE_BYTES) -> VerifiedEvidence:
    """Decode, then the quote and its binding, then the measurement registers."""
    decoded = decode_evidence(data, fmt, max_bytes=max_bytes)
    result = verify(decoded.quote, trusts, decoded.expected_report_data)
    if measurement_differences(result, decoded):
        raise QuoteError("the quote's measurement registers differ from the Evidence's measurements")
    return VerifiedEvidence(evidence=decoded, quote=result)
