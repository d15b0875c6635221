#!/usr/bin/env bash
# Create .venv and install bytereplay with everything the demo and tests need.
# torch is pinned through constraints.txt (a CPU build taken from local disk here).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
echo "setup: installing bytereplay[dev] (constraints: constraints.txt)"
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
touch .venv/.installed
echo "setup: done"
