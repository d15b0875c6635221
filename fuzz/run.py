#!/usr/bin/env python3
"""Run every atheris fuzz target (fuzz/fuzz_*.py) for a time budget and report.

    python fuzz/run.py --seconds 30                 # every target, 30 s each
    python fuzz/run.py --seconds 5 --targets jwt ear
    python fuzz/run.py --list

Per target it prints inputs tried, executions/s, corpus size and distinct crashes. A crash
is any exception other than a BytereplayError (or a broken property the target asserts),
an input that runs longer than --input-timeout, or one that exhausts memory. Crashes
are kept going past (collect mode) and written once each to OUT/<target>/crashes/ with a
traceback; reproduce one with `python fuzz/fuzz_<target>.py OUT/<target>/crashes/X.input`.
The corpus grows in OUT/<target>/corpus/ and is reused by the next run; the crashes
folder is emptied at the start of each run.
Exit status: 0 with no crash, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def targets() -> list[str]:
    return sorted(p.stem.removeprefix("fuzz_") for p in HERE.glob("fuzz_*.py"))


def run_target(name: str, seconds: float, out: Path, max_len: int, input_timeout: int,
               verbose: bool) -> dict[str, object]:
    script = HERE / f"fuzz_{name}.py"
    corpus, crashes, artifacts = out / name / "corpus", out / name / "crashes", out / name
    corpus.mkdir(parents=True, exist_ok=True)
    if crashes.exists():  # crashes are per run; the corpus carries over
        shutil.rmtree(crashes)
    crashes.mkdir(parents=True)
    subprocess.run([sys.executable, str(script), "--write-seeds", str(corpus)], check=True,
                   cwd=REPO, capture_output=True)
    env = {**os.environ, "BYTEREPLAY_FUZZ_COLLECT": str(crashes), "PYTHONHASHSEED": "0"}
    before = {p.name for p in artifacts.glob("*-*") if p.is_file()}
    runs, restarts, start, rc = 0, 0, time.monotonic(), 0
    log_tail = ""
    while True:
        left = seconds - (time.monotonic() - start)
        if left < 1 or restarts > 5:
            break
        cmd = [sys.executable, str(script), str(corpus), f"-max_total_time={int(left)}",
               f"-max_len={max_len}", f"-timeout={input_timeout}", "-rss_limit_mb=2048",
               f"-artifact_prefix={artifacts}/", "-print_final_stats=1", "-print_pcs=0"]
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True,
                              errors="replace", timeout=left + 120)
        log = proc.stdout + proc.stderr
        log_tail = log[-4000:]
        if verbose:
            sys.stderr.write(log)
        m = re.search(r"stat::number_of_executed_units:\s*(\d+)", log) or re.search(
            r"Done (\d+) runs", log)
        runs += int(m.group(1)) if m else 0
        rc = proc.returncode
        if rc == 0:
            break
        restarts += 1  # a libFuzzer-level crash (timeout, OOM, uncaught): go on after it
    elapsed = time.monotonic() - start
    crash_files = sorted(p.stem for p in crashes.glob("*.input"))
    new_artifacts = sorted({p.name for p in artifacts.glob("*-*") if p.is_file()} - before)
    fatal = [a for a in new_artifacts if a.startswith(("crash-", "timeout-", "oom-", "leak-"))]
    return {
        "target": name, "inputs": runs, "seconds": round(elapsed, 1),
        "exec_per_s": int(runs / elapsed) if elapsed else 0,
        "corpus": len(list(corpus.iterdir())), "crashes": crash_files + fatal,
        "restarts": restarts, "last_rc": rc,
        "log_tail": log_tail if (fatal or (rc and not crash_files)) else "",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0, help="budget per target")
    ap.add_argument("--targets", nargs="*", default=None, help="target names (default: all)")
    ap.add_argument("--out", type=Path,
                    default=Path(tempfile.gettempdir()) / "bytereplay-fuzz",
                    help="corpus and crash folder (default: %(default)s)")
    ap.add_argument("--max-len", type=int, default=8192)
    ap.add_argument("--input-timeout", type=int, default=10, help="seconds per input")
    ap.add_argument("--json", type=Path, default=None, help="also write results as JSON")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true", help="show libFuzzer output")
    args = ap.parse_args(argv)
    names = targets()
    if args.list:
        print("\n".join(names))
        return 0
    chosen = args.targets or names
    unknown = set(chosen) - set(names)
    if unknown:
        ap.error(f"unknown targets {sorted(unknown)}; known: {names}")
    results = []
    print(f"{'target':<12} {'inputs':>10} {'exec/s':>8} {'corpus':>7} {'crashes':>8}  seconds")
    for name in chosen:
        r = run_target(name, args.seconds, args.out, args.max_len, args.input_timeout,
                       args.verbose)
        results.append(r)
        crashes = r["crashes"]
        assert isinstance(crashes, list)
        print(f"{name:<12} {r['inputs']:>10} {r['exec_per_s']:>8} {r['corpus']:>7} "
              f"{len(crashes):>8}  {r['seconds']}", flush=True)
        for c in crashes:
            print(f"    crash: {c}  ({args.out / name / 'crashes'})")
        if r["log_tail"]:
            print("    libFuzzer log tail:\n" + str(r["log_tail"])[-1500:])
    total_inputs = sum(int(str(r["inputs"])) for r in results)
    total_crashes = sum(len(r["crashes"]) for r in results)  # type: ignore[arg-type]
    print(f"{'total':<12} {total_inputs:>10} {'':>8} {'':>7} {total_crashes:>8}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if total_crashes else 0


if __name__ == "__main__":
    sys.exit(main())
