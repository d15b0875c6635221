"""Intel TDX verification (verifier/tee/tdx.py) on real samples and under a TEST ROOT.

Real samples (fixtures/tee/intel, see its ORIGINS.md) prove the real-world parsing and
chains, each at the fixed time its origin table gives; `tests/tdx_test_root.py` builds
quotes under a TEST ROOT (not Intel) to prove binding, debug, TCB policy and collateral
times. No test reads the wall clock for validity; the only network is loopback.
"""

from __future__ import annotations

import json
import shutil
import struct
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dcap_qvl
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from loopback_pcs import LoopbackPcs
from tdx_test_root import TdxTestRoot

from bytereplay.encoding import b64url_encode
from bytereplay.errors import QuoteError
from bytereplay.tdx_collateral import quote_fmspc_and_ca
from verifier.tee import base, tdx, tdx_collateral
from verifier.tee.base import SchemeTrust

INTEL = Path(__file__).resolve().parent.parent / "fixtures" / "tee" / "intel"
QUOTE = INTEL / "tdx_quote"
COLLATERAL = INTEL / "tdx_quote_collateral.json"
AT = datetime(2025, 6, 19, 10, 32, 28, tzinfo=UTC)
EXPIRY = datetime(2025, 7, 19, 10, 0, 35, tzinfo=UTC)
FMSPC = "B0C06F000000"
INTEL_TRUST = SchemeTrust(configured=True)
MEASUREMENT_KEYS = {f"tdx.{n}" for n in ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid",
                                          "mrowner", "mrownerconfig")}
NONCE_BINDING = bytes(range(64))


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _tsm(quote: bytes, collateral: Any = None) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": "tsm", "simulated": False, "tee": "tdx",
                           "outblob": b64url_encode(quote)}
    if collateral is not None:
        out["collateral"] = collateral
    return out


@pytest.fixture(scope="module")
def root() -> TdxTestRoot:
    return TdxTestRoot()


@pytest.fixture(autouse=True)
def _fresh_sources() -> Iterator[None]:
    tdx_collateral._SOURCES.clear()
    yield
    tdx_collateral._SOURCES.clear()


# -- real samples -------------------------------------------------------------------

def test_intel_tdx_quote_verifies_up_to_date_at_its_time() -> None:
    raw = QUOTE.read_bytes()
    result = tdx.verify_quote_bytes(raw, INTEL_TRUST, AT, collateral=COLLATERAL.read_text())
    assert result.hardware and result.chain_ok and not result.simulated
    assert (result.scheme, result.provider, result.root) == ("tdx", "tsm", "Intel SGX Root CA")
    assert result.tcb_status == "UpToDate" and result.advisories == ()
    assert result.collateral == {"issued": "2025-06-19T10:32:27Z",
                                 "next_update": "2025-07-19T10:00:35Z"}
    assert set(result.measurements) == MEASUREMENT_KEYS
    parsed = dcap_qvl.parse_quote(raw).report
    assert result.measurements["tdx.mrtd"] == parsed.mr_td.hex()
    assert result.measurements["tdx.rtmr3"] == parsed.rt_mr3.hex()
    assert result.report_data == parsed.report_data
    claims = result.claims
    assert claims["tdx.fmspc"] == FMSPC and claims["tdx.tcb_status"] == "UpToDate"
    assert claims["tdx.td_attributes"] == parsed.td_attributes.hex()
    assert claims["tdx.xfam"] == parsed.xfam.hex()
    assert claims["tdx.advisory_ids"] == [] and claims["tdx.quote_version"] == 4
    assert claims["tdx.collateral"]["pck_crl_issued"] == "2025-06-19T10:00:35Z"
    json.dumps(claims)  # JSON-ready


