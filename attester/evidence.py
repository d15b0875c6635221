"""Evidence: an EAT (RFC 9711) signed by the attester's evidence key, as JWT or CWT.

Claims (names in `bytereplay.eat`):

    eat_nonce                 the verifier's nonce (JWT: unpadded base64url text;
                              CWT: bytes under label 10)
    eat_profile               bytereplay.eat.PROFILE (CWT label 265)
    iat                       issue time, integer seconds (CWT label 6)
    cnf                       {"jwk": <evidence public JWK>} (CWT label 8, as
                              {1: COSE_Key}, RFC 8747). Trusted only because the
                              quote's report data binds its RFC 7638 thumbprint.
    measurements              {"model_digest", "container_digest", "runtime"}
    bytereplay.record         the run record (dict)
    bytereplay.record_digest  its digest (sha-256 over JCS)
    bytereplay.output_hash    sha-256 of the output bytes (= record.output_hash)
    bytereplay.request        {"input", "template", "decode": {...}} for replay
    bytereplay.quote          the TEE provider's quote, report data =
                              SHA-512(nonce || record digest || key thumbprint)
    bytereplay.external_tokens  optional (`eat.EXTERNAL_TOKENS`): attestation-service
                              JWTs, a list of at most `eat.MAX_EXTERNAL_TOKENS` texts of
                              at most `eat.MAX_EXTERNAL_TOKEN_CHARS` characters each,
                              appraised by the verifier (verifier/external.py)

JWT: `bytereplay.jose.sign_jwt`, header {"alg", "kid": <thumbprint>, "typ": "eat+jwt"}.

CWT: COSE_Sign1 (RFC 9052), tag 18, protected header {1: alg, 4: kid} where alg is
-7 (ES256), -35 (ES384), -8 (EdDSA) or -38 (PS384) and kid is the raw 32-byte
RFC 7638 thumbprint; unprotected header {}; payload = core deterministic CBOR of the
claims map with integer labels for the registered claims; signature over
Sig_structure ["Signature1", protected, h'', payload]; ECDSA signatures as raw r||s.

`decode_evidence` reads either, strictly, verifies the signature with the `cnf` key,
checks that the kid is that key's thumbprint and that the claims agree with each other
(record digest, output hash, measurements, request vs record), and returns the claims
in the JWT form. It does NOT check the quote: call `verify_evidence` (or
`attester.tee.verify_quote` with `DecodedEvidence.expected_report_data`) for that.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from attester.tee.base import QuoteTrust, QuoteVerification, verify_quote
from bytereplay import eat
from bytereplay.encoding import (
    b64url_decode,
    b64url_encode,
    cbor_dumps,
    cbor_loads,
    sha256_tag,
)
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    EvidenceError,
    QuoteError,
    SignatureError,
    TooLargeError,
)
from bytereplay.jose import check_header, parse_jwt, sign_jwt, verify_parsed
from bytereplay.keys import (
    SIGNING_ALGS,
    PublicKey,
    SigningKey,
    alg_for_key,
    check_alg,
    jwk_thumbprint,
    key_from_jwk,
    public_jwk,
    thumbprint_bytes,
)
from bytereplay.record import RunRecord

FORMATS = ("jwt", "cwt")
JWT_TYP = "eat+jwt"
MAX_EVIDENCE_BYTES = 512 * 1024
IAT_LEEWAY_S = 300  # clock skew allowed for an `iat` in the future

COSE_SIGN1_TAG = 18
CWT_TAG = 61
COSE_ALG_IDS: dict[str, int] = {"ES256": -7, "ES384": -35, "EdDSA": -8, "PS384": -38}
COSE_ALG_NAMES: dict[int, str] = {v: k for k, v in COSE_ALG_IDS.items()}
COSE_HMAC_IDS = frozenset({4, 5, 6, 7})  # HMAC 256/64, 256/256, 384/384, 512/512
H_ALG, H_CRIT, H_CTY, H_KID, H_TYP = 1, 2, 3, 4, 16
H_UNTRUSTED = {32: "x5bag", 33: "x5chain", 34: "x5t", 35: "x5u"}
H_ALLOWED = frozenset({H_ALG, H_CTY, H_KID, H_TYP})
CNF_COSE_KEY = 1  # RFC 8747: cnf {1: COSE_Key}

# Optional: JWTs from external attestation services (Intel Trust Authority, NVIDIA NRAS
# style) that the verifier checks against their JWKS (verifier/external.py reads it).
EXTERNAL_TOKENS = eat.EXTERNAL_TOKENS
OPTIONAL_CLAIMS = (EXTERNAL_TOKENS,)
CLAIMS = (eat.EAT_NONCE, eat.EAT_PROFILE, eat.IAT, eat.CNF, eat.MEASUREMENTS, eat.RECORD,
          eat.RECORD_DIGEST, eat.OUTPUT_HASH, eat.REQUEST, eat.QUOTE)
MEASUREMENT_KEYS = ("model_digest", "container_digest", "runtime")
REQUEST_KEYS = ("input", "template", "decode")
DECODE_KEYS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop", "eos")
UNKNOWN = "unknown"
_LABEL_NAMES = {v: k for k, v in eat.CWT_LABELS.items()}


# -- building -------------------------------------------------------------------------

def measurements_for(record: RunRecord) -> dict[str, str]:
    """The measurement registers of a run: model digest, container digest, runtime."""
    rt, model, container = record.runtime, record.model, record.container
    name, version = (None, None) if rt is None else (rt.name, rt.version)
    return {
        "model_digest": (model and model.digest) or UNKNOWN,
        "container_digest": (container and container.digest) or UNKNOWN,
        "runtime": f"{name}/{version}" if name and version else UNKNOWN,
    }


def request_claim(input_text: str, template: str, decode: Mapping[str, Any]) -> dict[str, Any]:
    """The `bytereplay.request` claim: what the verifier needs to replay the run."""
    return {"input": input_text, "template": template,
            "decode": {k: (list(v) if isinstance(v, tuple) else v) for k, v in decode.items()}}


def expected_report_data(nonce: bytes, record: RunRecord, key_jwk: Mapping[str, Any]) -> bytes:
    return eat.report_data(nonce, record.digest(), thumbprint_bytes(dict(key_jwk)))


def build_claims(*, record: RunRecord, nonce: bytes, key: SigningKey, quote: Mapping[str, Any],
                 request: Mapping[str, Any], iat: int | None = None,
                 external_tokens: Sequence[str] | None = None) -> dict[str, Any]:
    """The Evidence claims (JWT form). The quote must already bind this record and key.
    `external_tokens`: optional attestation-service JWTs, carried as given."""
    nonce_text = b64url_encode(nonce)
    eat.decode_nonce(nonce_text)  # NonceError outside 8..64 bytes
    if record.output_hash is None:
        raise EvidenceError("the run record has no output_hash")
    claims: dict[str, Any] = {
        eat.EAT_NONCE: nonce_text,
        eat.EAT_PROFILE: eat.PROFILE,
        eat.IAT: int(time.time()) if iat is None else int(iat),
        eat.CNF: {"jwk": dict(key.jwk)},
        eat.MEASUREMENTS: measurements_for(record),
        eat.RECORD: record.to_dict(),
        eat.RECORD_DIGEST: record.digest(),
        eat.OUTPUT_HASH: record.output_hash,
        eat.REQUEST: dict(request),
        eat.QUOTE: dict(quote),
    }
    if external_tokens is not None:
        tokens = list(external_tokens)
        check_external_tokens(tokens)
        claims[EXTERNAL_TOKENS] = tokens
    return claims


def check_external_tokens(tokens: Any) -> None:
    """The shape of the optional `bytereplay.external_tokens` claim: a list of at most
    `eat.MAX_EXTERNAL_TOKENS` texts of at most `eat.MAX_EXTERNAL_TOKEN_CHARS` characters.
    Their content is the verifier's to appraise (verifier/external.py)."""
    if not isinstance(tokens, list) or len(tokens) > eat.MAX_EXTERNAL_TOKENS:
        raise EvidenceError(f"{EXTERNAL_TOKENS} must be a list of at most "
                            f"{eat.MAX_EXTERNAL_TOKENS} JWT texts")
    for i, token in enumerate(tokens):
        if not isinstance(token, str):
            raise EvidenceError(f"{EXTERNAL_TOKENS}[{i}] is not text (a JWT)")
        if len(token) > eat.MAX_EXTERNAL_TOKEN_CHARS:
            raise EvidenceError(f"{EXTERNAL_TOKENS}[{i}] is {len(token)} characters; the "
                                f"limit is {eat.MAX_EXTERNAL_TOKEN_CHARS}")


