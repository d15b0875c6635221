"""The shipped Rego policies (default, strict, dev) and policy loading."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from bytereplay.encoding import b64url_encode, sha256_tag
from bytereplay.errors import PolicyError
from bytereplay.keys import SigningKey
from relying_party import SHIPPED, evaluate, load_policy
from relying_party.policy import shipped_dir
from relying_party.testing import jwks_of, make_result

REPO = Path(__file__).resolve().parent.parent
OUT = b"deterministic bytes"
NONCE = b64url_encode(b"\x01" * 32)
KEY = SigningKey.generate()
JWKS = jwks_of(KEY)

# A hardware TEE, a replay that matched, a complete record, a nonce: every policy allows it.
BEST: dict[str, Any] = {"output": OUT, "simulated": False, "nonce": NONCE}


def decide(policy: str, *, nonce: str | None = NONCE, out: bytes = OUT, **kw: Any) -> Any:
    token = make_result(KEY, **{**BEST, **kw})
    return evaluate(token, output=out, policy=policy, verifier_keys=JWKS, expected_nonce=nonce)


def test_shipped_policies_are_in_the_documented_folder() -> None:
    assert shipped_dir() == REPO / "policies"
    for name in SHIPPED:
        text = (REPO / "policies" / f"{name}.rego").read_text()
        head = text.split("package ", 1)[0]
        for word in ("ALLOWS", "DENIES", "INPUT", "OUTPUT"):
            assert word in head, f"{name}.rego does not document {word} at its top"


@pytest.mark.parametrize("policy", SHIPPED)
def test_every_policy_allows_the_best_result(policy: str) -> None:
    d = decide(policy)
    assert d.allow, d.reasons
    assert d.reasons == ()
    assert d.status == "affirming"


# (policy, result overrides, expected allow, a word each deny reason or note must hold)
MATRIX: list[tuple[str, dict[str, Any], bool, str]] = [
    # default
    ("default", {"simulated": True}, True, "simulated"),
    ("default", {"verdict": "match-portable", "diff": [("gpu.sku", "H100", "H200")]}, True,
     "gpu.sku"),
    ("default", {"missing": ["seed"]}, True, "lacks 1 field"),
    ("default", {"verdict": "mismatch"}, False, "mismatch"),
    ("default", {"verdict": "inconclusive", "diff": [("gpu.arch", "sm_90", "sm_80")]}, False,
     "inconclusive"),
    ("default", {"verdict": "not-run", "reason": "replay disabled"}, False, "replay disabled"),
    ("default", {"verdict": None}, False, "no replay verdict"),
    ("default", {"vector": {"executables": 0}}, False, "status none"),
    ("default", {"vector": {"executables": 2, "configuration": 96}}, False, "contraindicated"),
    ("default", {"vector": {"hardware": 32, "executables": 0}}, False, "no affirming claim"),
    # strict
    ("strict", {"simulated": True}, False, "TEE simulated"),
    ("strict", {"simulated": False, "hardware": False}, False, "not hardware-backed"),
    ("strict", {"tee": False}, False, "no TEE"),
    ("strict", {"verdict": "match-portable", "diff": [("threads", 1, 2)]}, False,
     "accepts only match"),
    ("strict", {"verdict": "not-run"}, False, "accepts only match"),
    ("strict", {"missing": ["seed"]}, False, "incomplete run record"),
    ("strict", {"vector": {"executables": 2, "hardware": 2, "configuration": 32}}, False,
     "requires affirming"),
    ("strict", {"checks": {"quote": "ok", "reference values": "container unknown"}}, False,
     "verifier check reference values failed"),
    # dev
    ("dev", {"simulated": True}, True, "simulated"),
    ("dev", {"verdict": "inconclusive", "diff": [("torch", "2.3", "2.4")]}, True, "inconclusive"),
    ("dev", {"verdict": "not-run", "reason": "model not available"}, True, "not-run"),
    ("dev", {"verdict": None}, True, "no replay verdict"),
    ("dev", {"verdict": "mismatch"}, False, "mismatch"),
    ("dev", {"vector": {"executables": 2, "configuration": 96}}, False, "contraindicated"),
]


@pytest.mark.parametrize(("policy", "overrides", "allow", "word"), MATRIX)
def test_policy_matrix(policy: str, overrides: dict[str, Any], allow: bool, word: str) -> None:
    d = decide(policy, **overrides)
    assert d.allow is allow, (d.reasons, d.notes)
    assert (d.reasons == ()) is allow
    said = d.notes if allow else d.reasons
    assert any(word in s for s in said), said


def test_strict_requires_a_nonce_the_relying_party_expected() -> None:
    d = decide("strict", nonce=None)
    assert not d.allow and any("requires a nonce" in r for r in d.reasons)
    assert decide("default", nonce=None).allow


def test_dev_says_it_is_not_for_production() -> None:
    assert any("not for production" in n for n in decide("dev").notes)


@pytest.mark.parametrize("policy", SHIPPED)
@pytest.mark.parametrize("failure", ["signature", "freshness", "nonce", "output", "app"])
def test_every_policy_denies_crypto_and_binding_failures(policy: str, failure: str) -> None:
    key = SigningKey.generate() if failure == "signature" else KEY
    iat = int(time.time()) - 100_000 if failure == "freshness" else None
    token = make_result(key, **{**BEST, "iat": iat})
    d = evaluate(
        token,
        output=OUT + b"!" if failure == "output" else OUT,
        policy=policy,
        verifier_keys=JWKS,
        expected_nonce=b64url_encode(b"other") if failure == "nonce" else NONCE,
        app_checks=[lambda e, o: ("app", failure != "app", "app said no")],
    )
    prefix = {"signature": "signature:", "freshness": "freshness:", "nonce": "nonce:",
              "output": "output hash:", "app": "app check app failed"}[failure]
    assert not d.allow
    assert any(r.startswith(prefix) for r in d.reasons), d.reasons


def test_policy_windows() -> None:
    assert (load_policy("default").max_age_seconds, load_policy("default").leeway_seconds) == (300, 30)
    assert (load_policy("strict").max_age_seconds, load_policy("strict").leeway_seconds) == (120, 5)
    assert (load_policy("dev").max_age_seconds, load_policy("dev").leeway_seconds) == (3600, 300)
    old = int(time.time()) - 1000
    assert not decide("default", iat=old).allow
    assert decide("dev", iat=old).allow


def test_policies_are_compiled_once_and_reloaded_when_changed(tmp_path: Path) -> None:
    assert load_policy("default") is load_policy("default")
    path = tmp_path / "mine.rego"
    path.write_text((REPO / "policies" / "default.rego").read_text())
    first = load_policy(path)
    assert load_policy(path) is first and load_policy(str(path)) is not None
    path.write_text(path.read_text().replace("max_age_seconds := 300", "max_age_seconds := 60"))
    second = load_policy(path)
    assert second is not first and second.max_age_seconds == 60
    assert second.digest == sha256_tag(path.read_bytes())


def test_custom_policy_by_path_with_its_own_package(tmp_path: Path) -> None:
    path = tmp_path / "tiny.rego"
    path.write_text(
        "package acme.gate\n\nimport rego.v1\n\nmax_age_seconds := 10\n\n"
        "deny_reasons contains \"unverified\" if not input.checks.signature.ok\n\n"
        "deny_reasons contains sprintf(\"verdict %s\", [input.ear.verdict]) if {\n"
        "\tinput.ear.verdict != \"match\"\n}\n\n"
        "decision := {\"allow\": count(deny_reasons) == 0, \"reasons\": sort(deny_reasons)}\n"
    )
    d = decide(str(path), verdict="not-run")
    assert not d.allow and d.reasons == ("verdict not-run",)
    assert d.policy.name == str(path) and d.notes == ()
    assert decide(str(path)).allow


def _broken(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "broken.rego"
    path.write_text(text)
    return path


def test_a_policy_with_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    text = (REPO / "policies" / "default.rego").read_text().splitlines()
    line = next(i for i, t in enumerate(text) if t.startswith("decision := {")) + 1
    text[line - 1] = "decision := {{ ==="
    path = _broken(tmp_path, "\n".join(text) + "\n")
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert re.match(rf"^{re.escape(str(path))}:\d+: ", err.value.detail), err.value.detail
    got = int(err.value.detail.split(":")[1])
    assert abs(got - line) <= 1, (got, line, err.value.detail)


def test_syntax_error_line_counts_bytes_of_non_ascii_text(tmp_path: Path) -> None:
    path = _broken(
        tmp_path, "package x\n# héllo wörld ééééé\nimport rego.v1\n\nallow if {\n  input.a ==\n}\n"
    )
    with pytest.raises(PolicyError, match=r"broken\.rego:6: "):
        load_policy(path)


@pytest.mark.parametrize(("text", "needle"), [
    ("import rego.v1\nallow := true\n", "declares no package"),
    ("package x\nimport rego.v1\ndecision := {\"allow\": true, \"reasons\": []}\n",
     "allows a result whose signature did not verify"),
    ("package x\nimport rego.v1\ndecision := {\"allow\": false, \"reasons\": []}\n",
     "disagrees with its deny reasons"),
    ("package x\nimport rego.v1\nallow := false\n", "decision` is undefined"),
    ("package x\nimport rego.v1\nmax_age_seconds := \"long\"\n"
     "decision := {\"allow\": false, \"reasons\": [\"no\"]}\n", "non-negative integer"),
])
def test_broken_policies_are_refused_at_load(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(PolicyError, match=re.escape(needle)):
        load_policy(_broken(tmp_path, text))


def test_a_policy_that_builds_unescaped_text_raises_policy_error(tmp_path: Path) -> None:
    """rego-cpp quotes a computed string given to sprintf %s: the result is not JSON."""
    path = _broken(tmp_path, (
        "package x\nimport rego.v1\n"
        "joined := concat(\", \", [\"a\", \"b\"])\n"
        "deny_reasons contains sprintf(\"got %s\", [joined])\n"
        "decision := {\"allow\": count(deny_reasons) == 0, \"reasons\": sort(deny_reasons)}\n"
    ))
    with pytest.raises(PolicyError, match="not valid JSON"):
        load_policy(path)


def test_decisions_are_memoised_by_facts_but_never_across_different_facts() -> None:
    policy = load_policy("default")
    assert policy.memoised
    good = decide("default")
    bad = decide("default", out=OUT + b"x")
    assert good.allow and not bad.allow
    assert decide("default").allow and not decide("default", out=OUT + b"y").allow
    # a later result (other iat, other output, other nonce) with the same facts hits the memo
    size = len(policy._memo)
    other = b"other output"
    token = make_result(KEY, **{**BEST, "output": other, "iat": int(time.time()) - 5})
    assert evaluate(token, output=other, policy=policy, verifier_keys=JWKS,
                    expected_nonce=NONCE).allow
    assert len(policy._memo) == size


def test_a_policy_calling_a_non_deterministic_builtin_is_not_memoised(tmp_path: Path) -> None:
    path = tmp_path / "clock.rego"
    path.write_text(
        "package clock\nimport rego.v1\n"
        "deny_reasons contains \"unverified\" if not input.checks.signature.ok\n"
        "deny_reasons contains \"too early\" if time.now_ns() < 0\n"
        "decision := {\"allow\": count(deny_reasons) == 0, \"reasons\": sort(deny_reasons)}\n"
    )
    policy = load_policy(path)
    assert not policy.memoised
    assert decide(str(path)).allow and len(policy._memo) == 0


def test_concurrent_evaluations_keep_their_own_answers() -> None:
    import dataclasses
    from concurrent.futures import ThreadPoolExecutor

    cold = dataclasses.replace(load_policy("default"), memoised=False)
    good = make_result(KEY, **BEST)

    def one(i: int) -> bool:
        out = OUT if i % 2 == 0 else OUT + b"!"
        d = evaluate(good, output=out, policy=cold, verifier_keys=JWKS, expected_nonce=NONCE)
        return d.allow == (i % 2 == 0)

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(one, range(80)))


def test_one_purity_check_serves_both_policies() -> None:
    from bytereplay.rego import is_pure

    assert is_pure("package p\nallow if input.x == 1\n")
    for call in ("time.now_ns()", "http.send({})", "rand.intn(\"k\", 3)", "uuid.rfc4122(\"k\")",
                 "opa.runtime()", "net.lookup_ip_addr(\"h\")"):
        assert not is_pure(f"package p\nx := {call}\n"), call
    assert is_pure("package p\nmytime.now_nsx := 1\n")  # a word boundary, not a substring
