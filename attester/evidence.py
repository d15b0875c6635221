"""Evidence as the attester writes it: an EAT (RFC 9711) signed by its evidence key.

`build_claims` assembles the claims (listed in `bytereplay.evidence`, which also reads
them back strictly); `encode_jwt` signs them as a JWT (`bytereplay.jose.sign_jwt`,
header {"alg", "kid": <thumbprint>, "typ": "eat+jwt"}) and `encode_cwt` as a tagged
COSE_Sign1 CWT (`bytereplay.cose`): protected header {1: alg, 4: kid}, unprotected
header {}, payload = core deterministic CBOR of the claims with integer labels for the
registered claims, signature over Sig_structure ["Signature1", protected, h'',
payload]. The quote in the claims must already bind this record and key
(`expected_report_data`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import cbor2

from bytereplay import cose, eat
from bytereplay.encoding import b64url_decode, b64url_encode, cbor_dumps
from bytereplay.errors import EvidenceError
from bytereplay.evidence import (
    EXTERNAL_TOKENS,
    FORMATS,
    JWT_TYP,
    check_external_tokens,
    check_gpu_evidence,
    measurements_for,
)
from bytereplay.jose import sign_jwt
from bytereplay.keys import SigningKey, check_alg, thumbprint_bytes
from bytereplay.record import RunRecord

__all__ = ["FORMATS", "build_claims", "encode", "encode_cwt", "encode_jwt",
           "expected_report_data", "measurements_for", "request_claim"]


def request_claim(input_text: str, template: str, decode: Mapping[str, Any]) -> dict[str, Any]:
    """The `bytereplay.request` claim: what the verifier needs to replay the run."""
    return {"input": input_text, "template": template,
            "decode": {k: (list(v) if isinstance(v, tuple) else v) for k, v in decode.items()}}


def expected_report_data(nonce: bytes, record: RunRecord, key_jwk: Mapping[str, Any]) -> bytes:
    return eat.report_data(nonce, record.digest(), thumbprint_bytes(dict(key_jwk)))


def build_claims(*, record: RunRecord, nonce: bytes, key: SigningKey, quote: Mapping[str, Any],
                 request: Mapping[str, Any], iat: int | None = None,
                 external_tokens: Sequence[str] | None = None,
                 gpu_evidence: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """The Evidence claims (JWT form). The quote must already bind this record and key.
    `external_tokens`: optional attestation-service JWTs, carried as given.
    `gpu_evidence`: composite evidence, one GPU evidence object per device, each already
    bound by its SPDM nonce (`eat.device_gpu_nonce`)."""
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
    if gpu_evidence:
        items = [dict(item) for item in gpu_evidence]
        check_gpu_evidence(items)
        claims[eat.GPU_EVIDENCE] = items
    return claims


def _claims_to_cbor(claims: Mapping[str, Any]) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for name, value in claims.items():
        if name == eat.EAT_NONCE:
            value = b64url_decode(value)
        elif name == eat.CNF:
            value = {cose.CNF_COSE_KEY: cose.jwk_to_cose_key(value["jwk"])}
        out[eat.CWT_LABELS.get(name, name)] = value
    return out


def encode_jwt(claims: Mapping[str, Any], key: SigningKey) -> str:
    """The Evidence as a JWT (typ eat+jwt, kid = RFC 7638 thumbprint)."""
    return sign_jwt(claims, key, typ=JWT_TYP)


def encode_cwt(claims: Mapping[str, Any], key: SigningKey) -> bytes:
    """The Evidence as a tagged COSE_Sign1 CWT (see the module docstring)."""
    check_alg(key.alg)
    protected = cbor_dumps({cose.H_ALG: cose.COSE_ALG_IDS[key.alg], cose.H_KID: thumbprint_bytes(key.jwk)})
    payload = cbor_dumps(_claims_to_cbor(claims))
    signature = cose.sign(key, cose.sig_structure(protected, payload))
    return cbor_dumps(cbor2.CBORTag(cose.COSE_SIGN1_TAG, [protected, {}, payload, signature]))


def encode(claims: Mapping[str, Any], key: SigningKey, fmt: str) -> str | bytes:
    if fmt == "jwt":
        return encode_jwt(claims, key)
    if fmt == "cwt":
        return encode_cwt(claims, key)
    raise EvidenceError(f"evidence format must be one of {list(FORMATS)}, got {fmt!r}")
