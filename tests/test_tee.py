"""TEE quote providers: the simulated CA chain, configfs-tsm against a fake kernel tree,
and the NVIDIA provider's clear refusal on a machine without a CC GPU."""

from __future__ import annotations

import hashlib
import os
import stat
import struct
import subprocess
import sys
import threading
import types
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fake_tsm import TestRootKernel
from loopback_pcs import LoopbackPcs
from quote_helpers import Trusts, all_trusts, sim_trusts
from quote_helpers import verify as verify_quote
from snp_test_root import SnpTestRoot
from tdx_test_root import TdxTestRoot

from attester.config import AttesterConfig
from attester.tee import make_provider
from attester.tee.nvidia import NvidiaProvider
from attester.tee.simulated import (
    CA_FILE,
    CA_KEY_FILE,
    LEAF_FILE,
    LEAF_KEY_FILE,
    SimulatedPlatform,
    SimulatedProvider,
)
from attester.tee.tsm import TsmProvider
from bytereplay.eat import gpu_nonce
from bytereplay.encoding import b64url_decode, b64url_encode
from bytereplay.errors import KeyConfigError, ProviderUnavailable, QuoteError, UsageError
from bytereplay.home import Home
from verifier.tee import base
from verifier.tee.simulated import load_ca_pem

RD = hashlib.sha512(b"report data").digest()
MEAS = {"model_digest": "sha-256:" + "1" * 64, "container_digest": "unknown",
        "runtime": "bytereplay/0.1.0"}


# -- simulated ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulatedProvider, Trusts, Path]:
    folder = tmp_path_factory.mktemp("home") / "simulated-tee"
    provider = SimulatedProvider(folder)
    pem = load_ca_pem(folder)
    assert pem is not None
    return provider, sim_trusts(pem), folder


