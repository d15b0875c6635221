"""CI fuzzing: every atheris target in fuzz/ runs for a few seconds in a subprocess.

Longer campaigns: `python fuzz/run.py --seconds 300`. The budget per target here is
`BYTEREPLAY_FUZZ_SECONDS` (default 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FUZZ = REPO / "fuzz"
SECONDS = float(os.environ.get("BYTEREPLAY_FUZZ_SECONDS", "2"))
TARGETS = sorted(p.stem.removeprefix("fuzz_") for p in FUZZ.glob("fuzz_*.py"))


def test_every_target_is_listed_by_the_runner() -> None:
    out = subprocess.run([sys.executable, str(FUZZ / "run.py"), "--list"], check=True,
                         capture_output=True, text=True, cwd=REPO).stdout.split()
    assert out == TARGETS
    assert {"record", "jwt", "ear", "cbor"} <= set(TARGETS)


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_target_finds_no_crash(target: str, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "run.py"), "--seconds", str(SECONDS), "--targets", target,
         "--out", str(tmp_path / "out"), "--json", str(report)],
        capture_output=True, text=True, cwd=REPO, timeout=SECONDS + 180,
    )
    assert report.exists(), proc.stdout + proc.stderr
    (result,) = json.loads(report.read_text())
    crashes = result["crashes"]
    details = "\n".join((tmp_path / "out" / target / "crashes" / f"{c}.txt").read_text()
                        for c in crashes
                        if (tmp_path / "out" / target / "crashes" / f"{c}.txt").exists())
    assert not crashes, f"{target}: {crashes}\n{details}\n{result['log_tail']}"
    assert result["inputs"] > 100, proc.stdout + proc.stderr  # it really fuzzed
