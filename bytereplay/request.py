"""What an inference request may hold: its template and its decode policy. One home for
these rules: the attester's HTTP body parser, its engine and the run record's schema all
check against them.

- template: text of at most `MAX_TEMPLATE_CHARS` characters holding `INPUT_MARK` where
  the input goes (default `DEFAULT_TEMPLATE`);
- decode policy (`DECODE_KEYS`): `max_new_tokens` 1..`MAX_NEW_TOKENS` (a service may
  allow fewer), `temperature` 0..`MAX_TEMPERATURE` (0 = greedy), `top_k`
  0..`MAX_TOP_K` (0 = off), `top_p` in (0, 1], `seed` 0..`MAX_SEED` (the record is JSON:
  integers stay exact up to 2**53), `stop` at most `MAX_STOP_SEQUENCES` texts of
  1..`MAX_STOP_CHARS` characters, `eos` true or false.

`check_decode` checks a complete policy and raises `UsageError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from bytereplay.encoding import is_int
from bytereplay.errors import UsageError

DEFAULT_TEMPLATE = "{input}"
INPUT_MARK = "{input}"
MAX_TEMPLATE_CHARS = 1 << 16

DECODE_KEYS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop", "eos")
DEFAULT_MAX_NEW_TOKENS = 32
MAX_NEW_TOKENS = 4096
MAX_TEMPERATURE = 100.0
MAX_TOP_K = 1 << 20
MAX_SEED = (1 << 53) - 1
MAX_STOP_SEQUENCES = 16
MAX_STOP_CHARS = 256


def is_number(value: Any) -> bool:
    """A finite JSON number (`true` is not one)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and \
        math.isfinite(value)


def temperature_ok(value: float) -> bool:
    return 0.0 <= value <= MAX_TEMPERATURE


def top_p_ok(value: float) -> bool:
    return 0.0 < value <= 1.0


def _int(name: str, value: Any, lo: int, hi: int) -> int:
    if not is_int(value) or not lo <= value <= hi:
        raise UsageError(f"{name}: expected an integer in {lo}..{hi}")
    return int(value)


def check_decode(policy: Mapping[str, Any], *, prefix: str = "",
                 max_new_tokens: int = MAX_NEW_TOKENS) -> dict[str, Any]:
    """Every `DECODE_KEYS` member of `policy`, checked; `stop` as a list, the numbers
    `temperature` and `top_p` as floats. Field names in errors carry `prefix`."""
    out: dict[str, Any] = {
        "max_new_tokens": _int(f"{prefix}max_new_tokens", policy.get("max_new_tokens"),
                               1, max_new_tokens),
    }
    temperature: Any = policy.get("temperature")
    if not is_number(temperature) or not temperature_ok(temperature):
        raise UsageError(f"{prefix}temperature: expected a number in 0..{MAX_TEMPERATURE:g} "
                         "(0 = greedy)")
    out["temperature"] = float(temperature)
    out["top_k"] = _int(f"{prefix}top_k", policy.get("top_k"), 0, MAX_TOP_K)
    top_p: Any = policy.get("top_p")
    if not is_number(top_p) or not top_p_ok(top_p):
        raise UsageError(f"{prefix}top_p: expected a number in (0, 1]")
    out["top_p"] = float(top_p)
    out["seed"] = _int(f"{prefix}seed", policy.get("seed"), 0, MAX_SEED)
    stop = policy.get("stop")
    if isinstance(stop, str) or not isinstance(stop, (list, tuple)) or \
            len(stop) > MAX_STOP_SEQUENCES:
        raise UsageError(f"{prefix}stop: expected a list of at most {MAX_STOP_SEQUENCES} strings")
    for i, s in enumerate(stop):
        if not isinstance(s, str) or not 1 <= len(s) <= MAX_STOP_CHARS:
            raise UsageError(f"{prefix}stop[{i}]: expected a string of 1..{MAX_STOP_CHARS} "
                             "characters")
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{prefix}stop[{i}]: not valid Unicode text (lone surrogate)") from None
    out["stop"] = list(stop)
    eos = policy.get("eos")
    if not isinstance(eos, bool):
        raise UsageError(f"{prefix}eos: expected true or false")
    out["eos"] = eos
    return out
