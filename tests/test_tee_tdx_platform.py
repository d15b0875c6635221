"""The remembered platform verdict (verifier/tee/tdx_platform.py) answers exactly as dcap-qvl.

Every comparison runs dcap-qvl itself on the same quote, collateral, root and time (the
slow path) beside `PlatformVerdicts` primed with another quote of the same platform (the
fast path), and requires the same TCB status and advisories, or the same refusal text.
The cases: the real samples, test-root quotes v4 and v5 with other report data, every
tamper case of tests/test_tee_tdx.py and tests/test_attacks_quotes.py, other platforms
and collateral, and both sides of every instant found in the inputs. Hits are counted,
so that a fast path which never runs cannot pass.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest
from cryptography.hazmat.primitives.serialization import Encoding
from tdx_test_root import TdxTestRoot
from test_attacks_quotes import TDX_CASES

from bytereplay.errors import QuoteError
from verifier.tee import tdx
from verifier.tee.tdx_collateral import TdxCollateral, parse_collateral
from verifier.tee.tdx_platform import (
    NotCacheable,
    PlatformVerdicts,
    cell,
    der_instants,
    instants,
    json_instants,
    pem_instants,
)

INTEL = Path(__file__).resolve().parent.parent / "fixtures" / "tee" / "intel"
AT = datetime(2025, 6, 19, 10, 32, 28, tzinfo=UTC)
SAMPLES = [  # (quote, collateral, time): an UpToDate one and two without a TCB level
    ("tdx_quote", "tdx_quote_collateral.json", AT),
    ("tdx_quote_outdated", "tdx_quote_outdated_collateral.json",
     datetime(2026, 2, 18, 10, 58, 52, tzinfo=UTC)),
    ("tdx_prod_quote_SPR_E4.dat", "tdx_prod_quote_SPR_E4.collateral.json",
     datetime(2023, 6, 18, 8, 42, 59, tzinfo=UTC)),
]
# Distinct times, so that certificates, CRLs and collateral each bound the cell.
SPREAD = dict(not_before=datetime(2025, 1, 1, tzinfo=UTC), not_after=datetime(2030, 1, 1, tzinfo=UTC),
              issued=datetime(2025, 6, 1, tzinfo=UTC), next_update=datetime(2027, 1, 1, tzinfo=UTC),
              crl_this_update=datetime(2025, 5, 1, tzinfo=UTC))


def _args(raw: bytes) -> tuple[bytes, int, int]:
    parsed = tdx.parse_quote_bytes(raw)
    return (parsed.raw, parsed.body_offset + len(parsed.body),
            parsed.body_offset + tdx.TD_FIELDS["report_data"][0])


def slow(raw: bytes, coll: TdxCollateral, root_der: bytes, now_s: int) -> tuple[Any, ...]:
    """dcap-qvl alone."""
    try:
        report = dcap_qvl.verify_with_root_ca(_args(raw)[0], coll.qvl, root_der, now_s)
    except ValueError as exc:
        return ("refused", str(exc))
    return ("ok", str(report.status), tuple(str(a) for a in report.advisory_ids))


def fast(verdicts: PlatformVerdicts, raw: bytes, coll: TdxCollateral, root_der: bytes,
         now_s: int) -> tuple[Any, ...]:
    try:
        status, advisories = verdicts.verify(*_args(raw), coll, root_der, now_s)
    except ValueError as exc:
        return ("refused", str(exc))
    return ("ok", status, advisories)


def primed(raw: bytes, coll: TdxCollateral, root_der: bytes, now_s: int) -> PlatformVerdicts:
    verdicts = PlatformVerdicts()
    assert fast(verdicts, raw, coll, root_der, now_s)[0] == "ok"
    assert verdicts.misses == 1 and len(verdicts._verdicts) == 1
    return verdicts


def _test_root(**kw: Any) -> tuple[TdxTestRoot, TdxCollateral, bytes]:
    root = TdxTestRoot(**kw)
    return root, parse_collateral(root.collateral), root.root_cert.public_bytes(Encoding.DER)


def _points(raw: bytes, coll: TdxCollateral, root_der: bytes) -> list[int]:
    parsed = tdx.parse_quote_bytes(raw)
    return instants(parsed.raw, parsed.body_offset + len(parsed.body), coll, root_der)


# -- real samples -------------------------------------------------------------------

@pytest.mark.parametrize(("quote", "collateral", "at"), SAMPLES)
def test_real_samples_on_both_sides_of_every_instant(quote: str, collateral: str, at: datetime) -> None:
    raw = (INTEL / quote).read_bytes()
    coll = parse_collateral((INTEL / collateral).read_text())
    root = tdx.intel_root_der()
    now = int(at.timestamp())
    expected = slow(raw, coll, root, now)
    verdicts = PlatformVerdicts()
    assert fast(verdicts, raw, coll, root, now) == expected
    if expected[0] == "refused":  # a refusal is never remembered
        assert not verdicts._verdicts and "No matching TCB level" in expected[1]
        assert fast(verdicts, raw, coll, root, now) == expected and verdicts.hits == 0
        return
    assert fast(verdicts, raw, coll, root, now + 1) == expected and verdicts.hits == 1
    points = _points(raw, coll, root)
    low, high = cell(points, now) or (0, 0)
    assert low < now < high and int(low) in points and int(high) in points
    for b in points:
        for s in (b - 1, b, b + 1):
            v = primed(raw, coll, root, now)
            assert fast(v, raw, coll, root, s) == slow(raw, coll, root, s), s
            assert v.hits == (1 if low < s < high else 0), s


def test_every_instant_of_the_real_sample_is_read() -> None:
    coll = parse_collateral((INTEL / "tdx_quote_collateral.json").read_text())
    points = _points((INTEL / "tdx_quote").read_bytes(), coll, tdx.intel_root_der())
    for part in ("tcb_info", "qe_identity", "pck_crl", "root_ca_crl"):  # what check_at reads
        assert int(coll.issued[part].timestamp()) in points
        assert int(coll.next_update[part].timestamp()) in points
    assert int(datetime(2049, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp()) in points  # root
    assert int(datetime(2024, 3, 13, tzinfo=UTC).timestamp()) in points  # a tcbDate


def _flips(raw: bytes) -> list[int]:
    parsed = tdx.parse_quote_bytes(raw)
    td = [parsed.body_offset + off + n // 2 for off, n in
          {**tdx.TD_FIELDS, **tdx.TD15_FIELDS}.values() if off + n <= len(parsed.body)]
    return sorted(set(td + list(range(0, len(parsed.raw), 11)) + [len(parsed.raw) - 1]))


@pytest.mark.parametrize(("quote", "collateral", "at"), SAMPLES[:1])
def test_a_flipped_byte_anywhere_in_the_real_quote(quote: str, collateral: str, at: datetime) -> None:
    raw = (INTEL / quote).read_bytes()
    coll = parse_collateral((INTEL / collateral).read_text())
    root, now = tdx.intel_root_der(), int(at.timestamp())
    verdicts = primed(raw, coll, root, now)
    compared = 0
    for offset in _flips(raw):
        bad = bytearray(raw)
        bad[offset] ^= 0xFF
        try:
            tdx.parse_quote_bytes(bytes(bad))
        except QuoteError:
            continue  # refused before dcap-qvl
        assert fast(verdicts, bytes(bad), coll, root, now) == slow(bytes(bad), coll, root, now), offset
        compared += 1
    assert compared > 400 and verdicts.hits == 0  # no changed quote got the remembered verdict
    assert fast(verdicts, raw, coll, root, now) == slow(raw, coll, root, now) and verdicts.hits == 1


# -- under the test root ---------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_another_quote_of_the_platform_is_one_signature_check(version: int) -> None:
    root, coll, der = _test_root()
    now = int(root.at.timestamp())
    verdicts = primed(root.quote(bytes(64), version=version), coll, der, now)
    for i in range(1, 6):
        quote = root.quote(bytes([i]) * 64, version=version)
        assert fast(verdicts, quote, coll, der, now + i) == slow(quote, coll, der, now + i)
    assert verdicts.hits == 5 and verdicts.misses == 1


def test_tcb_status_and_advisories_come_from_dcap_qvls_verdict() -> None:
    root, coll, der = _test_root(tcb_status="SWHardeningNeeded", advisories=("INTEL-SA-00615",))
    now = int(root.at.timestamp())
    verdicts = primed(root.quote(bytes(64)), coll, der, now)
    quote = root.quote(b"\x07" * 64)
    expected = ("ok", "SWHardeningNeeded", ("INTEL-SA-00615",))
    assert slow(quote, coll, der, now) == expected == fast(verdicts, quote, coll, der, now)
    assert verdicts.hits == 1


@pytest.mark.parametrize("case", sorted(TDX_CASES))
def test_attack_cases_answer_as_dcap_qvl(case: str) -> None:
    root, coll, der = _test_root()
    now = int(root.at.timestamp())
    verdicts = primed(root.quote(bytes(64)), coll, der, now)
    quote = TDX_CASES[case](root.quote(b"\x01" * 64))
    try:
        tdx.parse_quote_bytes(quote)
    except QuoteError:
        return  # refused by the parser, before dcap-qvl
    assert fast(verdicts, quote, coll, der, now) == slow(quote, coll, der, now)
    assert verdicts.hits == 0


@pytest.mark.parametrize("version", [4, 5])
def test_flipped_td_report_fields_and_a_debug_td(version: int) -> None:
    root, coll, der = _test_root()
    now = int(root.at.timestamp())
    genuine = root.quote(b"\x02" * 64, version=version)
    verdicts = primed(root.quote(bytes(64), version=version), coll, der, now)
    parsed = tdx.parse_quote_bytes(genuine)
    fields = {**tdx.TD_FIELDS, **tdx.TD15_FIELDS}.values()
    for off, n in [(off, n) for off, n in fields if off + n <= len(parsed.body)]:
        bad = bytearray(genuine)
        bad[parsed.body_offset + off + n // 2] ^= 0x01
        assert fast(verdicts, bytes(bad), coll, der, now) == slow(bytes(bad), coll, der, now)
    debug = root.quote(b"\x03" * 64, version=version, debug=True)  # validly signed, debug
    assert fast(verdicts, debug, coll, der, now) == slow(debug, coll, der, now)
    assert slow(debug, coll, der, now)[0] == "refused"
    assert verdicts.hits == 0


def test_other_platforms_roots_and_collateral_are_other_keys() -> None:
    root, coll, der = _test_root()
    now = int(root.at.timestamp())
    verdicts = primed(root.quote(bytes(64)), coll, der, now)
    other, other_coll, other_der = _test_root()
    quote = other.quote(bytes(64))  # another PCK key, attestation key and QE signature
    assert fast(verdicts, quote, coll, der, now) == slow(quote, coll, der, now)
    assert fast(verdicts, quote, other_coll, other_der, now) == slow(quote, other_coll, other_der, now)
    mine = root.quote(b"\x05" * 64)
    assert fast(verdicts, mine, coll, other_der, now) == slow(mine, coll, other_der, now)
    reissued = parse_collateral(root.collateral_at(issued=datetime(2025, 2, 1, tzinfo=UTC),
                                                   next_update=datetime(2044, 1, 1, tzinfo=UTC)))
    assert fast(verdicts, mine, reissued, der, now) == slow(mine, reissued, der, now)
    assert verdicts.hits == 0


def test_both_sides_of_every_instant_under_the_test_root() -> None:
    root, coll, der = _test_root(**SPREAD)
    quote, other = root.quote(bytes(64)), root.quote(b"\x09" * 64)
    now = int(root.at.timestamp())
    points = _points(quote, coll, der)
    for t in SPREAD.values():
        assert int(t.timestamp()) in points
    low, high = cell(points, now) or (0, 0)
    assert (low, high) == (SPREAD["issued"].timestamp(), SPREAD["next_update"].timestamp())
    outcomes = set()
    for s in sorted({p + d for p in points for d in (-1, 0, 1)} | {0, 2**40}):
        v = primed(quote, coll, der, now)
        answer = fast(v, other, coll, der, s)
        assert answer == slow(other, coll, der, s), s
        assert v.hits == (1 if low < s < high else 0), s
        outcomes.add(answer[0] if answer[0] == "ok" else answer[1])
    assert len(outcomes) > 3, outcomes  # the instants do bound different answers of dcap-qvl


def _timeless(answer: tuple[Any, ...]) -> tuple[Any, ...]:
    """A refusal names the verification time; all else is the answer."""
    return answer[:1] + tuple(re.sub(r"time: UnixTime\(\d+\)", "time: T", a) if isinstance(a, str)
                              else a for a in answer[1:])


def test_dcap_qvl_answers_the_same_throughout_each_cell() -> None:
    """The premise, checked: between two neighbouring instants dcap-qvl never changes
    its answer (at the first, middle and last second of every cell; a refusal's text
    names the time it was asked at, and refusals are never remembered)."""
    root, coll, der = _test_root(**SPREAD)
    quote = root.quote(bytes(64))
    points = _points(quote, coll, der)
    for low, high in itertools.pairwise(points):
        if high - low < 2:
            continue
        seen = {_timeless(slow(quote, coll, der, s)) for s in (low + 1, (low + high) // 2, high - 1)}
        assert len(seen) == 1, (low, high, seen)


def test_a_success_at_an_instant_is_not_remembered_and_switching_off() -> None:
    root, coll, der = _test_root(**SPREAD)
    quote = root.quote(bytes(64))
    at_instant = int(SPREAD["issued"].timestamp())
    verdicts = PlatformVerdicts()
    assert fast(verdicts, quote, coll, der, at_instant) == slow(quote, coll, der, at_instant)
    assert not verdicts._verdicts
    off = PlatformVerdicts(enabled=False)
    now = int(root.at.timestamp())
    for _ in range(3):
        assert fast(off, quote, coll, der, now)[0] == "ok"
    assert (off.hits, off.misses, off._verdicts) == (0, 3, {})


def test_the_cache_is_bounded() -> None:
    root, coll, der = _test_root()
    now = int(root.at.timestamp())
    verdicts = PlatformVerdicts(max_entries=2)
    for i in range(5):  # other MRTD bytes make other keys: each one verified by dcap-qvl
        q = bytearray(root.quote(bytes(64)))
        q[48 + 136] ^= i  # breaks the signature from i = 1: refusals are never kept
        fast(verdicts, bytes(q), coll, der, now)
    assert len(verdicts._verdicts) <= 2


# -- reading instants -------------------------------------------------------------------

def test_der_instants_reads_times_and_refuses_what_is_not_der() -> None:
    out: set[int] = set()
    der_instants(bytes.fromhex("170d3235303130313030303030305a"), out)  # UTCTime 250101000000Z
    assert out == {int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())}
    out.clear()
    der_instants(b"\x18\x11" + b"20250101000000.5Z", out)  # a fraction: both whole seconds
    base = int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())
    assert out == {base, base + 1}
    for bad in (b"\x30", b"\x30\x05\x01", b"\x17\x03abc", b"\x30\x80\x00\x00", b"\x1f"):
        with pytest.raises(NotCacheable):
            der_instants(bad, set())


def test_pem_and_json_instants() -> None:
    out: set[int] = set()
    json_instants({"a": ["2025-01-01T00:00:00Z", {"b": "2025-01-01T01:00:00+01:00"}], "n": 3}, out)
    assert out == {int(datetime(2025, 1, 1, tzinfo=UTC).timestamp())}
    with pytest.raises(NotCacheable):
        json_instants({"issueDate": "2025-13-01T00:00:00Z"}, set())
    with pytest.raises(NotCacheable):
        json_instants(["2025-01-01"], set())
    with pytest.raises(NotCacheable):
        pem_instants(b"-----BEGIN CERTIFICATE-----\nAAAA", set())
    with pytest.raises(NotCacheable):
        pem_instants(b"-----BEGIN X-----\n!!!!\n-----END X-----", set())
    assert cell([10, 20], 10) is None and cell([10, 20], 15) == (10, 20)
    assert cell([], 5) == (float("-inf"), float("inf"))


def test_unreadable_instants_are_never_remembered() -> None:
    """A QE identity TCB date that is not RFC 3339 (dcap-qvl does not read it): the
    verdict stands, but is not remembered, since not every instant could be read."""
    root = TdxTestRoot()
    signed = root.qe_identity
    root.qe_identity = lambda: signed().replace(  # type: ignore[method-assign]
        '"tcbDate":"2024-03-13T00:00:00Z"', '"tcbDate":"2024-03-13"')
    coll = parse_collateral(root._collateral())
    der = root.root_cert.public_bytes(Encoding.DER)
    now = int(root.at.timestamp())
    raw = root.quote(bytes(64))
    verdicts = PlatformVerdicts()
    assert slow(raw, coll, der, now) == ("ok", "UpToDate", ()) == fast(verdicts, raw, coll, der, now)
    assert not verdicts._verdicts
    assert fast(verdicts, raw, coll, der, now) == ("ok", "UpToDate", ()) and verdicts.hits == 0
