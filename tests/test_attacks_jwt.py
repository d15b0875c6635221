"""JWT attack catalogue against every entry point that accepts a signed token.

Entry points: `bytereplay.jose.verify_jwt` (pinned keys), `bytereplay.jwks.KeySet.verify`
(pinned JWKS) and `bytereplay.ear.read_ear` (attestation results). Every attack must be
refused with a typed `BytereplayError` whose message names the reason. Tokens are crafted
by hand (pyjwt refuses to write most of them). A positive control proves the unattacked
token passes every entry point, so each refusal is due to the attack alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bytereplay.ear import MAX_EAR_BYTES, PROFILE_LEGACY, build_ear, read_ear
from bytereplay.encoding import b64url_encode
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    ResultError,
    SignatureError,
    TooLargeError,
)
from bytereplay.jose import keys_from_jwks, verify_jwt
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey, key_from_jwk, public_jwk

NOW = int(time.time())

VERIFIER = SigningKey.generate("ES256")  # the pinned, trusted key
OTHER = SigningKey.generate("ES256")  # also pinned (a second kid in the set)
ATTACKER = SigningKey.generate("ES256")  # not pinned
ATTACKER_RSA = rsa.generate_private_key(public_exponent=65537, key_size=2048)
JWKS = {"keys": [VERIFIER.jwk, OTHER.jwk]}
KEYS = {VERIFIER.kid: VERIFIER.private.public_key(), OTHER.kid: OTHER.private.public_key()}
PUBLIC_PEM = VERIFIER.private.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)

# Valid EAR claims, so that read_ear refuses each token for the attack alone.
# The legacy profile: the tampering below uses its flat names (draft-04's own refusals:
# tests/test_ear_profiles.py).
CLAIMS = build_ear(vector={"executables": 2, "hardware": 32}, nonce="bm9uY2Vub25jZQ",
                   iat=NOW, policy_id="default", extensions={}, profile=PROFILE_LEGACY)


# -- hand-made tokens ---------------------------------------------------------------------


def _raw(value: dict[str, Any] | bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":")).encode()


def sign_raw(alg: str, key: Any, signing_input: bytes) -> bytes:
    """Sign exactly what a JWS names by `alg`; key may be anything, including PEM bytes."""
    if alg.upper().startswith("HS"):
        digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384,
                  "HS512": hashlib.sha512}[alg.upper()]
        return hmac.new(key, signing_input, digest).digest()
    if alg in ("ES256", "ES384", "ES512"):
        h = {"ES256": hashes.SHA256(), "ES384": hashes.SHA384(), "ES512": hashes.SHA512()}[alg]
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(h)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    if alg == "EdDSA":
        return bytes(key.sign(signing_input))
    if alg in ("RS256", "PS256", "PS384"):
        h = {"RS256": hashes.SHA256(), "PS256": hashes.SHA256(), "PS384": hashes.SHA384()}[alg]
        pad = (padding.PKCS1v15() if alg == "RS256"
               else padding.PSS(mgf=padding.MGF1(h), salt_length=h.digest_size))
        return bytes(key.sign(signing_input, pad, h))
    if alg.lower() == "none":
        return b""
    raise AssertionError(alg)


def make_token(header: dict[str, Any] | bytes | str, payload: dict[str, Any] | bytes | str,
               key: Any = None, alg: str | None = None) -> str:
    """header.payload.signature, signed with `key` under `alg` (default: the header's)."""
    if isinstance(header, dict):
        alg = alg or header.get("alg")
    signing_input = (b64url_encode(_raw(header)) + "." + b64url_encode(_raw(payload))).encode()
    sig = sign_raw(alg or "ES256", VERIFIER.private if key is None else key, signing_input)
    return signing_input.decode() + "." + b64url_encode(sig)


def hdr(**extra: Any) -> dict[str, Any]:
    return {"alg": "ES256", "kid": VERIFIER.kid, "typ": "JWT", **extra}


GOOD = make_token(hdr(), CLAIMS)


# -- the three entry points ---------------------------------------------------------------


def via_verify_jwt(token: str, **kw: Any) -> Any:
    return verify_jwt(token, KEYS, **kw)


def via_keyset(token: str, **kw: Any) -> Any:
    return KeySet(JWKS).verify(token, **kw)


def via_read_ear(token: str, **kw: Any) -> Any:
    return read_ear(token, KeySet(JWKS), **kw)


def _takes(entry: str, kwargs: tuple[tuple[str, Any], ...]) -> bool:
    """read_ear pins its own audience/issuer/require: attacks that set them skip it."""
    return entry != "read_ear" or not ({k for k, _ in kwargs} - {"algorithms"})


ENTRIES: dict[str, Callable[..., Any]] = {
    "verify_jwt": via_verify_jwt, "KeySet.verify": via_keyset, "read_ear": via_read_ear,
}


@pytest.fixture(params=list(ENTRIES))
def entry(request: pytest.FixtureRequest) -> Callable[..., Any]:
    return ENTRIES[request.param]


def refused(entry: Callable[..., Any], token: str, error: type[BytereplayError] | tuple[
        type[BytereplayError], ...], fragment: str, **kw: Any) -> BytereplayError:
    with pytest.raises(error) as info:
        entry(token, **kw)
    assert fragment.lower() in str(info.value).lower(), str(info.value)
    assert info.value.status < 500  # a client's fault, answered as such by services
    return info.value


def test_positive_control_the_unattacked_token_passes(entry: Callable[..., Any]) -> None:
    out = entry(GOOD)
    claims = out.raw if hasattr(out, "raw") else out
    assert claims["iat"] == NOW


# -- the catalogue ------------------------------------------------------------------------


@dataclass(frozen=True)
class Attack:
    name: str
    token: Callable[[], str]
    error: type[BytereplayError] | tuple[type[BytereplayError], ...]
    fragment: str
    kwargs: tuple[tuple[str, Any], ...] = ()


def _x5c_self_signed(key: SigningKey) -> list[str]:
    import base64

    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.private.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key.private, hashes.SHA256()))
    return [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]