def test_tsm_quote_object_through_the_registry_with_its_binding() -> None:
    raw = QUOTE.read_bytes()
    quote = _tsm(raw, json.loads(COLLATERAL.read_text()))
    assert base.scheme_for("tdx") is tdx.SCHEME
    assert isinstance(tdx.SCHEME, base.QuoteVerifier)
    report_data = tdx.parse_quote_bytes(raw).report_data
    result = base.verify_quote(quote, {"tdx": INTEL_TRUST}, report_data, AT)
    assert result.hardware and any("binds nonce" in r for r in result.reasons)
    with pytest.raises(QuoteError, match="not bound to this evidence"):
        base.verify_quote(quote, {"tdx": INTEL_TRUST}, bytes(64), AT)
    with pytest.raises(QuoteError, match="no trust configuration"):
        base.verify_quote(quote, {}, report_data, AT)


@pytest.mark.parametrize(("name", "collateral", "at"), [
    ("tdx_quote_outdated", "tdx_quote_outdated_collateral.json", "2026-02-18T10:58:52Z"),
    ("tdx_prod_quote_SPR_E4.dat", "tdx_prod_quote_SPR_E4.collateral.json", "2023-06-18T08:42:59Z"),
])
def test_quotes_below_every_tcb_level_are_refused(name: str, collateral: str, at: str) -> None:
    with pytest.raises(QuoteError, match="no matching TCB level"):
        tdx.verify_quote_bytes((INTEL / name).read_bytes(), INTEL_TRUST, _t(at),
                               collateral=(INTEL / collateral).read_text())


def test_quote_v5_sample_parses_as_td_report_1_5() -> None:
    parsed = tdx.parse_quote_bytes((INTEL / "tdx_quote_outdated").read_bytes())
    assert parsed.version == 5 and len(parsed.body) == 648 and "mrservicetd" in parsed.fields


@pytest.mark.parametrize("field", sorted(tdx.TD_FIELDS))
def test_a_flipped_byte_in_any_td_report_field_is_refused(field: str) -> None:
    raw = bytearray(QUOTE.read_bytes())
    off, length = tdx.TD_FIELDS[field]
    raw[tdx.HEADER_LEN + off + length // 2] ^= 0xFF
    with pytest.raises(QuoteError, match=r"signature|debug"):
        tdx.verify_quote_bytes(bytes(raw), INTEL_TRUST, AT, collateral=COLLATERAL.read_text())


def test_a_year_after_the_collateral_expired_is_refused_naming_the_expiry() -> None:
    later = EXPIRY + timedelta(days=365)
    with pytest.raises(QuoteError, match=r"expired at 2025-07-19T10:00:35Z \(the PCK CRL nextUpdate\)"):
        tdx.verify_quote_bytes(QUOTE.read_bytes(), INTEL_TRUST, later,
                               collateral=COLLATERAL.read_text())


def test_collateral_issued_after_the_verification_time_is_refused() -> None:
    with pytest.raises(QuoteError, match=r"issueDate .* after the verification time"):
        tdx.verify_quote_bytes(QUOTE.read_bytes(), INTEL_TRUST, AT - timedelta(hours=1),
                               collateral=COLLATERAL.read_text())


def test_a_crl_this_update_in_the_future_is_refused_though_dcap_qvl_accepts_it() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    root = TdxTestRoot(issued=datetime(2025, 6, 1, tzinfo=UTC), crl_this_update=at + timedelta(days=2))
    quote = root.quote(NONCE_BINDING)
    der = root.root_cert.public_bytes(Encoding.DER)
    qvl = dcap_qvl.QuoteCollateralV3.from_json(root.collateral_json())
    assert dcap_qvl.verify_with_root_ca(quote, qvl, der, int(at.timestamp())).status == "UpToDate"
    with pytest.raises(QuoteError, match="CRL thisUpdate 2026-01-03T00:00:00Z is after the verification"):
        tdx.verify_quote_bytes(quote, root.trust(), at, collateral=root.collateral)


def test_the_pinned_root_is_intels_sgx_root_ca() -> None:
    der = tdx.intel_root_der()
    cert = x509.load_der_x509_certificate(der)
    assert "Intel SGX Root CA" in cert.subject.rfc4514_string()
    chain = json.loads(COLLATERAL.read_text())["pck_crl_issuer_chain"]
    assert x509.load_pem_x509_certificates(chain.encode())[-1].public_bytes(Encoding.DER) == der


# -- malformed quotes -------------------------------------------------------------------

def _v4() -> bytes:
    return QUOTE.read_bytes()


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda q: q[:20], r"truncated: 20 bytes.*offset 0"),
    (lambda q: q[:400], r"truncated inside the TD report at offset 48"),
    (lambda q: q[:3000], r"signature data length .* at offset 632 runs to"),
    (lambda q: q + bytes(tdx.MAX_QUOTE), r"over the 65536-byte limit"),
    (lambda q: struct.pack("<H", 3) + q[2:], r"unsupported TDX quote version 3 at offset 0"),
    (lambda q: struct.pack("<H", 6) + q[2:], r"unsupported TDX quote version 6"),
    (lambda q: q[:4] + struct.pack("<I", 0) + q[8:], r"not a TDX quote: TEE type 0x0 at offset 4"),
    (lambda q: q[:2] + struct.pack("<H", 3) + q[4:], r"attestation key type 3 at offset 2"),
    (lambda q: q[:632] + struct.pack("<I", 10) + q[636:], r"signature data length 10 .* minimum"),
    (lambda q: struct.pack("<H", 5) + q[2:], r"v5 body type"),
    (lambda q: b"", r"truncated: 0 bytes"),
])
def test_malformed_quotes_are_refused_with_typed_errors(mutate: Any, message: str) -> None:
    with pytest.raises(QuoteError, match=message):
        tdx.parse_quote_bytes(mutate(_v4()))
    with pytest.raises(QuoteError):
        tdx.SCHEME.parse(_tsm(mutate(_v4())))


