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

What `verify` checks, honestly: the quote is parsed enough to find its report data
(TDX quote v4/v5: TD quote body at offset 48 (v4) or 54 (v5), REPORTDATA at body
offset 520; SEV-SNP ATTESTATION_REPORT: REPORT_DATA at 0x50) and that report data
must equal the expected binding. The hardware signature and its chain to the vendor
root (Intel PCS collateral: PCK certificates, TCB info, QE identity; AMD VCEK/ASK/ARK)
are NOT checked here, so the result has `hardware=False` with the reason
"collateral verification not configured". Hand the `outblob` to a collateral-aware
verifier (Intel Trust Authority, an AMD KDS-backed verifier, ...) for that.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import struct
from pathlib import Path
from typing import Any, Protocol

from attester.tee.base import (
    REASON_NO_COLLATERAL,
    QuoteTrust,
    QuoteVerification,
    field_b64,
    field_str,
    require_report_data,
    same_bytes,
)
from bytereplay.encoding import b64url_encode
from bytereplay.errors import ProviderUnavailable, QuoteError

NAME = "tsm"
DEFAULT_ROOT = Path("/sys/kernel/config/tsm/report")
TEE_BY_KERNEL_PROVIDER = {"tdx_guest": "tdx", "sev_guest": "sev-snp"}
MAX_BLOB = 1 << 20
ATTEMPTS = 3

# Intel TDX DCAP quote, v4 and v5 (Intel TDX DCAP Quoting Library API, appendix A).
TDX_HEADER_LEN = 48
TDX_TEE_TYPE = 0x00000081
TDX_BODY_LEN = 584
TDX_FIELDS = {  # offsets inside the TD quote body (TD 1.0 layout; TD 1.5 appends fields)
    "mrtd": (136, 48), "mrconfigid": (184, 48), "mrowner": (232, 48),
    "mrownerconfig": (280, 48), "rtmr0": (328, 48), "rtmr1": (376, 48),
    "rtmr2": (424, 48), "rtmr3": (472, 48),
}
TDX_REPORT_DATA = 520

# AMD SEV-SNP ATTESTATION_REPORT (SEV-SNP ABI specification, table "ATTESTATION_REPORT").
SNP_REPORT_LEN = 0x4A0
SNP_REPORT_DATA = 0x50
SNP_FIELDS = {"measurement": (0x90, 48), "host_data": (0xC0, 32), "id_key_digest": (0xE0, 48)}


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

    def __init__(self, root: str | Path = DEFAULT_ROOT, fs: TsmFs | None = None) -> None:
        self.root = Path(root)
        self.fs: TsmFs = fs or OsFs()
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
            return quote
        raise ProviderUnavailable(f"configfs-tsm: {last}; gave up after {ATTEMPTS} attempts")

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


# -- parsing and verification -------------------------------------------------------

def parse_tdx(quote: bytes) -> tuple[bytes, dict[str, str]]:
    """(report data, registers) from a TDX DCAP quote v4 or v5."""
    if len(quote) < TDX_HEADER_LEN:
        raise QuoteError("TDX quote shorter than its 48-byte header")
    version, _key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if tee_type != TDX_TEE_TYPE:
        raise QuoteError(f"not a TDX quote (TEE type {tee_type:#x}, expected {TDX_TEE_TYPE:#x})")
    if version == 4:
        body = TDX_HEADER_LEN
    elif version == 5:
        if len(quote) < TDX_HEADER_LEN + 6:
            raise QuoteError("TDX quote v5 truncated before its body descriptor")
        body_type, body_size = struct.unpack_from("<HI", quote, TDX_HEADER_LEN)
        if body_type not in (2, 3) or body_size < TDX_BODY_LEN:
            raise QuoteError(f"TDX quote v5 body type {body_type} is not a TD report")
        body = TDX_HEADER_LEN + 6
    else:
        raise QuoteError(f"unsupported TDX quote version {version}")
    if len(quote) < body + TDX_BODY_LEN:
        raise QuoteError("TDX quote truncated inside the TD quote body")
    regs = {f"tdx.{k}": quote[body + off: body + off + n].hex() for k, (off, n) in TDX_FIELDS.items()}
    return quote[body + TDX_REPORT_DATA: body + TDX_REPORT_DATA + 64], regs


def parse_snp(report: bytes) -> tuple[bytes, dict[str, str]]:
    """(report data, registers) from an SEV-SNP attestation report."""
    if len(report) < SNP_REPORT_LEN:
        raise QuoteError(f"SEV-SNP report is {len(report)} bytes; expected {SNP_REPORT_LEN}")
    (version,) = struct.unpack_from("<I", report, 0)
    if not 2 <= version <= 5:
        raise QuoteError(f"unsupported SEV-SNP report version {version}")
    regs = {f"snp.{k}": report[off: off + n].hex() for k, (off, n) in SNP_FIELDS.items()}
    return report[SNP_REPORT_DATA: SNP_REPORT_DATA + 64], regs


def verify(quote: dict[str, Any], trust: QuoteTrust, expected_report_data: bytes) -> QuoteVerification:
    del trust  # no collateral is configurable yet; see the module docstring
    tee = field_str(quote, "tee")
    blob = field_b64(quote, "outblob")
    if len(blob) > MAX_BLOB:
        raise QuoteError("tsm outblob over 1 MiB")
    if tee == "tdx":
        report_data, regs = parse_tdx(blob)
        what = "the TDX quote signature and its PCK chain to Intel's root"
    elif tee == "sev-snp":
        report_data, regs = parse_snp(blob)
        what = "the SEV-SNP report signature and its VCEK/ASK/ARK chain to AMD's root"
    else:
        raise QuoteError(f"tsm quote from an unknown TEE {tee!r}; known: tdx, sev-snp")
    if not same_bytes(report_data, expected_report_data):
        raise QuoteError(f"the {tee} report data does not match SHA-512(nonce || record digest "
                         "|| evidence key thumbprint): the quote is not bound to this evidence")
    return QuoteVerification(
        provider=NAME, simulated=False, hardware=False, measurements=regs,
        report_data=report_data, chain_ok=False,
        reasons=(f"{REASON_NO_COLLATERAL}: {what} were NOT checked",
                 f"report data inside the {tee} quote binds nonce, run record digest and "
                 "evidence key"),
    )
