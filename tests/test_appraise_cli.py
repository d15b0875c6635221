"""`bytereplay appraise`: exit 0 allow, 1 deny, 2 bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bytereplay.cli import main
from bytereplay.home import Home
from bytereplay.keys import SigningKey, load_or_create_key
from relying_party.testing import jwks_of, make_result

REPO = Path(__file__).resolve().parent.parent
NONCE = "bm9uY2Utb2YtMTZieXRlcw"  # 16 bytes
OTHER_NONCE = "b3RoZXItMTYtYnl0ZXMhIQ"
OUT = b"hello from the model"


@pytest.fixture()
def files(tmp_path: Path) -> dict[str, Path]:
    key = SigningKey.generate()
    paths = {
        "result": tmp_path / "result.jwt",
        "output": tmp_path / "output.txt",
        "jwks": tmp_path / "jwks.json",
        "other": tmp_path / "other.jwt",
    }
    paths["result"].write_text(make_result(key, output=OUT, nonce=NONCE))
    paths["other"].write_text(make_result(SigningKey.generate(), output=OUT))
    paths["output"].write_bytes(OUT)
    paths["jwks"].write_text(json.dumps(jwks_of(key)))
    return paths


def run(*argv: str | Path) -> int:
    return main(["appraise", *map(str, argv)])


def test_allow_exits_0_and_prints_the_decision(
    files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(files["result"], "--output", files["output"], "--verifier-keys", files["jwks"]) == 0
    out = capsys.readouterr().out
    for text in ("decision: ALLOW", "status: warning", "verdict: match", "claim: Under the recorded",
                 "not covered", "truth or accuracy", f"verifier keys: {files['jwks']}"):
        assert text in out, text


def test_malformed_nonce_is_bad_input_exit_2(files: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    for bad in ("hello world", "bm9uY2U"):  # not base64url; 5 bytes, outside 8..64
        assert run(files["result"], "--output", files["output"], "--verifier-keys", files["jwks"],
                   "--nonce", bad) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "nonce" in err


def test_deny_exits_1(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    files["output"].write_bytes(OUT + b"!")
    assert run(files["result"], "--output", files["output"], "--verifier-keys", files["jwks"]) == 1
    out = capsys.readouterr().out
    assert "decision: DENY" in out and "output hash:" in out
    files["output"].write_bytes(OUT)
    assert run(files["other"], "--output", files["output"], "--verifier-keys", files["jwks"]) == 1
    assert run(files["result"], "--output", files["output"], "--verifier-keys", files["jwks"],
               "--policy", "strict", "--nonce", NONCE) == 1  # simulated TEE
    assert run(files["result"], "--output", files["output"], "--verifier-keys", files["jwks"],
               "--nonce", OTHER_NONCE) == 1


def test_json_output(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert run(files["result"], "--output", files["output"], "--verifier-keys", files["jwks"],
               "--json", "--nonce", NONCE, "--policy", "dev") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["allow"] is True and doc["policy"]["name"] == "dev"
    assert doc["checks"]["nonce"]["ok"] is True
    assert doc["verifier_keys"].startswith("verifier keys:")
    assert doc["not_covered"]


def test_bad_input_exits_2(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = ("--verifier-keys", files["jwks"])
    assert run(tmp_path / "missing.jwt", "--output", files["output"], *keys) == 2
    assert run(files["result"], "--output", tmp_path / "missing.txt", *keys) == 2
    assert run(files["result"], "--output", files["output"], *keys, "--policy", "lenient") == 2
    bad = tmp_path / "bad.rego"
    bad.write_text("package x\nimport rego.v1\nallow if {\n  input.a ==\n}\n")
    assert run(files["result"], "--output", files["output"], *keys, "--policy", bad) == 2
    assert f"{bad}:4:" in capsys.readouterr().err
    assert run(files["result"], "--output", files["output"], "--verifier-keys",
               tmp_path / "nokeys.json") == 2
    junk = tmp_path / "junk.json"
    junk.write_text('{"keys": "no"}')
    assert run(files["result"], "--output", files["output"], "--verifier-keys", junk) == 2
    with pytest.raises(SystemExit) as exc:  # --output is required
        main(["appraise", str(files["result"])])
    assert exc.value.code == 2


def test_junk_result_is_a_deny_not_a_crash(files: dict[str, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.jwt"
    junk.write_bytes(b"\x00\xffnot a token")
    assert run(junk, "--output", files["output"], "--verifier-keys", files["jwks"]) == 1


def test_default_keys_come_from_the_home_and_it_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = Home.resolve(tmp_path / "home")
    key = load_or_create_key(home.verifier_key)
    result = tmp_path / "r.jwt"
    result.write_text(make_result(key, output=OUT))
    output = tmp_path / "o.txt"
    output.write_bytes(OUT)
    assert run(result, "--output", output, "--home", home.root) == 0
    out = capsys.readouterr().out
    assert f"derived from the verifier key in {home.root}" in out and key.kid in out
    empty = tmp_path / "empty-home"
    assert run(result, "--output", output, "--home", empty) == 2
    assert "no verifier key" in capsys.readouterr().err


def test_result_from_stdin_and_verifier_response_json(files: dict[str, Path], tmp_path: Path) -> None:
    response = tmp_path / "response.json"
    response.write_text(json.dumps({"result": files["result"].read_text(), "status": "warning"}))
    assert run(response, "--output", files["output"], "--verifier-keys", files["jwks"]) == 0
    proc = subprocess.run(
        [sys.executable, "-m", "bytereplay.cli", "appraise", "-", "--output", str(files["output"]),
         "--verifier-keys", str(files["jwks"])],
        input=files["result"].read_bytes(), capture_output=True, cwd=REPO, check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert proc.returncode == 0, proc.stderr
