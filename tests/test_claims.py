"""The claim sentence shrinks with each weaker fact, and never loses the boundary."""

from __future__ import annotations

from bytereplay.checklist import ITEM_BY_FIELD
from bytereplay.claims import BASE_CLAIM, INCONCLUSIVE, MATCH, NOT_RUN, build_claim


def test_full_claim_for_a_complete_match() -> None:
    claim = build_claim(MATCH)
    assert claim.startswith(BASE_CLAIM)
    assert "Limits" not in claim and "simulated" not in claim
    assert claim.endswith("says nothing about whether the output is true, safe or fit for use.")


def test_each_weakness_adds_its_sentence() -> None:
    claim = build_claim(INCONCLUSIVE, missing=["gpu.sku"], diff_fields=["dtype"],
                        simulated_tee=True)
    assert "different environment (dtype)" in claim
    assert ITEM_BY_FIELD["gpu.sku"].shrink in claim
    assert "The TEE is simulated" in claim


def test_unknown_completeness_is_said() -> None:
    assert "no preflight report" in build_claim(NOT_RUN, preflight_known=False)
    assert "no preflight report" not in build_claim(NOT_RUN)
