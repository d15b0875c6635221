"""`bytereplay attest`: prints the /v1/infer JSON; bad input is one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from quote_helpers import sim_trusts, verify_evidence

from attester.engine import Engine, EngineSettings
from attester.service import Attester
from bytereplay.cli import main
from bytereplay.encoding import b64url_encode, sha256_tag
from bytereplay.home import Home
from verifier.tee.simulated import load_ca_pem

NONCE = b64url_encode(b"sixteen byte non")


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine(EngineSettings())


@pytest.fixture
def shared_engine(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Attester.load_engine uses the module's engine (one load per module)."""
    loads: list[int] = []

    def load(self: Attester) -> None:
        loads.append(1)
        self.engine = engine

    monkeypatch.setattr(Attester, "load_engine", load)
    return loads


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("fmt", ["jwt", "cwt"])
def test_attest_prints_verifiable_json(fmt: str, tmp_path: Path, shared_engine: list[int],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    rc, out, err = run(capsys, "attest", "--prompt", "Hello", "--nonce", NONCE, "--format", fmt,
                       "--home", str(home), "--max-new-tokens", "5", "--seed", "2",
                       "--temperature", "0.7", "--stop", "\n\n", "--template", "> {input}")
    assert rc == 0, err
    answer: dict[str, Any] = json.loads(out)
    assert set(answer) == {"output", "output_hash", "evidence", "evidence_format"}
    assert answer["evidence_format"] == fmt and shared_engine == [1]
    assert answer["output_hash"] == sha256_tag(answer["output"].encode("utf-8"))
    pem = load_ca_pem(Home.resolve(home).simulated_ca)
    assert pem is not None
    verified = verify_evidence(answer["evidence"], sim_trusts(pem), fmt)
    assert verified.evidence.nonce == b"sixteen byte non"
    assert verified.evidence.request["template"] == "> {input}"
    assert verified.evidence.request["decode"]["stop"] == ["\n\n"]


@pytest.mark.parametrize(("nonce", "word"), [
    ("AAAA", "nonce is 3 bytes; it must be 8..64"),
    (b64url_encode(bytes(65)), "nonce is 65 bytes; it must be 8..64"),
    ("AAAAAAAAAAA=", "not unpadded base64url"),
    ("*not*base64*", "not unpadded base64url"),
])
def test_bad_nonce_is_one_line_and_exit_2(nonce: str, word: str, tmp_path: Path,
                                          shared_engine: list[int],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "attest", "--prompt", "x", "--nonce", nonce,
                       "--home", str(tmp_path))
    assert rc == 2 and out == "" and shared_engine == []
    assert err.count("\n") == 1 and word in err and err.startswith("bytereplay: error: ")
    assert not (tmp_path / "keys").exists()  # refused before anything was created


@pytest.mark.parametrize(("provider", "word"), [
    ("tsm", "configfs-tsm not available"),
    ("nvidia", "NVIDIA confidential-computing GPU not available"),
    ("sgx", "provider: expected one of"),
])
def test_unavailable_provider(provider: str, word: str, tmp_path: Path, shared_engine: list[int],
                              capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run(capsys, "attest", "--prompt", "x", "--nonce", NONCE, "--provider",
                       provider, "--home", str(tmp_path))
    assert rc == 2 and out == "" and err.count("\n") == 1 and word in err
    assert "Traceback" not in err and shared_engine == []


def test_bad_decode_flags(tmp_path: Path, shared_engine: list[int],
                          capsys: pytest.CaptureFixture[str]) -> None:
    for flags, word in [(["--max-new-tokens", "0"], "decode.max_new_tokens"),
                        (["--top-p", "0"], "decode.top_p"),
                        (["--template", "no mark"], "template: must contain"),
                        (["--threads", "0"], "threads")]:
        rc, out, err = run(capsys, "attest", "--prompt", "x", "--nonce", NONCE, "--home",
                           str(tmp_path), *flags)
        assert rc == 2 and out == "" and word in err, (flags, err)
