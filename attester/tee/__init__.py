"""TEE quote providers (simulated, tsm, nvidia) behind one interface: capture only.

`make_provider(name, ...)` builds the attester's provider; checking quotes is the
verifier's (`verifier.tee`).
"""

from __future__ import annotations

from pathlib import Path

from attester.tee.base import PROVIDERS, QuoteProvider
from bytereplay.errors import UsageError

__all__ = ["PROVIDERS", "QuoteProvider", "make_provider"]


def make_provider(name: str, *, simulated_dir: Path, tsm_root: str | Path | None = None,
                  nvidia_device: int = 0, tdx_collateral_url: str | None = None,
                  tdx_collateral_cache: Path | None = None) -> QuoteProvider:
    """The provider called `name`; `ProviderUnavailable` when it cannot run here.

    For `tsm`, `tdx_collateral_url` (a PCS/PCCS v4 base URL) makes TDX quotes carry
    their collateral, cached under `tdx_collateral_cache`.
    """
    if name == "simulated":
        from attester.tee.simulated import SimulatedProvider

        return SimulatedProvider(simulated_dir)
    if name == "tsm":
        from attester.tee.tsm import DEFAULT_ROOT, TsmProvider

        return TsmProvider(tsm_root or DEFAULT_ROOT, collateral_url=tdx_collateral_url,
                           collateral_cache=tdx_collateral_cache)
    if name == "nvidia":
        from attester.tee.nvidia import NvidiaProvider

        return NvidiaProvider(nvidia_device)
    raise UsageError(f"unknown TEE provider {name!r}; choose one of {', '.join(PROVIDERS)}")
