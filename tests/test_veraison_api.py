"""Veraison's challenge-response API and discovery document on the verifier.

The HTTP client here is written from Veraison's API documentation only (veraison/docs
`api/challenge-response/challenge-response.yaml` and `api/well-known/README.md`): raw
httpx requests, the Location header resolved against the newSession URL, the nonce read
as unpadded base64url with the standard library, and the EAR checked by jwcrypto with
the discovery document's key. bytereplay's own client is tested in
tests/test_veraison_client.py.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from fastapi.testclient import TestClient
from jwcrypto import jwk as jc_jwk
from jwcrypto import jwt as jc_jwt
from verifier_fixtures import (
    EvidenceFactory,
    engine_factory,
    evidence_factory,
    make_verifier,
    new_home,
    redis_url,
    store_options,
)

from bytereplay import cmw
from bytereplay.ear import PROFILE_DRAFT, flat_submod
from verifier.config import VerifierConfig
from verifier.nonces import (
    EXPIRED,
    REUSED,
    NonceRefused,
    RedisStore,
    SqliteStore,
    Store,
)
from verifier.pipeline import Verifier
from verifier.service import create_app
from verifier.veraison_api import parse_nonce_request

__all__ = ["redis_url"]  # the fixture, imported for pytest

BASE = "http://testserver"
NEW_SESSION = f"{BASE}/challenge-response/v1/newSession"
SESSION_MT = "application/vnd.veraison.challenge-response-session+json"
DISCOVERY_MT = "application/vnd.veraison.discovery+json"
JWT, CWT = "application/eat+jwt", "application/eat+cwt"
ACCEPT = {"Accept": SESSION_MT}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[TestClient, Verifier, EvidenceFactory]]:
    home = new_home(tmp_path_factory.mktemp("veraison"))
    verifier = make_verifier(home, replay=False)
    with TestClient(create_app(verifier.config, verifier=verifier), base_url=BASE) as client:
        yield client, verifier, evidence_factory(home)


def unpadded_b64url(text: str) -> bytes:
    assert "=" not in text and "+" not in text and "/" not in text
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["detail"]
    return body


def open_session(client: httpx.Client | TestClient, query: str = "") -> tuple[str, dict[str, Any]]:
    """newSession as the documentation describes it: the session URL and its body."""
    r = client.post(NEW_SESSION + query, headers=ACCEPT)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == SESSION_MT
    location = r.headers["location"]
    assert location.startswith("session/")  # relative to the newSession URL
    return urljoin(NEW_SESSION, location), r.json()


def ear_claims(token: str, discovery: dict[str, Any]) -> dict[str, Any]:
    """The EAR verified by jwcrypto with the discovery document's key (pinned by the test)."""
    key_doc = discovery["ear-verification-key"]
    key = jc_jwk.JWK(**key_doc)
    tok = jc_jwt.JWT(jwt=token, key=key, algs=[key_doc["alg"]])
    claims: dict[str, Any] = json.loads(tok.claims)
    return claims


