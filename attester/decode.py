"""Decode policies and the token loop.

Every step is explicit, so nothing depends on `model.generate`:

- greedy (temperature 0): the highest logit; ties go to the lowest token id;
- sampling: logits / temperature in float64 on the CPU, sorted (stable, so ties keep
  token-id order), cut to the top k, softmax with one sequential cumulative sum (a
  fixed summation order), cut to the smallest prefix whose mass reaches top_p, then
  one uniform draw u in [0, 1) from a `torch.Generator` seeded with the request's seed
  picks the first token whose cumulative mass exceeds u * total (inverse CDF). One
  draw per sampled token, so the seed fixes the whole sequence;
- both are one function, `sample_choice`, which the verifier's teacher-forced replay calls
  too (with the recorded token, to measure how far it was from being chosen);
- stop rules: `max_new_tokens`; EOS (when `eos` is on, the EOS id ends the loop; it is
  kept in the token ids but not in the text); stop sequences, matched on the decoded
  text after each token: the output is cut before the earliest match and the loop ends
  (the token ids keep every token generated, including the one that completed it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bytereplay.errors import BytereplayError, UsageError
from bytereplay.request import check_decode

if TYPE_CHECKING:
    import torch

class RequestError(UsageError, ValueError):
    """A request the engine refuses (bad decode policy, input, template, ...)."""

    problem = "invalid-request"
    title = "Invalid inference request"


class InferenceError(BytereplayError):
    """The model produced something the loop cannot use (NaN logits, ...)."""

    status = 500
    problem = "inference"
    title = "Inference failed"


@dataclass(frozen=True)
class DecodePolicy:
    """How tokens are chosen and when the loop stops. temperature 0 => greedy."""

    max_new_tokens: int = 32
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    eos: bool = True

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def validate_policy(policy: object) -> DecodePolicy:
    """Check every field (`bytereplay.request.check_decode`, the one rule set); returns
    the policy with `stop` as a tuple."""
    if not isinstance(policy, DecodePolicy):
        raise RequestError("decode policy must be a DecodePolicy")
    fields = {"max_new_tokens": policy.max_new_tokens, "temperature": policy.temperature,
              "top_k": policy.top_k, "top_p": policy.top_p, "seed": policy.seed,
              "stop": policy.stop, "eos": policy.eos}
    try:
        check_decode(fields)
    except UsageError as exc:
        raise RequestError(exc.detail) from None
    if isinstance(policy.stop, list):
        return DecodePolicy(policy.max_new_tokens, policy.temperature, policy.top_k,
                            policy.top_p, policy.seed, tuple(policy.stop), policy.eos)
    return policy


def make_generator(seed: int) -> torch.Generator:
    import torch

    gen = torch.Generator(device="cpu")
    gen.manual_seed(seed)
    return gen


def _check_finite(x: torch.Tensor) -> None:
    import torch

    if bool(torch.isnan(x).any()) or not bool(torch.isfinite(x.max())):
        raise InferenceError("the model produced NaN or infinite logits")


@dataclass(frozen=True)
class Choice:
    """One token choice and how firmly it was made.

    `margin`: how far the choice was from going another way. Greedy (`unit` "logit"):
    the chosen logit minus the runner-up's (0 on a tie). Sampling (`unit` "mass"): the
    distance, as a fraction of the kept mass, from the draw to the nearest movable edge
    of the chosen token's cumulative interval (inf when one token is kept).
    `gap` (only when `recorded` was given): how far `recorded` was from being chosen, 0
    when it was; in `gap_unit` ("logit": raw logits; "mass": as `margin`).
    """

    token: int
    margin: float
    unit: str
    gap: float | None = None
    gap_unit: str | None = None


def sample_choice(
    logits: torch.Tensor,
    policy: DecodePolicy,
    generator: torch.Generator | None,
    recorded: int | None = None,
) -> Choice:
    """THE token choice, shared by the engine's token loop and the verifier's teacher-forced
    replay (so the two cannot drift): greedy when `policy.greedy` (`generator` unused),
    else one seeded draw from `generator` (exactly one per call, so a sequence of calls
    consumes the generator in token order). See the module docstring for the rules."""
    import torch

    x = logits.detach().to("cpu", torch.float64)
    _check_finite(x)
    if policy.greedy:
        tok = int(torch.argmax(x))  # the first maximum: ties go to the lowest id
        if x.numel() > 1:
            top2 = torch.topk(x, 2).values
            margin = float(top2[0] - top2[1])
        else:
            margin = math.inf
        gap = None if recorded is None else float(x[tok] - x[recorded])
        return Choice(tok, margin, "logit", gap, None if recorded is None else "logit")
    if generator is None:
        raise UsageError("sampling needs a generator")
    temperature = float(policy.temperature)
    x = x / temperature
    vals, idx = torch.sort(x, descending=True, stable=True)
    kept_k = vals.numel()
    if 0 < policy.top_k < vals.numel():
        kept_k = policy.top_k
    vals_k, idx_k = vals[:kept_k], idx[:kept_k]
    weights = torch.exp(vals_k - vals_k[0])
    cum_k = torch.cumsum(weights, dim=0)
    cum, kept_idx = cum_k, idx_k
    threshold = None
    if policy.top_p < 1.0:
        threshold = torch.tensor(float(policy.top_p), dtype=torch.float64) * cum_k[-1]
        keep = int(torch.searchsorted(cum_k, threshold, right=False)) + 1
        keep = min(keep, cum_k.numel())
        cum, kept_idx = cum_k[:keep], idx_k[:keep]
    u = torch.rand((), generator=generator, dtype=torch.float64)
    total = float(cum[-1])
    draw = float(u * cum[-1])
    j = int(torch.searchsorted(cum, u * cum[-1], right=True))
    j = min(j, cum.numel() - 1)
    tok = int(kept_idx[j])
    # The first interval's lower edge (0) and the last one's upper edge (the total) are
    # fixed: no rounding moves them, so they do not count towards the margin.
    edges = []
    if j > 0:
        edges.append(draw - float(cum[j - 1]))
    if j < cum.numel() - 1:
        edges.append(float(cum[j]) - draw)
    margin = min(edges) / total if edges else math.inf
    if recorded is None:
        return Choice(tok, margin, "mass")
    if recorded == tok:
        return Choice(tok, margin, "mass", 0.0, "mass")
    where = (kept_idx == recorded).nonzero()
    if where.numel():
        r = int(where[0])
        lo = float(cum[r - 1]) if r > 0 else 0.0
        hi = float(cum[r])
        gap = (lo - draw) / total if draw < lo else (draw - hi) / total
        return Choice(tok, margin, "mass", max(gap, 0.0), "mass")
    rank = int((idx == recorded).nonzero()[0])
    if rank >= kept_k:  # cut by top-k: how far its logit is below the k-th
        return Choice(tok, margin, "mass", float(vals[kept_k - 1] - vals[rank]) * temperature,
                      "logit")
    # Cut by top-p: how far the threshold would have to move to keep it.
    assert threshold is not None
    gap = (float(cum_k[rank - 1]) - float(threshold)) / float(cum_k[-1])
    return Choice(tok, margin, "mass", max(gap, 0.0), "mass")


def greedy_token(logits: torch.Tensor) -> int:
    """Index of the largest logit, the lowest index on ties."""
    return sample_choice(logits, DecodePolicy(), None).token


def sample_token(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
) -> int:
    """One draw from the tempered, top-k and top-p truncated distribution."""
    policy = DecodePolicy(temperature=temperature, top_k=top_k, top_p=top_p)
    return sample_choice(logits, policy, generator).token


class TokenChooser:
    """Greedy or seeded sampling, per request (owns the request's generator)."""

    def __init__(self, policy: DecodePolicy) -> None:
        self.policy = policy
        self.generator = None if policy.greedy else make_generator(policy.seed)

    def choice(self, logits: torch.Tensor, recorded: int | None = None) -> Choice:
        return sample_choice(logits, self.policy, self.generator, recorded)

    def __call__(self, logits: torch.Tensor) -> int:
        return self.choice(logits).token


def find_stop(text: str, stops: Sequence[str]) -> int | None:
    """Index of the earliest occurrence of any stop sequence in `text`, or None."""
    best: int | None = None
    for s in stops:
        i = text.find(s)
        if i >= 0 and (best is None or i < best):
            best = i
    return best


@dataclass(frozen=True)
class DecodeOutput:
    token_ids: tuple[int, ...]
    text: str
    finish_reason: str  # "length", "eos" or "stop"


def decode_loop(
    first_logits: torch.Tensor,
    step: Callable[[int], torch.Tensor],
    policy: DecodePolicy,
    *,
    eos_ids: frozenset[int],
    detokenize: Callable[[Sequence[int]], str],
    choose: Callable[[torch.Tensor], int] | None = None,
) -> DecodeOutput:
    """Run the token loop.

    `first_logits` are the next-token logits after the prompt; `step(token)` feeds one
    token and returns the next logits; `detokenize(ids)` turns ids into text (special
    tokens dropped). `choose(logits)` picks each token (default: a fresh `TokenChooser`
    of `policy`); the teacher-forced replay passes one that checks the engine's choice
    against the recorded token and returns the recorded one, so that the stop rules and
    the text below are the engine's own, applied to the recorded tokens.
    """
    choose = choose or TokenChooser(policy)
    ids: list[int] = []
    logits = first_logits
    reason = "length"
    cut: int | None = None
    text: str | None = None
    for i in range(policy.max_new_tokens):
        tok = choose(logits)
        ids.append(tok)
        if policy.eos and tok in eos_ids:
            reason = "eos"
            break
        if policy.stop:
            text = detokenize(ids)
            cut = find_stop(text, policy.stop)
            if cut is not None:
                reason = "stop"
                break
        if i + 1 < policy.max_new_tokens:
            logits = step(tok)
    if reason == "stop":
        assert text is not None and cut is not None
        out = text[:cut]
    else:
        body = ids[:-1] if reason == "eos" else ids
        out = text if (text is not None and reason == "length") else detokenize(body)
    return DecodeOutput(tuple(ids), out, reason)
