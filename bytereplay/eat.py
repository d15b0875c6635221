"""Evidence (EAT, RFC 9711) claim names and the quote binding, shared by attester and verifier.

The attester writes these claims; the verifier reads them. CWT labels: standard EAT
labels where registered (eat_nonce 10, eat_profile 265, iat 6, cnf 8), text keys for
bytereplay's own claims.
"""

from __future__ import annotations

import hashlib

from bytereplay.encoding import b64url_decode
from bytereplay.errors import NonceError

PROFILE = "tag:bytereplay.dev,2026:evidence/v1"

EAT_NONCE = "eat_nonce"
EAT_PROFILE = "eat_profile"
IAT = "iat"
CNF = "cnf"  # RFC 7800 confirmation: {"jwk": <evidence public key>}, bound by the quote
MEASUREMENTS = "measurements"  # {"model_digest", "container_digest", "runtime"}
RECORD = "bytereplay.record"
RECORD_DIGEST = "bytereplay.record_digest"
OUTPUT_HASH = "bytereplay.output_hash"
REQUEST = "bytereplay.request"  # {"input", "template", "decode": {...}} for replay
QUOTE = "bytereplay.quote"  # {"provider", "simulated", ...provider fields}
# Optional: JWTs from attestation services (Intel Trust Authority, NVIDIA NRAS style), a
# list of texts, appraised by the verifier (verifier/external.py) against their JWKS.
EXTERNAL_TOKENS = "bytereplay.external_tokens"
MAX_EXTERNAL_TOKENS = 8
MAX_EXTERNAL_TOKEN_CHARS = 64 * 1024
# Optional, composite evidence: one GPU evidence object per device beside the CPU quote
# (`bytereplay.quote`), each the `nvidia` provider's quote dict plus its `index`, its SPDM
# nonce derived by `device_gpu_nonce(nonce, record digest, index)`.
GPU_EVIDENCE = "bytereplay.gpu_evidence"
MAX_GPUS = 16

# CWT integer labels for the registered claims (RFC 8392, RFC 9711).
CWT_LABELS: dict[str, int] = {IAT: 6, CNF: 8, EAT_NONCE: 10, EAT_PROFILE: 265}

NONCE_MIN, NONCE_MAX, NONCE_DEFAULT = 8, 64, 32

MEDIA_JWT = "application/eat+jwt"
MEDIA_CWT = "application/eat+cwt"


def decode_nonce(text: str) -> bytes:
    """A nonce from unpadded base64url text, 8..64 bytes."""
    try:
        raw = b64url_decode(text)
    except Exception:
        raise NonceError("nonce is not unpadded base64url text") from None
    if not NONCE_MIN <= len(raw) <= NONCE_MAX:
        raise NonceError(f"nonce is {len(raw)} bytes; it must be {NONCE_MIN}..{NONCE_MAX}")
    return raw


def report_data(nonce: bytes, record_digest: str, key_thumbprint: bytes) -> bytes:
    """The 64-byte TEE report data: SHA-512(nonce || run_record_digest || evidence_key_thumbprint).

    `record_digest` is the record's `sha-256:<hex>` tag; its 32 raw bytes are hashed.
    `key_thumbprint` is the raw 32-byte RFC 7638 thumbprint of the evidence key.
    """
    digest = bytes.fromhex(record_digest.removeprefix("sha-256:"))
    return hashlib.sha512(nonce + digest + key_thumbprint).digest()


# The GPU's SPDM nonce (32 bytes). One home for both derivations, used by the attester
# (attester.tee.nvidia, the composite capture) and the verifier (verifier.tee.nvidia,
# verifier.external for NRAS answers, the composite appraisal).
GPU_NONCE_LABEL = b"bytereplay/gpu-spdm-nonce/v1"


def gpu_nonce(report_data: bytes) -> bytes:
    """A lone GPU quote's SPDM nonce: SHA-256 of the 64-byte report data."""
    return hashlib.sha256(report_data).digest()


def device_gpu_nonce(nonce: bytes, record_digest: str, index: int) -> bytes:
    """The SPDM nonce of GPU `index` in composite evidence: SHA-256 over the label, the
    verifier nonce (length-prefixed, one byte), the record digest's 32 bytes and the index
    (4 bytes, big-endian). Another session, another record or another GPU position gives
    another nonce, so a GPU report cannot be replayed from one to the other."""
    if not 0 <= index < 1 << 32:
        raise ValueError("GPU index out of range")
    digest = bytes.fromhex(record_digest.removeprefix("sha-256:"))
    return hashlib.sha256(GPU_NONCE_LABEL + bytes([len(nonce)]) + nonce + digest
                          + index.to_bytes(4, "big")).digest()