# -- COSE helpers ---------------------------------------------------------------------

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
    if not _is_int(kty) or kty not in _COSE_KEY_PARAMS:
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
        crv = _EC2_CRV_NAMES.get(ck[-1]) if _is_int(ck[-1]) else None
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
    if 3 in ck and (not _is_int(ck[3]) or COSE_ALG_NAMES.get(ck[3]) != out["alg"]):
        raise EvidenceError(f"cnf: COSE_Key alg {ck[3]!r} does not fit the key")
    return out


def _is_int(value: Any) -> bool:
    """An integer label or value (CBOR decodes arrays and maps too: unhashable, and
    `true` is no integer here)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _coord_len(key: ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) -> int:
    return (key.curve.key_size + 7) // 8


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor_dumps(["Signature1", protected, b"", payload])


def _cose_sign(key: SigningKey, data: bytes) -> bytes:
    priv = key.private
    if isinstance(priv, ec.EllipticCurvePrivateKey):
        h: hashes.HashAlgorithm = hashes.SHA256() if key.alg == "ES256" else hashes.SHA384()
        r, s = decode_dss_signature(priv.sign(data, ec.ECDSA(h)))
        n = _coord_len(priv)
        return r.to_bytes(n, "big") + s.to_bytes(n, "big")
    if isinstance(priv, ed25519.Ed25519PrivateKey):
        return priv.sign(data)
    return priv.sign(data, padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
                     hashes.SHA384())


def _cose_verify(public: PublicKey, alg: str, signature: bytes, data: bytes) -> None:
    try:
        if isinstance(public, ec.EllipticCurvePublicKey):
            n = _coord_len(public)
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


def _claims_to_cbor(claims: Mapping[str, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for name, value in claims.items():
        if name == eat.EAT_NONCE:
            value = b64url_decode(value)
        elif name == eat.CNF:
            value = {CNF_COSE_KEY: jwk_to_cose_key(value["jwk"])}
        out[eat.CWT_LABELS.get(name, name)] = value
    return out


# -- encoding -------------------------------------------------------------------------

def encode_jwt(claims: Mapping[str, Any], key: SigningKey) -> str:
    """The Evidence as a JWT (typ eat+jwt, kid = RFC 7638 thumbprint)."""
    return sign_jwt(claims, key, typ=JWT_TYP)


def encode_cwt(claims: Mapping[str, Any], key: SigningKey) -> bytes:
    """The Evidence as a tagged COSE_Sign1 CWT (see the module docstring)."""
    check_alg(key.alg)
    protected = cbor_dumps({H_ALG: COSE_ALG_IDS[key.alg], H_KID: thumbprint_bytes(key.jwk)})
    payload = cbor_dumps(_claims_to_cbor(claims))
    signature = _cose_sign(key, _sig_structure(protected, payload))
    return cbor_dumps(cbor2.CBORTag(COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def encode(claims: Mapping[str, Any], key: SigningKey, fmt: str) -> str | bytes:
    if fmt == "jwt":
        return encode_jwt(claims, key)
    if fmt == "cwt":
        return encode_cwt(claims, key)
    raise EvidenceError(f"evidence format must be one of {list(FORMATS)}, got {fmt!r}")


def evidence_text(evidence: str | bytes) -> str:
    """Evidence as JSON-ready text: a JWT as is, a CWT as unpadded base64url."""
    return evidence if isinstance(evidence, str) else b64url_encode(evidence)


# -- decoding -------------------------------------------------------------------------

@dataclass(frozen=True)
class DecodedEvidence:
    """Evidence whose signature verified with its `cnf` key and whose claims agree."""

    format: str
    alg: str
    claims: dict[str, Any]  # JWT form: eat_nonce as base64url text, cnf {"jwk": ...}
    record: RunRecord
    nonce: bytes
    jwk: dict[str, Any]
    public_key: PublicKey
    key_thumbprint: str  # RFC 7638, unpadded base64url (= the JWK's kid)
    key_thumbprint_bytes: bytes
    iat: int

    @property
    def quote(self) -> dict[str, Any]:
        quote: dict[str, Any] = self.claims[eat.QUOTE]
        return quote

    @property
    def request(self) -> dict[str, Any]:
        request: dict[str, Any] = self.claims[eat.REQUEST]
        return request

    @property
    def measurements(self) -> dict[str, str]:
        measurements: dict[str, str] = self.claims[eat.MEASUREMENTS]
        return measurements

    @property
    def output_hash(self) -> str:
        return str(self.claims[eat.OUTPUT_HASH])

    @property
    def record_digest(self) -> str:
        return str(self.claims[eat.RECORD_DIGEST])

    @property
    def expected_report_data(self) -> bytes:
        """What the quote's report data must be: SHA-512(nonce || digest || thumbprint)."""
        return eat.report_data(self.nonce, self.record.digest(), self.key_thumbprint_bytes)

    def output_matches(self, output: bytes) -> bool:
        """Whether `output` hashes to the attested output hash."""
        return sha256_tag(output) == self.output_hash


