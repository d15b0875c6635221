"""Capture of the environment that fixes the output bytes.

Versions (torch, transformers, Python), the GPU (architecture, SKU, SM count, driver),
the toolkit (CUDA, cuBLAS, cuDNN), the CPU (model, ATen ISA capability) and the thread
count. The GPU part describes the device the run uses: a CPU run reports
"none"/0 there (the GPUs present are still listed under `detected`). NVML is read
through `pynvml` (package nvidia-ml-py) when it is installed and a driver answers;
anything else gives clear "no GPU" values, never an error. A value that exists but
cannot be read is None (missing), which preflight reports.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.metadata
import os
import platform
import re
from typing import Any

NONE = "none"
_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


def parse_device(device: str) -> tuple[str, int | None]:
    """("cpu", None) or ("cuda", index). Raises ValueError on anything else."""
    m = _DEVICE_RE.match(device)
    if not m:
        raise ValueError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    kind = m.group(1)
    if kind == "cpu":
        if m.group(2) is not None:
            raise ValueError("device 'cpu' takes no index")
        return "cpu", None
    return "cuda", int(m.group(2) or 0)


def _torch() -> Any:
    import torch

    return torch


def framework_fields() -> dict[str, object]:
    import transformers

    return {
        "torch": str(_torch().__version__),
        "transformers": str(transformers.__version__),
        "python": platform.python_version(),
    }


@functools.cache
def cpu_model() -> str | None:
    """The CPU's marketing name, or None when the platform does not say."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "cpu model") and value.strip():
                    return value.strip()
    except OSError:
        pass
    name = platform.processor() or platform.machine()
    return name or None


def cpu_capability() -> str | None:
    """ATen's CPU ISA level (DEFAULT, AVX2, AVX512, ...) used for CPU kernels."""
    try:
        return str(_torch().backends.cpu.get_cpu_capability())
    except Exception:
        return None


def cpu_fields() -> dict[str, object]:
    return {"model": cpu_model(), "capability": cpu_capability()}


# -- NVML -------------------------------------------------------------------


