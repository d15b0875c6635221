"""Fuzz JWT verification and key sets: `parse_unverified`, `verify_jwt`, `keys_from_jwks`.

Mode 1 signs whatever header and payload bytes the fuzzer makes with the pinned key, so
claim checks behind a *valid* signature are fuzzed too (Evidence is signed by a key the
attester chooses, so an attacker controls that path).

Crash: any exception other than a `BytereplayError`; a token accepted with an alg other
than the pinned one, or with a header that lets it choose its key.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay", "jwt"]):
    from jwt.algorithms import ECAlgorithm

    from bytereplay.encoding import b64url_encode, strict_json_loads
    from bytereplay.jose import keys_from_jwks, parse_unverified, verify_jwt
    from bytereplay.keys import SigningKey

KEY = SigningKey.generate()
KEYS = {KEY.kid: KEY.private.public_key()}
_ES256 = ECAlgorithm(ECAlgorithm.SHA256)
OPTIONS = [{}, {"issuer": "iss"}, {"audience": "aud"}, {"require": ("exp", "iat")},
           {"leeway": 30.0}, {"algorithms": ("ES256",)}]
UNTRUSTED = {"jku", "x5u", "jwk", "x5c", "crit"}


def sign(header: bytes, payload: bytes) -> str:
    si = b64url_encode(header) + "." + b64url_encode(payload)
    return si + "." + b64url_encode(_ES256.sign(si.encode(), KEY.private))


def _structured(body: bytes) -> tuple[bytes, bytes, dict]:
    if len(body) < 3:
        return b"{}", body, {}
    hlen = int.from_bytes(body[:2], "big") % (len(body) - 1)
    opts = OPTIONS[body[2] % len(OPTIONS)]
    return body[3:3 + hlen], body[3 + hlen:], opts


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    if mode == 0:
        token = body.decode("latin-1")
        parse_unverified(token)
        verify_jwt(token, KEYS)
    elif mode == 1:
        header, payload, opts = _structured(body)
        claims = verify_jwt(sign(header, payload), KEYS, **opts)
        h = json.loads(header)
        assert isinstance(claims, dict), "claims are not an object"
        assert h.get("alg") == "ES256", "token accepted with an alg other than the key's"
        assert not UNTRUSTED & set(h), "token accepted with a key-choosing header"
    else:
        keys = keys_from_jwks(strict_json_loads(body))
        assert keys, "empty key set accepted"


def _pack(header: dict | str, payload: dict | str, opt: int = 0) -> bytes:
    h = header if isinstance(header, str) else json.dumps(header)
    p = payload if isinstance(payload, str) else json.dumps(payload)
    return b"\x01" + len(h).to_bytes(2, "big") + bytes([opt]) + h.encode() + p.encode()


def seeds() -> list[bytes]:
    now = int(time.time())
    h = {"alg": "ES256", "kid": KEY.kid, "typ": "JWT"}
    p = {"iat": now, "exp": now + 60, "nbf": now - 1, "iss": "iss", "aud": "aud", "sub": "x"}
    out = [b"\x00" + sign(json.dumps(h).encode(), json.dumps(p).encode()).encode()]
    out += [_pack(h, p, i) for i in range(len(OPTIONS))]
    out += [_pack({**h, "crit": ["exp"]}, p), _pack({"alg": "none"}, p),
            _pack('{"alg":"ES256","alg":"none"}', p), _pack(h, '{"exp":1e400}')]
    out.append(b"\x02" + json.dumps({"keys": [KEY.jwk]}).encode())
    out.append(b"\x02" + json.dumps({"keys": [{"kty": "oct", "k": "AAAA"}]}).encode())
    out.append(b"\x02" + json.dumps({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}).encode())
    return out


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
