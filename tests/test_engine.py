"""The engine API on the fixture model: output, record, validation, stop rules, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from attester import controls
from attester.engine import (
    DEFAULT_TEMPLATE,
    DecodePolicy,
    Engine,
    EngineSettings,
    InferenceRequest,
    InferenceResult,
    RequestError,
    find_default_model_dir,
    model_id_for,
)
from bytereplay import __version__
from bytereplay.encoding import HASH_RE, sha256_tag
from bytereplay.errors import UsageError
from bytereplay.record import RunRecord

REPO = Path(__file__).resolve().parent.parent
FIXTURE_DIGEST = "sha-256:25939d3630402a0abf1a1e309d9acecce11214d18ae74efb419ca35a93f11527"
PROMPT = "Replay the bytes before you trust the answer."


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


def greedy(n: int = 16, **kw: object) -> DecodePolicy:
    return DecodePolicy(max_new_tokens=n, **kw)  # type: ignore[arg-type]


def test_default_model_is_the_fixture(engine: Engine) -> None:
    assert find_default_model_dir() == REPO / "fixtures" / "model"
    assert engine.model_digest == FIXTURE_DIGEST
    assert engine.model_id == "bytereplay/fixture-llama-2m"


def test_model_id_fallbacks(tmp_path: Path) -> None:
    snap = tmp_path / "models--org--name" / "snapshots" / ("ab" * 20)
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps({"_name_or_path": "/abs/path"}))
    assert model_id_for(snap) == "org/name@" + "ab" * 20
    other = tmp_path / "my-model"
    other.mkdir()
    assert model_id_for(other) == "my-model"


def test_progress_is_reported() -> None:
    lines: list[str] = []
    Engine(progress=lines.append)
    assert lines[-1] == "model: ready"
    # hashed, or taken from the digest cache (attester/model_digest.py) by an earlier test
    assert any(line.startswith(("model digest: 100%", "model digest: cached")) for line in lines)
    assert any("loading weights" in line for line in lines)


def test_greedy_output_and_hashes(engine: Engine) -> None:
    r = engine.generate(InferenceRequest(PROMPT, decode=greedy(16)))
    assert isinstance(r, InferenceResult)
    assert r.output_bytes == r.output.encode("utf-8")
    assert r.output_hash == sha256_tag(r.output_bytes)
    assert len(r.token_ids) == 16 and r.finish_reason == "length"
    assert len(set(r.token_ids)) > 3, "the fixture should not emit one constant token"
    # Other prompts give other outputs (the model is not degenerate).
    outs = {
        engine.generate(InferenceRequest(p, decode=greedy(16))).output_hash
        for p in [PROMPT, "Hello", "The quick brown fox", "42"]
    }
    assert len(outs) == 4


def test_record_fields(engine: Engine) -> None:
    req = InferenceRequest(PROMPT, template="Q: {input}\nA:", decode=greedy(8, stop=("zz",), seed=9))
    r = engine.generate(
        req,
        verifier_ref="https://verifier.example/v1",
        challenge_window=("2026-01-01T00:00:00Z", "2026-01-01T00:02:00Z"),
    )
    d = r.record.to_dict()
    assert d["schema"] == "deterministic_run_preflight.v1"
    assert d["input_hash"] == sha256_tag(PROMPT.encode())
    assert d["prompt_template_hash"] == sha256_tag(b"Q: {input}\nA:")
    assert d["model"] == {"id": "bytereplay/fixture-llama-2m", "digest": FIXTURE_DIGEST}
    assert d["runtime"] == {"name": "bytereplay", "version": __version__}
    assert d["framework"]["torch"] == torch.__version__
    assert d["threads"] == 1 and d["dtype"] == "float32"
    assert d["determinism"] == {
        "deterministic_algorithms": True,
        "cudnn_deterministic": True,
        "cudnn_benchmark": False,
        "tf32": False,
        "float32_matmul_precision": "highest",
        "cublas_workspace_config": ":4096:8",
    }
    assert d["cpu"]["capability"] == torch.backends.cpu.get_cpu_capability()
    assert d["seed"] == 9
    assert d["sampling"] == {"temperature": 0.0, "top_k": 0, "top_p": 1.0}
    assert d["stop"] == {"max_new_tokens": 8, "stop_sequences": ["zz"], "eos": True}
    assert d["output_hash"] == r.output_hash
    assert d["output_token_ids"] == list(r.token_ids)
    assert d["verifier_ref"] == "https://verifier.example/v1"
    assert d["challenge_window"]["expires_at"] == "2026-01-01T00:02:00Z"
    assert "container" not in d and "operator" not in d  # missing unless configured
    if not torch.cuda.is_available():
        assert d["gpu"] == {"arch": "none", "sku": "none", "sm_count": 0, "driver": "none"}
        assert d["toolkit"] == {"cuda": "none", "cublas": "none", "cudnn": "none"}
    assert RunRecord.from_dict(d) == r.record
    assert HASH_RE.match(r.record.digest())


def test_environment_fields_and_info(engine: Engine) -> None:
    env = engine.environment_fields()
    assert set(env) == {
        "model",
        "container",
        "runtime",
        "framework",
        "gpu",
        "toolkit",
        "cpu",
        "threads",
        "dtype",
        "determinism",
    }
    RunRecord.from_dict(env)
    info = engine.environment
    assert info["model"] == {"id": engine.model_id, "digest": FIXTURE_DIGEST}
    assert info["controls"] is True
    json.dumps(info)  # serialisable for GET /v1/info


def test_container_and_operator_from_settings() -> None:
    digest = "sha256:" + "0f" * 32
    e = Engine(EngineSettings(container_digest=digest, operator="ops@example.com"))
    r = e.generate(InferenceRequest("x", decode=greedy(2)))
    assert r.record.container is not None and r.record.container.digest == digest
    assert r.record.operator == "ops@example.com"


def test_template_is_replaced_not_formatted(engine: Engine) -> None:
    tricky = "{0} {x} {input} {{}} %s"
    a = engine.generate(InferenceRequest(tricky, template="<<{input}>>", decode=greedy(8)))
    b = engine.generate(InferenceRequest(f"<<{tricky}>>", decode=greedy(8)))
    assert a.output_bytes == b.output_bytes
    assert a.record.prompt_template_hash != b.record.prompt_template_hash
    assert a.record.input_hash != b.record.input_hash
    assert DEFAULT_TEMPLATE == "{input}"


def test_empty_input_runs_on_bos(engine: Engine) -> None:
    r = engine.generate(InferenceRequest("", decode=greedy(4)))
    assert len(r.token_ids) == 4


def test_stop_sequence_truncates(engine: Engine) -> None:
    full = engine.generate(InferenceRequest(PROMPT, decode=greedy(24)))
    text = full.output
    # A stop sequence taken from the middle of the greedy output.
    stop = next(text[i : i + 3] for i in range(4, len(text) - 3) if text[i : i + 3].isprintable())
    cut = text.index(stop)
    r = engine.generate(InferenceRequest(PROMPT, decode=greedy(24, stop=(stop,))))
    assert r.finish_reason == "stop"
    assert r.output == text[:cut]
    assert r.token_ids == full.token_ids[: len(r.token_ids)]
    assert len(r.token_ids) < len(full.token_ids)
    assert r.record.stop is not None and r.record.stop.stop_sequences == (stop,)


def test_seeded_sampling_reproduces_and_top_k_1_is_greedy(engine: Engine) -> None:
    sampled = DecodePolicy(max_new_tokens=16, temperature=0.9, top_k=40, top_p=0.95, seed=11)
    a = engine.generate(InferenceRequest(PROMPT, decode=sampled))
    b = engine.generate(InferenceRequest(PROMPT, decode=sampled))
    assert a.output_bytes == b.output_bytes and a.token_ids == b.token_ids
    g = engine.generate(InferenceRequest(PROMPT, decode=greedy(16)))
    k1 = engine.generate(InferenceRequest(PROMPT, decode=DecodePolicy(16, 1.3, top_k=1, seed=5)))
    assert k1.token_ids == g.token_ids


@pytest.mark.parametrize(
    ("request_", "match"),
    [
        (InferenceRequest(PROMPT, decode=DecodePolicy(max_new_tokens=0)), "max_new_tokens"),
        (InferenceRequest(PROMPT, decode=DecodePolicy(top_p=0.0)), "top_p"),
        (InferenceRequest(PROMPT, decode=DecodePolicy(temperature=-1.0)), "temperature"),
        (InferenceRequest(PROMPT, template="no mark"), "template"),
        (InferenceRequest("\udc00"), "input"),
        (InferenceRequest(123), "input"),  # type: ignore[arg-type]
        (InferenceRequest("x" * 5000, decode=DecodePolicy(max_new_tokens=4)), "context"),
        (InferenceRequest("x", decode=DecodePolicy(max_new_tokens=1024)), "context"),
    ],
)
def test_bad_requests_are_refused(engine: Engine, request_: InferenceRequest, match: str) -> None:
    with pytest.raises(RequestError, match=match) as err:
        engine.generate(request_)
    assert isinstance(err.value, ValueError) and isinstance(err.value, UsageError)


def test_bad_appraisal_fields_are_refused(engine: Engine) -> None:
    req = InferenceRequest("x", decode=greedy(1))
    with pytest.raises(RequestError, match="challenge_window"):
        engine.generate(req, challenge_window=("yesterday", "2026-01-01T00:00:00Z"))
    with pytest.raises(RequestError, match="challenge_window"):
        engine.generate(req, challenge_window=("2026-01-01T00:00:00Z",))  # type: ignore[arg-type]
    with pytest.raises(RequestError, match="verifier_ref"):
        engine.generate(req, verifier_ref="")


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        (EngineSettings(dtype="int8"), "dtype"),
        (EngineSettings(device="tpu"), "device"),
        (EngineSettings(threads=0), "threads"),
        (EngineSettings(container_digest="sha256:xyz"), "container"),
        (EngineSettings(operator=""), "operator"),
        (EngineSettings(model_dir=Path("/nonexistent/model")), "not found"),
    ],
)
def test_bad_settings_are_refused(settings: EngineSettings, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        Engine(settings)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only path")
def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    with pytest.raises(UsageError, match="CUDA is not available"):
        Engine(EngineSettings(device="cuda"))


def test_not_a_model_directory(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UsageError, match="cannot load"):
        Engine(EngineSettings(model_dir=tmp_path))


def test_controls_off_engine_reports_torch_defaults(engine: Engine) -> None:
    off = Engine(EngineSettings(controls=False))
    r = off.generate(InferenceRequest(PROMPT, decode=greedy(4)))
    det = r.record.determinism
    assert det is not None and det.deterministic_algorithms is False
    assert det.cudnn_deterministic is False
    assert det.cublas_workspace_config in ("unset", controls.CUBLAS_WORKSPACE_CONFIG)
    assert r.record.threads == controls._snapshot_defaults().threads
    # The controls-on engine puts its own state back for its next run.
    r2 = engine.generate(InferenceRequest(PROMPT, decode=greedy(4)))
    assert r2.record.determinism is not None
    assert r2.record.determinism.deterministic_algorithms is True
    assert r2.record.threads == 1
    assert torch.are_deterministic_algorithms_enabled()


# -- CLI ------------------------------------------------------------------------


def test_cli_run_prints_output_and_hash(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    from attester.run_cli import main

    assert main(["--prompt", PROMPT, "--max-new-tokens", "8"]) == 0
    lines = capsys.readouterr().out.split("\n")
    want = engine.generate(InferenceRequest(PROMPT, decode=greedy(8)))
    assert lines[-2] == want.output_hash
    assert "\n".join(lines[:-2]) == want.output


def test_cli_run_json(engine: Engine, capsys: pytest.CaptureFixture[str]) -> None:
    from attester.run_cli import main

    argv = [
        "--prompt",
        PROMPT,
        "--max-new-tokens",
        "6",
        "--temperature",
        "0.8",
        "--seed",
        "3",
        "--top-k",
        "20",
        "--top-p",
        "0.9",
        "--stop",
        "zz",
        "--stop",
        "yy",
        "--template",
        "T: {input}",
        "--json",
    ]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    assert set(doc) == {"output", "output_hash", "record"}
    want = engine.generate(
        InferenceRequest(
            PROMPT,
            template="T: {input}",
            decode=DecodePolicy(6, 0.8, top_k=20, top_p=0.9, seed=3, stop=("zz", "yy")),
        )
    )
    assert doc["output"] == want.output and doc["output_hash"] == want.output_hash
    assert RunRecord.from_dict(doc["record"]) == want.record


def test_cli_bad_input_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    from attester.run_cli import main

    assert main(["--prompt", "x", "--max-new-tokens", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max_new_tokens" in err
    assert main(["--prompt", "x", "--dtype", "float8"]) == 2


def test_bytereplay_run_uses_this_handler(capsys: pytest.CaptureFixture[str]) -> None:
    cli = pytest.importorskip("bytereplay.cli")
    assert cli.main(["run", "--prompt", PROMPT, "--max-new-tokens", "4", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert HASH_RE.match(doc["output_hash"])
    assert cli.main(["run", "--prompt", "x", "--top-p", "2"]) == 2
    assert "top_p" in capsys.readouterr().err
