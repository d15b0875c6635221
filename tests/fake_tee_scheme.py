"""A fake TEE scheme, `fake`: all it takes to add a scheme is this one module.

The attester side (`FakeProvider`) writes a quote that carries the report data in the
clear; the verifier side (`SCHEME`, a `verifier.tee.base.QuoteVerifier`) checks only
that binding. Register it in one place: `verifier.tee.base.register(SCHEME)`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bytereplay.encoding import b64url_encode
from bytereplay.errors import QuoteError
from verifier.tee.base import QuoteVerification, SchemeTrust, field_b64, same_bytes

KIND = "fake"


class FakeProvider:
    """The attester's half: a quote binding the report data, signed by nobody."""

    name = KIND
    simulated = False

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        return {"provider": KIND, "simulated": False, "report_data": b64url_encode(report_data),
                "software_measurements": dict(measurements)}


class FakeScheme:
    kind = KIND

    def parse(self, quote: dict[str, Any]) -> bytes:
        return field_b64(quote, "report_data")

    def verify(self, parsed: bytes, expected_report_data: bytes, trust: SchemeTrust,
               at: datetime) -> QuoteVerification:
        if not same_bytes(parsed, expected_report_data):
            raise QuoteError("the fake quote is not bound to this evidence")
        return QuoteVerification(
            provider=KIND, scheme=KIND, simulated=False, hardware=False, measurements={},
            report_data=parsed, chain_ok=False, reasons=("fake TEE: the binding only",),
            claims={"checked_at": at.isoformat()})


SCHEME = FakeScheme()
