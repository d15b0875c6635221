"""Evidence for tests, benchmarks and demos: real runs, quoted and signed like the
attester does it, with hooks to construct the bad cases a verifier must catch.

NOT for production: the factory can sign anything it is asked to.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bytereplay.encoding import b64url_decode, b64url_encode
from bytereplay.home import Home
from bytereplay.keys import SigningKey, load_or_create_key
from bytereplay.record import RunRecord

if TYPE_CHECKING:
    from attester.engine import Engine, InferenceResult
    from attester.tee.base import QuoteProvider

PROMPT = "The verifier replays the bytes"
TEMPLATE = "Q: {input}\nA:"
DECODE: dict[str, Any] = {"max_new_tokens": 12, "temperature": 0.7, "top_k": 40, "top_p": 0.9,
                          "seed": 7, "stop": [], "eos": True}


def run(engine: Engine, prompt: str = PROMPT, decode: dict[str, Any] | None = None,
        cache: dict[str, InferenceResult] | None = None) -> InferenceResult:
    """One run of `engine` on (prompt, TEMPLATE, decode); memoised in `cache` when given."""
    from attester.engine import DecodePolicy, InferenceRequest

    d = dict(decode or DECODE)
    key = json.dumps([prompt, d], sort_keys=True)
    if cache is not None and key in cache:
        return cache[key]
    policy = DecodePolicy(**{**d, "stop": tuple(d["stop"])})
    result = engine.generate(InferenceRequest(prompt, TEMPLATE, policy))
    if cache is not None:
        cache[key] = result
    return result


class EvidenceFactory:
    """Evidence from real runs of `engine`, with the attester key and the simulated TEE
    of `home` (an attester and a verifier sharing `home` work together). `runs` shares
    the memo of runs between factories."""

    def __init__(self, home: Home, engine: Engine,
                 runs: dict[str, InferenceResult] | None = None) -> None:
        from attester.tee.simulated import SimulatedProvider

        self.home, self.engine = home, engine
        self.key = load_or_create_key(home.attester_key)
        self.provider = SimulatedProvider(home.simulated_ca)
        self.runs: dict[str, InferenceResult] = {} if runs is None else runs

    def make(
        self,
        nonce: bytes,
        *,
        prompt: str = PROMPT,
        decode: dict[str, Any] | None = None,
        edits: dict[str, Any] | None = None,
        fmt: str = "jwt",
        sign_key: SigningKey | None = None,
        cnf_key: SigningKey | None = None,
        quote_key: SigningKey | None = None,
        result: InferenceResult | None = None,
        quote_record: RunRecord | None = None,
        quote_measurements: dict[str, str] | None = None,
        provider: QuoteProvider | None = None,
    ) -> str | bytes:
        """Evidence for `nonce`. The record gets `edits` (dotted path -> value, None
        removes) and is then quoted and signed validly, unless told otherwise: `sign_key`
        signs with another key than the one in `cnf`, `cnf_key` puts another key in `cnf`,
        `quote_key` / `quote_record` bind the quote to another key / record,
        `quote_measurements` gives the quote other registers, `provider` another TEE."""
        from attester.evidence import (
            build_claims,
            encode,
            expected_report_data,
            measurements_for,
            request_claim,
        )

        d = dict(decode or DECODE)
        record = (result or run(self.engine, prompt, d, self.runs)).record
        for path, value in (edits or {}).items():
            record = record.replace(path, value)
        key = cnf_key or self.key
        quote = (provider or self.provider).quote(
            expected_report_data(nonce, quote_record or record, (quote_key or key).jwk),
            quote_measurements or measurements_for(record))
        claims = build_claims(record=record, nonce=nonce, key=key, quote=quote,
                              request=request_claim(prompt, TEMPLATE, d))
        return encode(claims, sign_key or key, fmt)


def tamper_jwt(token: str, mutate: Callable[[dict[str, Any]], None]) -> str:
    """The JWT with its payload changed and the old signature kept."""
    header, payload, sig = token.split(".")
    claims = json.loads(b64url_decode(payload))
    mutate(claims)
    body = b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{header}.{body}.{sig}"
