"""Fuzz the `Accept` header reader and the EAR answer it picks: `bytereplay.web.accept`.

The input is the header text (latin-1, as HTTP carries it). Crash: any exception other
than a `BytereplayError`; a choice whose profile is not one the verifier writes; a raw
(bare EAR) answer for a header that admits JSON at a non-zero weight; a range with a
weight outside 0..1.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay.web.accept"]):
    from bytereplay.ear import PROFILE_DRAFT, PROFILE_LEGACY, PROFILES
    from bytereplay.web.accept import JSON_RANGES, choose_ear, parse_accept


def test_one_input(data: bytes) -> None:
    text = data.decode("latin-1")
    ranges = parse_accept(text)
    assert all(0.0 <= r.q <= 1.0 for r in ranges), "weight outside 0..1"
    choice = choose_ear(text, "draft-04")
    assert choice.profile.uri in PROFILES, "a profile the verifier does not write"
    if choice.raw:
        assert not any(r.type in JSON_RANGES and r.q > 0 for r in ranges), \
            "bare EAR although JSON is acceptable"


def seeds() -> list[bytes]:
    return [s.encode() for s in (
        "*/*", "application/json", "",
        f'application/eat+jwt; eat_profile="{PROFILE_LEGACY}"',
        f'application/eat-jwt;eat_profile="{PROFILE_DRAFT}";q=0.5, application/json;q=0.1',
        'application/eat+jwt; eat_profile="tag:example,2026:x", text/html;q=0',
        'a/b; p="quoted \\" comma, semicolon;"; q=1.000',
    )]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
