"""End to end under TEST ROOTs, through the same code as on hardware:

challenge (verifier) -> attester (`tsm` capture from a configfs-tsm kernel whose quotes have
the real TDX / SEV-SNP layouts, signed under a test root) -> verifier (the real tdx / snp
schemes, configured to trust that test root, named as such) -> EAR with `hardware` 2 ->
the relying party's `strict` policy ALLOWs, and notes the test root.

The negative control: the same Evidence under a configuration without the test root (the
vendor's pinned roots decide) is contraindicated, and `strict` DENIES.

The verification time is the test roots' fixed time (the verifier's clock), never the
wall clock.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_tsm import TestRootKernel
from snp_test_root import SnpTestRoot
from tdx_test_root import TdxTestRoot
from verifier_fixtures import CONTAINER, attest_once, new_home, shared_engine

from attester.tee.tsm import TsmProvider
from bytereplay.home import Home
from relying_party import evaluate
from verifier.config import TeeTrustConfig, VerifierConfig
from verifier.pipeline import Verifier


@dataclass
class Flow:
    kind: str
    evidence: str
    output: bytes
    nonce: str


def _roots() -> dict[str, TdxTestRoot | SnpTestRoot]:
    return {"tdx": TdxTestRoot(), "snp": SnpTestRoot()}


ROOTS = _roots()
AT = ROOTS["tdx"].at.timestamp()  # inside both test roots' validity


def _tee_config(kind: str, folder: Path, *, test_root: bool) -> dict[str, TeeTrustConfig]:
    root = ROOTS[kind]
    if isinstance(root, TdxTestRoot):
        files = root.write_files(folder / "tdx")
        if not test_root:  # Intel's pinned root, the same collateral
            return {"tdx": TeeTrustConfig(collateral=str(files["collateral"]))}
        return {"tdx": TeeTrustConfig(roots=(files["root"],), test_root=True,
                                      collateral=str(files["collateral"]))}
    minimum = {root.product: dict(root.tcb)}
    if not test_root:  # AMD's pinned ARKs
        return {"snp": TeeTrustConfig(min_tcb=minimum)}
    pem = folder / "snp-test-ark.pem"
    pem.write_text(root.pem(root.ark))
    return {"snp": TeeTrustConfig(roots=(pem,), test_root=True, min_tcb=minimum)}


def _verifier(home: Home, tmp_path: Path, kind: str, *, test_root: bool) -> Verifier:
    tmp_path.mkdir(parents=True, exist_ok=True)
    refs = tmp_path / "reference-values.json"
    refs.write_text(json.dumps({"model_digests": [shared_engine().model_digest],
                                "container_digests": [CONTAINER]}))
    # `strict` accepts a full replay (or a bitwise teacher-forced one, which this CPU
    # does not give), so the verifier replays in full.
    config = VerifierConfig(home=home, reference_values=refs, replay_method="full",
                            tee=_tee_config(kind, tmp_path, test_root=test_root))
    return Verifier(config, clock=lambda: AT)


def _attest(home: Home, tmp_path: Path, kind: str, verifier: Verifier) -> Flow:
    tsm = tmp_path / "tsm" / kind
    tsm.mkdir(parents=True)
    provider = TsmProvider(tsm, fs=TestRootKernel(ROOTS[kind]))
    return Flow(kind, *attest_once(home, "tsm", provider, verifier.issue_nonce()))


def _sub(token: str) -> dict[str, Any]:
    from bytereplay.ear import flat_submod, peek

    return flat_submod(peek(token))


@pytest.mark.parametrize("kind", ["tdx", "snp"])
def test_strict_allows_hardware_under_a_test_root(tmp_path: Path, kind: str) -> None:
    home = new_home(tmp_path)
    verifier = _verifier(home, tmp_path, kind, test_root=True)
    try:
        flow = _attest(home, tmp_path, kind, verifier)
        result = verifier.appraise(flow.evidence)
        sub = _sub(result.token)
        tee = sub["bytereplay.tee"]
        assert sub["bytereplay.checks"]["quote"] == "ok", sub["bytereplay.checks"]
        assert tee["scheme"] == kind and tee["hardware"] is True and tee["test_root"] is True
        assert tee["root"] == ("TEST ROOT (not Intel)" if kind == "tdx" else "TEST ROOT (not AMD)")
        assert tee["tcb_status"] == "UpToDate"
        assert sub["ear.trustworthiness-vector"]["hardware"] == 2
        assert sub["bytereplay.replay"]["verdict"] == "match"
        decision = evaluate(result.token, output=flow.output, policy="strict",
                            verifier_keys=verifier.jwks(), expected_nonce=flow.nonce)
        assert decision.allow, decision.reasons
        assert any("TEST ROOT" in n for n in decision.notes)
    finally:
        verifier.close()


@pytest.mark.parametrize("kind", ["tdx", "snp"])
def test_without_the_test_root_strict_denies(tmp_path: Path, kind: str) -> None:
    home = new_home(tmp_path)
    trusting = _verifier(home, tmp_path / "a", kind, test_root=True)
    vendor_only = _verifier(home, tmp_path / "b", kind, test_root=False)
    try:
        flow = _attest(home, tmp_path, kind, trusting)
        result = vendor_only.appraise(flow.evidence)  # another verifier: its nonce is unknown
        sub = _sub(result.token)
        assert sub["bytereplay.checks"]["quote"].startswith("failed: ")
        assert result.status == "contraindicated"
        assert sub["ear.trustworthiness-vector"]["hardware"] >= 96
        decision = evaluate(result.token, output=flow.output, policy="strict",
                            verifier_keys=vendor_only.jwks(), expected_nonce=flow.nonce)
        assert not decision.allow
    finally:
        trusting.close()
        vendor_only.close()
