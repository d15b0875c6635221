"""`preflight(record) -> PreflightReport`: which checklist items hold and how the claim shrinks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bytereplay.checklist import ITEMS, POLICY_ITEM, Group, Item
from bytereplay.record import SCHEMA, RunRecord

HOLDS, MISSING, DEFERRED = "holds", "missing", "deferred"


@dataclass(frozen=True)
class ItemResult:
    item: Item
    status: str  # holds | missing | deferred

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "field": self.item.field, "label": self.item.label, "status": self.status
        }
        if self.status != HOLDS:
            out["shrink"] = self.item.shrink
        return out


# Results are immutable: each item's two possible results are made once, shared by
# every report.
_FIELDS = tuple(item.field for item in ITEMS)
_OUTCOMES = tuple((ItemResult(item, HOLDS), ItemResult(item, MISSING)) for item in ITEMS)
_POLICY_OUTCOMES = (ItemResult(POLICY_ITEM, HOLDS), ItemResult(POLICY_ITEM, DEFERRED))
_GROUP_SIZES = {g.value: sum(1 for i in (*ITEMS, POLICY_ITEM) if i.group == g) for g in Group}


@dataclass(frozen=True)
class PreflightReport:
    results: tuple[ItemResult, ...]

    @property
    def missing(self) -> list[str]:
        return [r.item.field for r in self.results if r.status == MISSING]

    @property
    def complete(self) -> bool:
        return not self.missing

    def group(self, group: Group) -> list[ItemResult]:
        return [r for r in self.results if r.item.group == group]

    def shrinks(self) -> list[str]:
        return [r.item.shrink for r in self.results if r.status == MISSING]

    def to_dict(self) -> dict[str, Any]:
        """The whole report: every item with its label, and the shrink of each one missing."""
        return {
            "complete": self.complete,
            "missing": self.missing,
            "groups": {g.value: [r.to_dict() for r in self.group(g)] for g in Group},
        }

    def summary(self) -> dict[str, Any]:
        """The report as an attestation result carries it: per group how many items hold
        and which are missing or deferred, against the named checklist. Labels and
        shrink sentences are left to the checklist itself (`bytereplay preflight`) and to
        the claim sentence, which already says how the claim shrinks."""
        groups: dict[str, dict[str, Any]] = {
            g: {HOLDS: size, MISSING: [], DEFERRED: []} for g, size in _GROUP_SIZES.items()}
        missing: list[str] = []
        for r in [r for r in self.results if r.status != HOLDS]:
            entry = groups[r.item.group]
            entry[HOLDS] -= 1
            entry[r.status].append(r.item.field)
            if r.status == MISSING:
                missing.append(r.item.field)
        return {"checklist": SCHEMA, "complete": not missing, "missing": missing,
                "groups": groups}

    def render(self) -> str:
        """The checklist as text: `[x]` holds, `[ ]` missing, `[-]` deferred."""
        marks = {HOLDS: "[x]", MISSING: "[ ]", DEFERRED: "[-]"}
        lines: list[str] = []
        for g in Group:
            lines.append(f"{g.value}:")
            for r in self.group(g):
                line = f"  {marks[r.status]} {r.item.label} ({r.item.field})"
                if r.status == MISSING:
                    line += f" -- claim shrinks: {r.item.shrink}"
                elif r.status == DEFERRED:
                    line += " -- named by the relying party at appraisal"
                lines.append(line)
        n = len(self.missing)
        lines.append("complete: every item holds" if n == 0 else f"missing: {n} item(s)")
        return "\n".join(lines)


def preflight(record: RunRecord, policy: str | None = None) -> PreflightReport:
    """Check the record against the checklist. A pure function of its inputs."""
    results = [holds if ok else missing
               for (holds, missing), ok in zip(_OUTCOMES, record.present(_FIELDS), strict=True)]
    results.append(_POLICY_OUTCOMES[0 if policy else 1])
    return PreflightReport(tuple(results))
