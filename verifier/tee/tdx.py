"""The `tdx` scheme (INTERIM): Intel TDX quotes v4/v5 from configfs-tsm, binding only.

The quote is parsed enough to find its report data (TD quote body at offset 48 (v4) or
54 (v5), REPORTDATA at body offset 520) and that report data must equal the expected
binding. The quote signature and its PCK chain to Intel's root (collateral: TCB info,
QE identity) are NOT checked: `hardware` is False with the reason "collateral
verification not configured". The collateral-checking module replaces this one.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any

from bytereplay.errors import QuoteError
from verifier.tee.base import QuoteVerification, SchemeTrust, field_b64, same_bytes

KIND = "tdx"
MAX_BLOB = 1 << 20
REASON_NO_COLLATERAL = "collateral verification not configured"

# Intel TDX DCAP quote, v4 and v5 (Intel TDX DCAP Quoting Library API, appendix A).
TDX_HEADER_LEN = 48
TDX_TEE_TYPE = 0x00000081
TDX_BODY_LEN = 584
TDX_FIELDS = {  # offsets inside the TD quote body (TD 1.0 layout; TD 1.5 appends fields)
    "mrtd": (136, 48), "mrconfigid": (184, 48), "mrowner": (232, 48),
    "mrownerconfig": (280, 48), "rtmr0": (328, 48), "rtmr1": (376, 48),
    "rtmr2": (424, 48), "rtmr3": (472, 48),
}
TDX_REPORT_DATA = 520


def parse_tdx(quote: bytes) -> tuple[bytes, dict[str, str]]:
    """(report data, registers) from a TDX DCAP quote v4 or v5."""
    if len(quote) < TDX_HEADER_LEN:
        raise QuoteError("TDX quote shorter than its 48-byte header")
    version, _key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if tee_type != TDX_TEE_TYPE:
        raise QuoteError(f"not a TDX quote (TEE type {tee_type:#x}, expected {TDX_TEE_TYPE:#x})")
    if version == 4:
        body = TDX_HEADER_LEN
    elif version == 5:
        if len(quote) < TDX_HEADER_LEN + 6:
            raise QuoteError("TDX quote v5 truncated before its body descriptor")
        body_type, body_size = struct.unpack_from("<HI", quote, TDX_HEADER_LEN)
        if body_type not in (2, 3) or body_size < TDX_BODY_LEN:
            raise QuoteError(f"TDX quote v5 body type {body_type} is not a TD report")
        body = TDX_HEADER_LEN + 6
    else:
        raise QuoteError(f"unsupported TDX quote version {version}")
    if len(quote) < body + TDX_BODY_LEN:
        raise QuoteError("TDX quote truncated inside the TD quote body")
    regs = {f"tdx.{k}": quote[body + off: body + off + n].hex() for k, (off, n) in TDX_FIELDS.items()}
    return quote[body + TDX_REPORT_DATA: body + TDX_REPORT_DATA + 64], regs


class TdxScheme:
    """The interim `QuoteVerifier`: report-data binding only."""

    kind = KIND

    def parse(self, quote: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        blob = field_b64(quote, "outblob")
        if len(blob) > MAX_BLOB:
            raise QuoteError("tsm outblob over 1 MiB")
        return parse_tdx(blob)

    def verify(self, parsed: tuple[bytes, dict[str, str]], expected_report_data: bytes,
               trust: SchemeTrust, at: datetime) -> QuoteVerification:
        del trust, at  # no collateral is checked yet; see the module docstring
        report_data, regs = parsed
        if not same_bytes(report_data, expected_report_data):
            raise QuoteError("the tdx report data does not match SHA-512(nonce || record digest "
                             "|| evidence key thumbprint): the quote is not bound to this evidence")
        return QuoteVerification(
            provider="tsm", scheme=KIND, simulated=False, hardware=False, measurements=regs,
            report_data=report_data, chain_ok=False,
            reasons=(f"{REASON_NO_COLLATERAL}: the TDX quote signature and its PCK chain to Intel's "
                     "root were NOT checked",
                     "report data inside the tdx quote binds nonce, run record digest and "
                     "evidence key"),
        )


SCHEME = TdxScheme()
