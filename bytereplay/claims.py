"""The claim sentence the evidence supports, and what it never covers. One place for both."""

from __future__ import annotations

from collections.abc import Iterable

from bytereplay.checklist import ITEM_BY_FIELD

# What byte agreement never says. Every decision lists these.
NOT_COVERED: tuple[str, ...] = (
    "truth or accuracy of the content",
    "safety of the content",
    "fairness or absence of bias",
    "freshness or currency of the content",
    "resistance to prompt injection",
    "legal or regulatory compliance",
    "production readiness or fitness for use",
)

MATCH, MATCH_PORTABLE, MISMATCH, INCONCLUSIVE, NOT_RUN = (
    "match", "match-portable", "mismatch", "inconclusive", "not-run",
)
VERDICTS: tuple[str, ...] = (MATCH, MATCH_PORTABLE, MISMATCH, INCONCLUSIVE, NOT_RUN)

# How a replay verdict was reached (the `method` of `bytereplay.replay`): `full`
# regenerates token by token; `teacher-forced` runs one forward pass over the recorded
# tokens and re-derives each choice. A result without `method` predates teacher forcing:
# its replay was full.
FULL, TEACHER_FORCED = "full", "teacher-forced"
REPLAY_METHODS: tuple[str, ...] = (FULL, TEACHER_FORCED)

BASE_CLAIM = (
    "Under the recorded setup, this model run produced exactly these output bytes"
)

_VERDICT_CLAUSE = {
    MATCH: "and an independent replay in the same determinism-relevant environment "
           "reproduced the same bytes",
    MATCH_PORTABLE: "and an independent replay in a different environment ({diff}) "
                    "reproduced the same bytes anyway",
    MISMATCH: "but an independent replay in the same environment produced different bytes, "
              "which contradicts the evidence",
    INCONCLUSIVE: "but an independent replay in a different environment ({diff}) produced "
                  "different bytes, which neither confirms nor refutes it",
    NOT_RUN: "with no independent replay ({reason}), so reproduction rests on the "
             "attester's word",
}


def build_claim(
    verdict: str,
    *,
    missing: Iterable[str] = (),
    diff_fields: Iterable[str] = (),
    reason: str | None = None,
    simulated_tee: bool = False,
    preflight_known: bool = True,
    method: str | None = None,
) -> str:
    """The sentence the evidence supports: smaller for each missing field or weaker verdict;
    a teacher-forced verdict says that the tokens were re-derived, not regenerated."""
    return _claim(verdict, tuple(missing), tuple(diff_fields), reason, simulated_tee,
                  preflight_known, method)


def _claim(verdict: str, missing: tuple[str, ...], diff_fields: tuple[str, ...],
           reason: str | None, simulated_tee: bool, preflight_known: bool,
           method: str | None = None) -> str:
    diff = ", ".join(diff_fields) or "unspecified fields"
    clause = _VERDICT_CLAUSE[verdict].format(diff=diff, reason=reason or "replay not run")
    if method == TEACHER_FORCED and verdict != NOT_RUN:
        clause = clause.replace(
            "an independent replay",
            "an independent teacher-forced replay (every recorded token re-derived from the "
            "model's logits in one forward pass, not regenerated)")
    parts = [f"{BASE_CLAIM}, {clause}."]
    if simulated_tee:
        parts.append("The TEE is simulated: no hardware protects the run.")
    shrinks = [ITEM_BY_FIELD[f].shrink for f in missing if f in ITEM_BY_FIELD]
    if not preflight_known:
        shrinks.insert(0, "no preflight report says which run-record items hold")
    if shrinks:
        parts.append("Limits: " + "; ".join(shrinks) + ".")
    parts.append("Byte agreement says nothing about whether the output is true, safe or fit for use.")
    return " ".join(parts)
