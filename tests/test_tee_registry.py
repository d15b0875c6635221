"""The scheme registry: a new scheme is one module registered in one place, and the
pipeline appraises its quotes under its own trust configuration (none: refused)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fake_tee_scheme
import pytest
from verifier_fixtures import evidence_factory, make_verifier, new_home

from bytereplay.ear import flat_submod, peek
from bytereplay.errors import QuoteError, UsageError
from verifier import config as config_mod
from verifier.config import TeeTrustConfig
from verifier.tee import base


@pytest.fixture
def fake_scheme() -> Iterator[None]:
    base.register(fake_tee_scheme.SCHEME)  # the one place the fake scheme is named
    yield
    base.unregister(fake_tee_scheme.KIND)


def _sub(token: str) -> dict[str, Any]:
    value: dict[str, Any] = flat_submod(peek(token))
    return value


def test_every_named_scheme_implements_the_protocol() -> None:
    for kind in base.SCHEME_MODULES:
        scheme = base.scheme_for(kind)
        assert isinstance(scheme, base.QuoteVerifier) and scheme.kind == kind


def test_the_pipeline_appraises_a_registered_scheme(fake_scheme: None, tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False, tee={"fake": TeeTrustConfig()})
    try:
        nonce = verifier.issue_nonce().nonce
        evidence = evidence_factory(home).make(nonce, provider=fake_tee_scheme.FakeProvider())
        result = verifier.appraise(evidence)
        sub = _sub(result.token)
        assert sub["bytereplay.checks"]["quote"] == "ok"
        assert sub["bytereplay.checks"]["measurements"] == "ok"
        tee = sub["bytereplay.tee"]
        assert {k: tee[k] for k in ("provider", "scheme", "simulated", "hardware", "chain_ok")} \
            == {"provider": "fake", "scheme": "fake", "simulated": False, "hardware": False,
                "chain_ok": False}
        assert verifier.info()["trust"]["schemes"]["fake"] == {"configured": True,
                                                               "test_root": False}
    finally:
        verifier.close()


def test_a_scheme_without_trust_configuration_is_refused(fake_scheme: None,
                                                         tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False)
    try:
        nonce = verifier.issue_nonce().nonce
        evidence = evidence_factory(home).make(nonce, provider=fake_tee_scheme.FakeProvider())
        result = verifier.appraise(evidence)
        sub = _sub(result.token)
        assert "no trust configuration for fake" in sub["bytereplay.checks"]["quote"]
        assert sub["ear.status"] == "contraindicated"
        assert sub["ear.trustworthiness-vector"]["hardware"] >= 96  # contraindicated tier
        assert verifier.info()["trust"]["schemes"]["fake"]["configured"] is False
    finally:
        verifier.close()


def test_unregistered_kinds_are_unknown(tmp_path: Path) -> None:
    with pytest.raises(QuoteError, match="unknown quote kind"):
        base.scheme_for(fake_tee_scheme.KIND)
    with pytest.raises(UsageError, match=r"tee\.fake: unknown TEE scheme"):
        config_mod.from_dict({"tee": {"fake": {}}}, new_home(tmp_path))


def test_tee_configuration_is_strict(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    for doc, fragment in [
        ({"tee": {"tdx": {"root": []}}}, "tee.tdx: unknown key 'root'"),
        ({"tee": {"tdx": {"test_root": True}}}, "only valid with roots"),
        ({"tee": {"snp": {"allowed_tcb": "UpToDate"}}}, "allowed_tcb"),
        ({"tee": {"snp": {"min_tcb": {"Milan": {"snp": -1}}}}}, "min_tcb"),
        ({"tee": {"nvidia": []}}, "expected an object"),
        ({"tee": []}, "expected dict"),
    ]:
        with pytest.raises(UsageError, match=re.escape(fragment)):
            config_mod.from_dict(doc, home, tmp_path)


def test_tee_configuration_becomes_scheme_trust(tmp_path: Path) -> None:
    from verifier.trust import load_trust_sources, scheme_trusts

    home = new_home(tmp_path)
    (tmp_path / "root.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="ascii")
    cfg = config_mod.from_dict({"tee": {"tdx": {
        "roots": ["root.pem"], "test_root": True, "collateral": "https://pcs.example/",
        "certs": "certs", "allowed_tcb": ["UpToDate", "SWHardeningNeeded"],
        "min_tcb": {"Milan": {"snp": 8}}, "cache_dir": "cache"}}}, home, tmp_path)
    trusts = scheme_trusts(cfg, load_trust_sources(cfg))
    tdx = trusts["tdx"]
    assert tdx.configured and tdx.test_root and tdx.roots == ("-----BEGIN CERTIFICATE-----\n",)
    assert tdx.collateral == "https://pcs.example/" and tdx.certs == str(tmp_path / "certs")
    assert tdx.allowed_tcb == ("UpToDate", "SWHardeningNeeded")
    assert tdx.min_tcb == {"Milan": {"snp": 8}} and tdx.cache_dir == tmp_path / "cache"
    assert "snp" not in trusts and "nvidia" not in trusts  # not configured: refused
    assert trusts["simulated"].configured
