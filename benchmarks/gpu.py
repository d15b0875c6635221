#!/usr/bin/env python3
"""The GPU benchmark behind `benchmarks/gpu.sh`: one prepared run, figures as JSON.

    python benchmarks/gpu.py --out DIR                 # CUDA, SmolLM2, full size (< 8 min on an H100)
    python benchmarks/gpu.py --device cpu --out DIR    # the shortest dry run (CI, tests)

On the default model (SmolLM2-135M-Instruct, or $BYTEREPLAY_MODEL; --model to name one)
with the prompt as a chat message:

1. determinism: `--runs` greedy and `--sampled-runs` seeded sampled runs, counted unique,
   with a negative control (10 other seeds must give more than one output);
2. concurrency: `--concurrency` threads each running a different request through the one
   engine at once, against the same requests run alone: every output must be identical;
3. controls on/off: tokens/s with the determinism controls and with torch defaults,
   alternating blocks in one process;
4. replay/generation: the verifier's replay of a run (request check, the same engine
   settings, the run, the environment comparison) against the run itself;
5. teacher-forced replay/generation (`Replayer.replay(..., method="teacher-forced")`),
   else reported as not available;
6. the run record's GPU fields (NVML: arch, sku, SM count, driver; toolkit versions).

Writes `gpu.json` under --out; exit 1 when any determinism check fails. The device
defaults to cuda; `--device cpu` shrinks every count to its shortest setting.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from attester import chat, gguf_model  # noqa: E402
from attester.engine import DecodePolicy, Engine, EngineSettings, InferenceRequest  # noqa: E402

PROMPT = "What is the capital of France? Answer in one sentence."
SAMPLED: dict[str, Any] = {"temperature": 0.8, "top_k": 0, "top_p": 0.95}
FULL = {"runs": 1000, "sampled_runs": 1000, "concurrency": 16, "blocks": 10, "replays": 10}
DRY = {"runs": 3, "sampled_runs": 3, "concurrency": 4, "blocks": 2, "replays": 2}


def log(msg: str) -> None:
    print(msg, flush=True)


def chat_request(engine: Engine, prompt: str, policy: DecodePolicy) -> InferenceRequest:
    return InferenceRequest(chat.canonical_messages([{"role": "user", "content": prompt}]),
                            engine.chat_template, policy)


def unique(engine: Engine, req: InferenceRequest, runs: int, label: str) -> dict[str, Any]:
    seen: dict[str, int] = {}
    tokens = 0
    t = time.perf_counter()
    for i in range(runs):
        r = engine.generate(req)
        seen[r.output_hash] = seen.get(r.output_hash, 0) + 1
        tokens += len(r.token_ids)
        if runs >= 10 and (i + 1) % (runs // 10) == 0:
            log(f"  {label}: {i + 1}/{runs} runs, {len(seen)} unique, {time.perf_counter() - t:.0f} s")
    dt = time.perf_counter() - t
    return {"runs": runs, "unique_outputs": len(seen), "output_hash": max(seen, key=seen.__getitem__),
            "tokens_per_second": round(tokens / dt, 1), "seconds": round(dt, 2)}


def concurrency(engine: Engine, reqs: list[InferenceRequest]) -> dict[str, Any]:
    """Each request alone, then all at once from their own threads: same bytes?"""
    t = time.perf_counter()
    alone = [engine.generate(r).output_hash for r in reqs]
    lone_s = time.perf_counter() - t
    got: list[str | None] = [None] * len(reqs)
    errors: list[str] = []
    start = threading.Barrier(len(reqs))

    def work(i: int) -> None:
        try:
            start.wait()
            got[i] = engine.generate(reqs[i]).output_hash
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(reqs))]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    together_s = time.perf_counter() - t
    same = sum(1 for a, b in zip(alone, got, strict=True) if a == b)
    return {"requests": len(reqs), "identical_to_lone": same, "errors": errors,
            "distinct_outputs": len(set(alone)), "lone_seconds": round(lone_s, 2),
            "concurrent_seconds": round(together_s, 2)}


def controls_overhead(on: Engine, off: Engine, req: InferenceRequest, blocks: int,
                      per_block: int = 5) -> dict[str, Any]:
    secs = {"on": 0.0, "off": 0.0}
    toks = {"on": 0, "off": 0}
    pair: list[float] = []
    for b in range(blocks):
        rates = {}
        for name in (("on", "off") if b % 2 == 0 else ("off", "on")):
            e = on if name == "on" else off
            t, n = time.perf_counter(), 0
            for _ in range(per_block):
                n += len(e.generate(req).token_ids)
            dt = time.perf_counter() - t
            secs[name] += dt
            toks[name] += n
            rates[name] = n / dt
        pair.append(rates["on"] / rates["off"])
    ratio = (toks["on"] / secs["on"]) / (toks["off"] / secs["off"])
    return {"tokens_per_second_on": round(toks["on"] / secs["on"], 1),
            "tokens_per_second_off": round(toks["off"] / secs["off"], 1),
            "ratio_on_over_off": round(ratio, 4), "overhead_percent": round((1 - ratio) * 100, 2),
            "median_block_ratio": round(statistics.median(pair), 4), "runs_per_mode": blocks * per_block}


def replay_ratio(engine: Engine, req: InferenceRequest, replays: int) -> dict[str, Any]:
    from verifier.replay import Replayer, ReplaySettings

    s = engine.settings
    replayer = Replayer(ReplaySettings(model_dir=engine.model_dir, device=s.device, dtype=s.dtype,
                                       threads=s.threads, controls=s.controls),
                        engine_factory=lambda _settings: engine)
    d = req.decode
    request = {"input": req.input, "template": req.template,
               "decode": {"max_new_tokens": d.max_new_tokens, "temperature": d.temperature,
                          "top_k": d.top_k, "top_p": d.top_p, "seed": d.seed,
                          "stop": list(d.stop), "eos": d.eos}}
    gen_s, rep_s, forced_s = 0.0, 0.0, 0.0
    verdicts: set[str] = set()
    forced_verdicts: set[str] = set()
    for _ in range(replays):
        t = time.perf_counter()
        result = engine.generate(req)
        gen_s += time.perf_counter() - t
        t = time.perf_counter()
        verdicts.add(replayer.replay(request, result.record, method="full").verdict)
        rep_s += time.perf_counter() - t
        t = time.perf_counter()
        forced_verdicts.add(replayer.replay(request, result.record, method="teacher-forced").verdict)
        forced_s += time.perf_counter() - t
    out: dict[str, Any] = {"replays": replays, "verdicts": sorted(verdicts),
                           "generation_seconds": round(gen_s, 3), "replay_seconds": round(rep_s, 3),
                           "replay_over_generation": round(rep_s / gen_s, 3)}
    out["teacher_forced"] = {"verdicts": sorted(forced_verdicts),
                             "forced_over_generation": round(forced_s / gen_s, 3)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--model", default=None, help="model dir or FILE.gguf (default: the default model)")
    ap.add_argument("--out", default=".", help="folder for gpu.json")
    ap.add_argument("--max-new-tokens", type=int, default=32)
    for name in FULL:
        ap.add_argument(f"--{name.replace('_', '-')}", type=int, default=None)
    args = ap.parse_args(argv)
    sizes = dict(DRY if args.device == "cpu" else FULL)
    for name in sizes:
        if getattr(args, name) is not None:
            sizes[name] = getattr(args, name)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    model_dir = Path(args.model) if args.model else gguf_model.default_model_path()
    log(f"gpu benchmark: device {args.device}, {args.dtype}, model {model_dir}, sizes {sizes}")

    def settings(controls: bool) -> EngineSettings:
        return EngineSettings(model_dir=model_dir, device=args.device, dtype=args.dtype,
                              controls=controls)

    t = time.perf_counter()
    on = Engine(settings(True), progress=lambda m: log(f"  [model] {m}"))
    load_s = time.perf_counter() - t
    n = args.max_new_tokens
    greedy = chat_request(on, PROMPT, DecodePolicy(max_new_tokens=n))
    sampled = chat_request(on, PROMPT, DecodePolicy(max_new_tokens=n, seed=1234, **SAMPLED))
    for _ in range(2):  # warm-up (kernels, caches), not counted
        on.generate(greedy)
    env = on.environment_fields()
    fig: dict[str, Any] = {
        "command": "benchmarks/gpu.sh " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": args.device, "dtype": args.dtype, "sizes": sizes, "max_new_tokens": n,
        "model": {"id": on.model_id, "digest": on.model_digest}, "load_seconds": round(load_s, 1),
        "record_gpu_fields": {k: env.get(k) for k in ("gpu", "toolkit", "cpu", "framework",
                                                      "determinism", "threads", "dtype")},
        "python": platform.python_version(),
    }
    log(f"record GPU fields: {json.dumps(fig['record_gpu_fields']['gpu'])} "
        f"toolkit {json.dumps(fig['record_gpu_fields']['toolkit'])}")

    log("1. determinism")
    fig["greedy"] = unique(on, greedy, sizes["runs"], "greedy")
    fig["sampled"] = unique(on, sampled, sizes["sampled_runs"], "sampled")
    others = {on.generate(chat_request(on, PROMPT, DecodePolicy(max_new_tokens=n, seed=s, **SAMPLED)))
              .output_hash for s in range(10)}
    fig["sampled"]["negative_control_other_seeds_unique"] = len(others)
    log(f"  greedy {fig['greedy']['unique_outputs']} unique / {sizes['runs']}; sampled "
        f"{fig['sampled']['unique_outputs']} unique / {sizes['sampled_runs']}; 10 other seeds: "
        f"{len(others)} unique")

    log("2. concurrency")
    reqs = [chat_request(on, f"{PROMPT} (request {i})", DecodePolicy(max_new_tokens=n, seed=i, **SAMPLED))
            for i in range(sizes["concurrency"])]
    fig["concurrency"] = concurrency(on, reqs)
    log(f"  {json.dumps(fig['concurrency'])}")

    log("3. controls on/off")
    off = Engine(settings(False))
    fig["controls"] = controls_overhead(on, off, greedy, sizes["blocks"])
    log(f"  {json.dumps(fig['controls'])}")

    log("4-5. replay / generation")
    fig["replay"] = replay_ratio(on, greedy, sizes["replays"])
    log(f"  {json.dumps(fig['replay'])}")

    fig["wall_seconds"] = round(time.perf_counter() - started, 1)
    ok = (fig["greedy"]["unique_outputs"] == 1 and fig["sampled"]["unique_outputs"] == 1
          and len(others) > 1 and fig["concurrency"]["identical_to_lone"] == sizes["concurrency"]
          and fig["replay"]["verdicts"] == ["match"])
    fig["ok"] = ok
    (out_dir / "gpu.json").write_text(json.dumps(fig, indent=2) + "\n", encoding="utf-8")
    log(f"{'OK' if ok else 'FAILED'} in {fig['wall_seconds']} s; figures in {out_dir / 'gpu.json'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
