"""Intel Trust Authority (ITA) TDX attestation tokens, mapped onto local TDX verification.

An ITA token is a JWT signed with a key from ITA's JWKS. Its TDX claims are either at the
top level (older tokens) or in a `tdx` object (newer ones); both are read:
`attester_tcb_status`, `tdx_mrtd`, `tdx_rtmr0`..`tdx_rtmr3`, `tdx_report_data`,
`tdx_is_debuggable`, `attester_advisory_ids`; at the top level `policy_ids_unmatched`.

`verify_token(token, service, keys, allowed_tcb, expected_report_data, now)` accepts one
only when:

1. it verifies against the service's JWKS (pinned algorithms, issuer, audience when
   configured, `exp` and `iss` required, times checked at `now`);
2. `policy_ids_unmatched` is absent, null or empty: ITA evaluated the operator's policies
   and one did not match;
3. `attester_tcb_status` is in `allowed_tcb` (the same allow-list as local TDX, default
   `UpToDate` only);
4. the TD is not debuggable;
5. when `expected_report_data` is given, `tdx_report_data` (hex) is exactly it.

The claims map onto what local TDX verification gives: `tcb_status`, `advisories`,
`debug`, `report_data` and `measurements` named as the `tdx` scheme names them
(`tdx.mrtd`, `tdx.rtmr0`..`tdx.rtmr3`).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bytereplay.errors import SignatureError
from bytereplay.jwks import KeySet
from verifier.config import ExternalService
from verifier.tee.base import DEFAULT_ALLOWED_TCB

REGISTERS = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3")


@dataclass(frozen=True)
class ItaResult:
    claims: dict[str, Any]  # the token's claims, verified
    tdx: dict[str, Any]  # mapped as local TDX verification names them


def _hex(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise SignatureError(f"ITA token: {name} is missing or not text")
    try:
        bytes.fromhex(value)
    except ValueError:
        raise SignatureError(f"ITA token: {name} is not hex") from None
    return value.lower()


def tdx_claims(claims: Mapping[str, Any]) -> dict[str, Any]:
    """The token's TDX claims mapped as local verification names them (unchecked)."""
    nested = claims.get("tdx")
    tdx: Mapping[str, Any] = nested if isinstance(nested, dict) else claims
    status = tdx.get("attester_tcb_status", claims.get("attester_tcb_status"))
    if not isinstance(status, str):
        raise SignatureError("ITA token: attester_tcb_status is missing or not text")
    advisories = tdx.get("attester_advisory_ids", claims.get("attester_advisory_ids")) or []
    if not isinstance(advisories, list) or not all(isinstance(a, str) for a in advisories):
        raise SignatureError("ITA token: attester_advisory_ids is not a list of ids")
    debug = tdx.get("tdx_is_debuggable", False)
    if not isinstance(debug, bool):
        raise SignatureError("ITA token: tdx_is_debuggable is not a boolean")
    report_data = tdx.get("tdx_report_data")
    return {"tcb_status": status, "advisories": list(advisories), "debug": debug,
            "report_data": _hex(report_data, "tdx_report_data") if report_data is not None
            else None,
            "measurements": {f"tdx.{r}": _hex(tdx.get(f"tdx_{r}"), f"tdx_{r}")
                             for r in REGISTERS}}


def verify_token(token: str, service: ExternalService, keys: KeySet, *,
                 allowed_tcb: tuple[str, ...] = DEFAULT_ALLOWED_TCB,
                 expected_report_data: bytes | None = None,
                 now: float | None = None) -> ItaResult:
    """Checks 1 to 5 of the module doc; `SignatureError` naming the first that fails."""
    claims = keys.verify(token, algorithms=service.algorithms, issuer=service.issuer,
                         audience=service.audience, leeway=service.leeway_s,
                         require=("exp", "iss"), now=now)
    unmatched = claims.get("policy_ids_unmatched")
    if unmatched not in (None, []):
        raise SignatureError("ITA token: policy_ids_unmatched is not empty: an appraisal "
                             "policy did not match")
    tdx = tdx_claims(claims)
    if tdx["tcb_status"] not in allowed_tcb:
        raise SignatureError(f"ITA token: TCB status {tdx['tcb_status']!r} is not allowed "
                             f"(allowed: {', '.join(allowed_tcb)})")
    if tdx["debug"]:
        raise SignatureError("ITA token: the TD is debuggable")
    if expected_report_data is not None:
        got = tdx["report_data"]
        if got is None or not hmac.compare_digest(bytes.fromhex(got), expected_report_data):
            raise SignatureError("ITA token: tdx_report_data is not the expected report data")
    return ItaResult(claims=claims, tdx=tdx)