def test_simulated_files_and_modes(sim: tuple[SimulatedProvider, Trusts, Path]) -> None:
    provider, _, folder = sim
    for name in (CA_KEY_FILE, LEAF_KEY_FILE):
        assert stat.S_IMODE((folder / name).stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate((folder / CA_FILE).read_bytes())
    cn = ca.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
    assert "SIMULATED" in str(cn) and "not hardware" in str(cn)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    leaf = x509.load_pem_x509_certificate((folder / LEAF_FILE).read_bytes())
    leaf.verify_directly_issued_by(ca)
    # Loading again reuses the same CA and key.
    again = SimulatedPlatform.load_or_create(folder)
    assert again.ca == ca and again.leaf == provider.platform.leaf


def test_simulated_quote_verifies_to_its_ca(sim: tuple[SimulatedProvider, Trusts, Path]) -> None:
    provider, trust, _ = sim
    quote = provider.quote(RD, MEAS)
    assert quote["provider"] == "simulated" and quote["simulated"] is True
    assert "SIMULATED" in quote["platform"]
    assert b64url_decode(quote["report_data"]) == RD and len(quote["cert_chain"]) == 2
    result = verify_quote(quote, trust, RD)
    assert result.provider == "simulated" and result.simulated and not result.hardware
    assert result.chain_ok and result.measurements == MEAS and result.report_data == RD
    assert any("not hardware" in r for r in result.reasons)


def test_simulated_quote_fails_against_another_ca(
        sim: tuple[SimulatedProvider, Trusts, Path], tmp_path: Path) -> None:
    provider, trust, _ = sim
    other = SimulatedProvider(tmp_path / "other")
    other_pem = load_ca_pem(tmp_path / "other")
    assert other_pem is not None
    quote = provider.quote(RD, MEAS)
    with pytest.raises(QuoteError, match="does not chain to a trusted simulated CA"):
        verify_quote(quote, sim_trusts(other_pem), RD)
    # Several anchors: the right one among them is enough.
    both = sim_trusts(other_pem, *trust["simulated"].roots)
    assert verify_quote(quote, both, RD).chain_ok
    # A leaf from the other CA swapped into our quote: chain or signature fails.
    swapped = {**quote, "cert_chain": other.quote(RD, MEAS)["cert_chain"]}
    with pytest.raises(QuoteError, match="does not chain"):
        verify_quote(swapped, trust, RD)
    with pytest.raises(QuoteError, match="signature"):
        verify_quote(swapped, both, RD)
    with pytest.raises(QuoteError, match="no simulated platform CA"):
        verify_quote(quote, sim_trusts(), RD)


def test_simulated_quote_refusals(sim: tuple[SimulatedProvider, Trusts, Path]) -> None:
    provider, trust, _ = sim
    quote = provider.quote(RD, MEAS)
    with pytest.raises(QuoteError, match="not bound"):
        verify_quote(quote, trust, bytes(64))
    with pytest.raises(QuoteError, match="signature"):
        verify_quote({**quote, "measurements": {**MEAS, "runtime": "x"}}, trust, RD)
    with pytest.raises(QuoteError, match="signature"):
        verify_quote({**quote, "signature": b64url_encode(b"\x30\x06\x02\x01\x01\x02\x01\x01")},
                     trust, RD)
    with pytest.raises(QuoteError, match="'simulated': true"):
        verify_quote({**quote, "simulated": False}, trust, RD)
    with pytest.raises(QuoteError, match="simulated"):
        verify_quote({**quote, "simulated": "yes"}, trust, RD)
    # The CA certificate itself offered as the attestation key: refused (CA:TRUE).
    ca_only = {**quote, "cert_chain": [quote["cert_chain"][1]]}
    with pytest.raises(QuoteError, match="CA:FALSE"):
        verify_quote(ca_only, trust, RD)
    with pytest.raises(QuoteError, match="cert_chain"):
        verify_quote({**quote, "cert_chain": []}, trust, RD)
    with pytest.raises(QuoteError, match="cannot be read"):
        verify_quote({**quote, "cert_chain": ["bm90IGEgY2VydA=="]}, trust, RD)
    with pytest.raises(QuoteError, match="64 bytes"):
        provider.quote(b"short", MEAS)
    with pytest.raises(QuoteError, match="64 bytes"):
        verify_quote(quote, trust, b"short")
    with pytest.raises(QuoteError, match="PEM"):
        verify_quote(quote, sim_trusts("junk"), RD)


def test_simulated_certificate_validity(sim: tuple[SimulatedProvider, Trusts, Path]) -> None:
    provider, trust, _ = sim
    quote = provider.quote(RD, MEAS)
    later = datetime.now(UTC) + timedelta(days=3 * 365)
    with pytest.raises(QuoteError, match="expired"):
        verify_quote(quote, trust, RD, later)
    earlier = datetime.now(UTC) - timedelta(days=1)
    with pytest.raises(QuoteError, match="not valid yet"):
        verify_quote(quote, trust, RD, earlier)


def test_simulated_key_mode_is_checked(tmp_path: Path) -> None:
    SimulatedProvider(tmp_path / "s")
    os.chmod(tmp_path / "s" / LEAF_KEY_FILE, 0o644)
    with pytest.raises(KeyConfigError, match="0600"):
        SimulatedProvider(tmp_path / "s")


def test_simulated_ca_created_once_under_concurrency(tmp_path: Path) -> None:
    folder = tmp_path / "race"
    results: list[bytes] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            p = SimulatedPlatform.load_or_create(folder)
            results.append(p.ca.public_bytes(serialization.Encoding.DER))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(set(results)) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["race"]  # no temp folders left


# -- tsm (configfs-tsm) ---------------------------------------------------------------

# The kernel's outblob is a real-layout quote under a TEST ROOT, so the tsm capture and the
# tdx/snp verifiers meet exactly as on hardware (the test roots are named as such).
TDX_ROOT = TdxTestRoot()
SNP_ROOT = SnpTestRoot()


def tdx_quote(report_data: bytes, version: int = 4) -> bytes:
    return TDX_ROOT.quote(report_data, version=version)


def snp_report(report_data: bytes) -> bytes:
    return SNP_ROOT.report(report_data, version=3)


def tee_trusts() -> Trusts:
    """The test roots trusted for tdx and snp (tdx collateral carried by a tsm quote)."""
    return {"tdx": TDX_ROOT.trust(collateral=None), "snp": SNP_ROOT.trust()}


def at() -> datetime:
    return TDX_ROOT.at


def FakeKernel(provider: str = "tdx_guest", *, races: int = 0, version: int = 4,
               ignore_inblob: bool = False) -> TestRootKernel:
    return TestRootKernel(TDX_ROOT if provider == "tdx_guest" else SNP_ROOT, races=races,
                          version=version, ignore_inblob=ignore_inblob)


@pytest.fixture
def tsm_root(tmp_path: Path) -> Path:
    root = tmp_path / "sys" / "kernel" / "config" / "tsm" / "report"
    root.mkdir(parents=True)
    return root


def tdx_with_collateral(quote: dict[str, Any]) -> dict[str, Any]:
    """What the attester would carry with collateral configured (the verifier also takes it)."""
    return {**quote, "collateral": dict(TDX_ROOT.collateral)}


@pytest.mark.parametrize("version", [4, 5])
def test_tsm_tdx_quote(tsm_root: Path, version: int) -> None:
    fs = FakeKernel("tdx_guest", version=version)
    quote = TsmProvider(tsm_root, fs=fs).quote(RD, MEAS)
    assert quote["provider"] == "tsm" and quote["simulated"] is False
    assert quote["tee"] == "tdx" and quote["kernel_provider"] == "tdx_guest"
    assert quote["generation"] == 1 and quote["software_measurements"] == MEAS
    assert len(fs.entries) == 1 and not fs.entries[0].exists()  # entry removed
    assert list(tsm_root.iterdir()) == []
    result = verify_quote(tdx_with_collateral(quote), tee_trusts(), RD, at())
    assert result.provider == "tsm" and not result.simulated and result.hardware
    assert result.chain_ok and result.report_data == RD and result.scheme == "tdx"
    assert result.root == "TEST ROOT (not Intel)" and result.tcb_status == "UpToDate"
    assert result.measurements["tdx.mrtd"] == TDX_ROOT.td_report(RD)[136:184].hex()
    with pytest.raises(QuoteError, match="not bound"):
        verify_quote(tdx_with_collateral(quote), tee_trusts(), bytes(64), at())
    with pytest.raises(QuoteError, match="no trust configuration for tdx"):
        verify_quote(quote, sim_trusts(), RD, at())
    # Configured, but with Intel's pinned root: a quote under a test root is refused.
    with pytest.raises(QuoteError, match="Intel SGX Root CA"):
        verify_quote(tdx_with_collateral(quote), all_trusts(), RD, at())


def test_tsm_snp_report(tsm_root: Path) -> None:
    quote = TsmProvider(tsm_root, fs=FakeKernel("sev_guest")).quote(RD, MEAS)
    assert quote["tee"] == "sev-snp" and b64url_decode(quote["auxblob"]) == SNP_ROOT.cert_table()
    result = verify_quote(quote, tee_trusts(), RD, at())
    assert result.hardware and result.chain_ok and result.scheme == "snp"
    assert result.root == "TEST ROOT (not AMD)" and result.tcb_status == "UpToDate"
    assert result.measurements["snp.measurement"] == snp_report(RD)[0x90:0xC0].hex()
    with pytest.raises(QuoteError, match="no trust configuration for snp"):
        verify_quote(quote, sim_trusts(), RD, at())
    with pytest.raises(QuoteError):  # AMD's pinned ARKs do not sign the test chain
        verify_quote(quote, all_trusts(), RD, at())


def test_tsm_quote_not_bound(tsm_root: Path) -> None:
    quote = TsmProvider(tsm_root, fs=FakeKernel(ignore_inblob=True)).quote(RD, MEAS)
    with pytest.raises(QuoteError, match="not bound to this evidence"):
        verify_quote(tdx_with_collateral(quote), tee_trusts(), RD, at())


def test_tsm_generation_race(tsm_root: Path) -> None:
    once = FakeKernel(races=1)
    quote = TsmProvider(tsm_root, fs=once).quote(RD, MEAS)  # retried, then fine
    assert len(once.entries) == 2 and verify_quote(tdx_with_collateral(quote), tee_trusts(), RD, at())
    with pytest.raises(ProviderUnavailable, match="another writer"):
        TsmProvider(tsm_root, fs=FakeKernel(races=10)).quote(RD, MEAS)
    assert list(tsm_root.iterdir()) == []


def test_tsm_without_the_tree(tmp_path: Path) -> None:
    with pytest.raises(ProviderUnavailable, match=r"configfs-tsm not available: .* does not exist"):
        TsmProvider(tmp_path / "nope")
    with pytest.raises(ProviderUnavailable, match="configfs-tsm not available"):
        make_provider("tsm", simulated_dir=tmp_path, tsm_root=tmp_path / "nope")
    # A plain folder that is not configfs: no provider file appears. Clear error.
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ProviderUnavailable, match="reading provider failed"):
        TsmProvider(plain).quote(RD, MEAS)


