"""The TEE quote provider interface and the one verification entry point.

A provider produces a *quote*: a JSON-ready dict that binds 64 bytes of report data
(`bytereplay.eat.report_data(nonce, record_digest, key_thumbprint)`) to a platform.
Every quote carries at least `provider` (its name) and `simulated` (bool).

The verifier imports `verify_quote` from here (the verifier imports the attester,
never the reverse) and passes the trust anchors it is configured with in a
`QuoteTrust`. `verify_quote` never trusts anything the quote brings along by itself:
certificate chains are checked against configured anchors, and where the
collateral to check real hardware evidence is not configured, the result says so
(`hardware=False` with a reason) instead of pretending.

Refusals raise `bytereplay.errors.QuoteError`; a provider that cannot run on this
machine raises `bytereplay.errors.ProviderUnavailable`.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from bytereplay.encoding import b64url_decode
from bytereplay.errors import BytereplayError, QuoteError

REPORT_DATA_LEN = 64
PROVIDERS = ("simulated", "tsm", "nvidia")
REASON_NO_COLLATERAL = "collateral verification not configured"


@runtime_checkable
class QuoteProvider(Protocol):
    """What the attester needs from a TEE: a name and a quote over 64 bytes of report data."""

    @property
    def name(self) -> str: ...

    @property
    def simulated(self) -> bool: ...

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        """A JSON-ready quote claim binding `report_data`; `measurements` are the
        software measurement registers (container digest, model digest, runtime)."""
        ...


@dataclass(frozen=True)
class QuoteTrust:
    """Trust anchors the verifier is configured with.

    - `simulated_cas`: PEM certificates of simulated platform CAs to accept. Empty
      means simulated quotes are refused.
    - `accept_tsm` / `accept_nvidia`: whether to accept those quotes at all. Their
      hardware signatures are checked only with vendor collateral, which is not
      implemented yet: without it the binding is checked and `hardware` is False.
    - `now`: the time to check certificate validity at (tests); None means now.
    """

    simulated_cas: tuple[str, ...] = ()
    accept_tsm: bool = True
    accept_nvidia: bool = True
    now: datetime | None = None


@dataclass(frozen=True)
class QuoteVerification:
    """What a quote showed.

    - `hardware`: True only when real hardware evidence was verified to a vendor root.
    - `chain_ok`: the quote's signature chains to a configured anchor (simulated CA),
      False where no chain was checked.
    - `measurements`: registers the quote asserts (for simulated: the signed
      container/model/runtime digests; for tsm: MRTD/RTMRs or the SNP measurement
      read from the report; for nvidia: none).
    - `reasons`: what was and was not checked, in words, for the attestation result.
    """

    provider: str
    simulated: bool
    hardware: bool
    measurements: dict[str, str]
    report_data: bytes
    chain_ok: bool
    reasons: tuple[str, ...] = field(default=())


def require_report_data(report_data: bytes) -> bytes:
    if not isinstance(report_data, bytes) or len(report_data) != REPORT_DATA_LEN:
        raise QuoteError(f"report data must be {REPORT_DATA_LEN} bytes")
    return report_data


def same_bytes(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def field_str(quote: dict[str, Any], name: str) -> str:
    value = quote.get(name)
    if not isinstance(value, str):
        raise QuoteError(f"quote field {name!r} is missing or not text")
    return value


def field_b64(quote: dict[str, Any], name: str) -> bytes:
    text = field_str(quote, name)
    try:
        return b64url_decode(text)
    except BytereplayError:
        raise QuoteError(f"quote field {name!r} is not unpadded base64url") from None


def verify_quote(quote: Any, trust: QuoteTrust, expected_report_data: bytes) -> QuoteVerification:
    """Verify `quote` against `trust` and check that it binds `expected_report_data`.

    Raises `QuoteError` on any refusal, with a message that says what failed.
    """
    require_report_data(expected_report_data)
    if not isinstance(quote, dict):
        raise QuoteError("a quote is a JSON object")
    provider = quote.get("provider")
    simulated = quote.get("simulated")
    if not isinstance(simulated, bool):
        raise QuoteError("quote field 'simulated' is missing or not a boolean")
    if provider == "simulated":
        from attester.tee import simulated as sim

        return sim.verify(quote, trust, expected_report_data)
    if simulated:
        raise QuoteError(f"a {provider!r} quote that calls itself simulated is refused")
    if provider == "tsm":
        if not trust.accept_tsm:
            raise QuoteError("tsm quotes are not accepted by this verifier's configuration")
        from attester.tee import tsm

        return tsm.verify(quote, trust, expected_report_data)
    if provider == "nvidia":
        if not trust.accept_nvidia:
            raise QuoteError("nvidia quotes are not accepted by this verifier's configuration")
        from attester.tee import nvidia

        return nvidia.verify(quote, trust, expected_report_data)
    raise QuoteError(f"unknown quote provider {provider!r}; known: {list(PROVIDERS)}")