def _s(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@functools.cache
def nvml_info() -> dict[str, Any]:
    """Driver and GPUs as NVML sees them; {"available": False, ...} without NVML."""
    try:
        import pynvml
    except Exception:
        return {"available": False, "reason": "pynvml not installed", "driver": None, "gpus": []}
    try:
        pynvml.nvmlInit()
    except Exception as exc:
        return {"available": False, "reason": f"NVML: {exc}", "driver": None, "gpus": []}
    try:
        info: dict[str, Any] = {"available": True, "reason": None, "driver": None, "gpus": []}
        with contextlib.suppress(Exception):
            info["driver"] = _s(pynvml.nvmlSystemGetDriverVersion())
        with contextlib.suppress(Exception):
            info["cuda_driver"] = int(pynvml.nvmlSystemGetCudaDriverVersion())
        count = 0
        with contextlib.suppress(Exception):
            count = int(pynvml.nvmlDeviceGetCount())
        for i in range(count):
            gpu: dict[str, Any] = {"index": i}
            try:
                h = pynvml.nvmlDeviceGetHandleByIndex(i)
            except Exception:
                continue
            with contextlib.suppress(Exception):
                gpu["name"] = _s(pynvml.nvmlDeviceGetName(h))
            with contextlib.suppress(Exception):
                major, minor = pynvml.nvmlDeviceGetCudaComputeCapability(h)
                gpu["arch"] = f"sm_{major}{minor}"
            with contextlib.suppress(Exception):
                gpu["pci_bus_id"] = _s(pynvml.nvmlDeviceGetPciInfo(h).busId).lower()
            with contextlib.suppress(Exception):
                gpu["uuid"] = _s(pynvml.nvmlDeviceGetUUID(h))
            info["gpus"].append(gpu)
        return info
    finally:
        with contextlib.suppress(Exception):
            pynvml.nvmlShutdown()


# -- GPU and toolkit of the run's device --------------------------------------


def no_gpu_fields() -> dict[str, object]:
    return {"arch": NONE, "sku": NONE, "sm_count": 0, "driver": NONE}


def no_toolkit_fields() -> dict[str, object]:
    return {"cuda": NONE, "cublas": NONE, "cudnn": NONE}


def gpu_fields(device: str) -> dict[str, object]:
    """The record's `gpu` object for a run on `device`."""
    kind, index = parse_device(device)
    if kind == "cpu":
        return no_gpu_fields()
    torch = _torch()
    out: dict[str, object] = {"arch": None, "sku": None, "sm_count": None, "driver": None}
    try:
        props = torch.cuda.get_device_properties(index)
        out["arch"] = f"sm_{props.major}{props.minor}"
        out["sku"] = str(props.name)
        out["sm_count"] = int(props.multi_processor_count)
    except Exception:
        pass
    out["driver"] = nvml_info().get("driver")
    return out


def _version_from_int(v: int) -> str:
    """cuBLAS/cuDNN style integers: major*10000 + minor*100 + patch (>= 10000),
    or cuDNN 8 style major*1000 + minor*100 + patch."""
    if v >= 10000:
        return f"{v // 10000}.{(v // 100) % 100}.{v % 100}"
    return f"{v // 1000}.{(v // 100) % 10}.{v % 100}"


def cublas_version() -> str | None:
    """The cuBLAS version loaded in this process (or, failing that, installed)."""
    mode = getattr(os, "RTLD_NOLOAD", 0) | getattr(os, "RTLD_LAZY", 1)
    for name in ("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so.11", "libcublasLt.so"):
        try:
            lib = ctypes.CDLL(name, mode=mode)
            fn = lib.cublasLtGetVersion
            fn.restype = ctypes.c_size_t
            return _version_from_int(int(fn()))
        except (OSError, AttributeError):
            continue
    for dist in ("nvidia-cublas-cu13", "nvidia-cublas-cu12", "nvidia-cublas-cu11", "nvidia-cublas"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def toolkit_fields(device: str) -> dict[str, object]:
    """The record's `toolkit` object for a run on `device`."""
    kind, _ = parse_device(device)
    if kind == "cpu":
        return no_toolkit_fields()
    torch = _torch()
    cudnn: str | None = None
    with contextlib.suppress(Exception):
        v = torch.backends.cudnn.version()
        cudnn = _version_from_int(int(v)) if v else None
    return {"cuda": torch.version.cuda, "cublas": cublas_version(), "cudnn": cudnn}


def detected() -> dict[str, object]:
    """Everything found on the host, whatever device the run uses (for /v1/info)."""
    torch = _torch()
    cuda_available = False
    with contextlib.suppress(Exception):
        cuda_available = bool(torch.cuda.is_available())
    cuda_devices: list[dict[str, object]] = []
    if cuda_available:
        for i in range(torch.cuda.device_count()):
            with contextlib.suppress(Exception):
                p = torch.cuda.get_device_properties(i)
                cuda_devices.append(
                    {
                        "index": i,
                        "name": str(p.name),
                        "arch": f"sm_{p.major}{p.minor}",
                        "sm_count": int(p.multi_processor_count),
                    }
                )
    nv = nvml_info()
    return {
        "torch_cuda_build": torch.version.cuda or NONE,
        "cuda_available": cuda_available,
        "cuda_devices": cuda_devices,
        "nvml": nv,
        "gpu": "present" if (cuda_available or nv["gpus"]) else "no GPU",
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
    }


def environment_fields(
    device: str,
    *,
    dtype: str,
    threads: int,
    determinism: dict[str, object],
    container_digest: str | None = None,
) -> dict[str, object]:
    """The record's environment part (everything but the model, request and output)."""
    from bytereplay import __version__

    return {
        "container": {"digest": container_digest} if container_digest else None,
        "runtime": {"name": "bytereplay", "version": __version__},
        "framework": framework_fields(),
        "gpu": gpu_fields(device),
        "toolkit": toolkit_fields(device),
        "cpu": cpu_fields(),
        "threads": threads,
        "dtype": dtype,
        "determinism": determinism,
    }
