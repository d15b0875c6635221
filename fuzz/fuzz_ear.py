"""Fuzz attestation-result reading: `bytereplay.ear.read_ear` and `normalise`.

Crash: any exception other than a `BytereplayError`, or an EAR accepted whose status (or
any submod's) is better than the worst claim of a trustworthiness vector, or whose overall
status is better than its worst submod's. Seeds: both profiles, one and three submods.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay"]):
    from jwt.algorithms import ECAlgorithm

    from bytereplay.ar4si import STATUS_RANK, status_of
    from bytereplay.ear import PROFILES, SUBMOD, Submod, build_ear, normalise, read_ear
    from bytereplay.encoding import b64url_encode, strict_json_loads
    from bytereplay.jwks import KeySet
    from bytereplay.keys import SigningKey

KEY = SigningKey.generate()
KEYSET = KeySet({"keys": [KEY.jwk]})
HEADER = json.dumps({"alg": "ES256", "kid": KEY.kid, "typ": "ear+jwt"}).encode()
_ES256 = ECAlgorithm(ECAlgorithm.SHA256)


def sign(payload: bytes) -> str:
    si = b64url_encode(HEADER) + "." + b64url_encode(payload)
    return si + "." + b64url_encode(_ES256.sign(si.encode(), KEY.private))


def _check(ear: object) -> None:
    status, subs = ear.status, ear.submods  # type: ignore[attr-defined]
    for sub in subs.values():
        assert STATUS_RANK[sub.status] >= STATUS_RANK[status_of(sub.vector)], \
            "submod status better than its vector"
        assert STATUS_RANK[status] >= STATUS_RANK[sub.status], "status better than a submod"


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        _check(read_ear(body.decode("latin-1"), KEYSET))
    elif mode == 1:
        _check(read_ear(sign(body), KEYSET))
    else:
        value = strict_json_loads(body)
        if isinstance(value, dict):
            _check(normalise(value))


def seeds() -> list[bytes]:
    now = int(time.time())
    out = []
    ext = {"bytereplay.replay": {"verdict": "match"},
           "bytereplay.output_hash": "sha-256:" + "0" * 64}
    for profile in PROFILES:
        one = build_ear(vector={"executables": 2, "hardware": 32, "configuration": 97},
                        nonce="bm9uY2Vub25jZQ", iat=now, policy_id="default",
                        extensions=ext, profile=profile)
        three = build_ear(submods={
            SUBMOD: Submod({"executables": 2}, ("default",), ext),
            "cpu": Submod({"hardware": 2, "instance-identity": 2}, ("default",)),
            "gpu0": Submod({"hardware": 32}, ("default",))}, nonce=None, iat=now,
            profile=profile, raw_evidence=b"evidence")
        for claims in (one, three):
            text = json.dumps(claims).encode()
            out += [b"\x00" + sign(text).encode(), b"\x01" + text, b"\x02" + text]
    return out


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
