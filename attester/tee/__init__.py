"""TEE quote providers (simulated, tsm, nvidia) behind one interface.

`make_provider(name, ...)` builds the attester's provider; the verifier calls
`verify_quote(quote, trust, expected_report_data)`.
"""

from __future__ import annotations

from pathlib import Path

from attester.tee.base import (
    PROVIDERS,
    QuoteProvider,
    QuoteTrust,
    QuoteVerification,
    verify_quote,
)
from bytereplay.errors import UsageError
from bytereplay.home import Home

__all__ = [
    "PROVIDERS",
    "QuoteProvider",
    "QuoteTrust",
    "QuoteVerification",
    "make_provider",
    "trust_from_home",
    "verify_quote",
]


def make_provider(name: str, *, simulated_dir: Path, tsm_root: str | Path | None = None,
                  nvidia_device: int = 0) -> QuoteProvider:
    """The provider called `name`; `ProviderUnavailable` when it cannot run here."""
    if name == "simulated":
        from attester.tee.simulated import SimulatedProvider

        return SimulatedProvider(simulated_dir)
    if name == "tsm":
        from attester.tee.tsm import DEFAULT_ROOT, TsmProvider

        return TsmProvider(tsm_root or DEFAULT_ROOT)
    if name == "nvidia":
        from attester.tee.nvidia import NvidiaProvider

        return NvidiaProvider(nvidia_device)
    raise UsageError(f"unknown TEE provider {name!r}; choose one of {', '.join(PROVIDERS)}")


def trust_from_home(home: Home, *, extra_simulated_cas: tuple[str, ...] = (),
                    accept_tsm: bool = True, accept_nvidia: bool = True) -> QuoteTrust:
    """Trust anchors for a verifier sharing `home` with an attester: the simulated CA
    found in `home.simulated_ca` (if any) plus `extra_simulated_cas` (PEM)."""
    from attester.tee.simulated import load_ca_pem

    found = load_ca_pem(home.simulated_ca)
    cas = ((found,) if found else ()) + tuple(extra_simulated_cas)
    return QuoteTrust(simulated_cas=cas, accept_tsm=accept_tsm, accept_nvidia=accept_nvidia)
