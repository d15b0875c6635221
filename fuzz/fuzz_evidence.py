"""Fuzz Evidence decoding: `attester.evidence.decode_evidence` (EAT as JWT and as CWT).

Modes 2..4 sign what the fuzzer makes with the cnf key, so the checks behind a valid
signature (claims, cnf key, record, request) are fuzzed too.

Crash: any exception other than a `BytereplayError`; Evidence accepted that carries a
header other than the exact protected {alg, kid}.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["attester.evidence", "bytereplay"]):
    import kit

    from bytereplay.encoding import cbor_dumps
    from bytereplay.evidence import decode_evidence
    from bytereplay.home import Home
    from bytereplay.keys import thumbprint_bytes

KIT = kit.EvidenceKit(Home.resolve(tempfile.mkdtemp(prefix="br-fuzz-evidence-")))
atexit.register(shutil.rmtree, KIT.home.root, True)
NONCE = bytes(range(32))
CLAIMS = KIT.claims(NONCE)
PAYLOAD = cbor_dumps(kit.claims_to_cbor(CLAIMS))
PROTECTED = cbor_dumps({1: -7, 4: thumbprint_bytes(KIT.key.jwk)})
JWT_HEADER = {"alg": "ES256", "kid": KIT.key.kid, "typ": "eat+jwt"}


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 5, data[1:]
    if mode == 0:
        decode_evidence(body)
    elif mode == 1:
        decode_evidence(body.decode("latin-1"), "cwt" if data[0] & 0x80 else None)
    elif mode == 2:  # the claims map, validly signed
        decode_evidence(kit.cose_sign1(PROTECTED, body, KIT.key), "cwt")
    elif mode == 3:  # the protected header, validly signed
        if decode_evidence(kit.cose_sign1(body, PAYLOAD, KIT.key), "cwt"):
            assert body == PROTECTED, "Evidence accepted with another protected header"
    else:  # the JWT payload, validly signed
        decode_evidence(kit.jws(JWT_HEADER, body, KIT.key))


def seeds() -> list[bytes]:
    import json

    jwt = KIT.make(NONCE)
    cwt = KIT.make(NONCE, fmt="cwt")
    assert isinstance(jwt, str) and isinstance(cwt, bytes)
    return [b"\x00" + cwt, b"\x00" + jwt.encode(), b"\x01" + jwt.encode(), b"\x02" + PAYLOAD,
            b"\x03" + PROTECTED, b"\x04" + json.dumps(CLAIMS).encode()]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