def test_tsm_parse_refusals() -> None:
    def q(blob: bytes, tee: str = "tdx") -> dict[str, Any]:
        return {"provider": "tsm", "simulated": False, "tee": tee, "outblob": b64url_encode(blob)}

    with pytest.raises(QuoteError, match="truncated"):
        verify_quote(q(tdx_quote(RD)[:300]), all_trusts(), RD)
    with pytest.raises(QuoteError, match="not a TDX quote"):
        verify_quote(q(struct.pack("<HHI", 4, 2, 0) + bytes(700)), all_trusts(), RD)
    with pytest.raises(QuoteError, match="version 3"):
        verify_quote(q(struct.pack("<HHI", 3, 2, 0x81) + bytes(700)), all_trusts(), RD)
    with pytest.raises(QuoteError, match="SEV-SNP report is"):
        verify_quote(q(snp_report(RD)[:100], "sev-snp"), all_trusts(), RD)
    with pytest.raises(QuoteError, match="unknown TEE"):
        verify_quote(q(b"x", "cca"), all_trusts(), RD)
    with pytest.raises(QuoteError, match="calls itself simulated"):
        verify_quote({**q(tdx_quote(RD)), "simulated": True}, all_trusts(), RD)


# -- tsm: TDX collateral fetched by the attester (tdx_collateral_url) ----------------

