"""End to end with NVIDIA GPU evidence under a TEST ROOT, through the same code as on a GPU:

challenge (verifier) -> attester (the `nvidia` capture, NVML answered by a fake whose
reports have the real SPDM layout, signed under `tests/nvidia_test_root.py`) -> verifier
(the real `nvidia` scheme, trusting that test root, named as such) -> EAR.

Without RIMs the GPU's measurements are "not compared": the quote is checked (chain,
FWID, signature, nonce) but `hardware` is 32, never affirming, and `strict` denies.
The same Evidence under NVIDIA's pinned root is contraindicated. The verification
time is the verifier's fixed clock, never the wall clock.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from nvidia_test_root import AT, NvidiaTestRoot
from verifier_fixtures import CONTAINER, attest_once, new_home, shared_engine

from attester.tee.nvidia import NvidiaProvider
from bytereplay.ear import flat_submod, peek
from bytereplay.home import Home
from relying_party import evaluate
from verifier.config import TeeTrustConfig, VerifierConfig
from verifier.pipeline import Verifier

ROOT = NvidiaTestRoot()


def fake_nvml(root: NvidiaTestRoot, gpus: int = 1,
              driver: str = "550.90.07") -> types.ModuleType:
    """pynvml on `gpus` CC-mode GPUs whose reports are signed under `root` (NVML's driver
    version `driver`; the reports' own driver field stays 550.90.07)."""
    mod = types.ModuleType("pynvml")
    ns: Any = mod
    ns.NVML_CC_SYSTEM_FEATURE_ENABLED = 1
    ns.nvmlInit = ns.nvmlShutdown = lambda: None
    ns.nvmlSystemGetConfComputeState = lambda: types.SimpleNamespace(ccFeature=1)
    ns.nvmlDeviceGetCount = lambda: gpus
    ns.nvmlDeviceGetHandleByIndex = lambda i: ("gpu", i)
    ns.nvmlDeviceGetName = lambda h: "NVIDIA H100 80GB HBM3"
    ns.nvmlSystemGetDriverVersion = lambda: driver

    def report(handle: Any, nonce: list[int]) -> Any:
        spdm = root.report(bytes(nonce))
        return types.SimpleNamespace(attestationReport=list(spdm),
                                     attestationReportSize=len(spdm))

    chain = root.chain_pem()
    ns.nvmlDeviceGetConfComputeGpuAttestationReport = report
    ns.nvmlDeviceGetConfComputeGpuCertificate = lambda h: types.SimpleNamespace(
        attestationCertChain=list(chain), attestationCertChainSize=len(chain))
    return mod


def _verifier(home: Home, tmp_path: Path, *, test_root: bool) -> Verifier:
    tmp_path.mkdir(parents=True, exist_ok=True)
    refs = tmp_path / "reference-values.json"
    refs.write_text(json.dumps({"model_digests": [shared_engine().model_digest],
                                "container_digests": [CONTAINER]}))
    pem = tmp_path / "nvidia-test-root.pem"
    pem.write_text(ROOT.root_pem())
    tee = {"nvidia": TeeTrustConfig(roots=(pem,), test_root=True) if test_root
           else TeeTrustConfig()}
    config = VerifierConfig(home=home, reference_values=refs, replay_method="full", tee=tee)
    return Verifier(config, clock=lambda: AT.timestamp())


def _attest(home: Home, verifier: Verifier, monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes, str]:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(ROOT))
    return attest_once(home, "nvidia", NvidiaProvider(), verifier.issue_nonce())


def test_gpu_evidence_under_a_test_root_is_checked_but_not_affirming(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path, test_root=True)
    try:
        evidence, output, nonce = _attest(home, verifier, monkeypatch)
        result = verifier.appraise(evidence)
        sub = flat_submod(peek(result.token))
        tee = sub["bytereplay.tee"]
        assert sub["bytereplay.checks"]["quote"] == "ok", sub["bytereplay.checks"]
        assert tee["scheme"] == "nvidia" and tee["chain_ok"] is True and tee["hardware"] is False
        assert tee["root"] == "TEST ROOT (not NVIDIA)" and tee["test_root"] is True
        assert tee["gpu"]["driver_version"] == "550.90.07" and tee["gpu"]["cc_mode"] == "on"
        assert tee["gpu"]["mismatched_measurements"] is None  # not compared
        vector = sub["ear.trustworthiness-vector"]
        assert vector["hardware"] == 32 and vector["instance-identity"] == 2
        decision = evaluate(result.token, output=output, policy="strict",
                            verifier_keys=verifier.jwks(), expected_nonce=nonce)
        assert not decision.allow
    finally:
        verifier.close()


def test_under_nvidias_pinned_root_it_is_contraindicated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path, test_root=False)
    try:
        evidence, _output, _nonce = _attest(home, verifier, monkeypatch)
        result = verifier.appraise(evidence)
        sub = flat_submod(peek(result.token))
        assert "does not end at the NVIDIA" in sub["bytereplay.checks"]["quote"]
        assert result.status == "contraindicated"
    finally:
        verifier.close()
