"""Which install extras are present, read from the package's own metadata.

pyproject.toml is the one home of what each extra (`attester`, `verifier`,
`relying-party`) installs; the installed metadata repeats it as `Requires-Dist` lines
with an `extra == "..."` marker. An extra is present when every distribution it names,
following `bytereplay[...]` references, is installed. The command line uses this to
say, in one line, which extra a subcommand needs instead of failing on an import.

Where bytereplay has no installed metadata (a bare source tree on `sys.path`), every
extra counts as present and a missing module still surfaces as an import error.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import metadata

DIST = "bytereplay"
_REQ = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _requirements() -> list[tuple[str, tuple[str, ...], str | None]] | None:
    """(name, its extras, the extra that asks for it) per Requires-Dist line."""
    try:
        lines = metadata.requires(DIST)
    except metadata.PackageNotFoundError:
        return None
    out = []
    for line in lines or ():
        req, _, marker = line.partition(";")
        m = _REQ.match(req)
        if not m:
            continue
        extras = tuple(e.strip() for e in (m[2] or "").split(",") if e.strip())
        on = _EXTRA.search(marker)
        out.append((m[1], extras, on[1] if on else None))
    return out


def _installed(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


@cache
def missing(extra: str) -> tuple[str, ...]:
    """The distributions of `extra` that are not installed (empty when it is present)."""
    reqs = _requirements()
    if reqs is None:
        return ()
    gone: list[str] = []
    seen: set[str] = set()

    def walk(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dist, extras, on in reqs:
            if on != name:
                continue
            if dist.lower() == DIST:
                for inner in extras:
                    walk(inner)
            elif not _installed(dist) and dist not in gone:
                gone.append(dist)

    walk(extra)
    return tuple(gone)


def needs_line(command: str, extra: str) -> str | None:
    """One line saying that `command` needs `extra`, or None when it is installed."""
    gone = missing(extra)
    if not gone:
        return None
    return (f"bytereplay {command} needs the {extra} extra: pip install 'bytereplay[{extra}]' "
            f"(not installed: {', '.join(gone)})")
