"""Fuzz the run record parsers: `RunRecord.from_json`, `from_cbor`, `from_dict`.

Crash: any exception other than a `BytereplayError`, or a record that parses but does not
round-trip (JSON and CBOR) to itself with one digest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay"]):
    from bytereplay.errors import BytereplayError
    from bytereplay.record import RunRecord

FIXTURES = harness.REPO / "fixtures" / "records"
COMPLETE = json.loads((FIXTURES / "complete.json").read_text())


def _leaves(d: dict, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        out.extend(_leaves(v, prefix + k + ".") if isinstance(v, dict) else [prefix + k])
    return out


LEAVES = _leaves(COMPLETE)


def _value(fdp: atheris.FuzzedDataProvider) -> object:
    kind = fdp.ConsumeIntInRange(0, 9)
    if kind == 0:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 600))  # up to 4800-bit integers
    if kind == 1:
        return fdp.ConsumeRegularFloat()
    if kind == 2:
        return fdp.ConsumeUnicode(fdp.ConsumeIntInRange(0, 80))
    if kind == 3:
        return fdp.ConsumeBool()
    if kind == 4:
        return None
    if kind == 5:
        return [fdp.ConsumeIntInRange(-2, 2**54) for _ in range(fdp.ConsumeIntInRange(0, 4))]
    if kind == 6:
        return {fdp.ConsumeUnicode(4): fdp.ConsumeIntInRange(0, 9)}
    if kind == 7:
        return "sha-256:" + fdp.ConsumeBytes(32).hex() + fdp.ConsumeUnicode(2)
    if kind == 8:
        return fdp.ConsumeIntInRange(2**53 - 2, 2**53 + 2) * (1 if fdp.ConsumeBool() else -1)
    return [fdp.ConsumeUnicode(8)]


def _check_round_trip(record: RunRecord) -> None:
    try:
        js, cb = record.to_json(), record.to_cbor()
        again_js, again_cb = RunRecord.from_json(js), RunRecord.from_cbor(cb)
    except BytereplayError as exc:
        raise AssertionError(f"accepted record cannot be written back: {exc}") from None
    assert again_js == record and again_cb == record, "record does not round-trip"
    assert again_js.digest() == record.digest() == again_cb.digest(), "digest unstable"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        record = RunRecord.from_json(body)
    elif mode == 1:
        record = RunRecord.from_cbor(body)
    else:
        fdp = atheris.FuzzedDataProvider(body)
        doc = json.loads(json.dumps(COMPLETE))
        for _ in range(fdp.ConsumeIntInRange(1, 3)):
            parts = LEAVES[fdp.ConsumeIntInRange(0, len(LEAVES) - 1)].split(".")
            node = doc
            for p in parts[:-1]:
                node = node[p] if isinstance(node.get(p), dict) else node.setdefault(p, {})
            node[parts[-1]] = _value(fdp)
        record = RunRecord.from_dict(doc)
    _check_round_trip(record)


def seeds() -> list[bytes]:
    out = []
    for path in sorted(FIXTURES.iterdir()):
        data = path.read_bytes()
        out.append((b"\x01" if path.suffix == ".cbor" else b"\x00") + data)
    out.append(b"\x00" + json.dumps(COMPLETE, separators=(",", ":")).encode())
    out.append(b"\x02" + bytes(range(64)))
    return out


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
