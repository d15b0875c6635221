"""A wheel, installed outside a checkout, carries a working default model and the policies.

The wheel is built from this tree (no network: the pinned setuptools, no build
isolation) and its contents are read as an installed site-packages would hold them.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from attester.model_digest import model_digest

REPO = Path(__file__).resolve().parent.parent


def test_wheel_ships_the_fixture_model_and_policies(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, timeout=300,
                   capture_output=True)
    wheel = next((tmp_path / "dist").glob("bytereplay-*.whl"))
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        zf.extractall(site)
    assert not any(n.startswith(("fixtures/", "tests/")) for n in names)
    shipped = site / "attester" / "fixture_model"
    # The same files, byte for byte: the digest the records and reference values name.
    assert model_digest(shipped) == model_digest(REPO / "fixtures" / "model")
    for policy in ("appraisal", "default", "strict", "dev"):
        assert f"bytereplay/policies/{policy}.rego" in names
    # Outside a checkout the engine's default is the shipped copy.
    probe = subprocess.run(
        [sys.executable, "-I", "-c",
         "import sys; sys.path.insert(0, sys.argv[1]); "
         "from attester.engine import find_default_model_dir as f; print(f())", str(site)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()) == shipped