def _tdx_provider(tsm_root: Path, url: str | None, cache: Path | None) -> TsmProvider:
    """A tsm provider on the TEST ROOT kernel whose clock reads the test root's time."""
    return TsmProvider(tsm_root, fs=FakeKernel("tdx_guest"), collateral_url=url,
                       collateral_cache=cache, clock=at)


def test_tsm_tdx_quote_carries_collateral_from_a_pcs(tsm_root: Path, tmp_path: Path) -> None:
    pcs = LoopbackPcs(dict(TDX_ROOT.collateral))
    cache = tmp_path / "collateral-cache"
    try:
        quote = _tdx_provider(tsm_root, pcs.url + "/", cache).quote(RD, MEAS)
        assert len(pcs.requests) == 4
        assert any(f"fmspc={TDX_ROOT.fmspc.hex().upper()}" in r for r in pcs.requests)
        assert any("ca=platform" in r for r in pcs.requests)
    finally:
        pcs.close()
    assert quote["collateral"] == TDX_ROOT.collateral
    assert (cache / f"tdx-platform-{TDX_ROOT.fmspc.hex().upper()}.json").is_file()
    # The verifier, configured with no collateral source of its own, uses the quote's.
    trusts = {"tdx": TDX_ROOT.trust(collateral=None)}
    result = base.verify_quote(quote, trusts, RD, TDX_ROOT.at)
    assert result.hardware and result.tcb_status == "UpToDate"
    assert any("carried in the quote object" in r for r in result.reasons)
    with pytest.raises(QuoteError, match="no tdx collateral"):
        base.verify_quote({k: v for k, v in quote.items() if k != "collateral"}, trusts, RD,
                          TDX_ROOT.at)
    # A new provider (a restarted attester), the PCS gone: served from the disk cache.
    again = _tdx_provider(tsm_root, pcs.url, cache).quote(RD, MEAS)
    assert again["collateral"] == TDX_ROOT.collateral and len(pcs.requests) == 4
    assert base.verify_quote(again, trusts, RD, TDX_ROOT.at).hardware


