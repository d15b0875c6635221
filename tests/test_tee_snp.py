"""AMD SEV-SNP verification (verifier/tee/snp.py) on real reports and under a test root.

Real samples (fixtures/tee/amd, origins in its ORIGINS.md) verify at 2025-06-01, the
time the samples README gives, against the pinned Milan chain; `attestation.bin` has
the debug policy bit set, so it is refused as a debug guest after its signature and
chain have verified. Never the wall clock: every check gets `AT`.
"""

from __future__ import annotations

import http.server
import struct
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from snp_test_root import SnpTestRoot

from bytereplay.encoding import b64url_encode
from bytereplay.errors import QuoteError
from verifier.tee import snp, snp_certs
from verifier.tee.base import QuoteVerifier, SchemeTrust, scheme_for, verify_quote

AMD = Path(__file__).resolve().parent.parent / "fixtures" / "tee" / "amd"
AT = datetime(2025, 6, 1, tzinfo=UTC)
ANY_TCB = {"Milan": {"bl": 0, "tee": 0, "snp": 0, "ucode": 0}}
TRUST = SchemeTrust(configured=True, min_tcb=ANY_TCB)
# (report, its VCEK, debug policy bit set)
SAMPLES = [("attestation.bin", "vcek.testcer", True),
           ("report_milan.hex", "vcek_milan.der", False),
           ("snp_test-report.bin", "snp_test-vcek.der", False)]
RD = bytes(range(64))


def read(name: str) -> bytes:
    return (AMD / name).read_bytes()


def raw_report(name: str) -> bytes:
    return snp.parse_report(read(name)).raw


@pytest.fixture(scope="module")
def root() -> SnpTestRoot:
    return SnpTestRoot()


# -- the real samples -------------------------------------------------------------------

@pytest.mark.parametrize(("report", "vcek", "debug"), SAMPLES)
def test_real_reports_verify_against_the_pinned_milan_chain(report: str, vcek: str,
                                                            debug: bool) -> None:
    if debug:
        # Signature, chain, TCB and hwid checks run first; the debug bit then refuses it.
        with pytest.raises(QuoteError, match="debug guest is refused"):
            snp.verify_report(read(report), TRUST, AT, certs=[read(vcek)])
        return
    result = snp.verify_report(read(report), TRUST, AT, certs=[read(vcek)])
    assert result.hardware and result.chain_ok and not result.debug
    assert result.root == "AMD ARK-Milan"
    assert result.tcb_status == "UpToDate"
    assert result.scheme == "snp" and result.provider == "tsm"
    parsed = snp.parse_report(read(report))
    assert result.measurements == {
        "snp.measurement": parsed.field("measurement").hex(),
        "snp.host_data": parsed.field("host_data").hex(),
        "snp.id_key_digest": parsed.field("id_key_digest").hex()}
    assert result.report_data == parsed.report_data
    claims = result.claims
    assert claims["product"] == "Milan" and claims["signing_key"] == "VCEK"
    assert claims["vmpl"] == 0 and claims["debug"] is False
    assert claims["reported_tcb"] == {"raw": "0300000000000873", "bl": 3, "tee": 0, "snp": 8,
                                      "ucode": 115}
    assert claims["chip_id"] == parsed.chip_id.hex()
    assert any("hardware id equals" in r for r in result.reasons)
    assert "VCEK certificate given with the report" in result.reasons
    assert set(result.collateral) == {"vcek_not_before", "vcek_not_after"}


def test_debug_sample_is_the_only_debug_one() -> None:
    assert [snp.parse_report(read(r)).debug for r, _v, _d in SAMPLES] == [True, False, False]


