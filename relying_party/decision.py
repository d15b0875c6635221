"""The relying party's decision: allow or deny, why, and the claim the evidence supports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bytereplay.ear import Ear


@dataclass(frozen=True)
class AppCheckResult:
    """One application check: `(ear, output) -> (name, ok, detail)`; a failing one denies."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True)
class PolicyRef:
    """Which policy decided: its name (or path) and the SHA-256 of its text."""

    name: str
    digest: str  # "sha-256:<hex>" of the policy file's bytes
    path: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "digest": self.digest, "path": self.path}


@dataclass(frozen=True)
class Decision:
    """What `relying_party.evaluate` returns.

    `reasons` are the deny reasons produced by the same Rego rules that decide:
    `allow` is true exactly when there are none. `notes` are the policy's remarks that
    do not decide (a simulated TEE accepted, a warning claim in the vector, ...).
    `claim` is the sentence the evidence supports for these output bytes, whatever the
    decision; `not_covered` lists what byte agreement never says.
    """

    allow: bool
    status: str | None  # the EAR status (AR4SI tier); None when the EAR could not be read
    verdict: str | None  # the replay verdict; None when absent or unreadable
    claim: str
    reasons: tuple[str, ...]
    notes: tuple[str, ...]
    not_covered: tuple[str, ...]
    app_checks: tuple[AppCheckResult, ...]
    policy: PolicyRef
    checks: Mapping[str, Mapping[str, Any]]  # the facts checked in Python, as given to the policy
    output_hash: str | None = None  # the attested output hash
    record_digest: str | None = None
    complete: bool | None = None  # the run record held every checklist item (EAR preflight)
    ear: Ear | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "allow": self.allow,
            "status": self.status,
            "verdict": self.verdict,
            "claim": self.claim,
            "reasons": list(self.reasons),
            "notes": list(self.notes),
            "not_covered": list(self.not_covered),
            "app_checks": [c.to_dict() for c in self.app_checks],
            "policy": self.policy.to_dict(),
            "checks": {k: dict(v) for k, v in self.checks.items()},
            "output_hash": self.output_hash,
            "record_digest": self.record_digest,
            "complete": self.complete,
        }

    def render(self) -> str:
        """The decision as text for people."""
        lines = [
            f"decision: {'ALLOW' if self.allow else 'DENY'}",
            f"policy: {self.policy.name} ({self.policy.digest})",
            f"status: {self.status or '-'}",
            f"verdict: {self.verdict or '-'}",
            f"record complete: {'-' if self.complete is None else 'yes' if self.complete else 'no'}",
            f"claim: {self.claim}",
        ]
        if self.reasons:
            lines.append("reasons:")
            lines.extend(f"  - {r}" for r in self.reasons)
        if self.notes:
            lines.append("notes:")
            lines.extend(f"  - {n}" for n in self.notes)
        lines.append("checks:")
        for name, fact in self.checks.items():
            if name == "app":
                continue
            mark = "ok" if fact.get("ok") else "FAILED"
            lines.append(f"  {name}: {mark} ({fact.get('detail', '')})")
        for c in self.app_checks:
            lines.append(f"  app check {c.name}: {'ok' if c.ok else 'FAILED'} ({c.detail})")
        lines.append("not covered (byte agreement never says):")
        lines.extend(f"  - {n}" for n in self.not_covered)
        return "\n".join(lines)
