#!/usr/bin/env python3
"""What the model digest cache saves: hashing the model against looking it up.

    python benchmarks/model_digest.py                 # SmolLM2 (98 MB GGUF) and the fixture
    python benchmarks/model_digest.py --model DIR_OR_GGUF --rounds 5

Per model, `--rounds` alternating pairs: a full hash (what every start cost before the
cache, and still costs after the files change) and a cached lookup (path, size and mtime
of every file, then one small JSON read). Medians, and their ratio.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from attester import gguf_model  # noqa: E402
from attester.model_digest import model_digest, model_digest_cached  # noqa: E402


def measure(path: Path, rounds: int, cache: Path) -> dict[str, object]:
    gguf = gguf_model.gguf_file(path)

    def full() -> str:
        return gguf_model._sha256_file(gguf, None) if gguf else model_digest(path)

    def cached() -> str:
        return gguf_model.gguf_digest(gguf, cache_file=cache) if gguf else \
            model_digest_cached(path, cache_file=cache)

    cached()  # fill the cache
    hash_s, hit_s = [], []
    for _ in range(rounds):
        t = time.perf_counter()
        a = full()
        hash_s.append(time.perf_counter() - t)
        t = time.perf_counter()
        b = cached()
        hit_s.append(time.perf_counter() - t)
        assert a == b, "the cache returned another digest"
    size = gguf.stat().st_size if gguf else sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    h, c = statistics.median(hash_s), statistics.median(hit_s)
    return {"model": str(gguf or path), "megabytes": round(size / 1e6, 1), "rounds": rounds,
            "hash_ms": round(h * 1e3, 2), "cached_ms": round(c * 1e3, 3), "speedup": round(h / c, 1)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", action="append", default=None)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)
    models = [Path(m) for m in args.model] if args.model else \
        [gguf_model.smollm2_path(), REPO / "fixtures" / "model"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(m, args.rounds, Path(tmp) / "cache.json") for m in models]
    for r in rows:
        print(f"{r['model']}: {r['megabytes']} MB, hash {r['hash_ms']} ms, cached {r['cached_ms']} ms "
              f"(x{r['speedup']}), median of {r['rounds']}")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
