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
# Teacher-forced against full replay at 16/64/256 tokens, float32 and bfloat16, with the
# prefill-against-decode agreement (issue 16's goal on a GPU: the teacher-forced appraisal
# at most 0.05 of the generation). Skipped on the CPU dry run.
case " $* " in *" --device cpu "*) exit "$rc" ;; esac
for dtype in float32 bfloat16; do
  "$PY" benchmarks/replay.py --device cuda --dtype "$dtype" --lengths 16 64 256 --json \
    > "$OUT/replay-$dtype.json" 2>> "$OUT/gpu.log" || rc=1
done
exit "$rc"
