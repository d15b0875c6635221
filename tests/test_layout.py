"""The architecture in the imports: bytereplay <- attester <- verifier; relying_party -> bytereplay only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ALLOWED = {
    "bytereplay": {"bytereplay"},
    "attester": {"bytereplay", "attester"},
    "verifier": {"bytereplay", "attester", "verifier", "relying_party"},
    "relying_party": {"bytereplay", "relying_party"},
}
OURS = set(ALLOWED)
# The CLI names handlers in other packages as strings and imports them only when run.
HEAVY = {"torch", "transformers", "fastapi", "uvicorn", "safetensors", "tokenizers"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_one_way(package: str) -> None:
    for path in (REPO / package).rglob("*.py"):
        bad = (_imports(path) & OURS) - ALLOWED[package]
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


@pytest.mark.parametrize("package", ["bytereplay", "relying_party"])
def test_light_packages_never_import_heavy_ones(package: str) -> None:
    for path in (REPO / package).rglob("*.py"):
        bad = _imports(path) & HEAVY
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}"


def test_cli_preflight_loads_no_torch() -> None:
    code = (
        "import sys, bytereplay.cli as c\n"
        "rc = c.main(['preflight', 'fixtures/records/complete.json'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