def test_v5_with_a_wrong_body_size_is_refused(root: TdxTestRoot) -> None:
    q = bytearray(root.quote(NONCE_BINDING, version=5))
    struct.pack_into("<I", q, 50, 584)
    with pytest.raises(QuoteError, match="body size 584 at offset 50"):
        tdx.parse_quote_bytes(bytes(q))


def test_sgx_and_parse_only_samples() -> None:
    with pytest.raises(QuoteError, match="version 3"):
        tdx.parse_quote_bytes((INTEL / "sgx_quote").read_bytes())
    for name in ("cos-113-tdx-quote.dat", "az-tdx-vtpm_td-quote.bin"):
        data = (INTEL / name).read_bytes()
        assert tdx.looks_like_tdx(data)
        assert tdx.parse_quote_bytes(data).version == 4
    cos = tdx.parse_quote_bytes((INTEL / "cos-113-tdx-quote.dat").read_bytes())
    assert cos.trailing == 8000 - len(cos.raw)
    with pytest.raises(QuoteError, match="no tdx collateral"):
        tdx.verify_quote_bytes((INTEL / "az-tdx-vtpm_td-quote.bin").read_bytes(), INTEL_TRUST, AT)


def test_looks_like_tdx() -> None:
    assert tdx.looks_like_tdx(_v4())
    assert not tdx.looks_like_tdx((INTEL / "sgx_quote").read_bytes())
    assert not tdx.looks_like_tdx(b"\x04\x00")
    assert not tdx.looks_like_tdx(bytes(1184))


@pytest.mark.parametrize("quote", [
    {"provider": "tsm", "simulated": False, "tee": "tdx"},
    {"provider": "tsm", "simulated": False, "tee": "tdx", "outblob": "***"},
    {"provider": "tsm", "simulated": False, "tee": "sev-snp", "outblob": "AAAA"},
    {"provider": "tsm", "simulated": True, "tee": "tdx", "outblob": "AAAA"},
    {"provider": "tsm", "simulated": False, "tee": "tdx", "outblob": "A" * 100_000},
])
def test_malformed_quote_objects_are_refused(quote: dict[str, Any]) -> None:
    with pytest.raises(QuoteError):
        tdx.SCHEME.parse(quote)


