"""NVIDIA GPU evidence: nvtrust's H100 sample at a fixed time, and a test root."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nvidia_test_root import AT, NvidiaTestRoot

from bytereplay.cli import main
from bytereplay.errors import QuoteError
from verifier.tee import nvidia, nvidia_spdm
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