def detect_format(data: bytes | str) -> str:
    if isinstance(data, str):  # base64url text has no dots; a JWT has two (checked later)
        return "jwt" if "." in data else "cwt"
    if data[:1] == b"\xd2" or data[:2] == b"\xd8\x3d":  # tag 18, tag 61
        return "cwt"
    return "jwt"


def decode_evidence(data: bytes | str, fmt: str | None = None, *,
                    max_bytes: int = MAX_EVIDENCE_BYTES) -> DecodedEvidence:
    """Read Evidence strictly and verify its signature (see the module docstring).

    `data`: a JWT (text or ASCII bytes) or a CWT (bytes, or unpadded base64url text).
    `fmt`: "jwt", "cwt" or None to detect. Raises EvidenceError, SignatureError,
    EncodingError or TooLargeError.
    """
    if not isinstance(data, (bytes, bytearray, str)):
        raise EvidenceError("evidence is bytes or text")
    if len(data) > max_bytes:
        raise TooLargeError(f"evidence is {len(data)} bytes; the limit is {max_bytes}")
    if not data:
        raise EvidenceError("evidence is empty")
    data = bytes(data) if isinstance(data, bytearray) else data
    fmt = fmt or detect_format(data)
    if fmt == "jwt":
        if isinstance(data, bytes):
            try:
                data = data.decode("ascii")
            except UnicodeDecodeError:
                raise EncodingError("a JWT is ASCII text") from None
        return _decode_jwt(data.strip(), max_bytes)
    if fmt == "cwt":
        if isinstance(data, str):
            try:
                data = b64url_decode(data.strip())
            except EncodingError:
                raise EncodingError("CWT evidence given as text must be unpadded base64url") from None
        return _decode_cwt(data, max_bytes)
    raise EvidenceError(f"evidence format must be one of {list(FORMATS)}, got {fmt!r}")