def test_collateral_in_the_quote_object_must_be_an_object() -> None:
    with pytest.raises(QuoteError, match="'collateral' is not a JSON object"):
        tdx.SCHEME.parse(_tsm(_v4(), "text"))
    parsed = tdx.SCHEME.parse(_tsm(_v4(), {"pck_crl": "x"}))
    with pytest.raises(QuoteError, match="field 'pck_crl_issuer_chain' is missing"):
        tdx.SCHEME.verify(parsed, parsed.report_data, INTEL_TRUST, AT)


# -- the TEST ROOT ------------------------------------------------------------------

@pytest.mark.parametrize("version", [4, 5])
def test_test_root_quotes_verify_bound_and_named_as_test_root(root: TdxTestRoot, version: int) -> None:
    quote = root.tsm_quote(NONCE_BINDING, version=version)
    result = base.verify_quote(quote, {"tdx": root.trust()}, NONCE_BINDING, root.at)
    assert result.hardware and result.root == "TEST ROOT (not Intel)"
    assert result.tcb_status == "UpToDate" and result.report_data == NONCE_BINDING
    assert result.claims["tdx.quote_version"] == version
    assert set(result.measurements) == MEASUREMENT_KEYS
    assert "TEST ROOT (not Intel)" in result.reasons[0]
    with pytest.raises(QuoteError, match="not bound to this evidence"):
        base.verify_quote(quote, {"tdx": root.trust()}, bytes(64), root.at)


def test_a_test_root_quote_is_refused_under_intels_root(root: TdxTestRoot) -> None:
    quote = root.tsm_quote(NONCE_BINDING)
    with pytest.raises(QuoteError, match="under Intel SGX Root CA"):
        base.verify_quote(quote, {"tdx": INTEL_TRUST}, NONCE_BINDING, root.at)


def test_a_real_quote_is_refused_under_a_test_root(root: TdxTestRoot) -> None:
    with pytest.raises(QuoteError, match="TEST ROOT"):
        tdx.verify_quote_bytes(_v4(), root.trust(), AT, collateral=COLLATERAL.read_text())


def test_a_root_that_is_not_a_test_root_is_refused(root: TdxTestRoot) -> None:
    trust = root.trust(test_root=False)
    with pytest.raises(QuoteError, match="only a test root"):
        tdx.verify_quote_bytes(root.quote(NONCE_BINDING), trust, root.at, collateral=root.collateral)
    two = root.trust(roots=(root.root_pem, root.root_pem))
    with pytest.raises(QuoteError, match="exactly one test root"):
        tdx.verify_quote_bytes(root.quote(NONCE_BINDING), two, root.at, collateral=root.collateral)


@pytest.mark.parametrize("version", [4, 5])
def test_a_debug_td_is_refused(root: TdxTestRoot, version: int) -> None:
    quote = root.tsm_quote(NONCE_BINDING, version=version, debug=True)
    with pytest.raises(QuoteError, match="debug TD refused"):
        base.verify_quote(quote, {"tdx": root.trust()}, NONCE_BINDING, root.at)


def test_tcb_status_against_the_allow_list() -> None:
    root = TdxTestRoot(tcb_status="SWHardeningNeeded", advisories=("INTEL-SA-00615",))
    quote = root.tsm_quote(NONCE_BINDING)
    with pytest.raises(QuoteError, match=r"SWHardeningNeeded is not allowed .*INTEL-SA-00615"):
        base.verify_quote(quote, {"tdx": root.trust()}, NONCE_BINDING, root.at)
    trust = root.trust(allowed_tcb=("UpToDate", "SWHardeningNeeded"))
    result = base.verify_quote(quote, {"tdx": trust}, NONCE_BINDING, root.at)
    assert result.hardware and not result.tcb_up_to_date
    assert result.tcb_status == "SWHardeningNeeded" and result.advisories == ("INTEL-SA-00615",)
    assert result.claims["tdx.advisory_ids"] == ["INTEL-SA-00615"]


