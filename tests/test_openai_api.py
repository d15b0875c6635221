"""The OpenAI-compatible API (attester/openai_api.py) through the official `openai` client.

The attester runs under uvicorn on a loopback port with the fixture model (fast); the
verifier is in-process. What the issue asks: content + `attestation` -> verifier replay
`match` -> `relying_party.evaluate` on the content's bytes allows; same seed, same
content; another seed, other content; streaming, same content and a final attestation;
`n=2` -> 400 in OpenAI's error shape. One test runs SmolLM2 itself (test_smollm2.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
import requests
from verifier_fixtures import make_verifier, shared_engine

from attester.config import AttesterConfig
from attester.service import Attester, create_app
from bytereplay.ear import flat_submod
from bytereplay.home import Home
from relying_party import evaluate

REPO = Path(__file__).resolve().parent.parent
FIXTURE_MODEL = REPO / "fixtures" / "model"
MESSAGES = [{"role": "system", "content": "You answer briefly."},
            {"role": "user", "content": "Replay the bytes before you trust the answer."}]
SAMPLED: dict[str, Any] = {"temperature": 0.9, "top_p": 0.95, "max_tokens": 16}


@contextlib.contextmanager
def serve(app: Any) -> Iterator[str]:
    """`app` under uvicorn on a free 127.0.0.1 port, in a thread; yields its base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[openai.OpenAI, Any, str]]:
    home = Home.resolve(tmp_path_factory.mktemp("openai-home"))
    engine = shared_engine()
    config = AttesterConfig(provider="simulated")
    attester = Attester(config, home, engine=engine)  # creates the simulated CA first
    verifier = make_verifier(home, model_dir=FIXTURE_MODEL)
    with serve(create_app(config, attester=attester)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        yield client, verifier, engine.model_id


def _extra(completion: Any) -> dict[str, Any]:
    extra: dict[str, Any] = completion.model_extra or {}
    return extra


def test_completion_verifies_with_replay_match_and_the_relying_party_allows(
        stack: tuple[openai.OpenAI, Any, str]) -> None:
    client, verifier, model = stack
    issued = verifier.issue_nonce()
    completion = client.chat.completions.create(
        model=model, messages=MESSAGES, seed=7, **SAMPLED,  # type: ignore[arg-type]
        extra_body={"nonce": issued.text})
    content = completion.choices[0].message.content
    assert isinstance(content, str) and content
    att = _extra(completion)["attestation"]
    assert set(att) == {"evidence", "evidence_format", "output_hash", "nonce", "nonce_bound"}
    assert att["nonce"] == issued.text and att["nonce_bound"] is True
    assert att["output_hash"] == "sha-256:" + hashlib.sha256(content.encode("utf-8")).hexdigest()
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.prompt_tokens > 0

    result = verifier.appraise(att["evidence"], att["evidence_format"])
    assert result.replay["verdict"] == "match", result.replay
    decision = evaluate(result.token, output=content.encode("utf-8"), policy="default",
                        verifier_keys=verifier.jwks(), expected_nonce=issued.text)
    assert decision.allow, decision.render()
    # the exact bytes matter: one more byte and the relying party refuses
    tampered = evaluate(result.token, output=content.encode("utf-8") + b" ", policy="default",
                        verifier_keys=verifier.jwks(), expected_nonce=issued.text)
    assert not tampered.allow


def test_same_seed_same_content_other_seed_other_content(
        stack: tuple[openai.OpenAI, Any, str]) -> None:
    client, _verifier, model = stack

    def content(seed: int) -> str:
        c = client.chat.completions.create(model=model, messages=MESSAGES, seed=seed,  # type: ignore[arg-type]
                                           **SAMPLED)
        return str(c.choices[0].message.content)

    runs = [content(7) for _ in range(3)]
    assert len(set(runs)) == 1
    # negative control: other seeds give other content (the sampler is live)
    others = {content(s) for s in (8, 9, 10)}
    assert others - {runs[0]}


def test_streaming_gives_the_same_content_and_a_final_attestation(
        stack: tuple[openai.OpenAI, Any, str]) -> None:
    client, verifier, model = stack
    issued = verifier.issue_nonce()
    plain = client.chat.completions.create(model=model, messages=MESSAGES, seed=7,  # type: ignore[arg-type]
                                           **SAMPLED)
    stream = client.chat.completions.create(model=model, messages=MESSAGES, seed=7,  # type: ignore[arg-type]
                                            stream=True, extra_body={"nonce": issued.text},
                                            **SAMPLED)
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    last = chunks[-1]
    assert last.choices[0].finish_reason in ("stop", "length")
    att = _extra(last)["attestation"]
    assert all("attestation" not in _extra(c) for c in chunks[:-1])
    result = verifier.appraise(att["evidence"], att["evidence_format"])
    assert result.replay["verdict"] == "match"
    assert evaluate(result.token, output=text.encode("utf-8"), policy="default",
                    verifier_keys=verifier.jwks(), expected_nonce=issued.text).allow


@pytest.mark.parametrize(("extra", "param"), [
    ({"n": 2}, "n"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"presence_penalty": 0.5}, "presence_penalty"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"nonce": "%%%"}, "nonce"),
])
def test_refusals_use_openai_error_shape(stack: tuple[openai.OpenAI, Any, str],
                                         extra: dict[str, Any], param: str) -> None:
    client, _verifier, model = stack
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model=model, messages=MESSAGES,  # type: ignore[arg-type]
                                       extra_body=extra)
    assert info.value.status_code == 400
    body = info.value.body
    assert isinstance(body, dict)  # the client unwraps {"error": {...}}
    assert set(body) == {"message", "type", "param", "code"}
    assert body["type"] == "invalid_request_error" and body["param"] == param


