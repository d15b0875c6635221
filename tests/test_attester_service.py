"""The attester service: /v1/infer with signed Evidence, /v1/info, /healthz, and the
refusals (always 4xx/503 problem+json, never 500)."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from quote_helpers import Trusts, verify_evidence

from attester.config import CONTAINER_ENV, AttesterConfig, load_config
from attester.service import Attester, create_app
from bytereplay import eat
from bytereplay.encoding import b64url_encode, sha256_tag
from bytereplay.errors import UsageError
from bytereplay.evidence import decode_evidence
from bytereplay.home import Home
from verifier.config import VerifierConfig
from verifier.tee.simulated import load_ca_pem
from verifier.trust import load_trust_sources, scheme_trusts

PROBLEM = "application/problem+json"
NONCE = b64url_encode(bytes(range(32)))
CONTAINER = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home.resolve(tmp_path_factory.mktemp("attester-home"))


@pytest.fixture(scope="module")
def config() -> AttesterConfig:
    return AttesterConfig(verifier_ref="http://127.0.0.1:8702", operator="ops@example.org",
                          container_digest=CONTAINER, max_new_tokens=16, max_input_chars=200,
                          max_body_bytes=4096)


@pytest.fixture(scope="module")
def attester(config: AttesterConfig, home: Home) -> Attester:
    svc = Attester(config, home)
    svc.load_engine()  # one engine for the whole module
    return svc


@pytest.fixture(scope="module")
def client(config: AttesterConfig, attester: Attester) -> Iterator[TestClient]:
    with TestClient(create_app(config, attester=attester), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def trust(home: Home, attester: Attester) -> Trusts:
    trust = scheme_trusts(VerifierConfig(home=home), load_trust_sources(VerifierConfig(home=home)))
    assert trust["simulated"].roots == (load_ca_pem(home.simulated_ca),)
    return trust


def body(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"input": "Hello there", "decode": {"max_new_tokens": 6, "seed": 3},
                           "nonce": NONCE}
    doc.update(over)
    return doc


# -- the happy paths ------------------------------------------------------------------

def test_healthz_and_info(client: TestClient, attester: Attester) -> None:
    assert client.get("/healthz").json() == {"status": "ready"}
    info = client.get("/v1/info").json()
    assert info["model_digest"].startswith("sha-256:") and info["model_id"]
    assert info["provider"] == "simulated" and info["simulated"] is True
    assert info["evidence_key"] == attester.key.jwk and "d" not in info["evidence_key"]
    assert info["container_digest"] == CONTAINER and info["eat_profile"] == eat.PROFILE
    assert info["environment"]["model"]["digest"] == info["model_digest"]


@pytest.mark.parametrize("fmt", ["jwt", "cwt"])
def test_infer_returns_verifiable_evidence(fmt: str, client: TestClient, trust: Trusts,
                                           attester: Attester) -> None:
    window = {"issued_at": "2026-11-27T08:00:00Z", "expires_at": "2026-11-27T08:02:00Z"}
    resp = client.post("/v1/infer", json=body(format=fmt, challenge_window=window,
                                              template="Q: {input}\nA:"))
    assert resp.status_code == 200, resp.text
    answer = resp.json()
    assert set(answer) == {"output", "output_hash", "evidence", "evidence_format"}
    assert answer["evidence_format"] == fmt
    assert answer["output_hash"] == sha256_tag(answer["output"].encode("utf-8"))
    verified = verify_evidence(answer["evidence"], trust, fmt)
    ev = verified.evidence
    assert ev.nonce == bytes(range(32)) and ev.key_thumbprint == attester.key.kid
    assert ev.output_matches(answer["output"].encode("utf-8"))
    assert not ev.output_matches(answer["output"].encode("utf-8") + b"!")
    assert ev.record.verifier_ref == "http://127.0.0.1:8702"
    assert ev.record.operator == "ops@example.org"
    assert ev.record.get("container.digest") == CONTAINER
    assert ev.record.get("challenge_window.expires_at") == window["expires_at"]
    assert ev.request == {"input": "Hello there", "template": "Q: {input}\nA:",
                          "decode": {"max_new_tokens": 6, "temperature": 0.0, "top_k": 0,
                                     "top_p": 1.0, "seed": 3, "stop": [], "eos": True}}
    assert ev.measurements["container_digest"] == CONTAINER
    assert verified.quote.simulated and not verified.quote.hardware


def test_same_request_same_bytes(client: TestClient) -> None:
    req = body(decode={"max_new_tokens": 8, "temperature": 0.8, "top_k": 20, "top_p": 0.9,
                       "seed": 11})
    a, b = (client.post("/v1/infer", json=req).json() for _ in range(2))
    assert a["output"] == b["output"] and a["output_hash"] == b["output_hash"]
    ra = decode_evidence(a["evidence"]).record
    rb = decode_evidence(b["evidence"]).record
    assert ra.digest() == rb.digest()


def test_inference_runs_off_the_event_loop(client: TestClient, attester: Attester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []
    real = attester.attest

    def spy(req: Any) -> dict[str, Any]:
        try:
            asyncio.get_running_loop()
            seen.append(True)
        except RuntimeError:
            seen.append(False)
        return real(req)

    monkeypatch.setattr(attester, "attest", spy)
    assert client.post("/v1/infer", json=body()).status_code == 200
    assert seen == [False]


# -- refusals -------------------------------------------------------------------------

def _problem(resp: Any, status: int, *words: str) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith(PROBLEM)
    doc: dict[str, Any] = resp.json()
    assert doc["status"] == status and doc["title"] and doc["type"]
    for w in words:
        assert w in doc["detail"], (w, doc["detail"])
    return doc


RAW_CASES = [
    (b'{"input": "x", "nonce":', 400, "malformed JSON"),
    (b"[]", 400, "JSON object"),
    (b'"text"', 400, "JSON object"),
    (b"", 400, "empty"),
    (b'{"input": "a", "input": "b", "nonce": "' + NONCE.encode() + b'"}', 400, "duplicate"),
    (b'{"input": "a", "nonce": "' + NONCE.encode() + b'", "decode": {"temperature": NaN}}',
     400, "NaN"),
    (b'\xff\xfe{}', 400, "UTF-8"),
]


@pytest.mark.parametrize(("raw", "status", "word"), RAW_CASES)
def test_malformed_json(client: TestClient, raw: bytes, status: int, word: str) -> None:
    resp = client.post("/v1/infer", content=raw, headers={"content-type": "application/json"})
    _problem(resp, status, word)


FIELD_CASES: list[tuple[dict[str, Any], str]] = [
    ({"input": None}, "input"),
    ({"input": 5}, "input: expected a string"),
    ({"input": "x" * 201}, "input: longer than 200"),
    ({"template": 7}, "template: expected a string"),
    ({"template": "no mark"}, "template: must contain"),
    ({"decode": "greedy"}, "decode: expected an object"),
    ({"decode": {"max_new_tokens": "5"}}, "decode.max_new_tokens"),
    ({"decode": {"max_new_tokens": 0}}, "decode.max_new_tokens"),
    ({"decode": {"max_new_tokens": 17}}, "decode.max_new_tokens: expected an integer in 1..16"),
    ({"decode": {"max_new_tokens": True}}, "decode.max_new_tokens"),
    ({"decode": {"temperature": True}}, "decode.temperature"),
    ({"decode": {"temperature": -1}}, "decode.temperature"),
    ({"decode": {"top_p": 0}}, "decode.top_p"),
    ({"decode": {"top_k": -1}}, "decode.top_k"),
    ({"decode": {"top_k": 1.5}}, "decode.top_k"),
    ({"decode": {"seed": -1}}, "decode.seed"),
    ({"decode": {"seed": 2**60}}, "decode.seed"),
    ({"decode": {"stop": "\n"}}, "decode.stop"),
    ({"decode": {"stop": [""]}}, "decode.stop[0]"),
    ({"decode": {"stop": [1]}}, "decode.stop[0]"),
    ({"decode": {"eos": 1}}, "decode.eos"),
    ({"decode": {"beam": 4}}, "decode.beam: unknown field"),
    ({"format": "xml"}, "format"),
    ({"format": None}, "format"),
    ({"nonce": 12345}, "nonce: expected unpadded base64url"),
    ({"nonce": None}, "nonce"),
    ({"challenge_window": {"issued_at": "yesterday", "expires_at": "2026-11-27T08:02:00Z"}},
     "challenge_window.issued_at"),
    ({"challenge_window": "soon"}, "challenge_window"),
    ({"extra": 1}, "extra: unknown field"),
]


@pytest.mark.parametrize(("change", "word"), FIELD_CASES)
def test_field_refusals_name_the_field(client: TestClient, change: dict[str, Any],
                                       word: str) -> None:
    _problem(client.post("/v1/infer", json=body(**change)), 400, word)


@pytest.mark.parametrize("name", ["input", "nonce"])
def test_missing_fields(client: TestClient, name: str) -> None:
    doc = body()
    del doc[name]
    _problem(client.post("/v1/infer", json=doc), 400, f"{name}: required field is missing")


@pytest.mark.parametrize(("nonce", "word"), [
    ("AAAA", "3 bytes"),
    (b64url_encode(bytes(7)), "7 bytes; it must be 8..64"),
    (b64url_encode(bytes(65)), "65 bytes; it must be 8..64"),
    ("AAAAAAAAAAA=", "base64url"),
    ("not base64!", "base64url"),
    ("", "0 bytes"),
    ("A" * 3000, "bytes"),
])
def test_bad_nonces(client: TestClient, nonce: str, word: str) -> None:
    doc = _problem(client.post("/v1/infer", json=body(nonce=nonce)), 400, word)
    assert doc["type"].endswith("/bad-nonce")


def test_oversized_body(client: TestClient) -> None:
    big = json.dumps(body(input="x" * 5000)).encode()
    _problem(client.post("/v1/infer", content=big,
                         headers={"content-type": "application/json"}), 413, "4096")

    def chunks() -> Iterator[bytes]:  # no content-length: the streaming limit applies
        yield b'{"input": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    _problem(client.post("/v1/infer", content=chunks(),
                         headers={"content-type": "application/json"}), 413)


def test_wrong_content_type_and_routes(client: TestClient) -> None:
    _problem(client.post("/v1/infer", content=json.dumps(body()),
                         headers={"content-type": "text/plain"}), 415, "application/json")
    _problem(client.get("/v1/infer"), 405)
    _problem(client.get("/v1/nothing"), 404)


def test_busy(client: TestClient, attester: Attester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(attester, "config", AttesterConfig(max_pending=1))
    with attester.slot():
        _problem(client.post("/v1/infer", json=body()), 503, "in flight")


def test_never_500_on_mutated_bodies(client: TestClient) -> None:
    rng = random.Random(4)
    values: list[Any] = [None, True, -1, 0, 2**64, 1.5, "", "x", [], {}, ["a"], {"a": 1},
                         "{input}", NONCE, "A" * 300]
    keys = ["input", "template", "decode", "nonce", "challenge_window", "format", "zzz"]
    dkeys = ["max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop", "eos", "x"]
    for _ in range(120):
        doc = body()
        for _ in range(rng.randint(1, 3)):
            if rng.random() < 0.5:
                doc[rng.choice(keys)] = rng.choice(values)
            else:
                old = doc.get("decode")
                decode: dict[str, Any] = dict(old) if isinstance(old, dict) else {}
                decode[rng.choice(dkeys)] = rng.choice(values)
                doc["decode"] = decode
        resp = client.post("/v1/infer", json=doc)
        assert resp.status_code in (200, 400, 413), (doc, resp.text)
        if resp.status_code != 200:
            assert resp.headers["content-type"].startswith(PROBLEM)


def test_not_ready_answers_503(config: AttesterConfig, home: Home) -> None:
    svc = Attester(config, home)  # no engine loaded; lifespan not started
    client = TestClient(create_app(config, attester=svc), raise_server_exceptions=False)
    resp = client.get("/healthz")
    assert resp.status_code == 503 and resp.json()["status"] == "starting"
    _problem(client.post("/v1/infer", json=body()), 503, "loading")
    _problem(client.get("/v1/info"), 503)
    svc.load_error = "model failed to load: boom"
    assert client.get("/healthz").json()["status"] == "failed"


# -- configuration --------------------------------------------------------------------

def test_config_file_and_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONTAINER_ENV, raising=False)
    h = Home.resolve(tmp_path / "h")
    assert load_config(h) == AttesterConfig()
    h.config.write_text(json.dumps({"attester": {"provider": "tsm", "threads": 2,
                                                 "operator": "me"}, "verifier": {}}))
    c = load_config(h)
    assert (c.provider, c.threads, c.operator) == ("tsm", 2, "me")
    monkeypatch.setenv(CONTAINER_ENV, CONTAINER)
    assert load_config(h).container_digest == CONTAINER
    monkeypatch.setenv(CONTAINER_ENV, "latest")
    with pytest.raises(UsageError, match=CONTAINER_ENV):
        load_config(h)
    for bad, word in [({"provider": "sgx"}, "attester.provider"),
                      ({"threads": "2"}, "attester.threads"),
                      ({"max_new_tokens": 0}, "attester.max_new_tokens"),
                      ({"container_digest": "sha256:xyz"}, "attester.container_digest"),
                      ({"colour": "blue"}, "attester.colour: unknown setting")]:
        with pytest.raises(UsageError, match=word):
            AttesterConfig.from_mapping(bad)
    with pytest.raises(UsageError, match="does not exist"):
        load_config(h, tmp_path / "missing.json")
