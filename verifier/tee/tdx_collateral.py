"""The verifier's TDX collateral: the shared `bytereplay.tdx_collateral` (shape, times,
folder / file / PCS-PCCS sources with the disk cache), each parse completed by dcap-qvl's
own (`QuoteCollateralV3`), and the memoising sources behind `SchemeTrust.collateral`.
"""

from __future__ import annotations

import dataclasses
import threading
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


def parse_collateral(value: Any) -> TdxCollateral:
    """Read collateral (JSON object, text or bytes) with dcap-qvl's object in `qvl`;
    `QuoteError` if malformed or refused by dcap-qvl."""
    if isinstance(value, TdxCollateral) and value.qvl is not None:
        return value
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


__all__ = ["FIELDS", "INTEL_PCS_HOST", "INTEL_ROOT_CA_CRL_URL", "MAX_COLLATERAL",
           "CollateralSource", "TdxCollateral", "parse_collateral", "rfc3339", "source_for"]
