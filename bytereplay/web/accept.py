"""The `Accept` header (RFC 9110 section 12.5.1), and the EAR answer it asks for.

`parse_accept(text)` reads media ranges with their parameters and weights: a list of
`MediaRange(type, params, q)` in the order given; malformed ranges raise `UsageError`
(400). `choose_ear(accept, default)` picks what an endpoint that answers an EAR sends:

- no `Accept`, `*/*`, `application/*` or `application/json`: the JSON answer, in the
  default profile;
- `application/eat+jwt` (or `application/eat-jwt`), optionally with
  `eat_profile="<uri>"`: that profile (a range without `eat_profile` takes the default);
  the answer is the JSON document when JSON is acceptable as well, the bare EAR otherwise
  (`raw` True), and its media type carries `eat_profile`;
- ranges weighted q=0 are refused ranges; among acceptable ones the highest weight wins,
  the first listed on a tie;
- nothing acceptable, or EAR ranges that name only unknown profiles (even beside JSON or
  `*/*`: a client that names a profile wants that profile): `NotAcceptableError` (406),
  naming the profiles this service writes.

`accepts(header, media_type)` says whether `media_type` is allowed: a missing or empty
header allows everything, otherwise the most specific matching range (exact, `type/*`,
`*/*`) decides, with `q > 0`. `requested_param(header, name)` is the first value of
parameter `name` on any acceptable range (e.g. `eat_profile`). `media_ranges(header)` is
`parse_accept` that also takes a missing header.
"""

from __future__ import annotations

from dataclasses import dataclass

from bytereplay.ear import MEDIA_EAR_JWT_ALIASES, PROFILES, Profile, profile_of
from bytereplay.errors import NotAcceptableError, UsageError

MAX_ACCEPT = 4096
MAX_RANGES = 32
JSON_RANGES = ("application/json", "application/*", "*/*")
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz")


@dataclass(frozen=True)
class MediaRange:
    type: str  # lowercased "type/subtype"
    params: dict[str, str]  # names lowercased, values as given (quotes removed)
    q: float


def _token(text: str, what: str) -> str:
    value = text.strip().lower()
    if not value or not set(value) <= _TOKEN:
        raise UsageError(f"Accept: malformed {what} {text.strip()[:40]!r}")
    return value


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes (backslash escapes inside quotes)."""
    parts, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quoted:
        raise UsageError("Accept: unterminated quoted string")
    parts.append("".join(cur))
    return parts


def _value(text: str) -> str:
    value = text.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    _token(value, "parameter value")
    return value  # a value keeps its case; only names and types are case-insensitive


def parse_accept(text: str) -> list[MediaRange]:
    """The media ranges of an Accept header, in order; empty elements are skipped."""
    if len(text) > MAX_ACCEPT:
        raise UsageError(f"Accept: longer than {MAX_ACCEPT} characters")
    out: list[MediaRange] = []
    for element in _split(text, ","):
        if not element.strip():
            continue
        pieces = _split(element, ";")
        kind, slash, subtype = pieces[0].partition("/")
        if not slash or (kind.strip() == "*" and subtype.strip() != "*"):
            raise UsageError(f"Accept: malformed media range {pieces[0].strip()[:40]!r}")
        media = _token(kind, "media range") + "/" + _token(subtype, "media range")
        params: dict[str, str] = {}
        q = 1.0
        for piece in pieces[1:]:
            if not piece.strip():
                continue
            name, eq, value = piece.partition("=")
            if not eq:
                raise UsageError(f"Accept: parameter without a value {piece.strip()[:40]!r}")
            key = _token(name, "parameter name")
            if key == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    raise UsageError("Accept: q must be a number in 0..1") from None
                if not 0.0 <= q <= 1.0:
                    raise UsageError("Accept: q must be a number in 0..1")
            else:
                params[key] = _value(value)
        out.append(MediaRange(media, params, q))
        if len(out) > MAX_RANGES:
            raise UsageError(f"Accept: more than {MAX_RANGES} media ranges")
    return out


@dataclass(frozen=True)
class EarChoice:
    profile: Profile
    raw: bool  # True: answer the bare EAR as its media type; False: the JSON document


def choose_ear(accept: str | None, default: str) -> EarChoice:
    """What to answer for `accept` (see the module docstring); `default` is a profile
    URI or short name."""
    fallback = profile_of(default)
    if accept is None or not accept.strip():
        return EarChoice(fallback, raw=False)
    ranges = [r for r in parse_accept(accept) if r.q > 0]
    json_q = max((r.q for r in ranges if r.type in JSON_RANGES), default=0.0)
    best: tuple[float, Profile] | None = None
    unknown: list[str] = []
    for r in ranges:
        if r.type not in MEDIA_EAR_JWT_ALIASES:
            continue
        wanted = r.params.get("eat_profile")
        if wanted is not None and wanted not in PROFILES:
            unknown.append(wanted)
            continue
        profile = PROFILES[wanted] if wanted is not None else fallback
        if best is None or r.q > best[0]:
            best = (r.q, profile)
    if best is not None:
        return EarChoice(best[1], raw=json_q == 0.0)
    if json_q > 0 and not unknown:
        return EarChoice(fallback, raw=False)
    raise _refuse(unknown)


def _refuse(unknown: list[str]) -> NotAcceptableError:
    known = ", ".join(f'{MEDIA_EAR_JWT_ALIASES[0]}; eat_profile="{p}"' for p in PROFILES)
    what = f"eat_profile {unknown[0][:100]!r} is not one this verifier writes" if unknown \
        else "no acceptable media type"
    return NotAcceptableError(f"{what}; it answers application/json or {known}")


def media_ranges(header: str | None) -> list[MediaRange]:
    """The ranges of `header`, in order (empty for a missing header)."""
    if header is None or not header.strip():
        return []
    return parse_accept(header)


def accepts(header: str | None, media_type: str) -> bool:
    """Whether a response of `media_type` is acceptable to a client that sent `header`."""
    if header is None or not header.strip():
        return True
    wanted = media_type.lower()
    main = wanted.split("/", 1)[0]
    best: float | None = None
    specificity = -1
    for r in parse_accept(header):
        level = 2 if r.type == wanted else 1 if r.type == f"{main}/*" else \
            0 if r.type == "*/*" else -1
        if level > specificity:  # the most specific range decides (RFC 9110 12.5.1)
            specificity, best = level, r.q
    return best is not None and best > 0


def requested_param(header: str | None, name: str) -> str | None:
    """The first value of parameter `name` on any acceptable range of `header`."""
    for r in media_ranges(header):
        if r.q > 0 and name.lower() in r.params:
            return r.params[name.lower()]
    return None
