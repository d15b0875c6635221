"""The `tsm` provider: Intel TDX and AMD SEV-SNP quotes through Linux configfs-tsm.

The kernel interface (Documentation/ABI/testing/configfs-tsm), under
`/sys/kernel/config/tsm/report` by default (configurable):

    mkdir report/<entry>            the kernel creates the attribute files
    write report/<entry>/inblob     up to 64 bytes of report data
    read  report/<entry>/outblob    the quote (TDX) or attestation report (SNP)
    read  report/<entry>/auxblob    SNP: the certificate table, where the host supplies it
    read  report/<entry>/provider   "tdx_guest" or "sev_guest"
    read  report/<entry>/generation increments on every write; a change between our
                                    write and our read means another writer raced us
    rmdir report/<entry>

The quote's `tee` names the verifier's scheme (`tdx` -> `verifier.tee.tdx`, `sev-snp`
-> `verifier.tee.snp`); capture only here.

What the verifier needs beside the quote is saved with it: for SEV-SNP, the extended
report's certificate table (`auxblob`); for TDX, where the operator configures a PCS /
PCCS v4 base URL (`collateral_url`, the attester's `tdx_collateral_url`), the collateral
for the quote's FMSPC and PCK CA as `"collateral"` (dcap-qvl's `QuoteCollateralV3` JSON),
fetched through `bytereplay.tdx_collateral` and cached on disk (`collateral_cache`) until
its next update. A failed fetch is `ProviderUnavailable` (no quote without it); with no
URL configured nothing is stored and the verifier uses its own source.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from attester.tee.base import require_report_data
from bytereplay.encoding import b64url_encode
from bytereplay.errors import ProviderUnavailable, QuoteError
from bytereplay.tdx_collateral import CollateralSource, quote_fmspc_and_ca

NAME = "tsm"
DEFAULT_ROOT = Path("/sys/kernel/config/tsm/report")
TEE_BY_KERNEL_PROVIDER = {"tdx_guest": "tdx", "sev_guest": "sev-snp"}
MAX_BLOB = 1 << 20
ATTEMPTS = 3

class TsmFs(Protocol):
    """The four filesystem operations the provider uses (tests substitute a fake kernel)."""

    def mkdir(self, path: Path) -> None: ...
    def rmdir(self, path: Path) -> None: ...
    def write(self, path: Path, data: bytes) -> None: ...
    def read(self, path: Path) -> bytes: ...


class OsFs:
    def mkdir(self, path: Path) -> None:
        os.mkdir(path, 0o700)

    def rmdir(self, path: Path) -> None:
        os.rmdir(path)

    def write(self, path: Path, data: bytes) -> None:
        with open(path, "wb", buffering=0) as fh:
            fh.write(data)

    def read(self, path: Path) -> bytes:
        with open(path, "rb") as fh:
            return fh.read(MAX_BLOB + 1)


def _unavailable(what: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"configfs-tsm not available: {what}")


class TsmProvider:
    """TDX / SEV-SNP quotes from configfs-tsm. `root` is the `tsm/report` folder."""

    name = NAME
    simulated = False

    def __init__(self, root: str | Path = DEFAULT_ROOT, fs: TsmFs | None = None, *,
                 collateral_url: str | None = None, collateral_cache: Path | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.root = Path(root)
        self.fs: TsmFs = fs or OsFs()
        self.clock = clock or (lambda: datetime.now(UTC))
        self.collateral: CollateralSource | None = None
        if collateral_url is not None:
            if not collateral_url.startswith(("http://", "https://")):
                raise ProviderUnavailable(f"tdx collateral URL {collateral_url[:80]!r} is not "
                                          "an http(s) PCS/PCCS base URL")
            self.collateral = CollateralSource(collateral_url, collateral_cache)
        if not self.root.is_dir():
            raise _unavailable(
                f"{self.root} does not exist (it needs a confidential VM with the tdx_guest or "
                "sev_guest driver and configfs mounted at /sys/kernel/config)")

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        require_report_data(report_data)
        last = ""
        for _ in range(ATTEMPTS):
            result = self._try_once(report_data)
            if isinstance(result, str):
                last = result
                continue
            kernel_provider, outblob, auxblob, generation = result
            quote: dict[str, Any] = {
                "provider": NAME,
                "simulated": False,
                "kernel_provider": kernel_provider,
                "tee": TEE_BY_KERNEL_PROVIDER.get(kernel_provider, "unknown"),
                "generation": generation,
                "outblob": b64url_encode(outblob),
                # Software measurements, bound only through the run record digest in
                # the report data, not measured by the hardware.
                "software_measurements": dict(measurements),
            }
            if auxblob:
                quote["auxblob"] = b64url_encode(auxblob)
            if quote["tee"] == "tdx" and self.collateral is not None:
                quote["collateral"] = self._collateral_for(self.collateral, outblob)
            return quote
        raise ProviderUnavailable(f"configfs-tsm: {last}; gave up after {ATTEMPTS} attempts")

    def _collateral_for(self, source: CollateralSource, outblob: bytes) -> dict[str, str]:
        """The collateral for this TDX quote's platform, fresh now (cache first)."""
        try:
            fmspc, ca = quote_fmspc_and_ca(outblob)
            found = source.get(fmspc, self.clock(), ca)
        except QuoteError as exc:
            raise ProviderUnavailable(f"tdx collateral from {source.url}: "
                                      f"{exc.detail}") from None
        return found.as_json()

    def _read_int(self, path: Path) -> int:
        text = self.fs.read(path).decode("ascii", "replace").strip()
        if not text.isdigit():
            raise _unavailable(f"{path} does not hold a number")
        return int(text)

    def _try_once(self, report_data: bytes) -> tuple[str, bytes, bytes, int] | str:
        entry = self.root / f"bytereplay-{os.getpid()}-{secrets.token_hex(6)}"
        try:
            self.fs.mkdir(entry)
        except OSError as exc:
            raise _unavailable(f"cannot create a report entry in {self.root}: {exc.strerror}") from None
        try:
            kernel_provider = self.fs.read(entry / "provider").decode("ascii", "replace").strip()
            before = self._read_int(entry / "generation")
            self.fs.write(entry / "inblob", report_data)
            outblob = self.fs.read(entry / "outblob")
            try:
                auxblob = self.fs.read(entry / "auxblob")
            except FileNotFoundError:
                auxblob = b""
            except OSError:
                auxblob = b""  # the host supplies no certificates: fine, they are optional
            after = self._read_int(entry / "generation")
        except OSError as exc:
            name = Path(exc.filename).name if exc.filename else "the report entry"
            raise _unavailable(f"reading {name} failed: {exc.strerror}") from None
        finally:
            with contextlib.suppress(OSError):
                self.fs.rmdir(entry)
        if after != before + 1:
            return (f"another writer changed the report entry while it was read "
                    f"(generation {before} -> {after})")
        if not outblob:
            raise _unavailable("the kernel returned an empty outblob")
        if len(outblob) > MAX_BLOB or len(auxblob) > MAX_BLOB:
            raise _unavailable("the kernel returned a blob over 1 MiB")
        return kernel_provider, outblob, auxblob, after