def test_tsm_tdx_collateral_expired_in_the_cache_is_refetched(tsm_root: Path,
                                                             tmp_path: Path) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    pcs = LoopbackPcs(TDX_ROOT.collateral_at(issued=t0, next_update=t0 + timedelta(days=30)))
    now = [t0 + timedelta(days=1)]
    provider = TsmProvider(tsm_root, fs=FakeKernel("tdx_guest"), collateral_url=pcs.url,
                           collateral_cache=tmp_path, clock=lambda: now[0])
    try:
        provider.quote(RD, MEAS)
        provider.quote(RD, MEAS)
        assert len(pcs.requests) == 4  # fresh: no second fetch
        t1 = t0 + timedelta(days=31)
        pcs.collateral = TDX_ROOT.collateral_at(issued=t1, next_update=t1 + timedelta(days=30))
        now[0] = t1 + timedelta(hours=1)
        quote = provider.quote(RD, MEAS)
        assert len(pcs.requests) == 8 and quote["collateral"] == pcs.collateral
    finally:
        pcs.close()


def test_tsm_tdx_collateral_fetch_failure_is_provider_unavailable(tsm_root: Path,
                                                                 tmp_path: Path) -> None:
    pcs = LoopbackPcs(dict(TDX_ROOT.collateral), status=503)
    try:
        with pytest.raises(ProviderUnavailable, match=r"tdx collateral from http://127\.0\.0\.1:\d+: "
                           r".*answered HTTP 503") as info:
            _tdx_provider(tsm_root, pcs.url, tmp_path).quote(RD, MEAS)
        assert "\n" not in info.value.detail
    finally:
        pcs.close()
    assert list(tsm_root.iterdir()) == [] and list(tmp_path.glob("tdx-*.json")) == []
    with pytest.raises(ProviderUnavailable, match=r"GET .* failed"):  # the PCS is gone
        _tdx_provider(tsm_root, pcs.url, tmp_path).quote(RD, MEAS)
    with pytest.raises(ProviderUnavailable, match="not an http"):
        TsmProvider(tsm_root, collateral_url="/srv/collateral")


def test_tsm_without_a_collateral_url_stores_none(tsm_root: Path, tmp_path: Path) -> None:
    quote = _tdx_provider(tsm_root, None, tmp_path).quote(RD, MEAS)
    assert "collateral" not in quote and list(tmp_path.iterdir()) == [tsm_root.parents[3]]
    provider = make_provider("tsm", simulated_dir=tmp_path, tsm_root=tsm_root)
    assert isinstance(provider, TsmProvider) and provider.collateral is None
    # SEV-SNP quotes never fetch TDX collateral, even with a URL configured.
    snp = TsmProvider(tsm_root, fs=FakeKernel("sev_guest"), collateral_url="http://127.0.0.1:9",
                      collateral_cache=tmp_path / "c", clock=at).quote(RD, MEAS)
    assert "collateral" not in snp and not (tmp_path / "c").exists()


def test_attester_config_tdx_collateral(tmp_path: Path) -> None:
    home = Home(tmp_path)
    config = AttesterConfig.from_mapping({"provider": "tsm",
                                          "tdx_collateral_url": "https://pccs.example:8081"})
    assert config.tdx_collateral_url == "https://pccs.example:8081"
    assert config.collateral_cache(home) == tmp_path / "tdx-collateral"
    other = AttesterConfig.from_mapping({"tdx_collateral_cache": str(tmp_path / "x")})
    assert other.tdx_collateral_url is None and other.collateral_cache(home) == tmp_path / "x"
    with pytest.raises(UsageError, match=r"attester\.tdx_collateral_url: expected an http"):
        AttesterConfig.from_mapping({"tdx_collateral_url": "/srv/collateral"})
    with pytest.raises(UsageError, match=r"attester\.tdx_collateral_cache: expected non-empty"):
        AttesterConfig.from_mapping({"tdx_collateral_cache": ""})
    provider = make_provider("tsm", simulated_dir=tmp_path, tsm_root=tmp_path,
                             tdx_collateral_url="http://127.0.0.1:9",
                             tdx_collateral_cache=config.collateral_cache(home))
    assert isinstance(provider, TsmProvider) and provider.collateral is not None
    assert provider.collateral.cache_dir == tmp_path / "tdx-collateral"


