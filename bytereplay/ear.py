"""EAR attestation results (draft-ietf-rats-ear): claim names, building, signing, reading.

The default profile is the one deployed verifiers and relying parties read today
(`ear.status`, `ear.trustworthiness-vector`, ...). The newer draft naming
(`ear_status`, ...) can be written as an option; both are accepted when reading.
`check_extensions` refuses `bytereplay.*` claims of the wrong shape.

An EAR holds the `bytereplay` submod (`SUBMOD`: the run, its replay and its output; the
one readers require) and, for composite evidence, one submod per device (`cpu`, `gpu0`,
`gpu1`, ...: `Submod`), each with its own status and trustworthiness vector. Reading
checks every submod's status against its own vector, and `Ear.status` is the worst of
them all, so a result is never better than its worst device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from bytereplay import __version__
from bytereplay.ar4si import CLAIMS, STATUS_RANK, status_of, worse
from bytereplay.claims import FULL, REPLAY_METHODS, VERDICTS
from bytereplay.encoding import HASH_RE
from bytereplay.errors import ResultError, SignatureError
from bytereplay.jose import parse_unverified, sign_jwt
from bytereplay.jwks import KeySet
from bytereplay.keys import SIGNING_ALGS, SigningKey

PROFILE = "tag:github.com,2023:veraison/ear"
PROFILE_DRAFT = "tag:ietf.org,2024:rats:ear"
SUBMOD = "bytereplay"

# naming -> (status, vector, verifier-id, appraisal-policy-id)
NAMINGS: dict[str, tuple[str, str, str, str]] = {
    "veraison": ("ear.status", "ear.trustworthiness-vector", "ear.verifier-id",
                 "ear.appraisal-policy-id"),
    "draft": ("ear_status", "ear_trustworthiness_vector", "ear_verifier_id",
              "ear_appraisal_policy_id"),
}
PROFILES = {"veraison": PROFILE, "draft": PROFILE_DRAFT}

# bytereplay's own claims inside the submod.
REPLAY = "bytereplay.replay"
PREFLIGHT = "bytereplay.preflight"
OUTPUT_HASH = "bytereplay.output_hash"
RECORD_DIGEST = "bytereplay.record_digest"
CLAIM = "bytereplay.claim"
NOT_COVERED_CLAIM = "bytereplay.not_covered"
TEE = "bytereplay.tee"
CHECKS = "bytereplay.checks"
REASONS = "bytereplay.reasons"
MAX_EAR_BYTES = 512 * 1024
MAX_SUBMODS = 66  # the primary plus a CPU and up to 64 devices


@dataclass(frozen=True)
class Submod:
    """One appraised attester (a device of composite evidence): its vector, policy ids and
    `bytereplay.*` claims. Building: `status` None means "computed from the vector";
    reading: the status the EAR claims (never better than the vector's worst claim)."""

    vector: Mapping[str, int]
    policy_ids: tuple[str, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)
    status: str | None = None

    @property
    def tier(self) -> str:
        return self.status if self.status is not None else status_of(self.vector)


@dataclass(frozen=True)
class Ear:
    """A verified, normalised attestation result."""

    profile: str
    iat: int
    nonce: str | None
    verifier_id: dict[str, Any]
    status: str
    vector: dict[str, int]
    policy_id: str | None
    extensions: dict[str, Any] = field(default_factory=dict)  # bytereplay.* claims
    raw: dict[str, Any] = field(default_factory=dict)
    # Every submod by name, the primary (`SUBMOD`) included; `status` is the worst of them.
    submods: dict[str, Submod] = field(default_factory=dict)

    @property
    def replay(self) -> dict[str, Any]:
        value = self.extensions.get(REPLAY)
        return value if isinstance(value, dict) else {}

    @property
    def output_hash(self) -> str | None:
        value = self.extensions.get(OUTPUT_HASH)
        return value if isinstance(value, str) else None


def worst_status(statuses: Iterable[str]) -> str:
    """The worst of one or more statuses."""
    return reduce(worse, statuses)


def _write_submod(sub: Submod, naming: str) -> dict[str, Any]:
    status_name, vector_name, _, policy_name = NAMINGS[naming]
    clean = {k: int(v) for k, v in sub.vector.items() if k in CLAIMS}
    worst = status_of(clean)
    status = sub.status if sub.status is not None else worst
    if STATUS_RANK[status] < STATUS_RANK[worst]:
        raise ValueError(f"status {status!r} is better than its worst claim ({worst})")
    if not sub.policy_ids:
        raise ValueError("a submod names an appraisal policy id")
    return {status_name: status, vector_name: clean, policy_name: sub.policy_ids[0],
            **sub.extensions}


def build_ear(
    *,
    nonce: str | None,
    iat: int,
    vector: Mapping[str, int] | None = None,
    policy_id: str | None = None,
    extensions: Mapping[str, Any] | None = None,
    submods: Mapping[str, Submod] | None = None,
    naming: str = "veraison",
    verifier_build: str = f"bytereplay {__version__}",
) -> dict[str, Any]:
    """EAR claims. Either `submods` (name -> `Submod`, the primary `bytereplay` one
    included), or the primary alone from `vector`, `policy_id` and `extensions`. Each
    status is computed from its vector, so it is never better than its worst claim."""
    if submods is None:
        if vector is None or policy_id is None:
            raise ValueError("give submods, or vector and policy_id")
        submods = {SUBMOD: Submod(vector=vector, policy_ids=(policy_id,),
                                  extensions=dict(extensions or {}))}
    elif vector is not None or policy_id is not None or extensions is not None:
        raise ValueError("give submods, or vector / policy_id / extensions, not both")
    if SUBMOD not in submods or len(submods) > MAX_SUBMODS:
        raise ValueError(f"an EAR holds the {SUBMOD!r} submod and at most {MAX_SUBMODS}")
    _, _, vid_name, _ = NAMINGS[naming]
    claims: dict[str, Any] = {
        "eat_profile": PROFILES[naming],
        "iat": int(iat),
        vid_name: {"developer": "https://bytereplay.dev", "build": verifier_build},
        "submods": {name: _write_submod(sub, naming) for name, sub in submods.items()},
    }
    if nonce is not None:
        claims["eat_nonce"] = nonce
    return claims


def sign_ear(claims: Mapping[str, Any], key: SigningKey) -> str:
    return sign_jwt(claims, key, typ="ear+jwt")


def _pick(obj: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if name in obj:
            return obj[name]
    return None


def normalise(claims: Mapping[str, Any]) -> Ear:
    """Read EAR claims in either naming; refuse what is malformed."""
    profile = claims.get("eat_profile")
    if profile not in (PROFILE, PROFILE_DRAFT):
        raise ResultError(f"unknown eat_profile {profile!r}")
    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, int):
        raise ResultError("EAR lacks an integer 'iat'")
    submods = claims.get("submods")
    if not isinstance(submods, dict) or not isinstance(submods.get(SUBMOD), dict):
        raise ResultError(f"EAR lacks submods.{SUBMOD}")
    if len(submods) > MAX_SUBMODS:
        raise ResultError(f"EAR holds more than {MAX_SUBMODS} submods")
    read = {str(name): _read_submod(str(name), value) for name, value in submods.items()}
    sub = submods[SUBMOD]
    v, d = NAMINGS["veraison"], NAMINGS["draft"]
    vector = read[SUBMOD].vector
    # The result is never better than its worst submod (each checked against its vector).
    status = worst_status(other.tier for other in read.values())
    nonce = claims.get("eat_nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise ResultError("eat_nonce must be text")
    vid = _pick(claims, v[2], d[2])
    policy = _pick(sub, v[3], d[3])
    ext = {k: val for k, val in sub.items() if k.startswith("bytereplay.")}
    return Ear(
        profile=str(profile), iat=iat, nonce=nonce,
        verifier_id=vid if isinstance(vid, dict) else {},
        status=str(status), vector=dict(vector),
        policy_id=policy if isinstance(policy, str) else None,
        extensions=ext, raw=dict(claims), submods=read,
    )


def _read_submod(name: str, sub: Any) -> Submod:
    """One submod read in either naming: its status checked against its own vector."""
    if not isinstance(sub, dict):
        raise ResultError(f"EAR submods.{name} is not an object")
    v, d = NAMINGS["veraison"], NAMINGS["draft"]
    status = _pick(sub, v[0], d[0])
    vector = _pick(sub, v[1], d[1])
    where = "EAR" if name == SUBMOD else f"EAR submods.{name}"
    if not isinstance(vector, dict) or not all(
        isinstance(k, str) and isinstance(x, int) and not isinstance(x, bool) and -128 <= x <= 127
        for k, x in vector.items()
    ):
        raise ResultError(f"{where} trustworthiness vector is malformed")
    if status not in ("none", "affirming", "warning", "contraindicated"):
        raise ResultError(f"{where} status {status!r} is not an AR4SI tier")
    # The status may never be better than the worst claim: recompute and compare.
    worst = status_of(vector)
    if STATUS_RANK[status] < STATUS_RANK[worst]:
        raise ResultError(f"{where} status {status!r} is better than its worst claim ({worst})")
    policy = _pick(sub, v[3], d[3])
    return Submod(vector=dict(vector), policy_ids=(policy,) if isinstance(policy, str) else (),
                  extensions={k: val for k, val in sub.items() if k.startswith("bytereplay.")},
                  status=str(status))


def read_ear(token: str, keys: KeySet, *, algorithms: tuple[str, ...] = SIGNING_ALGS) -> Ear:
    """Verify the EAR's signature against the pinned verifier key set, then normalise it."""
    try:
        claims = keys.verify(token, algorithms=algorithms, require=("iat",), max_bytes=MAX_EAR_BYTES)
    except SignatureError:
        raise
    return normalise(claims)


def peek(token: str) -> dict[str, Any]:
    """Unverified claims, for display only."""
    return parse_unverified(token, max_bytes=MAX_EAR_BYTES)[1]


def _expect(cond: bool, claim: str, message: str) -> None:
    if not cond:
        raise ResultError(f"{claim}: {message}")


def _is_text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def check_extensions(ear: Ear) -> None:
    """Refuse bytereplay.* claims of the wrong shape (ResultError naming the claim)."""
    ext = ear.extensions
    if REPLAY in ext:
        rep = ext[REPLAY]
        _expect(isinstance(rep, dict), REPLAY, "must be an object")
        _expect(rep.get("verdict") in VERDICTS, REPLAY,
                f"verdict must be one of {', '.join(VERDICTS)}")
        diff = rep.get("environment_diff", [])
        _expect(isinstance(diff, list) and all(
            isinstance(d, dict) and isinstance(d.get("field"), str) for d in diff),
            REPLAY, "environment_diff must be a list of {field, recorded, replayed}")
        _expect(_is_text_or_none(rep.get("reason")), REPLAY, "reason must be text")
        _expect(rep.get("method", FULL) in REPLAY_METHODS, REPLAY,
                f"method must be one of {', '.join(REPLAY_METHODS)}")
        _expect(rep.get("bitwise") in (None, True, False), REPLAY,
                "bitwise must be a boolean or null")
    if PREFLIGHT in ext:
        pre = ext[PREFLIGHT]
        _expect(isinstance(pre, dict), PREFLIGHT, "must be an object")
        missing = pre.get("missing")
        _expect(isinstance(missing, list) and all(isinstance(m, str) for m in missing),
                PREFLIGHT, "missing must be a list of field names")
        _expect(isinstance(pre.get("complete"), bool), PREFLIGHT, "complete must be a boolean")
        _expect(pre["complete"] == (not missing), PREFLIGHT,
                "complete disagrees with the missing fields")
    if TEE in ext:
        tee = ext[TEE]
        _expect(isinstance(tee, dict), TEE, "must be an object")
        _expect(_is_text_or_none(tee.get("provider")), TEE, "provider must be text")
        for flag in ("simulated", "hardware"):
            _expect(isinstance(tee.get(flag), bool), TEE, f"{flag} must be a boolean")
        for name in ("scheme", "tcb_status", "root"):
            _expect(_is_text_or_none(tee.get(name)), TEE, f"{name} must be text")
        for flag in ("test_root", "tcb_up_to_date"):
            _expect(tee.get(flag) is None or isinstance(tee[flag], bool), TEE,
                    f"{flag} must be a boolean")
        advisories = tee.get("advisories", [])
        _expect(isinstance(advisories, list) and all(isinstance(x, str) for x in advisories),
                TEE, "advisories must be a list of ids")
        _expect(isinstance(tee.get("collateral", {}), dict), TEE, "collateral must be an object")
    if CHECKS in ext:
        checks = ext[CHECKS]
        _expect(isinstance(checks, dict) and all(isinstance(v, str) for v in checks.values()),
                CHECKS, "must map each step to 'ok' or a failure text")
    if OUTPUT_HASH in ext:
        _expect(isinstance(ext[OUTPUT_HASH], str) and bool(HASH_RE.match(ext[OUTPUT_HASH])),
                OUTPUT_HASH, "must be 'sha-256:' and 64 lowercase hex digits")
    if RECORD_DIGEST in ext:
        _expect(isinstance(ext[RECORD_DIGEST], str), RECORD_DIGEST, "must be text")
