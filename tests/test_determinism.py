"""Determinism: one output hash per request over many runs, processes and threads;
and negative controls showing the checks do catch a difference.

Every check here counts unique hashes; a check that only compared two runs could not
tell "always the same" from "usually the same".
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch

from attester.engine import DecodePolicy, Engine, EngineSettings, InferenceRequest, InferenceResult

REPO = Path(__file__).resolve().parent.parent
PROMPT = "Replay the bytes before you trust the answer."
GREEDY = InferenceRequest(PROMPT, decode=DecodePolicy(max_new_tokens=8))
SAMPLED = InferenceRequest(
    PROMPT, decode=DecodePolicy(max_new_tokens=8, temperature=0.9, top_k=40, top_p=0.95, seed=1234)
)
RUNS = 200
# The demo's dtype case: float32 and bfloat16 give different bytes for this request.
DTYPE_DEMO = InferenceRequest("Once upon a time", decode=DecodePolicy(max_new_tokens=32))

OTHERS = [
    InferenceRequest("Hello", decode=DecodePolicy(max_new_tokens=12)),
    InferenceRequest("The quick brown fox", decode=DecodePolicy(max_new_tokens=6, temperature=1.2, seed=7)),
    InferenceRequest(
        "{x}",
        template="Q: {input}\nA:",
        decode=DecodePolicy(max_new_tokens=10, top_p=0.5, temperature=0.7, seed=99),
    ),
    InferenceRequest("", decode=DecodePolicy(max_new_tokens=5, temperature=2.0, top_k=5, seed=2**40)),
    InferenceRequest("What is the capital of France?", decode=DecodePolicy(max_new_tokens=20, stop=("e",))),
]
ALL = [GREEDY, SAMPLED, *OTHERS]


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def lone(engine: Engine) -> dict[InferenceRequest, InferenceResult]:
    """Each request run alone, once: the bytes every other setting must reproduce."""
    return {req: engine.generate(req) for req in ALL}


def unique(results: Iterable[InferenceResult]) -> set[str]:
    return {r.output_hash for r in results}


def test_greedy_one_hash_over_many_runs(engine: Engine, lone: dict[Any, InferenceResult]) -> None:
    results = [engine.generate(GREEDY) for _ in range(RUNS)]
    assert unique(results) == {lone[GREEDY].output_hash}
    assert len({r.record.digest() for r in results}) == 1  # the whole record, too


def test_sampled_one_hash_over_many_runs(engine: Engine, lone: dict[Any, InferenceResult]) -> None:
    results = [engine.generate(SAMPLED) for _ in range(RUNS)]
    assert unique(results) == {lone[SAMPLED].output_hash}
    assert len({r.token_ids for r in results}) == 1


_CHILD = """
import json, sys
from attester.engine import DecodePolicy, Engine, InferenceRequest
e = Engine()
out = []
for spec in json.loads(sys.argv[1]):
    d = spec["decode"]
    req = InferenceRequest(spec["input"], spec["template"], DecodePolicy(
        d["max_new_tokens"], d["temperature"], d["top_k"], d["top_p"], d["seed"],
        tuple(d["stop"]), d["eos"]))
    for _ in range(3):
        r = e.generate(req)
        out.append([r.output_hash, r.record.digest()])
