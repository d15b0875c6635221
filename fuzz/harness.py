"""Shared driver for the atheris fuzz targets.

A target module defines `test_one_input(data: bytes) -> None` and `seeds() -> list[bytes]`,
and ends with `harness.main(test_one_input, seeds)`. Inside `test_one_input` a
`BytereplayError` is a correct refusal; any other exception is a crash.

Modes (environment variables, set by `fuzz/run.py`):
- default: libFuzzer semantics, the first crash stops the run and writes `crash-*`.
- `BYTEREPLAY_FUZZ_COLLECT=DIR`: keep going; each distinct crash (exception type and the
  frame that raised it) is written once to DIR as `<sig>.input` and `<sig>.txt`.
- `python fuzz/fuzz_x.py --write-seeds DIR`: write the seed corpus and exit.
- `python fuzz/fuzz_x.py FILE...`: libFuzzer replays the files (reproduce a crash).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bytereplay.errors import BytereplayError  # noqa: E402

Target = Callable[[bytes], None]


def _signature(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    # The innermost frame inside the project names the bug; else the innermost frame.
    inner = next((f for f in reversed(frames) if str(REPO) in f.filename
                  and "/fuzz/" not in f.filename and ".venv" not in f.filename),
                 frames[-1] if frames else None)
    where = f"{Path(inner.filename).name}:{inner.lineno}" if inner else "?"
    text = f"{type(exc).__name__}@{where}"
    if isinstance(exc, AssertionError):  # property failures: one per distinct message
        text += "[" + re.sub(r"[^a-z ]+", "", str(exc).split(":")[0].lower()).strip()[:40] + "]"
    return text


def guarded(target: Target) -> Target:
    """`target`, with typed refusals swallowed and (in collect mode) crashes recorded."""
    collect = os.environ.get("BYTEREPLAY_FUZZ_COLLECT")
    seen: set[str] = set()

    def run(data: bytes) -> None:
        try:
            target(data)
        except BytereplayError:
            return
        except Exception as exc:
            if not collect:
                raise
            sig = _signature(exc)
            if sig in seen:
                return
            seen.add(sig)
            out = Path(collect)
            out.mkdir(parents=True, exist_ok=True)
            name = re.sub(r"[^A-Za-z0-9_.]+", "-", sig)[:60] + "-" + hashlib.sha256(
                sig.encode()).hexdigest()[:8]
            if not (out / f"{name}.input").exists():
                (out / f"{name}.input").write_bytes(data)
                (out / f"{name}.txt").write_text(
                    sig + "\n\n" + "".join(traceback.format_exception(exc)))
            print(f"\n[bytereplay-fuzz] CRASH {sig}: {type(exc).__name__}: "
                  f"{str(exc)[:200]}", file=sys.stderr, flush=True)

    return run


def main(target: Target, seeds: Callable[[], list[bytes]]) -> None:
    if len(sys.argv) >= 3 and sys.argv[1] == "--write-seeds":
        out = Path(sys.argv[2])
        out.mkdir(parents=True, exist_ok=True)
        for i, seed in enumerate(seeds()):
            (out / f"seed-{i:03d}").write_bytes(seed)
        return
    import atheris

    atheris.Setup(sys.argv, guarded(target))
    atheris.Fuzz()
