"""Determinism controls, all in one place.

`apply_controls(threads)` switches on everything that makes torch compute the same
bytes for the same inputs on the same setup:

- `torch.use_deterministic_algorithms(True)` (errors on ops without a deterministic
  implementation instead of silently using a racy one),
- cuDNN deterministic, cuDNN benchmark off (no autotuning that picks different kernels
  run to run),
- TF32 off for matmul and cuDNN, `torch.set_float32_matmul_precision("highest")`,
  reduced-precision reductions off for fp16/bf16 GEMMs,
- `CUBLAS_WORKSPACE_CONFIG=:4096:8` in `os.environ` (cuBLAS reads it when it creates a
  handle, so it is set before the first CUDA call; `prepare_process()` does that),
- a fixed intra-op thread count (`torch.set_num_threads`).

The data type is fixed by the engine (it loads the weights in one dtype).

`restore_defaults()` puts back what torch had before the first `apply_controls`
(the negative control and the benchmark baseline). `read_determinism()` reads the
state back from torch, so the record reports what was in force, not what was asked.

All of it is process-wide state; the engine holds `STATE_LOCK` while it switches the
state and runs a forward pass, so engines with different settings can share a process.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Any

CUBLAS_WORKSPACE_CONFIG = ":4096:8"
CUBLAS_ENV = "CUBLAS_WORKSPACE_CONFIG"
UNSET = "unset"

STATE_LOCK = threading.RLock()


@dataclass(frozen=True)
class ControlKey:
    """What one engine wants in force: controls on (with a thread count) or defaults."""

    enabled: bool
    threads: int | None  # None with defaults: torch's default thread count


@dataclass(frozen=True)
class _Defaults:
    deterministic: bool
    warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool
    cudnn_allow_tf32: bool
    matmul_allow_tf32: bool
    matmul_precision: str
    fp16_reduced: bool
    bf16_reduced: bool
    threads: int
    cublas_env: str | None


_defaults: _Defaults | None = None
_current: ControlKey | None = None


def _torch() -> Any:
    import torch

    return torch


def _snapshot_defaults() -> _Defaults:
    global _defaults
    if _defaults is None:
        torch = _torch()
        _defaults = _Defaults(
            deterministic=torch.are_deterministic_algorithms_enabled(),
            warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
            cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
            cudnn_allow_tf32=bool(torch.backends.cudnn.allow_tf32),
            matmul_allow_tf32=bool(torch.backends.cuda.matmul.allow_tf32),
            matmul_precision=str(torch.get_float32_matmul_precision()),
            fp16_reduced=bool(torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction),
            bf16_reduced=bool(torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction),
            threads=int(torch.get_num_threads()),
            cublas_env=os.environ.get(CUBLAS_ENV),
        )
    return _defaults


def prepare_process(enabled: bool = True) -> None:
    """Set what must be in place before CUDA initialises (the cuBLAS workspace).

    Also snapshots torch's defaults, so `restore_defaults` can put them back.
    """
    with STATE_LOCK:
        _snapshot_defaults()
        if enabled:
            os.environ[CUBLAS_ENV] = CUBLAS_WORKSPACE_CONFIG


def apply_controls(threads: int) -> None:
    """Switch every determinism control on, with `threads` intra-op threads."""
    if threads < 1:
        raise ValueError("threads must be at least 1")
    torch = _torch()
    with STATE_LOCK:
        global _current
        _snapshot_defaults()
        os.environ[CUBLAS_ENV] = CUBLAS_WORKSPACE_CONFIG
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        _current = ControlKey(True, threads)


def restore_defaults(threads: int | None = None) -> None:
    """Put back torch's own defaults (as found before the first `apply_controls`).

    `threads` overrides the default thread count (to compare at equal threads).
    """
    torch = _torch()
    with STATE_LOCK:
        global _current
        d = _snapshot_defaults()
        if d.cublas_env is None:
            os.environ.pop(CUBLAS_ENV, None)
        else:
            os.environ[CUBLAS_ENV] = d.cublas_env
        torch.use_deterministic_algorithms(d.deterministic, warn_only=d.warn_only)
        torch.backends.cudnn.deterministic = d.cudnn_deterministic
        torch.backends.cudnn.benchmark = d.cudnn_benchmark
        torch.backends.cudnn.allow_tf32 = d.cudnn_allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = d.matmul_allow_tf32
        torch.set_float32_matmul_precision(d.matmul_precision)
        torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = d.fp16_reduced
        torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = d.bf16_reduced
        want = d.threads if threads is None else threads
        if torch.get_num_threads() != want:
            torch.set_num_threads(want)
        _current = ControlKey(False, threads)


def ensure(key: ControlKey) -> None:
    """Put `key` in force. Call with `STATE_LOCK` held.

    It always sets every switch (a few microseconds), so a change made behind the
    engine's back (another library, a test) cannot leak into a run.
    """
    if key.enabled:
        assert key.threads is not None
        apply_controls(key.threads)
    else:
        restore_defaults(key.threads)


def current() -> ControlKey | None:
    """The key last put in force by this module (None before the first)."""
    return _current


def read_determinism() -> dict[str, object]:
    """The record's `determinism` object, read back from torch and the environment."""
    torch = _torch()
    return {
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "cudnn_deterministic": bool(torch.backends.cudnn.deterministic),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "tf32": bool(torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32),
        "float32_matmul_precision": str(torch.get_float32_matmul_precision()),
        "cublas_workspace_config": os.environ.get(CUBLAS_ENV) or UNSET,
    }


def read_extra() -> dict[str, object]:
    """Switches outside the record schema, for the environment report."""
    torch = _torch()
    return {
        "warn_only": bool(torch.is_deterministic_algorithms_warn_only_enabled()),
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "fp16_reduced_precision_reduction": bool(
            torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction
        ),
        "bf16_reduced_precision_reduction": bool(
            torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction
        ),
        "threads": int(torch.get_num_threads()),
    }
