"""Composite evidence end to end under TEST ROOTs: a CPU TEE quote plus every GPU under one
nonce, and the run record against the GPU evidence.

challenge (verifier) -> attester (the `tsm` capture on a configfs-tsm fake answering with
SEV-SNP-layout reports under `tests/snp_test_root.py`, and two `nvidia` captures through a
fake NVML whose SPDM reports are signed under `tests/nvidia_test_root.py`, each asked for
the nonce `bytereplay.eat.device_gpu_nonce(nonce, record digest, index)`) -> verifier (the
real snp and nvidia schemes, both trusting their test roots, the GPU RIMs signed under the
NVIDIA test root) -> an EAR with one submod per device (cpu, gpu0, gpu1) beside
bytereplay. The verification time is the test roots' fixed time, never the wall clock.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_tsm import TestRootKernel
from nvidia_test_root import AT as GPU_AT
from nvidia_test_root import NvidiaTestRoot
from snp_test_root import SnpTestRoot
from test_nvidia_e2e import fake_nvml
from verifier_fixtures import CONTAINER, attest_once, new_home, shared_engine

from attester.evidence import encode
from attester.tee.nvidia import NvidiaProvider
from attester.tee.tsm import TsmProvider
from bytereplay import eat
from bytereplay.ear import flat_submod, peek
from bytereplay.evidence import decode_evidence
from bytereplay.home import Home
from bytereplay.keys import load_or_create_key
from relying_party import evaluate
from verifier.config import TeeTrustConfig, VerifierConfig
from verifier.pipeline import Verifier

SNP = SnpTestRoot()
GPU = NvidiaTestRoot()
AT = GPU_AT.timestamp()  # inside both test roots' validity (2020..2049)
VECTOR = "ear.trustworthiness-vector"
STATUS = "ear.status"


def _verifier(home: Home, tmp_path: Path, *, rims: bool = True) -> Verifier:
    tmp_path.mkdir(parents=True, exist_ok=True)
    refs = tmp_path / "reference-values.json"
    refs.write_text(json.dumps({"model_digests": [shared_engine().model_digest],
                                "container_digests": [CONTAINER]}))
    ark, gpu_root = tmp_path / "snp-ark.pem", tmp_path / "gpu-root.pem"
    ark.write_text(SNP.pem(SNP.ark))
    gpu_root.write_text(GPU.root_pem())
    rim_dir = tmp_path / "rims"
    rim_dir.mkdir()
    (rim_dir / "test.swidtag").write_bytes(GPU.rim())
    tee = {"snp": TeeTrustConfig(roots=(ark,), test_root=True,
                                 min_tcb={SNP.product: dict(SNP.tcb)}),
           "nvidia": TeeTrustConfig(roots=(gpu_root,), test_root=True,
                                    collateral=str(rim_dir) if rims else None)}
    config = VerifierConfig(home=home, reference_values=refs, replay_method="full", tee=tee)
    return Verifier(config, clock=lambda: AT)


def _attest(home: Home, tmp_path: Path, verifier: Verifier,
            monkeypatch: pytest.MonkeyPatch) -> tuple[str, bytes, str]:
    monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(GPU, gpus=2))
    tsm = tmp_path / "tsm"
    tsm.mkdir(parents=True, exist_ok=True)
    provider = TsmProvider(tsm, fs=TestRootKernel(SNP))
    return attest_once(home, "tsm", provider, verifier.issue_nonce(),
                       gpus=[NvidiaProvider(0), NvidiaProvider(1)])


def _submods(token: str) -> dict[str, Any]:
    """Every submod, flat under the legacy names, whichever profile wrote the EAR."""
    claims = peek(token)
    return {name: flat_submod(claims, name) for name in claims["submods"]}


def test_cpu_and_two_gpus_give_three_device_submods_and_strict_allows(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path)
    try:
        evidence, output, nonce = _attest(home, tmp_path, verifier, monkeypatch)
        decoded = decode_evidence(evidence)
        assert [g["index"] for g in decoded.gpu_evidence] == [0, 1]
        # each GPU was asked for its own nonce, derived from the session's binding
        from bytereplay.encoding import b64url_decode

        for i, item in enumerate(decoded.gpu_evidence):
            assert b64url_decode(item["gpu_nonce"]) == eat.device_gpu_nonce(
                decoded.nonce, decoded.record_digest, i)
        result = verifier.appraise(evidence)
        subs = _submods(result.token)
        assert set(subs) == {"bytereplay", "cpu", "gpu0", "gpu1"}
        for name in ("cpu", "gpu0", "gpu1"):
            assert subs[name][STATUS] == "affirming", (name, subs[name])
            assert subs[name][VECTOR]["hardware"] == 2
            assert subs[name][VECTOR]["instance-identity"] == 2
        assert subs["cpu"]["bytereplay.tee"]["scheme"] == "snp"
        gpu0 = subs["gpu0"]["bytereplay.tee"]
        assert gpu0["root"] == "TEST ROOT (not NVIDIA)" and gpu0["test_root"] is True
        assert gpu0["gpu"]["mismatched_measurements"] == [] and gpu0["gpu"]["cc_mode"] == "on"
        assert gpu0["gpu"]["revocation"] == "not-checked"
        # a CPU run's record names no GPU: nothing compared, no configuration claim
        assert "configuration" not in subs["gpu0"][VECTOR]
        assert "gpu_record" not in subs["bytereplay"]["bytereplay.checks"]
        assert result.status == "affirming", subs["bytereplay"]["bytereplay.checks"]
        decision = evaluate(result.token, output=output, policy="strict",
                            verifier_keys=verifier.jwks(), expected_nonce=nonce)
        assert decision.allow, decision.reasons
    finally:
        verifier.close()


def test_a_gpu_report_replayed_from_another_session_is_contraindicated(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path)
    try:
        old, _, _ = _attest(home, tmp_path / "a", verifier, monkeypatch)
        new, output, nonce = _attest(home, tmp_path / "b", verifier, monkeypatch)
        # An attester holding its key splices session A's GPU 1 report into session B.
        claims = dict(decode_evidence(new).claims)
        gpus = list(claims[eat.GPU_EVIDENCE])
        gpus[1] = dict(decode_evidence(old).gpu_evidence[1])
        claims[eat.GPU_EVIDENCE] = gpus
        spliced = str(encode(claims, load_or_create_key(home.attester_key), "jwt"))
        result = verifier.appraise(spliced, replay=False)
        subs = _submods(result.token)
        assert subs["gpu1"][STATUS] == "contraindicated"
        assert subs["gpu1"][VECTOR]["instance-identity"] == 96
        assert subs["gpu1"]["bytereplay.tee"]["status"] == "unbound"
        assert subs["gpu0"][STATUS] == "affirming" and subs["cpu"][STATUS] == "affirming"
        assert subs["bytereplay"][VECTOR]["instance-identity"] == 96
        assert "gpu1: unbound" in subs["bytereplay"]["bytereplay.checks"]["devices"]
        assert result.status == "contraindicated"
        decision = evaluate(result.token, output=output, policy="strict",
                            verifier_keys=verifier.jwks(), expected_nonce=nonce)
        assert not decision.allow
        assert any("submod gpu1 status contraindicated" in r for r in decision.reasons)
    finally:
        verifier.close()


def test_strict_denies_when_one_device_is_only_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path, rims=False)  # GPU measurements not compared
    try:
        evidence, output, nonce = _attest(home, tmp_path, verifier, monkeypatch)
        result = verifier.appraise(evidence)
        subs = _submods(result.token)
        assert subs["cpu"][STATUS] == "affirming"
        assert subs["gpu0"][STATUS] == subs["gpu1"][STATUS] == "warning"
        assert result.status == "warning"  # never better than the worst device
        decision = evaluate(result.token, output=output, policy="strict",
                            verifier_keys=verifier.jwks(), expected_nonce=nonce)
        assert not decision.allow
        assert any("submod gpu0 status warning" in r for r in decision.reasons)
        # the default policy reads the worst status too: a warning is allowed, with notes
        assert evaluate(result.token, output=output, policy="default",
                        verifier_keys=verifier.jwks(), expected_nonce=nonce).status == "warning"
    finally:
        verifier.close()


def test_gpu_evidence_without_nvidia_trust_fails_that_device(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path)
    try:
        evidence, _, _ = _attest(home, tmp_path, verifier, monkeypatch)
        tee = dict(verifier.config.tee)
        del tee["nvidia"]
        other = Verifier(verifier.config.replace(tee=tee), clock=lambda: AT,
                         store=verifier.store)
        result = other.appraise(evidence, replay=False)
        subs = _submods(result.token)
        assert subs["gpu0"][VECTOR]["hardware"] == 96
        assert "no trust configuration for nvidia" in subs["gpu0"]["bytereplay.checks"]["quote"]
        assert result.status == "contraindicated"
    finally:
        verifier.close()


# -- the run record against the GPU evidence -------------------------------------------------

def _record_gpu(monkeypatch: pytest.MonkeyPatch, driver: str, sku: str) -> None:
    from attester import environment

    monkeypatch.setattr(environment, "gpu_fields", lambda device: {
        "arch": "sm_90", "sku": sku, "sm_count": 132, "driver": driver})


@pytest.mark.parametrize(("driver", "sku", "differs"), [
    ("550.90.07", "NVIDIA H100 80GB HBM3", None),
    ("535.104.05", "NVIDIA H100 80GB HBM3", "gpu.driver"),
    ("550.90.07", "NVIDIA H200", "gpu.sku"),
])
def test_a_record_that_contradicts_the_gpu_evidence_contraindicates_configuration(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, driver: str, sku: str,
        differs: str | None) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path)
    try:
        _record_gpu(monkeypatch, driver, sku)
        evidence, _, _ = _attest(home, tmp_path, verifier, monkeypatch)
        assert decode_evidence(evidence).record.gpu.driver == driver  # type: ignore[union-attr]
        result = verifier.appraise(evidence, replay=False)
        subs = _submods(result.token)
        checks = subs["bytereplay"]["bytereplay.checks"]
        if differs is None:
            assert checks["gpu_record"] == "ok"
            assert subs["gpu0"][VECTOR]["configuration"] == 2
            assert subs["bytereplay"][VECTOR]["configuration"] < 96
        else:
            assert checks["gpu_record"].startswith(f"differs: {differs}"), checks
            assert subs["bytereplay"][VECTOR]["configuration"] == 96
            assert subs["gpu0"][VECTOR]["configuration"] == 96
            assert result.status == "contraindicated"
    finally:
        verifier.close()


def test_a_lone_gpu_quote_is_compared_with_the_record_too(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path)
    try:
        _record_gpu(monkeypatch, "535.104.05", "NVIDIA H100 80GB HBM3")
        monkeypatch.setitem(sys.modules, "pynvml", fake_nvml(GPU))
        evidence, _, _ = attest_once(home, "nvidia", NvidiaProvider(), verifier.issue_nonce())
        result = verifier.appraise(evidence, replay=False)
        sub = _submods(result.token)["bytereplay"]
        assert sub["bytereplay.checks"]["quote"] == "ok"
        assert "the record says '535.104.05'" in sub["bytereplay.checks"]["gpu_record"]
        assert sub[VECTOR]["configuration"] == 96
    finally:
        verifier.close()
