"""EAR profiles and submods: draft-04 by default (valid against the WG's CDDL), the legacy
profile on request (read as Veraison, python-ear and jwcrypto read it), composite EARs
with one submod per attester, and the choice of profile over HTTP (`Accept`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pycddl
import pytest
from fastapi.testclient import TestClient
from jose import jwt as jose_jwt
from jwcrypto import jwk, jwt
from verifier_fixtures import evidence_factory, make_verifier, new_home

from bytereplay.ar4si import CLAIMS, TIER_ORDER
from bytereplay.ear import (
    EXTENSION_KEY,
    PROFILE_DRAFT,
    PROFILE_LEGACY,
    PROFILES,
    SUBMOD,
    Submod,
    build_ear,
    media_type,
    normalise,
    peek,
    peek_status,
    read_ear,
    sign_ear,
)
from bytereplay.encoding import b64url_decode, b64url_encode
from bytereplay.errors import NotAcceptableError, ResultError, UsageError
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey
from bytereplay.web.accept import choose_ear, parse_accept
from relying_party import evaluate
from relying_party.testing import jwks_of, make_result
from verifier.service import create_app

REPO = Path(__file__).resolve().parent.parent
SCHEMA = pycddl.Schema(
    (REPO / "fixtures/ear/draft-ietf-rats-ear-04.cddl").read_text(encoding="utf-8")
    + (REPO / "fixtures/ear/bytereplay-extension.cddl").read_text(encoding="utf-8"))
KEY = SigningKey.generate()
JWKS = jwks_of(KEY)
NONCE = b64url_encode(b"\x07" * 32)
JWT_MEDIA = "application/eat+jwt"


def valid_draft_04(claims: dict[str, Any]) -> None:
    """The claims validate against the draft's CDDL (JSON claims as CBOR, text keys), and
    beside it what pycddl does not enforce: each vector non-empty, AR4SI names only."""
    SCHEMA.validate_cbor(cbor2.dumps(claims))
    for sub in claims["submods"].values():
        vector = sub.get("ear_trustworthiness_vector", {"x": 0})
        assert vector and set(vector) <= set(CLAIMS), vector


def composite(profile: str = PROFILE_DRAFT, **vectors: dict[str, int]) -> dict[str, Any]:
    subs = {SUBMOD: Submod({"executables": 2, "configuration": 2}, ("p1", "p2"),
                           {"bytereplay.output_hash": "sha-256:" + "1" * 64})}
    subs.update({name: Submod(v, ("gpu-policy",)) for name, v in vectors.items()})
    return build_ear(submods=subs, nonce=NONCE, iat=1_700_000_000, profile=profile,
                     raw_evidence=b"the evidence")


# -- the default EAR against the draft's CDDL -------------------------------------------------


@pytest.fixture(scope="module")
def verifier_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = new_home(tmp_path_factory.mktemp("ear-profiles"))
    verifier = make_verifier(home, replay=False, ear_raw_evidence=True)
    try:
        yield verifier, evidence_factory(home)
    finally:
        verifier.close()


def test_the_verifiers_default_ear_is_valid_draft_04(verifier_env: Any) -> None:
    verifier, factory = verifier_env
    result = verifier.appraise(factory.make(verifier.issue_nonce().nonce))
    claims = peek(result.token)
    assert claims["eat_profile"] == PROFILE_DRAFT == "tag:ietf.org,2026:rats/ear#04"
    valid_draft_04(claims)
    sub = claims["submods"][SUBMOD]
    assert isinstance(sub["ear_appraisal_policy_ids"], list) and sub["ear_appraisal_policy_ids"]
    assert set(sub) == {"eat_profile", "ear_status", "ear_trustworthiness_vector",
                        "ear_appraisal_policy_ids", EXTENSION_KEY}
    # one namespaced key only: no flat bytereplay.* claims beside it
    assert not any(k.startswith("bytereplay.") for k in set(sub) - {EXTENSION_KEY})
    assert {"replay", "checks", "tee", "claim", "not_covered"} <= set(sub[EXTENSION_KEY])
    assert claims["ear_status"] == sub["ear_status"] == result.status
    assert set(claims) == {"eat_profile", "iat", "ear_status", "ear_verifier_id",
                           "ear_raw_evidence", "eat_nonce", "submods"}


@pytest.mark.parametrize("vectors", [{}, {"cpu": {"hardware": 2}, "gpu0": {"hardware": 32},
                                          "gpu1": {"hardware": 2, "executables": 97}}])
def test_composite_and_single_ears_are_valid_draft_04(vectors: dict[str, Any]) -> None:
    valid_draft_04(composite(**vectors))


def _broken(mutate: Any) -> dict[str, Any]:
    claims = json.loads(json.dumps(composite(gpu0={"hardware": 2})))
    mutate(claims)
    return claims


@pytest.mark.parametrize("mutate", [
    lambda c: c.update(eat_profile="tag:ietf.org,2024:rats:ear"),
    lambda c: c.pop("ear_verifier_id"),
    lambda c: c["ear_verifier_id"].pop("build"),
    lambda c: c.update(ear_status="fine"),
    lambda c: c.update(iat=1.5),
    lambda c: c.update(submods={}),
    lambda c: c.update(eat_nonce="short"),
    lambda c: c.update(ear_raw_evidence="not base64url!"),
    lambda c: c["submods"]["gpu0"].pop("ear_status"),
    lambda c: c["submods"]["gpu0"].update(ear_appraisal_policy_ids=[]),
    lambda c: c["submods"]["gpu0"].update(ear_appraisal_policy_ids="one text"),
    lambda c: c["submods"]["gpu0"]["ear_trustworthiness_vector"].update(hardware=128),
    lambda c: c["submods"]["gpu0"].update({"bytereplay.output_hash": "sha-256:" + "0" * 64}),
    lambda c: c["submods"][SUBMOD][EXTENSION_KEY].update(output_hash="md5:0"),
    lambda c: c["submods"][SUBMOD].update({EXTENSION_KEY: "not a map"}),
], ids=["profile", "no-verifier-id", "verifier-id-build", "top-status", "iat-float",
        "no-submods", "nonce-short", "raw-evidence", "submod-status", "policy-ids-empty",
        "policy-ids-text", "vector-range", "flat-extension", "extension-shape",
        "extension-not-map"])
def test_a_broken_ear_fails_the_cddl(mutate: Any) -> None:
    with pytest.raises(pycddl.ValidationError):
        SCHEMA.validate_cbor(cbor2.dumps(_broken(mutate)))


def test_the_legacy_profile_is_not_draft_04() -> None:
    with pytest.raises(pycddl.ValidationError):
        SCHEMA.validate_cbor(cbor2.dumps(composite(PROFILE_LEGACY)))


# -- the legacy profile, as deployed readers read it -------------------------------------------


def test_legacy_profile_reads_with_jwcrypto_and_the_names_veraison_and_python_ear_use() -> None:
    """python-ear (veraison/python-ear) is not published on PyPI, so it cannot be pinned;
    this reads the token with jwcrypto and python-jose and checks the claim names its
    `AttestationResult.from_dict` / `Submod` read: `eat_profile`, `iat`, `ear.verifier-id`
    {developer, build}, and per submod `ear.status` and `ear.trustworthiness-vector`."""
    token = sign_ear(composite(PROFILE_LEGACY, gpu0={"hardware": 32}), KEY)
    verified = jwt.JWT(jwt=token, key=jwk.JWKSet.from_json(json.dumps(JWKS)), algs=["ES256"])
    claims = json.loads(verified.claims)
    assert claims == jose_jwt.decode(token, JWKS["keys"][0], algorithms=["ES256"])
    assert claims["eat_profile"] == "tag:github.com,2023:veraison/ear"
    assert isinstance(claims["iat"], int) and claims["iat"] > 0
    assert set(claims["ear.verifier-id"]) == {"developer", "build"}
    assert claims["ear.raw-evidence"] == b64url_encode(b"the evidence")
    assert "ear_status" not in claims  # the legacy profile has no top-level status
    for sub in claims["submods"].values():
        assert sub["ear.status"] in TIER_ORDER
        assert set(sub["ear.trustworthiness-vector"]) <= set(CLAIMS)
        assert isinstance(sub["ear.appraisal-policy-id"], str)
    assert claims["submods"][SUBMOD]["bytereplay.output_hash"] == "sha-256:" + "1" * 64
    assert claims["submods"]["gpu0"]["ear.status"] == "warning"


@pytest.mark.parametrize("profile", list(PROFILES))
def test_the_relying_party_reads_both_profiles(profile: str) -> None:
    out = b"the bytes"
    token = make_result(KEY, output=out, simulated=False, nonce=NONCE, profile=profile)
    d = evaluate(token, output=out, policy="strict", verifier_keys=JWKS, expected_nonce=NONCE)
    assert d.allow and d.status == "affirming", d.reasons
    bad = evaluate(token, output=b"other bytes", policy="strict", verifier_keys=JWKS,
                   expected_nonce=NONCE)
    assert not bad.allow and any("output hash" in r for r in bad.reasons)


# -- submods ----------------------------------------------------------------------------------


@pytest.mark.parametrize("profile", list(PROFILES))
def test_composite_build_and_read(profile: str) -> None:
    claims = composite(profile, cpu={"hardware": 2, "instance-identity": 2},
                       gpu0={"hardware": 32}, gpu1={"hardware": 2})
    assert list(claims["submods"]) == [SUBMOD, "cpu", "gpu0", "gpu1"]  # order kept
    ear = read_ear(sign_ear(claims, KEY), KeySet(JWKS))
    assert ear.status == "warning"  # the worst submod's, though the primary affirms
    assert peek_status(claims) == "warning"  # what the verifier's answer reports
    assert {n: s.status for n, s in ear.submods.items()} == {
        SUBMOD: "affirming", "cpu": "affirming", "gpu0": "warning", "gpu1": "affirming"}
    assert ear.submods["gpu0"].vector == {"hardware": 32}
    assert ear.submods["gpu0"].policy_ids == ("gpu-policy",)
    assert ear.submods["gpu0"].extensions == {}
    # the primary submod answers the single-submod accessors
    assert ear.vector == {"executables": 2, "configuration": 2}
    assert ear.output_hash == "sha-256:" + "1" * 64
    assert ear.policy_id == "p1"
    assert ear.raw_evidence == b"the evidence"
    if profile == PROFILE_DRAFT:
        assert claims["ear_status"] == "warning"
        assert claims["submods"][SUBMOD]["ear_appraisal_policy_ids"] == ["p1", "p2"]


def test_each_submod_status_is_computed_from_its_vector() -> None:
    claims = composite(gpu0={"hardware": 99})
    assert claims["submods"]["gpu0"]["ear_status"] == "contraindicated"
    assert claims["ear_status"] == "contraindicated"
    with pytest.raises(ValueError, match="better than its worst claim"):
        build_ear(submods={SUBMOD: Submod({"hardware": 32}, ("p",), status="affirming")},
                  nonce=None, iat=1)
    for bad in ({}, {"x-claim": 2}):
        with pytest.raises(ValueError, match="AR4SI claims only"):
            build_ear(submods={SUBMOD: Submod(bad, ("p",))}, nonce=None, iat=1)
    with pytest.raises(ValueError, match="policy id"):
        build_ear(submods={SUBMOD: Submod({"hardware": 2})}, nonce=None, iat=1)


@pytest.mark.parametrize("profile", list(PROFILES))
def test_a_submod_better_than_its_vector_is_refused(profile: str) -> None:
    claims = composite(profile, gpu0={"hardware": 97})
    status = PROFILES[profile].status
    claims["submods"]["gpu0"][status] = "affirming"
    if profile == PROFILE_DRAFT:
        claims[status] = "affirming"
    with pytest.raises(ResultError, match=r"submods\.gpu0: status 'affirming' is better"):
        normalise(claims)


def test_a_top_level_status_better_than_its_worst_submod_is_refused() -> None:
    claims = composite(gpu0={"hardware": 32})
    claims["ear_status"] = "affirming"
    with pytest.raises(ResultError, match="better than its worst submod"):
        normalise(claims)
    claims["ear_status"] = "contraindicated"  # worse than every submod: allowed, and it wins
    assert normalise(claims).status == "contraindicated"
    del claims["ear_status"]  # optional in the draft: the worst submod's then
    assert normalise(claims).status == "warning"


@pytest.mark.parametrize(("mutate", "text"), [
    (lambda c: c["submods"].pop(SUBMOD), "lacks submods.bytereplay"),
    (lambda c: c["submods"]["gpu0"].update(ear_trustworthiness_vector={}), "malformed"),
    (lambda c: c["submods"]["gpu0"].update(ear_trustworthiness_vector={"x": 2}), "malformed"),
    (lambda c: c["submods"]["gpu0"].update(ear_appraisal_policy_ids=[]), "non-empty array"),
    (lambda c: c["submods"]["gpu0"].update(ear_appraisal_policy_ids="p"), "non-empty array"),
    (lambda c: c["submods"].update(gpu0=[]), "must be a map"),
    (lambda c: c["submods"][SUBMOD].update({EXTENSION_KEY: []}), "must be a map"),
    (lambda c: c.pop("ear_verifier_id"), "ear_verifier_id"),
    (lambda c: c.update(ear_raw_evidence="a+b"), "base64url"),
    (lambda c: c["submods"].update({f"gpu{i}": c["submods"]["gpu0"] for i in range(70)}),
     "more than"),
])
def test_malformed_draft_04_is_refused(mutate: Any, text: str) -> None:
    claims = composite(gpu0={"hardware": 2})
    mutate(claims)
    with pytest.raises(ResultError, match=text):
        normalise(claims)


def test_strict_requires_every_submod_affirming() -> None:
    out = b"the bytes"

    def strict(**vectors: dict[str, int]) -> Any:
        token = make_result(KEY, output=out, simulated=False, nonce=NONCE, submods=vectors)
        return evaluate(token, output=out, policy="strict", verifier_keys=JWKS,
                        expected_nonce=NONCE)

    assert strict(cpu={"hardware": 2}, gpu0={"hardware": 2}).allow
    d = strict(cpu={"hardware": 2}, gpu0={"hardware": 32, "executables": 2})
    assert not d.allow and d.status == "warning"
    assert any(r.startswith("submod gpu0 status warning") and "hardware=32" in r
               for r in d.reasons), d.reasons
    assert not any("submod cpu" in r for r in d.reasons)
    # the default policy judges the overall status, the worst submod's
    token = make_result(KEY, output=out, simulated=False, nonce=NONCE,
                        submods={"gpu0": {"hardware": 99}})
    assert not evaluate(token, output=out, verifier_keys=JWKS, expected_nonce=NONCE).allow


# -- the profile over HTTP ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, Any]]:
    home = new_home(tmp_path_factory.mktemp("ear-accept"))
    verifier = make_verifier(home)
    with TestClient(create_app(verifier.config, verifier=verifier)) as client:
        yield client, evidence_factory(home)


def _evidence(client: TestClient, factory: Any) -> str:
    nonce = b64url_decode(client.post("/v1/challenge").json()["nonce"])
    value: str = factory.make(nonce)
    return value


def _verify(client: TestClient, evidence: str, accept: str | None) -> Any:
    headers = {"content-type": JWT_MEDIA}
    if accept is not None:
        headers["accept"] = accept
    return client.post("/v1/verify?replay=false", content=evidence, headers=headers)


@pytest.mark.parametrize(("accept", "profile", "raw"), [
    (None, PROFILE_DRAFT, False),
    ("*/*", PROFILE_DRAFT, False),
    ("application/json", PROFILE_DRAFT, False),
    (f'{JWT_MEDIA}; eat_profile="{PROFILE_LEGACY}"', PROFILE_LEGACY, True),
    (f'application/eat-jwt; eat_profile="{PROFILE_LEGACY}"', PROFILE_LEGACY, True),
    (f'application/eat-jwt;eat_profile="{PROFILE_DRAFT}"', PROFILE_DRAFT, True),
    (JWT_MEDIA, PROFILE_DRAFT, True),
    (f'application/json, {JWT_MEDIA}; eat_profile="{PROFILE_LEGACY}"', PROFILE_LEGACY, False),
    (f'{JWT_MEDIA}; eat_profile="{PROFILE_DRAFT}"; q=0.5, '
     f'{JWT_MEDIA}; eat_profile="{PROFILE_LEGACY}"', PROFILE_LEGACY, True),
])
def test_accept_picks_the_profile_and_the_answer(served: tuple[TestClient, Any],
                                                  accept: str | None, profile: str,
                                                  raw: bool) -> None:
    client, factory = served
    r = _verify(client, _evidence(client, factory), accept)
    assert r.status_code == 200, r.text
    if raw:
        assert r.headers["content-type"] == media_type(profile)
        token = r.text
    else:
        assert r.headers["content-type"] == "application/json"
        assert r.json()["result_type"] == media_type(profile)
        token = r.json()["result"]
    assert peek(token)["eat_profile"] == profile
    ear = read_ear(token, KeySet(client.get("/.well-known/jwks.json").json()))
    assert ear.profile == profile and ear.status == "warning"


@pytest.mark.parametrize("accept", [
    f'{JWT_MEDIA}; eat_profile="tag:example.com,2026:ear"',
    f'application/json, {JWT_MEDIA}; eat_profile="tag:ietf.org,2024:rats:ear"',
    "text/html",
    f'{JWT_MEDIA}; eat_profile="{PROFILE_DRAFT}"; q=0',
])
def test_an_unknown_profile_or_type_is_406_and_consumes_nothing(
        served: tuple[TestClient, Any], accept: str) -> None:
    client, factory = served
    evidence = _evidence(client, factory)
    r = _verify(client, evidence, accept)
    assert r.status_code == 406, r.text
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["status"] == 406 and PROFILE_DRAFT in r.json()["detail"]
    again = _verify(client, evidence, None)  # the nonce was not consumed
    assert again.status_code == 200 and again.json()["status"] == "warning"


def test_a_malformed_accept_is_400(served: tuple[TestClient, Any]) -> None:
    client, factory = served
    r = _verify(client, _evidence(client, factory), 'application/eat+jwt; eat_profile="x')
    assert r.status_code == 400 and r.headers["content-type"] == "application/problem+json"


def test_choose_ear_and_parse_accept() -> None:
    assert choose_ear(None, "legacy").profile.uri == PROFILE_LEGACY
    assert not choose_ear("", "draft-04").raw
    assert choose_ear(f'{JWT_MEDIA}; eat_profile="{PROFILE_LEGACY}", application/json;q=0',
                      "draft-04").raw
    with pytest.raises(NotAcceptableError):
        choose_ear("image/png, text/*", "draft-04")
    with pytest.raises(UsageError):
        choose_ear("x", "no-such-profile")
    (r,) = parse_accept('Application/EAT+JWT ; Eat_Profile="a,b;c" ; q=0.3')
    assert (r.type, r.params, r.q) == ("application/eat+jwt", {"eat_profile": "a,b;c"}, 0.3)
    for bad in ("a", "*/json", "a/b; q=2", "a/b; q=x", "a/b; p", 'a/b; p="x', "a/b c",
                "a/b," * 40, "a" * 5000):
        with pytest.raises(UsageError):
            parse_accept(bad)
