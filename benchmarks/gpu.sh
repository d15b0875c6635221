#!/usr/bin/env bash
# The GPU benchmark: one prepared run, under 8 minutes on one NVIDIA GPU (benchmarks/gpu.py
# says what it measures). Figures go to $OUT/gpu.json, the log to $OUT/gpu.log.
#
#   OUT=/tmp/gpu benchmarks/gpu.sh                  # CUDA, SmolLM2, 1,000 + 1,000 runs
#   OUT=/tmp/gpu benchmarks/gpu.sh --device cpu     # the shortest dry run (tests, CI)
#
# Python: $PYTHON, else .venv/bin/python (make setup), else python3.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-./gpu-out}
mkdir -p "$OUT"
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export TQDM_DISABLE=1 PYTHONUNBUFFERED=1
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader > "$OUT/nvidia-smi.txt" 2>&1 || true
fi
set +e
"$PY" benchmarks/gpu.py --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu.log"
rc=${PIPESTATUS[0]}
set -e
exit "$rc"
