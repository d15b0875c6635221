"""One hypothesis budget for the property tests: `@budget(n)` runs n examples in CI and
20 times as many with `BYTEREPLAY_FUZZ_PROFILE=thorough`."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, TypeVar

from hypothesis import HealthCheck, settings

_CHECKS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture]
settings.register_profile("bytereplay-fuzz-ci", deadline=None, print_blob=True,
                          suppress_health_check=_CHECKS)
settings.register_profile("bytereplay-fuzz-thorough", deadline=None, print_blob=True,
                          suppress_health_check=_CHECKS)
_PROFILE = "bytereplay-fuzz-" + os.environ.get("BYTEREPLAY_FUZZ_PROFILE", "ci")
_SCALE = 20 if _PROFILE.endswith("thorough") else 1

F = TypeVar("F", bound=Callable[..., Any])


def budget(n: int) -> Callable[[F], F]:
    """`@settings` on the shared profile with `n` examples (times the profile's scale)."""
    return settings(settings.get_profile(_PROFILE), max_examples=n * _SCALE)  # type: ignore[return-value]
