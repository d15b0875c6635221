"""`benchmarks/gpu.sh --device cpu`: the GPU benchmark's shortest dry run, on the fixture
model (the suite's $BYTEREPLAY_MODEL), so the script a GPU machine runs is known to work."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_sh_cpu_dry_run_writes_json_and_log(tmp_path: Path) -> None:
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--device", "cpu",
                           "--max-new-tokens", "8"],
                          capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    fig = json.loads((tmp_path / "gpu.json").read_text())
    assert fig["ok"] is True
    assert fig["greedy"]["unique_outputs"] == 1 and fig["sampled"]["unique_outputs"] == 1
    assert fig["sampled"]["negative_control_other_seeds_unique"] > 1
    assert fig["concurrency"]["identical_to_lone"] == fig["concurrency"]["requests"]
    assert fig["replay"]["verdicts"] == ["match"]
    assert set(fig["record_gpu_fields"]["gpu"]) >= {"arch", "sku", "sm_count", "driver"}
    assert "OK in" in (tmp_path / "gpu.log").read_text()
