"""Every replay verdict, reached with constructed Evidence that is signed validly by an
attester key and carries a valid simulated quote (only the run record differs)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from verifier_fixtures import (
    OTHER_HASH,
    UNKNOWN_MODEL,
    EvidenceFactory,
    evidence_factory,
    generate,
    make_verifier,
    new_home,
)

from attester.engine import DecodePolicy, Engine, EngineSettings, InferenceRequest
from bytereplay.ear import flat_submod, peek
from verifier.pipeline import Verifier
from verifier.replay import (
    ModelIndex,
    check_request,
    decode_settings,
    environment_diff,
    verdict_for,
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Verifier, EvidenceFactory]]:
    home = new_home(tmp_path_factory.mktemp("replay"))
    verifier = make_verifier(home)
    yield verifier, evidence_factory(home)
    verifier.close()


def appraise(env: tuple[Verifier, EvidenceFactory], **kwargs: Any) -> dict[str, Any]:
    verifier, factory = env
    nonce = verifier.issue_nonce().nonce
    result = verifier.appraise(factory.make(nonce, **kwargs))
    sub: dict[str, Any] = flat_submod(peek(result.token))
    assert sub["ear.status"] == result.status
    return sub


def diff_fields(sub: dict[str, Any]) -> list[str]:
    return [d["field"] for d in sub["bytereplay.replay"]["environment_diff"]]


def test_match(env: tuple[Verifier, EvidenceFactory]) -> None:
    sub = appraise(env)
    replay = sub["bytereplay.replay"]
    assert replay["verdict"] == "match"
    assert replay["environment_diff"] == []
    assert replay["replay_output_hash"] == sub["bytereplay.output_hash"]
    assert sub["ear.trustworthiness-vector"]["executables"] == 2
    assert sub["ear.status"] == "warning"  # simulated TEE: hardware 32, never better
    assert "reproduced the same bytes" in sub["bytereplay.claim"]


def test_match_over_cwt(env: tuple[Verifier, EvidenceFactory]) -> None:
    assert appraise(env, fmt="cwt")["bytereplay.replay"]["verdict"] == "match"


def test_mismatch_same_environment_different_bytes(env: tuple[Verifier, EvidenceFactory]) -> None:
    ids = list(generate().token_ids)
    ids[3] = (ids[3] + 1) % 500
    sub = appraise(env, edits={"output_hash": OTHER_HASH, "output_token_ids": ids})
    replay = sub["bytereplay.replay"]
    assert replay["verdict"] == "mismatch"
    assert replay["environment_diff"] == []
    assert replay["first_divergent_token"] == 3
    assert sub["ear.trustworthiness-vector"]["executables"] == 96
    assert sub["ear.status"] == "contraindicated"
    assert sub["bytereplay.checks"]["quote"] == "ok"  # the Evidence itself is valid
    assert "contradicts the evidence" in sub["bytereplay.claim"]


def test_inconclusive_names_the_differing_field(env: tuple[Verifier, EvidenceFactory]) -> None:
    sub = appraise(env, edits={"dtype": "bfloat16", "output_hash": OTHER_HASH})
    replay = sub["bytereplay.replay"]
    assert replay["verdict"] == "inconclusive"
    assert replay["environment_diff"] == [
        {"field": "dtype", "recorded": "bfloat16", "replayed": "float32"}]
    assert sub["ear.trustworthiness-vector"]["executables"] == 32
    assert sub["ear.status"] == "warning"
    assert "(dtype)" in sub["bytereplay.claim"]


def test_match_portable_bytes_equal_in_other_environment(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    sub = appraise(env, edits={"gpu.arch": "sm_90", "gpu.sku": "NVIDIA H100"})
    replay = sub["bytereplay.replay"]
    assert replay["verdict"] == "match-portable"
    assert diff_fields(sub) == ["gpu.arch", "gpu.sku"]
    assert sub["ear.trustworthiness-vector"]["executables"] == 2


def test_missing_environment_field_counts_as_differing(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    sub = appraise(env, edits={"toolkit.cudnn": None})
    assert sub["bytereplay.replay"]["verdict"] == "match-portable"
    assert sub["bytereplay.replay"]["environment_diff"] == [
        {"field": "toolkit.cudnn", "recorded": None, "replayed": "none"}]
    # and preflight reports it: the configuration claim drops to warning
    assert "toolkit.cudnn" in sub["bytereplay.preflight"]["missing"]
    assert sub["ear.trustworthiness-vector"]["configuration"] == 32


def test_not_run_model_not_available(env: tuple[Verifier, EvidenceFactory]) -> None:
    sub = appraise(env, edits={"model.digest": UNKNOWN_MODEL})
    replay = sub["bytereplay.replay"]
    assert replay["verdict"] == "not-run"
    assert UNKNOWN_MODEL in replay["reason"] and "not available" in replay["reason"]
    assert sub["ear.trustworthiness-vector"]["executables"] == 0
    assert "no independent replay" in sub["bytereplay.claim"]


def test_not_run_when_not_requested_or_disabled(tmp_path: Path,
                                                env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    nonce = verifier.issue_nonce().nonce
    result = verifier.appraise(factory.make(nonce), replay=False)
    assert result.replay["verdict"] == "not-run"
    assert result.replay["reason"] == "replay was not requested"

    home = new_home(tmp_path)
    off = make_verifier(home, replay=False)
    try:
        nonce = off.issue_nonce().nonce
        result = off.appraise(evidence_factory(home).make(nonce))
        assert result.replay["reason"] == "replay is disabled in the verifier's configuration"
        assert off.info()["replay"] == {"enabled": False}
    finally:
        off.close()


def test_real_bfloat16_attester_shows_dtype(env: tuple[Verifier, EvidenceFactory]) -> None:
    """A real bfloat16 run appraised by the float32 verifier: the diff names dtype."""
    from verifier_fixtures import DECODE, PROMPT, TEMPLATE

    bf16 = Engine(EngineSettings(dtype="bfloat16"))
    policy = DecodePolicy(**{**DECODE, "stop": tuple(DECODE["stop"])})
    result = bf16.generate(InferenceRequest(PROMPT, TEMPLATE, policy))
    sub = appraise(env, result=result)
    assert sub["bytereplay.replay"]["verdict"] in ("match-portable", "inconclusive")
    assert "dtype" in diff_fields(sub)


def test_one_engine_per_model_and_settings(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, _ = env
    appraise(env)
    appraise(env)
    assert verifier.replayer is not None
    assert len(verifier.replayer._engines) == 1


# -- the pure pieces ---------------------------------------------------------------------


def test_verdict_table() -> None:
    d = [{"field": "dtype"}]
    assert verdict_for(True, []) == "match"
    assert verdict_for(True, d) == "match-portable"
    assert verdict_for(False, []) == "mismatch"
    assert verdict_for(False, d) == "inconclusive"


def test_environment_diff_of_identical_records() -> None:
    record = generate().record
    assert environment_diff(record, record) == []
    other = record.replace("threads", 4).replace("framework.torch", "2.0.0")
    assert [d["field"] for d in environment_diff(record, other)] == ["framework.torch", "threads"]


def test_request_checked_against_record() -> None:
    from verifier_fixtures import DECODE, PROMPT, TEMPLATE

    record = generate().record
    request = {"input": PROMPT, "template": TEMPLATE, "decode": dict(DECODE)}
    assert check_request(request, record) is None
    assert "input_hash" in str(check_request({**request, "input": "other"}, record))
    assert "prompt_template_hash" in str(check_request({**request, "template": "{input}"}, record))
    assert check_request(None, record) is not None
    settings = decode_settings({**request, "decode": {**DECODE, "seed": 99}}, record)
    assert settings["seed"] == 7  # the recorded seed wins


def test_model_index_finds_models_by_digest_and_caches(tmp_path: Path) -> None:
    import shutil

    from verifier.config import DEFAULT_MODEL_DIR

    root = tmp_path / "models"
    (root / "org").mkdir(parents=True)
    shutil.copytree(DEFAULT_MODEL_DIR, root / "org" / "tiny")
    calls: list[Path] = []

    def digest(path: Path) -> str:
        from attester.model_digest import model_digest

        calls.append(path)
        return model_digest(path)

    cache = tmp_path / "digests.json"
    index = ModelIndex(root, cache, digest)
    wanted = generate().record.get("model.digest")
    assert index.find(wanted) == root / "org" / "tiny"
    assert index.find(UNKNOWN_MODEL) is None
    assert len(calls) == 1
    again = ModelIndex(root, cache, digest)  # a restart: the cache file answers
    assert again.find(wanted) == root / "org" / "tiny"
    assert len(calls) == 1
