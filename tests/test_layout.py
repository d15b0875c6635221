"""The architecture in the imports.

- `bytereplay` (shared formats, the CLI, the demo) imports no role at module level; a
  command's handler imports its role when it runs. `bytereplay.web` is the only part
  that needs FastAPI (the services import it); the rest stays light.
- `attester` -> bytereplay only; it captures quotes and never verifies them.
- `verifier` -> bytereplay; it imports `attester` only in `verifier/replay.py`, where the
  replay runs the attester's engine.
- `relying_party` -> bytereplay only.
"""

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
    "verifier": {"bytereplay", "verifier"},
    "relying_party": {"bytereplay", "relying_party"},
}
OURS = set(ALLOWED)
# Modules allowed one more of our packages, anywhere in the module.
EXCEPTIONS = {"verifier/replay.py": {"attester"}}
HEAVY = {"torch", "transformers", "fastapi", "uvicorn", "safetensors", "tokenizers", "starlette"}
LIGHT_EXCEPT = ("bytereplay/web/",)
# What quote verification looks like: the verifier's names for it.
VERIFICATION_NAMES = {"verify_quote", "QuoteVerification", "QuoteVerifier", "SchemeTrust",
                      "QuoteTrust"}


def _names(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {a.name.split(".")[0] for a in node.names}
    if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        return {node.module.split(".")[0]}
    return set()


def _imports(path: Path, *, module_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    if module_level_only:
        # Top-level statements, and imports under `if TYPE_CHECKING:` or `try:` at top level.
        stack: list[ast.AST] = list(tree.body)
        while stack:
            node = stack.pop()
            names |= _names(node)
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                stack.extend(ast.iter_child_nodes(node))
        return names
    for node in ast.walk(tree):
        names |= _names(node)
    return names


def _files(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_run_one_way(package: str) -> None:
    for path in _files(package):
        rel = path.relative_to(REPO).as_posix()
        lazy_ok = package == "bytereplay"  # handlers import their role when they run
        found = _imports(path, module_level_only=lazy_ok)
        bad = (found & OURS) - ALLOWED[package] - EXCEPTIONS.get(rel, set())
        assert not bad, f"{rel} imports {sorted(bad)}"


def test_only_the_replay_imports_the_attester() -> None:
    importers = sorted(p.relative_to(REPO).as_posix() for p in _files("verifier")
                       if "attester" in _imports(p))
    assert importers == ["verifier/replay.py"]


def test_attester_contains_no_quote_verification() -> None:
    for path in _files("attester"):
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(REPO).as_posix()
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                assert node.name not in VERIFICATION_NAMES and not node.name.startswith(
                    ("verify", "_verify")), f"{rel} defines {node.name}"
            if isinstance(node, ast.Name):
                assert node.id not in VERIFICATION_NAMES, f"{rel} uses {node.id}"
            if isinstance(node, ast.alias):
                assert node.name not in VERIFICATION_NAMES, f"{rel} imports {node.name}"
        assert "verifier" not in _imports(path), f"{rel} imports the verifier"


@pytest.mark.parametrize("package", ["bytereplay", "relying_party"])
def test_light_packages_never_import_heavy_ones(package: str) -> None:
    for path in _files(package):
        rel = path.relative_to(REPO).as_posix()
        if rel.startswith(LIGHT_EXCEPT):
            continue
        bad = _imports(path, module_level_only=package == "bytereplay") & HEAVY
        assert not bad, f"{rel} imports {sorted(bad)}"


def test_bytereplay_modules_load_no_role() -> None:
    """Importing every light `bytereplay` module loads no role and no torch."""
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in _files("bytereplay")
               if not p.relative_to(REPO).as_posix().startswith(LIGHT_EXCEPT)]
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}: importlib.import_module(m.removesuffix('.__init__'))\n"
        "bad = sorted(m for m in ('attester', 'verifier', 'relying_party', 'torch', 'fastapi')"
        " if m in sys.modules)\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=False)
    assert out.returncode == 0, out.stderr


def test_cli_preflight_loads_no_torch() -> None:
    code = (
        "import sys, bytereplay.cli as c\n"
        "rc = c.main(['preflight', 'fixtures/records/complete.json'])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
