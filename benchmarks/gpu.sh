#!/usr/bin/env bash
# GPU benchmarks: run on a machine with CUDA, from the repository root.
#
#   benchmarks/gpu.sh [MODEL_DIR]
#
# Teacher-forced replay against full replay on the GPU (issue 16's goal there: the whole
# teacher-forced appraisal at most 0.05 of the generation), float32 and bfloat16, with the
# prefill-against-decode agreement (bitwise rows, largest difference, argmax agreement).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
MODEL=()
if [[ $# -ge 1 ]]; then MODEL=(--model "$1"); fi
for dtype in float32 bfloat16; do
  "$PY" benchmarks/replay.py "${MODEL[@]}" --device cuda --dtype "$dtype" --lengths 16 64 256
done