def test_test_root_collateral_expiry(root: TdxTestRoot) -> None:
    with pytest.raises(QuoteError, match="expired at 2045-01-01T00:00:00Z"):
        tdx.verify_quote_bytes(root.quote(NONCE_BINDING), root.trust(),
                               datetime(2046, 1, 1, tzinfo=UTC), collateral=root.collateral)


def test_a_naive_time_is_refused(root: TdxTestRoot) -> None:
    with pytest.raises(QuoteError, match="time zone"):
        tdx.verify_quote_bytes(root.quote(NONCE_BINDING), root.trust(), datetime(2026, 1, 1),
                               collateral=root.collateral)


# -- collateral sources ------------------------------------------------------------------

def test_collateral_from_a_folder_keyed_by_fmspc(tmp_path: Path) -> None:
    shutil.copy(COLLATERAL, tmp_path / f"{FMSPC}.json")
    trust = SchemeTrust(configured=True, collateral=str(tmp_path))
    result = tdx.verify_quote_bytes(_v4(), trust, AT)
    assert result.tcb_status == "UpToDate"
    assert any("from the configured source" in r for r in result.reasons)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(QuoteError, match=f"no tdx collateral for FMSPC {FMSPC}"):
        tdx.verify_quote_bytes(_v4(), SchemeTrust(configured=True, collateral=str(empty)), AT)


def test_collateral_from_a_single_file() -> None:
    trust = SchemeTrust(configured=True, collateral=str(COLLATERAL))
    assert tdx.verify_quote_bytes(_v4(), trust, AT).hardware
    other = SchemeTrust(configured=True, collateral=str(INTEL / "tdx_quote_outdated_collateral.json"))
    with pytest.raises(QuoteError, match="is for FMSPC 90C06F000000; the quote's is B0C06F000000"):
        tdx.verify_quote_bytes(_v4(), other, AT)
    with pytest.raises(QuoteError, match="neither a folder"):
        tdx.verify_quote_bytes(_v4(), SchemeTrust(configured=True, collateral="/nonexistent"), AT)


def test_collateral_from_a_loopback_pcs_is_cached_on_disk(tmp_path: Path) -> None:
    pcs = LoopbackPcs(json.loads(COLLATERAL.read_text()))
    cache = tmp_path / "cache"
    trust = SchemeTrust(configured=True, collateral=pcs.url + "/", cache_dir=cache)
    try:
        result = tdx.verify_quote_bytes(_v4(), trust, AT)
    finally:
        pcs.close()
    assert result.tcb_status == "UpToDate"
    assert len(pcs.requests) == 4
    assert any("fmspc=B0C06F000000" in r for r in pcs.requests)
    assert any("ca=platform" in r for r in pcs.requests)
    assert (cache / f"tdx-platform-{FMSPC}.json").is_file()
    tdx_collateral._SOURCES.clear()  # a new process: only the disk cache remains
    again = tdx.verify_quote_bytes(_v4(), trust, AT + timedelta(days=1))
    assert again.tcb_status == "UpToDate" and len(pcs.requests) == 4
    with pytest.raises(QuoteError, match=r"GET .* failed"):  # expired: refetch, server gone
        tdx.verify_quote_bytes(_v4(), trust, EXPIRY + timedelta(seconds=1))


