"""The model digest: pinned for the fixture, sensitive to every byte, path and length."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attester.model_digest import (
    DIGEST_DOMAIN,
    ModelDirError,
    list_model_files,
    model_digest,
)
from bytereplay.encoding import HASH_RE
from bytereplay.errors import UsageError

REPO = Path(__file__).resolve().parent.parent
FIXTURE_MODEL = REPO / "fixtures" / "model"
# Pinned: scripts/make_fixture_model.py must rebuild exactly this (see the last test).
FIXTURE_DIGEST = "sha-256:25939d3630402a0abf1a1e309d9acecce11214d18ae74efb419ca35a93f11527"


@pytest.fixture()
def model_copy(tmp_path: Path) -> Path:
    dst = tmp_path / "model"
    shutil.copytree(FIXTURE_MODEL, dst)
    return dst


def test_fixture_digest_is_pinned() -> None:
    assert model_digest(FIXTURE_MODEL) == FIXTURE_DIGEST


def test_fixture_has_weights_config_and_tokenizer() -> None:
    names = {f.relpath for f in list_model_files(FIXTURE_MODEL)}
    assert {"model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"} <= names
    size = (FIXTURE_MODEL / "model.safetensors").stat().st_size
    assert size <= 20_000_000


def test_copy_has_same_digest(model_copy: Path) -> None:
    assert model_digest(model_copy) == FIXTURE_DIGEST


@pytest.mark.parametrize("name", ["model.safetensors", "config.json", "tokenizer.json"])
def test_one_byte_changes_digest(model_copy: Path, name: str) -> None:
    path = model_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    assert model_digest(model_copy) != FIXTURE_DIGEST


def test_rename_add_remove_change_digest(model_copy: Path) -> None:
    seen = {FIXTURE_DIGEST}
    (model_copy / "README.md").rename(model_copy / "README.txt")
    seen.add(model_digest(model_copy))
    (model_copy / "extra.json").write_text("{}")
    seen.add(model_digest(model_copy))
    (model_copy / "extra.json").unlink()
    (model_copy / "generation_config.json").unlink()
    seen.add(model_digest(model_copy))
    assert len(seen) == 4


def test_moving_bytes_between_files_changes_digest(tmp_path: Path) -> None:
    # Lengths are hashed: "ab" + "c" must differ from "a" + "bc".
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x").write_bytes(b"ab")
    (a / "y").write_bytes(b"c")
    (b / "x").write_bytes(b"a")
    (b / "y").write_bytes(b"bc")
    assert model_digest(a) != model_digest(b)


def test_hidden_files_are_not_covered(model_copy: Path) -> None:
    (model_copy / ".cache" / "huggingface").mkdir(parents=True)
    (model_copy / ".cache" / "huggingface" / "download.lock").write_text("x")
    (model_copy / ".gitattributes").write_text("*.safetensors filter=lfs\n")
    assert model_digest(model_copy) == FIXTURE_DIGEST


def test_symlinked_files_are_followed(tmp_path: Path) -> None:
    blobs, snap = tmp_path / "blobs", tmp_path / "snap"
    blobs.mkdir()
    snap.mkdir()
    (blobs / "abc").write_bytes(b"weights")
    os.symlink(blobs / "abc", snap / "model.safetensors")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "model.safetensors").write_bytes(b"weights")
    assert model_digest(snap) == model_digest(plain)


def test_format_matches_the_documented_construction(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    files = {"config.json": b'{"a": 1}', "sub/w.bin": b"\x00\x01" * 1000, "B.txt": b""}
    for rel, data in files.items():
        (tmp_path / rel).write_bytes(data)
    h = hashlib.sha256(DIGEST_DOMAIN)
    for rel in sorted(files, key=lambda r: r.encode()):
        p = rel.encode()
        h.update(len(p).to_bytes(8, "big") + p + len(files[rel]).to_bytes(8, "big") + files[rel])
    digest = model_digest(tmp_path)
    assert digest == "sha-256:" + h.hexdigest()
    assert HASH_RE.match(digest)


def test_progress_callback(model_copy: Path) -> None:
    lines: list[str] = []
    model_digest(model_copy, progress=lines.append)
    assert lines[0].startswith("model digest: 6 files")
    assert lines[-1].startswith("model digest: 100%")
    assert len(lines) > 3


def test_small_models_are_quiet_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    model_digest(FIXTURE_MODEL)
    assert capsys.readouterr().err == ""


def test_missing_or_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelDirError, match="not found"):
        model_digest(tmp_path / "nope")
    with pytest.raises(ModelDirError, match="no files"):
        model_digest(tmp_path)
    err = ModelDirError("x")
    assert isinstance(err, UsageError) and isinstance(err, ValueError)


def test_fixture_script_rebuilds_the_same_model() -> None:
    out = subprocess.run(
        [sys.executable, "scripts/make_fixture_model.py", "--check"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert FIXTURE_DIGEST in out.stdout


# -- the digest cache (model_digest.cached_digest) -------------------------------------------


def test_digest_cache_hits_on_same_snapshot_and_rehashes_on_change(model_copy: Path,
                                                                   tmp_path: Path) -> None:
    from attester.model_digest import model_digest_cached

    cache = tmp_path / "cache.json"
    lines: list[str] = []
    assert model_digest_cached(model_copy, progress=lines.append, cache_file=cache) == FIXTURE_DIGEST
    assert any(line.startswith("model digest: 100%") for line in lines)  # hashed
    lines.clear()
    assert model_digest_cached(model_copy, progress=lines.append, cache_file=cache) == FIXTURE_DIGEST
    assert lines and lines[0].startswith("model digest: cached")  # not hashed again
    # a changed file (size and mtime differ): the snapshot differs, so it is hashed again
    cfg = model_copy / "config.json"
    cfg.write_text(cfg.read_text() + " ", encoding="utf-8")
    os.utime(cfg, ns=(1, 1))
    lines.clear()
    changed = model_digest_cached(model_copy, progress=lines.append, cache_file=cache)
    assert changed != FIXTURE_DIGEST and not lines[0].startswith("model digest: cached")


def test_corrupt_or_unwritable_cache_costs_a_rehash_only(model_copy: Path, tmp_path: Path) -> None:
    from attester.model_digest import model_digest_cached

    bad = tmp_path / "cache.json"
    bad.write_text("{not json", encoding="utf-8")
    assert model_digest_cached(model_copy, cache_file=bad) == FIXTURE_DIGEST
    missing_dir = tmp_path / "no" / "such" / "cache.json"
    assert model_digest_cached(model_copy, cache_file=missing_dir) == FIXTURE_DIGEST


def test_gguf_digest_is_the_plain_sha256_of_the_file(tmp_path: Path) -> None:
    import hashlib

    from attester.gguf_model import gguf_digest, gguf_file

    f = tmp_path / "m.gguf"
    f.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    assert gguf_file(tmp_path) == f and gguf_file(f) == f
    assert gguf_digest(f, cache_file=tmp_path / "c.json") == \
        "sha-256:" + hashlib.sha256(f.read_bytes()).hexdigest()
    (tmp_path / "n.gguf").write_bytes(b"GGUF")
    with pytest.raises(ModelDirError, match=r"2 \.gguf files"):
        gguf_file(tmp_path)