@pytest.mark.parametrize(("report", "vcek", "debug"), SAMPLES)
@pytest.mark.parametrize("bit", [0, 7, 383])
def test_one_flipped_measurement_bit_is_refused(report: str, vcek: str, debug: bool,
                                                bit: int) -> None:
    raw = bytearray(raw_report(report))
    raw[0x90 + bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(QuoteError, match="signature does not verify"):
        snp.verify_report(bytes(raw), TRUST, AT, certs=[read(vcek)])


@pytest.mark.parametrize("vcek", ["snp_test-vcek-invalid-legacy.der",
                                  "snp_test-vcek-invalid-new.der"])
def test_vceks_with_an_altered_hardware_id_are_refused(vcek: str) -> None:
    with pytest.raises(QuoteError):
        snp.verify_report(read("snp_test-report.bin"), TRUST, AT, certs=[read(vcek)])


def test_the_milan_vcek_does_not_chain_to_the_genoa_ark() -> None:
    certs = [read("snp_test-vcek.der"), read("ask_ark_genoa.pem")]
    with pytest.raises(QuoteError, match="cannot be built"):
        snp.verify_report(read("snp_test-report.bin"), TRUST, AT, certs=certs,
                          products=("Genoa",))
    # Even with Milan's ASK handed over, Genoa's ARK did not sign it.
    certs.append(read("ask_ark_milan.pem"))
    with pytest.raises(QuoteError, match=r"not signed by a trusted root .AMD ARK-Genoa"):
        snp.verify_report(read("snp_test-report.bin"), TRUST, AT, certs=certs,
                          products=("Genoa",))


def test_another_chips_vcek_is_refused() -> None:
    with pytest.raises(QuoteError, match="signature does not verify"):
        snp.verify_report(read("snp_test-report.bin"), TRUST, AT, certs=[read("vcek_milan.der")])


def test_a_report_without_any_vcek_is_refused() -> None:
    with pytest.raises(QuoteError, match="no VCEK certificate"):
        snp.verify_report(read("report_milan.hex"), TRUST, AT)


@pytest.mark.parametrize(("when", "what"), [(datetime(2023, 4, 1, tzinfo=UTC), "VCEK"),
                                            (datetime(2031, 1, 1, tzinfo=UTC), "VCEK"),
                                            (datetime(2019, 1, 1, tzinfo=UTC), "ARK")])
def test_certificates_must_be_valid_at_the_time(when: datetime, what: str) -> None:
    with pytest.raises(QuoteError, match=f"the {what} certificate .* is not valid at"):
        snp.verify_report(read("report_milan.hex"), TRUST, when, certs=[read("vcek_milan.der")])


def test_tcb_status_follows_the_minimum_and_the_allow_list() -> None:
    report, certs = read("report_milan.hex"), [read("vcek_milan.der")]
    high = {"Milan": {"bl": 3, "tee": 0, "snp": 8, "ucode": 200}}
    with pytest.raises(QuoteError, match=r"OutOfDate is not allowed.*ucode 115 < 200"):
        snp.verify_report(report, replace(TRUST, min_tcb=high), AT, certs=certs)
    out = snp.verify_report(report, replace(TRUST, min_tcb=high,
                                            allowed_tcb=("UpToDate", "OutOfDate")), AT, certs=certs)
    assert out.tcb_status == "OutOfDate" and not out.tcb_up_to_date and out.hardware
    with pytest.raises(QuoteError, match="no minimum TCB configured for Milan"):
        snp.verify_report(report, replace(TRUST, min_tcb={}), AT, certs=certs)
    with pytest.raises(QuoteError, match="unknown components"):
        snp.verify_report(report, replace(TRUST, min_tcb={"Milan": {"fmc": 1}}), AT, certs=certs)


def test_report_data_binding_is_checked() -> None:
    report, certs = read("report_milan.hex"), [read("vcek_milan.der")]
    good = snp.parse_report(report).report_data
    assert snp.verify_report(report, TRUST, AT, certs=certs, expected_report_data=good).hardware
    with pytest.raises(QuoteError, match="not bound to this evidence"):
        snp.verify_report(report, TRUST, AT, certs=certs, expected_report_data=bytes(64))


def test_a_report_in_pem_with_its_chain_and_an_ark_from_the_message_is_no_anchor() -> None:
    # A chain file holding ASK and ARK is fine; the pinned ARK still decides.
    from cryptography.hazmat.primitives.serialization import Encoding
    pem = snp._load_certs(read("vcek_milan.der"))[0].public_bytes(Encoding.PEM)
    out = snp.verify_report(read("report_milan.hex"), TRUST, AT,
                            certs=[pem + read("ask_ark_milan.pem")])
    assert out.root == "AMD ARK-Milan"


def test_pinned_roots_are_checked_by_fingerprint() -> None:
    anchors = snp.amd_anchors()
    assert sorted(a.name for a in anchors.roots) == ["AMD ARK-Genoa", "AMD ARK-Milan",
                                                     "AMD ARK-Turin"]
    assert len(anchors.intermediates) == 6
    assert set(snp.AMD_ROOT_FILES) == {p.name for p in
                                      (Path(snp.__file__).parent / "amd_roots").glob("*.pem")}


def test_turin_vcek_chains_to_the_pinned_turin_ark() -> None:
    (vcek,) = snp._load_certs(read("vcek_turin.der"))
    assert snp.cert_product(vcek) == "Turin" and snp.cert_hwid(vcek) == bytes.fromhex(
        "1e550a8ee5cf9f4d")
    anchors = snp.anchors_for(TRUST, ("Turin",))
    (ask,) = [c for c in anchors.intermediates if c.subject == vcek.issuer]
    assert snp._pss_ok(vcek, ask) and snp._pss_ok(ask, anchors.roots[0].cert)


# -- parsing: bad input ---------------------------------------------------------------

def test_parse_accepts_raw_and_hex_and_names_the_fields() -> None:
    raw = raw_report("report_milan.hex")
    assert snp.parse_report(raw) == snp.parse_report(raw.hex().encode())
    assert snp.parse_report(raw.hex().upper().encode() + b"\n").raw == raw
    parsed = snp.parse_report(raw)
    assert (parsed.version, parsed.vmpl, parsed.signing_key) == (2, 0, "VCEK")
    assert snp.looks_like_snp(raw) and snp.looks_like_snp(read("report_milan.hex"))
    assert not snp.looks_like_snp(b"") and not snp.looks_like_snp(raw[:-1])
    assert not snp.looks_like_snp(read("vcek_milan.der"))


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda r: r[:-1], "1183 bytes"),
    (lambda r: r + b"\x00", "1185 bytes"),
    (lambda r: b"", "0 bytes"),
    (lambda r: struct.pack("<I", 4) + r[4:], "version 4 at offset 0x0"),
    (lambda r: struct.pack("<I", 1) + r[4:], "version 1 at offset 0x0"),
    (lambda r: r[:0x34] + struct.pack("<I", 2) + r[0x38:], "signature algorithm 2 at offset 0x34"),
    (lambda r: r[:0x48] + struct.pack("<I", 2 << 2) + r[0x4C:], "signing key 2 .* offset 0x48"),
    (lambda r: r[:0x48] + struct.pack("<I", 2) + r[0x4C:], "mask the chip key"),
    (lambda r: r[:0x30] + struct.pack("<I", 4) + r[0x34:], "VMPL 4 at offset 0x30"),
    (lambda r: r[:0x2D0] + b"\x01" + r[0x2D1:], "wider than 384 bits"),
])
def test_malformed_reports_are_refused_with_a_typed_error(mutate: object, message: str) -> None:
    assert callable(mutate)
    with pytest.raises(QuoteError, match=message):
        snp.parse_report(mutate(raw_report("report_milan.hex")))


