"""The appraisal pipeline's refusals: each bad Evidence yields a negative EAR saying why."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from verifier_fixtures import (
    EvidenceFactory,
    evidence_factory,
    generate,
    kit,
    make_verifier,
    new_home,
    tamper_jwt,
)

from attester.tee.simulated import SimulatedProvider
from bytereplay import eat
from bytereplay.ar4si import CLAIMS
from bytereplay.ear import PROFILE_DRAFT, PROFILE_LEGACY, flat_submod, normalise, peek, read_ear
from bytereplay.encoding import b64url_encode
from bytereplay.errors import TooLargeError
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey
from verifier import config as config_mod
from verifier.appraisal_policy import AppraisalPolicy
from verifier.config import DEFAULT_MODEL_DIR, DEFAULT_POLICY
from verifier.nonces import IssuedNonce, SqliteStore, rfc3339
from verifier.pipeline import Verifier
from verifier.results import Result

ALL_99 = dict.fromkeys(CLAIMS, 99)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Verifier, EvidenceFactory]]:
    home = new_home(tmp_path_factory.mktemp("pipeline"))
    verifier = make_verifier(home)
    yield verifier, evidence_factory(home)
    verifier.close()


def sub_of(result: Result) -> dict[str, Any]:
    value: dict[str, Any] = flat_submod(peek(result.token))
    return value


def check_crypto_failure(result: Result, step: str, text: str) -> dict[str, Any]:
    sub = sub_of(result)
    assert result.status == "contraindicated"
    assert sub["ear.trustworthiness-vector"] == ALL_99
    assert sub["bytereplay.checks"][step].startswith("failed: ")
    assert text in sub["bytereplay.checks"][step]
    assert result.replay["verdict"] == "not-run"
    assert step in result.replay["reason"] or "earlier check failed" in result.replay["reason"]
    return sub


# -- a valid appraisal, in detail ------------------------------------------------------------


def test_valid_evidence_ear(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    issued = verifier.issue_nonce()
    result = verifier.appraise(factory.make(issued.nonce), replay=False)
    claims = peek(result.token)
    assert claims["eat_nonce"] == issued.text
    assert claims["eat_profile"] == PROFILE_DRAFT
    assert claims["ear_status"] == "warning"  # the worst submod's
    sub = flat_submod(claims)
    assert sub["ear.appraisal-policy-id"] == verifier.policy.policy_id
    assert sub["ear.appraisal-policy-id"].startswith("policy:bytereplay/appraisal@sha-256:")
    vector = sub["ear.trustworthiness-vector"]
    assert vector["instance-identity"] == 2
    assert vector["hardware"] == 32
    assert result.status == "warning"
    assert sub["bytereplay.tee"] == {"provider": "simulated", "scheme": "simulated",
                                     "simulated": True, "hardware": False, "chain_ok": True,
                                     "tcb_status": None, "tcb_up_to_date": True,
                                     "advisories": [], "collateral": {}, "root": None,
                                     "test_root": False}
    checks = sub["bytereplay.checks"]
    for step in ("decode", "signature", "quote", "measurements", "nonce", "policy"):
        assert checks[step] == "ok", step
    assert checks["replay"] == "not run: replay was not requested"
    assert sub["bytereplay.output_hash"] == generate().output_hash
    assert sub["bytereplay.record_digest"] == generate().record.digest()
    assert sub["bytereplay.not_covered"][0] == "truth or accuracy of the content"
    assert "simulated" in sub["bytereplay.claim"]
    assert "container.digest" in sub["bytereplay.preflight"]["missing"]
    # and it reads back through the shared reader against the verifier's key set
    ear = read_ear(result.token, KeySet(verifier.jwks()))
    assert ear.status == "warning" and ear.nonce == issued.text


def test_policy_id_is_the_hash_of_the_file() -> None:
    import hashlib

    policy = AppraisalPolicy(DEFAULT_POLICY)
    digest = hashlib.sha256(DEFAULT_POLICY.read_bytes()).hexdigest()
    assert policy.policy_id == f"policy:bytereplay/appraisal@sha-256:{digest}"


# -- crypto failures: every claim 99 ---------------------------------------------------------


def test_tampered_output_hash_breaks_the_signature(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    nonce = verifier.issue_nonce().nonce
    token = factory.make(nonce)
    assert isinstance(token, str)
    other = "sha-256:" + "00" * 32

    def mutate(claims: dict[str, Any]) -> None:
        claims[eat.OUTPUT_HASH] = other
        claims[eat.RECORD]["output_hash"] = other

    result = verifier.appraise(tamper_jwt(token, mutate))
    check_crypto_failure(result, "signature", "signature does not verify")
    # forged Evidence does not burn the nonce: the genuine Evidence still passes
    genuine = verifier.appraise(token, replay=False)
    assert sub_of(genuine)["bytereplay.checks"]["nonce"] == "ok"


def test_tampered_record_field_resigned_is_not_bound(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    """The attester key re-signs a record with a changed field, but the quote still binds
    the original record digest."""
    verifier, factory = env
    nonce = verifier.issue_nonce().nonce
    evidence = factory.make(nonce, edits={"threads": 2}, quote_record=generate().record)
    result = verifier.appraise(evidence)
    check_crypto_failure(result, "quote", "not bound to this evidence")
    assert sub_of(result)["bytereplay.checks"]["nonce"].startswith("not run")


def test_wrong_signing_key(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    nonce = verifier.issue_nonce().nonce
    result = verifier.appraise(factory.make(nonce, sign_key=SigningKey.generate()))
    check_crypto_failure(result, "signature", "thumbprint")


def test_evidence_key_not_the_one_the_quote_binds(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    nonce = verifier.issue_nonce().nonce
    other = SigningKey.generate()
    result = verifier.appraise(factory.make(nonce, cnf_key=other, quote_key=factory.key))
    check_crypto_failure(result, "quote", "not bound")


def test_untrusted_ca(env: tuple[Verifier, EvidenceFactory], tmp_path: Path) -> None:
    verifier, factory = env
    stranger = SimulatedProvider(tmp_path / "other-simulated-tee")
    nonce = verifier.issue_nonce().nonce
    result = verifier.appraise(factory.make(nonce, provider=stranger))
    check_crypto_failure(result, "quote", "does not chain to a trusted simulated CA")


def test_configured_ca_from_another_home(tmp_path: Path) -> None:
    attester_home = new_home(tmp_path, "attester")
    factory = evidence_factory(attester_home)
    ca = attester_home.simulated_ca / "ca.pem"
    for trusted, status in (((), "contraindicated"), ((ca,), "warning")):
        verifier = make_verifier(new_home(tmp_path, f"verifier-{len(trusted)}"),
                                 simulated_cas=trusted)
        try:
            nonce = verifier.issue_nonce().nonce
            result = verifier.appraise(factory.make(nonce), replay=False)
            assert result.status == status
            origins = [s["origin"] for s in verifier.info()["trust"]["simulated_cas"]]
            assert origins == ["config"] * len(trusted)
        finally:
            verifier.close()


def test_home_ca_created_after_start_is_trusted(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False)
    try:
        assert verifier.info()["trust"]["simulated_cas"] == []
        assert "when it appears" in verifier.trust_lines()[0]
        factory = evidence_factory(home)  # the attester starts: the home CA appears
        nonce = verifier.issue_nonce().nonce
        assert verifier.appraise(factory.make(nonce)).status == "warning"
        assert verifier.info()["trust"]["simulated_cas"][0]["origin"] == "home"
    finally:
        verifier.close()


def test_garbage_evidence_is_a_negative_ear(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, _ = env
    for junk in ("not evidence", "a.b.c", b"\xd2\x84\x00", "eyJhbGciOiJub25lIn0.e30."):
        result = verifier.appraise(junk)
        sub = sub_of(result)
        assert result.status == "contraindicated", junk
        assert sub["ear.trustworthiness-vector"] == ALL_99
        assert "eat_nonce" not in peek(result.token)
        assert sub["bytereplay.checks"]["decode"] != "ok" or \
            sub["bytereplay.checks"]["signature"] != "ok"


class _JunkCertProvider:
    """The home's simulated TEE, but its attestation key certificate says X.509 version 60
    (cryptography raises `InvalidVersion`, not a ValueError, on reading it)."""

    name = "simulated"
    simulated = True

    def __init__(self, inner: SimulatedProvider) -> None:
        self.inner = inner

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        import base64

        quote = self.inner.quote(report_data, measurements)
        der = base64.b64decode(quote["cert_chain"][0])
        at = der.find(b"\xa0\x03\x02\x01\x02")  # version [0] EXPLICIT INTEGER 2 (v3)
        bad = der[:at + 4] + b"\x3b" + der[at + 5:]
        return {**quote, "cert_chain": [base64.b64encode(bad).decode(), *quote["cert_chain"][1:]]}


def test_junk_quote_certificate_is_a_failed_quote_check(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    issued = verifier.issue_nonce()
    evidence = factory.make(issued.nonce, provider=_JunkCertProvider(factory.provider))
    result = verifier.appraise(evidence, replay=False)
    check_crypto_failure(result, "quote", "certificate cannot be read")
    assert verifier.store.peek(issued.nonce) is not None  # unbound Evidence burns no nonce
    assert verifier.appraise(factory.make(issued.nonce), replay=False).status == "warning"


def test_external_tokens_claim_must_be_a_short_list_of_texts(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    from attester.evidence import encode

    verifier, factory = env
    good = factory.make(verifier.issue_nonce().nonce)
    assert isinstance(good, str)
    for bad in ("a.b.c", [5], ["a.b.c"] * (eat.MAX_EXTERNAL_TOKENS + 1)):
        claims = peek(good)
        claims[eat.EXTERNAL_TOKENS] = bad
        result = verifier.appraise(encode(claims, factory.key, "jwt"), replay=False)
        check_crypto_failure(result, "decode", eat.EXTERNAL_TOKENS)


def test_reasons_claim_name(env: tuple[Verifier, EvidenceFactory]) -> None:
    from bytereplay import ear

    verifier, factory = env
    result = verifier.appraise(factory.make(verifier.issue_nonce().nonce), replay=False)
    assert sub_of(result)[ear.REASONS]  # the simulated TEE's warning says why


def test_oversized_evidence_is_a_transport_error(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, _ = env
    with pytest.raises(TooLargeError):
        verifier.appraise("x" * (verifier.config.max_evidence_bytes + 1))


# -- nonce refusals: instance identity contraindicated ----------------------------------------


def check_nonce_refused(result: Result, reason: str) -> None:
    sub = sub_of(result)
    assert result.status == "contraindicated"
    assert sub["ear.trustworthiness-vector"]["instance-identity"] == 96
    assert sub["bytereplay.checks"]["nonce"].startswith("refused: ")
    assert f"nonce refused: {reason}" in sub["bytereplay.reasons"]
    assert result.replay["verdict"] == "not-run"
    assert "earlier check failed (nonce)" in result.replay["reason"]


def test_unknown_nonce(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    nonce = bytes(range(32))
    result = verifier.appraise(factory.make(nonce))
    check_nonce_refused(result, "unknown")
    assert peek(result.token)["eat_nonce"] == b64url_encode(nonce)  # echoed even so


def test_reused_nonce(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    evidence = factory.make(verifier.issue_nonce().nonce)
    assert verifier.appraise(evidence, replay=False).status == "warning"
    check_nonce_refused(verifier.appraise(evidence), "reused")


def test_expired_nonce(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    now = [1_800_000_000.0]
    store = SqliteStore(home.store, ttl=120, clock=lambda: now[0])
    verifier = make_verifier(home, nonce_store=store)
    try:
        evidence = evidence_factory(home).make(verifier.issue_nonce().nonce)
        now[0] += 121
        check_nonce_refused(verifier.appraise(evidence), "expired")
        assert verifier.metrics.nonce_refusals.labels("expired")._value.get() == 1
    finally:
        verifier.close()


def test_cli_mode_nonce_not_checked_caps_at_warning(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, nonce_mode="store-if-known", replay=False)
    try:
        factory = evidence_factory(home)
        result = verifier.appraise(factory.make(bytes(16)))
        sub = sub_of(result)
        assert sub["bytereplay.checks"]["nonce"].startswith("not checked")
        assert sub["ear.trustworthiness-vector"]["instance-identity"] == 32
        assert result.status == "warning"
        # a nonce the store did issue is consumed as usual, and refused when reused
        evidence = factory.make(verifier.issue_nonce().nonce)
        assert sub_of(verifier.appraise(evidence))["bytereplay.checks"]["nonce"] == "ok"
        check_nonce_refused(verifier.appraise(evidence), "reused")
    finally:
        verifier.close()


# -- the run record's challenge window against the nonce's own times -------------------------


def window_of(issued: IssuedNonce, *, shift: float = 0.0) -> dict[str, Any]:
    times = issued.to_json()
    return {"challenge_window.issued_at": rfc3339(issued.issued_at + shift),
            "challenge_window.expires_at": times["expires_at"]}


def test_challenge_window_as_issued_is_ok(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    issued = verifier.issue_nonce()
    result = verifier.appraise(factory.make(issued.nonce, edits=window_of(issued)), replay=False)
    sub = sub_of(result)
    assert sub["bytereplay.checks"]["challenge_window"] == "ok"
    assert sub["ear.trustworthiness-vector"]["instance-identity"] == 2
    assert result.status == "warning"  # the simulated TEE, as ever


def test_challenge_window_in_another_offset_is_the_same_window(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    issued = verifier.issue_nonce()
    times = issued.to_json()
    # The same instants, written with +02:00 and a fraction of a second.
    def shifted(text: str) -> str:
        when = datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(
            timezone(timedelta(hours=2)))
        return when.isoformat(timespec="milliseconds")
    edits = {"challenge_window.issued_at": shifted(times["issued_at"]),
             "challenge_window.expires_at": shifted(times["expires_at"])}
    result = verifier.appraise(factory.make(issued.nonce, edits=edits), replay=False)
    assert sub_of(result)["bytereplay.checks"]["challenge_window"] == "ok"


def test_challenge_window_that_differs_contraindicates_instance_identity(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    issued = verifier.issue_nonce()
    evidence = factory.make(issued.nonce, edits=window_of(issued, shift=-3600))
    result = verifier.appraise(evidence, replay=False)
    sub = sub_of(result)
    check = sub["bytereplay.checks"]["challenge_window"]
    assert check.startswith("differs: ") and rfc3339(issued.issued_at) in check
    assert sub["bytereplay.checks"]["nonce"] == "ok"  # the nonce itself was fresh: now spent
    assert sub["ear.trustworthiness-vector"]["instance-identity"] == 96
    assert result.status == "contraindicated"
    assert ("the run record's challenge window is not the one its nonce was issued with"
            in sub["bytereplay.reasons"])


def test_challenge_window_missing_is_left_to_preflight(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    result = verifier.appraise(factory.make(verifier.issue_nonce().nonce), replay=False)
    sub = sub_of(result)
    assert sub["bytereplay.checks"]["challenge_window"].startswith("not checked")
    assert "challenge_window.issued_at" in sub["bytereplay.preflight"]["missing"]
    assert sub["ear.trustworthiness-vector"]["instance-identity"] == 2


def test_challenge_window_is_not_checked_when_the_nonce_is_refused(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    nonce = bytes(range(32))  # never issued
    result = verifier.appraise(factory.make(nonce), replay=False)
    assert "challenge_window" not in sub_of(result)["bytereplay.checks"]


# -- quote measurements, reference values ------------------------------------------------------


def test_quote_measurements_differ(env: tuple[Verifier, EvidenceFactory]) -> None:
    from attester.evidence import measurements_for

    verifier, factory = env
    measured = {**measurements_for(generate().record), "model_digest": "sha-256:" + "11" * 32}
    nonce = verifier.issue_nonce().nonce
    result = verifier.appraise(factory.make(nonce, quote_measurements=measured))
    sub = sub_of(result)
    assert result.status == "contraindicated"
    vector = sub["ear.trustworthiness-vector"]
    assert vector["executables"] == 96 and vector["configuration"] == 96
    assert vector["instance-identity"] == 2  # the quote itself verified and binds the key
    assert sub["bytereplay.checks"]["measurements"].startswith("differs")
    assert "model_digest" in sub["bytereplay.checks"]["measurements"]


def reference_file(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "reference-values.json"
    path.write_text(json.dumps(doc))
    return path


def test_reference_values(tmp_path: Path) -> None:
    record = generate().record
    digest = record.get("model.digest")
    container = "sha256:" + "44" * 32
    runtime = [{"name": "bytereplay", "version": "0.1.0"}]
    pinned = {"container.digest": container}
    cases = [
        ({"model_digests": [digest], "container_digests": [container], "runtimes": runtime},
         pinned, {"executables": 2, "configuration": 2}, "ok"),
        ({"model_digests": ["sha-256:" + "22" * 32]}, pinned, {"executables": 96},
         "model: unmatched"),
        ({"container_digests": ["sha256:" + "33" * 32]}, pinned, {"executables": 96},
         "container: unmatched"),
        ({"container_digests": [container]}, {}, {"executables": 32}, "container: missing"),
        ({"runtimes": [{"name": "bytereplay", "version": "9.9"}]}, pinned,
         {"configuration": 96}, "runtime: unmatched"),
    ]
    home = new_home(tmp_path)
    factory = evidence_factory(home)
    for i, (doc, edits, expected, check) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        path = reference_file(tmp_path / str(i), doc)
        verifier = make_verifier(home, reference_values=path, replay=False)
        try:
            result = verifier.appraise(factory.make(verifier.issue_nonce().nonce, edits=edits))
            sub = sub_of(result)
            for claim, value in expected.items():
                assert sub["ear.trustworthiness-vector"][claim] == value, (doc, claim)
            assert sub["bytereplay.checks"]["reference"] == check
        finally:
            verifier.close()


def test_example_reference_values_match_the_fixture_model() -> None:
    from verifier import reference

    refs = reference.load(config_mod.REPO / "fixtures" / "reference-values.json")
    assert refs.compare(generate().record) == {
        "model": "matched", "container": "not-configured", "runtime": "matched",
        "framework": "not-configured"}


# -- policy, EAR profile ---------------------------------------------------------------------


def test_legacy_profile_by_config_and_draft_by_argument(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, ear_profile="legacy", ear_raw_evidence=True, replay=False)
    try:
        evidence = evidence_factory(home).make(verifier.issue_nonce().nonce)
        result = verifier.appraise(evidence)
        claims = peek(result.token)
        assert claims["eat_profile"] == PROFILE_LEGACY and "ear_status" not in claims
        assert claims["submods"]["bytereplay"]["ear.status"] == "warning"
        assert claims["submods"]["bytereplay"]["bytereplay.checks"]["signature"] == "ok"
        assert normalise(claims).status == "warning"
        assert normalise(claims).raw_evidence == str(evidence).encode()
        # a CWT: its bytes, also when a JSON envelope carried it as base64url text
        cwt = evidence_factory(home).make(verifier.issue_nonce().nonce, fmt="cwt")
        assert isinstance(cwt, bytes)
        sent = b64url_encode(cwt)
        assert normalise(peek(verifier.appraise(sent, "cwt").token)).raw_evidence == cwt
        assert result.media_type == f'application/eat+jwt; eat_profile="{PROFILE_LEGACY}"'
        # the programmatic choice, per appraisal (a session API issuing the legacy profile
        # unless asked otherwise uses the same argument)
        draft = verifier.appraise(evidence_factory(home).make(verifier.issue_nonce().nonce),
                                  profile="draft-04")
        assert peek(draft.token)["eat_profile"] == PROFILE_DRAFT
        assert "ear_raw_evidence" in peek(draft.token)
    finally:
        verifier.close()


def test_operator_policy_and_malfunction(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    factory = evidence_factory(home)
    lenient = tmp_path / "lenient.rego"
    lenient.write_text('package bytereplay.appraisal\n\nimport rego.v1\n\n'
                       'result := {"vector": {"instance-identity": 2, "hardware": 2}, '
                       '"reasons": []}\n')
    broken = tmp_path / "broken.rego"
    broken.write_text('package bytereplay.appraisal\n\nimport rego.v1\n\n'
                      'result := {"vector": {"no-such-claim": 2}}\n')
    verifier = make_verifier(home, policy=lenient, replay=False)
    try:
        result = verifier.appraise(factory.make(verifier.issue_nonce().nonce))
        assert result.status == "affirming"
        assert sub_of(result)["ear.appraisal-policy-id"] == verifier.policy.policy_id
    finally:
        verifier.close()
    verifier = make_verifier(home, policy=broken, replay=False)
    try:
        result = verifier.appraise(factory.make(verifier.issue_nonce().nonce))
        sub = sub_of(result)
        assert result.status == "none"
        assert set(sub["ear.trustworthiness-vector"].values()) == {1}
        assert "unknown claim" in sub["bytereplay.checks"]["policy"]
    finally:
        verifier.close()


def test_policy_cache_and_impure_policies(tmp_path: Path) -> None:
    policy = AppraisalPolicy(DEFAULT_POLICY)
    facts: dict[str, Any] = {"evidence": {"decode": "failed"}, "nonce": "not-run", "tee": None,
             "reference": {}, "preflight": {"missing_before_replay": []}, "request": "not-run",
             "replay": {"verdict": "not-run"}, "external": {}}
    first = policy.evaluate(facts)
    assert policy.evaluate(facts) == first and policy.evaluations == 1
    impure = tmp_path / "impure.rego"
    impure.write_text(DEFAULT_POLICY.read_text() + "\nnow := time.now_ns()\n")
    assert not AppraisalPolicy(impure).cached


# -- configuration ------------------------------------------------------------------------------


def test_config_file(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    path = tmp_path / "conf" / "verifier.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"attester": {"provider": "simulated"}, "verifier": {
        "nonce_ttl_s": 30, "store": "redis", "reference_values": "refs.json",
        "ear_profile": "legacy", "external": [{"name": "ita", "jwks": "jwks.json",
                                          "issuer": "https://ita.example"}]}}))
    cfg = config_mod.load(home, path)
    assert cfg.nonce_ttl_s == 30.0 and cfg.store == "redis" and cfg.ear_profile == "legacy"
    assert cfg.reference_values == path.parent / "refs.json"
    assert cfg.external[0].jwks == str(path.parent / "jwks.json")
    assert config_mod.load(home).model_dir == DEFAULT_MODEL_DIR
    for bad, text in (({"nonce_ttl": 3}, "unknown verifier configuration key"),
                      ({"replay": "yes"}, "expected bool"),
                      ({"threads": True}, "expected int"),
                      ({"store": "memcached"}, "store must be one of"),
                      ({"nonce_size": 4}, "nonce_size"),
                      ({"ear_profile": "draft-99"}, "unknown EAR profile"),
                      ({"external": [{"name": "a b", "jwks": "j", "issuer": "i"}]}, "name")):
        path.write_text(json.dumps(bad))
        with pytest.raises(Exception, match=text):
            config_mod.load(home, path)
    assert "| `nonce_ttl_s` |" in config_mod.reference_text()


def test_hand_written_hardware_quote_is_refused(tmp_path: Path) -> None:
    """A tsm (SEV-SNP) quote anyone could write (right layout, right binding, no AMD
    signature) under a configured snp scheme: the report signature and chain to AMD's
    pinned ARK are checked, so it is refused and nothing is affirmed."""
    from verifier.config import TeeTrustConfig

    home = new_home(tmp_path)
    record = generate().record
    refs = reference_file(tmp_path, {"model_digests": [record.get("model.digest")]})
    verifier = make_verifier(home, reference_values=refs, tee={"snp": TeeTrustConfig()})
    attacker = SigningKey.generate()

    class HandWritten:
        name = "tsm"
        simulated = False

        def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
            return kit.forged_snp_quote(report_data, measurements)

    try:
        nonce = verifier.issue_nonce().nonce
        evidence = evidence_factory(home).make(nonce, cnf_key=attacker, provider=HandWritten())
        result = verifier.appraise(evidence)
        sub = sub_of(result)
        assert result.status == "contraindicated"
        assert sub["bytereplay.checks"]["quote"].startswith("failed: ")
        assert sub["ear.trustworthiness-vector"]["hardware"] == 99
    finally:
        verifier.close()
