"""The `nvidia` provider: NVIDIA confidential-computing GPU evidence through NVML.

On a Hopper/Blackwell GPU in CC mode, `nvmlDeviceGetConfComputeGpuAttestationReport`
returns an SPDM GET_MEASUREMENTS exchange signed by the GPU's attestation key, with a
32-byte requester nonce; `nvmlDeviceGetConfComputeGpuCertificate` returns the GPU's
certificate chain. The SPDM nonce is 32 bytes, the report data 64, so the GPU nonce
is SHA-256(report_data).

Capture only; the verifier's side is `verifier.tee.nvidia`.

On a machine without such a GPU, constructing the provider raises
`ProviderUnavailable("NVIDIA confidential-computing GPU not available: ...")`, never
a pynvml traceback.
"""

from __future__ import annotations

import contextlib
from typing import Any

from attester.tee.base import require_report_data
from bytereplay.eat import gpu_nonce
from bytereplay.encoding import b64url_encode
from bytereplay.errors import ProviderUnavailable

NAME = "nvidia"
PREFIX = "NVIDIA confidential-computing GPU not available"




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
        """A lone GPU quote: its SPDM nonce is SHA-256 of the report data."""
        require_report_data(report_data)
        return {**self.device_evidence(gpu_nonce(report_data)),
                "software_measurements": dict(measurements)}

    def device_evidence(self, nonce: bytes) -> dict[str, Any]:
        """The GPU's evidence for a 32-byte SPDM nonce (composite evidence derives it with
        `bytereplay.eat.device_gpu_nonce`)."""
        if len(nonce) != 32:
            raise ValueError("the SPDM nonce is 32 bytes")
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
        }
