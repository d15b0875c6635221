"""External attestation tokens: JWTs from attestation services (Intel Trust Authority,
NVIDIA NRAS style), verified against the service's JWKS.

Each configured service (`verifier.config.ExternalService`) pins: the JWKS source (URL
or file, through `bytereplay.jwks.KeySet`: cached, refetched once on an unknown `kid`
with a cooldown), the algorithms (a subset of `bytereplay.keys.EXTERNAL_ALGS`), the
issuer, optionally the audience, and a leeway for `exp`/`nbf`. `exp` and `iss` are
required. Nothing the token carries picks its own key (`jku`, `x5u`, `jwk`, `x5c` are
refused by `bytereplay.jose`).

A service's `kind` says what its tokens are: `jwt` (verified, claims kept as they are),
`nras` (an NVIDIA NRAS answer, platform token plus one token per GPU, given as its JSON
text: `verifier.nras`, checked against the expected GPU nonce) or `ita` (an Intel Trust
Authority TDX token: `verifier.ita`, checked against the expected report data). Their
claims are mapped (`ExternalToken.mapped`) onto the facts local verification gives: per
GPU (`gpus`) or the TDX quote's (`tdx`).

Evidence may carry such tokens in the optional claim `EXTERNAL_TOKENS` (a list of JWT
texts, or NRAS answers as JSON text); the pipeline verifies each, an NRAS answer against
SHA-256 of the Evidence's report data (the GPU nonce) and an ITA token against the report
data itself, and reports it per service: `ok`, `failed` (a configured service's token
that does not verify: hardware contraindicated), or `unknown-issuer` (no configured
service; ignored by the default policy). The sidecar also exposes
`POST /v1/external/verify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bytereplay.eat import EXTERNAL_TOKENS as EXTERNAL_TOKENS  # named once, in eat
from bytereplay.eat import MAX_EXTERNAL_TOKENS, gpu_nonce
from bytereplay.errors import BytereplayError, SignatureError
from bytereplay.jose import parse_unverified
from bytereplay.jwks import KeySet
from verifier import ita, nras
from verifier.config import ExternalService

OK, FAILED, UNKNOWN_ISSUER = "ok", "failed", "unknown-issuer"


@dataclass(frozen=True)
class ExternalToken:
    service: str
    claims: dict[str, Any]
    mapped: dict[str, Any] = field(default_factory=dict)  # nras: {"gpus"}, ita: {"tdx"}


def keyset_for(service: ExternalService) -> KeySet:
    source: Path | str = service.jwks
    if not service.jwks.startswith(("http://", "https://")):
        source = Path(service.jwks)
    return KeySet(source, ttl=service.jwks_ttl_s, cooldown=service.refetch_cooldown_s,
                  cache_file=service.jwks_cache)


def is_nras_answer(token: Any) -> bool:
    return isinstance(token, str) and token.lstrip().startswith("[")


def verify_external_token(token: str, service: ExternalService,
                          keys: KeySet | None = None, *, gpu_nonce: bytes | None = None,
                          report_data: bytes | None = None,
                          now: float | None = None) -> ExternalToken:
    """Verify one token from `service` as its kind reads; raises `SignatureError` saying what
    failed. An NRAS answer needs `gpu_nonce`; an ITA token is checked against `report_data`
    when given."""
    keyset = keys or keyset_for(service)
    if service.kind == "nras":
        if gpu_nonce is None:
            raise SignatureError("an NRAS answer is checked against the GPU nonce: none given")
        result = nras.verify_answer(token, service, keyset, gpu_nonce, now)
        return ExternalToken(service.name, result.platform,
                             {"gpus": result.gpus, "nras_overall": result.nras_overall})
    if is_nras_answer(token):
        raise SignatureError(f"{service.name} is not an NRAS service (kind {service.kind})")
    if service.kind == "ita":
        found = ita.verify_token(token, service, keyset, expected_report_data=report_data,
                                 now=now)
        return ExternalToken(service.name, found.claims, {"tdx": found.tdx})
    claims = keyset.verify(
        token,
        algorithms=service.algorithms,
        issuer=service.issuer,
        audience=service.audience,
        leeway=service.leeway_s,
        require=("exp", "iss"),
        now=now,
    )
    return ExternalToken(service.name, claims)


class ExternalVerifier:
    """The configured services, each with its own cached key set."""

    def __init__(self, services: Sequence[ExternalService]) -> None:
        self.services = {s.name: s for s in services}
        self._keys = {s.name: keyset_for(s) for s in services}

    def service_for(self, token: str) -> ExternalService | None:
        """The configured service whose issuer the (unverified) token names (for an NRAS
        answer, its platform token)."""
        if is_nras_answer(token):
            token = nras.parse_answer(token).platform
        _, payload = parse_unverified(token)
        iss = payload.get("iss")
        return next((s for s in self.services.values() if s.issuer == iss), None)

    def verify(self, token: str, service: str | None = None, *,
               gpu_nonce: bytes | None = None, report_data: bytes | None = None,
               now: float | None = None) -> ExternalToken:
        if service is not None:
            svc = self.services.get(service)
            if svc is None:
                raise SignatureError(f"no external attestation service named {service!r}")
        else:
            found = self.service_for(token)
            if found is None:
                raise SignatureError("the token's issuer is not a configured attestation service")
            svc = found
        return verify_external_token(token, svc, self._keys[svc.name], gpu_nonce=gpu_nonce,
                                     report_data=report_data, now=now)

    def appraise(self, tokens: Any, report_data: bytes | None = None,
                 now: float | None = None) -> tuple[dict[str, str], dict[str, str]]:
        """Facts for the policy ({service: ok|failed|unknown-issuer}) and the check texts.
        `report_data`: the Evidence's expected report data (NRAS answers are checked
        against its SHA-256, the GPU nonce; ITA tokens against it)."""
        facts: dict[str, str] = {}
        texts: dict[str, str] = {}
        if not isinstance(tokens, list) or len(tokens) > MAX_EXTERNAL_TOKENS:
            facts["evidence"] = FAILED
            texts["evidence"] = (f"{EXTERNAL_TOKENS} must be a list of at most "
                                 f"{MAX_EXTERNAL_TOKENS} JWT texts")
            return facts, texts
        for i, token in enumerate(tokens):
            label = f"token[{i}]"
            try:
                if not isinstance(token, str):
                    raise SignatureError("an external token is JWT text (or an NRAS answer "
                                         "as JSON text)")
                svc = self.service_for(token)
            except BytereplayError as exc:  # not JWT text, malformed, too large
                facts[label], texts[label] = FAILED, exc.detail
                continue
            if svc is None:
                facts[label], texts[label] = UNKNOWN_ISSUER, "issuer is not configured; ignored"
                continue
            try:
                verify_external_token(
                    token, svc, self._keys[svc.name], report_data=report_data, now=now,
                    gpu_nonce=gpu_nonce(report_data) if report_data else None)
            except BytereplayError as exc:
                facts[svc.name], texts[svc.name] = FAILED, exc.detail
                continue
            if facts.get(svc.name) != FAILED:
                facts[svc.name], texts[svc.name] = OK, OK
        return facts, texts
