"""Suite-wide fixtures: every test runs with its own state directory, never ~/.bytereplay."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"

# The default model is SmolLM2 (attester/gguf_model.py): 20 s to load. The suite runs on
# the 2M-parameter fixture model unless a test is about SmolLM2 (those unset this, or name
# the model). Set here, at import, not in a fixture: some test modules build engines
# while they are collected, before any fixture runs.
os.environ["BYTEREPLAY_MODEL"] = str(FIXTURES / "model")


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("bytereplay-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BYTEREPLAY_HOME", str(home))
    yield home
    mp.undo()

