"""Signed attestation results for a relying app's own tests.

`make_result` builds and signs an EAR the way the verifier does (`build_ear` +
`sign_ear`), with a vector consistent with the verdict and the TEE, so an app can test
its policy and its app checks without running an attester or a verifier:

    key = SigningKey.generate()
    token = make_result(key, output=b"hello", verdict="match")
    decision = evaluate(token, output=b"hello", verifier_keys=jwks_of(key))
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from bytereplay.ar4si import (
    AFFIRMING_VALUE,
    CONTRAINDICATED_VALUE,
    NO_CLAIM,
    UNRECOGNISED,
)
from bytereplay.checklist import ITEMS, POLICY_ITEM
from bytereplay.claims import INCONCLUSIVE, MATCH, MATCH_PORTABLE, MISMATCH, NOT_RUN
from bytereplay.ear import (
    CHECKS,
    EXTENSION_KEY,
    EXTENSION_PREFIX,
    OUTPUT_HASH,
    PREFLIGHT,
    PROFILE,
    PROFILES,
    RECORD_DIGEST,
    REPLAY,
    SUBMOD,
    TEE,
    Submod,
    build_ear,
    sign_ear,
)
from bytereplay.encoding import sha256_tag
from bytereplay.keys import SigningKey
from bytereplay.preflight import DEFERRED, HOLDS, MISSING, ItemResult, PreflightReport

_EXECUTABLES = {
    MATCH: AFFIRMING_VALUE,
    MATCH_PORTABLE: AFFIRMING_VALUE,
    MISMATCH: CONTRAINDICATED_VALUE,
    INCONCLUSIVE: UNRECOGNISED,
    NOT_RUN: NO_CLAIM,
}


def jwks_of(*keys: SigningKey) -> dict[str, Any]:
    """The public JWKS for signing keys."""
    return {"keys": [dict(k.jwk) for k in keys]}


def make_claims(
    *,
    output: bytes | None = b"output bytes",
    output_hash: str | None = None,
    verdict: str | None = MATCH,
    diff: Iterable[tuple[str, Any, Any]] = (),
    reason: str | None = None,
    missing: Iterable[str] = (),
    simulated: bool = True,
    hardware: bool | None = None,
    provider: str | None = None,
    tee: bool = True,
    iat: int | None = None,
    nonce: str | None = None,
    vector: Mapping[str, int] | None = None,
    checks: Mapping[str, str] | None = None,
    profile: str = PROFILE,
    submods: Mapping[str, Mapping[str, int]] | None = None,
    extra: Mapping[str, Any] | None = None,
    method: str | None = None,
    bitwise: bool | None = None,
) -> dict[str, Any]:
    """EAR claims as the verifier builds them. `vector` overrides the derived one;
    `method` / `bitwise` set the replay's method and measured bitwise agreement (left out
    when None, as an older verifier leaves them out); `submods` adds appraised attesters
    after the `bytereplay` one (name -> vector), as a composite EAR carries them."""
    hw = (not simulated) if hardware is None else hardware
    if vector is None:
        vector = {
            "instance-identity": AFFIRMING_VALUE,
            "configuration": AFFIRMING_VALUE,
            "executables": _EXECUTABLES[verdict] if verdict is not None else NO_CLAIM,
            "hardware": AFFIRMING_VALUE if hw else UNRECOGNISED,
        }
    missing = list(missing)
    ext: dict[str, Any] = {
        PREFLIGHT: _preflight_summary(missing),
        RECORD_DIGEST: sha256_tag(b"record"),
        CHECKS: dict(checks) if checks is not None else {"signature": "ok", "quote": "ok"},
    }
    if output_hash is not None:
        ext[OUTPUT_HASH] = output_hash
    elif output is not None:
        ext[OUTPUT_HASH] = sha256_tag(output)
    if verdict is not None:
        ext[REPLAY] = {
            "verdict": verdict,
            "environment_diff": [
                {"field": f, "recorded": r, "replayed": p} for f, r, p in diff
            ],
            "reason": reason,
        }
        if method is not None:
            ext[REPLAY]["method"] = method
        if bitwise is not None:
            ext[REPLAY]["bitwise"] = bitwise
    if tee:
        ext[TEE] = {"provider": provider or ("simulated" if simulated else "tsm"),
                    "simulated": simulated, "hardware": hw}
    ext.update(extra or {})
    policy = ("bytereplay/test",)
    subs = {SUBMOD: Submod(vector=vector, policy_ids=policy, extensions=ext)}
    subs.update({name: Submod(vector=v, policy_ids=policy) for name, v in (submods or {}).items()})
    return build_ear(submods=subs, nonce=nonce, iat=int(time.time()) if iat is None else iat,
                     profile=profile)


_DELETE = object()


def set_claim(claims: dict[str, Any], name: str, value: Any = _DELETE, *,
              submod: str = SUBMOD) -> None:
    """Set (or, without `value`, remove) claim `name` of a submod in either profile:
    a `bytereplay.*` claim goes where the profile keeps it (draft-04: under
    `EXTENSION_KEY`, without the prefix); "status" / "vector" / "policy_ids" name the
    profile's own claim. For tests that tamper with a result."""
    profile = PROFILES[claims["eat_profile"]]
    sub = claims["submods"][submod]
    own = {"status": profile.status, "vector": profile.vector, "policy_ids": profile.policy_ids}
    holder, key = sub, own.get(name, name)
    if name.startswith(EXTENSION_PREFIX) and profile.nested_extensions:
        holder, key = sub.setdefault(EXTENSION_KEY, {}), name[len(EXTENSION_PREFIX):]
    if value is _DELETE:
        del holder[key]
    else:
        holder[key] = value


def make_result(key: SigningKey, **kwargs: Any) -> str:
    """A signed EAR JWT; keyword arguments as for `make_claims`."""
    return sign_ear(make_claims(**kwargs), key)


def _preflight_summary(missing: list[str]) -> dict[str, Any]:
    """The preflight summary the verifier writes for a record lacking exactly `missing`
    (checklist fields, in checklist order)."""
    unknown = set(missing) - {i.field for i in ITEMS}
    if unknown:
        raise ValueError(f"not checklist fields: {sorted(unknown)}")
    results = [ItemResult(i, MISSING if i.field in missing else HOLDS) for i in ITEMS]
    report = PreflightReport((*results, ItemResult(POLICY_ITEM, DEFERRED)))
    return report.summary()
