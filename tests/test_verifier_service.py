"""The verifier sidecar over HTTP: endpoints, problem+json refusals, async results, the
EAR checked by independent JOSE libraries, a real server on loopback, the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from verifier_fixtures import (
    EvidenceFactory,
    Served,
    evidence_factory,
    free_port,
    make_verifier,
    new_home,
    redis_url,
    store_options,
)

from bytereplay.cli import main
from bytereplay.ear import PROFILE_DRAFT, PROFILE_LEGACY, flat_submod, peek
from bytereplay.encoding import b64url_decode, b64url_encode
from bytereplay.home import Home
from verifier.pipeline import Verifier
from verifier.service import create_app

__all__ = ["redis_url"]  # the fixture, imported for pytest

REPO = Path(__file__).resolve().parent.parent
JWT, CWT = "application/eat+jwt", "application/eat+cwt"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[TestClient, Verifier, EvidenceFactory]]:
    home = new_home(tmp_path_factory.mktemp("service"))
    verifier = make_verifier(home)
    with TestClient(create_app(verifier.config, verifier=verifier)) as client:
        yield client, verifier, evidence_factory(home)


def fresh(client: TestClient) -> bytes:
    r = client.post("/v1/challenge")
    assert r.status_code == 200
    return b64url_decode(r.json()["nonce"])


def problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_challenge(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, _ = served
    r = client.post("/v1/challenge")
    doc = r.json()
    assert set(doc) == {"nonce", "issued_at", "expires_at"}
    assert len(b64url_decode(doc["nonce"])) == 32
    assert doc["issued_at"].endswith("Z") and doc["expires_at"] > doc["issued_at"]
    assert r.headers["cache-control"] == "no-store"
    r = client.post("/v1/challenge", json={"size": 16})
    assert len(b64url_decode(r.json()["nonce"])) == 16
    for body in ({"size": 4}, {"size": 65}, {"size": "32"}, {"other": 1}, [1]):
        problem(client.post("/v1/challenge", json=body), 400)
    problem(client.post("/v1/challenge", content=b"size=8",
                        headers={"content-type": "text/plain"}), 415)
    problem(client.post("/v1/challenge", content=b"{bad",
                        headers={"content-type": "application/json"}), 400)


def test_verify_raw_jwt_cwt_and_json(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, factory = served
    evidence = factory.make(fresh(client))
    assert isinstance(evidence, str)
    r = client.post("/v1/verify", content=evidence, headers={"content-type": JWT})
    assert r.status_code == 200, r.text
    doc = r.json()
    assert set(doc) == {"result", "result_type", "status", "replay"}
    assert doc["result_type"] == f'application/eat+jwt; eat_profile="{PROFILE_DRAFT}"'
    assert peek(doc["result"])["eat_profile"] == PROFILE_DRAFT  # the default profile
    assert doc["status"] == "warning" and doc["replay"]["verdict"] == "match"

    cwt = factory.make(fresh(client), fmt="cwt")
    assert isinstance(cwt, bytes)
    r = client.post("/v1/verify?replay=false", content=cwt, headers={"content-type": CWT})
    assert r.json()["status"] == "warning"
    assert r.json()["replay"]["reason"] == "replay was not requested"

    cwt = factory.make(fresh(client), fmt="cwt")
    r = client.post("/v1/verify?replay=0", json={"evidence": b64url_encode(cwt), "format": "cwt"})
    assert r.json()["status"] == "warning"
    r = client.post("/v1/verify?replay=false", json={"evidence": factory.make(fresh(client))})
    assert r.json()["status"] == "warning"  # the format is detected


def test_replay_method_per_request(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    """`?replay_method=full` is how a caller whose relying party's policy asks for a full
    replay (strict, where prefill is not bitwise) gets one; an unknown method is a 400
    before the nonce is consumed."""
    client, verifier, factory = served
    for method, named in (("full", "full"), ("teacher-forced", "teacher-forced")):
        evidence = factory.make(fresh(client))
        r = client.post(f"/v1/verify?replay_method={method}", content=evidence,
                        headers={"content-type": JWT})
        assert r.status_code == 200, r.text
        replay = r.json()["replay"]
        assert replay["verdict"] == "match" and replay["method"] == named
    nonce = fresh(client)
    evidence = factory.make(nonce)
    problem(client.post("/v1/verify?replay_method=fast", content=evidence,
                        headers={"content-type": JWT}), 400)
    r = client.post("/v1/verify", content=evidence, headers={"content-type": JWT})
    assert r.json()["status"] == "warning"  # the nonce was still unused
    result = verifier.appraise(factory.make(fresh(client)), replay_method="full")
    assert result.replay["method"] == "full"


def test_bad_evidence_is_a_negative_ear(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, _ = served
    for body, ctype in ((b"not a jwt", JWT), (b"\x00\x01", CWT)):
        r = client.post("/v1/verify", content=body, headers={"content-type": ctype})
        assert r.status_code == 200
        assert r.json()["status"] == "contraindicated"
    r = client.post("/v1/verify", json={"evidence": "x.y.z"})
    assert r.json()["status"] == "contraindicated"


def test_transport_refusals(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, verifier, _ = served
    problem(client.post("/v1/verify", content=b"abc", headers={"content-type": "text/plain"}),
            415)
    problem(client.post("/v1/verify", content=b"abc"), 415)
    problem(client.post("/v1/verify", content=b"{not json",
                        headers={"content-type": "application/json"}), 400)
    problem(client.post("/v1/verify", json=["evidence"]), 400)
    problem(client.post("/v1/verify", json={"format": "jwt"}), 400)
    problem(client.post("/v1/verify", json={"evidence": "a.b.c", "format": "pdf"}), 400)
    problem(client.post("/v1/verify", json={"evidence": "a.b.c", "extra": 1}), 400)
    problem(client.post("/v1/verify?async=perhaps", json={"evidence": "a.b.c"}), 400)
    problem(client.post("/v1/verify", content=b"\xff\xfe", headers={"content-type": JWT}), 400)
    huge = b"a" * (verifier.config.max_body_bytes + 1)
    problem(client.post("/v1/verify", content=huge, headers={"content-type": JWT}), 413)
    over = b"a" * (verifier.config.max_evidence_bytes + 10)
    problem(client.post("/v1/verify", content=over, headers={"content-type": JWT}), 413)
    problem(client.get("/v1/results/unknown-id-123"), 404)
    problem(client.get("/v1/nothing-here"), 404)


def test_async_verify_and_results(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, _, factory = served
    evidence = factory.make(fresh(client))
    r = client.post("/v1/verify?async=true", content=evidence, headers={"content-type": JWT})
    assert r.status_code == 202
    doc = r.json()
    assert r.headers["location"] == doc["poll"] == f"/v1/results/{doc['id']}"
    deadline = time.monotonic() + 60
    while True:
        poll = client.get(doc["poll"])
        if poll.status_code == 200 or time.monotonic() > deadline:
            break
        assert poll.status_code == 202 and poll.json() == {"state": "pending"}
        time.sleep(0.02)
    done = poll.json()
    assert done["state"] == "done"
    assert done["status"] == "warning" and done["replay"]["verdict"] == "match"
    assert flat_submod(peek(done["result"]))["bytereplay.checks"]["replay"] == "ok"
    # a refused nonce completes at once, with the negative result
    r = client.post("/v1/verify?async=true", content=evidence, headers={"content-type": JWT})
    poll = client.get(r.json()["poll"])
    for _ in range(500):
        if poll.status_code == 200:
            break
        time.sleep(0.01)
        poll = client.get(r.json()["poll"])
    assert poll.json()["status"] == "contraindicated"


def test_ear_verifies_with_independent_libraries(
        served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    from jose import jwt as jose_jwt
    from jwcrypto import jwk, jwt

    client, _, factory = served
    issued = client.post("/v1/challenge").json()
    # The legacy profile, asked for: jwcrypto and python-jose read it (the names python-ear
    # and Veraison read: tests/test_ear_profiles.py)
    r = client.post("/v1/verify?replay=false",
                    content=factory.make(b64url_decode(issued["nonce"])),
                    headers={"content-type": JWT,
                             "accept": f'application/json, {JWT}; eat_profile="{PROFILE_LEGACY}"'})
    token = r.json()["result"]
    assert r.json()["result_type"] == f'{JWT}; eat_profile="{PROFILE_LEGACY}"'
    jwks = client.get("/.well-known/jwks.json").json()
    assert [k["alg"] for k in jwks["keys"]] == ["ES256"]
    assert all("d" not in k for k in jwks["keys"])

    keyset = jwk.JWKSet.from_json(json.dumps(jwks))
    verified = jwt.JWT(jwt=token, key=keyset, algs=["ES256"])
    claims = json.loads(verified.claims)
    assert claims["eat_nonce"] == issued["nonce"]
    assert claims["submods"]["bytereplay"]["ear.status"] == "warning"

    header = jose_jwt.get_unverified_header(token)
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    assert header["typ"] == "ear+jwt"
    assert jose_jwt.decode(token, key, algorithms=["ES256"])["eat_nonce"] == issued["nonce"]
    # a flipped byte in the payload fails the independent check too
    head, body, sig = token.split(".")
    forged = json.loads(b64url_decode(body))
    forged["submods"]["bytereplay"]["ear.status"] = "affirming"
    bad = ".".join((head, b64url_encode(json.dumps(forged).encode()), sig))
    with pytest.raises(Exception):  # noqa: B017  (each library raises its own type)
        jwt.JWT(jwt=bad, key=keyset, algs=["ES256"])


def test_info_health_metrics(served: tuple[TestClient, Verifier, EvidenceFactory]) -> None:
    client, verifier, _ = served
    info = client.get("/v1/info").json()
    assert info["appraisal_policy"]["id"] == verifier.policy.policy_id
    assert info["trust"]["simulated_cas"][0]["origin"] == "home"
    assert "found in the home" in info["trust"]["notes"][0]
    assert info["nonces"] == {"ttl_s": 120.0, "size": 32, "mode": "required", "store": "sqlite"}
    assert info["replay"]["dtype"] == "float32" and info["ear"]["profile"] == PROFILE_DRAFT
    assert client.get("/healthz").json() == {"status": "ok", "store": "sqlite"}
    text = client.get("/metrics").text
    for name in ("bytereplay_verifier_appraisals_total", "bytereplay_verifier_replay_verdicts_total",
                 "bytereplay_verifier_nonce_refusals_total",
                 "bytereplay_verifier_appraisal_seconds_bucket",
                 "bytereplay_verifier_nonces_issued_total"):
        assert name in text, name
    assert 'bytereplay_verifier_replay_verdicts_total{verdict="match"}' in text


# -- a real server on loopback: 50 concurrent submissions of one Evidence ---------------------


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_fifty_concurrent_http_submissions(kind: str, tmp_path: Path,
                                           request: pytest.FixtureRequest) -> None:
    home = new_home(tmp_path)
    extra = store_options(kind, request, f"http{id(tmp_path)}:")
    verifier = make_verifier(home, replay=False, **extra)
    served = Served(verifier)
    try:
        async def run() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=served.url, timeout=60) as client:
                nonce = (await client.post("/v1/challenge")).json()["nonce"]
                evidence = evidence_factory(home).make(b64url_decode(nonce))
                return list(await asyncio.gather(*(
                    client.post("/v1/verify", content=evidence, headers={"content-type": JWT})
                    for _ in range(50))))

        responses = asyncio.run(run())
        assert {r.status_code for r in responses} == {200}
        statuses = sorted(r.json()["status"] for r in responses)
        assert statuses == ["contraindicated"] * 49 + ["warning"]
        with httpx.Client(base_url=served.url) as client:
            metrics = client.get("/metrics").text
        assert 'bytereplay_verifier_nonce_refusals_total{reason="reused"} 49.0' in metrics
    finally:
        served.close()


# -- bytereplay serve verifier / bytereplay verify ------------------------------------------------


def test_serve_verifier_subprocess(tmp_path: Path) -> None:
    port = free_port()
    home = tmp_path / "home"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytereplay.cli", "serve", "verifier", "--host", "127.0.0.1",
         "--port", str(port), "--home", str(home)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as client:
            while True:
                assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the verifier did not become healthy"
                time.sleep(0.1)
            assert len(b64url_decode(client.post("/v1/challenge").json()["nonce"])) == 32
            assert client.get("/.well-known/jwks.json").json()["keys"][0]["kty"] == "EC"
    finally:
        proc.terminate()
        out = proc.communicate(timeout=20)[0].decode()
    assert "no simulated platform CA trusted yet" in out
    assert "policy:bytereplay/appraisal@sha-256:" in out


def test_cli_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home_dir = tmp_path / "home"
    home = Home.resolve(home_dir)
    factory = evidence_factory(home)
    # a nonce this home's store never issued: not checked, warning at best
    path = tmp_path / "evidence.jwt"
    path.write_text(str(factory.make(bytes(range(16)))))
    assert main(["verify", str(path), "--home", str(home_dir), "--json", "--no-replay"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "warning"
    checks = flat_submod(doc["ear"])["bytereplay.checks"]
    assert checks["nonce"].startswith("not checked")
    assert doc["ear"]["eat_profile"] == PROFILE_DRAFT
    assert main(["verify", str(path), "--home", str(home_dir), "--json", "--no-replay",
                 "--ear-profile", "legacy"]) == 0
    assert json.loads(capsys.readouterr().out)["ear"]["eat_profile"] == PROFILE_LEGACY
    assert main(["verify", str(path), "--home", str(home_dir), "--no-replay",
                 "--ear-profile", "draft-99"]) == 2
    assert doc["replay"]["reason"] == "replay was not requested"

    # a nonce the home's store issued (as `serve verifier` with this home would): consumed,
    # and the attester's JSON answer is accepted as the file; --replay replays
    verifier = make_verifier(home)
    nonce = verifier.issue_nonce().nonce
    verifier.close()
    answer = tmp_path / "answer.json"
    answer.write_text(json.dumps({"output": "...", "evidence": b64url_encode(
        bytes(factory.make(nonce, fmt="cwt"))), "evidence_format": "cwt"}))
    assert main(["verify", str(answer), "--home", str(home_dir), "--replay"]) == 0
    out = capsys.readouterr().out
    assert "status: warning" in out and "replay: match" in out and "  nonce: ok" in out
    # the same Evidence again: the nonce is spent
    assert main(["verify", str(answer), "--home", str(home_dir)]) == 1
    assert "status: contraindicated" in capsys.readouterr().out
    assert main(["verify", str(tmp_path / "missing"), "--home", str(home_dir)]) == 2


def test_metrics_child_is_the_labelled_child() -> None:
    from verifier.metrics import Metrics

    m = Metrics()
    m.child(m.appraisals, "affirming").inc()
    m.child(m.appraisals, "affirming").inc()
    assert m.appraisals.labels("affirming")._value.get() == 2
    assert m.child(m.nonce_refusals, "reused") is m.nonce_refusals.labels("reused")
