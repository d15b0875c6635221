"""The `nvidia` provider: NVIDIA confidential-computing GPU evidence through NVML.

On a Hopper/Blackwell GPU in CC mode, `nvmlDeviceGetConfComputeGpuAttestationReport`
returns an SPDM GET_MEASUREMENTS exchange signed by the GPU's attestation key, with a
32-byte requester nonce; `nvmlDeviceGetConfComputeGpuCertificate` returns the GPU's
certificate chain. The SPDM nonce is 32 bytes, the report data 64, so the GPU nonce
is SHA-256(report_data).

What `verify` checks, honestly: the report starts with an SPDM GET_MEASUREMENTS
request (code 0xE0) whose nonce (bytes 4..36) equals SHA-256(expected report data).
The SPDM signature, the device certificate chain to NVIDIA's root, the OCSP status
and the reference integrity manifests (RIMs) are NOT checked here: `hardware=False`
with the reason "collateral verification not configured". Hand the report to NVIDIA's
verifier (nvTrust local verifier or NRAS) for that.

On a machine without such a GPU, constructing the provider raises
`ProviderUnavailable("NVIDIA confidential-computing GPU not available: ...")`, never
a pynvml traceback.
"""

from __future__ import annotations

import contextlib
import hashlib
from typing import Any

from attester.tee.base import (
    REASON_NO_COLLATERAL,
    QuoteTrust,
    QuoteVerification,
    field_b64,
    require_report_data,
    same_bytes,
)
from bytereplay.encoding import b64url_encode
from bytereplay.errors import ProviderUnavailable, QuoteError

NAME = "nvidia"
SPDM_GET_MEASUREMENTS = 0xE0
NONCE_AT = slice(4, 36)
MAX_REPORT = 1 << 16
PREFIX = "NVIDIA confidential-computing GPU not available"


def gpu_nonce(report_data: bytes) -> bytes:
    """The 32-byte SPDM nonce for 64 bytes of report data."""
    return hashlib.sha256(report_data).digest()


def _unavailable(why: str) -> ProviderUnavailable:
    return ProviderUnavailable(f"{PREFIX}: {why}")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


class NvidiaProvider:
    """GPU attestation reports over NVML, for the GPU at `device_index`."""

    name = NAME
    simulated = False

    def __init__(self, device_index: int = 0) -> None:
        try:
            import pynvml
        except ImportError:
            raise _unavailable("pynvml (nvidia-ml-py) is not installed") from None
        self._nvml: Any = pynvml
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise _unavailable(f"NVML did not start ({_text(exc) or type(exc).__name__})") from None
        try:
            state = pynvml.nvmlSystemGetConfComputeState()
            if int(state.ccFeature) != int(getattr(pynvml, "NVML_CC_SYSTEM_FEATURE_ENABLED", 1)):
                raise _unavailable("confidential computing is not enabled on this system")
            count = int(pynvml.nvmlDeviceGetCount())
            if not 0 <= device_index < count:
                raise _unavailable(f"GPU index {device_index} not present ({count} GPU(s))")
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
            self.gpu_name = _text(pynvml.nvmlDeviceGetName(self._handle))
            self.driver = _text(pynvml.nvmlSystemGetDriverVersion())
        except ProviderUnavailable:
            self._shutdown()
            raise
        except Exception as exc:  # NVMLError_NotSupported, FunctionNotFound, ...
            self._shutdown()
            raise _unavailable(f"NVML confidential-computing query failed ({_text(exc)})") from None
        self.device_index = device_index

    def _shutdown(self) -> None:
        with contextlib.suppress(Exception):
            self._nvml.nvmlShutdown()

    def quote(self, report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
        require_report_data(report_data)
        nonce = gpu_nonce(report_data)
        nvml = self._nvml
        try:
            rep = nvml.nvmlDeviceGetConfComputeGpuAttestationReport(self._handle, list(nonce))
            report = bytes(rep.attestationReport[: int(rep.attestationReportSize)])
            cert = nvml.nvmlDeviceGetConfComputeGpuCertificate(self._handle)
            chain = bytes(cert.attestationCertChain[: int(cert.attestationCertChainSize)])
        except Exception as exc:
            raise _unavailable(f"the GPU attestation report could not be read ({_text(exc)})") from None
        return {
            "provider": NAME,
            "simulated": False,
            "gpu": self.gpu_name,
            "driver": self.driver,
            "gpu_nonce": b64url_encode(nonce),
            "attestation_report": b64url_encode(report),
            "cert_chain": b64url_encode(chain),
            "software_measurements": dict(measurements),
        }


def verify(quote: dict[str, Any], trust: QuoteTrust, expected_report_data: bytes) -> QuoteVerification:
    del trust  # NVIDIA collateral (RIMs, OCSP, device root) is not configurable yet
    expected = gpu_nonce(expected_report_data)
    report = field_b64(quote, "attestation_report")
    if len(report) > MAX_REPORT or len(report) < NONCE_AT.stop + 1:
        raise QuoteError("the NVIDIA attestation report has an impossible length")
    if report[1] != SPDM_GET_MEASUREMENTS:
        raise QuoteError("the NVIDIA attestation report does not start with an SPDM "
                         "GET_MEASUREMENTS request")
    if not same_bytes(report[NONCE_AT], expected) or not same_bytes(
            field_b64(quote, "gpu_nonce"), expected):
        raise QuoteError("the GPU nonce does not match SHA-256 of the expected report data: "
                         "the GPU evidence is not bound to this evidence")
    return QuoteVerification(
        provider=NAME, simulated=False, hardware=False, measurements={},
        report_data=expected_report_data, chain_ok=False,
        reasons=(f"{REASON_NO_COLLATERAL}: the SPDM signature, the GPU certificate chain to "
                 "NVIDIA's root, OCSP and RIMs were NOT checked",
                 "the SPDM request nonce binds nonce, run record digest and evidence key"),
    )