def test_versions_3_and_5_parse_and_check_the_cpu_family(root: SnpTestRoot) -> None:
    for version in (3, 5):
        quote = root.tsm_quote(RD, version=version)
        assert snp.SCHEME.verify(snp.SCHEME.parse(quote), RD, root.trust(), AT).hardware
    raw = bytearray(root.report(RD, version=3))
    raw[0x188] = 0x1A
    with pytest.raises(QuoteError, match="CPU family 0x1a is not Milan"):
        snp.verify_report(root.sign(bytes(raw)), root.trust(), AT, certs=[root.der(root.vcek),
                                                                          root.der(root.ask)])


# -- the QuoteVerifier and the test root ------------------------------------------------

def test_scheme_is_registered_for_snp_and_implements_the_protocol() -> None:
    assert isinstance(snp.SCHEME, QuoteVerifier)
    assert scheme_for("snp") is snp.SCHEME


def test_test_root_quote_verifies_through_the_registry(root: SnpTestRoot) -> None:
    out = verify_quote(root.tsm_quote(RD), {"snp": root.trust()}, RD, AT)
    assert out.hardware and out.root == "TEST ROOT (not AMD)" and out.tcb_status == "UpToDate"
    assert out.report_data == RD and out.claims["product"] == "Milan"
    assert "VCEK certificate from the report's certificate table" in out.reasons
    assert out.collateral["vcek_not_after"] == "2049-12-31T00:00:00Z"


