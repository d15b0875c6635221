"""Suite-wide fixtures: every test runs with its own state directory, never ~/.bytereplay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIXTURES = REPO / "fixtures"


@pytest.fixture(autouse=True, scope="session")
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("bytereplay-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BYTEREPLAY_HOME", str(home))
    yield home
    mp.undo()
