"""The relying party's decision names the cause the verifier found, in `reasons`.

A reused, unknown or expired nonce and a challenge window that is not the nonce's set
instance-identity to 96 in the verifier's EAR, with the cause in its checks. The decision
then says that cause among its reasons (not only "instance-identity=96"), and its nonce
check line is not "ok". A trailing newline on the output bytes is named as such.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from verifier_fixtures import EvidenceFactory, evidence_factory, generate, make_verifier, new_home

from relying_party import evaluate
from verifier.pipeline import Verifier


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Verifier, EvidenceFactory]]:
    home = new_home(tmp_path_factory.mktemp("reasons"))
    verifier = make_verifier(home)
    yield verifier, evidence_factory(home)
    verifier.close()


OUTPUT = generate().output.encode("utf-8")


@pytest.mark.parametrize("policy", ["default", "strict", "dev"])
def test_a_reused_nonce_is_named_in_reasons(env: tuple[Verifier, EvidenceFactory],
                                            policy: str) -> None:
    verifier, factory = env
    issued = verifier.issue_nonce()
    evidence = factory.make(issued.nonce)
    first = verifier.appraise(evidence, replay=False)
    again = verifier.appraise(evidence, replay=False)
    assert first.status == "warning" and again.status == "contraindicated"
    d = evaluate(again.token, output=OUTPUT, policy=policy, verifier_keys=verifier.jwks())
    assert not d.allow
    named = [r for r in d.reasons if "nonce was already used" in r]
    assert named, d.reasons
    assert not d.checks["nonce"]["ok"]
    assert "nonce: ok" not in d.render()
    # the first, good result is unaffected (dev: this test skips the replay)
    good = evaluate(first.token, output=OUTPUT, policy="dev", verifier_keys=verifier.jwks())
    assert good.allow and good.checks["nonce"]["ok"]


def test_a_differing_challenge_window_is_named_in_reasons(
        env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    issued = verifier.issue_nonce()
    evidence = factory.make(issued.nonce, edits={
        "challenge_window.issued_at": "2020-01-01T00:00:00Z",
        "challenge_window.expires_at": "2020-01-01T00:02:00Z"})
    result = verifier.appraise(evidence, replay=False)
    d = evaluate(result.token, output=OUTPUT, verifier_keys=verifier.jwks())
    assert not d.allow
    assert any("challenge window" in r and "differs" in r for r in d.reasons), d.reasons


def test_a_trailing_newline_is_named(env: tuple[Verifier, EvidenceFactory]) -> None:
    verifier, factory = env
    result = verifier.appraise(factory.make(verifier.issue_nonce().nonce), replay=False)
    d = evaluate(result.token, output=OUTPUT + b"\n", verifier_keys=verifier.jwks())
    assert not d.allow
    assert any("trailing newline" in r and "jq -j" in r for r in d.reasons), d.reasons
    other = evaluate(result.token, output=OUTPUT + b"!", verifier_keys=verifier.jwks())
    assert not any("newline" in r for r in other.reasons)