def _cnf_jwk(claims: Mapping[str, Any]) -> dict[str, Any]:
    cnf = claims.get(eat.CNF)
    if not isinstance(cnf, dict) or set(cnf) != {"jwk"} or not isinstance(cnf["jwk"], dict):
        raise EvidenceError("cnf must be {\"jwk\": <public JWK>}")
    jwk: dict[str, Any] = cnf["jwk"]
    return jwk


@dataclass(frozen=True)
class _CnfKey:
    """What a `cnf` JWK yields: the key, the thumbprint of the JWK as sent, and the
    normalised public JWK (`public_jwk`) with its thumbprint, as text and raw bytes."""

    public: PublicKey
    thumb: str
    jwk: dict[str, Any]
    norm_thumb: str
    norm_thumb_bytes: bytes
    alg: str  # the algorithm the key fits (`alg_for_key`)


def _cnf_key_uncached(jwk: dict[str, Any]) -> _CnfKey:
    try:
        public = key_from_jwk(jwk)
        thumb = jwk_thumbprint(jwk)
    except SignatureError as exc:
        raise EvidenceError(f"cnf.jwk: {exc.detail}") from None
    norm = public_jwk(public)
    return _CnfKey(public, thumb, norm, jwk_thumbprint(norm), thumbprint_bytes(norm),
                   alg_for_key(public))


@functools.lru_cache(maxsize=256)
def _cnf_key_cached(items: tuple[tuple[str, str], ...]) -> _CnfKey:
    return _cnf_key_uncached(dict(items))


_CNF_CACHE_MAX_CHARS = 4096  # an RSA-3072 JWK is about 600 characters


