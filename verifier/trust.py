"""From the verifier's configuration to each TEE scheme's `SchemeTrust`: the one place.

- `simulated` is always configured. Its roots are the simulated platform CAs: the
  `simulated_cas` files, the `tee.simulated.roots` files and, with `trust_home_ca`, the
  CA an attester sharing the home created (picked up when it appears after start).
- Every other scheme is configured exactly when `tee.<kind>` is present; its `roots`
  files are read once, here, into PEM text. A scheme without an entry gets no
  `SchemeTrust` at all, so `verify_quote` refuses its quotes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bytereplay.errors import BytereplayError
from bytereplay.home import SIMULATED_CA_FILE
from verifier.config import TeeTrustConfig, VerifierConfig
from verifier.tee.base import SchemeTrust
from verifier.tee.simulated import load_ca_pem

SIMULATED = "simulated"


@dataclass(frozen=True)
class TrustSource:
    """One simulated platform CA the verifier trusts, and where it came from."""

    origin: str  # "home" or "config"
    path: str
    pem: str


def _read_pem(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise BytereplayError(f"cannot read {what} {path}: {exc}") from None


def load_trust_sources(config: VerifierConfig) -> list[TrustSource]:
    """The simulated platform CAs: configured files first, then the home's CA (if any)."""
    sim = config.tee.get(SIMULATED)
    paths = (*config.simulated_cas, *(sim.roots if sim is not None else ()))
    sources = [TrustSource("config", str(p), _read_pem(Path(p), "simulated CA")) for p in paths]
    if config.trust_home_ca:
        pem = load_ca_pem(config.home.simulated_ca)
        if pem is not None:
            sources.append(TrustSource("home", str(config.home.simulated_ca / SIMULATED_CA_FILE),
                                       pem))
    return sources


def home_ca_appeared(config: VerifierConfig, sources: list[TrustSource]) -> bool:
    """Whether the home's simulated CA exists now but is not among `sources`."""
    return config.trust_home_ca and not any(s.origin == "home" for s in sources) and \
        (config.home.simulated_ca / SIMULATED_CA_FILE).exists()


def _scheme_trust(entry: TeeTrustConfig, roots: tuple[str, ...]) -> SchemeTrust:
    return SchemeTrust(configured=True, roots=roots, test_root=entry.test_root,
                       collateral=entry.collateral, certs=entry.certs,
                       allowed_tcb=entry.allowed_tcb, min_tcb=entry.min_tcb,
                       cache_dir=entry.cache_dir, crl=entry.crl, ocsp=entry.ocsp)


def scheme_trusts(config: VerifierConfig, sources: list[TrustSource]) -> dict[str, SchemeTrust]:
    """Each configured scheme's trust (`sources`: from `load_trust_sources`)."""
    out: dict[str, SchemeTrust] = {}
    for kind, entry in config.tee.items():
        if kind == SIMULATED:
            continue
        roots = tuple(_read_pem(p, f"tee.{kind} root") for p in entry.roots)
        out[kind] = _scheme_trust(entry, roots)
    sim = config.tee.get(SIMULATED, TeeTrustConfig())
    out[SIMULATED] = _scheme_trust(sim, tuple(s.pem for s in sources))
    return out
