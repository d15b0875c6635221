"""`evaluate(result, output=..., policy=..., verifier_keys=...) -> Decision`.

The order of work:

1. the EAR's signature against the pinned verifier key set (`bytereplay.jwks.KeySet`:
   a JWKS dict, a file, a URL, or a KeySet you hold), then its format
   (`bytereplay.ear.normalise` and the shapes of the `bytereplay.*` claims);
2. freshness of `iat` against the policy's window, the nonce when one is expected,
   the output bytes against the attested output hash, the application checks;
3. the Rego policy, on one input document built from those facts and the EAR.

Bad input never raises: an unreadable, forged, stale or mismatched result gives a deny
`Decision` naming the reason. Only programmer errors raise: an unknown policy name or
a broken policy (`PolicyError`), arguments of the wrong type (`TypeError`).
"""

from __future__ import annotations

import hmac
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from bytereplay.ar4si import tier
from bytereplay.claims import FULL, NOT_COVERED, NOT_RUN, build_claim
from bytereplay.ear import (
    CHECKS,
    MAX_EAR_BYTES,
    PREFLIGHT,
    RECORD_DIGEST,
    REPLAY,
    TEE,
    Ear,
    check_extensions,
    normalise,
)
from bytereplay.encoding import b64url_encode, sha256_tag, strict_json_loads
from bytereplay.errors import BytereplayError, ResultError
from bytereplay.jose import parse_unverified, verify_jwt
from bytereplay.jwks import KeySet
from bytereplay.keys import SIGNING_ALGS
from relying_party.decision import AppCheckResult, Decision
from relying_party.policy import Policy, load_policy

AppCheck = Callable[[Ear, bytes | None], tuple[str, bool, str]]
KeySource = KeySet | Mapping[str, Any] | Path | str

INPUT_VERSION = 1
ACCEPTED_TYP = (None, "JWT", "ear+jwt", "application/ear+jwt")
MAX_TEXT = 1024  # longest string handed to a policy; longer text is cut
# `verify_jwt` checks iat/nbf/exp against the wall clock with a leeway; evaluate checks
# them against `now` with the policy's window instead, so that check is made moot here.
_NO_WALL_CLOCK_CHECK = 1e10
# Text that goes into the policy input is made safe for rego-cpp, which returns strings
# without JSON escaping: no double quotes, backslashes or control characters.
_SAFE = str.maketrans({'"': "'", "\\": "/", "\x7f": " ", "\u2028": " ", "\u2029": " ",
                       **{chr(c): " " for c in range(0x20)}})

_keysets: OrderedDict[tuple[str, str], KeySet] = OrderedDict()
_keysets_lock = threading.Lock()
_KEYSETS_MAX = 32


def key_set(source: KeySource) -> KeySet:
    """The KeySet for a verifier key source, shared between calls.

    A dict, file or URL gives one cached KeySet per distinct source, so its TTL and
    its refetch-once-on-unknown-kid behaviour work across calls.
    """
    if isinstance(source, KeySet):
        return source
    if isinstance(source, Mapping):
        try:
            key = ("jwks", json.dumps(source, sort_keys=True, separators=(",", ":")))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"verifier_keys: a JWKS dict must be JSON: {exc}") from None
    elif isinstance(source, Path):
        key = ("path", str(source))
    elif isinstance(source, str):
        key = ("source", source)
    else:
        raise TypeError(
            "verifier_keys must be a JWKS dict, a Path, a file name or URL, or a KeySet, "
            f"not {type(source).__name__}"
        )
    with _keysets_lock:
        found = _keysets.get(key)
        if found is not None:
            _keysets.move_to_end(key)
            return found
        made = KeySet(dict(source) if isinstance(source, Mapping) else source)
        _keysets[key] = made
        while len(_keysets) > _KEYSETS_MAX:
            _keysets.popitem(last=False)
        return made


