"""The README's hand-driven HTTP flow, run exactly as written: it ends in ALLOW, complete.

The block between `<!-- readme-flow:begin -->` and `<!-- readme-flow:end -->` in
README.md is extracted and run with bash (curl and jq on PATH, `make test` installs them
when absent), both services on free loopback ports, a fresh home. Nothing here
rewrites the script: if the README drifts from what works, this fails.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"<!-- readme-flow:begin -->\n```sh\n(.*?)```\n<!-- readme-flow:end -->", re.S)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_readme_flow_ends_in_allow_with_a_complete_record(tmp_path: Path) -> None:
    for tool in ("curl", "jq"):
        assert shutil.which(tool), f"{tool} is missing (scripts/ensure-tools.sh installs it)"
    found = BLOCK.findall((REPO / "README.md").read_text(encoding="utf-8"))
    assert len(found) == 1, "README.md must hold exactly one readme-flow block"
    script = tmp_path / "flow.sh"
    script.write_text(found[0], encoding="utf-8")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "BYTEREPLAY_HOME": str(tmp_path / "home"),
           "ATTESTER_PORT": str(_free_port()), "VERIFIER_PORT": str(_free_port())}
    done = subprocess.run(["bash", str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    shown = json.loads(done.stdout)
    assert shown == {"allow": True, "status": "warning", "verdict": "match", "complete": True,
                     "reasons": []}, shown
    output = (tmp_path / "output.txt").read_bytes()
    answer = json.loads((tmp_path / "answer.json").read_text(encoding="utf-8"))
    assert output == answer["output"].encode("utf-8")  # jq -j kept the exact bytes
