"""Teacher-forced replay (issue 16): one forward pass over prompt + recorded tokens, each
choice re-derived by the engine's own `sample_choice`, the engine's own stop rules and
detokenisation applied to the recorded tokens.

Fast == slow: across many prompts and seeds the teacher-forced verdict equals the full
replay's, for honest records and for records with one token changed. Negative controls:
a record whose token was changed is caught at that position; logits with noise added
give more than one outcome where the clean engine gives exactly one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from verifier_fixtures import (
    DECODE,
    PROMPT,
    TEMPLATE,
    EvidenceFactory,
    engine_factory,
    evidence_factory,
    generate,
    make_verifier,
    new_home,
    shared_engine,
)

from attester.decode import DecodePolicy, make_generator, sample_choice
from attester.engine import Engine, InferenceRequest, InferenceResult
from attester.evidence import request_claim
from bytereplay.encoding import sha256_tag
from bytereplay.errors import UsageError
from bytereplay.home import Home
from bytereplay.record import RunRecord
from verifier import config as verifier_config
from verifier.config import DEFAULT_MODEL_DIR
from verifier.pipeline import Verifier
from verifier.replay import (
    DEFAULT_TOLERANCE,
    Replayer,
    ReplayOutcome,
    ReplaySettings,
    measure_agreement,
    within_tolerance,
)

GREEDY: dict[str, Any] = {**DECODE, "temperature": 0.0, "top_k": 0, "top_p": 1.0}
SAMPLED: dict[str, Any] = dict(DECODE)


def replayer(method: str = "teacher-forced", **kw: Any) -> Replayer:
    return Replayer(ReplaySettings(DEFAULT_MODEL_DIR, method=method, **kw),
                    engine_factory=engine_factory)


@pytest.fixture(scope="module")
def fast() -> Replayer:
    return replayer("teacher-forced", calibrate=False)


@pytest.fixture(scope="module")
def full() -> Replayer:
    return replayer("full")


def replay(r: Replayer, prompt: str, decode: dict[str, Any], result: InferenceResult,
           **edits: Any) -> ReplayOutcome:
    record = result.record
    for path, value in edits.items():
        record = record.replace(path.replace("__", "."), value)
    return r.replay(request_claim(prompt, TEMPLATE, decode), record)


def least_likely(engine: Engine, prompt: str, decode: dict[str, Any],
                 result: InferenceResult, position: int) -> int:
    """The token the model finds least likely at `position`: far outside any tolerance."""
    policy = DecodePolicy(**{**decode, "stop": tuple(decode["stop"])})
    ids = engine.prompt_ids(InferenceRequest(prompt, TEMPLATE, policy))
    logits = engine.teacher_forced_logits(ids, result.token_ids)
    return int(torch.argmin(logits[position]))


# -- the shared choice ---------------------------------------------------------------


def test_sample_choice_greedy_margin_ties_and_gap() -> None:
    x = torch.tensor([0.0, 3.0, 1.0, 3.0])
    c = sample_choice(x, DecodePolicy(), None, recorded=3)
    assert (c.token, c.margin, c.unit) == (1, 0.0, "logit")
    assert c.gap == 0.0  # a tie lost on the id: a near tie, never a contradiction
    c = sample_choice(torch.tensor([0.0, 2.5, 1.0]), DecodePolicy(), None, recorded=2)
    assert (c.token, c.margin, c.gap, c.gap_unit) == (1, 1.5, 1.5, "logit")


def test_sample_choice_sampling_consumes_one_draw_per_call() -> None:
    logits = torch.randn(50, generator=torch.Generator().manual_seed(3))
    policy = DecodePolicy(temperature=0.8, top_k=20, top_p=0.9, seed=4)
    a, b = make_generator(4), make_generator(4)
    first = [sample_choice(logits, policy, a).token for _ in range(30)]
    # With `recorded` given the same draws are consumed: the choices do not move.
    second = [sample_choice(logits, policy, b, recorded=first[0]).token for _ in range(30)]
    assert first == second
    assert torch.rand((), generator=a).item() == torch.rand((), generator=b).item()


def test_sample_choice_sampling_gap_units() -> None:
    logits = torch.tensor([2.0, 1.9, 1.8, 0.0, -1.0, -5.0])
    policy = DecodePolicy(temperature=1.0, top_k=4, top_p=1.0, seed=0)
    c = sample_choice(logits, policy, make_generator(0), recorded=5)
    assert c.gap_unit == "logit" and c.gap == pytest.approx(5.0)  # cut by top-k
    c = sample_choice(logits, policy, make_generator(0), recorded=c.token)
    assert c.gap == 0.0 and c.gap_unit == "mass" and 0 < c.margin <= 1


def test_within_tolerance_bounds() -> None:
    assert within_tolerance(2e-3, "logit", 1e-3, 0.7)
    assert not within_tolerance(2.1e-3, "logit", 1e-3, 0.7)
    edge = math.expm1(2e-3 / 0.7)
    assert within_tolerance(edge, "mass", 1e-3, 0.7)
    assert not within_tolerance(edge * 1.01, "mass", 1e-3, 0.7)


# -- honest runs -----------------------------------------------------------------------


@pytest.mark.parametrize("decode", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
def test_honest_run_matches_by_teacher_forcing(fast: Replayer, decode: dict[str, Any]) -> None:
    result = generate(PROMPT, decode)
    out = replay(fast, PROMPT, decode, result)
    assert (out.verdict, out.method) == ("match", "teacher-forced"), out.reason
    assert out.replay_output_hash == result.output_hash
    assert out.margin_unit == ("logit" if decode is GREEDY else "mass")
    assert out.margin is not None and out.margin > 0
    assert out.inconclusive_positions == ()
    claim = out.to_json()
    assert claim["method"] == "teacher-forced" and claim["tolerance"] == DEFAULT_TOLERANCE
    assert claim["bitwise"] is None  # calibration off here: not measured


def fast_slow_cases() -> Iterator[tuple[str, dict[str, Any]]]:
    prompts = ["Hello", "The verifier replays the bytes", "Once upon a time", "1 2 3 4 5"]
    for seed in range(12):
        d = {**SAMPLED, "seed": seed, "max_new_tokens": 8 + seed}
        if seed % 3 == 0:
            d = {**GREEDY, "max_new_tokens": 8 + seed}
        if seed % 4 == 1:
            d = {**d, "top_k": 0, "top_p": 0.8, "temperature": 1.3}
        if seed % 5 == 2:
            d = {**d, "stop": ["e"]}
        yield prompts[seed % len(prompts)], d


def test_fast_equals_slow_on_many_seeds_and_prompts(fast: Replayer, full: Replayer) -> None:
    """The engine's generation and the teacher-forced check use one choice function, so
    every honest record matches both ways, and one changed token is found by both at the
    same position."""
    engine = shared_engine()
    seen = 0
    for prompt, decode in fast_slow_cases():
        result = generate(prompt, decode)
        a, b = replay(fast, prompt, decode, result), replay(full, prompt, decode, result)
        assert (a.verdict, b.verdict) == ("match", "match"), (prompt, decode, a.reason)
        assert (a.method, b.method) == ("teacher-forced", "full")
        ids = list(result.token_ids)
        if len(ids) < 3:
            continue
        pos = len(ids) // 2
        ids[pos] = least_likely(engine, prompt, decode, result, pos)
        if ids[pos] in engine.eos_ids:
            continue
        a = replay(fast, prompt, decode, result, output_token_ids=ids)
        b = replay(full, prompt, decode, result, output_token_ids=ids)
        assert (a.verdict, b.verdict) == ("mismatch", "mismatch"), (a.reason, b.reason)
        assert a.first_divergence == b.first_divergence == pos
        seen += 1
    assert seen >= 8


def test_chunking_gives_the_same_answer_as_one_pass() -> None:
    engine = shared_engine()
    decode = {**SAMPLED, "max_new_tokens": 40}
    result = generate("chunks", decode)
    verdicts = {}
    for chunk in (1, 3, 7, 256):
        out = replay(replayer(chunk=chunk, calibrate=False), "chunks", decode, result)
        verdicts[chunk] = (out.verdict, out.inconclusive_positions)
    assert set(verdicts.values()) == {("match", ())}
    policy = DecodePolicy(**{**decode, "stop": ()})
    ids = engine.prompt_ids(InferenceRequest("chunks", TEMPLATE, policy))
    one = engine.teacher_forced_logits(ids, result.token_ids, chunk=256)
    for chunk in (1, 5):
        other = engine.teacher_forced_logits(ids, result.token_ids, chunk=chunk)
        m = measure_agreement(one, other)
        assert m["argmax_agreement"] == 1.0 and m["max_abs_diff"] < 1e-4, m
    m = measure_agreement(engine.stepwise_logits(ids, result.token_ids), one)
    assert m["argmax_agreement"] == 1.0 and m["max_abs_diff"] < 1e-4, m


# -- what it must catch ------------------------------------------------------------------


def test_detokenisation_check(fast: Replayer) -> None:
    result = generate(PROMPT, GREEDY)
    out = replay(fast, PROMPT, GREEDY, result, output_hash=sha256_tag(b"other bytes"))
    assert out.verdict == "mismatch"
    assert out.reason is not None and out.reason.startswith("detokenisation")
    assert out.replay_output_hash == result.output_hash


def test_record_ending_where_no_stop_rule_holds_is_named(fast: Replayer) -> None:
    engine = shared_engine()
    result = generate(PROMPT, GREEDY)
    short = list(result.token_ids[:-3])
    out = replay(fast, PROMPT, GREEDY, result, output_token_ids=short,
                 output_hash=sha256_tag(engine.detokenize(short).encode()))
    assert out.verdict == "mismatch"
    assert out.reason is not None and "no stop rule holds there" in out.reason
    assert out.first_divergence == len(short)


def test_stop_rule_that_held_earlier_is_named(fast: Replayer) -> None:
    engine = shared_engine()
    result = generate(PROMPT, GREEDY)
    text = engine.detokenize(result.token_ids[:2])
    stop = text[-1:] if text.strip() else None
    if not stop:
        pytest.skip("the first tokens decode to nothing visible")
    decode = {**GREEDY, "stop": [stop]}
    out = replay(fast, PROMPT, decode, result, stop__stop_sequences=[stop])
    assert out.verdict == "mismatch"
    assert out.reason is not None and out.reason.startswith("stop rule: the run ends at position")
    assert "(stop)" in out.reason


def test_record_longer_than_max_new_tokens_is_named(fast: Replayer) -> None:
    result = generate(PROMPT, GREEDY)
    out = replay(fast, PROMPT, GREEDY, result, stop__max_new_tokens=len(result.token_ids) - 2)
    assert out.verdict == "mismatch" and out.reason is not None
    assert "(length)" in out.reason


class _Doctored:
    """The shared engine with its teacher-forced logits changed at one position."""

    def __init__(self, engine: Engine, position: int, recorded: int, gap: float) -> None:
        self.engine, self.position, self.recorded, self.gap = engine, position, recorded, gap

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def teacher_forced_logits(self, prompt_ids: Any, output_ids: Any, *, chunk: int = 256) -> Any:
        logits = self.engine.teacher_forced_logits(prompt_ids, output_ids, chunk=chunk).clone()
        row = logits[self.position]
        top = float(row.max())
        # A token of lower id now leads by `gap` (so on a tie, gap 0, it wins on its id).
        row[self.recorded] = top - self.gap
        row[self.recorded - 1] = top
        return logits


@pytest.mark.parametrize(("gap", "verdict"), [(1e-4, "inconclusive"), (0.0, "inconclusive"),
                                              (0.5, "mismatch")])
def test_near_tie_is_inconclusive_not_mismatch(gap: float, verdict: str) -> None:
    """A near tie where prefill and decode can round differently: inconclusive, naming the
    position; the same disagreement beyond the tolerance is a contradiction."""
    result = generate(PROMPT, GREEDY)
    pos = 4
    rec = result.token_ids[pos]
    assert rec > 0
    doctored = _Doctored(shared_engine(), pos, rec, gap)
    r = Replayer(ReplaySettings(DEFAULT_MODEL_DIR, method="teacher-forced", calibrate=False),
                 engine_factory=lambda _s: doctored)  # type: ignore[arg-type,return-value]
    out = r.replay(request_claim(PROMPT, TEMPLATE, GREEDY), result.record)
    assert out.verdict == verdict, out.reason
    if verdict == "inconclusive":
        assert out.inconclusive_positions == (pos,)
        assert out.reason is not None and f"position(s) {pos}" in out.reason
    else:
        assert out.first_divergence == pos


def test_environment_difference_is_named_as_in_a_full_replay(fast: Replayer,
                                                             full: Replayer) -> None:
    result = generate(PROMPT, GREEDY)
    a = replay(fast, PROMPT, GREEDY, result, dtype="bfloat16")
    b = replay(full, PROMPT, GREEDY, result, dtype="bfloat16")
    assert a.verdict == b.verdict == "match-portable"
    assert a.environment_diff == b.environment_diff
    ids = list(result.token_ids)
    ids[5] = least_likely(shared_engine(), PROMPT, GREEDY, result, 5)
    a = replay(fast, PROMPT, GREEDY, result, dtype="bfloat16", output_token_ids=ids)
    assert a.verdict == "inconclusive" and a.diff_fields == ["dtype"]


# -- determinism, with a negative control ---------------------------------------------------


def _signature(out: ReplayOutcome) -> tuple[Any, ...]:
    return (out.verdict, out.reason, out.margin, out.first_divergence)


def test_the_check_is_repeatable_and_a_noisy_engine_is_not(fast: Replayer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    decode = {**SAMPLED, "max_new_tokens": 24}
    result = generate("repeat", decode)
    clean = {_signature(replay(fast, "repeat", decode, result)) for _ in range(10)}
    assert len(clean) == 1
    engine = shared_engine()
    real = engine._logits
    noise = torch.Generator().manual_seed(0)

    def racy(ids: Any, cache: Any, keep: int) -> Any:
        logits, cache = real(ids, cache, keep)
        return logits + 5e-2 * torch.randn(logits.shape, generator=noise), cache

    monkeypatch.setattr(engine, "_logits", racy)
    noisy = {_signature(replay(fast, "repeat", decode, result)) for _ in range(10)}
    assert len(noisy) > 1


# -- through the verifier, with re-signed Evidence -------------------------------------------


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return new_home(tmp_path_factory.mktemp("tf"))


def _appraise(verifier: Verifier, factory: EvidenceFactory, **kw: Any) -> dict[str, Any]:
    result = verifier.appraise(factory.make(verifier.issue_nonce().nonce, **kw))
    return dict(result.replay)


@pytest.mark.parametrize("method", ["teacher-forced", "teacher-forced-then-full"])
def test_changed_token_in_signed_evidence(homes: Home, method: str) -> None:
    verifier = make_verifier(homes, replay_method=method, replay_calibrate=False)
    factory = evidence_factory(homes)
    try:
        honest = _appraise(verifier, factory, decode=GREEDY)
        assert honest["verdict"] == "match" and honest["method"] == "teacher-forced"
        result = generate(PROMPT, GREEDY)
        ids = list(result.token_ids)
        ids[6] = least_likely(shared_engine(), PROMPT, GREEDY, result, 6)
        bad = _appraise(verifier, factory, decode=GREEDY, edits={"output_token_ids": ids})
        assert bad["verdict"] == "mismatch" and bad["first_divergent_token"] == 6
        if method == "teacher-forced":
            assert bad["method"] == "teacher-forced"
        else:  # the full replay ran after the fast check and its verdict stands
            assert bad["method"] == "full"
            assert bad["teacher_forced"]["verdict"] == "mismatch"
            assert bad["teacher_forced"]["first_divergent_token"] == 6
    finally:
        verifier.close()


def test_calibration_is_reported_as_the_bitwise_fact(homes: Home) -> None:
    verifier = make_verifier(homes, replay_method="teacher-forced")
    try:
        rep = _appraise(verifier, evidence_factory(homes), decode=SAMPLED)
        assert rep["verdict"] == "match"
        m = rep["bitwise_measurement"]
        assert m["rows"] == m["probe_tokens"] > 1
        assert rep["bitwise"] is (m["equal_rows"] == m["rows"])
        assert m["argmax_agreement"] == 1.0 and m["max_abs_diff"] < DEFAULT_TOLERANCE
    finally:
        verifier.close()


def test_config_keys(tmp_path: Any) -> None:
    home = new_home(tmp_path)
    cfg = verifier_config.from_dict({"replay_method": "full", "replay_tolerance": 0}, home)
    assert (cfg.replay_method, cfg.replay_tolerance) == ("full", 0.0)
    assert verifier_config.from_dict({}, home).replay_method == "teacher-forced-then-full"
    for bad in ({"replay_method": "fast"}, {"replay_tolerance": -1}, {"replay_chunk": 0},
                {"replay_tolerance": "1"}):
        with pytest.raises(UsageError):
            verifier_config.from_dict(bad, home)


def test_full_replay_names_equal_bytes_from_other_tokens(full: Replayer) -> None:
    """The token ids are attested too: a record whose ids differ but whose bytes were kept
    is a contradiction for the full method as for the teacher-forced one."""
    result = generate(PROMPT, GREEDY)
    ids = list(result.token_ids)
    ids[2] = least_likely(shared_engine(), PROMPT, GREEDY, result, 2)
    out = replay(full, PROMPT, GREEDY, result, output_token_ids=ids)
    assert out.verdict == "mismatch" and out.first_divergence == 2
    assert out.reason is not None and "different token ids" in out.reason


def test_record_without_token_ids_falls_back_to_full() -> None:
    result = generate(PROMPT, GREEDY)
    record: RunRecord = result.record.replace("output_token_ids", None)
    out = replayer("teacher-forced-then-full", calibrate=False).replay(
        request_claim(PROMPT, TEMPLATE, GREEDY), record)
    assert (out.verdict, out.method) == ("match", "full")
    assert out.fast is not None and out.fast["verdict"] == "not-run"
    assert dataclasses.asdict(out)["method"] == "full"


# -- policies read the method ------------------------------------------------------------


def _decide(policy: str, **kw: Any) -> Any:
    from bytereplay.encoding import b64url_encode
    from bytereplay.keys import SigningKey
    from relying_party import evaluate
    from relying_party.testing import jwks_of, make_result

    key, nonce, out = SigningKey.generate(), b64url_encode(b"\x02" * 32), b"bytes"
    token = make_result(key, output=out, simulated=False, nonce=nonce, **kw)
    return evaluate(token, output=out, policy=policy, verifier_keys=jwks_of(key),
                    expected_nonce=nonce)


@pytest.mark.parametrize(("policy", "kw", "allow"), [
    ("strict", {"method": "full"}, True),
    ("strict", {}, True),  # no method: an older verifier's replay, which was full
    ("strict", {"method": "teacher-forced", "bitwise": True}, True),
    ("strict", {"method": "teacher-forced", "bitwise": False}, False),
    ("strict", {"method": "teacher-forced"}, False),
    ("default", {"method": "teacher-forced", "bitwise": False}, True),
    ("dev", {"method": "teacher-forced"}, True),
])
def test_policies_read_the_method(policy: str, kw: dict[str, Any], allow: bool) -> None:
    d = _decide(policy, **kw)
    assert d.allow is allow, d.reasons
    if not allow:
        assert any("teacher-forced without a measured bitwise agreement" in r for r in d.reasons)
    if kw.get("method") == "teacher-forced" and allow:
        assert any("teacher forcing" in n for n in d.notes) or policy == "strict"
        assert "teacher-forced replay" in d.claim


def test_a_result_with_an_unknown_method_is_refused() -> None:
    d = _decide("default", method="guessed")
    assert not d.allow and any("method must be one of" in r for r in d.reasons)


def test_sampled_near_edge_draw_is_within_tolerance_and_a_far_one_is_not() -> None:
    """Sampling's tolerance case: the draw lands just past the edge between two tokens, so
    a logit rounding difference could move it; the recorded neighbour is then a near tie."""
    u = float(torch.rand((), generator=make_generator(8), dtype=torch.float64))  # 0.78
    policy = DecodePolicy(temperature=1.0, seed=8)
    for eps, near in ((1e-5, True), (0.2, False)):
        p0 = u - eps  # token 0 (the likelier, first) ends just below the draw
        logits = torch.tensor([math.log(p0), math.log(1 - p0)], dtype=torch.float64)
        c = sample_choice(logits, policy, make_generator(8), recorded=0)
        assert c.token == 1 and c.gap_unit == "mass"
        assert c.gap is not None and c.gap == pytest.approx(u - p0, abs=1e-9)
        assert within_tolerance(c.gap, c.gap_unit, DEFAULT_TOLERANCE, 1.0) is near


def test_generation_goes_through_sample_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one home of the choice: the engine's token loop calls `sample_choice` once per
    generated token (so the teacher-forced check re-derives with the very same code)."""
    import attester.decode as decode_mod

    calls = []
    real = decode_mod.sample_choice

    def counting(*a: Any, **kw: Any) -> Any:
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(decode_mod, "sample_choice", counting)
    policy = DecodePolicy(**{**SAMPLED, "stop": (), "max_new_tokens": 9, "seed": 99})
    out = shared_engine().generate(InferenceRequest("count me", TEMPLATE, policy))
    assert len(calls) == len(out.token_ids)
