"""JWT signing and strict verification with pinned algorithms.

Before any signature check the header and payload are parsed strictly (duplicate
keys, depth, size, canonical unpadded base64url in all three parts), and headers that
would let a token choose its own key (`jku`, `x5u`, `jwk`, `x5c`) or demand extensions
(`crit`) are refused: trust anchors are configured, never taken from the message itself.

Each token is parsed once (`parse_jwt`); `verify_parsed` checks the signature over the
signing input directly with `cryptography` and then the registered claims the way
pyjwt 2.x does (`require`, `iat`/`nbf`/`exp` with leeway, `iss`, `aud` when an audience
is given, `sub`/`jti` types). `sign_jwt` writes tokens as pyjwt does, with `cryptography`.
"""

from __future__ import annotations

import calendar
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from bytereplay.encoding import b64url_decode, b64url_encode, compact_json, strict_json_loads
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
_PARTS = ("header", "payload", "signature")


_COMPACT_SORTED = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
# The encoded header by (alg, kid, typ): a signer writes the same few again and again.
_HEADERS: dict[tuple[str, str, str], str] = {}


def sign_jwt(claims: Mapping[str, Any], key: SigningKey, *, typ: str = "JWT") -> str:
    """A compact JWS of `claims` with header {"alg", "kid", "typ"}, as pyjwt writes it
    (sorted compact header, compact payload, `datetime` times as seconds)."""
    check_alg(key.alg)
    payload = dict(claims)
    for name in ("exp", "iat", "nbf"):
        if isinstance(payload.get(name), datetime):
            payload[name] = calendar.timegm(payload[name].utctimetuple())
    if "iss" in payload and not isinstance(payload["iss"], str):
        raise TypeError("Issuer (iss) must be a string.")
    header_key = (key.alg, key.kid, typ)
    header_b64 = _HEADERS.get(header_key)
    if header_b64 is None:
        header = _COMPACT_SORTED.encode({"alg": key.alg, "kid": key.kid, "typ": typ}).encode()
        header_b64 = b64url_encode(header)
        if len(_HEADERS) >= 64:
            _HEADERS.clear()
        _HEADERS[header_key] = header_b64
    body = compact_json(payload)
    signing_input = f"{header_b64}.{b64url_encode(body)}"
    signature = _sign(key, signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def _sign(key: SigningKey, data: bytes) -> bytes:
    priv = key.private
    alg = key.alg
    if alg in _EC_CURVES:
        curve = _EC_CURVES[alg][0]
        if not isinstance(priv, ec.EllipticCurvePrivateKey) or priv.curve.name != curve:
            raise SignatureError(f"the signing key does not fit {alg}")
        r, s_ = decode_dss_signature(priv.sign(data, _ECDSA[alg]))
        n = (priv.curve.key_size + 7) // 8
        return r.to_bytes(n, "big") + s_.to_bytes(n, "big")
    if alg == "EdDSA":
        if not isinstance(priv, ed25519.Ed25519PrivateKey):
            raise SignatureError("the signing key does not fit EdDSA")
        return priv.sign(data)
    if alg in _RSA_HASHES and isinstance(priv, rsa.RSAPrivateKey):
        hash_alg = _RSA_HASHES[alg]()
        pad: padding.AsymmetricPadding = (
            padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
            if alg.startswith("PS") else padding.PKCS1v15())
        return priv.sign(data, pad, hash_alg)
    raise SignatureError(f"the signing key does not fit {alg}")


@dataclass(frozen=True)
class ParsedJwt:
    """A JWT parsed strictly but NOT verified: its header and payload objects, the bytes
    its signature covers (`header.payload` as sent) and the raw signature."""

    header: dict[str, Any]
    payload: dict[str, Any]
    signing_input: bytes
    signature: bytes


def parse_jwt(token: str, *, max_bytes: int = MAX_TOKEN_BYTES) -> ParsedJwt:
    """Parse `token` strictly, once; verify it with `verify_parsed`."""
    if not isinstance(token, str):
        raise EncodingError("a JWT is text")
    if len(token) > max_bytes:
        raise TooLargeError(f"token is {len(token)} bytes; the limit is {max_bytes}")
    token = token.strip()
    parts = token.split(".")
    if len(parts) != 3:
        raise EncodingError("a JWT has three dot-separated parts")
    part = _PARTS[0]
    try:
        header = strict_json_loads(b64url_decode(parts[0]), max_bytes=max_bytes)
        part = _PARTS[1]
        payload = strict_json_loads(b64url_decode(parts[1]), max_bytes=max_bytes)
        part = _PARTS[2]
        signature = b64url_decode(parts[2])  # canonical signature text: one token, one spelling
    except TooLargeError:
        raise
    except BytereplayError as exc:
        raise EncodingError(f"malformed JWT {part}: {exc.detail}") from None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise EncodingError("JWT header and payload must be JSON objects")
    # The text is ASCII: the base64url alphabet and two dots, checked above.
    signing_input = token[:len(parts[0]) + 1 + len(parts[1])].encode("ascii")
    return ParsedJwt(header, payload, signing_input, signature)


def parse_unverified(
    token: str, *, max_bytes: int = MAX_TOKEN_BYTES
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and payload, parsed strictly but NOT verified. For routing only."""
    parsed = parse_jwt(token, max_bytes=max_bytes)
    return parsed.header, parsed.payload


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


# -- signatures -----------------------------------------------------------------------

_EC_CURVES = {"ES256": ("secp256r1", hashes.SHA256), "ES384": ("secp384r1", hashes.SHA384)}
_ECDSA = {alg: ec.ECDSA(hash_cls()) for alg, (_, hash_cls) in _EC_CURVES.items()}  # immutable
_RSA_HASHES = {"RS256": hashes.SHA256, "PS384": hashes.SHA384}


def verify_signature(alg: str, key: PublicKey, signing_input: bytes, signature: bytes) -> None:
    """Check a JWS signature (ES256, ES384 as raw r||s; EdDSA; PS384; RS256) with `key`,
    which must be of the type and curve `alg` names. Raises `SignatureError`."""
    try:
        if alg in _EC_CURVES:
            curve = _EC_CURVES[alg][0]
            if not isinstance(key, ec.EllipticCurvePublicKey):
                raise SignatureError(f"token refused: the key is not an EC key, as {alg} needs")
            if key.curve.name != curve:
                raise SignatureError(f"token refused: the key's curve {key.curve.name!r} "
                                     f"does not fit {alg} (curve {curve!r})")
            n = (key.curve.key_size + 7) // 8
            if len(signature) != 2 * n:
                raise SignatureError("signature does not verify")
            der = encode_dss_signature(int.from_bytes(signature[:n], "big"),
                                       int.from_bytes(signature[n:], "big"))
            key.verify(der, signing_input, _ECDSA[alg])
        elif alg == "EdDSA":
            if not isinstance(key, ed25519.Ed25519PublicKey):
                raise SignatureError("token refused: the key is not an Ed25519 key, "
                                     "as EdDSA needs")
            key.verify(signature, signing_input)
        elif alg in _RSA_HASHES:
            if not isinstance(key, rsa.RSAPublicKey):
                raise SignatureError(f"token refused: the key is not an RSA key, as {alg} needs")
            hash_alg = _RSA_HASHES[alg]()
            pad: padding.AsymmetricPadding = (
                padding.PSS(mgf=padding.MGF1(hash_alg), salt_length=hash_alg.digest_size)
                if alg.startswith("PS") else padding.PKCS1v15())
            key.verify(signature, signing_input, pad, hash_alg)
        else:
            raise SignatureError(f"token refused: algorithm {alg!r} is not supported")
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None


# -- claims (the checks pyjwt 2.x makes, with this module's messages) ------------------

def _numeric(payload: Mapping[str, Any], name: str, what: str) -> int:
    try:
        return int(payload[name])
    except (ValueError, TypeError, OverflowError):
        raise SignatureError(f"token refused: {what} claim ({name}) must be an integer.") from None


def check_claims(
    payload: Mapping[str, Any],
    *,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = 0.0,
    require: tuple[str, ...] = (),
    now: float | None = None,
) -> None:
    """Registered claims: required ones present (not null); `iat` and `nbf` not after
    now + leeway; `exp` after now - leeway; `iss` equal to `issuer` when given; `aud`
    holding `audience` when given (ignored otherwise); `sub` and `jti` text when present."""
    for name in require:
        if payload.get(name) is None:
            raise SignatureError(f'token refused: Token is missing the "{name}" claim')
    now = time.time() if now is None else now
    if "iat" in payload and _numeric(payload, "iat", "Issued At") > now + leeway:
        raise SignatureError("token not yet valid")
    if "nbf" in payload and _numeric(payload, "nbf", "Not Before") > now + leeway:
        raise SignatureError("token not yet valid")
    if "exp" in payload and _numeric(payload, "exp", "Expiration Time") <= now - leeway:
        raise SignatureError("token expired")
    if issuer is not None:
        if "iss" not in payload:
            raise SignatureError('token refused: Token is missing the "iss" claim')
        if payload["iss"] != issuer:
            raise SignatureError("wrong issuer")
    if audience is not None:
        aud = payload.get("aud")
        if not aud:
            raise SignatureError('token refused: Token is missing the "aud" claim')
        auds = [aud] if isinstance(aud, str) else aud
        if not isinstance(auds, list) or not all(isinstance(a, str) for a in auds) \
                or audience not in auds:
            raise SignatureError("wrong audience")
    if "sub" in payload and not isinstance(payload["sub"], str):
        raise SignatureError("token refused: Subject must be a string")
    if "jti" in payload and not isinstance(payload["jti"], str):
        raise SignatureError("token refused: JWT ID must be a string")


def verify_parsed(
    parsed: ParsedJwt,
    keys: Mapping[str, PublicKey],
    *,
    algorithms: tuple[str, ...] = SIGNING_ALGS,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = 0.0,
    require: tuple[str, ...] = (),
    now: float | None = None,
) -> dict[str, Any]:
    """Verify a token parsed by `parse_jwt` against `keys` (kid -> public key); return its
    claims (the parsed payload itself). `now` (seconds since the epoch) is the time the
    registered times are checked at; None: the wall clock."""
    header = parsed.header
    alg = check_header(header, algorithms)
    if "kid" in header and not isinstance(header["kid"], str):
        raise SignatureError(f"unknown key id {header['kid']!r}")
    if header.get("b64", True) is False:  # RFC 7797 needs `crit`, which is refused
        raise SignatureError("token refused: an unencoded payload (b64: false) is not supported")
    key = select_key(header, keys)
    verify_signature(alg, key, parsed.signing_input, parsed.signature)
    check_claims(parsed.payload, issuer=issuer, audience=audience, leeway=leeway,
                 require=require, now=now)
    return parsed.payload


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
    return verify_parsed(parse_jwt(token, max_bytes=max_bytes), keys, algorithms=algorithms,
                         issuer=issuer, audience=audience, leeway=leeway, require=require)


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
