"""Fuzz attestation-service tokens: NRAS answers (`verifier.nras`) and the claim mapping of
NRAS GPU tokens and Intel Trust Authority TDX tokens (`verifier.ita`).

Modes (first byte): an NRAS answer from fuzzed text, verified against a static test key
set; a genuine signed answer (two GPUs) with fuzzed bytes XORed in; fuzzed JSON claims
given to the mappings that run after a signature verified (`nras.gpu_facts`,
`ita.tdx_claims`), as a service's own (signed, but not trusted in shape) claims.

Crash: any exception other than a `BytereplayError`; a changed answer accepted whose
tokens differ from the genuine ones.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier", "bytereplay"]):
    from bytereplay.encoding import strict_json_loads
    from bytereplay.jose import sign_jwt
    from bytereplay.jwks import KeySet
    from bytereplay.keys import SigningKey
    from verifier import ita, nras
    from verifier.config import ExternalService

NOW = 1_750_000_000
ISS = "https://nras.fuzz"
NONCE = bytes(range(32))
KEY = SigningKey.generate("ES256")
KEYS = KeySet({"keys": [dict(KEY.jwk)]})
SERVICE = ExternalService(name="nras", jwks="unused", issuer=ISS, kind="nras")


def _sign(claims: dict[str, object]) -> str:
    return sign_jwt({"iss": ISS, "iat": NOW, "exp": NOW + 60, **claims}, KEY)


GPUS = {f"GPU-{i}": _sign({"eat_nonce": NONCE.hex(), "measres": "success",
                           "x-nvidia-gpu-driver-version": "550.90.07"}) for i in range(2)}
PLATFORM = _sign({"eat_nonce": NONCE.hex(), nras.OVERALL: True, "submods": {
    g: ["DIGEST", ["SHA-256", hashlib.sha256(t.encode()).hexdigest()]] for g, t in GPUS.items()}})
ANSWER = json.dumps([["JWT", PLATFORM], GPUS]).encode()
GENUINE = nras.parse_answer(ANSWER)


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        nras.verify_answer(body, SERVICE, KEYS, NONCE, NOW)
    elif mode == 1:  # the genuine answer with fuzzed bytes XORed in at an offset
        fdp = atheris.FuzzedDataProvider(body)
        at = fdp.ConsumeIntInRange(0, len(ANSWER) - 1)
        patch = fdp.ConsumeBytes(32)
        raw = bytearray(ANSWER)
        for i, b in enumerate(patch[: len(ANSWER) - at]):
            raw[at + i] ^= b
        nras.verify_answer(bytes(raw), SERVICE, KEYS, NONCE, NOW)
        assert nras.parse_answer(bytes(raw)) == GENUINE, "a changed answer was accepted"
    else:  # claims of any shape reach the mappings once a signature verified
        claims = strict_json_loads(body)
        if isinstance(claims, dict):
            nras.gpu_facts(claims)
            ita.tdx_claims(claims)


def seeds() -> list[bytes]:
    return [b"\x00" + ANSWER, b"\x00[]", b"\x01" + bytes(8), b"\x01\x40\x00\x01",
            b"\x02" + json.dumps({nras.MISMATCHES: [{"index": 3}], "measres": "x"}).encode(),
            b"\x02" + json.dumps({"tdx": {"attester_tcb_status": "UpToDate",
                                          "tdx_mrtd": "00"}}).encode()]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
