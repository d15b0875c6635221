#!/usr/bin/env python3
"""Replays per second on the Celery replay fleet: 1 worker and 2 workers, alternated in one run.

    python benchmarks/replay_workers.py [--jobs 40] [--tokens 32] [--method full] [--rounds 2]

It starts a redis-server on a free loopback port, one `bytereplay serve verifier` front end
with `replay_backend: "celery"` and `bytereplay worker` processes (`--concurrency 1` each)
on the fixture model, all with one temporary home. Each phase submits `--jobs` async
verifications (`?async=true&replay_method=...`, Evidence built and nonces fetched before
the clock starts) and times the batch until the last result is done; every verdict must
be `match` (exit 1 otherwise). Phases alternate, `--rounds` times: 1 worker; a second
worker joins (started afresh, its model load outside the clock); it leaves (SIGTERM).
Each 2-worker phase is set against the mean of the 1-worker phases on either side of it
(the baseline measured in the same stretch of the run); the median of those ratios is
the figure, and their spread shows how much the machine drifted.

On a machine with fewer free cores than workers, the ratio is bounded by the cores: the
front end, Redis and this client share them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fuzz"))
sys.path.insert(0, str(REPO))

import kit  # noqa: E402

from bytereplay.encoding import b64url_decode  # noqa: E402
from bytereplay.home import Home  # noqa: E402

MODEL = REPO / "fixtures" / "model"


def start_worker(home: Path, config: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bytereplay.cli", "worker", "--home", str(home), "--config",
             str(config), "--concurrency", "1"], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "BYTEREPLAY_MODEL": str(MODEL)})


def wait_workers(url: str, count: int, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while len(httpx.get(f"{url}/v1/info", timeout=10).json()["replay"]["workers"]) != count:
        if time.monotonic() > deadline:
            raise SystemExit(f"{count} worker(s) not advertised within {timeout:g} s")
        time.sleep(0.2)


def phase(client: httpx.Client, factory: Any, jobs: int, decode: dict[str, Any],
          method: str) -> float:
    """Replays per second for one batch of `jobs`."""
    bodies = []
    for _ in range(jobs):
        nonce = client.post("/v1/challenge").json()["nonce"]
        ev = factory.make(b64url_decode(nonce), decode=decode)
        bodies.append(ev if isinstance(ev, bytes) else ev.encode())
    start = time.perf_counter()
    ids = []
    for body in bodies:
        resp = client.post(f"/v1/verify?async=true&replay_method={method}", content=body,
                           headers={"content-type": "application/eat+jwt"})
        if resp.status_code != 202:
            raise SystemExit(f"verify answered {resp.status_code}: {resp.text}")
        ids.append(resp.json()["id"])
    # Jobs finish in about the order sent: wait on the oldest pending one, so the client's
    # polling costs the shared cores little.
    for rid in ids:
        while (resp := client.get(f"/v1/results/{rid}")).status_code != 200:
            time.sleep(0.02)
        verdict = resp.json()["replay"]["verdict"]
        if verdict != "match":
            raise SystemExit(f"result {rid}: verdict {verdict}, not match")
    return jobs / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=40, help="verifications per phase (40)")
    ap.add_argument("--tokens", type=int, default=32, help="new tokens per run (32)")
    ap.add_argument("--method", default="full", help="replay method per request (full)")
    ap.add_argument("--rounds", type=int, default=2, help="2-worker phases (2)")
    args = ap.parse_args(argv)

    os.environ.setdefault("BYTEREPLAY_MODEL", str(MODEL))
    from attester.engine import Engine, EngineSettings
    from attester.testing import DECODE, EvidenceFactory
    from bytereplay.keys import load_or_create_key

    decode = {**DECODE, "max_new_tokens": args.tokens, "eos": False}
    with tempfile.TemporaryDirectory(prefix="bytereplay-fleet-bench-") as tmp_text:
        tmp = Path(tmp_text)
        home = Home.resolve(tmp / "home")
        factory = EvidenceFactory(home, Engine(EngineSettings(model_dir=MODEL)))
        load_or_create_key(home.verifier_key)
        with kit.redis_server(tmp / "redis") as redis_url:
            config = tmp / "fleet.json"
            config.write_text(json.dumps({"verifier": {
                "store": "redis", "redis_url": redis_url, "replay_backend": "celery",
                "model_dir": str(MODEL), "replay_heartbeat_s": 1, "replay_queue": 256}}))
            front = kit.Server("verifier", home.root, config=config, log=tmp / "front.log")
            workers = [start_worker(home.root, config, tmp / "worker0.log")]
            try:
                front.wait(timeout=300)
                wait_workers(front.url, 1)
                figures: list[tuple[int, float]] = []
                with httpx.Client(base_url=front.url, timeout=60) as client:
                    phase(client, factory, 4, decode, args.method)  # warm up
                    figures.append((1, phase(client, factory, args.jobs, decode, args.method)))
                    for r in range(args.rounds):
                        second = start_worker(home.root, config, tmp / f"worker{r + 1}.log")
                        workers.append(second)
                        wait_workers(front.url, 2)
                        phase(client, factory, 4, decode, args.method)
                        figures.append((2, phase(client, factory, args.jobs, decode,
                                                 args.method)))
                        second.terminate()
                        second.wait(timeout=60)
                        wait_workers(front.url, 1, timeout=30)
                        figures.append((1, phase(client, factory, args.jobs, decode,
                                                 args.method)))
            finally:
                for w in workers:
                    if w.poll() is None:
                        w.terminate()
                        w.wait(timeout=60)
                front.stop()
    ratios = [figures[i][1] / ((figures[i - 1][1] + figures[i + 1][1]) / 2)
              for i in range(1, len(figures) - 1) if figures[i][0] == 2]
    ones = [r for n, r in figures if n == 1]
    twos = [r for n, r in figures if n == 2]
    print(f"replay fleet: {args.jobs} jobs per phase, {args.tokens} tokens, method {args.method}, "
          f"fixture model, each worker --concurrency 1")
    for n, rate in figures:
        print(f"  {n} worker(s): {rate:7.2f} replays/s")
    print(f"  1 worker: median {statistics.median(ones):.2f} replays/s "
          f"({min(ones):.2f}..{max(ones):.2f}); 2 workers: median "
          f"{statistics.median(twos):.2f} ({min(twos):.2f}..{max(twos):.2f})")
    print(f"  2 workers / 1 worker (each against the 1-worker phases beside it): median "
          f"{statistics.median(ratios):.2f} ({', '.join(f'{x:.2f}' for x in ratios)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
