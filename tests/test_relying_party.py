"""relying_party.evaluate: signature, format, freshness, nonce, output hash, app checks, claim."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bytereplay.claims import NOT_COVERED, build_claim
from bytereplay.ear import OUTPUT_HASH, PROFILES, REPLAY, TEE, Ear, sign_ear
from bytereplay.encoding import b64url_encode, sha256_tag
from bytereplay.errors import PolicyError
from bytereplay.jose import sign_jwt
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey
from relying_party import Decision, evaluate, key_set
from relying_party.testing import jwks_of, make_claims, make_result, set_claim

OUT = b"The answer is 42.\n"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def jwks(key: SigningKey) -> dict[str, Any]:
    return jwks_of(key)


def _eval(token: Any, jwks: dict[str, Any], **kw: Any) -> Decision:
    kw.setdefault("output", OUT)
    return evaluate(token, verifier_keys=jwks, **kw)


def _one_reason(d: Decision, prefix: str) -> str:
    assert not d.allow
    hits = [r for r in d.reasons if r.startswith(prefix)]
    assert hits, d.reasons
    return hits[0]


def test_good_result_is_allowed_with_claim_and_not_covered(key: SigningKey, jwks: dict[str, Any]) -> None:
    d = _eval(make_result(key, output=OUT), jwks)
    assert d.allow and d.reasons == ()
    assert d.status == "warning"  # simulated TEE: hardware is a warning claim
    assert d.verdict == "match"
    assert d.not_covered == NOT_COVERED
    assert d.claim == build_claim("match", simulated_tee=True)
    assert "simulated" in d.claim
    assert any("simulated" in n for n in d.notes)
    assert d.output_hash == sha256_tag(OUT)
    assert d.policy.name == "default"
    assert d.policy.digest == sha256_tag(Path(d.policy.path).read_bytes())
    assert isinstance(d.ear, Ear)
    json.dumps(d.to_dict())  # serialisable


def test_result_signed_by_another_key_is_denied(key: SigningKey, jwks: dict[str, Any]) -> None:
    other = SigningKey.generate()
    d = _eval(make_result(other, output=OUT), jwks)
    assert "unknown key id" in _one_reason(d, "signature:")
    assert d.status is None and d.verdict is None
    assert d.claim.startswith("No claim")
    assert len(d.reasons) == 1  # nothing else is judged on an unverified result


def test_forged_signature_with_the_known_kid_is_denied(key: SigningKey, jwks: dict[str, Any]) -> None:
    other = SigningKey.generate()
    forged = SigningKey(private=other.private, alg=other.alg, jwk={**other.jwk, "kid": key.kid})
    d = _eval(sign_ear(make_claims(output=OUT), forged), jwks)
    assert "does not verify" in _one_reason(d, "signature:")


def test_expired_result_is_denied(key: SigningKey, jwks: dict[str, Any]) -> None:
    old = int(time.time()) - 3600
    d = _eval(make_result(key, output=OUT, iat=old), jwks)
    reason = _one_reason(d, "freshness:")
    assert "3600 s ago" in reason or "ago" in reason
    assert d.checks["fresh"]["ok"] is False
    # the same result judged at its own time is fresh
    assert _eval(make_result(key, output=OUT, iat=old), jwks, now=old + 10).allow


def test_result_from_the_future_is_denied_beyond_leeway(key: SigningKey, jwks: dict[str, Any]) -> None:
    now = int(time.time())
    assert _eval(make_result(key, output=OUT, iat=now + 20), jwks, now=now).allow  # within 30 s
    d = _eval(make_result(key, output=OUT, iat=now + 600), jwks, now=now)
    assert "in the future" in _one_reason(d, "freshness:")


def test_freshness_window_edges(key: SigningKey, jwks: dict[str, Any]) -> None:
    iat = 1_700_000_000
    token = make_result(key, output=OUT, iat=iat)
    assert _eval(token, jwks, now=iat + 330).allow  # 300 s + 30 s leeway
    assert not _eval(token, jwks, now=iat + 331).allow
    assert _eval(token, jwks, now=datetime.fromtimestamp(iat + 5, UTC)).allow


def test_exp_in_the_result_is_honoured(key: SigningKey, jwks: dict[str, Any]) -> None:
    now = int(time.time())
    claims = make_claims(output=OUT, iat=now - 10)
    claims["exp"] = now - 100
    d = _eval(sign_ear(claims, key), jwks, now=now)
    assert "exp" in _one_reason(d, "freshness:")


def test_nonce_mismatch_is_denied(key: SigningKey, jwks: dict[str, Any]) -> None:
    nonce = b64url_encode(b"n" * 32)
    token = make_result(key, output=OUT, nonce=nonce)
    assert _eval(token, jwks, expected_nonce=nonce).allow
    assert _eval(token, jwks, expected_nonce=b"n" * 32).allow  # raw bytes are encoded
    d = _eval(token, jwks, expected_nonce=b64url_encode(b"m" * 32))
    assert "not the expected" in _one_reason(d, "nonce:")
    d = _eval(make_result(key, output=OUT), jwks, expected_nonce=nonce)
    assert "carries no nonce" in _one_reason(d, "nonce:")


def test_output_that_does_not_match_the_hash_is_denied(key: SigningKey, jwks: dict[str, Any]) -> None:
    token = make_result(key, output=OUT)
    d = _eval(token, jwks, output=OUT + b" ")
    reason = _one_reason(d, "output hash:")
    assert sha256_tag(OUT) in reason and sha256_tag(OUT + b" ") in reason
    assert d.claim.startswith("No claim about these output bytes")


def test_missing_output_or_attested_hash_is_denied(key: SigningKey, jwks: dict[str, Any]) -> None:
    d = evaluate(make_result(key, output=OUT), verifier_keys=jwks)
    assert "no output bytes" in _one_reason(d, "output hash:")
    d = _eval(make_result(key, output=None), jwks)
    assert "attests no output hash" in _one_reason(d, "output hash:")


def test_text_output_is_a_programmer_error(key: SigningKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        evaluate(make_result(key), output="text", verifier_keys=jwks)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        evaluate(make_result(key), output=OUT, verifier_keys=42)  # type: ignore[arg-type]


def test_unknown_policy_raises(key: SigningKey, jwks: dict[str, Any]) -> None:
    with pytest.raises(PolicyError, match="unknown policy"):
        _eval(make_result(key, output=OUT), jwks, policy="lenient")
    with pytest.raises(PolicyError, match="does not exist"):
        _eval(make_result(key, output=OUT), jwks, policy="/nonexistent/p.rego")


@pytest.mark.parametrize("junk", [
    "", "not a jwt", "a.b.c", "{}", '{"result": 5}', b"\xff\xfe", 12345, None,
    "eyJhbGciOiJub25lIn0.eyJpYXQiOjF9.", "x" * (600 * 1024),
])
def test_junk_results_are_denied_not_raised(junk: Any, jwks: dict[str, Any]) -> None:
    d = _eval(junk, jwks)
    assert not d.allow
    assert d.reasons and d.reasons[0].startswith("signature:")


def test_hmac_and_none_algorithms_are_refused(key: SigningKey, jwks: dict[str, Any]) -> None:
    import jwt

    claims = make_claims(output=OUT)
    hs = jwt.encode(claims, "secret-secret-secret-secret-32by", algorithm="HS256",
                    headers={"kid": key.kid})
    assert "refused" in _one_reason(_eval(hs, jwks), "signature:")
    none = jwt.encode(claims, None, algorithm="none", headers={"kid": key.kid})  # type: ignore[arg-type]
    assert not _eval(none, jwks).allow


def test_verifier_response_and_bytes_are_accepted(key: SigningKey, jwks: dict[str, Any]) -> None:
    token = make_result(key, output=OUT)
    assert _eval({"result": token, "status": "warning"}, jwks).allow
    assert _eval(json.dumps({"result": token}), jwks).allow
    assert _eval(token.encode() + b"\n", jwks).allow


@pytest.mark.parametrize("profile", list(PROFILES))
def test_both_profiles_are_read(key: SigningKey, jwks: dict[str, Any], profile: str) -> None:
    d = _eval(make_result(key, output=OUT, profile=profile), jwks)
    assert d.allow and d.status == "warning"
    strict = _eval(make_result(key, output=OUT, profile=profile, simulated=False), jwks,
                   policy="strict")
    assert not strict.allow  # no nonce expected; the point: both profiles reach the policy


@pytest.mark.parametrize("profile", list(PROFILES))
@pytest.mark.parametrize(("claim", "value", "needle"), [
    (REPLAY, {"verdict": "probably"}, "verdict must be one of"),
    (REPLAY, "match", "must be an object"),
    (TEE, {"provider": "x", "simulated": "no", "hardware": False}, "simulated must be a boolean"),
    (OUTPUT_HASH, "md5:abc", "sha-256"),
])
def test_malformed_bytereplay_claims_are_a_format_failure(
    key: SigningKey, jwks: dict[str, Any], claim: str, value: Any, needle: str, profile: str
) -> None:
    claims = make_claims(output=OUT, profile=profile)
    set_claim(claims, claim, value)
    d = _eval(sign_ear(claims, key), jwks)
    reason = _one_reason(d, "format:")
    assert claim in reason and needle in reason
    assert len(d.reasons) == 1


@pytest.mark.parametrize("profile", list(PROFILES))
def test_status_better_than_vector_is_a_format_failure(key: SigningKey, jwks: dict[str, Any],
                                                       profile: str) -> None:
    claims = make_claims(output=OUT, verdict="mismatch", profile=profile)
    set_claim(claims, "status", "affirming")
    assert "better than its worst claim" in _one_reason(_eval(sign_ear(claims, key), jwks), "format:")


def test_a_token_of_another_type_is_refused(key: SigningKey, jwks: dict[str, Any]) -> None:
    token = sign_jwt(make_claims(output=OUT), key, typ="eat+jwt")
    assert "not an EAR" in _one_reason(_eval(token, jwks), "format:")


def test_app_checks_run_and_a_failing_one_denies(key: SigningKey, jwks: dict[str, Any]) -> None:
    seen: list[tuple[Ear, bytes | None]] = []

    def length(ear: Ear, output: bytes | None) -> tuple[str, bool, str]:
        seen.append((ear, output))
        return ("length", len(output or b"") < 100, "short enough")

    def crashes(ear: Ear, output: bytes | None) -> tuple[str, bool, str]:
        raise RuntimeError("boom")

    token = make_result(key, output=OUT)
    d = _eval(token, jwks, app_checks=[length])
    assert d.allow and d.app_checks[0].ok and seen[0][1] == OUT
    assert seen[0][0].output_hash == sha256_tag(OUT)
    d = _eval(token, jwks, app_checks=[length, lambda e, o: ("policy-id", False, "not ours")])
    assert _one_reason(d, "app check policy-id failed") == "app check policy-id failed: not ours"
    d = _eval(token, jwks, app_checks=[crashes])
    assert "RuntimeError: boom" in _one_reason(d, "app check crashes failed")
    d = _eval(token, jwks, app_checks=[lambda e, o: True])  # returns the wrong shape
    assert not d.allow


def test_app_checks_do_not_run_on_an_unverified_result(jwks: dict[str, Any]) -> None:
    called = []
    d = _eval(make_result(SigningKey.generate(), output=OUT), jwks,
              app_checks=[lambda e, o: called.append(1) or ("x", True, "")])  # type: ignore[func-returns-value]
    assert not d.allow and not called and d.app_checks == ()


def test_claim_shrinks_for_missing_fields_and_weaker_verdicts(key: SigningKey, jwks: dict[str, Any]) -> None:
    full = _eval(make_result(key, output=OUT, simulated=False), jwks).claim
    smaller = _eval(make_result(key, output=OUT, simulated=False, missing=["seed", "gpu.sku"]),
                    jwks).claim
    # the verifier lists missing fields in checklist order, and the claim follows it
    assert smaller == build_claim("match", missing=["gpu.sku", "seed"])
    assert len(smaller) > len(full) and "Limits:" in smaller and "Limits:" not in full
    portable = _eval(make_result(key, output=OUT, verdict="match-portable",
                                 diff=[("gpu.arch", "sm_90", "sm_80")]), jwks)
    assert "gpu.arch" in portable.claim and portable.allow
    not_run = _eval(make_result(key, output=OUT, verdict="not-run", reason="model not available"),
                    jwks)
    assert "model not available" in not_run.claim and "attester's word" in not_run.claim


def test_hostile_text_cannot_forge_the_decision(key: SigningKey, jwks: dict[str, Any]) -> None:
    """rego-cpp returns strings unescaped: text from outside must not rewrite the decision."""
    inject = '"], "allow": true, "reasons": [], "x": ["'
    other = SigningKey.generate()
    forged = SigningKey(private=other.private, alg=other.alg, jwk={**other.jwk, "kid": inject})
    d = _eval(sign_jwt(make_claims(output=OUT), forged, typ="ear+jwt"), jwks)
    assert not d.allow and d.reasons[0].startswith("signature:")
    claims = make_claims(output=OUT, verdict="inconclusive", reason=inject,
                         diff=[(inject + "\n\\", inject, inject)],
                         checks={inject: inject})
    d = _eval(sign_ear(claims, key), jwks)
    assert not d.allow and any("inconclusive" in r for r in d.reasons)
    assert all('"' not in r and "\\" not in r for r in d.reasons + d.notes)


def test_key_sources_are_cached_and_keyset_is_reused(
    key: SigningKey, jwks: dict[str, Any], tmp_path: Path
) -> None:
    assert key_set(jwks) is key_set(json.loads(json.dumps(jwks)))
    ks = KeySet(jwks)
    assert key_set(ks) is ks
    f = tmp_path / "jwks.json"
    f.write_text(json.dumps(jwks))
    token = make_result(key, output=OUT)
    assert evaluate(token, output=OUT, verifier_keys=f).allow
    assert evaluate(token, output=OUT, verifier_keys=str(f)).allow
    assert key_set(f) is key_set(f)
    d = evaluate(token, output=OUT, verifier_keys=tmp_path / "missing.json")
    assert "cannot read key set" in _one_reason(d, "signature:")


def test_mutated_results_never_raise(key: SigningKey, jwks: dict[str, Any]) -> None:
    """Random damage to a good token, and well-signed claims of odd shapes: always a Decision."""
    import random

    rng = random.Random(1234)
    token = make_result(key, output=OUT)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=\"{}\\ \x00"
    for _ in range(300):
        chars = list(token)
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(chars))
            op = rng.random()
            if op < 0.5:
                chars[i] = rng.choice(alphabet)
            elif op < 0.75:
                del chars[i]
            else:
                chars.insert(i, rng.choice(alphabet))
        d = _eval("".join(chars), jwks)
        assert isinstance(d, Decision)
    weird: list[Any] = [None, 1, True, "x", [], {}, [1, "a"], {"a": {"b": None}}, 1.5, -1]
    for value in weird:
        for name in ("submods", "iat", "eat_profile", "eat_nonce", "exp", "nbf"):
            claims = make_claims(output=OUT)
            claims[name] = value
            assert isinstance(_eval(sign_ear(claims, key), jwks), Decision)
        for name in (REPLAY, TEE, OUTPUT_HASH, "bytereplay.preflight", "bytereplay.checks",
                     "vector", "status", "policy_ids"):
            for profile in PROFILES:
                claims = make_claims(output=OUT, profile=profile)
                set_claim(claims, name, value)
                d = _eval(sign_ear(claims, key), jwks)
                assert isinstance(d, Decision)


def test_preflight_report_absent_or_inconsistent(key: SigningKey, jwks: dict[str, Any]) -> None:
    claims = make_claims(output=OUT)
    set_claim(claims, "bytereplay.preflight")
    d = _eval(sign_ear(claims, key), jwks)
    assert d.allow and any("no preflight report" in n for n in d.notes)
    assert not _eval(sign_ear(claims, key), jwks, policy="strict").allow
    claims = make_claims(output=OUT)
    set_claim(claims, "bytereplay.preflight", {"complete": True, "missing": ["seed"]})
    assert "disagrees" in _one_reason(_eval(sign_ear(claims, key), jwks), "format:")
