"""The HTTP `Accept` header (RFC 9110 section 12.5.1), read strictly enough to negotiate.

`media_ranges(header)` lists the ranges with their parameters (lower-cased names,
unquoted values) and their weight `q`; a range with `q=0` is "not acceptable".
`accepts(header, media_type)` says whether `media_type` is allowed: a missing or empty
header allows everything, otherwise an exact range, `type/*` or `*/*` with `q > 0`.
`requested_param(header, name)` is the first value of parameter `name` on any range
(e.g. `eat_profile` on `application/eat+jwt`). Malformed members are skipped, as a
server must tolerate them; an over-long header is refused (`UsageError`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bytereplay.errors import UsageError

MAX_ACCEPT_CHARS = 4096
MAX_RANGES = 64


@dataclass(frozen=True)
class MediaRange:
    type: str  # "type/subtype", lower case; may hold "*"
    params: dict[str, str] = field(default_factory=dict)
    q: float = 1.0


def _split(text: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes (a quoted parameter value may hold it)."""
    parts, cur, quoted, escaped = [], [], False, False
    for ch in text:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\" and quoted:
            cur.append(ch)
            escaped = True
        elif ch == '"':
            quoted = not quoted
            cur.append(ch)
        elif ch == sep and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        inner, out, escaped = value[1:-1], [], False
        for ch in inner:
            if escaped or ch != "\\":
                out.append(ch)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    return value


def _range(member: str) -> MediaRange | None:
    parts = _split(member, ";")
    kind = parts[0].strip().lower()
    main, slash, sub = kind.partition("/")
    if not slash or not main or not sub or any(c.isspace() for c in kind):
        return None
    params: dict[str, str] = {}
    q = 1.0
    for raw in parts[1:]:
        name, eq, value = raw.partition("=")
        name = name.strip().lower()
        if not eq or not name:
            continue
        if name == "q":
            try:
                q = float(value.strip())
            except ValueError:
                return None
            if not 0.0 <= q <= 1.0:
                return None
            continue
        params.setdefault(name, _unquote(value))
    return MediaRange(kind, params, q)


def media_ranges(header: str | None) -> list[MediaRange]:
    """The well-formed ranges of `header`, in order (empty for a missing header)."""
    if header is None or not header.strip():
        return []
    if len(header) > MAX_ACCEPT_CHARS:
        raise UsageError(f"the Accept header is longer than {MAX_ACCEPT_CHARS} characters")
    members = _split(header, ",")
    if len(members) > MAX_RANGES:
        raise UsageError(f"the Accept header lists more than {MAX_RANGES} media ranges")
    return [r for r in (_range(m) for m in members) if r is not None]


def accepts(header: str | None, media_type: str) -> bool:
    """Whether a response of `media_type` is acceptable to a client that sent `header`."""
    if header is None or not header.strip():
        return True
    wanted = media_type.lower()
    main = wanted.split("/", 1)[0]
    best: float | None = None
    specificity = -1
    for r in media_ranges(header):
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
