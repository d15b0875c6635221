"""Decode policies and the token loop.

Every step is explicit, so nothing depends on `model.generate`:

- greedy (temperature 0): the highest logit; ties go to the lowest token id;
- sampling: logits / temperature in float64 on the CPU, sorted (stable, so ties keep
  token-id order), cut to the top k, softmax with one sequential cumulative sum (a
  fixed summation order), cut to the smallest prefix whose mass reaches top_p, then
  one uniform draw u in [0, 1) from a `torch.Generator` seeded with the request's seed
  picks the first token whose cumulative mass exceeds u * total (inverse CDF). One
  draw per sampled token, so the seed fixes the whole sequence;
- stop rules: `max_new_tokens`; EOS (when `eos` is on, the EOS id ends the loop; it is
  kept in the token ids but not in the text); stop sequences, matched on the decoded
  text after each token: the output is cut before the earliest match and the loop ends
  (the token ids keep every token generated, including the one that completed it).
"""

from __future__ import annotations

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


def greedy_token(logits: torch.Tensor) -> int:
    """Index of the largest logit, the lowest index on ties."""
    import torch

    x = logits.detach().to("cpu", torch.float64)
    _check_finite(x)
    return int(torch.argmax(x))


def sample_token(
    logits: torch.Tensor,
    *,
    temperature: float,
    top_k: int,
    top_p: float,
    generator: torch.Generator,
) -> int:
    """One draw from the tempered, top-k and top-p truncated distribution."""
    import torch

    x = logits.detach().to("cpu", torch.float64)
    _check_finite(x)
    x = x / float(temperature)
    vals, idx = torch.sort(x, descending=True, stable=True)
    if 0 < top_k < vals.numel():
        vals, idx = vals[:top_k], idx[:top_k]
    weights = torch.exp(vals - vals[0])
    cum = torch.cumsum(weights, dim=0)
    if top_p < 1.0:
        threshold = torch.tensor(float(top_p), dtype=torch.float64) * cum[-1]
        keep = int(torch.searchsorted(cum, threshold, right=False)) + 1
        keep = min(keep, cum.numel())
        cum, idx = cum[:keep], idx[:keep]
    u = torch.rand((), generator=generator, dtype=torch.float64)
    j = int(torch.searchsorted(cum, u * cum[-1], right=True))
    j = min(j, cum.numel() - 1)
    return int(idx[j])


class TokenChooser:
    """Greedy or seeded sampling, per request (owns the request's generator)."""

    def __init__(self, policy: DecodePolicy) -> None:
        self.policy = policy
        self.generator = None if policy.greedy else make_generator(policy.seed)

    def __call__(self, logits: torch.Tensor) -> int:
        if self.generator is None:
            return greedy_token(logits)
        p = self.policy
        return sample_token(
            logits,
            temperature=p.temperature,
            top_k=p.top_k,
            top_p=p.top_p,
            generator=self.generator,
        )


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
) -> DecodeOutput:
    """Run the token loop.

    `first_logits` are the next-token logits after the prompt; `step(token)` feeds one
    token and returns the next logits; `detokenize(ids)` turns ids into text (special
    tokens dropped).
    """
    choose = TokenChooser(policy)
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