def _cnf_key(jwk: dict[str, Any]) -> _CnfKey:
    """`_cnf_key_uncached`, memoised by the JWK's members when they are all text and
    short (an attester's key is the same on every Evidence; parsing it is a pure function
    of them; padded JWKs are not kept). The normalised JWK is copied out: callers may keep
    and change it."""
    if all(isinstance(v, str) for v in jwk.values()) and \
            sum(len(k) + len(v) for k, v in jwk.items()) <= _CNF_CACHE_MAX_CHARS:
        found = _cnf_key_cached(tuple(sorted(jwk.items())))
    else:
        found = _cnf_key_uncached(jwk)
    return _CnfKey(found.public, found.thumb, dict(found.jwk), found.norm_thumb,
                   found.norm_thumb_bytes, found.alg)


def _decode_jwt(token: str, max_bytes: int) -> DecodedEvidence:
    # One strict parse (all three parts canonical base64url: one token, one text) that
    # both the checks below and the signature check use.
    parsed = parse_jwt(token, max_bytes=max_bytes)
    header, payload = parsed.header, parsed.payload
    alg = check_header(header, SIGNING_ALGS)
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in (JWT_TYP, eat.MEDIA_JWT):
        raise EvidenceError(f"JWT evidence has typ {typ!r}; expected {JWT_TYP!r}")
    jwk = _cnf_jwk(payload)
    cnf = _cnf_key(jwk)
    thumb, public = cnf.thumb, cnf.public
    if jwk.get("kid", thumb) != thumb:
        raise EvidenceError("cnf.jwk kid is not the key's RFC 7638 thumbprint")
    if header.get("kid") != thumb:
        raise SignatureError("the JWT kid is not the RFC 7638 thumbprint of the cnf key")
    _check_key_alg(cnf, jwk.get("alg", alg), alg)
    claims = verify_parsed(parsed, {thumb: public}, algorithms=(alg,), require=("iat",),
                           leeway=IAT_LEEWAY_S)
    if eat.EAT_NONCE in claims and not isinstance(claims[eat.EAT_NONCE], str):
        raise EvidenceError("eat_nonce in a JWT is unpadded base64url text")
    return _finish("jwt", alg, claims, public, cnf.jwk, cnf.norm_thumb, cnf.norm_thumb_bytes)


def _check_key_alg(cnf: _CnfKey, declared: Any, alg: str) -> None:
    if cnf.alg != alg or declared != alg:
        raise SignatureError(f"the cnf key does not fit algorithm {alg}")


def _cose_header(protected_bytes: bytes) -> tuple[str, bytes]:
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
    if _is_int(alg_id) and alg_id in COSE_HMAC_IDS:
        raise SignatureError("COSE HMAC algorithms are refused: only asymmetric algorithms")
    if not _is_int(alg_id) or alg_id not in COSE_ALG_NAMES:
        raise SignatureError(f"COSE algorithm {alg_id!r} is not allowed; "
                             f"allowed: {sorted(COSE_ALG_NAMES)}")
    alg = check_alg(COSE_ALG_NAMES[alg_id])
    kid = header.get(H_KID)
    if not isinstance(kid, bytes):
        raise SignatureError("COSE protected header lacks kid (the key thumbprint, bytes)")
    if H_TYP in header and header[H_TYP] not in (eat.MEDIA_CWT, "eat+cwt"):
        raise EvidenceError(f"COSE typ {header[H_TYP]!r} is not {eat.MEDIA_CWT!r}")
    return alg, kid


def _cbor_claims_to_json(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise EvidenceError("CWT claims are a map")
    claims: dict[str, Any] = {}
    for label, value in raw.items():
        if isinstance(label, int):
            if label not in _LABEL_NAMES:
                raise EvidenceError(f"CWT claim label {label} is not known")
            name = _LABEL_NAMES[label]
        elif isinstance(label, str):
            if label in eat.CWT_LABELS:
                raise EvidenceError(f"CWT claim {label!r} must use its integer label "
                                    f"{eat.CWT_LABELS[label]}")
            name = label
        else:
            raise EvidenceError("CWT claim labels are integers or text")
        if name == eat.EAT_NONCE:
            if not isinstance(value, bytes):
                raise EvidenceError("eat_nonce in a CWT is a byte string")
            value = b64url_encode(value)
        elif name == eat.CNF:
            if not isinstance(value, dict) or set(value) != {CNF_COSE_KEY}:
                raise EvidenceError("cnf in a CWT must be {1: COSE_Key}")
            value = {"jwk": cose_key_to_jwk(value[CNF_COSE_KEY])}
        else:
            _no_bytes(value, name)
        claims[name] = value
    return claims


def _no_bytes(value: Any, where: str) -> None:
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, bytes):
            raise EvidenceError(f"{path}: byte strings are not allowed in this claim")
        if isinstance(item, dict):
            for k, v in item.items():
                if not isinstance(k, str):
                    raise EvidenceError(f"{path}: map keys must be text")
                stack.append((v, f"{path}.{k}"))
        elif isinstance(item, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(item))


