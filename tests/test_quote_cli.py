"""`bytereplay quote verify`: exit 0 verified, 1 not verified (reasons), 2 malformed or usage,
on the real samples at the fixed times their origin tables give (never the wall clock)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bytereplay.cli import main

INTEL = Path(__file__).resolve().parent.parent / "fixtures" / "tee" / "intel"
AMD = Path(__file__).resolve().parent.parent / "fixtures" / "tee" / "amd"
TDX_AT = "2025-06-19T10:32:28Z"
SNP_AT = "2025-06-01T00:00:00Z"
MILAN_MIN = "bl=3,tee=0,snp=8,ucode=115"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(["quote", "verify", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_tdx_up_to_date(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, str(INTEL / "tdx_quote"), "--collateral",
                     str(INTEL / "tdx_quote_collateral.json"), "--at", TDX_AT, "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["verified"] is True and doc["kind"] == "tdx"
    assert doc["tcb_status"] == "UpToDate" and doc["debug"] is False
    assert doc["root"] == "Intel SGX Root CA" and doc["test_root"] is False
    assert len(doc["report_data"]) == 128 and "tdx.mrtd" in doc["measurements"]
    assert set(doc) >= {"kind", "verified", "tcb_status", "reasons", "report_data",
                        "measurements", "debug"}


@pytest.mark.parametrize(("quote", "collateral", "at"), [
    ("tdx_quote_outdated", "tdx_quote_outdated_collateral.json", "2026-02-18T10:58:52Z"),
    ("tdx_prod_quote_SPR_E4.dat", "tdx_prod_quote_SPR_E4.collateral.json", "2023-06-18T08:42:59Z"),
])
def test_tdx_no_matching_tcb_level(capsys: pytest.CaptureFixture[str], quote: str,
                                   collateral: str, at: str) -> None:
    rc, out, _ = run(capsys, str(INTEL / quote), "--collateral", str(INTEL / collateral),
                     "--at", at)
    assert rc == 1 and "NOT VERIFIED" in out and "no matching TCB level" in out


def test_tdx_a_year_after_expiry(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, str(INTEL / "tdx_quote"), "--collateral",
                     str(INTEL / "tdx_quote_collateral.json"), "--at", "2026-07-19T10:00:36Z")
    assert rc == 1 and "expired at 2025-07-19T10:00:35Z" in out


def test_tdx_report_data(capsys: pytest.CaptureFixture[str]) -> None:
    args = (str(INTEL / "tdx_quote"), "--collateral", str(INTEL / "tdx_quote_collateral.json"),
            "--at", TDX_AT)
    rc, out, _ = run(capsys, *args, "--json")
    good = json.loads(out)["report_data"]
    assert run(capsys, *args, "--report-data", good)[0] == 0
    rc, out, _ = run(capsys, *args, "--report-data", "00" * 64)
    assert rc == 1 and "not bound" in out


def test_tdx_flipped_byte_in_the_td_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    quote = bytearray((INTEL / "tdx_quote").read_bytes())
    quote[48 + 136] ^= 1  # MRTD
    (tmp_path / "q").write_bytes(bytes(quote))
    rc, out, _ = run(capsys, str(tmp_path / "q"), "--collateral",
                     str(INTEL / "tdx_quote_collateral.json"), "--at", TDX_AT)
    assert rc == 1 and "NOT VERIFIED" in out


@pytest.mark.parametrize("report", ["report_milan.hex", "snp_test-report.bin"])
def test_snp_milan_reports_verify(capsys: pytest.CaptureFixture[str], report: str) -> None:
    vcek = {"report_milan.hex": "vcek_milan.der", "snp_test-report.bin": "snp_test-vcek.der"}
    rc, out, _ = run(capsys, str(AMD / report), "--cert", str(AMD / vcek[report]), "--at", SNP_AT,
                     "--allow-tcb", "UpToDate", "--allow-tcb", "MinimumNotConfigured", "--json")
    doc = json.loads(out)
    assert rc == 0 and doc["verified"] is True and doc["kind"] == "snp"
    assert doc["root"] == "AMD ARK-Milan" and "snp.measurement" in doc["measurements"]


def test_snp_minimum_tcb(capsys: pytest.CaptureFixture[str]) -> None:
    args = (str(AMD / "report_milan.hex"), "--cert", str(AMD / "vcek_milan.der"), "--at", SNP_AT)
    rc, out, _ = run(capsys, *args, "--min-tcb", MILAN_MIN)
    assert rc == 0 and "TCB UpToDate" in out
    rc, out, _ = run(capsys, *args, "--min-tcb", "bl=3,tee=0,snp=9,ucode=115")
    assert rc == 1 and "OutOfDate" in out
    # Without a minimum, pessimistic: refused, naming the setting.
    rc, out, _ = run(capsys, *args)
    assert rc == 1 and "tee.snp.min_tcb" in out


def test_snp_debug_and_bad_vcek_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run(capsys, str(AMD / "attestation.bin"), "--cert", str(AMD / "vcek.testcer"),
                     "--at", SNP_AT, "--min-tcb", "bl=0,tee=0,snp=0,ucode=0")
    assert rc == 1 and "debug" in out
    for bad in ("snp_test-vcek-invalid-legacy.der", "snp_test-vcek-invalid-new.der"):
        rc, out, _ = run(capsys, str(AMD / "snp_test-report.bin"), "--cert", str(AMD / bad),
                         "--at", SNP_AT, "--min-tcb", MILAN_MIN)
        assert rc == 1, bad


def test_snp_flipped_measurement_bit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = bytearray((AMD / "snp_test-report.bin").read_bytes())
    report[0x90] ^= 0x01
    (tmp_path / "r").write_bytes(bytes(report))
    rc, out, _ = run(capsys, str(tmp_path / "r"), "--cert", str(AMD / "snp_test-vcek.der"),
                     "--at", SNP_AT, "--min-tcb", MILAN_MIN)
    assert rc == 1 and "signature" in out


@pytest.mark.parametrize("argv", [
    ["{readme}"],                                            # neither kind
    ["{truncated}"],                                          # TDX header, truncated body
    ["{tdx}", "--at", "yesterday"],                           # not RFC 3339
    ["{tdx}", "--at", "2025-06-19T10:32:28"],                 # no offset
    ["{tdx}"],                                                # TDX without collateral
    ["{tdx}", "--cert", "{tdx}"],                             # --cert is for SNP
    ["{snp}", "--collateral", "{tdx}"],                       # --collateral is for TDX
    ["{snp}", "--min-tcb", "bl"],                             # malformed minimum
    ["{tdx}", "--collateral", "{readme}", "--at", TDX_AT],   # collateral not JSON
    ["{tdx}", "--report-data", "abc"],
    ["{tdx}", "--kind", "snp"],                               # a TDX quote read as SNP
    ["/nonexistent/quote"],
])
def test_usage_and_malformed_input_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          argv: list[str]) -> None:
    (tmp_path / "t").write_bytes((INTEL / "tdx_quote").read_bytes()[:300])
    names = {"tdx": str(INTEL / "tdx_quote"), "snp": str(AMD / "snp_test-report.bin"),
             "truncated": str(tmp_path / "t"), "readme": str(INTEL / "ORIGINS.md")}
    argv = [a.format(**names) for a in argv]
    rc, _out, err = run(capsys, *argv)
    assert rc == 2 and err.startswith("bytereplay: error: ") and "Traceback" not in err
