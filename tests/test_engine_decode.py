"""The token loop and the samplers, on synthetic logits (no model)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import pytest
import torch

from attester.decode import (
    DecodePolicy,
    RequestError,
    TokenChooser,
    decode_loop,
    find_stop,
    greedy_token,
    make_generator,
    sample_token,
    validate_policy,
)
from bytereplay.errors import UsageError

# A toy "model": token t is the character chr(ord('a') + t); id 0 is EOS (empty text).
VOCAB = 8


def detok(ids: Sequence[int]) -> str:
    return "".join(chr(ord("a") + t - 1) for t in ids if t != 0)


def scripted(tokens: list[int]) -> tuple[torch.Tensor, object]:
    """Logits that make greedy emit `tokens` one after the other."""
    it = iter(tokens)

    def logits_for(tok: int) -> torch.Tensor:
        x = torch.zeros(VOCAB)
        x[tok] = 10.0
        return x

    first = logits_for(next(it))

    def step(_prev: int) -> torch.Tensor:
        return logits_for(next(it))

    return first, step


def run(tokens: list[int], policy: DecodePolicy) -> tuple[tuple[int, ...], str, str]:
    first, step = scripted(tokens)
    out = decode_loop(first, step, policy, eos_ids=frozenset({0}), detokenize=detok)  # type: ignore[arg-type]
    return out.token_ids, out.text, out.finish_reason


def test_max_new_tokens() -> None:
    assert run([1, 2, 3, 4, 5], DecodePolicy(max_new_tokens=3)) == ((1, 2, 3), "abc", "length")


def test_eos_stops_and_is_not_in_text() -> None:
    assert run([1, 2, 0, 4], DecodePolicy(max_new_tokens=8)) == ((1, 2, 0), "ab", "eos")


def test_eos_off_runs_on() -> None:
    ids, text, reason = run([1, 0, 2, 3], DecodePolicy(max_new_tokens=4, eos=False))
    assert (ids, text, reason) == ((1, 0, 2, 3), "abc", "length")


def test_stop_sequence_cuts_before_match() -> None:
    ids, text, reason = run([1, 2, 3, 4, 5, 6], DecodePolicy(max_new_tokens=6, stop=("cd",)))
    assert (ids, text, reason) == ((1, 2, 3, 4), "ab", "stop")


def test_earliest_stop_sequence_wins() -> None:
    _, text, _ = run([1, 2, 3, 4, 5, 6], DecodePolicy(max_new_tokens=6, stop=("e", "bcd")))
    assert text == "a"
    assert find_stop("xxabyy", ["y", "ab"]) == 2
    assert find_stop("xx", ["y"]) is None


def test_stop_at_the_first_token_gives_empty_output() -> None:
    assert run([1, 2], DecodePolicy(max_new_tokens=2, stop=("a",))) == ((1,), "", "stop")


def test_greedy_ties_go_to_the_lowest_id() -> None:
    x = torch.tensor([0.0, 3.0, 1.0, 3.0])
    assert greedy_token(x) == 1


def test_nan_logits_are_refused() -> None:
    from attester.decode import InferenceError

    with pytest.raises(InferenceError):
        greedy_token(torch.tensor([0.0, float("nan")]))
    with pytest.raises(InferenceError):
        sample_token(
            torch.tensor([float("-inf")] * 3),
            temperature=1.0,
            top_k=0,
            top_p=1.0,
            generator=make_generator(0),
        )


def _draws(logits: torch.Tensor, n: int, seed: int = 0, **kw: float) -> list[int]:
    gen = make_generator(seed)
    args = {"temperature": 1.0, "top_k": 0, "top_p": 1.0, **kw}
    return [
        sample_token(
            logits,
            temperature=float(args["temperature"]),
            top_k=int(args["top_k"]),
            top_p=float(args["top_p"]),
            generator=gen,
        )
        for _ in range(n)
    ]


def test_sampling_is_reproducible_per_seed() -> None:
    logits = torch.randn(50, generator=torch.Generator().manual_seed(3))
    assert _draws(logits, 100, seed=5) == _draws(logits, 100, seed=5)
    assert _draws(logits, 100, seed=5) != _draws(logits, 100, seed=6)


def test_sampling_follows_the_softmax() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    n = 4000
    counts = Counter(_draws(logits, n))
    probs = torch.softmax(logits.double(), 0)
    for tok in range(4):
        expected = float(probs[tok]) * n
        assert abs(counts[tok] - expected) < 5 * math.sqrt(expected) + 5


def test_top_k_and_top_p_truncate() -> None:
    logits = torch.tensor([2.0, 1.9, 1.8, 0.0, -1.0])
    assert set(_draws(logits, 300, top_k=2)) == {0, 1}
    assert set(_draws(logits, 300, top_k=1)) == {0}
    assert set(_draws(logits, 300, top_p=1e-9)) == {0}
    # top-p 0.5: p0 ~ 0.36 < 0.5, p0 + p1 ~ 0.69 >= 0.5, so tokens 0 and 1 only.
    assert set(_draws(logits, 300, top_p=0.5)) == {0, 1}
    # Low temperature sharpens towards the argmax.
    assert set(_draws(logits, 100, temperature=0.01)) == {0}


def test_chooser_greedy_has_no_generator() -> None:
    assert TokenChooser(DecodePolicy()).generator is None
    assert TokenChooser(DecodePolicy(temperature=0.5)).generator is not None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_new_tokens": 0},
        {"max_new_tokens": 5000},
        {"max_new_tokens": True},
        {"max_new_tokens": 2.0},
        {"temperature": -0.1},
        {"temperature": float("nan")},
        {"temperature": float("inf")},
        {"temperature": 101.0},
        {"top_k": -1},
        {"top_k": 1.5},
        {"top_p": 0.0},
        {"top_p": 1.01},
        {"top_p": float("nan")},
        {"seed": -1},
        {"seed": 2**53},
        {"seed": "1"},
        {"stop": "abc"},
        {"stop": ("",)},
        {"stop": ("x" * 257,)},
        {"stop": tuple("abcdefghijklmnopq")},
        {"stop": (1,)},
        {"stop": ("\ud800",)},
        {"eos": 1},
    ],
)
def test_bad_policies_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(RequestError) as err:
        validate_policy(DecodePolicy(**kwargs))  # type: ignore[arg-type]
    assert isinstance(err.value, ValueError) and isinstance(err.value, UsageError)
    assert err.value.status == 400


def test_list_of_stops_is_normalised() -> None:
    p = validate_policy(DecodePolicy(stop=["x", "y"]))  # type: ignore[arg-type]
    assert p.stop == ("x", "y")
    ok = DecodePolicy(max_new_tokens=4096, temperature=100, top_k=0, top_p=1, seed=2**53 - 1)
    assert validate_policy(ok) is ok