def _decode_cwt(data: bytes, max_bytes: int) -> DecodedEvidence:
    outer = cbor_loads(data, max_bytes=max_bytes, allow_tags=True)
    if isinstance(outer, cbor2.CBORTag) and outer.tag == CWT_TAG:
        outer = outer.value
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != COSE_SIGN1_TAG:
        raise EvidenceError("CWT evidence must be a COSE_Sign1 message (CBOR tag 18)")
    msg = outer.value
    if not isinstance(msg, list) or len(msg) != 4:
        raise EvidenceError("COSE_Sign1 is an array of four items")
    protected, unprotected, payload, signature = msg
    if any(isinstance(x, cbor2.CBORTag) for x in msg) or _has_tag(unprotected):
        raise EncodingError("unexpected CBOR tag inside COSE_Sign1")
    alg, kid = _cose_header(protected)
    if not isinstance(unprotected, dict):
        raise EvidenceError("COSE unprotected header is a map")
    if unprotected:
        raise SignatureError("COSE unprotected header parameters are refused "
                             "(alg and kid belong in the protected header)")
    if not isinstance(payload, bytes):
        raise EvidenceError("COSE_Sign1 payload must be attached (a byte string)")
    if not isinstance(signature, bytes):
        raise EvidenceError("COSE_Sign1 signature is a byte string")
    claims = _cbor_claims_to_json(cbor_loads(payload, max_bytes=max_bytes))
    jwk = _cnf_jwk(claims)  # already normalised by cose_key_to_jwk
    cnf = _cnf_key(jwk)
    public = cnf.public
    if cnf.norm_thumb_bytes != kid:
        raise SignatureError("the COSE kid is not the RFC 7638 thumbprint of the cnf key")
    _check_key_alg(cnf, jwk.get("alg"), alg)
    _cose_verify(public, alg, signature, _sig_structure(protected, payload))
    iat = claims.get(eat.IAT)
    if isinstance(iat, int) and not isinstance(iat, bool) and iat > time.time() + IAT_LEEWAY_S:
        raise SignatureError("evidence issued in the future (iat)")
    return _finish("cwt", alg, claims, public, jwk, cnf.norm_thumb, cnf.norm_thumb_bytes)


