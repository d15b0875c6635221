"""The command-line flow fits together: attest -> verify -> appraise, with exact bytes.

`attest --out` writes Evidence that `verify FILE` reads; `verify` also reads the JSON that
`attest` prints (whatever characters the output holds) and replays by default; a file of
no Evidence shape is a usage error (exit 2, one line), never a negative EAR;
`--output-file` writes the exact output bytes; every flag the README names exists.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import pytest

from attester.engine import Engine, EngineSettings
from attester.service import Attester
from bytereplay.cli import build_parser, main
from bytereplay.encoding import b64url_encode, sha256_tag

REPO = Path(__file__).resolve().parent.parent
NONCE = b64url_encode(b"sixteen byte non")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(EngineSettings())


@pytest.fixture(autouse=True)
def shared_engine(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Attester, "load_engine", lambda self: setattr(self, "engine", engine))


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("fmt", ["jwt", "cwt"])
def test_attest_out_then_verify_is_warning_with_match(fmt: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    home, ev, out = tmp_path / "home", tmp_path / "ev", tmp_path / "out.bin"
    rc, printed, err = run(capsys, "attest", "--prompt", "Hello", "--nonce", NONCE, "--home", home,
                           "--format", fmt, "--max-new-tokens", "6", "--out", ev,
                           "--output-file", out)
    assert rc == 0, err
    answer: dict[str, Any] = json.loads(printed)
    assert out.read_bytes() == answer["output"].encode("utf-8")
    assert sha256_tag(out.read_bytes()) == answer["output_hash"]
    if fmt == "jwt":
        assert ev.read_text(encoding="ascii") == answer["evidence"]
    else:
        assert b64url_encode(ev.read_bytes()) == answer["evidence"]
    rc, printed, err = run(capsys, "verify", ev, "--home", home, "--json")
    assert rc == 0, err
    doc = json.loads(printed)
    assert doc["status"] == "warning" and doc["replay"]["verdict"] == "match"


def test_verify_reads_attest_json_whatever_the_output_holds(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    rc, printed, err = run(capsys, "attest", "--prompt", "Hello", "--nonce", NONCE, "--home", home,
                           "--max-new-tokens", "6")
    assert rc == 0, err
    answer = json.loads(printed)
    # The answer as `attest` prints it, with a non-ASCII output (U+FFFD is common here).
    answer["output"] = "caf\u00e9 \ufffd"
    path = tmp_path / "answer.json"
    path.write_text(json.dumps(answer, ensure_ascii=False), encoding="utf-8")
    rc, printed, err = run(capsys, "verify", path, "--home", home, "--no-replay")
    assert rc == 0, err
    assert "status: warning" in printed and "replay: not-run (replay was not requested)" in printed


@pytest.mark.parametrize("content", [
    b"", b"hello world\n", b"{\"output\": \"x\"}", b"{not json", b"a.b", b"\x00\x01binary",
    "caf\u00e9".encode(),
])
def test_verify_of_a_non_evidence_file_is_one_line_exit_2(content: bytes, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "file"
    path.write_bytes(content)
    rc, printed, err = run(capsys, "verify", path, "--home", tmp_path / "home")
    assert rc == 2 and printed == ""
    assert err.count("\n") == 1 and "expected a JWT" in err


def test_run_output_file_holds_the_exact_bytes(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.bin"
    rc, printed, err = run(capsys, "run", "--prompt", "Hello", "--max-new-tokens", "6", "--json",
                           "--output-file", out)
    assert rc == 0, err
    doc = json.loads(printed)
    assert out.read_bytes() == doc["output"].encode("utf-8")
    assert sha256_tag(out.read_bytes()) == doc["output_hash"]


@pytest.mark.parametrize("data", [b"{}", b"{\"seed\": 3}", b"[]"])
def test_preflight_of_a_schema_less_record_is_exit_2_naming_schema(
        data: bytes, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "record.json"
    path.write_bytes(data)
    rc, printed, err = run(capsys, "preflight", path)
    assert rc == 2 and printed == "" and err.count("\n") == 1
    assert "schema" in err or "object" in err


def _subparser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and words and words[0] in action.choices:
            return _subparser(action.choices[words[0]], words[1:])
    return parser


def test_every_flag_the_readme_names_exists() -> None:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    commands = [m[1] for m in re.finditer(r"(?:^|`|\$ )(bytereplay [^`\n]+)", text, re.M)]
    assert len(commands) > 10
    parser = build_parser()
    checked = 0
    for command in commands:
        words = [w.split("|")[0] for w in command.replace("[", " ").replace("]", " ").split()]
        sub = _subparser(parser, [w for w in words[1:] if not w.startswith("-")][:2])
        known = {s for a in sub._actions for s in a.option_strings}
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", command):
            assert flag in known, f"README names `{flag}` for `{command}`; the CLI has no such flag"
            checked += 1
    assert checked > 20
