"""COSE (RFC 9052 / RFC 9053) as bytereplay uses it: COSE_Sign1 with one signer.

- `sig_structure(protected, payload)`: the Sig_structure ["Signature1", protected,
  h'', payload] that is signed;
- `sign` / `verify`: ES256, ES384 (ECDSA signatures as raw r||s), EdDSA (Ed25519) and
  PS384 over it;
- `protected_header`: reads a protected header strictly: only alg, cty, kid and typ;
  `crit`, the untrusted x5* certificate headers and HMAC algorithms are refused;
- `jwk_to_cose_key` / `cose_key_to_jwk`: public keys between JWK and COSE_Key
  (private parameters refused), as RFC 8747 `cnf` carries them.

The Evidence (`bytereplay.evidence`, `attester.evidence`) is the only user today.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from bytereplay import eat
from bytereplay.encoding import b64url_decode, b64url_encode, cbor_dumps, cbor_loads, is_int
from bytereplay.errors import EvidenceError, SignatureError
from bytereplay.keys import PublicKey, SigningKey, check_alg, key_from_jwk, public_jwk

COSE_SIGN1_TAG = 18
CWT_TAG = 61
COSE_ALG_IDS: dict[str, int] = {"ES256": -7, "ES384": -35, "EdDSA": -8, "PS384": -38}
COSE_ALG_NAMES: dict[int, str] = {v: k for k, v in COSE_ALG_IDS.items()}
COSE_HMAC_IDS = frozenset({4, 5, 6, 7})  # HMAC 256/64, 256/256, 384/384, 512/512
H_ALG, H_CRIT, H_CTY, H_KID, H_TYP = 1, 2, 3, 4, 16
H_UNTRUSTED = {32: "x5bag", 33: "x5chain", 34: "x5t", 35: "x5u"}
H_ALLOWED = frozenset({H_ALG, H_CTY, H_KID, H_TYP})
CNF_COSE_KEY = 1  # RFC 8747: cnf {1: COSE_Key}


_EC2_CRV = {"P-256": 1, "P-384": 2}
_EC2_CRV_NAMES = {v: k for k, v in _EC2_CRV.items()}


def jwk_to_cose_key(jwk: Mapping[str, Any]) -> dict[int, Any]:
    """A public JWK as a COSE_Key (RFC 9053): kty, alg and the public parameters only."""
    kty = jwk.get("kty")
    alg = COSE_ALG_IDS.get(str(jwk.get("alg")))
    crv = jwk.get("crv")
    out: dict[int, Any]
    if kty == "EC" and isinstance(crv, str) and crv in _EC2_CRV:
        out = {1: 2, -1: _EC2_CRV[jwk["crv"]], -2: b64url_decode(jwk["x"]),
               -3: b64url_decode(jwk["y"])}
    elif kty == "OKP" and jwk.get("crv") == "Ed25519":
        out = {1: 1, -1: 6, -2: b64url_decode(jwk["x"])}
    elif kty == "RSA":
        out = {1: 3, -1: b64url_decode(jwk["n"]), -2: b64url_decode(jwk["e"])}
    else:
        raise SignatureError(f"no COSE_Key form for key type {kty!r}")
    if alg is not None:
        out[3] = alg
    return out


_COSE_KEY_PARAMS = {1: (-1, -2), 2: (-1, -2, -3), 3: (-1, -2)}  # OKP, EC2, RSA


def cose_key_to_jwk(ck: Any) -> dict[str, Any]:
    """A public JWK (with kid = thumbprint) from a COSE_Key; private parameters refused."""
    if not isinstance(ck, dict) or not all(isinstance(k, int) for k in ck):
        raise EvidenceError("cnf: a COSE_Key is a map with integer labels")
    kty = ck.get(1)
    if not is_int(kty) or kty not in _COSE_KEY_PARAMS:
        raise EvidenceError(f"cnf: unsupported COSE key type {kty!r}")
    params = _COSE_KEY_PARAMS[kty]
    extra = set(ck) - {1, 3, *params}
    if extra:
        raise EvidenceError(f"cnf: COSE_Key labels {sorted(extra)} are not allowed "
                            "(private or unknown key parameters)")
    missing = [label for label in params if label not in ck]
    if missing:
        raise EvidenceError(f"cnf: COSE_Key lacks labels {missing}")
    byte_params = params if kty == 3 else params[1:]
    if not all(isinstance(ck[label], bytes) for label in byte_params):
        raise EvidenceError("cnf: COSE_Key key parameters must be byte strings")
    jwk: dict[str, Any]
    if kty == 2:
        crv = _EC2_CRV_NAMES.get(ck[-1]) if is_int(ck[-1]) else None
        if crv is None:
            raise EvidenceError(f"cnf: unsupported EC2 curve {ck[-1]!r}")
        jwk = {"kty": "EC", "crv": crv, "x": b64url_encode(ck[-2]), "y": b64url_encode(ck[-3])}
    elif kty == 1:
        if ck[-1] != 6 or isinstance(ck[-1], bool):
            raise EvidenceError(f"cnf: unsupported OKP curve {ck[-1]!r}")
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(ck[-2])}
    else:
        jwk = {"kty": "RSA", "n": b64url_encode(ck[-1]), "e": b64url_encode(ck[-2])}
    try:
        key = key_from_jwk(jwk)
    except SignatureError as exc:
        raise EvidenceError(f"cnf: {exc.detail}") from None
    out = public_jwk(key)
    if 3 in ck and (not is_int(ck[3]) or COSE_ALG_NAMES.get(ck[3]) != out["alg"]):
        raise EvidenceError(f"cnf: COSE_Key alg {ck[3]!r} does not fit the key")
    return out


def coord_len(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> int:
    return (key.curve.key_size + 7) // 8


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor_dumps(["Signature1", protected, b"", payload])


def sign(key: SigningKey, data: bytes) -> bytes:
    priv = key.private
    if isinstance(priv, ec.EllipticCurvePrivateKey):
        h: hashes.HashAlgorithm = hashes.SHA256() if key.alg == "ES256" else hashes.SHA384()
        r, s = decode_dss_signature(priv.sign(data, ec.ECDSA(h)))
        n = coord_len(priv)
        return r.to_bytes(n, "big") + s.to_bytes(n, "big")
    if isinstance(priv, ed25519.Ed25519PrivateKey):
        return priv.sign(data)
    return priv.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
                     hashes.SHA384())


def verify(public: PublicKey, alg: str, signature: bytes, data: bytes) -> None:
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            n = coord_len(public)
            if len(signature) != 2 * n:
                raise SignatureError(f"an {alg} COSE signature is {2 * n} bytes (r||s)")
            r, s = int.from_bytes(signature[:n], "big"), int.from_bytes(signature[n:], "big")
            h: hashes.HashAlgorithm = hashes.SHA256() if alg == "ES256" else hashes.SHA384()
            public.verify(encode_dss_signature(r, s), data, ec.ECDSA(h))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            public.verify(signature, data)
        elif isinstance(public, rsa.RSAPublicKey):
            public.verify(signature, data,
                          padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
                          hashes.SHA384())
        else:  # pragma: no cover - key_from_jwk returns only the three types
            raise SignatureError("unsupported key type")
    except InvalidSignature:
        raise SignatureError("signature does not verify") from None


def protected_header(protected_bytes: bytes) -> tuple[str, bytes]:
    """The algorithm and kid of a COSE_Sign1 protected header, refusing every label
    this profile does not allow (crit, x5*, HMAC algorithms)."""
    if not isinstance(protected_bytes, bytes) or not protected_bytes:
        raise EvidenceError("COSE_Sign1 protected header must be a non-empty byte string")
    header = cbor_loads(protected_bytes)
    if not isinstance(header, dict):
        raise EvidenceError("COSE protected header is a map")
    for label in header:
        if label == H_CRIT:
            raise SignatureError("COSE header 'crit' is refused: no extensions are supported")
        if label in H_UNTRUSTED:
            raise SignatureError(f"COSE header {H_UNTRUSTED[label]!r} is not trusted: "
                                 "the key comes from cnf, bound by the quote")
        if label not in H_ALLOWED:
            raise SignatureError(f"COSE header label {label!r} is not allowed")
    alg_id = header.get(H_ALG)
    if is_int(alg_id) and alg_id in COSE_HMAC_IDS:
        raise SignatureError("COSE HMAC algorithms are refused: only asymmetric algorithms")
    if not is_int(alg_id) or alg_id not in COSE_ALG_NAMES:
        raise SignatureError(f"COSE algorithm {alg_id!r} is not allowed; "
                             f"allowed: {sorted(COSE_ALG_NAMES)}")
    alg = check_alg(COSE_ALG_NAMES[alg_id])
    kid = header.get(H_KID)
    if not isinstance(kid, bytes):
        raise SignatureError("COSE protected header lacks kid (the key thumbprint, bytes)")
    if H_TYP in header and header[H_TYP] not in (eat.MEDIA_CWT, "eat+cwt"):
        raise EvidenceError(f"COSE typ {header[H_TYP]!r} is not {eat.MEDIA_CWT!r}")
    return alg, kid
