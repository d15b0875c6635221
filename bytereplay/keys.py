"""Asymmetric signing keys: generation on first start (mode 0600), JWK export, RFC 7638 thumbprints.

Only asymmetric algorithms exist here; `none` and HMAC are refused everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAPSSAlgorithm

from bytereplay.encoding import b64url_encode
from bytereplay.errors import KeyConfigError, SignatureError

# Algorithms we sign with. ES256 is the default.
SIGNING_ALGS: tuple[str, ...] = ("ES256", "ES384", "EdDSA", "PS384")
# Algorithms accepted from external attestation services (their tokens, their JWKS).
EXTERNAL_ALGS: tuple[str, ...] = ("RS256", "PS384", "ES256", "ES384")
DEFAULT_ALG = "ES256"
MIN_RSA_BITS = 2048
REFUSED_ALGS = frozenset({"none", "HS256", "HS384", "HS512"})

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | rsa.RSAPublicKey

_THUMBPRINT_MEMBERS = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}


def check_alg(alg: str, allowed: tuple[str, ...] = SIGNING_ALGS) -> str:
    if alg in REFUSED_ALGS or alg.upper().startswith("HS") or alg.lower() == "none":
        raise SignatureError(f"algorithm {alg!r} is refused: only asymmetric algorithms are allowed")
    if alg not in allowed:
        raise SignatureError(f"algorithm {alg!r} is not in the allowed list {list(allowed)}")
    return alg


def generate_private_key(alg: str = DEFAULT_ALG) -> PrivateKey:
    check_alg(alg)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "ES384":
        return ec.generate_private_key(ec.SECP384R1())
    if alg == "EdDSA":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(public_exponent=65537, key_size=3072)


def alg_for_key(key: PrivateKey | PublicKey) -> str:
    if isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)):
        return {"secp256r1": "ES256", "secp384r1": "ES384"}.get(key.curve.name, "unsupported")
    if isinstance(key, (ed25519.Ed25519PrivateKey, ed25519.Ed25519PublicKey)):
        return "EdDSA"
    return "PS384"


def public_jwk(key: PrivateKey | PublicKey, *, use: str = "sig") -> dict[str, Any]:
    """The public JWK (RFC 7517) with `kid` = its RFC 7638 thumbprint and `alg` pinned."""
    public = key.public_key() if hasattr(key, "public_key") else key
    if isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ed25519.Ed25519PublicKey):
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = RSAPSSAlgorithm.to_jwk(public, as_dict=True)
    out = {k: v for k, v in jwk.items() if k in ("kty", "crv", "x", "y", "n", "e")}
    out.update({"alg": alg_for_key(public), "use": use, "kid": jwk_thumbprint(out)})
    return out


def thumbprint_bytes(jwk: dict[str, Any]) -> bytes:
    """The raw 32-byte RFC 7638 thumbprint, as used in the quote's report data."""
    members = _THUMBPRINT_MEMBERS.get(str(jwk.get("kty")))
    if members is None:
        raise SignatureError(f"unsupported key type {jwk.get('kty')!r}")
    required: dict[str, str] = {}
    for name in members:
        value = jwk.get(name)
        # Every required member is base64url or a registered name: plain ASCII text.
        if not isinstance(value, str) or not value.isascii():
            raise SignatureError(f"JWK member {name!r} is missing or not ASCII text")
        required[name] = value
    text = json.dumps(required, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("ascii")).digest()


def jwk_thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, unpadded base64url."""
    return b64url_encode(thumbprint_bytes(jwk))


def key_from_jwk(jwk: dict[str, Any]) -> PublicKey:
    """A public key from a JWK; private members and symmetric keys are refused."""
    if not isinstance(jwk, dict):
        raise SignatureError("a JWK is a JSON object")
    kty = jwk.get("kty")
    if kty == "oct":
        raise SignatureError("symmetric (oct) keys are refused")
    if "d" in jwk:
        raise SignatureError("a private key was published as a verification key")
    try:
        if kty == "EC":
            key: Any = ECAlgorithm.from_jwk(jwk)
        elif kty == "OKP":
            key = OKPAlgorithm.from_jwk(jwk)
        elif kty == "RSA":
            key = RSAPSSAlgorithm.from_jwk(jwk)
        else:
            raise SignatureError(f"unsupported key type {kty!r}")
    except SignatureError:
        raise
    except Exception as exc:  # pyjwt raises InvalidKeyError and friends on junk
        raise SignatureError(f"unusable JWK: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)):
        raise SignatureError("a JWK must carry a public key")
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise SignatureError(f"RSA key of {key.key_size} bits refused; at least {MIN_RSA_BITS} required")
    return key


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write `key` as PKCS#8 PEM to a new file of mode 0600 (never over an existing one)."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_EXCL: two processes starting at once never overwrite each other's key.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)


def read_private_key(path: Path) -> PrivateKey:
    """The private key in `path`, refused unless its mode gives the group and others
    nothing (0600 or 0400): a key others could read is no longer the signer's alone."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        raise KeyConfigError(f"signing key file {path} does not exist") from None
    except OSError as exc:
        raise KeyConfigError(f"cannot read signing key file {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyConfigError(f"signing key file {path} is readable by others (mode {mode:04o}); "
                             f"refused: expected 0600 (chmod 600 {path})")
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyConfigError(f"{path} is not a PEM private key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        raise KeyConfigError(f"{path} holds an unsupported key type")
    return key


def read_public_key(path: Path) -> PublicKey:
    """A configured public key: a PEM SubjectPublicKeyInfo, or one JWK (JSON)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyConfigError(f"cannot read public key {path}: {exc.strerror}") from None
    if data.lstrip().startswith(b"{"):
        try:
            return key_from_jwk(json.loads(data))
        except (ValueError, SignatureError) as exc:
            raise KeyConfigError(f"{path} is not a usable public JWK: {exc}") from None
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise KeyConfigError(f"{path} is not a PEM public key: {exc}") from None
    if not isinstance(key, (ec.EllipticCurvePublicKey, ed25519.Ed25519PublicKey, rsa.RSAPublicKey)):
        raise KeyConfigError(f"{path} holds an unsupported key type")
    return key


@dataclass(frozen=True)
class SigningKey:
    """A private key with its algorithm and public JWK (whose `kid` is the thumbprint)."""

    private: PrivateKey
    alg: str
    jwk: dict[str, Any]

    @property
    def kid(self) -> str:
        return str(self.jwk["kid"])

    @classmethod
    def from_private(cls, private: PrivateKey) -> SigningKey:
        jwk = public_jwk(private)
        return cls(private=private, alg=jwk["alg"], jwk=jwk)

    @classmethod
    def generate(cls, alg: str = DEFAULT_ALG) -> SigningKey:
        return cls.from_private(generate_private_key(alg))


def load_or_create_key(path: Path, alg: str = DEFAULT_ALG) -> SigningKey:
    """Load the key at `path`, or generate one there (mode 0600) on first start."""
    if not path.exists():
        # Another process may create it first; then we use theirs.
        with contextlib.suppress(FileExistsError):
            write_private_key(path, generate_private_key(alg))
    return SigningKey.from_private(read_private_key(path))


def read_signing_key(path: Path) -> SigningKey:
    """An existing private key (PEM, mode 0600), e.g. a CoRIM signer's; never created."""
    if not path.is_file():
        raise KeyConfigError(f"no private key at {path}")
    return SigningKey.from_private(read_private_key(path))
