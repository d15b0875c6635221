"""The lock covers the install: every distribution in this venv is pinned in constraints.txt.

`make demo`, `make test` and CI install with `-c constraints.txt` (scripts/setup.sh), so
a fresh clone tomorrow installs what passed today. This reads `pip freeze` of the
running interpreter and holds it against the lock: nothing installed is unpinned,
nothing differs from its pin, and every pin is exact.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
LOCK = REPO / "constraints.txt"
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)$")


def _name(text: str) -> str:
    return re.sub(r"[-_.]+", "-", text).lower()  # PEP 503 normalisation


def _public(version: str) -> str:
    return version.split("+", 1)[0]  # torch 2.13.0+cpu satisfies torch==2.13.0


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = PIN.match(line)
        assert m, f"constraints.txt: {line!r} is not an exact name==version pin"
        assert _name(m[1]) not in pins, f"constraints.txt pins {m[1]} twice"
        pins[_name(m[1])] = m[2]
    return pins


def _installed() -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "pip", "freeze", "--all", "--exclude-editable"],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        m = PIN.match(line.strip())
        assert m, f"pip freeze printed an entry that is not name==version: {line!r}"
        found[_name(m[1])] = m[2]
    return found


def test_every_installed_distribution_is_pinned_at_its_version() -> None:
    pins, installed = _lock(), _installed()
    installed.pop("bytereplay", None)
    unpinned = sorted(set(installed) - set(pins))
    assert not unpinned, f"installed but not in constraints.txt (run `make lock`): {unpinned}"
    moved = sorted(f"{n} {v} (lock {pins[n]})" for n, v in installed.items()
                   if _public(v) != _public(pins[n]))
    assert not moved, f"installed versions differ from constraints.txt: {moved}"


def test_lock_pins_the_tools_that_install_it() -> None:
    pins = _lock()
    assert pins["torch"] == "2.13.0"  # the CPU build; an unpinned torch pulls CUDA
    for tool in ("pip", "setuptools", "transformers", "tokenizers", "safetensors"):
        assert tool in pins, f"{tool} is not pinned"


def test_setup_installs_with_the_lock() -> None:
    setup = (REPO / "scripts" / "setup.sh").read_text(encoding="utf-8")
    installs = [ln for ln in setup.splitlines() if "pip install" in ln]
    assert installs and all("-c constraints.txt" in ln for ln in installs)
    assert any("--no-build-isolation" in ln for ln in installs)  # the build backend is pinned too
