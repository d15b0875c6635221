"""HTTP request fuzzing of both services (FastAPI TestClient, in process).

Random methods, paths, content types, query strings and bodies (junk bytes, JSON of any
shape, bodies with the right members holding wrong values, mutated genuine Evidence) to
the attester (`/v1/infer`) and the verifier (`/v1/challenge`, `/v1/verify`,
`/v1/results/{id}`, `/v1/external/verify`). Properties: never a 5xx; every 4xx is
`application/problem+json` with RFC 9457 members whose `status` is the HTTP status.
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from fastapi.testclient import TestClient
from hypothesis import example, given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import kit
from fuzz_budget import budget

from bytereplay.encoding import b64url_encode, cbor_dumps
from bytereplay.home import Home
from bytereplay.keys import thumbprint_bytes

PROBLEM = "application/problem+json"
HOME = Home.resolve(tempfile.mkdtemp(prefix="br-fuzz-http-"))
atexit.register(shutil.rmtree, HOME.root, True)
KIT = kit.EvidenceKit(HOME)


@pytest.fixture(scope="module")
def verifier_client() -> Iterator[TestClient]:
    from verifier.config import VerifierConfig
    from verifier.service import create_app

    app = create_app(VerifierConfig(home=HOME, replay=False, max_evidence_bytes=64 * 1024))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def attester_client() -> Iterator[TestClient]:
    from attester.config import AttesterConfig
    from attester.service import Attester, create_app

    config = AttesterConfig(max_new_tokens=4, max_input_chars=256, max_body_bytes=8192,
                            max_pending=64)
    svc = Attester(config, HOME)
    svc.load_engine()
    with TestClient(create_app(config, attester=svc), raise_server_exceptions=False) as client:
        yield client


def check(resp: Any) -> None:
    """Never a 5xx; a 4xx is RFC 9457 problem+json."""
    assert resp.status_code < 500, (resp.status_code, resp.text[:500])
    if resp.status_code >= 400:
        assert resp.headers["content-type"].split(";")[0] == PROBLEM, resp.headers
        doc = resp.json()
        assert doc["status"] == resp.status_code, doc
        assert isinstance(doc["title"], str) and isinstance(doc["detail"], str), doc
        assert isinstance(doc["type"], str), doc


# -- strategies ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                 max_size=3),
    max_leaves=10,
)
content_types = st.sampled_from([
    None, "application/json", "application/json; charset=utf-8", "application/eat+jwt",
    "application/eat+cwt", "APPLICATION/EAT+JWT", "text/plain", "application/cbor",
    "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/",
    "application/problem+json", "application/eat+jwt; x=1", "*/*", "",
])
URL_CHARS = st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="/?#%")
NONCE = bytes(range(32))
GOOD_JWT = str(KIT.make(NONCE))
GOOD_CWT = bytes(KIT.make(NONCE, fmt="cwt"))  # type: ignore[arg-type]


def _flip(data: bytes, i: int, b: int) -> bytes:
    if not data:
        return data
    i %= len(data)
    return data[:i] + bytes([b]) + data[i + 1:]


raw_bodies = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.tuples(st.integers(0, 10**6), st.integers(0, 255)).map(
        lambda t: _flip(GOOD_JWT.encode(), *t)),
    st.tuples(st.integers(0, 10**6), st.integers(0, 255)).map(lambda t: _flip(GOOD_CWT, *t)),
    st.sampled_from([b"", b"{}", b"[]", b"null", b'{"a":1,"a":2}', b"[" * 5000,
                     b'{"x":' + b"1" * 5000 + b"}", GOOD_JWT.encode(), GOOD_CWT,
                     b"\xef\xbb\xbf{}", b'"\\ud800"']),
)

verify_docs = st.fixed_dictionaries(
    {}, optional={"evidence": json_values | st.just(GOOD_JWT) | st.just(b64url_encode(GOOD_CWT))
                  | st.text(max_size=100), "format": st.sampled_from(["jwt", "cwt", "JWT", ""])
                  | json_values, "external_tokens": json_values | st.lists(st.text(max_size=20),
                                                                            max_size=2),
                  "extra": json_values})
infer_docs = st.fixed_dictionaries(
    {}, optional={
        "input": st.text(max_size=40) | json_values,
        "template": st.sampled_from(["{input}", "Q: {input}\nA:", "no mark", ""]) | json_values,
        "decode": st.fixed_dictionaries({}, optional={
            "max_new_tokens": st.integers(-2, 10) | json_values,
            "temperature": st.floats(-1, 200) | json_values,
            "top_k": st.integers(-1, 2**21) | json_values,
            "top_p": st.floats(-0.5, 1.5) | json_values,
            "seed": st.integers(-1, 2**54) | json_values,
            "stop": st.lists(st.text(max_size=4), max_size=3) | json_values,
            "eos": st.booleans() | json_values,
            "junk": json_values}) | json_values,
        "nonce": st.just(b64url_encode(NONCE)) | st.binary(max_size=70).map(b64url_encode)
        | json_values,
        "challenge_window": st.fixed_dictionaries({"issued_at": st.text(max_size=25),
                                                   "expires_at": st.text(max_size=25)})
        | json_values,
        "format": st.sampled_from(["jwt", "cwt", "xml"]) | json_values,
        "junk": json_values,
    })
queries = st.sampled_from(["", "?replay=false", "?replay=false&async=true", "?replay=maybe",
                           "?async=1&replay=0", "?replay=%00", "?x=1&x=2", "?replay=false&replay=true"])


def _post(client: TestClient, path: str, body: bytes, ctype: str | None) -> Any:
    headers = {} if ctype is None else {"content-type": ctype}
    return client.post(path, content=body, headers=headers)


# -- verifier -------------------------------------------------------------------------------


@budget(250)
@given(st.sampled_from(["/v1/verify", "/v1/challenge", "/v1/external/verify"]), content_types,
       raw_bodies, queries)
@example("/v1/verify", "application/eat+cwt",  # unhashable COSE alg (was a 500: fixed)
         kit.cose_sign1({1: [-7], 4: thumbprint_bytes(KIT.key.jwk)},
                        cbor_dumps(kit.claims_to_cbor(KIT.claims(NONCE))), KIT.key), "")
def test_verifier_raw_bodies(verifier_client: TestClient, path: str, ctype: str | None,
                             body: bytes, query: str) -> None:
    resp = _post(verifier_client, path + (query if path == "/v1/verify" else ""), body, ctype)
    check(resp)
    if path == "/v1/verify" and resp.status_code == 200:
        assert set(resp.json()) >= {"result", "status", "replay"}


@budget(200)
@given(verify_docs, queries)
def test_verifier_json_envelopes(verifier_client: TestClient, doc: dict[str, Any],
                                 query: str) -> None:
    resp = verifier_client.post("/v1/verify" + query, json=doc)
    check(resp)


@budget(100)
@given(json_values | st.fixed_dictionaries({}, optional={"size": st.integers(-5, 100)
                                                          | json_values, "x": json_values}))
def test_verifier_challenge_bodies(verifier_client: TestClient, doc: Any) -> None:
    resp = verifier_client.post("/v1/challenge", json=doc)
    check(resp)
    if resp.status_code == 200:
        assert 8 <= len(kit.b64url_decode(resp.json()["nonce"])) <= 64


@budget(100)
@given(st.text(alphabet=URL_CHARS, max_size=80),
       st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH"]))
def test_verifier_paths_and_methods(verifier_client: TestClient, tail: str, method: str) -> None:
    for path in (f"/v1/results/{tail}", f"/{tail}", f"/v1/{tail}"):
        check(verifier_client.request(method, path))


def test_verifier_oversized_body_is_413_problem(verifier_client: TestClient) -> None:
    resp = _post(verifier_client, "/v1/verify", b"A" * (200 * 1024), "application/eat+jwt")
    check(resp)
    assert resp.status_code == 413


def test_bug_verify_unhashable_cose_alg_is_not_a_500(verifier_client: TestClient) -> None:
    """attester/evidence.py `_cose_header`: `alg_id not in COSE_ALG_NAMES` with a CBOR array
    alg raises TypeError; `verifier.pipeline.step_decode` catches BytereplayError only, so
    /v1/verify answers 500. Anyone can send this (the signature is checked later)."""
    body = kit.cose_sign1({1: [-7], 4: thumbprint_bytes(KIT.key.jwk)},
                          cbor_dumps(kit.claims_to_cbor(KIT.claims(NONCE))), KIT.key)
    check(_post(verifier_client, "/v1/verify?replay=false", body, "application/eat+cwt"))


def test_bug_verify_quote_cert_with_bad_x509_version_is_not_a_500(
        verifier_client: TestClient) -> None:
    """verifier/tee/simulated.py `_leaf_from_chain` lets cryptography's `InvalidVersion`
    escape; `verifier.pipeline.step_quote` catches BytereplayError only: 500."""
    import base64

    from attester.evidence import encode

    nonce = verifier_client.post("/v1/challenge").json()["nonce"]
    claims = KIT.claims(kit.b64url_decode(nonce))
    quote = claims["bytereplay.quote"]
    der = base64.b64decode(quote["cert_chain"][0])
    at = der.find(b"\xa0\x03\x02\x01\x02")
    bad = der[:at + 4] + b"\x3b" + der[at + 5:]
    claims["bytereplay.quote"] = {**quote, "cert_chain": [base64.b64encode(bad).decode(),
                                                          *quote["cert_chain"][1:]]}
    token = encode(claims, KIT.key, "jwt")
    check(_post(verifier_client, "/v1/verify?replay=false", str(token).encode(),
                "application/eat+jwt"))


def test_genuine_evidence_passes_then_replays_are_refused(verifier_client: TestClient) -> None:
    nonce = verifier_client.post("/v1/challenge").json()["nonce"]
    for fmt, ctype in (("jwt", "application/eat+jwt"), ("cwt", "application/eat+cwt")):
        del fmt
        challenge = verifier_client.post("/v1/challenge").json()
        data = KIT.make_for(challenge, fmt="cwt" if ctype.endswith("cwt") else "jwt")
        body = data if isinstance(data, bytes) else data.encode()
        first = _post(verifier_client, "/v1/verify?replay=false", body, ctype)
        second = _post(verifier_client, "/v1/verify?replay=false", body, ctype)
        check(first)
        check(second)
        assert first.json()["status"] == "warning"  # simulated TEE: never better
        assert second.json()["status"] == "contraindicated"  # the nonce was used
    del nonce


# -- attester -----------------------------------------------------------------------------


@budget(150)
@given(content_types, raw_bodies)
def test_attester_raw_bodies(attester_client: TestClient, ctype: str | None,
                             body: bytes) -> None:
    check(_post(attester_client, "/v1/infer", body, ctype))


@budget(200)
@given(infer_docs)
@example({"input": "hi", "nonce": b64url_encode(NONCE), "decode": {"max_new_tokens": 2}})
def test_attester_json_bodies(attester_client: TestClient, doc: dict[str, Any]) -> None:
    resp = attester_client.post("/v1/infer", json=doc)
    check(resp)
    if resp.status_code == 200:
        answer = resp.json()
        assert set(answer) == {"output", "output_hash", "evidence", "evidence_format"}


@budget(50)
@given(st.text(alphabet=URL_CHARS, max_size=40),
       st.sampled_from(["GET", "POST", "DELETE"]))
def test_attester_paths_and_methods(attester_client: TestClient, tail: str, method: str) -> None:
    check(attester_client.request(method, f"/{tail}"))
    check(attester_client.request(method, f"/v1/{tail}"))


def test_cbor_sanity() -> None:
    assert cbor2.loads(GOOD_CWT).tag == 18
