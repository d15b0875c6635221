"""NVIDIA GPU evidence: nvtrust's H100 sample at a fixed time, and a test root."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nvidia_test_root import AT, NvidiaTestRoot

from bytereplay.cli import main
from bytereplay.errors import QuoteError
from verifier.tee import nvidia, nvidia_rim, nvidia_spdm
from verifier.tee.base import SchemeTrust, verify_quote

NV = Path(__file__).resolve().parent.parent / "fixtures" / "tee" / "nvidia"
REPORT = (NV / "hopperAttestationReport.txt").read_bytes()
CHAIN = (NV / "hopperCertChain.txt").read_bytes()
CLAIMS = json.loads((NV / "hopperAttestationReport-claims.txt").read_text())
SAMPLE_AT = datetime(2025, 6, 1, tzinfo=UTC)
PINNED = SchemeTrust(configured=True)
SAMPLE_NONCE = bytes.fromhex("931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb")
RD = bytes(range(64))


def test_the_sample_verifies_at_a_fixed_time() -> None:
    result = nvidia.verify_report(REPORT, CHAIN, PINNED, SAMPLE_AT, SAMPLE_NONCE)
    assert result.root == "NVIDIA O=NVIDIA,CN=NVIDIA Device Identity CA"
    assert result.claims["driver_version"] == "550.90.07"
    assert result.claims["vbios_version"] == "96.00.9f.00.01"
    assert result.claims["cc_mode"] is None  # this 550 driver does not report it


def test_the_sample_agrees_with_nvtrusts_claims() -> None:
    result = nvidia.verify_report(REPORT, CHAIN, PINNED, SAMPLE_AT, None)
    config = CLAIMS["config"]
    shared = set(config) & set(result.claims)
    assert {"driver_version", "vbios_version", "fwid", "chip_sku", "board_id",
            "measurement_count"} <= shared
    for key in shared:
        assert result.claims[key] == config[key], key
    report = nvidia_spdm.parse_report(REPORT)
    ours = {str(i): v.hex() for i, v in report.measurements().items()}
    assert ours == CLAIMS["measurements"]


def test_the_pinned_root_is_the_shipped_one() -> None:
    assert nvidia.device_root().subject.rfc4514_string() == "O=NVIDIA,CN=NVIDIA Device Identity CA"


def test_a_flipped_byte_anywhere_in_the_measurement_records_is_refused() -> None:
    raw = bytearray(nvidia_spdm.parse_report(REPORT).raw)
    report = nvidia_spdm.parse_report(bytes(raw))
    start = nvidia_spdm.REQUEST_LEN + 8
    end = start + sum(4 + 3 + len(b.value) for b in report.blocks)
    for at in range(start, end, 97):  # every record, header and value bytes alike
        bad = bytearray(raw)
        bad[at] ^= 0x01
        with pytest.raises(QuoteError, match=r"signature is invalid|measurement block"):
            nvidia.verify_report(bytes(bad), CHAIN, PINNED, SAMPLE_AT, SAMPLE_NONCE)


@pytest.mark.parametrize(("case", "reason"), [
    (2, "no FWID"), (3, "chain breaks at position 1"), (4, "no FWID")])
def test_nvtrusts_bad_chains_are_refused(case: int, reason: str) -> None:
    chain = (NV / f"hopper_cert_chain_case{case}.txt").read_bytes()
    with pytest.raises(QuoteError, match=reason):
        nvidia.verify_report(REPORT, chain, PINNED, SAMPLE_AT, None)


def test_a_wrong_nonce_is_refused() -> None:
    with pytest.raises(QuoteError, match="nonce is not the expected one"):
        nvidia.verify_report(REPORT, CHAIN, PINNED, SAMPLE_AT, bytes(32))


def test_truncated_and_trailing_bytes_name_the_offset() -> None:
    raw = nvidia_spdm.parse_report(REPORT).raw
    with pytest.raises(QuoteError, match=r"signature at offset 4021 needs 96 bytes, 95 left"):
        nvidia_spdm.parse_report(raw[:-1])
    with pytest.raises(QuoteError, match=r"1 trailing bytes after the signature at offset 4117"):
        nvidia_spdm.parse_report(raw + b"\0")
    with pytest.raises(QuoteError, match="truncated"):
        nvidia_spdm.parse_report(REPORT[:100])
    with pytest.raises(QuoteError, match="neither"):
        nvidia_spdm.parse_report(b"not hex")


def test_the_test_root_quote_verifies_and_is_named() -> None:
    root = NvidiaTestRoot()
    result = verify_quote(root.quote(RD), {"nvidia": root.trust()}, RD, AT)
    assert result.chain_ok and not result.hardware
    assert result.root == nvidia.TEST_ROOT_NAME == "TEST ROOT (not NVIDIA)"
    assert nvidia.REASON_NOT_COMPARED in result.reasons
    assert nvidia.REASON_NO_REVOCATION in result.reasons
    assert result.claims["cc_mode"] == "on" and result.claims["driver_version"] == "550.90.07"
    assert result.measurements["nvidia.1"]


def test_the_test_root_refusals() -> None:
    root = NvidiaTestRoot()
    trusts = {"nvidia": root.trust()}
    with pytest.raises(QuoteError, match="not bound"):
        verify_quote(root.quote(RD), trusts, bytes(64), AT)
    with pytest.raises(QuoteError, match="does not end at the TEST ROOT"):
        verify_quote(root.quote(RD), {"nvidia": NvidiaTestRoot().trust()}, RD, AT)
    with pytest.raises(QuoteError, match="does not end at the NVIDIA"):
        verify_quote(root.quote(RD), {"nvidia": PINNED}, RD, AT)
    with pytest.raises(QuoteError, match="not valid at"):
        verify_quote(root.quote(RD), trusts, RD, datetime(2050, 1, 1, tzinfo=UTC))
    other = NvidiaTestRoot(fwid=bytes(48))
    quote = other.quote(RD)
    quote["cert_chain"] = root.quote(RD)["cert_chain"]
    with pytest.raises(QuoteError, match="FWID does not match"):
        verify_quote(quote, trusts, RD, AT)
    with pytest.raises(QuoteError, match="only name a test root"):
        verify_quote(root.quote(RD), {"nvidia": SchemeTrust(configured=True,
                                                            roots=(root.root_pem(),))}, RD, AT)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    rc = main(["quote", "verify", *argv])
    return rc, capsys.readouterr().out


def test_cli_sample_json(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = cli(capsys, str(NV / "hopperAttestationReport.txt"), "--kind", "nvidia",
                  "--cert", str(NV / "hopperCertChain.txt"), "--nonce", SAMPLE_NONCE.hex(),
                  "--at", "2025-06-01T00:00:00Z", "--json")
    doc = json.loads(out)
    assert rc == 1 and doc["verified"] is False  # measurements not compared
    assert doc["driver_version"] == "550.90.07" and doc["vbios_version"] == "96.00.9f.00.01"
    assert doc["cc_mode"] is None and doc["mismatched_measurements"] is None
    assert doc["root"] == "NVIDIA O=NVIDIA,CN=NVIDIA Device Identity CA"
    assert nvidia.REASON_NOT_COMPARED in doc["reasons"]
    assert doc["measurements"]["nvidia.2"] == CLAIMS["measurements"]["2"]


def test_cli_refusals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [str(NV / "hopperAttestationReport.txt"), "--kind", "nvidia",
            "--at", "2025-06-01T00:00:00Z"]
    rc, out = cli(capsys, *base, "--cert", str(NV / "hopper_cert_chain_case3.txt"))
    assert rc == 1 and "chain breaks" in out
    rc, out = cli(capsys, *base, "--cert", str(NV / "hopperCertChain.txt"), "--nonce", "00" * 32)
    assert rc == 1 and "nonce is not the expected one" in out
    short = tmp_path / "short.txt"
    short.write_bytes(REPORT[:4000])
    assert main(["quote", "verify", str(short), "--kind", "nvidia", "--cert",
                 str(NV / "hopperCertChain.txt")]) == 2
    assert "offset 45 needs 3520 bytes" in capsys.readouterr().err
    assert main(["quote", "verify", *base]) == 2  # no --cert
    assert "--cert CHAIN.txt" in capsys.readouterr().err
    assert main(["quote", "verify", *base, "--cert", str(NV / "hopperCertChain.txt"),
                 "--nonce", "zz"]) == 2
    assert "--nonce must be 64 hex digits" in capsys.readouterr().err


# -- RIMs ---------------------------------------------------------------------------------

VBIOS_RIM = NV / "1010_0200_882_96005E0001_test_no_gpu.swidtag"
DRIVER_RIM = NV / "Driver_RIM_test_no_gpu.swidtag"
SAMPLE_MISMATCHES = [2, 3, 4, 8, 10, 12, 22, 23, 26, 27, 28, 30, 31, 32, 33, 35, 37, 38, 40, 41]


def test_the_sample_rims_verify_against_the_pinned_rim_root() -> None:
    vbios = nvidia_rim.verify_rim(VBIOS_RIM.read_bytes(), SAMPLE_AT, "vbios")
    driver = nvidia_rim.verify_rim(DRIVER_RIM.read_bytes(), SAMPLE_AT, "driver")
    assert vbios.version == "96.00.5E.00.01" and driver.version == "545.00"
    assert "HCC RIM L4 Signer" in vbios.signer
    assert sorted(vbios.golden) == [1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13]
    assert 8 in driver.golden and not set(driver.golden) & set(vbios.golden)
    with pytest.raises(QuoteError, match="not valid at"):  # the VBIOS RIM signer expired
        nvidia_rim.verify_rim(VBIOS_RIM.read_bytes(), datetime(2025, 7, 1, tzinfo=UTC))


def test_a_changed_rim_is_refused() -> None:
    text = VBIOS_RIM.read_bytes()
    golden = nvidia_rim.verify_rim(text, SAMPLE_AT).golden[2][0].hex()
    changed = text.replace(golden.encode(), ("0" * 96).encode(), 1)
    assert changed != text
    with pytest.raises(QuoteError, match="XML signature does not verify"):
        nvidia_rim.verify_rim(changed, SAMPLE_AT)
    with pytest.raises(QuoteError, match="not XML"):
        nvidia_rim.verify_rim(text[:500], SAMPLE_AT)
    # found by the fuzzer: signxml's schema check raises lxml's own errors
    schema = text.replace(b"ds:SignatureValue", b"ds:SignatureValu")
    with pytest.raises(QuoteError, match="XML signature does not verify"):
        nvidia_rim.verify_rim(schema, SAMPLE_AT)


def test_the_sample_report_mismatches_the_sample_rims(capsys: pytest.CaptureFixture[str]) -> None:
    result = nvidia.verify_report(REPORT, CHAIN, PINNED, SAMPLE_AT, SAMPLE_NONCE)
    compared = nvidia.compare_rims(result, NV, SAMPLE_AT)
    assert compared.claims["mismatched_measurements"] == SAMPLE_MISMATCHES
    verification = nvidia.to_verification(compared, bytes(64))
    assert not verification.hardware
    assert verification.claims["mismatched_measurements"] == SAMPLE_MISMATCHES
    assert any("indexes 2, 3, 4, 8" in r for r in verification.reasons)
    rc, out = cli(capsys, str(NV / "hopperAttestationReport.txt"), "--kind", "nvidia",
                  "--cert", str(NV / "hopperCertChain.txt"), "--rims", str(NV),
                  "--at", "2025-06-01T00:00:00Z", "--json")
    assert rc == 1 and json.loads(out)["mismatched_measurements"] == SAMPLE_MISMATCHES


def test_hardware_only_when_rims_match_and_cc_mode_is_on() -> None:
    root = NvidiaTestRoot()
    nonce = bytes(32)
    for cc, mismatched, hardware in ((1, [], True), (2, [], False), (0, [], False),
                                     (None, [], False), (1, [3], False), (1, None, False)):
        result = nvidia.verify_report(root.report(nonce, cc_mode=cc), root.chain_pem(),
                                      root.trust(), AT, nonce)
        claims = {**result.claims, "mismatched_measurements": mismatched}
        verification = nvidia.to_verification(
            nvidia.NvidiaResult(result.report, result.root, claims), bytes(64))
        assert verification.hardware is hardware, (cc, mismatched)
        assert verification.debug is (cc == 2)


def test_the_quote_path_compares_with_the_configured_rims() -> None:
    root = NvidiaTestRoot()
    trust = dataclasses.replace(root.trust(), collateral=str(NV))
    result = verify_quote(root.quote(RD), {"nvidia": trust}, RD, SAMPLE_AT)
    assert not result.hardware and 8 in result.claims["mismatched_measurements"]
    assert [r["version"] for r in result.claims["rims"]] == ["96.00.5E.00.01", "545.00"]
    # a RIM service URL (tests/test_nvidia_rim_service_ocsp.py); none answers on port 9
    url = dataclasses.replace(trust, collateral="http://127.0.0.1:9")
    with pytest.raises(QuoteError, match=r"RIM service at http://127\.0\.0\.1:9/v1/rim/"
                                         r"NV_GPU_DRIVER_GH100_550\.90\.07 could not be reached"):
        verify_quote(root.quote(RD), {"nvidia": url}, RD, SAMPLE_AT)


def test_the_ear_tee_facts_carry_the_gpu_facts() -> None:
    from verifier.pipeline import tee_facts

    root = NvidiaTestRoot()
    trust = dataclasses.replace(root.trust(), collateral=str(NV))
    result = verify_quote(root.quote(RD), {"nvidia": trust}, RD, SAMPLE_AT)
    facts = tee_facts(result, {"nvidia": trust})
    assert facts["test_root"] and facts["root"] == "TEST ROOT (not NVIDIA)"
    assert facts["gpu"]["driver_version"] == "550.90.07" and facts["gpu"]["cc_mode"] == "on"
    assert 8 in facts["gpu"]["mismatched_measurements"] and not facts["hardware"]
    json.dumps(facts)
