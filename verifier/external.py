"""External attestation tokens: JWTs from attestation services (Intel Trust Authority,
NVIDIA NRAS style), verified against the service's JWKS.

Each configured service (`verifier.config.ExternalService`) pins: the JWKS source (URL
or file, through `bytereplay.jwks.KeySet`: cached, refetched once on an unknown `kid`
with a cooldown), the algorithms (a subset of `bytereplay.keys.EXTERNAL_ALGS`), the
issuer, optionally the audience, and a leeway for `exp`/`nbf`. `exp` and `iss` are
required. Nothing the token carries picks its own key (`jku`, `x5u`, `jwk`, `x5c` are
refused by `bytereplay.jose`).

Evidence may carry such tokens in the optional claim `EXTERNAL_TOKENS` (a list of JWT
texts); the pipeline verifies each and reports it per service: `ok`, `failed` (a
configured service's token that does not verify: hardware contraindicated), or
`unknown-issuer` (no configured service; ignored by the default policy). The sidecar also
exposes `POST /v1/external/verify`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bytereplay.eat import EXTERNAL_TOKENS as EXTERNAL_TOKENS  # named once, in eat
from bytereplay.eat import MAX_EXTERNAL_TOKENS
from bytereplay.errors import BytereplayError, SignatureError
from bytereplay.jose import parse_unverified
from bytereplay.jwks import KeySet
from verifier.config import ExternalService

OK, FAILED, UNKNOWN_ISSUER = "ok", "failed", "unknown-issuer"


@dataclass(frozen=True)
class ExternalToken:
    service: str
    claims: dict[str, Any]


def keyset_for(service: ExternalService) -> KeySet:
    source: Path | str = service.jwks
    if not service.jwks.startswith(("http://", "https://")):
        source = Path(service.jwks)
    return KeySet(source, ttl=service.jwks_ttl_s, cooldown=service.refetch_cooldown_s)


def verify_external_token(token: str, service: ExternalService,
                          keys: KeySet | None = None) -> ExternalToken:
    """Verify one token from `service`; raises `SignatureError` saying what failed."""
    keyset = keys or keyset_for(service)
    claims = keyset.verify(
        token,
        algorithms=service.algorithms,
        issuer=service.issuer,
        audience=service.audience,
        leeway=service.leeway_s,
        require=("exp", "iss"),
    )
    return ExternalToken(service.name, claims)


class ExternalVerifier:
    """The configured services, each with its own cached key set."""

    def __init__(self, services: Sequence[ExternalService]) -> None:
        self.services = {s.name: s for s in services}
        self._keys = {s.name: keyset_for(s) for s in services}

    def service_for(self, token: str) -> ExternalService | None:
        """The configured service whose issuer the (unverified) token names."""
        _, payload = parse_unverified(token)
        iss = payload.get("iss")
        return next((s for s in self.services.values() if s.issuer == iss), None)

    def verify(self, token: str, service: str | None = None) -> ExternalToken:
        if service is not None:
            svc = self.services.get(service)
            if svc is None:
                raise SignatureError(f"no external attestation service named {service!r}")
        else:
            found = self.service_for(token)
            if found is None:
                raise SignatureError("the token's issuer is not a configured attestation service")
            svc = found
        return verify_external_token(token, svc, self._keys[svc.name])

    def appraise(self, tokens: Any) -> tuple[dict[str, str], dict[str, str]]:
        """Facts for the policy ({service: ok|failed|unknown-issuer}) and the check texts."""
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
                    raise SignatureError("an external token is JWT text")
                svc = self.service_for(token)
            except BytereplayError as exc:  # not JWT text, malformed, too large
                facts[label], texts[label] = FAILED, exc.detail
                continue
            if svc is None:
                facts[label], texts[label] = UNKNOWN_ISSUER, "issuer is not configured; ignored"
                continue
            try:
                verify_external_token(token, svc, self._keys[svc.name])
            except BytereplayError as exc:
                facts[svc.name], texts[svc.name] = FAILED, exc.detail
                continue
            if facts.get(svc.name) != FAILED:
                facts[svc.name], texts[svc.name] = OK, OK
        return facts, texts