def test_test_root_refusals(root: SnpTestRoot) -> None:
    quote = root.tsm_quote(RD)
    parsed = snp.SCHEME.parse(quote)
    with pytest.raises(QuoteError, match="not bound to this evidence"):
        snp.SCHEME.verify(parsed, bytes(64), root.trust(), AT)
    with pytest.raises(QuoteError, match="debug guest is refused"):
        snp.SCHEME.verify(snp.SCHEME.parse(root.tsm_quote(RD, debug=True)), RD, root.trust(), AT)
    # Without the test root, AMD's pinned roots decide: the test chain is refused.
    with pytest.raises(QuoteError, match="issuer SEV-Milan is not signed by a trusted root"):
        snp.SCHEME.verify(parsed, RD, root.trust(roots=(), test_root=False), AT)
    # A root that is not declared a test root is refused outright.
    with pytest.raises(QuoteError, match="may only name a test root"):
        snp.SCHEME.verify(parsed, RD, root.trust(test_root=False), AT)
    # AMD's own ARK cannot be relabelled as a test root.
    with pytest.raises(QuoteError, match="names an AMD ARK as a test root"):
        snp.SCHEME.verify(parsed, RD, root.trust(roots=(read("ask_ark_milan.pem").decode(),)), AT)
    with pytest.raises(QuoteError, match="could not be read"):
        snp.SCHEME.verify(parsed, RD, root.trust(roots=("/nonexistent/root.pem",)), AT)
    with pytest.raises(QuoteError, match="refused: this verifier has no trust"):
        verify_quote(quote, {"snp": SchemeTrust()}, RD, AT)


def test_test_root_hwid_and_tcb_mismatches_are_refused(root: SnpTestRoot) -> None:
    report = root.report(RD)
    ask = root.der(root.ask)
    other = root.make_vcek(hwid=bytes(64 * [7]))
    with pytest.raises(QuoteError, match="hardware id differs from the report's chip id"):
        snp.verify_report(report, root.trust(), AT, certs=[root.der(other), ask])
    octet = root.make_vcek(hwid_octet_string=True)
    assert snp.verify_report(report, root.trust(), AT, certs=[root.der(octet), ask]).hardware
    low = root.make_vcek(tcb={**root.tcb, "snp": 7})
    with pytest.raises(QuoteError, match="snp SPL 7 differs from the report's reported TCB"):
        snp.verify_report(report, root.trust(), AT, certs=[root.der(low), ask])
    masked = root.report(RD, chip_id=bytes(64))
    out = snp.verify_report(masked, root.trust(), AT, certs=[root.der(other), ask])
    assert any("chip id masked" in r for r in out.reasons)


def test_a_vlek_signed_report_verifies_without_a_hardware_id(root: SnpTestRoot) -> None:
    quote = root.tsm_quote(RD, vlek=True)
    out = snp.SCHEME.verify(snp.SCHEME.parse(quote), RD, root.trust(), AT)
    assert out.hardware and out.claims["signing_key"] == "VLEK"
    assert any("VLEK-signed" in r for r in out.reasons)
    # A VCEK cannot stand in for the VLEK the report names, nor the other way round.
    with pytest.raises(QuoteError, match="names VLEK as its signing key"):
        snp.verify_report(root.report(RD, vlek=True), root.trust(), AT,
                          certs=[root.der(root.vcek), root.der(root.ask)])
    with pytest.raises(QuoteError, match="names VCEK as its signing key"):
        snp.verify_report(root.report(RD), root.trust(), AT,
                          certs=[root.der(root.vlek), root.der(root.asvk)])


