"""Fuzz the text parsers of `bytereplay.encoding` and `bytereplay.eat`:
`strict_json_loads`, `b64url_decode`, `decode_nonce`.

Crash: any exception other than a `BytereplayError`; base64url text that decodes but is
not the canonical text of its bytes; a nonce outside 8..64 bytes that is accepted.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay"]):
    from bytereplay.eat import NONCE_MAX, NONCE_MIN, decode_nonce
    from bytereplay.encoding import b64url_decode, b64url_encode, strict_json_loads


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 4, data[1:]
    if mode == 0:
        strict_json_loads(body)
    elif mode == 1:
        strict_json_loads(body.decode("utf-8", "surrogatepass") if body.isascii()
                          else body.decode("latin-1"))
    elif mode == 2:
        text = body.decode("latin-1")
        raw = b64url_decode(text)
        assert b64url_encode(raw) == text, "non-canonical base64url accepted"
    else:
        text = body.decode("latin-1")
        raw = decode_nonce(text)
        assert NONCE_MIN <= len(raw) <= NONCE_MAX, "nonce of wrong length accepted"


def seeds() -> list[bytes]:
    return [
        b'\x00{"a":[1,2.5,"x",null,true,{"b":{}}]}', b'\x00{"a":1,"a":2}', b"\x00[[[[[[[[]]]]]]]]",
        b"\x00NaN", b"\x001e400", b'\x01"\\ud800"', b"\x02AAAA", b"\x02AAA", b"\x02AA==",
        b"\x03" + b"A" * 43, b"\x03" + b"_" * 11,
    ]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
