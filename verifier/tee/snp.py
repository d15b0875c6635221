"""The `snp` scheme (INTERIM): AMD SEV-SNP reports from configfs-tsm, binding only.

The ATTESTATION_REPORT is parsed enough to find its REPORT_DATA (at 0x50), which must
equal the expected binding. The report signature and its VCEK/ASK/ARK chain to AMD's
root are NOT checked: `hardware` is False with the reason "collateral verification not
configured". The collateral-checking module replaces this one.
"""

from __future__ import annotations

import struct
from datetime import datetime
from typing import Any

from bytereplay.errors import QuoteError
from verifier.tee.base import QuoteVerification, SchemeTrust, field_b64, same_bytes

KIND = "snp"
MAX_BLOB = 1 << 20
REASON_NO_COLLATERAL = "collateral verification not configured"

# AMD SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI specification, table "ATTESTATION_REPORT").
SNP_REPORT_LEN = 0x4A0
SNP_REPORT_DATA = 0x50
SNP_FIELDS = {"measurement": (0x90, 48), "host_data": (0xC0, 32), "id_key_digest": (0xE0, 48)}


def parse_snp(report: bytes) -> tuple[bytes, dict[str, str]]:
    """(report data, registers) from an SEV-SNP attestation report."""
    if len(report) < SNP_REPORT_LEN:
        raise QuoteError(f"SEV-SNP report is {len(report)} bytes; expected {SNP_REPORT_LEN}")
    (version,) = struct.unpack_from("<I", report, 0)
    if not 2 <= version <= 5:
        raise QuoteError(f"unsupported SEV-SNP report version {version}")
    regs = {f"snp.{k}": report[off: off + n].hex() for k, (off, n) in SNP_FIELDS.items()}
    return report[SNP_REPORT_DATA: SNP_REPORT_DATA + 64], regs


class SnpScheme:
    """The interim `QuoteVerifier`: report-data binding only."""

    kind = KIND

    def parse(self, quote: dict[str, Any]) -> tuple[bytes, dict[str, str]]:
        blob = field_b64(quote, "outblob")
        if len(blob) > MAX_BLOB:
            raise QuoteError("tsm outblob over 1 MiB")
        return parse_snp(blob)

    def verify(self, parsed: tuple[bytes, dict[str, str]], expected_report_data: bytes,
               trust: SchemeTrust, at: datetime) -> QuoteVerification:
        del trust, at  # no collateral is checked yet; see the module docstring
        report_data, regs = parsed
        if not same_bytes(report_data, expected_report_data):
            raise QuoteError("the sev-snp report data does not match SHA-512(nonce || record digest "
                             "|| evidence key thumbprint): the quote is not bound to this evidence")
        return QuoteVerification(
            provider="tsm", scheme=KIND, simulated=False, hardware=False, measurements=regs,
            report_data=report_data, chain_ok=False,
            reasons=(f"{REASON_NO_COLLATERAL}: the SEV-SNP report signature and its VCEK/ASK/ARK chain "
                     "to AMD's root were NOT checked",
                     "report data inside the sev-snp quote binds nonce, run record digest and "
                     "evidence key"),
        )


SCHEME = SnpScheme()
