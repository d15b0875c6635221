"""Fuzz the key ring file: `bytereplay.keyring.load_ring` on arbitrary `<stem>.ring.json`.

The ring lives beside two real keys (mode 0600). Crash: any exception other than a
`BytereplayError` (a ring that cannot be read is a `KeyConfigError` naming it), or a ring
accepted whose current key is retiring, whose kids are not the keys' thumbprints, or
that names a file outside its folder.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay"]):
    from bytereplay.keyring import load_ring, manifest_path, rotate

FOLDER = Path(tempfile.mkdtemp(prefix="bytereplay-fuzz-keyring-"))
KEY_FILE = FOLDER / "ear.pem"
rotate(KEY_FILE, at=1.9e9)
ROTATION = rotate(KEY_FILE, at=1.9e9 + 1)
MANIFEST = manifest_path(KEY_FILE)
GOOD = MANIFEST.read_bytes()


def test_one_input(data: bytes) -> None:
    MANIFEST.write_bytes(data)
    ring = load_ring(KEY_FILE)
    assert ring and ring[-1].retire_at is None, "a ring whose current key retires"
    for entry in ring:
        assert entry.key.kid == entry.key.jwk["kid"]
        assert (FOLDER / entry.file).resolve().parent == FOLDER.resolve(), entry.file


def seeds() -> list[bytes]:
    doc = json.loads(GOOD)
    swapped = {"keys": list(reversed(doc["keys"]))}
    return [GOOD, json.dumps(swapped).encode(), b'{"keys": []}', b"{}",
            json.dumps({"keys": [doc["keys"][-1]]}).encode()]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
