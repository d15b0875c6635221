"""The appraisal policy: check facts -> AR4SI trustworthiness vector, decided in Rego.

The policy file (default `policies/appraisal.rego`; operators configure their own) is
compiled once into a regopy bundle; each appraisal sets the facts as `input` and reads
`data.bytereplay.appraisal.result` = `{"vector": {claim: value}, "reasons": [text],
"devices"?: {device name: {claim: value}}}` (`devices`: one vector per device of
composite evidence, for the EAR's per-device submods).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytereplay.ar4si import CLAIMS
from bytereplay.errors import PolicyError, UsageError
from bytereplay.rego import RegoModule

PACKAGE = "bytereplay.appraisal"
RULE = f"data.{PACKAGE}.result"
MAX_POLICY_BYTES = 1 << 20
CACHE_SIZE = 4096


@dataclass(frozen=True)
class PolicyResult:
    vector: dict[str, int]
    reasons: tuple[str, ...]
    devices: dict[str, dict[str, int]] = field(default_factory=dict)


class AppraisalPolicy:
    """A compiled appraisal policy (`bytereplay.rego.RegoModule`). Thread-safe
    (evaluations are serialised: ~0.1 ms each)."""

    def __init__(self, path: Path, *, cache: bool = True) -> None:
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
        try:
            self._module = RegoModule(self.path.name, source, RULE, parse_result,
                                      memo_size=CACHE_SIZE, memoise=cache)
        except PolicyError as exc:
            raise UsageError(f"appraisal policy {path} does not compile: {exc.detail}") from None
        self.cached = self._module.memoised

    @property
    def evaluations(self) -> int:
        return self._module.evaluations

    def evaluate(self, facts: dict[str, Any]) -> PolicyResult:
        try:
            return self._module.evaluate(facts)
        except PolicyError as exc:
            if exc.detail.startswith("appraisal policy"):
                raise
            raise PolicyError(f"appraisal policy failed: {exc.detail}") from None


def parse_result(value: Any) -> PolicyResult:
    """The vector and reasons the policy's `result` holds, checked."""
    if value is None:
        raise PolicyError("appraisal policy gave no result")
    if not isinstance(value, dict) or not isinstance(value.get("vector"), dict):
        raise PolicyError("appraisal policy result lacks a 'vector' object")
    vector = _vector(value["vector"])
    reasons = value.get("reasons", [])
    if not isinstance(reasons, list) or not all(isinstance(r, str) for r in reasons):
        raise PolicyError("appraisal policy 'reasons' must be a list of text")
    devices = value.get("devices", {})
    if not isinstance(devices, dict) or not all(isinstance(d, dict) for d in devices.values()):
        raise PolicyError("appraisal policy 'devices' must map device names to vectors")
    return PolicyResult(vector, tuple(reasons),
                        {str(name): _vector(d) for name, d in devices.items()})


def _vector(value: dict[str, Any]) -> dict[str, int]:
    vector: dict[str, int] = {}
    for claim, v in value.items():
        if claim not in CLAIMS:
            raise PolicyError(f"appraisal policy names an unknown claim {claim!r}")
        if isinstance(v, bool) or not isinstance(v, int) or not -128 <= v <= 127:
            raise PolicyError(f"appraisal policy value for {claim!r} is not in -128..127")
        vector[claim] = v
    return vector
