"""A relying app installs no torch: importing relying_party and evaluating never loads it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CODE = r'''
import sys
from importlib.abc import MetaPathFinder

class NoHeavy(MetaPathFinder):
    """Any import of torch (or the attester/verifier stacks) fails loudly."""
    BLOCKED = ("torch", "transformers", "fastapi", "uvicorn", "safetensors", "attester", "verifier")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"blocked import of {name}")
        return None

sys.meta_path.insert(0, NoHeavy())

import relying_party
from bytereplay.cli import main
from bytereplay.keys import SigningKey
from relying_party.testing import jwks_of, make_result

key = SigningKey.generate()
for policy in ("default", "strict", "dev"):
    d = relying_party.evaluate(make_result(key, output=b"x"), output=b"x", policy=policy,
                               verifier_keys=jwks_of(key))
    assert d.verdict == "match", d
assert relying_party.evaluate(make_result(key, output=b"x"), output=b"x",
                              verifier_keys=jwks_of(key)).allow

import json, os, tempfile
with tempfile.TemporaryDirectory() as tmp:
    paths = {n: os.path.join(tmp, n) for n in ("r.jwt", "o.txt", "k.json")}
    open(paths["r.jwt"], "w").write(make_result(key, output=b"x"))
    open(paths["o.txt"], "wb").write(b"x")
    open(paths["k.json"], "w").write(json.dumps(jwks_of(key)))
    rc = main(["appraise", paths["r.jwt"], "--output", paths["o.txt"],
               "--verifier-keys", paths["k.json"], "--json"])
    assert rc == 0, rc
heavy = sorted(m for m in sys.modules if m.split(".")[0] in NoHeavy.BLOCKED)
assert not heavy, heavy
assert "torch" not in sys.modules
print("ok")
'''


def test_evaluate_runs_without_torch() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], cwd=REPO, capture_output=True, text=True,
                         check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")
