"""Fuzz what `bytereplay verify FILE` makes of a file: `verifier.cli.sniff_evidence`.

Crash: any exception other than a `UsageError`; Evidence handed on as text that is not
ASCII, or with a format other than jwt, cwt or None; a JSON file accepted without an
'evidence' text member.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.cli", "bytereplay"]):
    from bytereplay.errors import UsageError
    from verifier.cli import sniff_evidence

FORMATS = (None, "jwt", "cwt")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    fmt, body = FORMATS[data[0] % 3], data[1:]
    try:
        evidence, found = sniff_evidence(body, "fuzz", fmt)
    except UsageError:
        return
    assert found in FORMATS, found
    if isinstance(evidence, str):
        assert evidence.isascii() or body.lstrip().startswith(b"{"), "non-ASCII text handed on"
    else:
        assert found == "cwt", "binary Evidence handed on as something other than CWT"


def seeds() -> list[bytes]:
    return [
        b'\x00{"evidence": "eyJ.eyJ.sig", "evidence_format": "jwt", "output": "caf\xc3\xa9"}',
        b"\x00eyJhbGciOiJFUzI1NiJ9.eyJ9.c2ln\n", b"\x02\xd2\x84\x43\xa1\x01\x26\xa0\x40\x40",
        b"\x00hello world", b"\x00{}", b"\x01a.b", b"\x00\xd8\x3d\xd2",
    ]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