def _nested(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        node = {"n": node}
    return node


def _swap_payload() -> str:
    a = make_token(hdr(), CLAIMS)
    b = make_token(hdr(), {**CLAIMS, "submods": {"bytereplay": {
        **CLAIMS["submods"]["bytereplay"], "ear.status": "affirming",
        "ear.trustworthiness-vector": {"executables": 2, "hardware": 2}}}})
    ha, _, sa = a.split(".")
    _, pb, _ = b.split(".")
    return f"{ha}.{pb}.{sa}"


def _swap_header() -> str:
    a = make_token(hdr(), CLAIMS)
    b = make_token(hdr(typ="ear+jwt"), CLAIMS)
    _, pa, sa = a.split(".")
    hb = b.split(".")[0]
    return f"{hb}.{pa}.{sa}"


ATTACKS: list[Attack] = [
    # alg none, in all its spellings, with and without a signature part
    *[Attack(f"alg-{alg}", lambda a=alg: make_token(hdr(alg=a), CLAIMS),  # type: ignore[misc]
             SignatureError, "refused") for alg in ("none", "None", "NONE", "nOnE")],
    Attack("alg-none-no-sig-part",
           lambda: make_token(hdr(alg="none"), CLAIMS).rsplit(".", 1)[0],
           EncodingError, "three dot-separated parts"),
    Attack("alg-missing", lambda: make_token({"kid": VERIFIER.kid}, CLAIMS, alg="ES256"),
           SignatureError, "lacks 'alg'"),
    Attack("alg-not-text", lambda: make_token({"alg": ["ES256"], "kid": VERIFIER.kid}, CLAIMS,
                                              alg="ES256"), SignatureError, "lacks 'alg'"),
    # HMAC key confusion: the verifier's *public* key as the HMAC secret
    *[Attack(f"{alg}-public-pem-as-secret",
             lambda a=alg: make_token(hdr(alg=a), CLAIMS, key=PUBLIC_PEM),  # type: ignore[misc]
             SignatureError, "only asymmetric") for alg in ("HS256", "HS384", "HS512")],
    Attack("HS256-public-jwk-as-secret",
           lambda: make_token(hdr(alg="HS256"), CLAIMS,
                              key=json.dumps(VERIFIER.jwk).encode()),
           SignatureError, "only asymmetric"),
    Attack("hs256-lowercase", lambda: make_token(hdr(alg="hs256"), CLAIMS, key=PUBLIC_PEM),
           SignatureError, "only asymmetric"),
    # algorithms outside the allowed list
    Attack("RS256-not-allowed", lambda: make_token(hdr(alg="RS256"), CLAIMS, key=ATTACKER_RSA),
           SignatureError, "not in the allowed list"),
    Attack("PS256-not-allowed", lambda: make_token(hdr(alg="PS256"), CLAIMS, key=ATTACKER_RSA),
           SignatureError, "not in the allowed list"),
    Attack("ES512-not-allowed", lambda: make_token(
        hdr(alg="ES512"), CLAIMS, key=ec.generate_private_key(ec.SECP521R1())),
        SignatureError, "not in the allowed list"),
    Attack("ES384-outside-pinned-list", lambda: make_token(
        hdr(alg="ES384"), CLAIMS, key=ec.generate_private_key(ec.SECP384R1())),
        SignatureError, "not in the allowed list", (("algorithms", ("ES256",)),)),
    Attack("alg-whitespace", lambda: make_token(hdr(alg="ES256 "), CLAIMS, alg="ES256"),
           SignatureError, "not in the allowed list"),
    # an allowed alg that does not fit the pinned key
    Attack("ES384-header-on-P256-key", lambda: make_token(hdr(alg="ES384"), CLAIMS,
                                                          key=VERIFIER.private, alg="ES256"),
           SignatureError, "curve"),
    Attack("EdDSA-header-on-EC-key", lambda: make_token(
        hdr(alg="EdDSA"), CLAIMS, key=ed25519.Ed25519PrivateKey.generate()),
        SignatureError, "refused"),
    # kid games
    Attack("kid-unknown", lambda: make_token(hdr(kid=ATTACKER.kid), CLAIMS, key=ATTACKER.private),
           SignatureError, "unknown key id"),
    Attack("kid-path-traversal", lambda: make_token(hdr(kid="../../../../dev/null"), CLAIMS),
           SignatureError, "unknown key id"),
    Attack("kid-not-text", lambda: make_token(hdr(kid=123), CLAIMS), SignatureError,
           "unknown key id"),
    Attack("kid-array", lambda: make_token(hdr(kid=[VERIFIER.kid]), CLAIMS), SignatureError,
           "unknown key id"),
    Attack("kid-missing-with-several-keys",
           lambda: make_token({"alg": "ES256"}, CLAIMS), SignatureError, "lacks 'kid'"),
    Attack("kid-of-pinned-key-signed-by-attacker",
           lambda: make_token(hdr(), CLAIMS, key=ATTACKER.private),
           SignatureError, "signature does not verify"),
    Attack("kid-of-other-pinned-key", lambda: make_token(hdr(kid=OTHER.kid), CLAIMS),
           SignatureError, "signature does not verify"),
    # headers that let the token pick its own key: refused even with a valid signature
    Attack("jku", lambda: make_token(hdr(jku="http://127.0.0.1:1/jwks.json"), CLAIMS),
           SignatureError, "'jku' is not trusted"),
    Attack("x5u", lambda: make_token(hdr(x5u="http://127.0.0.1:1/cert.pem"), CLAIMS),
           SignatureError, "'x5u' is not trusted"),
    Attack("jwk-embedded-attacker-key", lambda: make_token(
        hdr(kid=ATTACKER.kid, jwk=ATTACKER.jwk), CLAIMS, key=ATTACKER.private),
        SignatureError, "'jwk' is not trusted"),
    Attack("jwk-embedded-no-kid", lambda: make_token(
        {"alg": "ES256", "jwk": ATTACKER.jwk}, CLAIMS, key=ATTACKER.private),
        SignatureError, "'jwk' is not trusted"),
    Attack("x5c-self-signed", lambda: make_token(
        hdr(kid=ATTACKER.kid, x5c=_x5c_self_signed(ATTACKER)), CLAIMS, key=ATTACKER.private),
        SignatureError, "'x5c' is not trusted"),
    Attack("x5c-with-valid-signature", lambda: make_token(
        hdr(x5c=_x5c_self_signed(VERIFIER)), CLAIMS), SignatureError, "'x5c' is not trusted"),
    Attack("crit", lambda: make_token(hdr(crit=["exp"]), CLAIMS), SignatureError,
           "'crit' is not trusted"),
    Attack("crit-b64", lambda: make_token(hdr(crit=["b64"], b64=False), CLAIMS),
           SignatureError, "'crit' is not trusted"),
    Attack("b64-false-without-crit", lambda: make_token(hdr(b64=False), CLAIMS),
           SignatureError, "refused"),
    # time and audience claims
    Attack("expired", lambda: make_token(hdr(), {**CLAIMS, "exp": NOW - 60}),
           SignatureError, "expired"),
    Attack("expired-float", lambda: make_token(hdr(), {**CLAIMS, "exp": NOW - 60.5}),
           SignatureError, "expired"),
    Attack("not-yet-valid-nbf", lambda: make_token(hdr(), {**CLAIMS, "nbf": NOW + 3600}),
           SignatureError, "not yet valid"),
    Attack("issued-in-the-future", lambda: make_token(hdr(), {**CLAIMS, "iat": NOW + 3600}),
           SignatureError, "not yet valid"),
    Attack("exp-not-a-number", lambda: make_token(hdr(), {**CLAIMS, "exp": "tomorrow"}),
           SignatureError, "exp"),
    Attack("exp-overflow", lambda: make_token(hdr(), json.dumps(CLAIMS)[:-1] + ',"exp":1e400}'),
           SignatureError, "exp"),
    Attack("iat-missing", lambda: make_token(hdr(), {k: v for k, v in CLAIMS.items()
                                                     if k != "iat"}),
           SignatureError, "iat", (("require", ("iat",)),)),
    Attack("exp-required-missing", lambda: make_token(hdr(), CLAIMS), SignatureError, "exp",
           (("require", ("exp",)),)),
    Attack("wrong-audience", lambda: make_token(hdr(), {**CLAIMS, "aud": "someone-else"}),
           SignatureError, "wrong audience", (("audience", "bytereplay-rp"),)),
    Attack("audience-missing", lambda: make_token(hdr(), CLAIMS), SignatureError, "aud",
           (("audience", "bytereplay-rp"),)),
    Attack("audience-list-without-us", lambda: make_token(hdr(), {**CLAIMS, "aud": ["a", "b"]}),
           SignatureError, "wrong audience", (("audience", "bytereplay-rp"),)),
    Attack("wrong-issuer", lambda: make_token(hdr(), {**CLAIMS, "iss": "https://evil"}),
           SignatureError, "wrong issuer", (("issuer", "https://verifier"),)),
    Attack("issuer-missing", lambda: make_token(hdr(), CLAIMS), SignatureError, "iss",
           (("issuer", "https://verifier"),)),
    Attack("issuer-not-text", lambda: make_token(hdr(), {**CLAIMS, "iss": ["https://verifier"]}),
           SignatureError, "wrong issuer", (("issuer", "https://verifier"),)),
    # size and shape
    Attack("oversized", lambda: make_token(hdr(), {**CLAIMS, "pad": "A" * MAX_EAR_BYTES}),
           TooLargeError, "limit"),
    Attack("deeply-nested-payload", lambda: make_token(hdr(), {**CLAIMS, "deep": _nested(40)}),
           EncodingError, "nested deeper"),
    Attack("deeply-nested-header", lambda: make_token(hdr(deep=_nested(40)), CLAIMS),
           EncodingError, "nested deeper"),
    Attack("very-deeply-nested-payload", lambda: make_token(
        hdr(), '{"a":' * 5000 + "1" + "}" * 5000), EncodingError, "nested deeper"),
    Attack("payload-not-an-object", lambda: make_token(hdr(), b"[1,2,3]"), EncodingError,
           "JSON objects"),
    Attack("header-not-an-object", lambda: make_token(b'"ES256"', CLAIMS, alg="ES256"),
           EncodingError, "JSON objects"),
    Attack("payload-not-utf8", lambda: make_token(hdr(), b'{"a":"\xff"}'), EncodingError,
           "UTF-8"),
    Attack("payload-nan", lambda: make_token(hdr(), json.dumps(CLAIMS)[:-1] + ',"x":NaN}'),
           EncodingError, "NaN"),
    # duplicate keys: the parser reading the claims must see what the signer meant
    Attack("duplicate-alg", lambda: make_token(
        '{"alg":"ES256","kid":"' + VERIFIER.kid + '","alg":"none"}', CLAIMS, alg="ES256"),
        EncodingError, "duplicate JSON key 'alg'"),
    Attack("duplicate-kid-escaped", lambda: make_token(
        '{"alg":"ES256","kid":"' + VERIFIER.kid + '","k\\u0069d":"x"}', CLAIMS, alg="ES256"),
        EncodingError, "duplicate JSON key 'kid'"),
    Attack("duplicate-claim", lambda: make_token(
        hdr(), json.dumps(CLAIMS)[:-1] + f',"iat":{NOW + 10**6}}}'),
        EncodingError, "duplicate JSON key 'iat'"),
    Attack("duplicate-nested-claim", lambda: make_token(
        hdr(), json.dumps(CLAIMS).replace('"ear.status": "warning"',
                                          '"ear.status": "warning", "ear.status": "affirming"')),
        EncodingError, "duplicate JSON key 'ear.status'"),
    # a valid signature over different bytes
    Attack("payload-swap", _swap_payload, SignatureError, "signature does not verify"),
    Attack("header-swap", _swap_header, SignatureError, "signature does not verify"),
    Attack("signature-flip", lambda: GOOD[:-8] + ("A" if GOOD[-8] != "A" else "B") + GOOD[-7:],
           SignatureError, "signature does not verify"),
    Attack("signature-empty", lambda: GOOD.rsplit(".", 1)[0] + ".", SignatureError,
           "does not verify"),
    Attack("signature-of-other-alg-size", lambda: GOOD.rsplit(".", 1)[0] + "."
           + b64url_encode(b"\x01" * 96), SignatureError, "signature does not verify"),
    Attack("four-parts", lambda: GOOD + ".e30", EncodingError, "three dot-separated parts"),
    Attack("padded-header", lambda: GOOD.split(".")[0] + "=." + ".".join(GOOD.split(".")[1:]),
           EncodingError, "base64url"),
    Attack("standard-base64-header", lambda: "+/" + GOOD[2:], EncodingError, "base64url"),
]


CASES = [(e, a) for a in ATTACKS for e in ENTRIES if _takes(e, a.kwargs)]


@pytest.mark.parametrize(("entry_name", "attack"), CASES, ids=[f"{e}-{a.name}" for e, a in CASES])
def test_attack_is_refused(entry_name: str, attack: Attack) -> None:
    refused(ENTRIES[entry_name], attack.token(), attack.error, attack.fragment, **dict(attack.kwargs))


def test_attack_tokens_are_well_formed_attempts() -> None:
    """The crafted tokens are real attempts: the HMAC one verifies under a naive HMAC check,
    and the payload swap carries a genuine signature from the pinned key."""
    token = make_token(hdr(alg="HS256"), CLAIMS, key=PUBLIC_PEM)
    si, sig = token.rsplit(".", 1)
    assert b64url_encode(hmac.new(PUBLIC_PEM, si.encode(), hashlib.sha256).digest()) == sig
    swapped = _swap_payload()
    assert swapped.split(".")[2] == GOOD.split(".")[2] or swapped.split(".")[0] == GOOD.split(".")[0]


def test_every_truncation_is_refused(entry: Callable[..., Any]) -> None:
    for cut in range(len(GOOD)):
        with pytest.raises((EncodingError, SignatureError)):
            entry(GOOD[:cut])


def test_every_single_character_deletion_is_refused() -> None:
    for i in range(len(GOOD)):
        with pytest.raises((EncodingError, SignatureError)):
            verify_jwt(GOOD[:i] + GOOD[i + 1:], KEYS)


@pytest.mark.parametrize("suffix", ["=", "A", "AA", ".", " x", "\x00"])
def test_appended_bytes_are_refused(suffix: str) -> None:
    with pytest.raises((EncodingError, SignatureError)):
        verify_jwt(GOOD + suffix, KEYS)


def test_bug_padded_signature_is_refused() -> None:
    """Two texts, one token: `parse_unverified` checks the header and payload encodings but
    never the signature part, and pyjwt accepts `==` padding there. A token cache or replay
    check keyed on token text can be bypassed with the padded twin."""
    with pytest.raises((EncodingError, SignatureError)):
        verify_jwt(GOOD + "==", KEYS)


# -- read_ear: results that verify but must still not be believed -------------------------


def _ear_with(**sub: Any) -> str:
    body = json.loads(json.dumps(CLAIMS))
    body["submods"]["bytereplay"].update(sub)
    return make_token(hdr(), body)


@pytest.mark.parametrize(("token", "fragment"), [
    (lambda: _ear_with(**{"ear.status": "affirming"}), "better than its worst claim"),
    (lambda: _ear_with(**{"ear.status": "trustworthy"}), "not an AR4SI tier"),
    (lambda: _ear_with(**{"ear.trustworthiness-vector": {"hardware": 1000}}), "malformed"),
    (lambda: _ear_with(**{"ear.trustworthiness-vector": {"hardware": True}}), "malformed"),
    (lambda: make_token(hdr(), {**CLAIMS, "eat_profile": "tag:evil,2024:ear"}), "eat_profile"),
    (lambda: make_token(hdr(), {**CLAIMS, "submods": {}}), "submods"),
    (lambda: make_token(hdr(), {**CLAIMS, "iat": "now"}), "iat"),
    (lambda: make_token(hdr(), {**CLAIMS, "eat_nonce": 12345}), "eat_nonce"),
], ids=["status-better-than-vector", "status-unknown", "vector-out-of-range", "vector-bool",
        "profile-unknown", "submod-missing", "iat-not-int", "nonce-not-text"])
def test_read_ear_refuses_signed_but_unbelievable_results(token: Callable[[], str],
                                                          fragment: str) -> None:
    with pytest.raises((ResultError, SignatureError)) as info:
        read_ear(token(), KeySet(JWKS))
    assert fragment.lower() in str(info.value).lower()


def test_read_ear_refuses_an_ear_signed_by_the_attester_key() -> None:
    """Key separation: a token signed by any key outside the verifier's set is refused."""
    with pytest.raises(SignatureError, match="unknown key id"):
        read_ear(make_token({"alg": "ES256", "kid": ATTACKER.kid, "typ": "ear+jwt"}, CLAIMS,
                            key=ATTACKER.private), KeySet(JWKS))


# -- key sets that must never be pinned ---------------------------------------------------


def _oct(secret: bytes) -> dict[str, Any]:
    return {"kty": "oct", "k": b64url_encode(secret), "alg": "HS256", "kid": "hmac"}


def _private(jwk_key: Any) -> dict[str, Any]:
    from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

    if isinstance(jwk_key, ec.EllipticCurvePrivateKey):
        return dict(ECAlgorithm.to_jwk(jwk_key, as_dict=True))
    if isinstance(jwk_key, rsa.RSAPrivateKey):
        return dict(RSAAlgorithm.to_jwk(jwk_key, as_dict=True))
    return dict(OKPAlgorithm.to_jwk(jwk_key, as_dict=True))


BAD_SETS: dict[str, tuple[dict[str, Any], str]] = {
    "oct-key": ({"keys": [_oct(PUBLIC_PEM)]}, "symmetric (oct)"),
    "oct-beside-a-good-key": ({"keys": [VERIFIER.jwk, _oct(b"secret")]}, "symmetric (oct)"),
    "ec-private": ({"keys": [_private(ATTACKER.private)]}, "private key"),
    "rsa-private": ({"keys": [_private(ATTACKER_RSA)]}, "private key"),
    "okp-private": ({"keys": [_private(ed25519.Ed25519PrivateKey.generate())]}, "private key"),
    "private-beside-a-good-key": ({"keys": [VERIFIER.jwk, {**_private(ATTACKER.private),
                                                           "kid": "p"}]}, "private key"),
    "unknown-kty": ({"keys": [{"kty": "EC2", "crv": 1, "x": "AA", "y": "AA"}]},
                    "unsupported key type"),
    "enc-only": ({"keys": [{**VERIFIER.jwk, "use": "enc"}]}, "no signature keys"),
    "empty": ({"keys": []}, "no signature keys"),
    "not-a-jwks": ({"key": [VERIFIER.jwk]}, "'keys' array"),
    "entry-not-object": ({"keys": ["AAAA"]}, "JSON object"),
    "point-not-on-curve": ({"keys": [{**VERIFIER.jwk, "y": VERIFIER.jwk["x"]}]},
                           "unusable JWK"),
}


@pytest.mark.parametrize("name", list(BAD_SETS))
def test_jwks_that_must_not_be_pinned(name: str) -> None:
    doc, fragment = BAD_SETS[name]
    with pytest.raises(SignatureError) as info:
        keys_from_jwks(doc)
    assert fragment.lower() in str(info.value).lower()
    # ...and a key set built on it verifies nothing, not even a well-signed token.
    with pytest.raises(SignatureError):
        KeySet(doc).verify(GOOD)
    with pytest.raises(SignatureError):
        read_ear(GOOD, KeySet(doc))


def test_hs256_token_against_an_oct_jwks_is_refused() -> None:
    secret = b"shared-secret"
    token = make_token({"alg": "HS256", "kid": "hmac"}, CLAIMS, key=secret)
    with pytest.raises(SignatureError, match=r"refused|symmetric"):
        KeySet({"keys": [_oct(secret)]}).verify(token)


def test_key_from_jwk_refuses_private_and_symmetric_keys() -> None:
    with pytest.raises(SignatureError, match="symmetric"):
        key_from_jwk(_oct(b"k"))
    with pytest.raises(SignatureError, match="private key"):
        key_from_jwk(_private(ATTACKER.private))
    assert key_from_jwk(public_jwk(ATTACKER.private)) is not None


def test_jwks_file_with_duplicate_keys_is_refused(tmp_path: Any) -> None:
    """A JWKS file is parsed strictly too: duplicate members cannot smuggle a second key."""
    path = tmp_path / "jwks.json"
    good = json.dumps(VERIFIER.jwk)
    path.write_text('{"keys":[' + good + '],"keys":[' + json.dumps(ATTACKER.jwk) + "]}")
    with pytest.raises(SignatureError, match="duplicate"):
        KeySet(path).verify(GOOD)