def safe_text(value: Any, limit: int = MAX_TEXT) -> str:
    text = str(value).translate(_SAFE)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _safe(value: Any) -> Any:
    if isinstance(value, str):
        return safe_text(value)
    if isinstance(value, dict):
        return {safe_text(k, 256): _safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _fact(ok: bool, detail: str, **extra: Any) -> dict[str, Any]:
    return {"ok": ok, "detail": detail, **extra}


def _token(result: Any) -> str:
    """The EAR JWT text from a JWT string/bytes or a verifier response {"result": ...}."""
    if isinstance(result, (bytes, bytearray, memoryview)):
        try:
            result = bytes(result).decode("utf-8")
        except UnicodeDecodeError:
            raise ResultError("the result is not UTF-8 text") from None
    if isinstance(result, str) and result.lstrip().startswith("{"):
        result = strict_json_loads(result, max_bytes=2 * MAX_EAR_BYTES)
    if isinstance(result, Mapping):
        inner = result.get("result")
        if not isinstance(inner, str):
            raise ResultError("a verifier response holds the EAR as text under 'result'")
        result = inner
    if not isinstance(result, str):
        raise ResultError(f"the result must be EAR JWT text, not {type(result).__name__}")
    return result.strip()


def _now(now: float | int | datetime | None) -> int:
    if now is None:
        return int(time.time())
    if isinstance(now, datetime):
        if now.tzinfo is None:
            raise TypeError("now: give an aware datetime (with a timezone)")
        return int(now.timestamp())
    if isinstance(now, bool) or not isinstance(now, (int, float)) or not math.isfinite(now):
        raise TypeError("now must be seconds since the epoch or an aware datetime")
    return int(now)


def _ear_document(ear: Ear) -> dict[str, Any]:
    ext = ear.extensions
    rep: dict[str, Any] = ext[REPLAY] if isinstance(ext.get(REPLAY), dict) else {}
    pre: dict[str, Any] = ext[PREFLIGHT] if isinstance(ext.get(PREFLIGHT), dict) else {}
    tee: dict[str, Any] | None = ext[TEE] if isinstance(ext.get(TEE), dict) else None
    return {
        "profile": ear.profile,
        "iat": ear.iat,
        "status": ear.status,
        "vector": dict(ear.vector),
        "tiers": {k: tier(v) for k, v in ear.vector.items()},
        "policy_id": ear.policy_id,
        "verifier_id": dict(ear.verifier_id),
        "verdict": rep.get("verdict"),
        "environment_diff": [
            {"field": d.get("field"), "recorded": d.get("recorded"), "replayed": d.get("replayed")}
            for d in rep.get("environment_diff", [])
        ],
        "replay_reason": rep.get("reason") or "no reason given",
        # A replay claim without a method predates teacher forcing: it was a full replay.
        "replay_method": rep.get("method", FULL) if rep else None,
        "replay_bitwise": rep.get("bitwise") if isinstance(rep.get("bitwise"), bool) else None,
        "preflight": {"complete": pre.get("complete"), "missing": list(pre.get("missing", []))},
        "tee": None if tee is None else {
            "provider": tee.get("provider"),
            "simulated": tee.get("simulated"),
            "hardware": tee.get("hardware"),
            "scheme": tee.get("scheme"),
            "tcb_status": tee.get("tcb_status"),
            "root": tee.get("root"),
            "test_root": tee.get("test_root") is True,
        },
        "verifier_checks": dict(ext.get(CHECKS, {})),
        # Every submod's status (composite evidence: the devices beside bytereplay).
        "submods": {name: sub.tier for name, sub in ear.submods.items()},
        "output_hash": ear.output_hash,
        "record_digest": ext.get(RECORD_DIGEST),
    }


# Per-result values kept out of the policy input, so that decisions can be memoised:
# freshness, the nonce and the output hash are decided here; the Decision carries them.
_PER_RESULT = frozenset({"iat", "output_hash", "record_digest"})
_FACT_KEYS = {
    "signature": (), "format": (), "fresh": ("max_age_seconds", "leeway_seconds"),
    "nonce": ("required",), "output_hash": ("given",),
}


def _policy_fact(name: str, fact: Mapping[str, Any]) -> dict[str, Any]:
    """A check as the policy sees it: ok, the detail only when it failed, stable extras."""
    out = {"ok": fact["ok"], "detail": "ok" if fact["ok"] else fact["detail"]}
    out.update({k: fact[k] for k in _FACT_KEYS[name] if k in fact})
    return out


def _freshness(ear: Ear, now: int, policy: Policy) -> dict[str, Any]:
    window, leeway = policy.max_age_seconds, policy.leeway_seconds
    age = now - ear.iat
    extra = {"age_seconds": age, "max_age_seconds": window, "leeway_seconds": leeway}
    if age < -leeway:
        return _fact(False, f"issued {-age} s in the future (leeway {leeway} s)", **extra)
    if age > window + leeway:
        return _fact(False, f"issued {age} s ago; the policy accepts {window} s "
                            f"(+{leeway} s leeway)", **extra)
    for name, later in (("exp", False), ("nbf", True)):
        bound = ear.raw.get(name)
        if bound is None:
            continue
        if isinstance(bound, bool) or not isinstance(bound, (int, float)):
            return _fact(False, f"'{name}' is not a number", **extra)
        if (not later and now > bound + leeway) or (later and now < bound - leeway):
            return _fact(False, f"outside its '{name}' ({int(bound)})", **extra)
    return _fact(True, f"issued {max(age, 0)} s ago, within {window} s", **extra)


# The verifier's checks that set instance-identity 96 (verifier/pipeline.py): a nonce it
# refused (reused, unknown, expired) and a record whose challenge window is not the
# nonce's. Their text is the cause, so the nonce fact carries it to the decision.
_FRESHNESS_REFUSALS = (("nonce", "refused:"), ("challenge_window", "differs:"))


def _verifier_refusal(ear: Ear) -> str | None:
    checks = ear.extensions.get(CHECKS)
    if not isinstance(checks, dict):
        return None
    for step, prefix in _FRESHNESS_REFUSALS:
        text = checks.get(step)
        if isinstance(text, str) and text.startswith(prefix):
            return f"the verifier's {step.replace('_', ' ')} check {text}"
    return None


def _nonce(ear: Ear, expected: str | bytes | None) -> dict[str, Any]:
    refusal = _verifier_refusal(ear)
    if refusal is not None:
        return _fact(False, refusal, required=expected is not None)
    if expected is None:
        return _fact(True, "no nonce expected", required=False)
    want = b64url_encode(expected) if isinstance(expected, bytes) else str(expected)
    if ear.nonce is None:
        return _fact(False, "the result carries no nonce", required=True)
    if not hmac.compare_digest(ear.nonce.encode("utf-8"), want.encode("utf-8")):
        return _fact(False, f"the result's nonce {ear.nonce} is not the expected {want}",
                     required=True)
    return _fact(True, "matches the expected nonce", required=True)


def _newline_hint(output: bytes, expected: str) -> str:
    """Why the hashes differ when only a trailing newline does (`jq -r`, `echo`, editors)."""
    trimmed = output.rstrip(b"\r\n")
    if trimmed != output and hmac.compare_digest(sha256_tag(trimmed), expected):
        return (" (without its trailing newline the bytes match: the output was saved with a "
                "newline the attested bytes lack; save it with --output-file or `jq -j .output`)")
    return ""


def _output(ear: Ear, output: bytes | None) -> dict[str, Any]:
    expected = ear.output_hash
    if output is None:
        return _fact(False, "no output bytes were given, so nothing binds a decision to them",
                     given=False, expected=expected, actual=None)
    actual = sha256_tag(output)
    if expected is None:
        return _fact(False, "the result attests no output hash", given=True,
                     expected=None, actual=actual)
    if not hmac.compare_digest(actual, expected):
        return _fact(False, f"the output bytes hash to {actual}; the result attests {expected}"
                            + _newline_hint(output, expected),
                     given=True, expected=expected, actual=actual)
    return _fact(True, f"the output bytes hash to the attested {expected}", given=True,
                 expected=expected, actual=actual)


def _run_app_checks(checks: Iterable[AppCheck], ear: Ear,
                    output: bytes | None) -> tuple[AppCheckResult, ...]:
    results: list[AppCheckResult] = []
    for i, check in enumerate(checks):
        fallback = getattr(check, "__name__", f"app-check-{i}")
        try:
            got = check(ear, output)
        except Exception as exc:  # an app check that crashes fails closed
            results.append(AppCheckResult(str(fallback), False,
                                          f"raised {type(exc).__name__}: {exc}"))
            continue
        if (not isinstance(got, tuple) or len(got) != 3 or not isinstance(got[1], bool)):
            results.append(AppCheckResult(str(fallback), False,
                                          "did not return (name, ok: bool, detail)"))
            continue
        name, ok, detail = got
        results.append(AppCheckResult(str(name), ok, str(detail)))
    return tuple(results)


def _claim(doc: Mapping[str, Any] | None, checks: Mapping[str, Mapping[str, Any]]) -> str:
    if doc is None:
        failed = checks["signature"] if not checks["signature"]["ok"] else checks["format"]
        return f"No claim: the attestation result could not be verified ({failed['detail']})."
    out = checks["output_hash"]
    if not out["ok"]:
        return f"No claim about these output bytes: {out['detail']}."
    verdict = doc["verdict"]
    reason = doc["replay_reason"]
    if verdict is None:
        verdict, reason = NOT_RUN, "the result carries no replay verdict"
    tee = doc["tee"] or {}
    return build_claim(
        verdict,
        missing=doc["preflight"]["missing"],
        diff_fields=[d["field"] for d in doc["environment_diff"]],
        reason=reason,
        simulated_tee=bool(tee.get("simulated")),
        preflight_known=doc["preflight"]["complete"] is not None,
        method=doc.get("replay_method"),
    )


def evaluate(
    result: str | bytes | Mapping[str, Any],
    *,
    output: bytes | None = None,
    policy: str | Path | Policy = "default",
    verifier_keys: KeySource,
    expected_nonce: str | bytes | None = None,
    now: float | int | datetime | None = None,
    app_checks: Iterable[AppCheck] = (),
) -> Decision:
    """Appraise one attestation result for one output under a Rego policy.

    `result`: the EAR JWT (text or bytes) or the verifier's response `{"result": ...}`.
    `output`: the exact output bytes the relying app holds (bytes; encode text first).
    `policy`: `default`, `strict`, `dev`, a path to a .rego file, or a loaded `Policy`.
    `verifier_keys`: the pinned verifier key set: JWKS dict, Path/file name, URL or KeySet.
    `expected_nonce`: the challenge nonce (base64url text or raw bytes), when known.
    `now`: the time to judge freshness at (seconds since the epoch or aware datetime).
    `app_checks`: callables `(ear, output) -> (name, ok, detail)`; a failing one denies.
    """
    pol = load_policy(policy)
    keys = key_set(verifier_keys)
    if output is not None:
        if not isinstance(output, (bytes, bytearray, memoryview)):
            raise TypeError("output must be the exact output bytes (encode text first)")
        output = bytes(output)
    if expected_nonce is not None and not isinstance(expected_nonce, (str, bytes)):
        raise TypeError("expected_nonce must be base64url text or bytes")
    at = _now(now)

    not_checked = "not checked: the result was not verified"
    checks: dict[str, Any] = {
        "signature": _fact(False, "not verified"),
        "format": _fact(False, "not read: the signature did not verify"),
        "fresh": _fact(False, not_checked, age_seconds=None,
                       max_age_seconds=pol.max_age_seconds, leeway_seconds=pol.leeway_seconds),
        "nonce": _fact(False, not_checked, required=expected_nonce is not None),
        "output_hash": _fact(False, not_checked, given=output is not None,
                             expected=None, actual=None),
    }
    ear: Ear | None = None
    claims: dict[str, Any] | None = None
    try:
        token = _token(result)
        header, _ = parse_unverified(token, max_bytes=MAX_EAR_BYTES)
        kid = header.get("kid")
        # KeySet.verify, unrolled so the token is parsed once less: the KeySet still
        # caches, and refetches once (with its cooldown) on an unknown kid.
        claims = verify_jwt(token, keys.key_for(kid if isinstance(kid, str) else None),
                            algorithms=SIGNING_ALGS, require=("iat",),
                            max_bytes=MAX_EAR_BYTES, leeway=_NO_WALL_CLOCK_CHECK)
        checks["signature"] = _fact(True, f"verified with verifier key {kid}")
    except BytereplayError as exc:
        checks["signature"] = _fact(False, exc.detail)
    except Exception as exc:  # untrusted input must never crash the relying app: fail closed
        checks["signature"] = _fact(False, f"unexpected {type(exc).__name__}: {exc}")
    if claims is not None:
        try:
            if header.get("typ") not in ACCEPTED_TYP:
                raise ResultError(f"header typ {header.get('typ')!r} is not an EAR")
            ear = normalise(claims)
            check_extensions(ear)
            checks["format"] = _fact(True, f"EAR profile {ear.profile}")
        except BytereplayError as exc:
            ear = None
            checks["format"] = _fact(False, exc.detail)
        except Exception as exc:  # fail closed, as above
            ear = None
            checks["format"] = _fact(False, f"unexpected {type(exc).__name__}: {exc}")

    app_results: tuple[AppCheckResult, ...] = ()
    if ear is not None:
        checks["fresh"] = _freshness(ear, at, pol)
        checks["nonce"] = _nonce(ear, expected_nonce)
        checks["output_hash"] = _output(ear, output)
        app_results = _run_app_checks(app_checks, ear, output)

    ear_doc = None if ear is None else _ear_document(ear)
    document = _safe({
        "version": INPUT_VERSION,
        "checks": {**{k: _policy_fact(k, v) for k, v in checks.items()},
                   "app": [r.to_dict() for r in app_results]},
        "ear": None if ear_doc is None else {k: v for k, v in ear_doc.items()
                                             if k not in _PER_RESULT},
    })
    allow, reasons, notes = pol.decide(document)
    return Decision(
        allow=allow,
        status=ear.status if ear is not None else None,
        verdict=ear_doc["verdict"] if ear_doc is not None else None,
        claim=_claim(ear_doc, checks),
        reasons=reasons,
        notes=notes,
        not_covered=NOT_COVERED,
        app_checks=app_results,
        policy=pol.ref,
        checks=checks,
        output_hash=ear.output_hash if ear is not None else None,
        record_digest=ear_doc["record_digest"] if ear_doc is not None else None,
        complete=ear_doc["preflight"]["complete"] if ear_doc is not None else None,
        ear=ear,
    )