def test_the_tsm_provider_needs_no_dcap_qvl() -> None:
    """The attester extra has no dcap-qvl: capture and collateral fetch import neither it
    nor the verifier."""
    code = ("import sys, attester.tee.tsm, attester.config; "
            "print(sorted(m for m in sys.modules if m == 'dcap_qvl' or m.startswith('verifier')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- nvidia ---------------------------------------------------------------------------

def test_nvidia_not_available_here() -> None:
    """This machine has no NVIDIA CC GPU: a clear message, never a pynvml traceback."""
    with pytest.raises(ProviderUnavailable,
                       match=r"^NVIDIA confidential-computing GPU not available: ") as info:
        NvidiaProvider()
    assert "Traceback" not in info.value.detail
    assert info.value.status == 503
    with pytest.raises(ProviderUnavailable, match="NVIDIA confidential-computing GPU"):
        make_provider("nvidia", simulated_dir=Path("/nonexistent"))


def test_nvidia_without_pynvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(ProviderUnavailable, match=r"pynvml .* not installed"):
        NvidiaProvider()


class _NVMLError(Exception):
    pass


def fake_pynvml(*, cc: int = 1, fail_report: bool = False) -> types.ModuleType:
    """A stand-in for pynvml on a CC-mode GPU: the report starts with the SPDM request."""
    mod = types.ModuleType("pynvml")
    ns: Any = mod
    ns.NVMLError = _NVMLError
    ns.NVML_CC_SYSTEM_FEATURE_ENABLED = 1
    ns.nvmlInit = lambda: None
    ns.nvmlShutdown = lambda: None
    ns.nvmlSystemGetConfComputeState = lambda: types.SimpleNamespace(ccFeature=cc)
    ns.nvmlDeviceGetCount = lambda: 1
    ns.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    ns.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    ns.nvmlSystemGetDriverVersion = lambda: "550.90.07"

    def report(handle: Any, nonce: list[int]) -> Any:
        if fail_report:
            raise _NVMLError("Not Supported")
        spdm = bytes([0x11, 0xE0, 0x01, 0xFF]) + bytes(nonce) + b"\x00" + b"response..."
        return types.SimpleNamespace(attestationReport=list(spdm),
                                     attestationReportSize=len(spdm))

    ns.nvmlDeviceGetConfComputeGpuAttestationReport = report
    ns.nvmlDeviceGetConfComputeGpuCertificate = lambda h: types.SimpleNamespace(
        attestationCertChain=list(b"-----BEGIN CERTIFICATE-----"), attestationCertChainSize=27)
    return mod


def test_nvidia_quote_path_with_a_fake_nvml(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml())
    provider = NvidiaProvider()
    quote = provider.quote(RD, MEAS)
    assert quote["provider"] == "nvidia" and quote["simulated"] is False
    assert b64url_decode(quote["gpu_nonce"]) == gpu_nonce(RD) == hashlib.sha256(RD).digest()
    with pytest.raises(QuoteError, match=r"offset 37 .* not a 1\.1 MEASUREMENTS response"):
        verify_quote(quote, all_trusts(), RD)  # the fake response is not SPDM
    with pytest.raises(QuoteError, match="not bound"):
        verify_quote(quote, all_trusts(), bytes(64))
    with pytest.raises(QuoteError, match="no trust configuration for nvidia"):
        verify_quote(quote, sim_trusts(), RD)


def test_nvidia_cc_off_or_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(cc=0))
    with pytest.raises(ProviderUnavailable, match="not enabled"):
        NvidiaProvider()
    monkeypatch.setitem(sys.modules, "pynvml", fake_pynvml(fail_report=True))
    with pytest.raises(ProviderUnavailable, match=r"report could not be read .*Not Supported"):
        NvidiaProvider().quote(RD, MEAS)


def test_verify_quote_generic_refusals() -> None:
    with pytest.raises(QuoteError, match="JSON object"):
        verify_quote("quote", all_trusts(), RD)
    with pytest.raises(QuoteError, match="unknown quote kind"):
        verify_quote({"provider": "sgx", "simulated": False}, all_trusts(), RD)
    with pytest.raises(UsageError, match="unknown TEE provider"):
        make_provider("sgx", simulated_dir=Path("/nonexistent"))