def test_raw_error_body_and_models(stack: tuple[openai.OpenAI, Any, str]) -> None:
    client, _verifier, model = stack
    url = str(client.base_url).rstrip("/")
    resp = requests.post(f"{url}/chat/completions", json={"model": model, "messages": MESSAGES,
                                                           "n": 2}, timeout=30)
    assert resp.status_code == 400
    assert set(resp.json()) == {"error"} and resp.json()["error"]["param"] == "n"
    resp = requests.post(f"{url}/chat/completions", json={"model": "gpt-4o", "messages": MESSAGES},
                         timeout=30)
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "model_not_found"
    listed = client.models.list().data
    assert [m.id for m in listed] == [model]
    assert (listed[0].model_extra or {})["digest"].startswith("sha-256:")


def test_without_a_nonce_the_evidence_says_none_was_bound(
        stack: tuple[openai.OpenAI, Any, str]) -> None:
    client, verifier, model = stack
    c = client.chat.completions.create(model=model, messages=MESSAGES,  # type: ignore[arg-type]
                                       temperature=0, max_tokens=8)
    att = _extra(c)["attestation"]
    assert att["nonce"] is None and att["nonce_bound"] is False
    result = verifier.appraise(att["evidence"], att["evidence_format"], replay=False)
    sub = flat_submod(result.claims)
    assert sub["bytereplay.checks"]["nonce"] != "ok"
    assert sub["ear.trustworthiness-vector"]["instance-identity"] != 2


def test_chat_record_hashes_canonical_messages_and_the_template(
        stack: tuple[openai.OpenAI, Any, str]) -> None:
    from attester import chat
    from bytereplay.evidence import decode_evidence

    client, _verifier, model = stack
    c = client.chat.completions.create(model=model, messages=MESSAGES,  # type: ignore[arg-type]
                                       temperature=0, max_tokens=4)
    decoded = decode_evidence(_extra(c)["attestation"]["evidence"], "jwt")
    canonical = chat.canonical_messages(MESSAGES)
    assert decoded.record.input_hash == "sha-256:" + hashlib.sha256(canonical.encode()).hexdigest()
    assert decoded.record.prompt_template_hash == chat.template_hash(shared_engine().chat_template)
    assert decoded.request["input"] == canonical
