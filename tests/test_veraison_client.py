"""bytereplay.veraison_client against the verifier on loopback, against a Veraison-shaped
fake (padded nonces, 202 then polling, another scheme's EAR), its typed errors, its
trust rules, and `bytereplay verify --verifier URL`."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from requests.adapters import BaseAdapter
from verifier_fixtures import (
    EvidenceFactory,
    Served,
    evidence_factory,
    make_verifier,
    new_home,
)

from bytereplay import ear
from bytereplay.cli import main
from bytereplay.encoding import b64url_decode
from bytereplay.errors import (
    ConflictError,
    MediaTypeError,
    NotAcceptableError,
    NotFoundError,
    NotReadyError,
    SignatureError,
    UpstreamError,
    UsageError,
)
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey, jwk_thumbprint
from bytereplay.veraison_client import VeraisonClient
from verifier.pipeline import Verifier

JWT = "application/eat+jwt"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[str, Verifier, EvidenceFactory]]:
    home = new_home(tmp_path_factory.mktemp("vclient"))
    verifier = make_verifier(home, replay=False)
    served = Served(verifier)
    try:
        yield served.url, verifier, evidence_factory(home)
    finally:
        served.close()


def test_session_round_trip(live: tuple[str, Verifier, EvidenceFactory]) -> None:
    url, _, factory = live
    client = VeraisonClient(url, trust_discovery_key=True)
    d = client.discovery()
    assert d.state == "READY" and JWT in d.media_types
    assert d.endpoints["newChallengeResponseSession"] == "/challenge-response/v1/newSession"
    session = client.new_session()
    assert session.status == "waiting" and len(session.nonce) == 32
    assert session.url.startswith(f"{url}/challenge-response/v1/session/")
    assert len(client.new_session(nonce_size=8).nonce) == 8
    assert client.new_session(nonce=b"m" * 20).nonce == b"m" * 20
    done = client.submit(session, factory.make(session.nonce), JWT)
    assert done.status == "complete" and done.evidence is not None
    result = client.verify_result(done)
    assert result.ear is not None and result.status == "warning"
    assert result.ear.profile == ear.PROFILE_LEGACY
    assert result.ear.nonce is not None and b64url_decode(result.ear.nonce) == session.nonce
    assert client.get(session).raw == done.raw
    client.delete(session)
    with pytest.raises(NotFoundError):
        client.get(session)


def test_typed_errors(live: tuple[str, Verifier, EvidenceFactory]) -> None:
    url, _, factory = live
    client = VeraisonClient(url)
    session = client.new_session()
    evidence = factory.make(session.nonce)
    with pytest.raises(MediaTypeError) as info:
        client.submit(session, evidence, "text/plain")
    assert "application/eat+cwt" in info.value.detail  # the server's Accept, quoted
    with pytest.raises(UsageError):
        client.new_session(nonce_size=4)  # the server's 400
    with pytest.raises(UsageError):
        client.new_session(nonce_size=8, nonce=b"x" * 8)
    with pytest.raises(UsageError):
        client.submit(session, b"", JWT)
    client.submit(session, evidence, JWT)
    with pytest.raises(ConflictError):
        client.submit(session, evidence, JWT)
    with pytest.raises(NotFoundError):
        client.get(session.url.rsplit("/", 1)[0] + "/00000000-0000-4000-8000-000000000000")
    with pytest.raises(NotAcceptableError):
        client.submit(client.new_session(), evidence, JWT,
                      accept='application/eat+jwt; eat_profile="tag:example,1:x"')
    dead = VeraisonClient("http://127.0.0.1:9", timeout=2)
    with pytest.raises(UpstreamError) as err:
        dead.new_session()
    assert err.value.upstream_status is None
    with pytest.raises(UsageError):
        VeraisonClient("ftp://example")


def test_trust_is_the_callers(live: tuple[str, Verifier, EvidenceFactory]) -> None:
    url, verifier, factory = live
    plain = VeraisonClient(url)
    session = plain.new_session()
    done = plain.submit(session, factory.make(session.nonce), JWT)
    with pytest.raises(SignatureError, match="no EAR verification key"):
        plain.verify_result(done)  # nothing pinned: the discovery key is not used
    thumb = jwk_thumbprint(verifier.key.jwk)
    assert VeraisonClient(url, discovery_key_thumbprint=thumb).verify_result(done).ear
    with pytest.raises(SignatureError, match="not the pinned one"):
        VeraisonClient(url, discovery_key_thumbprint="x" * 43).verify_result(done)
    pinned = KeySet(f"{url}/.well-known/jwks.json")
    assert VeraisonClient(url, ear_keys=pinned).verify_result(done).status == "warning"
    other = KeySet({"keys": [SigningKey.generate().jwk]})
    with pytest.raises(SignatureError):
        VeraisonClient(url, ear_keys=other).verify_result(done)


# -- a Veraison-shaped server, in process ------------------------------------------------------


class FakeVeraison(BaseAdapter):
    """Answers as veraison/services does: padded base64url nonce, Go's []byte (standard
    base64) evidence value, 202 `processing` then `complete` on GET, an EAR whose submod
    is another scheme."""

    def __init__(self, key: SigningKey, *, errors: dict[str, int] | None = None) -> None:
        super().__init__()
        self.key, self.errors, self.gets = key, errors or {}, 0
        self.nonce = bytes(range(32))
        self.doc: dict[str, Any] = {
            "status": "waiting", "nonce": base64.urlsafe_b64encode(self.nonce).decode(),
            "expiry": "2030-01-01T00:00:00.123456789Z",
            "accept": ["application/psa-attestation-token"]}

    def _answer(self, request: requests.PreparedRequest, status: int, doc: Any,
                headers: dict[str, str] | None = None) -> requests.Response:
        resp = requests.Response()
        resp.status_code, resp.url, resp.request = status, str(request.url), request
        resp._content = json.dumps(doc).encode()
        resp.headers.update(headers or {})
        return resp

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        path = str(request.url).split("://", 1)[1].split("/", 1)[1].split("?")[0]
        key = f"{request.method} /{path}"
        if key in self.errors:
            return self._answer(request, self.errors[key], {"title": "x", "detail": "said no"})
        if key == "GET /.well-known/veraison/verification":
            return self._answer(request, 200, {
                "ear-verification-key": {k: v for k, v in self.key.jwk.items() if k != "kid"},
                "media-types": ["application/psa-attestation-token"], "version": "commit-x",
                "service-state": "READY",
                "api-endpoints": {"newChallengeResponseSession":
                                  "/challenge-response/v1/newSession"}})
        if key == "POST /challenge-response/v1/newSession":
            return self._answer(request, 201, self.doc, {"Location": "session/abc"})
        if key == "POST /challenge-response/v1/session/abc":
            body = request.body if isinstance(request.body, bytes) else b""
            self.doc = {**self.doc, "status": "processing",
                        "evidence": {"type": request.headers["Content-Type"],
                                     "value": base64.b64encode(body).decode()}}
            return self._answer(request, 202, self.doc)
        if key == "GET /challenge-response/v1/session/abc":
            self.gets += 1
            if self.gets >= 2:
                claims = {"eat_profile": ear.PROFILE_LEGACY, "iat": 1_700_000_000,
                          "ear.verifier-id": {"build": "x", "developer": "y"},
                          "submods": {"PSA_IOT": {"ear.status": "affirming"},
                                      "OTHER": {"ear.status": "warning"}}}
                self.doc = {**self.doc, "status": "complete",
                            "result": ear.sign_ear(claims, self.key)}
            return self._answer(request, 200, self.doc)
        if key == "DELETE /challenge-response/v1/session/abc":
            return self._answer(request, 204, {})
        return self._answer(request, 404, {"detail": "no route"})

    def close(self) -> None:
        pass


def fake_client(adapter: FakeVeraison, **kwargs: Any) -> VeraisonClient:
    http = requests.Session()
    http.mount("https://", adapter)
    return VeraisonClient("https://veraison.example", http=http, poll_interval=0,
                          sleep=lambda _s: None, **kwargs)


def test_against_veraison_shapes() -> None:
    key = SigningKey.generate()
    adapter = FakeVeraison(key)
    client = fake_client(adapter, trust_discovery_key=True)
    session = client.new_session()
    assert session.nonce == adapter.nonce  # padded base64url read too
    assert session.url == "https://veraison.example/challenge-response/v1/session/abc"
    done = client.submit(session, b"\xd2psa", "application/psa-attestation-token")
    assert done.status == "complete" and adapter.gets == 2
    assert base64.b64decode(done.evidence["value"]) == b"\xd2psa"  # type: ignore[index]
    result = client.verify_result(done)
    assert result.ear is None and result.status == "warning"  # the worst submod
    client.delete(done)


@pytest.mark.parametrize(("status", "error"), [(406, NotAcceptableError), (503, NotReadyError),
                                               (500, UpstreamError), (418, UpstreamError)])
def test_status_to_error(status: int, error: type[Exception]) -> None:
    adapter = FakeVeraison(SigningKey.generate(),
                           errors={"POST /challenge-response/v1/newSession": status})
    with pytest.raises(error) as info:
        fake_client(adapter).new_session()
    assert "said no" in str(info.value)
    if isinstance(info.value, UpstreamError):
        assert info.value.upstream_status == status


# -- bytereplay verify --verifier URL ---------------------------------------------------------------


def test_cli_verify_against_a_verifier(live: tuple[str, Verifier, EvidenceFactory],
                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url, verifier, factory = live
    nonce = verifier.issue_nonce().nonce
    evidence = factory.make(nonce)
    assert isinstance(evidence, str)
    path = tmp_path / "ev.jwt"
    path.write_text(evidence)
    assert main(["verify", str(path), "--verifier", url]) == 2  # no trust chosen
    assert "--trust-discovery-key" in capsys.readouterr().err
    assert main(["verify", str(path), "--verifier", url, "--trust-discovery-key"]) == 0
    out = capsys.readouterr().out
    assert "session: " + url in out and "status: warning" in out
    assert "nonce: ok" in out
    # the nonce is spent now: a second time gives a negative EAR (and exit 1)
    assert main(["verify", str(path), "--verifier", url, "--trust-discovery-key"]) == 2
    assert "already used" in capsys.readouterr().err  # newSession refuses the used nonce
    # a CWT in a CMW record, the draft profile, a pinned JWKS, JSON out
    nonce = verifier.issue_nonce().nonce
    cwt = factory.make(nonce, fmt="cwt")
    assert isinstance(cwt, bytes)
    path = tmp_path / "ev.cwt"
    path.write_bytes(cwt)
    jwks = tmp_path / "ear.jwks"
    jwks.write_text(json.dumps(verifier.jwks()))
    assert main(["verify", str(path), "--verifier", url, "--ear-keys", str(jwks),
                 "--wrap", "cmw-cbor", "--ear-profile", "draft-04", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "warning" and doc["ear"]["eat_profile"] == ear.PROFILE_DRAFT
    # --session: a session opened first, the Evidence made for its nonce
    client = VeraisonClient(url)
    session = client.new_session()
    path.write_text(str(factory.make(session.nonce)))
    assert main(["verify", str(path), "--verifier", url, "--session", session.url,
                 "--ear-key-thumbprint", jwk_thumbprint(verifier.key.jwk), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["session"] == session.url


# -- the attester, configured with a Veraison-style verifier ----------------------------------


def test_attester_takes_its_challenge_from_new_session(
        live: tuple[str, Verifier, EvidenceFactory]) -> None:
    from fastapi.testclient import TestClient
    from verifier_fixtures import shared_engine

    from attester.config import AttesterConfig
    from attester.service import Attester, create_app

    url, verifier, factory = live
    home = factory.home  # the verifier trusts this home's simulated CA
    client = VeraisonClient(url, trust_discovery_key=True)
    for submit in (False, True):
        config = AttesterConfig(veraison_verifier=url, veraison_submit=submit, max_new_tokens=4)
        svc = Attester(config, home, engine=shared_engine())
        with TestClient(create_app(config, attester=svc)) as attester:
            r = attester.post("/v1/infer", json={"input": "hi", "decode": {"max_new_tokens": 4}})
            assert r.status_code == 200, r.text
            answer = r.json()
            assert answer["session"].startswith(f"{url}/challenge-response/v1/session/")
            if submit:
                done = client.get(answer["session"])
                assert done.status == "complete" and answer["result"] == done.result
            else:
                assert "result" not in answer
                assert client.get(answer["session"]).status == "waiting"
                done = client.submit(answer["session"], answer["evidence"], JWT)
            result = client.verify_result(done)
            assert result.status == "warning" and result.ear is not None
            assert result.ear.output_hash == answer["output_hash"]
            assert result.ear.extensions["bytereplay.checks"]["nonce"] == "ok"
            # a nonce in the body is still used as given (no session)
            nonce = verifier.issue_nonce().text
            r = attester.post("/v1/infer", json={"input": "hi", "nonce": nonce,
                                                 "decode": {"max_new_tokens": 4}})
            assert "session" not in r.json()
            # a bad body is refused before any session is opened
            assert attester.post("/v1/infer", json={"input": 3}).status_code == 400


def test_attester_veraison_settings() -> None:
    from attester.config import AttesterConfig

    with pytest.raises(UsageError, match="veraison_submit: needs veraison_verifier"):
        AttesterConfig(veraison_submit=True)
    with pytest.raises(UsageError, match="veraison_verifier"):
        AttesterConfig(veraison_verifier="ftp://x")
    with pytest.raises(UsageError, match="veraison_submit"):
        AttesterConfig.from_mapping({"veraison_verifier": "http://x", "veraison_submit": 1})