def test_an_expired_cache_entry_is_refetched(tmp_path: Path) -> None:
    root = TdxTestRoot()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first = root.collateral_at(issued=t0, next_update=t0 + timedelta(days=30))
    pcs = LoopbackPcs(first)
    trust = root.trust(collateral=pcs.url, cache_dir=tmp_path)
    quote = root.quote(NONCE_BINDING)
    try:
        a = tdx.verify_quote_bytes(quote, trust, t0 + timedelta(days=1))
        assert a.collateral["next_update"] == "2026-01-31T00:00:00Z" and len(pcs.requests) == 4
        tdx.verify_quote_bytes(quote, trust, t0 + timedelta(days=2))
        assert len(pcs.requests) == 4  # memo hit
        t1 = t0 + timedelta(days=31)
        pcs.collateral = root.collateral_at(issued=t1, next_update=t1 + timedelta(days=30))
        tdx_collateral._SOURCES.clear()
        b = tdx.verify_quote_bytes(quote, trust, t1 + timedelta(hours=1))
        assert b.collateral["next_update"] == "2026-03-03T00:00:00Z" and len(pcs.requests) == 8
        cached = json.loads((tmp_path / f"tdx-platform-{root.fmspc.hex().upper()}.json").read_text())
        assert cached["tcb_info"] == pcs.collateral["tcb_info"]
    finally:
        pcs.close()


def test_a_pcs_error_is_a_typed_refusal(tmp_path: Path) -> None:
    pcs = LoopbackPcs({})
    try:
        trust = SchemeTrust(configured=True, collateral=pcs.url, cache_dir=tmp_path)
        with pytest.raises(QuoteError):
            tdx.verify_quote_bytes(_v4(), trust, AT)
    finally:
        pcs.close()


@pytest.mark.parametrize("bad", [
    "not json", "[]", {"pck_crl_issuer_chain": 1},
    {**json.loads(COLLATERAL.read_text()), "pck_crl": "zz"},
    {**json.loads(COLLATERAL.read_text()), "tcb_info": "{"},
    {**json.loads(COLLATERAL.read_text()), "tcb_info": '{"id":"SGX"}'},
    {**json.loads(COLLATERAL.read_text()),
     "qe_identity": json.loads(COLLATERAL.read_text())["qe_identity"].replace("2025-06-19T10:32:27Z",
                                                                             "yesterday")},
])
def test_malformed_collateral_is_refused(bad: Any) -> None:
    with pytest.raises(QuoteError):
        tdx.verify_quote_bytes(_v4(), INTEL_TRUST, AT, collateral=bad)


def test_test_root_files_drive_a_configured_trust(tmp_path: Path) -> None:
    root = TdxTestRoot()
    files = root.write_files(tmp_path)
    trust = SchemeTrust(configured=True, roots=(files["root"].read_text(),), test_root=True,
                        collateral=str(files["collateral"]))
    quote = root.tsm_quote(NONCE_BINDING, collateral=False)
    result = base.verify_quote(quote, {"tdx": trust}, NONCE_BINDING, root.at)
    assert result.hardware and result.root == tdx.TEST_ROOT_NAME


