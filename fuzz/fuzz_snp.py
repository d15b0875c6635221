"""Fuzz AMD SEV-SNP verification: `verifier.tee.snp` and `verifier.tee.snp_certs`.

Modes (first byte): raw or hex report parsing and `looks_like_snp`; a real report
(fixtures/tee/amd/report_milan.hex) with fuzzed bytes XORed in, verified against the
pinned Milan chain at 2025-06-01; a tsm quote whose certificate table (`auxblob`) is
fuzzed; the certificate table parser alone.

Crash: any exception other than a `BytereplayError`; `looks_like_snp` raising or
disagreeing with `parse_report`; a changed report accepted whose signed bytes differ
from the genuine ones.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.tee", "bytereplay"]):
    from bytereplay.encoding import b64url_encode
    from bytereplay.errors import BytereplayError
    from verifier.tee import snp, snp_certs
    from verifier.tee.base import SchemeTrust

AMD = harness.REPO / "fixtures" / "tee" / "amd"
AT = datetime(2025, 6, 1, tzinfo=UTC)
REPORT = snp.parse_report((AMD / "report_milan.hex").read_bytes()).raw
VCEK = (AMD / "vcek_milan.der").read_bytes()
TRUST = SchemeTrust(configured=True, min_tcb={"Milan": {"bl": 0, "tee": 0, "snp": 0, "ucode": 0}})
TABLE = snp_certs.build_cert_table({snp_certs.VCEK_GUID: VCEK})


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    if mode == 0:
        looks = snp.looks_like_snp(body)
        try:
            snp.parse_report(body)
        except BytereplayError:
            assert not looks, "looks_like_snp says yes but parse_report refuses"
            raise
        assert looks, "looks_like_snp says no but parse_report accepts"
    elif mode == 1:  # a genuine report with fuzzed bytes XORed in at an offset
        fdp = atheris.FuzzedDataProvider(body)
        at = fdp.ConsumeIntInRange(0, snp.REPORT_LEN - 1)
        patch = fdp.ConsumeBytes(64)
        raw = bytearray(REPORT)
        for i, b in enumerate(patch[: snp.REPORT_LEN - at]):
            raw[at + i] ^= b
        snp.verify_report(bytes(raw), TRUST, AT, certs=[VCEK])
        assert bytes(raw[: snp.SIGNED_LEN]) == REPORT[: snp.SIGNED_LEN], \
            "changed signed bytes accepted"
    elif mode == 2:  # a tsm quote whose certificate table is fuzzed
        quote = {"provider": "tsm", "simulated": False, "tee": "sev-snp",
                 "outblob": b64url_encode(REPORT), "auxblob": b64url_encode(body)}
        parsed = snp.SCHEME.parse(quote)
        snp.SCHEME.verify(parsed, REPORT[0x50:0x90], TRUST, AT)
    else:
        table = snp_certs.parse_cert_table(body)
        for cert in table.all():
            assert cert in body, "a certificate that is not in the table"


def seeds() -> list[bytes]:
    return [b"\x00" + REPORT, b"\x00" + REPORT.hex().encode(), b"\x01" + bytes(8),
            b"\x01\x90\x00\x01", b"\x02" + TABLE, b"\x03" + TABLE, b"\x03" + bytes(24)]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
