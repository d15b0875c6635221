"""A venv with only `bytereplay[relying-party]`: every subcommand works or names its extra.

The venv is real (`python -m venv --without-pip`) and built offline: its site-packages
sees exactly the distributions that `bytereplay[relying-party]` resolves to, linked
from this test's venv (their metadata decides the closure, as pip would), and
bytereplay itself (the source packages with their installed metadata, as a wheel
holds them). torch, transformers, fastapi, uvicorn, redis and the rest are absent, so
`import torch` fails there; each subcommand is then run in it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from bytereplay.keys import SigningKey
from relying_party.testing import jwks_of, make_result

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("bytereplay", "attester", "verifier", "relying_party")


def _closure(extras: tuple[str, ...]) -> set[str]:
    """Distributions that installing bytereplay[extras] brings (markers evaluated)."""
    todo: list[tuple[str, frozenset[str]]] = [("bytereplay", frozenset(extras))]
    seen: dict[str, frozenset[str]] = {}
    while todo:
        name, want = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen and want <= seen[key]:
            continue
        seen[key] = seen.get(key, frozenset()) | want
        for line in metadata.requires(name) or ():
            req = Requirement(line)
            envs = [{"extra": e} for e in (seen[key] or {""})]
            if req.marker is not None and not any(req.marker.evaluate(env) for env in envs):
                continue
            todo.append((req.name, frozenset(req.extras)))
    return set(seen)


def _link_distribution(name: str, into: Path) -> None:
    dist = metadata.distribution(name)
    tops = {f.parts[0] for f in dist.files or () if f.parts and f.parts[0] != ".."}
    base = Path(str(dist.locate_file("")))
    for top in tops:
        src, dst = base / top, into / top
        if (src.exists() and not dst.exists() and not top.startswith("__editable__")
                and top != "__pycache__"):
            dst.symlink_to(src)


@pytest.fixture(scope="module")
def rp_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rp-venv")
    venv = root / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    deps, src = root / "deps", root / "src"
    deps.mkdir()
    src.mkdir()
    for name in sorted(_closure(("relying-party",)) - {"bytereplay"}):
        _link_distribution(name, deps)
    for pkg in PACKAGES:  # what the wheel holds; the roles' dependencies stay absent
        (src / pkg).symlink_to(REPO / pkg)
    info = metadata.distribution("bytereplay")
    meta = src / f"bytereplay-{info.version}.dist-info"
    meta.mkdir()
    (meta / "METADATA").write_text(info.read_text("METADATA") or "", encoding="utf-8")
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "bytereplay-rp.pth").write_text(f"{src}\n{deps}\n", encoding="utf-8")
    return venv / "bin" / "python"


def _cli(python: Path, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    return subprocess.run([str(python), "-m", "bytereplay.cli", *argv], capture_output=True,
                          text=True, timeout=120, env=env, cwd=cwd)


def test_the_venv_holds_only_the_relying_party(rp_python: Path) -> None:
    for module in ("torch", "transformers", "fastapi", "uvicorn", "redis", "prometheus_client"):
        probe = subprocess.run([str(rp_python), "-c", f"import {module}"], capture_output=True,
                               text=True, timeout=60)
        assert probe.returncode != 0 and "ModuleNotFoundError" in probe.stderr, module
    probe = subprocess.run([str(rp_python), "-c", "import regopy, cryptography, relying_party"],
                           capture_output=True, text=True, timeout=60)
    assert probe.returncode == 0, probe.stderr


@pytest.mark.parametrize(("argv", "extra"), [
    (["run", "--prompt", "hi"], "attester"),
    (["attest", "--prompt", "hi", "--nonce", "bm9uY2Utb2YtMTZieXRlcw"], "attester"),
    (["serve", "attester", "--port", "1"], "attester"),
    (["serve", "verifier", "--port", "1"], "verifier"),
    (["verify", "nothing.jwt"], "verifier"),
    (["worker"], "verifier"),
    (["demo"], "verifier"),
])
def test_roles_not_installed_say_which_extra_in_one_line(rp_python: Path, argv: list[str],
                                                         extra: str) -> None:
    proc = _cli(rp_python, *argv)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    label = " ".join(argv[:2]) if argv[0] == "serve" else argv[0]
    assert proc.stderr.startswith(f"bytereplay {label} needs the {extra} extra: "
                                  f"pip install 'bytereplay[{extra}]'")


def test_help_preflight_and_appraise_work(rp_python: Path, tmp_path: Path) -> None:
    assert _cli(rp_python, "--help").returncode == 0
    done = _cli(rp_python, "preflight", str(REPO / "fixtures" / "records" / "complete.json"))
    assert done.returncode == 0 and "before replay" in done.stdout, done.stderr
    key = SigningKey.generate()
    (tmp_path / "r.jwt").write_text(make_result(key, output=b"bytes"))
    (tmp_path / "o.txt").write_bytes(b"bytes")
    (tmp_path / "k.json").write_text(json.dumps(jwks_of(key)))
    done = _cli(rp_python, "appraise", "r.jwt", "--output", "o.txt", "--verifier-keys", "k.json",
                cwd=tmp_path)
    assert done.returncode == 0 and "decision: ALLOW" in done.stdout, done.stdout + done.stderr


def test_keys_rotate_needs_no_role_installed(rp_python: Path, tmp_path: Path) -> None:
    done = _cli(rp_python, "keys", "rotate", "--key", "ear.pem", cwd=tmp_path)
    assert done.returncode == 0 and "created the first key" in done.stdout, done.stderr
    assert ((tmp_path / "ear.pem").stat().st_mode & 0o777) == 0o600
    # The role's configuration reader is light: it works without the role's extra too.
    done = _cli(rp_python, "keys", "rotate", "--home", str(tmp_path / "h"), cwd=tmp_path)
    assert done.returncode == 0 and "verifier key ring" in done.stdout, done.stderr