def _has_tag(value: Any) -> bool:
    if isinstance(value, cbor2.CBORTag):
        return True
    if isinstance(value, dict):
        return any(_has_tag(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_tag(v) for v in value)
    return False


def _finish(fmt: str, alg: str, claims: dict[str, Any], public: PublicKey,
            jwk: dict[str, Any], thumb: str, thumb_bytes: bytes) -> DecodedEvidence:
    """`jwk` is the normalised public JWK; `thumb`/`thumb_bytes` its RFC 7638 thumbprint."""
    missing = [c for c in CLAIMS if c not in claims]
    if missing:
        raise EvidenceError(f"evidence lacks claims: {', '.join(missing)}")
    unknown = sorted(set(claims) - set(CLAIMS) - set(OPTIONAL_CLAIMS))
    if unknown:
        raise EvidenceError(f"evidence carries unknown claims: {', '.join(unknown)}")
    if EXTERNAL_TOKENS in claims:
        check_external_tokens(claims[EXTERNAL_TOKENS])
    if claims[eat.EAT_PROFILE] != eat.PROFILE:
        raise EvidenceError(f"eat_profile is {claims[eat.EAT_PROFILE]!r}; expected {eat.PROFILE!r}")
    try:
        nonce = eat.decode_nonce(claims[eat.EAT_NONCE])
    except BytereplayError as exc:
        raise EvidenceError(f"eat_nonce: {exc.detail}") from None
    iat = claims[eat.IAT]
    if isinstance(iat, bool) or not isinstance(iat, int) or iat < 0:
        raise EvidenceError("iat is a non-negative integer (seconds)")
    try:
        record = RunRecord.from_dict(claims[eat.RECORD])
    except BytereplayError as exc:
        raise EvidenceError(f"{eat.RECORD}: {exc.detail}") from None
    if claims[eat.RECORD_DIGEST] != record.digest():
        raise EvidenceError(f"{eat.RECORD_DIGEST} does not match the digest of {eat.RECORD}")
    if record.output_hash is None or claims[eat.OUTPUT_HASH] != record.output_hash:
        raise EvidenceError(f"{eat.OUTPUT_HASH} does not match the record's output_hash")
    measurements = claims[eat.MEASUREMENTS]
    if not isinstance(measurements, dict) or set(measurements) != set(MEASUREMENT_KEYS):
        raise EvidenceError(f"measurements must hold exactly {list(MEASUREMENT_KEYS)}")
    if measurements != measurements_for(record):
        raise EvidenceError("measurements do not agree with the run record")
    quote = claims[eat.QUOTE]
    if not isinstance(quote, dict) or not isinstance(quote.get("provider"), str) \
            or not isinstance(quote.get("simulated"), bool):
        raise EvidenceError(f"{eat.QUOTE} must be an object with 'provider' and 'simulated'")
    _check_request(claims[eat.REQUEST], record)
    return DecodedEvidence(
        format=fmt, alg=alg, claims=claims, record=record, nonce=nonce, jwk=jwk,
        public_key=public, key_thumbprint=thumb, key_thumbprint_bytes=thumb_bytes,
        iat=iat,
    )


def _check_request(request: Any, record: RunRecord) -> None:
    """The replay request must be the request the record describes."""
    where = eat.REQUEST
    if not isinstance(request, dict) or set(request) != set(REQUEST_KEYS):
        raise EvidenceError(f"{where} must hold exactly {list(REQUEST_KEYS)}")
    text, template, decode = request["input"], request["template"], request["decode"]
    if not isinstance(text, str) or not isinstance(template, str):
        raise EvidenceError(f"{where}: input and template are text")
    if not isinstance(decode, dict) or not set(decode) <= set(DECODE_KEYS):
        raise EvidenceError(f"{where}.decode holds only {list(DECODE_KEYS)}")
    sampling, stop = record.sampling, record.stop
    pairs: list[tuple[str, Any, Any]] = [
        ("input_hash", record.input_hash, _hash_text(text)),
        ("prompt_template_hash", record.prompt_template_hash, _hash_text(template)),
        ("seed", record.seed, decode.get("seed")),
    ]
    if sampling is not None:
        pairs += [("sampling.temperature", sampling.temperature, decode.get("temperature")),
                  ("sampling.top_k", sampling.top_k, decode.get("top_k")),
                  ("sampling.top_p", sampling.top_p, decode.get("top_p"))]
    if stop is not None:
        stops = stop.stop_sequences
        pairs += [("stop.max_new_tokens", stop.max_new_tokens, decode.get("max_new_tokens")),
                  ("stop.eos", stop.eos, decode.get("eos")),
                  ("stop.stop_sequences", None if stops is None else list(stops),
                   decode.get("stop"))]
    for path, recorded, requested in pairs:
        if recorded is None:
            continue  # missing in the record: preflight reports it; nothing to compare
        if requested is None or not _same(recorded, requested):
            raise EvidenceError(f"{where} does not match the run record at {path}")


def _hash_text(text: str) -> str | None:
    try:
        return sha256_tag(text.encode("utf-8"))
    except UnicodeEncodeError:
        return None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and float(a) == float(b)
    return bool(a == b)


# -- decode + quote -------------------------------------------------------------------

@dataclass(frozen=True)
class VerifiedEvidence:
    evidence: DecodedEvidence
    quote: QuoteVerification


def verify_evidence(data: bytes | str, trust: QuoteTrust, fmt: str | None = None, *,
                    max_bytes: int = MAX_EVIDENCE_BYTES) -> VerifiedEvidence:
    """`decode_evidence`, then the quote: it must verify under `trust` and its report data
    must be SHA-512(nonce || record digest || cnf key thumbprint). For simulated quotes
    the signed measurement registers must equal the Evidence's measurements."""
    decoded = decode_evidence(data, fmt, max_bytes=max_bytes)
    result = verify_quote(decoded.quote, trust, decoded.expected_report_data)
    declared = decoded.quote.get("software_measurements")
    signed = result.measurements if result.simulated else declared
    if signed is not None and signed != decoded.measurements:
        raise QuoteError("the quote's measurement registers differ from the Evidence's measurements")
    return VerifiedEvidence(evidence=decoded, quote=result)
