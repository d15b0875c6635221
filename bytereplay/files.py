"""Reading a file the user named, bounded: one rule for every CLI and file source.

`read_bounded(name, what, limit)` reads at most `limit` bytes of `name` (`-` is standard
input) and refuses, with the given typed error naming `what` and the file, a file that
cannot be read or is larger than `limit`. Nothing larger is ever read into memory.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bytereplay.errors import BytereplayError, UsageError


def read_bounded(name: str | Path, what: str, limit: int, *,
                 error: type[BytereplayError] = UsageError) -> bytes:
    try:
        if str(name) == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with open(name, "rb") as fh:
                data = fh.read(limit + 1)
    except OSError as exc:
        raise error(f"cannot read {what} {name}: {exc.strerror}") from None
    if len(data) > limit:
        raise error(f"{what} {name} is larger than {limit} bytes")
    return data
