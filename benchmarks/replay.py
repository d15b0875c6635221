"""Teacher-forced replay against full replay, as ratios of the original generation.

    python benchmarks/replay.py [--model DIR] [--lengths 16 64 256] [--repeats 3]
                                [--device cpu|cuda] [--dtype float32|bfloat16] [--json]

For each output length, on one model (default: the fixture model), in one run, with
torch on one thread and the determinism controls on:

- generation: the attester's `Engine.generate` (greedy, EOS off so the length is reached);
- the whole appraisal (`Verifier.appraise`: decode, signatures, quote, nonce, reference
  values, preflight, policy, EAR) with `replay_method` `teacher-forced`, and with `full`;
  each as a ratio of the generation time of the same request (median over repeats; the
  three take turns so they meet the same load);
- the replay step alone (`bytereplay.replay.seconds`) for both methods;
- prefill against decode: the teacher-forced logits against the logits the token loop
  saw (`Engine.stepwise_logits`), row by row: argmax agreement, largest absolute
  difference, rows bitwise equal.

The issue's goals on a CPU: teacher-forced appraisal / generation <= 0.1 at 64 tokens and
<= 0.08 at 256; on a GPU <= 0.05 (`benchmarks/gpu.sh`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from attester.engine import DecodePolicy, Engine, EngineSettings, InferenceRequest  # noqa: E402
from attester.testing import TEMPLATE, EvidenceFactory, run  # noqa: E402
from bytereplay.home import Home  # noqa: E402
from verifier.config import VerifierConfig  # noqa: E402
from verifier.pipeline import Verifier  # noqa: E402
from verifier.replay import measure_agreement  # noqa: E402

GOALS = {64: 0.1, 256: 0.08}
GPU_GOAL = 0.05


def measure(model_dir: Path | None, lengths: list[int], repeats: int, *,
            device: str = "cpu", dtype: str = "float32") -> dict[str, Any]:
    """The report (see the module docstring); torch is set to one thread."""
    torch.set_num_threads(1)
    goals = GOALS if device == "cpu" else dict.fromkeys(lengths, GPU_GOAL)
    with tempfile.TemporaryDirectory(prefix="bytereplay-replay-bench-") as tmp:
        home = Home.resolve(Path(tmp) / "home")
        settings = EngineSettings(model_dir=model_dir, device=device, dtype=dtype)
        engine = Engine(settings)  # the attester's
        model_dir = engine.model_dir
        # The verifiers share one engine of their own, as a sidecar has.
        shared: dict[str, Engine] = {}

        def factory(s: EngineSettings) -> Engine:
            if "e" not in shared:
                shared["e"] = Engine(s)
            return shared["e"]

        verifiers = {m: Verifier(VerifierConfig(home=home, model_dir=model_dir, device=device,
                                                dtype=dtype, replay_method=m),
                                 engine_factory=factory)
                     for m in ("teacher-forced", "full")}
        evidence = EvidenceFactory(home, engine)
        rows: list[dict[str, Any]] = []
        agreement: dict[int, dict[str, Any]] = {}
        try:
            for v in verifiers.values():  # load the model, calibrate: once, not timed
                warm = v.appraise(evidence.make(v.issue_nonce().nonce))
                assert warm.replay["verdict"] == "match", warm.replay
            calibration = dict(verifiers["teacher-forced"].appraise(evidence.make(
                verifiers["teacher-forced"].issue_nonce().nonce)).replay.get(
                    "bitwise_measurement") or {})
            for n in lengths:
                decode: dict[str, Any] = {"max_new_tokens": n, "temperature": 0.0, "top_k": 0, "top_p": 1.0,
                          "seed": 0, "stop": [], "eos": False}
                for i in range(repeats):
                    prompt = f"Replay benchmark prompt number {i}"
                    t0 = time.perf_counter()
                    result = run(engine, prompt, decode)
                    gen_s = time.perf_counter() - t0
                    row: dict[str, Any] = {"n": n, "tokens": len(result.token_ids),
                                           "generation_s": gen_s}
                    for method, v in verifiers.items():
                        token = evidence.make(v.issue_nonce().nonce, prompt=prompt,
                                              decode=decode, result=result)
                        t1 = time.perf_counter()
                        out = v.appraise(token)
                        row[f"{method}_appraisal_s"] = time.perf_counter() - t1
                        row[f"{method}_replay_s"] = out.replay["seconds"]
                        assert out.replay["verdict"] == "match", out.replay
                        assert out.replay["method"] == method
                    rows.append(row)
                    if i == 0:
                        policy = DecodePolicy(**{**decode, "stop": ()})
                        ids = engine.prompt_ids(InferenceRequest(prompt, TEMPLATE, policy))
                        agreement[n] = measure_agreement(
                            engine.stepwise_logits(ids, result.token_ids),
                            engine.teacher_forced_logits(ids, result.token_ids))
        finally:
            for v in verifiers.values():
                v.close()

    report: dict[str, Any] = {"model": engine.model_id, "threads": torch.get_num_threads(),
                              "device": device, "dtype": dtype,
                              "torch": torch.__version__, "calibration": calibration,
                              "lengths": {}}
    for n in lengths:
        sel = [r for r in rows if r["n"] == n]

        def med(key: str, sel: list[dict[str, Any]] = sel) -> float:
            return float(statistics.median(r[key] for r in sel))

        def ratio(key: str, sel: list[dict[str, Any]] = sel) -> float:
            return float(statistics.median(r[key] / r["generation_s"] for r in sel))

        tf = ratio("teacher-forced_appraisal_s")
        report["lengths"][n] = {
            "tokens": sel[0]["tokens"],
            "generation_ms": round(1e3 * med("generation_s"), 1),
            "teacher_forced_appraisal_ms": round(1e3 * med("teacher-forced_appraisal_s"), 1),
            "full_appraisal_ms": round(1e3 * med("full_appraisal_s"), 1),
            "ratio_teacher_forced_appraisal": round(tf, 3),
            "ratio_full_appraisal": round(ratio("full_appraisal_s"), 3),
            "ratio_teacher_forced_replay_step": round(ratio("teacher-forced_replay_s"), 3),
            "ratio_full_replay_step": round(ratio("full_replay_s"), 3),
            "goal": goals.get(n),
            "goal_met": None if n not in goals else tf <= goals[n],
            "agreement": agreement[n],
        }
    return report


def print_table(report: dict[str, Any]) -> None:
    print(f"model {report['model']} on {report['device']} ({report['dtype']}), "
          f"torch {report['torch']}, {report['threads']} thread")
    print(f"calibration (prefill vs decode at model load): {report['calibration']}")
    print("| new tokens | generation | teacher-forced appraisal (ratio) | full appraisal (ratio) "
          "| replay step: teacher-forced / full | argmax agreement | max abs diff "
          "| bitwise rows | goal |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for n, r in report["lengths"].items():
        a = r["agreement"]
        goal = "-" if r["goal"] is None else \
            f"<= {r['goal']}: {'met' if r['goal_met'] else 'NOT met'}"
        print(f"| {n} | {r['generation_ms']} ms | {r['teacher_forced_appraisal_ms']} ms "
              f"({r['ratio_teacher_forced_appraisal']}) | {r['full_appraisal_ms']} ms "
              f"({r['ratio_full_appraisal']}) | {r['ratio_teacher_forced_replay_step']} / "
              f"{r['ratio_full_replay_step']} | {100 * a['argmax_agreement']:.1f}% | "
              f"{a['max_abs_diff']:.3g} | {a['equal_rows']}/{a['rows']} | {goal} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="model directory (default: the fixture model)")
    parser.add_argument("--lengths", type=int, nargs="+", default=[16, 64, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N")
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = measure(args.model, args.lengths, args.repeats, device=args.device,
                     dtype=args.dtype)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print_table(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