@pytest.mark.parametrize("field", sorted({**tdx.TD_FIELDS, **tdx.TD15_FIELDS}))
def test_a_flipped_byte_in_a_v5_td_report_1_5_field_is_refused(root: TdxTestRoot, field: str) -> None:
    quote = bytearray(root.quote(NONCE_BINDING, version=5))
    off, length = {**tdx.TD_FIELDS, **tdx.TD15_FIELDS}[field]
    quote[tdx.HEADER_LEN + 6 + off + length // 2] ^= 0xFF
    with pytest.raises(QuoteError, match=r"signature|debug"):
        tdx.verify_quote_bytes(bytes(quote), root.trust(), root.at, collateral=root.collateral)


def test_collateral_signed_outside_the_pinned_root_is_refused_for_a_real_quote(
        root: TdxTestRoot) -> None:
    """A real quote with TCB info re-signed under another root: dcap-qvl checks its chain."""
    real = json.loads(COLLATERAL.read_text())
    forged = {**real, "tcb_info_issuer_chain": root.collateral["tcb_info_issuer_chain"],
              "tcb_info_signature": root.collateral["tcb_info_signature"],
              "tcb_info": root.collateral["tcb_info"].replace(root.fmspc.hex().upper(), FMSPC)}
    with pytest.raises(QuoteError, match="under Intel SGX Root CA"):
        tdx.verify_quote_bytes(_v4(), INTEL_TRUST, AT, collateral=forged)


def test_the_root_ca_crl_comes_from_a_pccs_or_intels_distribution_point() -> None:
    pcs = tdx_collateral.CollateralSource("https://api.trustedservices.intel.com/")
    assert pcs.root_ca_crl_url() == "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
    pccs = tdx_collateral.CollateralSource("https://pccs.example:8081")
    assert pccs.root_ca_crl_url() == "https://pccs.example:8081/sgx/certification/v4/rootcacrl"


@pytest.mark.parametrize("name", ["tdx_quote", "tdx_quote_outdated", "tdx_prod_quote_SPR_E4.dat",
                                  "az-tdx-vtpm_td-quote.bin", "cos-113-tdx-quote.dat"])
def test_fmspc_and_pck_ca_read_with_cryptography_equal_dcap_qvls(name: str) -> None:
    """The attester reads FMSPC and PCK CA without dcap-qvl; the verifier, the same way."""
    raw = (INTEL / name).read_bytes()
    q = dcap_qvl.parse_quote(raw)
    expected = (q.fmspc().upper(), q.ca())
    assert quote_fmspc_and_ca(raw) == expected
    assert tdx._fmspc_and_ca(tdx.parse_quote_bytes(raw)) == expected


def test_fmspc_of_test_root_quotes_and_refusals(root: TdxTestRoot) -> None:
    for version in (4, 5):
        assert quote_fmspc_and_ca(root.quote(NONCE_BINDING, version=version)) == (
            root.fmspc.hex().upper(), "platform")
    with pytest.raises(QuoteError, match="quote version 3"):
        quote_fmspc_and_ca((INTEL / "sgx_quote").read_bytes())
    raw = root.quote(NONCE_BINDING)
    with pytest.raises(QuoteError, match=r"no FMSPC in its PCK certificate: .*runs past its end"):
        quote_fmspc_and_ca(raw[:-10])
    chain = raw.index(b"-----BEGIN")
    broken = raw[:chain] + b"-----BEGIN XXXXXXXXXXX" + raw[chain + 22:]
    with pytest.raises(QuoteError, match="not PEM certificates"):
        quote_fmspc_and_ca(broken)


def test_a_file_source_looks_at_the_disk_at_most_once_per_recheck_interval(tmp_path: Path) -> None:
    path = tmp_path / f"{FMSPC}.json"
    shutil.copy(COLLATERAL, path)
    clock = [100.0]
    source = tdx_collateral.CollateralSource(str(tmp_path), parse=tdx_collateral.parse_collateral,
                                             monotonic=lambda: clock[0])
    first = source.get(FMSPC, AT)
    path.unlink()  # gone from disk: within the interval the source does not look
    clock[0] += 0.9
    assert source.get(FMSPC, AT) is first
    clock[0] += 0.2  # past the interval: it looks again, and says what it found
    with pytest.raises(QuoteError, match="does not exist"):
        source.get(FMSPC, AT)
    shutil.copy(INTEL / "tdx_quote_outdated_collateral.json", path)  # another file, same name
    clock[0] += 5
    with pytest.raises(QuoteError, match="is for FMSPC 90C06F000000"):
        source.get(FMSPC, AT)


def test_collateral_carried_in_quotes_is_parsed_once_and_refusals_are_not_kept() -> None:
    obj = json.loads(COLLATERAL.read_text())
    tdx_collateral._PARSED.clear()
    first = tdx_collateral.parse_collateral(dict(obj))
    assert tdx_collateral.parse_collateral({**obj, "extra": "ignored"}) is first
    assert tdx_collateral.parse_collateral(COLLATERAL.read_text()) is not first  # keyed by input
    changed = {**obj, "tcb_info": obj["tcb_info"].replace('"TDX"', '"SGX"', 1)}
    for _ in range(2):
        with pytest.raises(QuoteError, match="not TDX"):
            tdx_collateral.parse_collateral(changed)
    assert len(tdx_collateral._PARSED) == 2
