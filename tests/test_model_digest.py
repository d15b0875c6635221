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
