"""The quote-verification interface: one `QuoteVerifier` per TEE scheme, one registry.

Evidence carries a quote: a JSON object with at least `provider` (the attester-side
capture: `simulated`, `tsm`, `nvidia`) and `simulated` (bool). Its *kind* names the
scheme that verifies it (`declared_kind`): the provider's name, except that a `tsm`
quote is `tdx` or `snp` by its `tee` field. The registry maps a kind to the one module
that verifies it; adding a scheme means writing that module and naming it once in
`SCHEME_MODULES` (or calling `register` from a test).

A scheme verifies in two steps:

- `parse(quote)` reads the quote object into the scheme's own parsed form, refusing
  malformed input with `QuoteError`;
- `verify(parsed, expected_report_data, trust, at)` checks signatures and chains
  against the scheme's `SchemeTrust` at time `at` and the report-data binding, and
  returns a `QuoteVerification`, or raises `QuoteError` on any refusal.

Trust is configured per scheme and never taken from the quote. The default is
pessimistic: a scheme with no trust configuration (`SchemeTrust.configured` False)
refuses its quotes (`verify_quote` raises before the scheme runs).
"""

from __future__ import annotations

import hmac
import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from bytereplay.encoding import b64url_decode
from bytereplay.errors import BytereplayError, QuoteError

REPORT_DATA_LEN = 64
# kind -> module holding its `SCHEME`; the one place a scheme is named.
SCHEME_MODULES: dict[str, str] = {
    "simulated": "verifier.tee.simulated",
    "tdx": "verifier.tee.tdx",
    "snp": "verifier.tee.snp",
    "nvidia": "verifier.tee.nvidia",
}
KIND_BY_TSM_TEE = {"tdx": "tdx", "sev-snp": "snp"}
DEFAULT_ALLOWED_TCB = ("UpToDate",)


@dataclass(frozen=True)
class SchemeTrust:
    """One scheme's trust configuration, from the verifier's config (`tee.<kind>`).

    - `configured`: the operator configured this scheme; False refuses its quotes.
    - `roots`: PEM trust anchors to use instead of the vendor's pinned ones (the
      simulated CA; for real schemes only a *test root*, see `test_root`).
    - `test_root`: True when `roots` is a test root. It is named as such wherever the
      result appears (EAR, /v1/info) and never confused with a vendor root.
    - `collateral`: where collateral comes from (a folder, a file or a base URL).
    - `certs`: where endorsement certificates come from (folder or base URL).
    - `allowed_tcb`: TCB states that may verify; the default allows UpToDate only.
    - `min_tcb`: per product minimum TCB components (SEV-SNP).
    - `cache_dir`: where fetched collateral is cached on disk.
    - `crl`: where the vendor's CRL comes from (SEV-SNP: AMD's, a file, a folder of
      `<product>.crl` or a KDS base URL); None: revocation is not checked, and says so.
    - `ocsp`: an OCSP responder URL for revocation (NVIDIA); None: revocation is "not
      checked", and results say so.
    """

    configured: bool = False
    roots: tuple[str, ...] = ()
    test_root: bool = False
    collateral: str | None = None
    certs: str | None = None
    allowed_tcb: tuple[str, ...] = DEFAULT_ALLOWED_TCB
    min_tcb: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    cache_dir: Path | None = None
    crl: str | None = None
    ocsp: str | None = None


@dataclass(frozen=True)
class QuoteVerification:
    """What a quote showed.

    - `scheme`: the kind that verified it; `provider`: the attester-side capture.
    - `hardware`: True only when real hardware evidence was verified to a vendor root
      (or a named test root) with an allowed TCB.
    - `chain_ok`: the quote's signature chains to a configured or pinned anchor.
    - `measurements`: registers the quote asserts, `<scheme>.<name>` -> hex.
    - `reasons`: what was and was not checked, in words, for the attestation result.
    - `tcb_status`, `advisories`, `collateral` (issue/next-update times, RFC 3339),
      `root` (which anchor decided, e.g. "TEST ROOT (not Intel)"), `debug`, `claims`
      (further scheme claims, JSON-ready).
    - `ear_facts`: what the scheme adds to the EAR's `bytereplay.tee` beside the common
      facts, under keys of its own (e.g. nvidia's `gpu`), JSON-ready.
    """

    provider: str
    simulated: bool
    hardware: bool
    measurements: dict[str, str]
    report_data: bytes
    chain_ok: bool
    reasons: tuple[str, ...] = ()
    scheme: str = ""
    tcb_status: str | None = None
    advisories: tuple[str, ...] = ()
    collateral: dict[str, str] = field(default_factory=dict)
    root: str | None = None
    debug: bool = False
    claims: dict[str, Any] = field(default_factory=dict)
    ear_facts: dict[str, Any] = field(default_factory=dict)

    @property
    def tcb_up_to_date(self) -> bool:
        return self.tcb_status in (None, "UpToDate")


