"""EAR attestation results (draft-ietf-rats-ear): profiles, claim names, building, signing, reading.

Two profiles, one home for their claim names (`Profile`):

- `draft-04` (the default), `eat_profile` `tag:ietf.org,2026:rats/ear#04`, as the WG's
  CDDL has it (`cddl/ear.cddl`, `cddl/ear-appraisal.cddl`): top level `eat_profile`,
  `iat`, `ear_verifier_id`, `ear_status` (never better than the worst submod),
  `ear_raw_evidence` (when asked), `eat_nonce`, `submods`; per submod `ear_status`,
  `ear_trustworthiness_vector`, `ear_appraisal_policy_ids` (a non-empty array) and,
  through the `$$ear-appraisal-extension` socket, bytereplay's own claims under ONE
  collision-resistant public claim name, `EXTENSION_KEY` (`"bytereplay.dev/ear"`), whose
  value is a map (`replay`, `preflight`, `output_hash`, ...); such a submod also names its
  own `eat_profile` (`APPRAISAL_PROFILE`), as the draft asks of a submod with extensions.
- `legacy`, `eat_profile` `tag:github.com,2023:veraison/ear`, the dotted names that
  deployed Veraison, Trustee and python-ear read: `ear.verifier-id`, `ear.raw-evidence`;
  per submod `ear.status`, `ear.trustworthiness-vector`, `ear.appraisal-policy-id` (one
  text) and bytereplay's claims as flat `bytereplay.*` keys.

In memory bytereplay's claims are always keyed `bytereplay.<name>` (`REPLAY`, `TEE`, ...);
only the draft-04 serialisation nests them under `EXTENSION_KEY` without the prefix.

An EAR holds one or more submods (an ordered mapping name -> `Submod`); the `bytereplay`
submod (`SUBMOD`) carries the replay and output claims and is required when reading. Each
submod's status is computed from its vector when building, and a read EAR is refused when
any status is better than its vector's worst claim, or the top-level status is better than
its worst submod. `Ear.status` is the overall status: the worst of all of them.
`check_extensions` refuses `bytereplay.*` claims of the wrong shape.

`profile_of` reads a profile's short name or URI; `media_type` is the EAR's media type with
its `eat_profile` parameter (`application/eat+jwt; eat_profile="..."`). The draft-04 CDDL
(vendored, flattened for pycddl) and bytereplay's extension CDDL are in `fixtures/ear/`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import reduce
from typing import Any

from bytereplay import __version__
from bytereplay.ar4si import CLAIMS, STATUS_RANK, status_of, worse
from bytereplay.claims import FULL, REPLAY_METHODS, VERDICTS
from bytereplay.encoding import HASH_RE, b64url_decode, b64url_encode
from bytereplay.errors import EncodingError, ResultError, SignatureError, UsageError
from bytereplay.jose import parse_unverified, sign_jwt
from bytereplay.jwks import KeySet
from bytereplay.keys import SIGNING_ALGS, SigningKey


@dataclass(frozen=True)
class Profile:
    """One EAR profile: its `eat_profile` URI and the names it gives each claim."""

    uri: str
    name: str  # the short name for configuration and the command line
    status: str
    vector: str
    verifier_id: str
    policy_ids: str
    raw_evidence: str
    policy_list: bool  # draft-04: a non-empty array; legacy: one text
    top_status: bool  # draft-04 writes the overall status at the top level
    nested_extensions: bool  # draft-04: bytereplay's claims under EXTENSION_KEY


DRAFT_04 = Profile(
    uri="tag:ietf.org,2026:rats/ear#04", name="draft-04",
    status="ear_status", vector="ear_trustworthiness_vector", verifier_id="ear_verifier_id",
    policy_ids="ear_appraisal_policy_ids", raw_evidence="ear_raw_evidence",
    policy_list=True, top_status=True, nested_extensions=True,
)
LEGACY = Profile(
    uri="tag:github.com,2023:veraison/ear", name="legacy",
    status="ear.status", vector="ear.trustworthiness-vector", verifier_id="ear.verifier-id",
    policy_ids="ear.appraisal-policy-id", raw_evidence="ear.raw-evidence",
    policy_list=False, top_status=False, nested_extensions=False,
)
PROFILES: dict[str, Profile] = {p.uri: p for p in (DRAFT_04, LEGACY)}
PROFILE_NAMES: dict[str, Profile] = {p.name: p for p in (DRAFT_04, LEGACY)}
PROFILE_DRAFT = DRAFT_04.uri
PROFILE_LEGACY = LEGACY.uri
PROFILE = PROFILE_DRAFT  # what a verifier writes unless configured or asked otherwise

# The EAR media type (RFC 9782) and the spelling some clients use; `eat_profile` is its
# parameter.
MEDIA_EAR_JWT = "application/eat+jwt"
MEDIA_EAR_JWT_ALIASES = (MEDIA_EAR_JWT, "application/eat-jwt")

SUBMOD = "bytereplay"  # the primary submod: the run, its replay and its output
EXTENSION_PREFIX = "bytereplay."
# draft-04: one collision-resistant public claim name (RFC 7519 section 4.2, a domain
# name) in the `$$ear-appraisal-extension` socket, and the submod's own profile.
EXTENSION_KEY = "bytereplay.dev/ear"
APPRAISAL_PROFILE = "tag:bytereplay.dev,2026:ear-appraisal#1"
VERIFIER_DEVELOPER = "https://bytereplay.dev"

# bytereplay's own claims inside a submod (in-memory names).
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


def profile_of(value: str) -> Profile:
    """The profile named by its URI or its short name; UsageError otherwise."""
    found = PROFILES.get(value) or PROFILE_NAMES.get(value)
    if found is None:
        raise UsageError(f"unknown EAR profile {value!r}; known: "
                         f"{', '.join([*PROFILE_NAMES, *PROFILES])}")
    return found


def media_type(profile: str | Profile) -> str:
    """`application/eat+jwt; eat_profile="..."`: the media type of an EAR of `profile`."""
    uri = profile.uri if isinstance(profile, Profile) else profile_of(profile).uri
    return f'{MEDIA_EAR_JWT}; eat_profile="{uri}"'


@dataclass(frozen=True)
class Submod:
    """One appraised attester: its vector, policy ids and bytereplay.* claims.

    Building: `status` None means "computed from the vector". Reading: the status the
    EAR claims (never better than the vector's worst claim)."""

    vector: Mapping[str, int]
    policy_ids: tuple[str, ...] = ()
    extensions: Mapping[str, Any] = field(default_factory=dict)
    status: str | None = None

    @property
    def tier(self) -> str:
        return self.status if self.status is not None else status_of(self.vector)


@dataclass(frozen=True)
class Ear:
    """A verified, normalised attestation result.

    `status` is the overall status (the worst of the top-level one, when given, and every
    submod's). `vector`, `policy_id`, `extensions`, `replay`, `output_hash` read the
    primary submod (`SUBMOD`)."""

    profile: str
    iat: int
    nonce: str | None
    verifier_id: dict[str, Any]
    status: str
    submods: dict[str, Submod]
    raw: dict[str, Any] = field(default_factory=dict)
    raw_evidence: bytes | None = None

    @property
    def primary(self) -> Submod:
        return self.submods[SUBMOD]

    @property
    def vector(self) -> dict[str, int]:
        return dict(self.primary.vector)

    @property
    def policy_id(self) -> str | None:
        ids = self.primary.policy_ids
        return ids[0] if ids else None

    @property
    def extensions(self) -> dict[str, Any]:
        return dict(self.primary.extensions)

    @property
    def replay(self) -> dict[str, Any]:
        value = self.primary.extensions.get(REPLAY)
        return value if isinstance(value, dict) else {}

    @property
    def output_hash(self) -> str | None:
        value = self.primary.extensions.get(OUTPUT_HASH)
        return value if isinstance(value, str) else None


def worst_of(statuses: Iterable[str]) -> str:
    """The worst of one or more statuses."""
    return reduce(worse, statuses)


def _write_submod(sub: Submod, p: Profile) -> dict[str, Any]:
    clean = {k: int(sub.vector[k]) for k in CLAIMS if k in sub.vector}
    unknown = set(sub.vector) - set(CLAIMS)
    if unknown or not clean:
        raise ValueError(f"a trustworthiness vector holds AR4SI claims only, at least one "
                         f"(got {sorted(sub.vector)})")
    worst = status_of(clean)
    status = sub.status if sub.status is not None else worst
    if STATUS_RANK[status] < STATUS_RANK[worst]:
        raise ValueError(f"status {status!r} is better than its worst claim ({worst})")
    if not sub.policy_ids:
        raise ValueError("a submod names at least one appraisal policy id")
    bad = [k for k in sub.extensions if not k.startswith(EXTENSION_PREFIX)]
    if bad:
        raise ValueError(f"extension claims are named {EXTENSION_PREFIX}*: {bad}")
    out: dict[str, Any] = {}
    if p.nested_extensions and sub.extensions:
        out["eat_profile"] = APPRAISAL_PROFILE
    out[p.status] = status
    out[p.vector] = clean
    out[p.policy_ids] = list(sub.policy_ids) if p.policy_list else sub.policy_ids[0]
    if p.nested_extensions:
        if sub.extensions:
            out[EXTENSION_KEY] = {k[len(EXTENSION_PREFIX):]: v for k, v in sub.extensions.items()}
    else:
        out.update(sub.extensions)
    return out


def build_ear(
    *,
    nonce: str | None,
    iat: int,
    submods: Mapping[str, Submod] | None = None,
    vector: Mapping[str, int] | None = None,
    policy_id: str | None = None,
    extensions: Mapping[str, Any] | None = None,
    profile: str = PROFILE,
    raw_evidence: bytes | None = None,
    verifier_build: str = f"bytereplay {__version__}",
) -> dict[str, Any]:
    """EAR claims in `profile` (a URI or a short name).

    Either `submods` (an ordered mapping name -> `Submod`), or one `bytereplay` submod
    given by `vector`, `policy_id` and `extensions`. Each submod's status is computed from
    its vector, so it is never better than its worst claim; the top-level status (draft-04)
    is the worst submod's. Programmer errors (an empty or non-AR4SI vector, no policy id,
    an extension not named `bytereplay.*`) raise ValueError."""
    p = profile_of(profile)
    if submods is None:
        if vector is None or policy_id is None:
            raise ValueError("give submods, or vector and policy_id")
        submods = {SUBMOD: Submod(vector=vector, policy_ids=(policy_id,),
                                  extensions=dict(extensions or {}))}
    elif vector is not None or policy_id is not None or extensions is not None:
        raise ValueError("give submods, or vector / policy_id / extensions, not both")
    if not submods:
        raise ValueError("an EAR holds at least one submod")
    written = {name: _write_submod(sub, p) for name, sub in submods.items()}
    overall = worst_of(sub[p.status] for sub in written.values())
    claims: dict[str, Any] = {"eat_profile": p.uri, "iat": int(iat)}
    if p.top_status:
        claims[p.status] = overall
    claims[p.verifier_id] = {"developer": VERIFIER_DEVELOPER, "build": verifier_build}
    if raw_evidence is not None:
        claims[p.raw_evidence] = b64url_encode(raw_evidence)
    if nonce is not None:
        claims["eat_nonce"] = nonce
    claims["submods"] = written
    return claims


def sign_ear(claims: Mapping[str, Any], key: SigningKey) -> str:
    return sign_jwt(claims, key, typ="ear+jwt")


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _read_vector(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, dict) or not value or not all(
        k in CLAIMS and _is_int(x) and -128 <= x <= 127 for k, x in value.items()
    ):
        raise ResultError(f"{where}: the trustworthiness vector is malformed (AR4SI claims "
                          "only, at least one, each an integer in -128..127)")
    return dict(value)


def _read_status(value: Any, where: str) -> str:
    if not isinstance(value, str) or value not in STATUS_RANK:
        raise ResultError(f"{where}: status {value!r} is not an AR4SI tier")
    return str(value)


def _read_policy_ids(sub: Mapping[str, Any], p: Profile, where: str) -> tuple[str, ...]:
    if p.policy_ids not in sub:
        return ()
    value = sub[p.policy_ids]
    if p.policy_list:
        if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
            raise ResultError(f"{where}: {p.policy_ids} must be a non-empty array of text")
        return tuple(value)
    if not isinstance(value, str):
        raise ResultError(f"{where}: {p.policy_ids} must be text")
    return (value,)


def _read_extensions(sub: Mapping[str, Any], p: Profile, where: str) -> dict[str, Any]:
    if not p.nested_extensions:
        return {k: v for k, v in sub.items() if k.startswith(EXTENSION_PREFIX)}
    if "eat_profile" in sub and not isinstance(sub["eat_profile"], str):
        raise ResultError(f"{where}: eat_profile must be text")
    if EXTENSION_KEY not in sub:
        return {}
    ext = sub[EXTENSION_KEY]
    if not isinstance(ext, dict):
        raise ResultError(f"{where}: {EXTENSION_KEY} must be a map")
    return {EXTENSION_PREFIX + k: v for k, v in ext.items()}


def _read_submod(name: str, sub: Any, p: Profile) -> Submod:
    where = f"submods.{name}"
    if not isinstance(sub, dict):
        raise ResultError(f"{where} must be a map")
    status = _read_status(sub.get(p.status), where)
    vector = _read_vector(sub.get(p.vector), where)
    # The status may never be better than the worst claim: recompute and compare.
    worst = status_of(vector)
    if STATUS_RANK[status] < STATUS_RANK[worst]:
        raise ResultError(f"{where}: status {status!r} is better than its worst claim ({worst})")
    return Submod(vector=vector, policy_ids=_read_policy_ids(sub, p, where),
                  extensions=_read_extensions(sub, p, where), status=status)


def normalise(claims: Mapping[str, Any]) -> Ear:
    """Read EAR claims in either profile; refuse what is malformed (ResultError)."""
    name = claims.get("eat_profile")
    p = _profile_in(claims)
    if p is None:
        raise ResultError(f"unknown eat_profile {name!r}")
    iat = claims.get("iat")
    if not isinstance(iat, int) or isinstance(iat, bool):
        raise ResultError("EAR lacks an integer 'iat'")
    raw_subs = claims.get("submods")
    if not isinstance(raw_subs, dict) or not raw_subs:
        raise ResultError("EAR lacks its submods")
    if len(raw_subs) > MAX_SUBMODS:
        raise ResultError(f"EAR holds more than {MAX_SUBMODS} submods")
    if not isinstance(raw_subs.get(SUBMOD), dict):
        raise ResultError(f"EAR lacks submods.{SUBMOD}")
    submods = {str(k): _read_submod(str(k), v, p) for k, v in raw_subs.items()}
    worst = worst_of(sub.tier for sub in submods.values())
    status = worst
    if p.top_status and p.status in claims:
        top = _read_status(claims[p.status], "the EAR")
        if STATUS_RANK[top] < STATUS_RANK[worst]:
            raise ResultError(f"the EAR's status {top!r} is better than its worst submod's "
                              f"({worst})")
        status = top
    nonce = claims.get("eat_nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise ResultError("eat_nonce must be text")
    vid = claims.get(p.verifier_id)
    if p is DRAFT_04 and not (isinstance(vid, dict) and isinstance(vid.get("developer"), str)
                              and isinstance(vid.get("build"), str)):
        raise ResultError(f"{p.verifier_id} must be {{developer, build}} text")
    raw_evidence = None
    if p.raw_evidence in claims:
        try:
            raw_evidence = b64url_decode(claims[p.raw_evidence])
        except EncodingError:
            raise ResultError(f"{p.raw_evidence} must be base64url text") from None
    return Ear(
        profile=p.uri, iat=iat, nonce=nonce,
        verifier_id=vid if isinstance(vid, dict) else {},
        status=status, submods=submods, raw=dict(claims), raw_evidence=raw_evidence,
    )


def read_ear(token: str, keys: KeySet, *, algorithms: tuple[str, ...] = SIGNING_ALGS) -> Ear:
    """Verify the EAR's signature against the pinned verifier key set, then normalise it."""
    try:
        claims = keys.verify(token, algorithms=algorithms, require=("iat",), max_bytes=MAX_EAR_BYTES)
    except SignatureError:
        raise
    return normalise(claims)


def _profile_in(claims: Mapping[str, Any]) -> Profile | None:
    name = claims.get("eat_profile")
    return PROFILES.get(name) if isinstance(name, str) else None


def peek(token: str) -> dict[str, Any]:
    """Unverified claims, for display only."""
    return parse_unverified(token, max_bytes=MAX_EAR_BYTES)[1]


def peek_status(claims: Mapping[str, Any]) -> str | None:
    """The overall status of unverified claims, for display: the top-level status where
    the profile has one, else the worst submod's; None when none reads."""
    p = _profile_in(claims)
    if p is None:
        return None
    top = claims.get(p.status) if p.top_status else None
    if isinstance(top, str) and top in STATUS_RANK:
        return top
    subs = claims.get("submods")
    found = [sub.get(p.status) for sub in subs.values() if isinstance(sub, dict)] \
        if isinstance(subs, dict) else []
    tiers = [t for t in found if isinstance(t, str) and t in STATUS_RANK]
    return worst_of(tiers) if tiers else None


def peek_extensions(claims: Mapping[str, Any], submod: str = SUBMOD) -> dict[str, Any]:
    """A submod's bytereplay.* claims of unverified claims, for display; {} when absent."""
    p = _profile_in(claims)
    subs = claims.get("submods")
    sub = subs.get(submod) if isinstance(subs, dict) else None
    if p is None or not isinstance(sub, dict):
        return {}
    try:
        return _read_extensions(sub, p, f"submods.{submod}")
    except ResultError:
        return {}


def flat_submod(claims: Mapping[str, Any], submod: str = SUBMOD) -> dict[str, Any]:
    """One submod of unverified claims, flat, under the legacy profile's names
    (`ear.status`, `ear.trustworthiness-vector`, `ear.appraisal-policy-id` (the first id),
    `bytereplay.*`) whichever profile wrote it: for display and tests; {} when absent."""
    p = _profile_in(claims)
    subs = claims.get("submods")
    sub = subs.get(submod) if isinstance(subs, dict) else None
    if p is None or not isinstance(sub, dict):
        return {}
    out = {LEGACY.status: sub[p.status]} if p.status in sub else {}
    if p.vector in sub:
        out[LEGACY.vector] = sub[p.vector]
    if p.policy_ids in sub:
        ids = sub[p.policy_ids]
        out[LEGACY.policy_ids] = ids[0] if p.policy_list and isinstance(ids, list) and ids \
            else ids
    out.update(peek_extensions(claims, submod))
    return out


def _expect(cond: bool, claim: str, message: str) -> None:
    if not cond:
        raise ResultError(f"{claim}: {message}")


def _is_text_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def check_extensions(ear: Ear) -> None:
    """Refuse bytereplay.* claims of the wrong shape in any submod (ResultError naming
    the claim)."""
    for sub in ear.submods.values():
        _check_extensions(sub.extensions)


def _check_extensions(ext: Mapping[str, Any]) -> None:
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

