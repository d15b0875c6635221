"""AR4SI trustworthiness claims, tiers and values (draft-ietf-rats-ar4si), in one place."""

from __future__ import annotations

from collections.abc import Mapping

# Claim names as EAR serialises them.
CLAIMS: tuple[str, ...] = (
    "instance-identity",
    "configuration",
    "executables",
    "file-system",
    "hardware",
    "runtime-opaque",
    "storage-opaque",
    "sourced-data",
)

NONE, AFFIRMING, WARNING, CONTRAINDICATED = "none", "affirming", "warning", "contraindicated"
TIER_ORDER: tuple[str, ...] = (NONE, AFFIRMING, WARNING, CONTRAINDICATED)
# Status ordering from best to worst; "none" means no claim was made.
STATUS_RANK = {AFFIRMING: 0, NONE: 1, WARNING: 2, CONTRAINDICATED: 3}

# Values used by bytereplay (AR4SI section 2.3 meanings).
NO_CLAIM = 0
VERIFIER_MALFUNCTION = 1
AFFIRMING_VALUE = 2
APPROVED_BOOT = 3
UNRECOGNISED = 32  # warning: not recognised / not safe enough to affirm
UNSAFE = 33
CONTRAINDICATED_VALUE = 96
UNRECOGNISED_INSTANCE = 97
CRYPTO_VALIDATION_FAILED = 99


def tier(value: int) -> str:
    """The tier of a trustworthiness value: none -1..1, affirming 2..31, warning 32..95,
    contraindicated 96..127 (negative values mirror their positive tier)."""
    v = abs(int(value))
    if v <= 1:
        return NONE
    if v <= 31:
        return AFFIRMING
    if v <= 95:
        return WARNING
    return CONTRAINDICATED


def status_of(vector: Mapping[str, int]) -> str:
    """The status of a trustworthiness vector: never better than its worst claim.

    An empty vector or one with no claims made is `none`... but a verifier that makes
    no claim affirms nothing, so it never reads as affirming.
    """
    tiers = [tier(v) for v in vector.values()]
    if not tiers or all(t == NONE for t in tiers):
        return NONE
    if CONTRAINDICATED in tiers:
        return CONTRAINDICATED
    if WARNING in tiers:
        return WARNING
    return AFFIRMING


def worse(a: str, b: str) -> str:
    return a if STATUS_RANK[a] >= STATUS_RANK[b] else b