@runtime_checkable
class QuoteVerifier(Protocol):
    """One TEE scheme's verifier."""

    @property
    def kind(self) -> str: ...

    def parse(self, quote: dict[str, Any]) -> Any:
        """The scheme's parsed form of `quote`; `QuoteError` when malformed."""
        ...

    def verify(self, parsed: Any, expected_report_data: bytes, trust: SchemeTrust,
               at: datetime) -> QuoteVerification:
        """Check `parsed` against `trust` at `at` and its binding to the report data."""
        ...


_REGISTRY: dict[str, QuoteVerifier] = {}


def register(scheme: QuoteVerifier) -> None:
    """Add (or replace) the verifier for `scheme.kind`."""
    _REGISTRY[scheme.kind] = scheme


def unregister(kind: str) -> None:
    _REGISTRY.pop(kind, None)


def known_kinds() -> tuple[str, ...]:
    return tuple(dict.fromkeys((*SCHEME_MODULES, *_REGISTRY)))


def scheme_for(kind: str) -> QuoteVerifier:
    """The verifier registered for `kind`, loading its module on first use."""
    found = _REGISTRY.get(kind)
    if found is not None:
        return found
    module = SCHEME_MODULES.get(kind)
    if module is None:
        raise QuoteError(f"unknown quote kind {kind!r}; known: {list(known_kinds())}")
    scheme = importlib.import_module(module).SCHEME
    if not isinstance(scheme, QuoteVerifier):
        raise TypeError(f"{module}.SCHEME does not implement QuoteVerifier")
    register(scheme)
    return scheme


def declared_kind(quote: Any) -> str:
    """The scheme a quote object declares: its provider, or for `tsm` its TEE."""
    if not isinstance(quote, dict):
        raise QuoteError("a quote is a JSON object")
    provider = quote.get("provider")
    if not isinstance(provider, str):
        raise QuoteError("quote field 'provider' is missing or not text")
    simulated = quote.get("simulated")
    if not isinstance(simulated, bool):
        raise QuoteError("quote field 'simulated' is missing or not a boolean")
    if provider == "tsm":
        tee = quote.get("tee")
        kind = KIND_BY_TSM_TEE.get(tee) if isinstance(tee, str) else None
        if kind is None:
            raise QuoteError(f"tsm quote from an unknown TEE {tee!r}; known: "
                             f"{', '.join(KIND_BY_TSM_TEE)}")
        provider = kind
    if simulated and provider != "simulated":
        raise QuoteError(f"a {provider!r} quote that calls itself simulated is refused")
    return provider


def verify_quote(quote: Any, trusts: Mapping[str, SchemeTrust], expected_report_data: bytes,
                 at: datetime) -> QuoteVerification:
    """Verify `quote` with the scheme it declares, under that scheme's trust, at `at`.

    Raises `QuoteError` on any refusal, with a message that says what failed; a scheme
    without trust configuration refuses before its code runs.
    """
    require_report_data(expected_report_data)
    kind = declared_kind(quote)
    scheme = scheme_for(kind)
    trust = trusts.get(kind)
    if trust is None or not trust.configured:
        raise QuoteError(f"{kind} quotes are refused: this verifier has no trust configuration "
                         f"for {kind} (config tee.{kind})")
    return scheme.verify(scheme.parse(quote), expected_report_data, trust, at)


def require_report_data(report_data: bytes) -> bytes:
    if not isinstance(report_data, bytes) or len(report_data) != REPORT_DATA_LEN:
        raise QuoteError(f"report data must be {REPORT_DATA_LEN} bytes")
    return report_data


def same_bytes(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


def field_str(quote: dict[str, Any], name: str) -> str:
    value = quote.get(name)
    if not isinstance(value, str):
        raise QuoteError(f"quote field {name!r} is missing or not text")
    return value


def field_b64(quote: dict[str, Any], name: str) -> bytes:
    text = field_str(quote, name)
    try:
        return b64url_decode(text)
    except BytereplayError:
        raise QuoteError(f"quote field {name!r} is not unpadded base64url") from None
