"""Fuzz `bytereplay.encoding.cbor_loads` (strict, deterministic CBOR).

Crash: any exception other than a `BytereplayError`, or accepted bytes that are not the
core deterministic encoding of what they decode to.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay"]):
    import cbor2

    from bytereplay.encoding import cbor_dumps, cbor_loads


def test_one_input(data: bytes) -> None:
    if not data:
        return
    allow_tags, body = bool(data[0] & 1), data[1:]
    value = cbor_loads(body, allow_tags=allow_tags)
    assert cbor_dumps(value) == body, "accepted CBOR is not in deterministic form"
    again = cbor_loads(cbor_dumps(value), allow_tags=allow_tags)
    assert cbor_dumps(again) == body, "decoded CBOR does not re-encode to itself"  # NaN-safe


def seeds() -> list[bytes]:
    values = [
        0, -1, 2**64 - 1, -(2**64), 1.5, 1e300, float("inf"), "text", b"bytes", [1, [2, [3]]],
        {"a": 1, "b": [True, False, None]}, {1: "x", -1: "y", "k": {"n": b"\x00"}},
        cbor2.CBORTag(18, [b"\xa1\x01\x26", {}, b"payload", b"sig"]),
        cbor2.CBORTag(61, cbor2.CBORTag(18, [b"", {}, None, b""])),
    ]
    out = [b"\x00" + cbor2.dumps(v, canonical=True) for v in values]
    out += [b"\x01" + cbor2.dumps(v, canonical=True) for v in values]
    out += [b"\x00\x9f\x01\xff", b"\x00\xa2\x61a\x01\x61a\x02", b"\x00\x01\x00",
            b"\x00\xc1\x1a\x00\x00\x00\x00", b"\x01\xd8\x18\x41\x00"]
    return out


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
