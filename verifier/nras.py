"""NVIDIA Remote Attestation Service (NRAS) results: a platform token and one token per GPU.

NRAS (`POST /v3/attest/gpu`, `/v4/...`) answers a JSON array of two members, read here
from its JSON text or the parsed list:

    [["JWT", PLATFORM_TOKEN], {"GPU-0": GPU_TOKEN, "GPU-1": GPU_TOKEN, ...}]

The platform token's `submods` maps each GPU id to `["DIGEST", ["SHA-256", HEX]]` (also
read: `"SHA256"`), the SHA-256 of that GPU's token text; `eat_nonce` is the nonce the
attester gave NRAS (hex); `x-nvidia-overall-att-result` is NRAS's own verdict.

`verify_answer(answer, service, keys, expected_nonce, now)` accepts an answer only when:

1. its shape is the one above (at most `MAX_GPUS` GPUs; ids are text);
2. the platform token verifies against the service's JWKS (the pinned algorithms, issuer,
   audience when configured, `exp` and `iss` required, times checked at `now`);
3. its `eat_nonce` equals `expected_nonce` (hex, compared as bytes);
4. its `submods` names exactly the answer's GPUs, and each GPU token's SHA-256 is the
   digest the platform token carries for it: a GPU token whose digest is not there is
   refused;
5. each GPU token verifies against the same JWKS, and its `eat_nonce`, when present,
   is the expected one too.

Each GPU's claims are then mapped onto the facts local verification gives
(`verifier.tee.nvidia.GPU_FACTS`): `driver_version` (`x-nvidia-gpu-driver-version`),
`vbios_version` (`x-nvidia-gpu-vbios-version`, lower case as the SPDM opaque data reads),
`chip_sku` (None: NRAS does not say), `cc_mode` (None: NRAS's GPU token does not report
it), `mismatched_measurements` (the indexes of `x-nvidia-mismatch-measurement-records`;
`[]` when `measres` is `success`; None when the RIM measurements were not available),
plus `revocation` (`x-nvidia-cert-ocsp-status` of the report's certificate chain, or
`not-checked`), `hwmodel` and NRAS's failed checks. A revoked chain refuses the answer.

`x-nvidia-overall-att-result` is only an input (`nras_overall`), never the verdict: a
GPU is `hardware` only under the same rule as local verification (every check claim
true, `measres` success, secure boot on, debug disabled, no mismatch, CC mode on), so a
GPU token never reads as affirming while NRAS does not report the CC mode.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bytereplay.encoding import strict_json_loads
from bytereplay.errors import BytereplayError, SignatureError
from bytereplay.jwks import KeySet
from verifier.config import ExternalService

MAX_GPUS = 16
MAX_ANSWER_BYTES = 1 << 20
OVERALL = "x-nvidia-overall-att-result"
DIGEST_ALGS = ("SHA-256", "SHA256")
# The GPU token's check claims that must all be true for `hardware`.
GPU_CHECKS = (
    "x-nvidia-gpu-arch-check",
    "x-nvidia-gpu-attestation-report-parsed",
    "x-nvidia-gpu-attestation-report-nonce-match",
    "x-nvidia-gpu-attestation-report-signature-verified",
    "x-nvidia-gpu-attestation-report-cert-chain-validated",
    "x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
    "x-nvidia-gpu-driver-rim-signature-verified",
    "x-nvidia-gpu-driver-rim-cert-validated",
    "x-nvidia-gpu-driver-rim-measurements-available",
    "x-nvidia-gpu-vbios-rim-signature-verified",
    "x-nvidia-gpu-vbios-rim-cert-validated",
    "x-nvidia-gpu-vbios-rim-measurements-available",
)
CERT_CHAIN = "x-nvidia-gpu-attestation-report-cert-chain"
MISMATCHES = "x-nvidia-mismatch-measurement-records"


@dataclass(frozen=True)
class NrasAnswer:
    """A parsed (not yet verified) NRAS answer."""

    platform: str
    gpus: dict[str, str]


@dataclass(frozen=True)
class NrasResult:
    """A verified NRAS answer: the platform claims, NRAS's own overall result (an input
    only) and, per GPU id, the facts mapped as local verification names them."""

    platform: dict[str, Any]
    nras_overall: Any
    gpus: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def hardware(self) -> bool:
        return bool(self.gpus) and all(g["hardware"] for g in self.gpus.values())


def parse_answer(answer: Any) -> NrasAnswer:
    """The answer's platform token and GPU tokens; `SignatureError` naming what is wrong."""
    if isinstance(answer, (str, bytes)):
        try:
            answer = strict_json_loads(answer, max_bytes=MAX_ANSWER_BYTES)
        except BytereplayError as exc:
            raise SignatureError(f"NRAS answer is not JSON: {exc.detail}") from None
    if not isinstance(answer, list) or len(answer) != 2:
        raise SignatureError("NRAS answer is [[\"JWT\", platform token], {GPU id: token}]")
    head, gpus = answer
    if not (isinstance(head, list) and len(head) == 2 and head[0] == "JWT"
            and isinstance(head[1], str)):
        raise SignatureError("NRAS answer's first member is [\"JWT\", platform token]")
    if not isinstance(gpus, dict) or not gpus:
        raise SignatureError("NRAS answer's second member maps GPU ids to tokens")
    if len(gpus) > MAX_GPUS:
        raise SignatureError(f"NRAS answer names {len(gpus)} GPUs; at most {MAX_GPUS}")
    if not all(isinstance(v, str) for v in gpus.values()):
        raise SignatureError("NRAS answer's GPU tokens are JWT texts")
    return NrasAnswer(head[1], dict(gpus))