def test_discovery_document(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, verifier, _ = served
    r = client.get("/.well-known/veraison/verification", headers={"Accept": DISCOVERY_MT})
    assert r.status_code == 200
    assert r.headers["content-type"] == DISCOVERY_MT
    doc = r.json()
    assert doc["api-endpoints"] == {
        "newChallengeResponseSession": "/challenge-response/v1/newSession"}
    assert doc["service-state"] == "READY"
    key = doc["ear-verification-key"]
    assert key["alg"] == "ES256" and key["kty"] == "EC" and "d" not in key
    assert key == verifier.jwks()["keys"][0]
    assert set(doc["media-types"]) >= {JWT, CWT, "application/cmw+json", "application/cmw+cbor"}
    assert doc["attestation-schemes"] and doc["version"]
    assert client.get("/.well-known/veraison/verification").status_code == 200  # no Accept
    problem(client.get("/.well-known/veraison/verification",
                       headers={"Accept": "text/html"}), 406)


def test_whole_session(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, factory = served
    discovery = client.get("/.well-known/veraison/verification").json()
    new_session = urljoin(BASE, discovery["api-endpoints"]["newChallengeResponseSession"])
    assert new_session == NEW_SESSION
    url, session = open_session(client)
    assert url.startswith(f"{BASE}/challenge-response/v1/session/")
    assert session["status"] == "waiting"
    nonce = unpadded_b64url(session["nonce"])
    assert len(nonce) == 32
    assert datetime.fromisoformat(session["expiry"].replace("Z", "+00:00")).tzinfo is not None
    assert JWT in session["accept"]
    assert set(session) == {"status", "nonce", "expiry", "accept"}

    evidence = factory.make(nonce)
    assert isinstance(evidence, str)
    r = client.post(url, content=evidence, headers={**ACCEPT, "Content-Type": JWT})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == SESSION_MT
    done = r.json()
    assert done["status"] == "complete"
    assert done["nonce"] == session["nonce"] and done["expiry"] == session["expiry"]
    assert done["evidence"]["type"] == JWT
    assert base64.b64decode(done["evidence"]["value"], validate=True) == evidence.encode()
    claims = ear_claims(done["result"], discovery)
    assert claims["eat_profile"] == "tag:github.com,2023:veraison/ear"
    assert claims["eat_nonce"] == session["nonce"]
    sub = claims["submods"]["bytereplay"]
    assert sub["ear.status"] == "warning"  # simulated TEE, replay off: never affirming
    assert sub["bytereplay.checks"]["nonce"] == "ok"

    got = client.get(url, headers=ACCEPT)
    assert got.status_code == 200 and got.json() == done
    problem(client.get(url, headers={"Accept": "text/plain"}), 406)
    assert client.delete(url).status_code == 204
    problem(client.get(url, headers=ACCEPT), 404)
    problem(client.delete(url), 404)


def test_new_session_query(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, _ = served
    _, s = open_session(client, "?nonceSize=8")
    assert len(unpadded_b64url(s["nonce"])) == 8
    _, s = open_session(client, "?nonceSize=64")
    assert len(unpadded_b64url(s["nonce"])) == 64
    mine = bytes(range(16))
    _, s = open_session(client, "?nonce=" + base64.urlsafe_b64encode(mine).decode().rstrip("="))
    assert unpadded_b64url(s["nonce"]) == mine
    padded = bytes(range(100, 120))  # Go's base64.URLEncoding pads: accepted too
    _, s = open_session(client, "?nonce=" + base64.urlsafe_b64encode(padded).decode())
    assert unpadded_b64url(s["nonce"]) == padded
    for query in ("?nonceSize=7", "?nonceSize=65", "?nonceSize=abc", "?nonceSize=",
                  "?nonce=" + base64.urlsafe_b64encode(b"short").decode(),
                  "?nonce=not*base64", "?nonceSize=16&nonce=" + "A" * 22):
        problem(client.post(NEW_SESSION + query, headers=ACCEPT), 400)
    problem(client.post(NEW_SESSION, headers={"Accept": "application/json"}), 406)
    assert client.post(NEW_SESSION).status_code == 201  # no Accept: anything goes
    assert client.post(NEW_SESSION, headers={"Accept": "*/*"}).status_code == 201
    problem(client.post(NEW_SESSION, headers={"Accept": f"{SESSION_MT};q=0, */*"}), 406)


def test_given_nonce_once(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    """A client's nonce that this verifier already saw used is refused; a fresh one it
    issued keeps its window."""
    client, _, factory = served
    issued = client.post("/v1/challenge").json()
    url, s = open_session(client, "?nonce=" + issued["nonce"])
    assert s["expiry"] == issued["expires_at"]
    evidence = factory.make(unpadded_b64url(issued["nonce"]))
    r = client.post(url, content=evidence, headers={"Content-Type": JWT})
    assert r.json()["status"] == "complete"
    problem(client.post(NEW_SESSION + "?nonce=" + issued["nonce"], headers=ACCEPT), 400)


def test_refusals(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, factory = served
    url, s = open_session(client)
    evidence = factory.make(unpadded_b64url(s["nonce"]))
    r = client.post(url, content=evidence, headers={"Content-Type": "text/plain"})
    problem(r, 415)
    assert [t.strip() for t in r.headers["accept"].split(",")] == s["accept"]
    problem(client.post(url, content=evidence), 415)  # no Content-Type
    wrapped = cmw.wrap_json("text/plain", b"hello")
    r = client.post(url, content=wrapped, headers={"Content-Type": "application/cmw+json"})
    problem(r, 415)
    assert JWT in r.headers["accept"]
    problem(client.post(url, content=b"", headers={"Content-Type": JWT}), 400)
    problem(client.post(url, content=b"[1,2]",
                        headers={"Content-Type": "application/cmw+json"}), 400)
    problem(client.post(url, content=evidence,
                        headers={"Content-Type": JWT, "Accept": "application/json"}), 406)
    unknown = f"{BASE}/challenge-response/v1/session/{uuid.uuid4()}"
    problem(client.post(unknown, content=evidence, headers={"Content-Type": JWT}), 404)
    problem(client.post(f"{BASE}/challenge-response/v1/session/nope", content=evidence,
                        headers={"Content-Type": JWT}), 404)
    problem(client.get(unknown), 404)
    # none of the refusals used the session: it still takes its Evidence
    assert client.get(url).json()["status"] == "waiting"
    r = client.post(url, content=evidence, headers={"Content-Type": JWT})
    assert r.status_code == 200 and r.json()["status"] == "complete"


def test_nonce_reuse_refused(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, factory = served
    discovery = client.get("/.well-known/veraison/verification").json()
    url, s = open_session(client)
    evidence = factory.make(unpadded_b64url(s["nonce"]))
    first = client.post(url, content=evidence, headers={"Content-Type": JWT})
    assert first.status_code == 200
    # the same session again: Evidence is taken once per session
    problem(client.post(url, content=evidence, headers={"Content-Type": JWT}), 409)
    assert client.get(url).json() == first.json()
    # the session's nonce through /v1/verify: consumed already
    r = client.post("/v1/verify", content=evidence, headers={"Content-Type": JWT})
    sub = flat_submod(ear_claims(r.json()["result"], discovery))  # /v1/verify: draft-04
    assert r.json()["status"] == "contraindicated"
    assert sub["bytereplay.checks"]["nonce"].startswith("refused: nonce was already used")
    # and the other way round: /v1/verify first, then the session gets a negative EAR
    url, s = open_session(client)
    evidence = factory.make(unpadded_b64url(s["nonce"]))
    assert client.post("/v1/verify", content=evidence,
                       headers={"Content-Type": JWT}).json()["status"] == "warning"
    done = client.post(url, content=evidence, headers={"Content-Type": JWT}).json()
    assert done["status"] == "complete"
    sub = ear_claims(done["result"], discovery)["submods"]["bytereplay"]
    assert sub["ear.status"] == "contraindicated"


def test_other_nonce_is_left_alone(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, verifier, factory = served
    discovery = client.get("/.well-known/veraison/verification").json()
    url, _ = open_session(client)
    other = unpadded_b64url(client.post("/v1/challenge").json()["nonce"])
    done = client.post(url, content=factory.make(other), headers={"Content-Type": JWT}).json()
    sub = ear_claims(done["result"], discovery)["submods"]["bytereplay"]
    assert done["status"] == "complete" and sub["ear.status"] == "contraindicated"
    assert "not this session's nonce" in sub["bytereplay.checks"]["nonce"]
    assert verifier.store.peek(other) == "fresh"


def test_bad_evidence_completes_negative(
        served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, _ = served
    discovery = client.get("/.well-known/veraison/verification").json()
    for body, media in ((b"a.b.c", JWT), (b"\x84\x40\xa0\x40\x40", CWT)):
        url, _ = open_session(client)
        r = client.post(url, content=body, headers={"Content-Type": media})
        assert r.status_code == 200 and r.json()["status"] == "complete"
        sub = ear_claims(r.json()["result"], discovery)["submods"]["bytereplay"]
        assert sub["ear.status"] == "contraindicated"
        assert sub["bytereplay.checks"]["decode"].startswith("failed")


@pytest.mark.parametrize("form", ["json", "cbor"])
@pytest.mark.parametrize("fmt", ["jwt", "cwt"])
def test_cmw_wrapped_evidence(form: str, fmt: str,
                              served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, factory = served
    url, s = open_session(client)
    evidence = factory.make(unpadded_b64url(s["nonce"]), fmt=fmt)
    raw = evidence.encode() if isinstance(evidence, str) else evidence
    inner = JWT if fmt == "jwt" else CWT
    wrapped = cmw.wrap_json(inner, raw) if form == "json" else cmw.wrap_cbor(inner, raw)
    r = client.post(url, content=wrapped, headers={"Content-Type": f"application/cmw+{form}"})
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["evidence"] == {"type": inner, "value": base64.b64encode(raw).decode()}
    claims = json.loads(base64.urlsafe_b64decode(done["result"].split(".")[1] + "=="))
    assert claims["submods"]["bytereplay"]["ear.status"] == "warning"


def test_ear_profile_on_request(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, factory = served
    discovery = client.get("/.well-known/veraison/verification").json()
    draft = PROFILE_DRAFT
    url, s = open_session(client)
    accept = f'{SESSION_MT}, application/eat+jwt; eat_profile="{draft}"'
    r = client.post(url, content=factory.make(unpadded_b64url(s["nonce"])),
                    headers={"Content-Type": JWT, "Accept": accept})
    claims = ear_claims(r.json()["result"], discovery)
    assert claims["eat_profile"] == draft
    assert claims["submods"]["bytereplay"]["ear_status"] == "warning"
    url, _ = open_session(client)
    problem(client.post(url, content=b"x.y.z", headers={
        "Content-Type": JWT,
        "Accept": f'{SESSION_MT}, application/eat+jwt; eat_profile="tag:example,1:other"'}), 406)
    assert client.get(url).json()["status"] == "waiting"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_session_expires_with_its_nonce(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    clock = Clock()
    verifier = Verifier(VerifierConfig(home=home, replay=False, nonce_ttl_s=60),
                        engine_factory=engine_factory, clock=clock)
    with TestClient(create_app(verifier.config, verifier=verifier), base_url=BASE) as client:
        url, s = open_session(client)
        assert s["expiry"] == "2027-01-15T08:01:00Z"
        clock.now += 59
        assert client.get(url).status_code == 200
        evidence = evidence_factory(home).make(unpadded_b64url(s["nonce"]))
        clock.now += 1
        problem(client.get(url), 404)
        problem(client.post(url, content=evidence, headers={"Content-Type": JWT}), 404)
        problem(client.delete(url), 404)
        assert verifier.store.peek(unpadded_b64url(s["nonce"])) == EXPIRED


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_sessions_live_in_the_shared_store(kind: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    """Two verifier processes (two apps, two stores on one file or one Redis): a session
    opened on one is answered by the other, and its Evidence is taken once in all."""
    home = new_home(tmp_path)
    extra = store_options(kind, request, f"va{id(tmp_path)}:")
    a = make_verifier(home, replay=False, **extra)
    b = make_verifier(home, replay=False, **extra)
    with TestClient(create_app(a.config, verifier=a), base_url=BASE) as ca, \
            TestClient(create_app(b.config, verifier=b), base_url=BASE) as cb:
        url, s = open_session(ca)
        assert cb.get(url).json() == s
        evidence = evidence_factory(home).make(unpadded_b64url(s["nonce"]))
        results: list[int] = []

        def submit(client: TestClient) -> None:
            results.append(client.post(url, content=evidence,
                                       headers={"Content-Type": JWT}).status_code)

        threads = [threading.Thread(target=submit, args=(c,)) for c in (ca, cb, ca, cb)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == [200, 409, 409, 409]
        assert ca.get(url).json()["status"] == cb.get(url).json()["status"] == "complete"
        assert cb.delete(url).status_code == 204
        problem(ca.get(url), 404)


# -- the store's session and client-nonce operations ------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Clock]]:
    clock = Clock()
    made: Store
    if request.param == "sqlite":
        made = SqliteStore(tmp_path / "s.sqlite3", ttl=120, clock=clock)
    else:
        made = RedisStore(request.getfixturevalue("redis_url"), prefix=f"vs{id(tmp_path)}:",
                          ttl=120, clock=clock)
    yield made, clock
    made.close()


def test_register_nonce(store: tuple[Store, Clock]) -> None:
    s, clock = store
    mine = b"n" * 16
    first = s.register(mine)
    assert (first.issued_at, first.expires_at) == (clock.now, clock.now + 120)
    clock.now += 10
    again = s.register(mine)  # still fresh: its window stays
    assert again.expires_at == first.expires_at
    s.consume(mine)
    with pytest.raises(NonceRefused) as info:
        s.register(mine)
    assert info.value.reason == REUSED
    late = b"l" * 16
    s.register(late)
    clock.now += 121
    with pytest.raises(NonceRefused) as info:
        s.register(late)
    assert info.value.reason == EXPIRED


def test_session_rows(store: tuple[Store, Clock]) -> None:
    s, clock = store
    doc = {"status": "waiting", "nonce": "AAAA", "expiry": "x", "accept": []}
    s.put_session("id1", doc, clock.now + 60)
    assert s.get_session("id1") == doc
    assert s.claim_session("id1") == "waiting"
    assert s.claim_session("id1") == "processing"
    assert s.get_session("id1") == {**doc, "status": "processing"}
    s.update_session("id1", "complete", {**doc, "result": "r"})
    assert s.get_session("id1") == {**doc, "status": "complete", "result": "r"}
    assert s.claim_session("nope") is None and s.get_session("nope") is None
    assert s.delete_session("id1") and not s.delete_session("id1")
    s.update_session("id1", "complete", doc)  # gone: not brought back
    assert s.get_session("id1") is None
    s.put_session("id2", doc, clock.now + 60)
    clock.now += 61
    if isinstance(s, SqliteStore):  # Redis expires keys on its own (wall clock)
        assert s.get_session("id2") is None and s.claim_session("id2") is None


def test_parse_nonce_request() -> None:
    assert parse_nonce_request(None, None, 32) == (None, 32)
    assert parse_nonce_request(None, "008", 32) == (None, 8)
    assert parse_nonce_request("AAAAAAAAAAA", None, 32) == (bytes(8), 8)
    assert parse_nonce_request("AAAAAAAAAAA=", None, 32) == (bytes(8), 8)
    for nonce, size in (("A", None), ("AAAAAAAAAAA==", None), ("AAAAAAAAAAAA=", None),
                        (None, "+8"), (None, "1e1"), (None, "٨"), (None, " 8"), ("x", "8")):
        with pytest.raises(Exception) as info:
            parse_nonce_request(nonce, size, 32)
        assert type(info.value).__name__ == "UsageError", (nonce, size)


def test_openapi_describes_the_session_api(
        served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, _ = served
    doc = client.get("/openapi.json").json()
    paths = {"/challenge-response/v1/newSession": ("post",),
             "/challenge-response/v1/session/{session_id}": ("post", "get", "delete"),
             "/.well-known/veraison/verification": ("get",)}
    for path, methods in paths.items():
        for method in methods:
            op = doc["paths"][path][method]
            assert op["summary"] and "422" not in op["responses"]
            for code, answer in op["responses"].items():
                assert answer["description"]
                if code.startswith("4"):
                    assert list(answer["content"]) == ["application/problem+json"]
    new = doc["paths"]["/challenge-response/v1/newSession"]["post"]
    assert list(new["responses"]["201"]["content"]) == [SESSION_MT]
    assert new["responses"]["201"]["headers"]["Location"]
    assert {p["name"] for p in new["parameters"]} == {"nonceSize", "nonce"}
    submit = doc["paths"]["/challenge-response/v1/session/{session_id}"]["post"]
    assert set(submit["requestBody"]["content"]) == {
        JWT, CWT, "application/cmw+json", "application/cmw+cbor"}
    assert {"404", "406", "409", "415"} <= set(submit["responses"])
    disc = doc["paths"]["/.well-known/veraison/verification"]["get"]
    assert list(disc["responses"]["200"]["content"]) == [DISCOVERY_MT]


@pytest.mark.parametrize("media", ["application/vnd.veraison.cmw+json",
                                   "application/vnd.veraison.cmw+cbor", "application/cmw",
                                   "application/vnd.veraison.cmw"])
def test_veraison_cmw_aliases(media: str,
                              served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    """What Veraison's Go client sends (application/vnd.veraison.cmw+cbor, ...) is read
    too; the unsuffixed forms by their first byte."""
    client, _, factory = served
    wraps = {"json": (cmw.wrap_json,), "cbor": (cmw.wrap_cbor,)}.get(
        media.rpartition("+")[2], (cmw.wrap_json, cmw.wrap_cbor))
    for wrap in wraps:
        url, s = open_session(client)
        evidence = factory.make(unpadded_b64url(s["nonce"]))
        assert isinstance(evidence, str)
        r = client.post(url, content=wrap(JWT, evidence.encode()),
                        headers={"Content-Type": media, **ACCEPT})
        assert r.status_code == 200, r.text
        assert r.json()["evidence"]["type"] == JWT