@pytest.mark.parametrize("version", [2, 5])
def test_turin_layout_under_a_test_root(version: int) -> None:
    turin = SnpTestRoot(product="Turin")
    out = verify_quote(turin.tsm_quote(RD, version=version), {"snp": turin.trust()}, RD, AT)
    assert out.claims["product"] == "Turin" and out.tcb_status == "UpToDate"
    assert out.claims["reported_tcb"]["fmc"] == 1 and out.claims["reported_tcb"]["snp"] == 3
    low = turin.make_vcek(tcb={**turin.tcb, "fmc": 0})
    with pytest.raises(QuoteError, match="fmc SPL 0 differs"):
        snp.verify_report(turin.report(RD), turin.trust(), AT,
                          certs=[turin.der(low), turin.der(turin.ask)])


def test_tsm_quote_shape_is_checked(root: SnpTestRoot) -> None:
    quote = root.tsm_quote(RD)
    for bad, message in [({**quote, "outblob": "!!"}, "not unpadded base64url"),
                         ({**quote, "outblob": 5}, "missing or not text"),
                         ({**quote, "tee": "tdx"}, "not a tsm sev-snp quote"),
                         ({**quote, "simulated": True}, "simulated: false"),
                         ({**quote, "auxblob": b64url_encode(b"\x01" * 30)}, "entry at offset 0")]:
        with pytest.raises(QuoteError, match=message):
            snp.SCHEME.parse(bad)
    with pytest.raises(QuoteError):
        snp.SCHEME.parse("x")  # type: ignore[arg-type]


# -- certificate sources ----------------------------------------------------------------

def test_cert_table_round_trip_and_refusals(root: SnpTestRoot) -> None:
    table = snp_certs.parse_cert_table(root.cert_table())
    assert table.vcek == root.der(root.vcek) and table.ask == root.der(root.ask)
    assert table.ark == root.der(root.ark) and table.vlek is None
    assert snp_certs.parse_cert_table(b"") == snp_certs.CertTable()
    blob = bytearray(root.cert_table())
    with pytest.raises(QuoteError, match=r"entry at offset 0 .* points outside"):
        snp_certs.parse_cert_table(bytes(blob[:200]))
    with pytest.raises(QuoteError, match="no all-zero end entry"):
        snp_certs.parse_cert_table(bytes(blob[:20]))
    struct.pack_into("<I", blob, 16, 8)
    with pytest.raises(QuoteError, match="points into the entry list"):
        snp_certs.parse_cert_table(bytes(blob))
    dup = snp_certs.build_cert_table({snp_certs.VCEK_GUID: b"x"})
    dup = dup[:24] + dup[:24] + bytes(24) + b"x"
    with pytest.raises(QuoteError, match="repeats GUID"):
        snp_certs.parse_cert_table(dup)


@pytest.mark.parametrize("name", sorted(p.name for p in (AMD / "fuzz").glob("*.input")))
def test_fuzz_regressions_are_typed_refusals(name: str) -> None:
    body = (AMD / "fuzz" / name).read_bytes()[1:]
    report = raw_report("report_milan.hex")
    quote = {"provider": "tsm", "simulated": False, "tee": "sev-snp",
             "outblob": b64url_encode(report), "auxblob": b64url_encode(body)}
    with pytest.raises(QuoteError):
        snp.SCHEME.verify(snp.SCHEME.parse(quote), report[0x50:0x90], TRUST, AT)


def test_certs_from_a_configured_folder(tmp_path: Path) -> None:
    (tmp_path / "vcek.der").write_bytes(read("vcek_milan.der"))
    (tmp_path / "other.testcer").write_bytes(read("vcek.testcer"))
    (tmp_path / "notes.txt").write_text("not a certificate")
    quote = {"provider": "tsm", "simulated": False, "tee": "sev-snp",
             "outblob": b64url_encode(raw_report("report_milan.hex"))}
    rd = snp.parse_report(read("report_milan.hex")).report_data
    trust = replace(TRUST, certs=str(tmp_path))
    assert snp.SCHEME.verify(snp.SCHEME.parse(quote), rd, trust, AT).hardware
    with pytest.raises(QuoteError, match="does not exist"):
        snp.SCHEME.verify(snp.SCHEME.parse(quote), rd, replace(TRUST, certs=str(tmp_path / "no")),
                          AT)


