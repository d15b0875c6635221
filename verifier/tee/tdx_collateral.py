"""The verifier's TDX collateral: the shared `bytereplay.tdx_collateral` (shape, times,
folder / file / PCS-PCCS sources with the disk cache), each parse completed by dcap-qvl's
own (`QuoteCollateralV3`), and the memoising sources behind `SchemeTrust.collateral`.

`parse_collateral` remembers its last `PARSED_MAX` results by their input (the nine
field texts of a JSON object, or the text given): collateral an attester carries in
every quote object is then parsed once, not on every appraisal. The result is a pure
function of those texts (other members are ignored), and refusals are not kept.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dcap_qvl

from bytereplay import tdx_collateral as shared
from bytereplay.errors import QuoteError
from bytereplay.tdx_collateral import (
    FIELDS,
    INTEL_PCS_HOST,
    INTEL_ROOT_CA_CRL_URL,
    MAX_COLLATERAL,
    CollateralSource,
    TdxCollateral,
    rfc3339,
)

PARSED_MAX = 64
_PARSED: dict[Any, TdxCollateral] = {}
MEMO_ENABLED = True  # the benchmark switches it off to measure what it earns


def _memo_key(value: Any) -> Any:
    if isinstance(value, str | bytes):
        return value
    if isinstance(value, Mapping):
        fields = tuple(value.get(name) for name in FIELDS)
        if all(isinstance(f, str) for f in fields):
            return fields
    return None


def parse_collateral(value: Any) -> TdxCollateral:
    """Read collateral (JSON object, text or bytes) with dcap-qvl's object in `qvl`;
    `QuoteError` if malformed or refused by dcap-qvl."""
    if isinstance(value, TdxCollateral) and value.qvl is not None:
        return value
    key = _memo_key(value) if MEMO_ENABLED else None
    if key is not None:
        found = _PARSED.get(key)
        if found is not None:
            return found
    parsed = _parse(value)
    if key is not None:
        if len(_PARSED) >= PARSED_MAX:
            _PARSED.clear()
        _PARSED[key] = parsed
    return parsed


def _parse(value: Any) -> TdxCollateral:
    collateral = shared.parse_collateral(value)
    try:
        qvl = dcap_qvl.QuoteCollateralV3.from_json(collateral.text)
    except Exception as exc:  # dcap-qvl raises ValueError; anything else is also a refusal
        raise QuoteError(f"tdx collateral refused by dcap-qvl: {str(exc)[:200]}") from None
    return dataclasses.replace(collateral, qvl=qvl)


_SOURCES: dict[tuple[str, str], CollateralSource] = {}
_SOURCES_LOCK = threading.Lock()


def source_for(spec: str, cache_dir: Path | None) -> CollateralSource:
    """The (shared, memoising) source for a `SchemeTrust.collateral` value."""
    key = (spec, str(cache_dir))
    with _SOURCES_LOCK:
        found = _SOURCES.get(key)
        if found is None:
            found = _SOURCES[key] = CollateralSource(spec, cache_dir, parse=parse_collateral)
        return found


__all__ = ["FIELDS", "INTEL_PCS_HOST", "INTEL_ROOT_CA_CRL_URL", "MAX_COLLATERAL", "PARSED_MAX",
           "CollateralSource", "TdxCollateral", "parse_collateral", "rfc3339", "source_for"]
