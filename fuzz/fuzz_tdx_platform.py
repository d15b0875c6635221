"""Fuzz the remembered TDX platform verdict (`verifier.tee.tdx_platform`) against dcap-qvl.

Modes: the instant readers on raw input (DER, PEM, JSON); and, differentially, the real
`fixtures/tee/intel/tdx_quote` with bytes overwritten at an offset, verified at a time
near the sample's, once by `PlatformVerdicts` (primed with the genuine quote at the
sample's time, so that its remembered verdict is tried) and once by dcap-qvl alone.

Crash: any exception from the readers other than `NotCacheable`; any answer of
`PlatformVerdicts` (status and advisories, or refusal text) other than dcap-qvl's.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.tee"]):
    import dcap_qvl

    from bytereplay.errors import QuoteError
    from verifier.tee.tdx import TD_FIELDS, intel_root_der, parse_quote_bytes
    from verifier.tee.tdx_collateral import parse_collateral
    from verifier.tee.tdx_platform import (
        NotCacheable,
        PlatformVerdicts,
        der_instants,
        json_instants,
        pem_instants,
    )

INTEL = harness.REPO / "fixtures" / "tee" / "intel"
QUOTE = (INTEL / "tdx_quote").read_bytes()
COLLATERAL = parse_collateral((INTEL / "tdx_quote_collateral.json").read_text())
ROOT = intel_root_der()
AT = int(datetime(2025, 6, 19, 10, 32, 28, tzinfo=UTC).timestamp())
VERDICTS = PlatformVerdicts()


def _answer(fn: object, *args: object) -> tuple[object, ...]:
    try:
        status, advisories = fn(*args)  # type: ignore[operator]
    except ValueError as exc:
        return ("refused", str(exc))
    return ("ok", status, advisories)


def _slow(raw: bytes, now: int) -> tuple[str, tuple[str, ...]]:
    report = dcap_qvl.verify_with_root_ca(raw, COLLATERAL.qvl, ROOT, now)
    return str(report.status), tuple(str(a) for a in report.advisory_ids)


def differential(quote: bytes, now: int) -> None:
    try:
        parsed = parse_quote_bytes(quote)
    except QuoteError:
        return
    signed = parsed.body_offset + len(parsed.body)
    rd = parsed.body_offset + TD_FIELDS["report_data"][0]
    fast = _answer(VERDICTS.verify, parsed.raw, signed, rd, COLLATERAL, ROOT, now)
    slow = _answer(_slow, parsed.raw, now)
    assert fast == slow, f"platform verdict differs from dcap-qvl: {fast} != {slow}"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    try:
        if mode == 0:
            der_instants(body, set())
            return
        if mode == 1:
            pem_instants(body, set())
            return
        if mode == 2:
            try:
                value = json.loads(body)
            except (ValueError, RecursionError):
                return
            json_instants(value, set())
            return
    except NotCacheable:
        return
    except RecursionError:
        return  # json_instants on a deeply nested value: Python's own limit
    fdp = atheris.FuzzedDataProvider(body)
    at = fdp.ConsumeIntInRange(0, len(QUOTE) - 1)
    patch = fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))
    now = AT + fdp.ConsumeIntInRange(-400_000_000, 400_000_000) * (fdp.ConsumeIntInRange(0, 1))
    if VERDICTS.misses == 0:
        differential(QUOTE, AT)  # prime: the genuine quote's verdict is remembered
    differential(QUOTE[:at] + patch + QUOTE[at + len(patch):], now)


def seeds() -> list[bytes]:
    tcb = json.loads(COLLATERAL.text)["tcb_info"]
    chain = json.loads(COLLATERAL.text)["pck_crl_issuer_chain"]
    return [
        b"\x00" + ROOT, b"\x00" + bytes.fromhex(json.loads(COLLATERAL.text)["pck_crl"]),
        b"\x01" + chain.encode(), b"\x02" + tcb.encode(),
        b"\x03" + bytes(16), b"\x03\x00\x02\x02" + bytes(12),
    ]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
