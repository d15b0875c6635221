"""External attestation tokens (ITA / NRAS style) against a JWKS served on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from jwks_server import JwksServer
from verifier_fixtures import evidence_factory, make_verifier, new_home

from bytereplay.ear import flat_submod, peek
from bytereplay.errors import SignatureError
from bytereplay.keys import SigningKey
from verifier.config import ExternalService
from verifier.external import ExternalVerifier, keyset_for, verify_external_token
from verifier.service import create_app

ISSUER = "https://attestation.example"
AUDIENCE = "bytereplay-verifier"


@pytest.fixture(scope="module")
def keys() -> dict[str, SigningKey]:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs = SigningKey.from_private(rsa_key)
    rs_jwk = {**rs.jwk, "alg": "RS256"}
    return {"RS256": SigningKey(rsa_key, "RS256", rs_jwk), "ES256": SigningKey.generate("ES256"),
            "ES384": SigningKey.generate("ES384")}


@pytest.fixture
def jwks(keys: dict[str, SigningKey]) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(keys["RS256"], keys["ES256"])
    yield server
    server.close()


def service(url: str, **kw: Any) -> ExternalService:
    return ExternalService(name="ita", jwks=url, issuer=ISSUER, audience=AUDIENCE, **kw)


def token(key: SigningKey, *, alg: str | None = None, headers: dict[str, Any] | None = None,
          **claims: Any) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now, "exp": now + 300,
            "attester_tcb_status": "UpToDate", **claims}
    return jwt.encode(body, key.private, algorithm=alg or key.alg,
                      headers={"kid": key.kid, **(headers or {})})


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_valid_tokens(jwks: JwksServer, keys: dict[str, SigningKey], alg: str) -> None:
    out = verify_external_token(token(keys[alg]), service(jwks.url))
    assert out.service == "ita"
    assert out.claims["attester_tcb_status"] == "UpToDate"


def test_refusals(jwks: JwksServer, keys: dict[str, SigningKey]) -> None:
    svc = service(jwks.url, leeway_s=10.0)
    ks = keyset_for(svc)
    es = keys["ES256"]
    now = int(time.time())
    cases = [
        (token(es, iss="https://evil.example"), "wrong issuer"),
        (token(es, aud="someone-else"), "wrong audience"),
        (token(es, exp=now - 60), "token expired"),
        (token(es, nbf=now + 60), "not yet valid"),
        (jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": now + 60}, "secret" * 8,
                    algorithm="HS256", headers={"kid": es.kid}), "refused"),
        (token(es, headers={"jku": "https://evil.example/jwks"}), "not trusted"),
        (token(keys["ES384"]), "unknown key id"),
    ]
    for tok, text in cases:
        with pytest.raises(SignatureError, match=text):
            verify_external_token(tok, svc, ks)
    # within the leeway is fine
    verify_external_token(token(es, exp=now - 5), svc, ks)
    # an exp-less token is refused
    with pytest.raises(SignatureError):
        verify_external_token(jwt.encode({"iss": ISSUER, "aud": AUDIENCE}, es.private,
                                         algorithm="ES256", headers={"kid": es.kid}), svc, ks)


def test_pinned_algorithms(jwks: JwksServer, keys: dict[str, SigningKey]) -> None:
    es_only = service(jwks.url, algorithms=("ES256",))
    with pytest.raises(SignatureError, match="not in the allowed list"):
        verify_external_token(token(keys["RS256"]), es_only)
    ed = SigningKey.generate("EdDSA")
    jwks.publish(ed)
    with pytest.raises(SignatureError, match="not in the allowed list"):
        verify_external_token(token(ed), service(jwks.url))


def test_unknown_kid_refetches_once_with_cooldown(jwks: JwksServer,
                                                  keys: dict[str, SigningKey]) -> None:
    svc = service(jwks.url, refetch_cooldown_s=60.0)
    ks = keyset_for(svc)
    verify_external_token(token(keys["ES256"]), svc, ks)
    assert jwks.hits == 1
    rotated = SigningKey.generate("ES256")
    jwks.publish(keys["ES256"], rotated)  # the service rotates in a new key
    verify_external_token(token(rotated), svc, ks)
    assert jwks.hits == 2  # one refetch found it
    stranger = SigningKey.generate("ES256")
    for _ in range(3):
        with pytest.raises(SignatureError, match="unknown key id"):
            verify_external_token(token(stranger), svc, ks)
    assert jwks.hits == 2  # the cooldown holds further refetches back


def test_jwks_file(tmp_path: Path, keys: dict[str, SigningKey]) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys["ES256"].jwk]}))
    svc = ExternalService(name="nras", jwks=str(path), issuer=ISSUER)
    assert verify_external_token(token(keys["ES256"], aud=None), svc).service == "nras"


def test_external_verifier_routes_by_issuer(jwks: JwksServer, keys: dict[str, SigningKey]) -> None:
    ev = ExternalVerifier([service(jwks.url)])
    assert ev.verify(token(keys["ES256"])).service == "ita"
    with pytest.raises(SignatureError, match="not a configured"):
        ev.verify(token(keys["ES256"], iss="https://other.example"))
    with pytest.raises(SignatureError, match="no external attestation service"):
        ev.verify(token(keys["ES256"]), service="nope")
    facts, texts = ev.appraise([token(keys["ES256"]), token(keys["ES256"], iss="https://x"),
                                "junk"])
    assert facts == {"ita": "ok", "token[1]": "unknown-issuer", "token[2]": "failed"}
    assert texts["ita"] == "ok" and "not configured" in texts["token[1]"]


def test_pipeline_hook_and_endpoint(jwks: JwksServer, keys: dict[str, SigningKey],
                                    tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False, external=(service(jwks.url),))
    factory = evidence_factory(home)
    app = create_app(verifier.config, verifier=verifier)
    with TestClient(app) as client:
        good, bad = token(keys["ES256"]), token(keys["ES256"], aud="other")
        for tokens, hardware, check in (([good], 32, "ita: ok"),
                                        ([bad], 96, "ita: wrong audience")):
            nonce = client.post("/v1/challenge").json()["nonce"]
            from bytereplay.encoding import b64url_decode

            evidence = factory.make(b64url_decode(nonce))
            r = client.post("/v1/verify", json={"evidence": evidence, "format": "jwt",
                                                "external_tokens": tokens})
            assert r.status_code == 200, r.text
            sub = flat_submod(peek(r.json()["result"]))
            assert sub["ear.trustworthiness-vector"]["hardware"] == hardware
            assert sub["bytereplay.checks"]["external"] == check

        r = client.post("/v1/external/verify", json={"token": good})
        assert r.status_code == 200
        assert r.json()["service"] == "ita" and r.json()["claims"]["iss"] == ISSUER
        r = client.post("/v1/external/verify", json={"token": bad, "service": "ita"})
        assert r.status_code == 400
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["detail"] == "wrong audience"
        assert client.get("/v1/info").json()["external"][0]["name"] == "ita"
