"""Evidence as the verifier reads it: strict EAT (RFC 9711) decoding, JWT or CWT.

The claims, the two encodings and the binding are the attester's to write
(`attester.evidence` builds and signs them); this module holds what both sides agree
on (the claim list, `measurements_for`, the external-token shape) and the reader.

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
    bytereplay.gpu_evidence   optional (`eat.GPU_EVIDENCE`), composite evidence: one GPU
                              evidence object per device (`provider`, `simulated` false,
                              `index` = its position), each bound by its own SPDM nonce
                              (`eat.device_gpu_nonce`), checked by the verifier.
    bytereplay.external_tokens  optional (`eat.EXTERNAL_TOKENS`): attestation-service
                              JWTs, a list of at most `eat.MAX_EXTERNAL_TOKENS` texts of
                              at most `eat.MAX_EXTERNAL_TOKEN_CHARS` characters each,
                              appraised by the verifier (verifier/external.py)

JWT: header {"alg", "kid": <thumbprint>, "typ": "eat+jwt"} (`bytereplay.jose`).

CWT: COSE_Sign1 (RFC 9052, `bytereplay.cose`), tag 18, protected header {1: alg, 4: kid}
where alg is -7 (ES256), -35 (ES384), -8 (EdDSA) or -38 (PS384) and kid is the raw
32-byte RFC 7638 thumbprint; unprotected header {}; payload = core deterministic CBOR of
the claims map with integer labels for the registered claims.

`decode_evidence` reads either, strictly, verifies the signature with the `cnf` key,
checks that the kid is that key's thumbprint and that the claims agree with each other
(record digest, output hash, measurements, request vs record), and returns the claims
in the JWT form. It does NOT check the quote: that is the verifier's
(`verifier.tee.base.verify_quote` with `DecodedEvidence.expected_report_data`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from bytereplay import cose, eat
from bytereplay.encoding import b64url_decode, b64url_encode, cbor_loads, sha256_tag
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    EvidenceError,
    SignatureError,
    TooLargeError,
)
from bytereplay.jose import check_header, parse_jwt, verify_parsed
from bytereplay.keys import (
    SIGNING_ALGS,
    PublicKey,
    alg_for_key,
    jwk_thumbprint,
    key_from_jwk,
    public_jwk,
    thumbprint_bytes,
)
from bytereplay.record import RunRecord
from bytereplay.request import DECODE_KEYS

FORMATS = ("jwt", "cwt")
JWT_TYP = "eat+jwt"
MAX_EVIDENCE_BYTES = 512 * 1024
IAT_LEEWAY_S = 300  # clock skew allowed for an `iat` in the future

# Optional: JWTs from external attestation services (Intel Trust Authority, NVIDIA NRAS
# style) that the verifier checks against their JWKS (verifier/external.py reads it).
EXTERNAL_TOKENS = eat.EXTERNAL_TOKENS
GPU_EVIDENCE = eat.GPU_EVIDENCE
OPTIONAL_CLAIMS = (EXTERNAL_TOKENS, GPU_EVIDENCE)
CLAIMS = (eat.EAT_NONCE, eat.EAT_PROFILE, eat.IAT, eat.CNF, eat.MEASUREMENTS, eat.RECORD,
          eat.RECORD_DIGEST, eat.OUTPUT_HASH, eat.REQUEST, eat.QUOTE)
MEASUREMENT_KEYS = ("model_digest", "container_digest", "runtime")
REQUEST_KEYS = ("input", "template", "decode")
UNKNOWN = "unknown"
_LABEL_NAMES = {v: k for k, v in eat.CWT_LABELS.items()}


def measurements_for(record: RunRecord) -> dict[str, str]:
    """The measurement registers of a run: model digest, container digest, runtime."""
    rt, model, container = record.runtime, record.model, record.container
    name, version = (None, None) if rt is None else (rt.name, rt.version)
    return {
        "model_digest": (model and model.digest) or UNKNOWN,
        "container_digest": (container and container.digest) or UNKNOWN,
        "runtime": f"{name}/{version}" if name and version else UNKNOWN,
    }


def check_gpu_evidence(items: Any) -> None:
    """`bytereplay.gpu_evidence`: a non-empty list of at most `eat.MAX_GPUS` objects, each
    with `provider` (text), `simulated` (false) and `index` equal to its position."""
    if not isinstance(items, list) or not 1 <= len(items) <= eat.MAX_GPUS:
        raise EvidenceError(f"{GPU_EVIDENCE} must be a list of 1 to {eat.MAX_GPUS} objects")
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("provider"), str) \
                or item.get("simulated") is not False:
            raise EvidenceError(f"{GPU_EVIDENCE}[{i}] must be an object with 'provider' and "
                                "'simulated': false")
        index = item.get("index")
        if isinstance(index, bool) or index != i:
            raise EvidenceError(f"{GPU_EVIDENCE}[{i}].index must be {i}")


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


def evidence_text(evidence: str | bytes) -> str:
    """Evidence as JSON-ready text: a JWT as is, a CWT as unpadded base64url."""
    return evidence if isinstance(evidence, str) else b64url_encode(evidence)



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
    def gpu_evidence(self) -> list[dict[str, Any]]:
        """Composite evidence's GPU evidence objects (empty for a lone quote)."""
        items: list[dict[str, Any]] = self.claims.get(eat.GPU_EVIDENCE, [])
        return items

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
            if not isinstance(value, dict) or set(value) != {cose.CNF_COSE_KEY}:
                raise EvidenceError("cnf in a CWT must be {1: COSE_Key}")
            value = {"jwk": cose.cose_key_to_jwk(value[cose.CNF_COSE_KEY])}
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
    if isinstance(outer, cbor2.CBORTag) and outer.tag == cose.CWT_TAG:
        outer = outer.value
    if not isinstance(outer, cbor2.CBORTag) or outer.tag != cose.COSE_SIGN1_TAG:
        raise EvidenceError("CWT evidence must be a COSE_Sign1 message (CBOR tag 18)")
    msg = outer.value
    if not isinstance(msg, list) or len(msg) != 4:
        raise EvidenceError("COSE_Sign1 is an array of four items")
    protected, unprotected, payload, signature = msg
    if any(isinstance(x, cbor2.CBORTag) for x in msg) or _has_tag(unprotected):
        raise EncodingError("unexpected CBOR tag inside COSE_Sign1")
    alg, kid = cose.protected_header(protected)
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
    cose.verify(public, alg, signature, cose.sig_structure(protected, payload))
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
    if GPU_EVIDENCE in claims:
        check_gpu_evidence(claims[GPU_EVIDENCE])
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
