"""Fuzz the CoRIM reader `bytereplay.corim.read` / `inspect` (unsigned and signed).

The first byte picks the input's form: raw bytes as given, or the bytes as the payload of
a COSE_Sign1 signed with the configured key (so the fuzzer reaches the payload reader
through a valid signature). Crash: any exception other than a `BytereplayError`; an
accepted CoRIM whose values do not survive the writer and the reader unchanged; a
signature accepted from another key than the configured one.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay"]):
    import cbor2

    from bytereplay import corim
    from bytereplay.encoding import cbor_dumps
    from bytereplay.errors import BytereplayError
    from bytereplay.keys import SigningKey

KEY = SigningKey.generate("ES256")
OTHER = SigningKey.generate("ES256")
ENV = {0: {1: "bytereplay", 2: "llm-inference"}}


def _signed(payload: bytes, key: SigningKey) -> bytes:
    from bytereplay import cose

    protected = cbor_dumps({1: -7, 3: corim.MEDIA_CORIM, 8: cbor_dumps({0: {0: "fuzz"}})})
    signature = cose.sign(key, cose.sig_structure(protected, payload))
    return cbor_dumps(cbor2.CBORTag(18, [protected, {}, payload, signature]))


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 1:
        body = _signed(body, KEY)
    elif mode == 2:
        body = _signed(body, OTHER)
    try:
        read = corim.read(body, [KEY.private.public_key()])
    except BytereplayError:
        with contextlib.suppress(BytereplayError):
            corim.inspect(body)
        return
    assert mode != 2, "a CoRIM signed by another key was accepted"
    assert corim.inspect(body).values == read.values
    assert corim.read(corim.encode(read.values, read.id[:256] or "x")).values == read.values, \
        "the values do not survive the writer"


def seeds() -> list[bytes]:
    digest = [[1, b"\x11" * 32]]
    comid = {1: {0: "c"}, 4: {0: [[ENV, [{0: "model", 1: {2: digest}},
                                         {0: "container", 1: {2: digest}}]],
                                  [ENV, [{0: "runtime", 1: {0: {0: "0.1.0"}, 11: "rt"}}]],
                                  [ENV, [{0: "framework/torch", 1: {0: {0: "2.13.0", 1: 1}}}]]]}}
    unsigned = cbor_dumps(cbor2.CBORTag(501, {0: "seed", 1: [cbor2.CBORTag(506, comid)]}))
    wrapped = cbor_dumps(cbor2.CBORTag(501, {0: b"\x00" * 16,
                                             1: [cbor2.CBORTag(506, cbor_dumps(comid))]}))
    writer = corim.encode({"model_digests": ["sha-256:" + "ab" * 32],
                           "runtimes": [{"name": "bytereplay", "version": "0.1.0"}]}, "w")
    return [b"\x00" + unsigned, b"\x01" + unsigned, b"\x00" + wrapped, b"\x00" + writer,
            b"\x00" + corim.sign(writer, KEY, "seed"), b"\x02" + writer,
            b"\x00" + unsigned[:-3], b"\x00\xd9\x01\xf4\xa0"]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
