"""Environment capture: versions, CPU, and clear "no GPU" values without NVML or CUDA."""

from __future__ import annotations

import platform
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import transformers

from attester import environment as env
from bytereplay.record import RunRecord


@pytest.fixture(autouse=True)
def _fresh_nvml_cache() -> Iterator[None]:
    env.nvml_info.cache_clear()
    yield
    env.nvml_info.cache_clear()


def test_parse_device() -> None:
    assert env.parse_device("cpu") == ("cpu", None)
    assert env.parse_device("cuda") == ("cuda", 0)
    assert env.parse_device("cuda:3") == ("cuda", 3)
    for bad in ["tpu", "cuda:", "cuda:x", "cpu:0", "CUDA", ""]:
        with pytest.raises(ValueError):
            env.parse_device(bad)


def test_framework_versions() -> None:
    f = env.framework_fields()
    assert f == {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
    }


def test_cpu_fields() -> None:
    c = env.cpu_fields()
    assert c["capability"] == torch.backends.cpu.get_cpu_capability()
    assert isinstance(c["model"], str) and c["model"]


def test_cpu_run_reports_no_gpu() -> None:
    assert env.gpu_fields("cpu") == {"arch": "none", "sku": "none", "sm_count": 0, "driver": "none"}
    assert env.toolkit_fields("cpu") == {"cuda": "none", "cublas": "none", "cudnn": "none"}


def test_no_pynvml_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)  # import raises ImportError
    info = env.nvml_info()
    assert info["available"] is False and info["gpus"] == [] and info["driver"] is None
    d = env.detected()
    assert d["nvml"] == info
    if not torch.cuda.is_available():
        assert d["gpu"] == "no GPU"


def _fake_pynvml(init_error: Exception | None = None) -> Any:
    mod = types.ModuleType("pynvml")
    calls: list[str] = []

    def init() -> None:
        calls.append("init")
        if init_error is not None:
            raise init_error

    class Pci:
        busId = b"00000000:3B:00.0"

    mod.nvmlInit = init  # type: ignore[attr-defined]
    mod.nvmlShutdown = lambda: calls.append("shutdown")  # type: ignore[attr-defined]
    mod.nvmlSystemGetDriverVersion = lambda: "550.54.15"  # type: ignore[attr-defined]
    mod.nvmlSystemGetCudaDriverVersion = lambda: 12040  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCount = lambda: 1  # type: ignore[attr-defined]
    mod.nvmlDeviceGetHandleByIndex = lambda i: object()  # type: ignore[attr-defined]
    mod.nvmlDeviceGetName = lambda h: b"NVIDIA H100 80GB HBM3"  # type: ignore[attr-defined]
    mod.nvmlDeviceGetCudaComputeCapability = lambda h: (9, 0)  # type: ignore[attr-defined]
    mod.nvmlDeviceGetPciInfo = lambda h: Pci()  # type: ignore[attr-defined]

    def no_uuid(h: object) -> str:
        raise RuntimeError("not supported")

    mod.nvmlDeviceGetUUID = no_uuid  # type: ignore[attr-defined]
    mod.calls = calls  # type: ignore[attr-defined]
    return mod


def test_nvml_init_failure_is_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml(init_error=RuntimeError("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    info = env.nvml_info()
    assert info["available"] is False
    assert "Not Found" in info["reason"]


def test_nvml_values_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = _fake_pynvml()
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    info = env.nvml_info()
    assert info["available"] is True
    assert info["driver"] == "550.54.15"
    gpu = info["gpus"][0]
    assert gpu["name"] == "NVIDIA H100 80GB HBM3" and gpu["arch"] == "sm_90"
    assert "uuid" not in gpu  # a failing call leaves the item out, no error
    assert fake.calls == ["init", "shutdown"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_cuda_device_without_cuda_gives_missing_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pynvml", None)
    g = env.gpu_fields("cuda:0")
    assert g == {"arch": None, "sku": None, "sm_count": None, "driver": None}
    t = env.toolkit_fields("cuda")
    assert t["cuda"] is None and t["cudnn"] is None


def test_version_integers() -> None:
    assert env._version_from_int(90100) == "9.1.0"
    assert env._version_from_int(120804) == "12.8.4"
    assert env._version_from_int(8902) == "8.9.2"


def test_cublas_version_is_none_or_text() -> None:
    v = env.cublas_version()
    assert v is None or (isinstance(v, str) and v[0].isdigit())


def test_environment_fields_fit_the_record() -> None:
    fields = env.environment_fields(
        "cpu",
        dtype="float32",
        threads=1,
        determinism={"deterministic_algorithms": True},
        container_digest="sha256:" + "ab" * 32,
    )
    rec = RunRecord.from_dict(fields)
    assert rec.container is not None and rec.container.digest == "sha256:" + "ab" * 32
    assert rec.gpu is not None and rec.gpu.sm_count == 0
    assert rec.runtime is not None and rec.runtime.name == "bytereplay"
    missing = env.environment_fields("cpu", dtype="float32", threads=1, determinism={})
    assert RunRecord.from_dict(missing).container is None