print(json.dumps(out))
"""


def _spec(req: InferenceRequest) -> dict[str, Any]:
    d = req.decode
    return {
        "input": req.input,
        "template": req.template,
        "decode": {
            "max_new_tokens": d.max_new_tokens,
            "temperature": d.temperature,
            "top_k": d.top_k,
            "top_p": d.top_p,
            "seed": d.seed,
            "stop": list(d.stop),
            "eos": d.eos,
        },
    }


def test_separate_processes_agree(lone: dict[Any, InferenceResult]) -> None:
    reqs = [GREEDY, SAMPLED, OTHERS[2]]
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    # Different hash seeds per child: nothing may depend on dict/set order.
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, json.dumps([_spec(r) for r in reqs])],
            cwd=REPO,
            env={**env, "PYTHONHASHSEED": str(i)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    want = [[lone[r].output_hash, lone[r].record.digest()] for r in reqs for _ in range(3)]
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
        assert json.loads(out) == want


def test_cli_process_agrees(lone: dict[Any, InferenceResult]) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "attester.run_cli",
            "--prompt",
            PROMPT,
            "--max-new-tokens",
            "8",
            "--temperature",
            "0.9",
            "--top-k",
            "40",
            "--top-p",
            "0.95",
            "--seed",
            "1234",
            "--json",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["output_hash"] == lone[SAMPLED].output_hash
    assert doc["record"] == lone[SAMPLED].record.to_dict()


def test_eight_concurrent_callers(engine: Engine, lone: dict[Any, InferenceResult]) -> None:
    barrier = threading.Barrier(8)

    def caller(i: int) -> list[tuple[InferenceRequest, str]]:
        rng = random.Random(i)
        order = [ALL[rng.randrange(len(ALL))] for _ in range(12)] + [GREEDY, SAMPLED] * 3
        barrier.wait()
        return [(req, engine.generate(req).output_hash) for req in order]

    with ThreadPoolExecutor(8) as pool:
        batches = list(pool.map(caller, range(8)))
    seen: dict[InferenceRequest, set[str]] = {}
    for batch in batches:
        for req, h in batch:
            seen.setdefault(req, set()).add(h)
    assert sum(len(b) for b in batches) == 8 * 18
    for req, hashes in seen.items():
        assert hashes == {lone[req].output_hash}, req


def test_interleaved_batches_give_lone_run_bytes(engine: Engine, lone: dict[Any, InferenceResult]) -> None:
    # Different requests in one pool, shuffled: each still gets its lone-run bytes.
    work = ALL * 4
    random.Random(0).shuffle(work)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(engine.generate, work))
    for req, r in zip(work, results, strict=True):
        assert r.output_bytes == lone[req].output_bytes
        assert r.token_ids == lone[req].token_ids


def test_two_engines_in_one_process_keep_their_own_controls(
    engine: Engine, lone: dict[Any, InferenceResult]
) -> None:
    off = Engine(EngineSettings(controls=False))

    def run_off() -> None:
        for _ in range(10):
            r = off.generate(SAMPLED)
            assert r.record.determinism is not None
            assert r.record.determinism.deterministic_algorithms is False

    t = threading.Thread(target=run_off)
    t.start()
    results = [engine.generate(SAMPLED) for _ in range(10)]
    t.join()
    assert unique(results) == {lone[SAMPLED].output_hash}
    assert all(r.record.threads == 1 for r in results)
    assert all(r.record.determinism and r.record.determinism.deterministic_algorithms for r in results)


# -- negative controls: the checks must be able to fail ----------------------------


def test_seed_changes_sampled_output(engine: Engine) -> None:
    hashes = {
        engine.generate(
            InferenceRequest(
                PROMPT, decode=DecodePolicy(max_new_tokens=8, temperature=0.9, top_k=40, top_p=0.95, seed=s)
            )
        ).output_hash
        for s in range(10)
    }
    assert len(hashes) >= 9


def test_greedy_ignores_the_seed(engine: Engine, lone: dict[Any, InferenceResult]) -> None:
    for s in (1, 2, 3):
        r = engine.generate(InferenceRequest(PROMPT, decode=DecodePolicy(max_new_tokens=8, seed=s)))
        assert r.output_bytes == lone[GREEDY].output_bytes


def test_dtype_changes_the_bytes(engine: Engine) -> None:
    """A recorded setting (dtype) changed: the bytes change, and the record says why."""
    bf16 = Engine(EngineSettings(dtype="bfloat16"))
    a, b = engine.generate(DTYPE_DEMO), bf16.generate(DTYPE_DEMO)
    assert a.output_bytes != b.output_bytes
    assert (a.record.dtype, b.record.dtype) == ("float32", "bfloat16")
    # Same dtype, same bytes: the difference is the setting, not noise.
    assert unique(bf16.generate(DTYPE_DEMO) for _ in range(20)) == {b.output_hash}


def test_nondeterministic_kernel_is_caught(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stand-in for a control switched off on hardware where that matters: a forward pass
    whose logits vary run to run (as an atomics-based GPU reduction makes them). The
    same unique-hash count that holds above must report more than one hash here.

    The noise is seeded, so this test is itself reproducible; its size (1e-2) is what
    flips tokens within 32 steps. Last-bit noise flips far fewer, which is why the
    benchmark counts unique outputs over 10,000 runs.
    """
    real = engine._forward
    noise = torch.Generator().manual_seed(0)

    def racy_forward(ids: list[int], cache: Any) -> tuple[Any, Any]:
        logits, cache = real(ids, cache)
        return logits + 1e-2 * torch.randn(logits.shape, generator=noise), cache

    req = InferenceRequest(PROMPT, decode=dataclasses.replace(SAMPLED.decode, max_new_tokens=32))
    clean = engine.generate(req).output_hash
    monkeypatch.setattr(engine, "_forward", racy_forward)
    hashes = unique(engine.generate(req) for _ in range(40))
    assert len(hashes) > 1
    assert hashes != {clean}
