"""`bytereplay demo` from the command line: the README's main command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_demo_shows_allow_deny_and_inconclusive(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bytereplay.cli", "demo", "--home", str(tmp_path / "home")],
        cwd=REPO, capture_output=True, text=True, timeout=600, check=False,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "[x] model digest (model.digest)" in text  # the preflight checklist
    assert '"eat_profile": "tag:ietf.org,2026:rats/ear#04"' in text  # the decoded EAR
    assert "decision: ALLOW" in text and "claim: Under the recorded setup" in text
    assert "not covered (byte agreement never says):" in text
    assert "truth or accuracy of the content" in text
    assert "decision: DENY" in text and "output hash: the output bytes hash to" in text
    assert '"verdict": "inconclusive"' in text and '"field": "dtype"' in text
    assert "[model] model digest:" in text and "[replay]" in text  # progress is shown
    assert "Traceback" not in out.stderr
