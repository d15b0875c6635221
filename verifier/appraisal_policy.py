"""The appraisal policy: check facts -> AR4SI trustworthiness vector, decided in Rego.

The policy file (default `policies/appraisal.rego`; operators configure their own) is
compiled once into a regopy bundle; each appraisal sets the facts as `input` and reads
`data.bytereplay.appraisal.result` = `{"vector": {claim: value}, "reasons": [text]}`.
Its identity in the EAR is `policy:bytereplay/appraisal@sha-256:<hex of the file>`.

Evaluating the bundle costs about 0.7 ms, more than the rest of an appraisal without
replay, so results are memoised by the canonical JSON of the facts (an LRU of
`CACHE_SIZE`). The facts hold no per-appraisal values (no nonces, digests or times),
so a steady stream of appraisals hits the cache. This needs the policy to be a pure
function of its input: a policy that calls a non-deterministic builtin (`time.now_ns`,
`http.send`, ...: `bytereplay.rego.is_pure`) is evaluated every time, and the
`policy_cache` setting turns the cache off for any other reason.

A policy that fails to compile refuses to start the verifier; one that fails to
evaluate, or answers something malformed, yields a `PolicyError` that the pipeline
turns into a verifier-malfunction result (every claim 1: no claim can be made).
"""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytereplay.ar4si import CLAIMS
from bytereplay.errors import PolicyError, UsageError
from bytereplay.rego import InputMemo, is_pure, load_regopy

PACKAGE = "bytereplay.appraisal"
QUERY = f"x = data.{PACKAGE}.result"
MAX_POLICY_BYTES = 1 << 20
CACHE_SIZE = 4096


@dataclass(frozen=True)
class PolicyResult:
    vector: dict[str, int]
    reasons: tuple[str, ...]


class AppraisalPolicy:
    """A compiled appraisal policy. Thread-safe (evaluations are serialised: ~0.1 ms each)."""

    def __init__(self, path: Path, *, cache: bool = True) -> None:
        regopy = load_regopy()

        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise UsageError(f"cannot read appraisal policy {path}: {exc.strerror}") from None
        if len(data) > MAX_POLICY_BYTES:
            raise UsageError(f"appraisal policy {path} is larger than {MAX_POLICY_BYTES} bytes")
        try:
            source = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"appraisal policy {path} is not UTF-8 text") from None
        if f"package {PACKAGE}" not in source:
            raise UsageError(f"appraisal policy {path} must declare 'package {PACKAGE}'")
        self.path = Path(path)
        self.sha256 = hashlib.sha256(data).hexdigest()
        self.policy_id = f"policy:bytereplay/appraisal@sha-256:{self.sha256}"
        self._lock = threading.Lock()
        try:
            compiler = regopy.Interpreter()
            compiler.add_module(self.path.name, source)
            self._bundle = compiler.build(QUERY)
        except Exception as exc:  # regopy raises its own error types
            raise UsageError(f"appraisal policy {path} does not compile: {exc}") from None
        if not self._bundle.ok():
            raise UsageError(f"appraisal policy {path} does not compile")
        self._interp = regopy.Interpreter()
        self._input = regopy.Input
        self.cached = cache and is_pure(source)
        self._memo: InputMemo[PolicyResult] = InputMemo(CACHE_SIZE)
        self.evaluations = 0

    def evaluate(self, facts: dict[str, Any]) -> PolicyResult:
        if not self.cached:
            return self._evaluate(facts)
        return self._memo.get_or_compute(facts, lambda: self._evaluate(facts))

    def _evaluate(self, facts: dict[str, Any]) -> PolicyResult:
        try:
            with self._lock:
                self.evaluations += 1
                self._interp.set_input(self._input(facts))
                output = self._interp.query_bundle(self._bundle)
                text = str(output) if output.ok() else None
        except Exception as exc:
            raise PolicyError(f"appraisal policy failed: {exc}") from None
        if text is None:
            raise PolicyError("appraisal policy failed to evaluate")
        return parse_output(text)


def parse_output(text: str) -> PolicyResult:
    try:
        out = json.loads(text)
        value = out["bindings"]["x"]
    except (ValueError, KeyError, TypeError):
        raise PolicyError(f"appraisal policy gave no result: {text[:200]}") from None
    if not isinstance(value, dict) or not isinstance(value.get("vector"), dict):
        raise PolicyError("appraisal policy result lacks a 'vector' object")
    vector: dict[str, int] = {}
    for claim, v in value["vector"].items():
        if claim not in CLAIMS:
            raise PolicyError(f"appraisal policy names an unknown claim {claim!r}")
        if isinstance(v, bool) or not isinstance(v, int) or not -128 <= v <= 127:
            raise PolicyError(f"appraisal policy value for {claim!r} is not in -128..127")
        vector[claim] = v
    reasons = value.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise PolicyError("appraisal policy 'reasons' must be a list of text")
    return PolicyResult(vector, tuple(reasons))
