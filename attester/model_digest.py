"""The model digest: one SHA-256 over every file of a model directory, in a fixed order.

Format (version 1), so that anyone can recompute it without this code:

    h = SHA-256()
    h.update(b"bytereplay/model-digest/v1\\0")
    for each file, sorted by its relative POSIX path (as UTF-8 bytes):
        h.update(len(path_utf8) as 8-byte big-endian) ; h.update(path_utf8)
        h.update(file length as 8-byte big-endian)    ; h.update(file bytes)
    digest = "sha-256:" + h.hexdigest()

Which files: every regular file below the directory (symbolic links to files are
followed, as in a Hugging Face cache snapshot), except hidden ones: any path component
that starts with "." is skipped (`.git/`, `.cache/huggingface/`, `.gitattributes`), as
those hold download metadata rather than the model. Weights (`*.safetensors`, `*.bin`),
`config.json`, `generation_config.json` and the tokenizer files are all covered, and so
is anything else that is in the directory. The path and the length of each file are in
the hash, so renaming, moving, adding or removing a file changes the digest.

Files are read in chunks (memory stays flat for multi-GB weights); a progress callback
gets a line every 5 %, and without one, progress goes to stderr for models over 256 MiB.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bytereplay.errors import ModelDirError

DIGEST_DOMAIN = b"bytereplay/model-digest/v1\0"
CHUNK = 1 << 20
STDERR_PROGRESS_MIN_BYTES = 256 << 20

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelFile:
    relpath: str  # POSIX, relative to the model directory
    path: Path
    size: int
    mtime_ns: int


def _hidden(rel_parts: tuple[str, ...]) -> bool:
    return any(part.startswith(".") for part in rel_parts)


def list_model_files(model_dir: str | os.PathLike[str]) -> list[ModelFile]:
    """The files the digest covers, in digest order."""
    root = Path(model_dir)
    if not root.is_dir():
        raise ModelDirError(f"model directory not found: {root}")
    files: list[ModelFile] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = here / name
            rel = path.relative_to(root)
            if _hidden(rel.parts):
                continue
            try:
                st = path.stat()  # follows a symlink to its target
            except OSError as exc:
                raise ModelDirError(f"cannot read {rel.as_posix()}: {exc.strerror}") from None
            if not os.path.isfile(path):
                continue
            files.append(ModelFile(rel.as_posix(), path, st.st_size, st.st_mtime_ns))
    if not files:
        raise ModelDirError(f"model directory has no files: {root}")
    files.sort(key=lambda f: f.relpath.encode("utf-8"))
    return files


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def model_digest(model_dir: str | os.PathLike[str], progress: Progress | None = None) -> str:
    """`sha-256:<hex>` over every file of `model_dir` (see the module docstring)."""
    files = list_model_files(model_dir)
    total = sum(f.size for f in files)
    report = progress
    if report is None and total >= STDERR_PROGRESS_MIN_BYTES:
        report = _stderr_progress
    h = hashlib.sha256(DIGEST_DOMAIN)
    done = 0
    next_step = 5
    last_pct = -1
    if report is not None:
        report(f"model digest: {len(files)} files, {total / 1e6:.1f} MB")
    for f in files:
        rel = f.relpath.encode("utf-8")
        h.update(len(rel).to_bytes(8, "big"))
        h.update(rel)
        h.update(f.size.to_bytes(8, "big"))
        seen = 0
        try:
            with open(f.path, "rb") as fh:
                while chunk := fh.read(CHUNK):
                    h.update(chunk)
                    seen += len(chunk)
                    done += len(chunk)
                    if report is not None and total and done * 100 >= next_step * total:
                        pct = done * 100 // total
                        report(f"model digest: {pct}% ({done / 1e6:.1f}/{total / 1e6:.1f} MB)")
                        next_step = pct + 5
                        last_pct = pct
        except OSError as exc:
            raise ModelDirError(f"cannot read {f.relpath}: {exc.strerror}") from None
        if seen != f.size:
            raise ModelDirError(f"{f.relpath} changed size while it was being hashed")
    if report is not None and last_pct < 100:
        report(f"model digest: 100% ({done / 1e6:.1f}/{total / 1e6:.1f} MB)")
    return "sha-256:" + h.hexdigest()


def snapshot(model_dir: str | os.PathLike[str]) -> tuple[tuple[str, int, int], ...]:
    """(path, size, mtime) of every covered file: cheap check that nothing changed."""
    return tuple((f.relpath, f.size, f.mtime_ns) for f in list_model_files(model_dir))


# -- the digest cache -----------------------------------------------------------------
#
# Hashing is the slow part of starting on a real model (about 4 s for 0.5 GB on one
# core), so each digest is kept in `<home>/model-digest-cache.json`, keyed by the
# resolved path and the (relative path, size, mtime in ns) of every covered file. A file
# rewritten in place with the same size and mtime would fool it: the cache trusts the
# machine's own disk, as `make` does; delete the file to force a re-hash. The verifier's
# model index keeps its own cache of the same shape (verifier/replay.py).

DIGEST_CACHE_FILE = "model-digest-cache.json"
Snapshot = tuple[tuple[str, int, int], ...]


def file_snapshot(path: str | os.PathLike[str]) -> Snapshot:
    """(name, size, mtime) of one file, as `snapshot` gives them for a directory."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as exc:
        raise ModelDirError(f"cannot read {p}: {exc.strerror}") from None
    return ((p.name, st.st_size, st.st_mtime_ns),)


def default_cache_file() -> Path | None:
    """`<home>/model-digest-cache.json`, or None where the home cannot be made."""
    from bytereplay.home import Home

    try:
        return Home.resolve().root / DIGEST_CACHE_FILE
    except OSError:
        return None


def cached_digest(path: str | os.PathLike[str], compute: Callable[[], str], snap: Snapshot,
                  cache_file: Path | None = None, progress: Progress | None = None) -> str:
    """`compute()` unless the cache holds a digest for `path` taken at the same `snap`.

    Cache errors (unreadable, corrupt, read-only) only cost a re-hash, never a failure."""
    import json
    import threading

    key = str(Path(path).resolve())
    entry = [list(s) for s in snap]
    cache: dict[str, object] = {}
    if cache_file is not None:
        try:
            loaded = json.loads(cache_file.read_text(encoding="utf-8"))
            cache = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            cache = {}
    hit = cache.get(key)
    if isinstance(hit, dict) and hit.get("snapshot") == entry and isinstance(hit.get("digest"), str):
        if progress is not None:
            progress(f"model digest: cached in {cache_file} (same sizes and mtimes)")
        return str(hit["digest"])
    digest = compute()
    if cache_file is not None:
        cache[key] = {"snapshot": entry, "digest": digest}
        tmp = cache_file.with_name(f".{cache_file.name}.{os.getpid()}-{threading.get_ident()}")
        try:
            tmp.write_text(json.dumps(cache, indent=1), encoding="utf-8")
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only home: hash again next time
    return digest


def model_digest_cached(model_dir: str | os.PathLike[str], progress: Progress | None = None,
                        cache_file: Path | None = None) -> str:
    """`model_digest` through the cache (`default_cache_file()` when none is given)."""
    cache = cache_file if cache_file is not None else default_cache_file()
    return cached_digest(model_dir, lambda: model_digest(model_dir, progress=progress),
                         snapshot(model_dir), cache, progress)