def _digest(entry: Any, gpu: str) -> bytes:
    if not (isinstance(entry, list) and len(entry) == 2 and entry[0] == "DIGEST"
            and isinstance(entry[1], list) and len(entry[1]) == 2
            and entry[1][0] in DIGEST_ALGS and isinstance(entry[1][1], str)):
        raise SignatureError(f"NRAS platform token: submods[{gpu!r}] is not "
                             "[\"DIGEST\", [\"SHA-256\", hex]]")
    try:
        value = bytes.fromhex(entry[1][1])
    except ValueError:
        raise SignatureError(f"NRAS platform token: submods[{gpu!r}] digest is not hex") from None
    if len(value) != 32:
        raise SignatureError(f"NRAS platform token: submods[{gpu!r}] digest is not 32 bytes")
    return value


def _check_nonce(claims: Mapping[str, Any], expected: bytes, what: str) -> None:
    nonce = claims.get("eat_nonce")
    try:
        got = bytes.fromhex(nonce) if isinstance(nonce, str) else None
    except ValueError:
        got = None
    if got is None or not hmac.compare_digest(got, expected):
        raise SignatureError(f"{what}: eat_nonce is not the expected nonce")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def gpu_facts(claims: Mapping[str, Any]) -> dict[str, Any]:
    """One GPU token's claims as local verification names them (see the module doc)."""
    records = claims.get(MISMATCHES)
    measres = claims.get("measres")
    mismatched: list[int] | None
    if isinstance(records, list) and records:
        mismatched = sorted({r["index"] for r in records
                             if isinstance(r, dict) and isinstance(r.get("index"), int)
                             and not isinstance(r.get("index"), bool)})
        if not mismatched:
            raise SignatureError("NRAS GPU token: mismatch records name no index")
    elif measres == "success":
        mismatched = []
    else:
        mismatched = None
    chain = claims.get(CERT_CHAIN)
    ocsp = chain.get("x-nvidia-cert-ocsp-status") if isinstance(chain, dict) else None
    revocation = ocsp if isinstance(ocsp, str) else "not-checked"
    failed = [c for c in GPU_CHECKS if claims.get(c) is not True]
    vbios = _text(claims.get("x-nvidia-gpu-vbios-version"))
    cc_mode: str | None = None  # NRAS's GPU token does not report the CC mode
    hardware = (not failed and measres == "success" and mismatched == []
                and claims.get("secboot") is True and claims.get("dbgstat") == "disabled"
                and revocation in ("good", "not-checked") and cc_mode == "on")
    return {"driver_version": _text(claims.get("x-nvidia-gpu-driver-version")),
            "vbios_version": vbios.lower() if vbios is not None else None,
            "chip_sku": None, "cc_mode": cc_mode, "mismatched_measurements": mismatched,
            "revocation": revocation, "hwmodel": _text(claims.get("hwmodel")),
            "failed_checks": failed, "hardware": hardware}


def verify_answer(answer: Any, service: ExternalService, keys: KeySet, expected_nonce: bytes,
                  now: float | None = None) -> NrasResult:
    """Checks 1 to 5 of the module doc, then the mapping; `SignatureError` on any refusal."""
    parsed = parse_answer(answer)
    opts: dict[str, Any] = {"algorithms": service.algorithms, "issuer": service.issuer,
                            "audience": service.audience, "leeway": service.leeway_s,
                            "require": ("exp", "iss"), "now": now}
    platform = keys.verify(parsed.platform, **opts)
    _check_nonce(platform, expected_nonce, "NRAS platform token")
    submods = platform.get("submods")
    if not isinstance(submods, dict):
        raise SignatureError("NRAS platform token has no submods")
    if set(submods) != set(parsed.gpus):
        raise SignatureError("NRAS platform token's submods do not name the answer's GPUs: "
                             f"{sorted(map(str, submods))} against {sorted(parsed.gpus)}")
    gpus: dict[str, dict[str, Any]] = {}
    for gpu, token in sorted(parsed.gpus.items()):
        digest = hashlib.sha256(token.encode()).digest()
        if not hmac.compare_digest(digest, _digest(submods[gpu], gpu)):
            raise SignatureError(f"NRAS GPU token {gpu!r}: its digest is not the one in the "
                                 "platform token's submods")
        claims = keys.verify(token, **opts)
        if "eat_nonce" in claims:
            _check_nonce(claims, expected_nonce, f"NRAS GPU token {gpu!r}")
        facts = gpu_facts(claims)
        if facts["revocation"] == "revoked":
            raise SignatureError(f"NRAS GPU token {gpu!r}: the GPU's certificate is revoked")
        gpus[gpu] = facts
    return NrasResult(platform=platform, nras_overall=platform.get(OVERALL), gpus=gpus)
