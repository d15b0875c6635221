"""JWT signing and strict verification with pinned algorithms (pyjwt underneath).

Before any signature check the header and payload are parsed strictly (duplicate
keys, depth, size), and headers that would let a token choose its own key
(`jku`, `x5u`, `jwk`, `x5c`) or demand extensions (`crit`) are refused: trust
anchors are configured, never taken from the message itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jwt

from bytereplay.encoding import b64url_decode, strict_json_loads
from bytereplay.errors import BytereplayError, EncodingError, SignatureError, TooLargeError
from bytereplay.keys import (
    SIGNING_ALGS,
    PublicKey,
    SigningKey,
    check_alg,
    jwk_thumbprint,
    key_from_jwk,
)

MAX_TOKEN_BYTES = 256 * 1024
UNTRUSTED_HEADERS = ("jku", "x5u", "jwk", "x5c", "crit")


def sign_jwt(claims: Mapping[str, Any], key: SigningKey, *, typ: str = "JWT") -> str:
    check_alg(key.alg)
    return jwt.encode(dict(claims), key.private, algorithm=key.alg,
                      headers={"kid": key.kid, "typ": typ})


def parse_unverified(
    token: str, *, max_bytes: int = MAX_TOKEN_BYTES
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload, parsed strictly but NOT verified. For routing only."""
    if not isinstance(token, str):
        raise EncodingError("a JWT is text")
    if len(token) > max_bytes:
        raise TooLargeError(f"token is {len(token)} bytes; the limit is {max_bytes}")
    parts = token.strip().split(".")
    if len(parts) != 3:
        raise EncodingError("a JWT has three dot-separated parts")
    try:
        header = strict_json_loads(b64url_decode(parts[0]), max_bytes=max_bytes)
        payload = strict_json_loads(b64url_decode(parts[1]), max_bytes=max_bytes)
        b64url_decode(parts[2])  # canonical signature text: one token, one spelling
    except TooLargeError:
        raise
    except BytereplayError as exc:
        raise EncodingError(f"malformed JWT: {exc.detail}") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise EncodingError("JWT header and payload must be JSON objects")
    return header, payload


def check_header(header: Mapping[str, Any], allowed: tuple[str, ...]) -> str:
    for name in UNTRUSTED_HEADERS:
        if name in header:
            raise SignatureError(f"JWT header {name!r} is not trusted")
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise SignatureError("JWT header lacks 'alg'")
    return check_alg(alg, allowed)


def select_key(header: Mapping[str, Any], keys: Mapping[str, PublicKey]) -> PublicKey:
    kid = header.get("kid")
    if kid is None:
        if len(keys) == 1:
            return next(iter(keys.values()))
        raise SignatureError("JWT header lacks 'kid' and several keys are configured")
    if not isinstance(kid, str) or kid not in keys:
        raise SignatureError(f"unknown key id {kid!r}")
    return keys[kid]


def verify_jwt(
    token: str,
    keys: Mapping[str, PublicKey],
    *,
    algorithms: tuple[str, ...] = SIGNING_ALGS,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = 0.0,
    require: tuple[str, ...] = (),
    max_bytes: int = MAX_TOKEN_BYTES,
) -> dict[str, Any]:
    """Verify `token` against configured `keys` (kid -> public key); return its claims."""
    header, _ = parse_unverified(token, max_bytes=max_bytes)
    alg = check_header(header, algorithms)
    key = select_key(header, keys)
    options: dict[str, Any] = {"require": list(require), "verify_aud": audience is not None}
    try:
        claims: dict[str, Any] = jwt.decode(
            token.strip(), key, algorithms=[alg], issuer=issuer, audience=audience,
            leeway=leeway, options=options,  # type: ignore[arg-type]
        )
    except jwt.ExpiredSignatureError:
        raise SignatureError("token expired") from None
    except jwt.ImmatureSignatureError:
        raise SignatureError("token not yet valid") from None
    except jwt.InvalidAudienceError:
        raise SignatureError("wrong audience") from None
    except jwt.InvalidIssuerError:
        raise SignatureError("wrong issuer") from None
    except jwt.InvalidSignatureError:
        raise SignatureError("signature does not verify") from None
    except jwt.PyJWTError as exc:
        raise SignatureError(f"token refused: {exc}") from None
    return claims


def keys_from_jwks(jwks: Any) -> dict[str, PublicKey]:
    """kid -> public key for a JWKS document; keys without `kid` get their thumbprint."""
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise SignatureError("a JWKS is an object with a 'keys' array")
    out: dict[str, PublicKey] = {}
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict):
            raise SignatureError("each JWKS entry is a JSON object")
        if jwk.get("use", "sig") != "sig":
            continue
        kid = jwk.get("kid") or jwk_thumbprint(jwk)
        if not isinstance(kid, str):
            raise SignatureError("a JWK 'kid' is text")
        out[kid] = key_from_jwk(jwk)
    if not out:
        raise SignatureError("the JWKS holds no signature keys")
    return out