class _Kds(http.server.BaseHTTPRequestHandler):
    served: ClassVar[dict[str, bytes]] = {}
    paths: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.paths.append(self.path)
        body = self.served.get(self.path)
        self.send_response(200 if body else 404)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def kds() -> Iterator[tuple[str, type[_Kds]]]:
    handler = type("Kds", (_Kds,), {"served": {}, "paths": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_certs_from_a_loopback_kds_with_a_disk_cache(kds: tuple[str, type[_Kds]],
                                                     tmp_path: Path) -> None:
    base, handler = kds
    parsed = snp.parse_report(read("report_milan.hex"))
    path = ("/vcek/v1/Milan/" + parsed.chip_id.hex()
            + "?blSPL=03&teeSPL=00&snpSPL=08&ucodeSPL=115")
    handler.served[path] = read("vcek_milan.der")
    quote = {"provider": "tsm", "simulated": False, "tee": "sev-snp",
             "outblob": b64url_encode(parsed.raw)}
    trust = replace(TRUST, certs=base, cache_dir=tmp_path / "cache")
    out = snp.SCHEME.verify(snp.SCHEME.parse(quote), parsed.report_data, trust, AT)
    assert out.hardware and handler.paths == [path]
    assert f"VCEK certificate from tee.snp.certs ({base})" in out.reasons
    # The second verification reads the disk cache: the KDS is not asked again.
    handler.served.clear()
    assert snp.SCHEME.verify(snp.SCHEME.parse(quote), parsed.report_data, trust, AT).hardware
    assert handler.paths == [path]
    # Not cached and not served: a typed refusal naming the answer.
    with pytest.raises(QuoteError, match="answered 404"):
        snp.SCHEME.verify(snp.SCHEME.parse(quote), parsed.report_data,
                          replace(trust, cache_dir=tmp_path / "empty"), AT)


def test_kds_url_shape() -> None:
    url = snp_certs.kds_vcek_url("https://kdsintf.amd.com/", "Turin", bytes.fromhex("1e550a8e"),
                                 {"fmc": 1, "bl": 2, "tee": 3, "snp": 4, "ucode": 5})
    assert url == ("https://kdsintf.amd.com/vcek/v1/Turin/1e550a8e?fmcSPL=01&blSPL=02&teeSPL=03"
                   "&snpSPL=04&ucodeSPL=05")
    with pytest.raises(QuoteError, match="not http"):
        snp_certs.fetch("file:///etc/passwd", None)


# -- AMD's CRL (tee.snp.crl) ------------------------------------------------------------

def _crl_verify(root: SnpTestRoot, tmp_path: Path, crl: bytes, *, vlek: bool = False,
                as_folder: bool = False, at: datetime = AT) -> Any:
    snp_certs._CRLS.clear()
    path = tmp_path / f"{root.product}.crl"
    path.write_bytes(crl)
    trust = root.trust(crl=str(tmp_path if as_folder else path))
    certs = ([root.der(root.vlek), root.der(root.asvk)] if vlek
             else [root.der(root.vcek), root.der(root.ask)])
    return snp.verify_report(root.report(RD, vlek=vlek), trust, at, certs=certs)


def test_without_a_crl_revocation_is_not_checked_and_says_so(root: SnpTestRoot) -> None:
    out = snp.verify_report(root.report(RD), root.trust(), AT,
                            certs=[root.der(root.vcek), root.der(root.ask)])
    assert out.ear_facts == {"revocation": "not checked"}
    assert out.claims["snp.revocation"] == "not checked"
    assert any("revocation not checked" in r for r in out.reasons)


def test_a_crl_listing_nothing_of_the_chain_is_checked(root: SnpTestRoot, tmp_path: Path) -> None:
    other = root.make_vcek(hwid=bytes(64))
    out = _crl_verify(root, tmp_path, root.crl(revoked=(other,)))
    assert out.hardware and out.ear_facts == {"revocation": "checked"}
    assert any("AMD CRL of 2025-01-01T00:00:00Z" in r for r in out.reasons)
    pem = x509.load_der_x509_crl(root.crl()).public_bytes(serialization.Encoding.PEM)
    assert _crl_verify(root, tmp_path, pem, as_folder=True).ear_facts["revocation"] == "checked"


@pytest.mark.parametrize(("which", "message"), [
    ("ask", r"the ASK certificate \(serial [0-9a-f]+\) is revoked by AMD's CRL of 2025-01-01"),
    ("vcek", r"the VCEK certificate .* is revoked"),
])
def test_a_revoked_ask_or_vcek_is_refused(root: SnpTestRoot, tmp_path: Path, which: str,
                                          message: str) -> None:
    with pytest.raises(QuoteError, match=message):
        _crl_verify(root, tmp_path, root.crl(revoked=(getattr(root, which),)))


def test_a_revoked_asvk_refuses_a_vlek_report(root: SnpTestRoot, tmp_path: Path) -> None:
    with pytest.raises(QuoteError, match=r"the ASVK certificate .* is revoked"):
        _crl_verify(root, tmp_path, root.crl(revoked=(root.asvk,)), vlek=True)


def test_a_crl_that_is_not_the_arks_or_not_current_is_refused(root: SnpTestRoot,
                                                             tmp_path: Path) -> None:
    with pytest.raises(QuoteError, match="signature does not verify with TEST ROOT"):
        _crl_verify(root, tmp_path, root.crl(signer=root.ask_key))
    with pytest.raises(QuoteError, match="signature does not verify"):
        _crl_verify(root, tmp_path, root.crl(pss=False))
    with pytest.raises(QuoteError, match=r"expired at 2025-05-01T00:00:00Z"):
        _crl_verify(root, tmp_path, root.crl(next_update=datetime(2025, 5, 1, tzinfo=UTC)))
    with pytest.raises(QuoteError, match="thisUpdate 2025-07-01T00:00:00Z is after"):
        _crl_verify(root, tmp_path, root.crl(this_update=datetime(2025, 7, 1, tzinfo=UTC)))
    other = SnpTestRoot()
    with pytest.raises(QuoteError, match=r"issued by ARK-Milan, not by TEST ROOT|does not verify"):
        _crl_verify(root, tmp_path, other.crl())
    with pytest.raises(QuoteError, match="not a DER or PEM CRL"):
        _crl_verify(root, tmp_path, b"not a CRL")
    snp_certs._CRLS.clear()
    with pytest.raises(QuoteError, match=r"AMD CRL .*Genoa\.crl"):
        snp.verify_report(root.report(RD), root.trust(crl=str(tmp_path / "Genoa.crl")), AT,
                          certs=[root.der(root.vcek), root.der(root.ask)])


def test_the_crl_from_a_kds_url_is_cached_on_disk_until_its_next_update(
        root: SnpTestRoot, kds: tuple[str, type[_Kds]], tmp_path: Path) -> None:
    base, handler = kds
    path = "/vcek/v1/Milan/crl"
    handler.served[path] = root.crl()
    trust = root.trust(crl=base + "/", cache_dir=tmp_path)
    certs = [root.der(root.vcek), root.der(root.ask)]
    snp_certs._CRLS.clear()
    assert snp.verify_report(root.report(RD), trust, AT, certs=certs).hardware
    snp_certs._CRLS.clear()  # a new process: the disk cache answers
    assert snp.verify_report(root.report(RD), trust, AT, certs=certs).hardware
    assert handler.paths == [path]
    handler.served[path] = root.crl(revoked=(root.ask,), next_update=datetime(2027, 1, 1, tzinfo=UTC))
    later = datetime(2026, 2, 1, tzinfo=UTC)  # past the cached CRL's next update: asked again
    with pytest.raises(QuoteError, match=r"ASK certificate .* is revoked"):
        snp.verify_report(root.report(RD), trust, later, certs=certs)
    assert handler.paths == [path, path]
