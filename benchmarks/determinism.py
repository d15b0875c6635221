#!/usr/bin/env python3
"""Determinism benchmark: N runs of one request -> number of unique outputs (must be 1),
and tokens/second with the determinism controls on vs torch defaults, on the same
model, measured alternately (interleaved blocks) in one process.

    python benchmarks/determinism.py                      # 10,000 runs, fixture model, CPU
    python benchmarks/determinism.py --runs 500 --device cuda --model DIR
    python benchmarks/determinism.py --same-threads       # defaults at the same thread count

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

from attester import controls  # noqa: E402
from attester.engine import Engine, EngineSettings, InferenceRequest  # noqa: E402
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
    ap.add_argument("--model", default=None, help="model directory (default: fixture)")
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

    model_dir = Path(args.model) if args.model else None
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
    if args.json:
        Path(args.json).write_text(json.dumps(fig, indent=2) + "\n", encoding="utf-8")
    return 0 if fig["unique_outputs_controls_on"] == 1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
