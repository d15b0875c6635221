"""Fuzz Intel TDX quote verification: `verifier.tee.tdx` (parse, collateral, dcap-qvl).

Inputs run at the real sample's fixed time (2025-06-19T10:32:28Z) under Intel's pinned
root with the sample's collateral, so a mutated quote can reach dcap-qvl's checks.

Crash: any exception other than a `BytereplayError`; a quote accepted whose signed
region (header and TD report) differs from the genuine sample's; a quote accepted with
collateral that is not the genuine collateral's content or is not fresh.
"""

from __future__ import annotations

import json
import struct
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.tee", "bytereplay"]):
    from bytereplay.encoding import b64url_encode, strict_json_loads
    from verifier.tee.base import SchemeTrust
    from verifier.tee.tdx import SCHEME, parse_quote_bytes, verify_quote_bytes
    from verifier.tee.tdx_collateral import parse_collateral

INTEL = harness.REPO / "fixtures" / "tee" / "intel"
QUOTE = (INTEL / "tdx_quote").read_bytes()
QUOTE_V5 = (INTEL / "tdx_quote_outdated").read_bytes()
COLLATERAL_TEXT = (INTEL / "tdx_quote_collateral.json").read_text()
COLLATERAL_OBJ = json.loads(COLLATERAL_TEXT)
COLLATERAL = parse_collateral(COLLATERAL_TEXT)
AT = datetime(2025, 6, 19, 10, 32, 28, tzinfo=UTC)
TRUST = SchemeTrust(configured=True)
SIGNED = QUOTE[:48 + 584]
REPORT_DATA = parse_quote_bytes(QUOTE).report_data
KEYS = sorted(COLLATERAL_OBJ)


def _accepted_signed_region(quote: bytes) -> None:
    assert quote[:48 + 584] == SIGNED, "tdx quote accepted with a changed signed region"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 5, data[1:]
    if mode == 0:  # raw bytes as a quote, with the genuine collateral
        verify_quote_bytes(body, TRUST, AT, collateral=COLLATERAL)
        _accepted_signed_region(body)
    elif mode == 1:  # the genuine quote with bytes overwritten at an offset
        fdp = atheris.FuzzedDataProvider(body)
        base = QUOTE if fdp.ConsumeBool() else QUOTE_V5
        at = fdp.ConsumeIntInRange(0, len(base) - 1)
        patch = fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 8))
        quote = base[:at] + patch + base[at + len(patch):]
        if fdp.ConsumeBool():
            quote = quote[: fdp.ConsumeIntInRange(0, len(quote))]
        verify_quote_bytes(quote, TRUST, AT, collateral=COLLATERAL)
        _accepted_signed_region(quote)
    elif mode == 2:  # a tsm quote object as JSON
        quote = strict_json_loads(body)
        result = SCHEME.verify(SCHEME.parse(quote), REPORT_DATA, TRUST, AT)
        assert result.report_data == REPORT_DATA, "tdx quote accepted with other report data"
    elif mode == 3:  # the genuine quote with one collateral field replaced
        fdp = atheris.FuzzedDataProvider(body)
        name = KEYS[fdp.ConsumeIntInRange(0, len(KEYS) - 1)]
        value = fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 4096))
        collateral = {**COLLATERAL_OBJ, name: value}
        quote = {"provider": "tsm", "simulated": False, "tee": "tdx",
                 "outblob": b64url_encode(QUOTE), "collateral": collateral}
        SCHEME.verify(SCHEME.parse(quote), REPORT_DATA, TRUST, AT)
        assert parse_collateral(collateral).fresh_at(AT), "stale tdx collateral accepted"
    else:  # collateral as raw JSON text
        verify_quote_bytes(QUOTE, TRUST, AT, collateral=body)


def seeds() -> list[bytes]:
    v5 = bytearray(QUOTE_V5)
    struct.pack_into("<I", v5, 50, 584)
    return [
        b"\x00" + QUOTE, b"\x00" + QUOTE_V5, b"\x00" + QUOTE[:700], b"\x00" + bytes(v5),
        b"\x01" + bytes(range(40)),
        b"\x02" + json.dumps({"provider": "tsm", "simulated": False, "tee": "tdx",
                              "outblob": b64url_encode(QUOTE),
                              "collateral": COLLATERAL_OBJ}).encode(),
        b"\x03" + bytes(64),
        b"\x04" + COLLATERAL_TEXT.encode(),
    ]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
