"""The TEE quote provider interface: capture only.

A provider produces a *quote*: a JSON-ready dict that binds 64 bytes of report data
(`bytereplay.eat.report_data(nonce, record_digest, key_thumbprint)`) to a platform.
Every quote carries at least `provider` (its name) and `simulated` (bool).

Checking quotes is the verifier's (`verifier.tee`: one scheme per TEE). A provider that
cannot run on this machine raises `bytereplay.errors.ProviderUnavailable`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from bytereplay.errors import QuoteError

REPORT_DATA_LEN = 64
PROVIDERS = ("simulated", "tsm", "nvidia")


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


def require_report_data(report_data: bytes) -> bytes:
    if not isinstance(report_data, bytes) or len(report_data) != REPORT_DATA_LEN:
        raise QuoteError(f"report data must be {REPORT_DATA_LEN} bytes")
    return report_data
