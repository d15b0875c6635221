#!/usr/bin/env python3
"""Load test of the verifier sidecar: a fixed concurrency for a fixed time, then figures.

    python benchmarks/load.py                          # start a verifier, 20 s at 16
    python benchmarks/load.py --seconds 60 --concurrency 32 --store redis
    python benchmarks/load.py --url http://127.0.0.1:8702 --home ~/.bytereplay

Without `--url` it starts `bytereplay serve verifier` (uvicorn) on a free loopback port
with a temporary home (or `--home`) and stops it afterwards. With `--url` it drives that
server; pass the server's `--home` so the pre-built Evidence is signed by a simulated TEE
the server trusts (otherwise it is appraised, correctly, as untrusted).

The mix (weights with --mix challenge,verify,malformed; default 30,50,20):
- challenge:  POST /v1/challenge;
- verify:     POST /v1/verify?replay=false with pre-built valid Evidence (JWT or CWT, each
              on a fresh nonce fetched before the clock starts); when the pool runs out,
              already-used Evidence is sent again (a replay, refused in a 200 EAR);
- malformed:  junk bodies, bad JSON, wrong content types, oversized bodies, tampered
              Evidence, bad challenge sizes, unknown result ids.
It prints requests/s, p50/p90/p99 latency (overall and per kind), status counts by
class, the EAR statuses of the verify answers, and exits 1 on any 5xx or transport
error (or when the server died).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "fuzz"))
sys.path.insert(0, str(REPO))

import kit  # noqa: E402

from bytereplay.encoding import b64url_encode  # noqa: E402
from bytereplay.home import Home  # noqa: E402

MAX_CONCURRENCY = 256


@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    status: Counter[str] = field(default_factory=Counter)
    by_kind: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    ear_status: Counter[str] = field(default_factory=Counter)
    transport: Counter[str] = field(default_factory=Counter)
    bad_problem: int = 0  # 4xx answers that are not problem+json

    def record(self, kind: str, seconds: float, resp: httpx.Response | None,
               error: str | None = None) -> None:
        self.latencies[kind].append(seconds)
        if resp is None:
            self.transport[error or "error"] += 1
            self.status["transport-error"] += 1
            self.by_kind[kind]["transport-error"] += 1
            return
        code = resp.status_code
        cls = f"{code // 100}xx"
        self.status[cls] += 1
        self.by_kind[kind][str(code)] += 1
        if 400 <= code < 500 and not resp.headers.get("content-type", "").startswith(
                "application/problem+json"):
            self.bad_problem += 1
        if kind.startswith("verify") and code == 200:
            self.ear_status[f"{kind}:{resp.json().get('status')}"] += 1


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class Workload:
    """Pre-built requests; `next(kind)` hands out one request of that kind."""

    def __init__(self, base: str, home: Home, pool: int, max_body: int) -> None:
        self.base = base
        self.kit = kit.EvidenceKit(home)
        self.fresh: list[tuple[bytes, str]] = []
        self.used: list[tuple[bytes, str]] = []
        self.max_body = max_body
        self._build(pool)
        self._rnd = random.Random(7)
        sample = self.fresh[0][0] if self.fresh else b""
        self.tampered = sample[:-6] + (b"AAAAAA" if not sample.endswith(b"AAAAAA") else b"BBBBBB")

    def _build(self, pool: int) -> None:
        with httpx.Client(timeout=30.0) as client:
            for i in range(pool):
                challenge = client.post(f"{self.base}/v1/challenge").json()
                fmt = "cwt" if i % 4 == 3 else "jwt"
                ev = self.kit.make_for(challenge, fmt=fmt)
                body = ev if isinstance(ev, bytes) else ev.encode()
                self.fresh.append((body, f"application/eat+{fmt}"))

    def request(self, kind: str) -> tuple[str, str, str, bytes, dict[str, str]]:
        """(label, method, path, body, headers)."""
        if kind == "challenge":
            return "challenge", "POST", "/v1/challenge", b"", {}
        if kind == "verify":
            if self.fresh:
                body, ctype = self.fresh.pop()
                self.used.append((body, ctype))
                label = "verify"
            else:
                body, ctype = self._rnd.choice(self.used)
                label = "verify-replayed"
            return label, "POST", "/v1/verify?replay=false", body, {"content-type": ctype}
        choice = self._rnd.randrange(9)
        if choice == 0:  # Evidence that cannot be decoded: a negative EAR (200), by design
            return "malformed-evidence", "POST", "/v1/verify", b"not a token", {
                "content-type": "application/eat+jwt"}
        if choice == 1:
            return "malformed", "POST", "/v1/verify", b'{"evidence": 5', {
                "content-type": "application/json"}
        if choice == 2:
            return "malformed", "POST", "/v1/verify", b"<xml/>", {"content-type": "text/xml"}
        if choice == 3:
            return "malformed", "POST", "/v1/verify", b"A" * (self.max_body + 10), {
                "content-type": "application/eat+jwt"}
        if choice == 4:
            return "malformed-evidence", "POST", "/v1/verify?replay=false", self.tampered, {
                "content-type": "application/eat+jwt"}
        if choice == 5:
            return "malformed", "POST", "/v1/challenge", b'{"size": 4}', {
                "content-type": "application/json"}
        if choice == 6:
            return "malformed", "GET", f"/v1/results/{b64url_encode(self._rnd.randbytes(16))}", \
                b"", {}
        if choice == 7:
            return "malformed", "POST", "/v1/verify", json.dumps(
                {"evidence": "x", "format": "xml"}).encode(), {"content-type": "application/json"}
        return "malformed-evidence", "POST", "/v1/verify", b"\xd2\x84\x40\xa0\x40\x40", {
            "content-type": "application/eat+cwt"}


async def drive(base: str, work: Workload, seconds: float, concurrency: int,
                weights: tuple[int, int, int], stats: Stats) -> float:
    kinds = ["challenge", "verify", "malformed"]
    rnd = random.Random(11)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=30.0, limits=limits) as client:
        start = time.perf_counter()
        deadline = start + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                kind = rnd.choices(kinds, weights=weights)[0]
                label, method, path, body, headers = work.request(kind)
                t0 = time.perf_counter()
                try:
                    resp = await client.request(method, path, content=body or None,
                                                headers=headers)
                except httpx.HTTPError as exc:
                    stats.record(label, time.perf_counter() - t0, None, type(exc).__name__)
                    continue
                stats.record(label, time.perf_counter() - t0, resp)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - start


def report(stats: Stats, elapsed: float, args: argparse.Namespace, server: str) -> dict[str, Any]:
    every = [x for v in stats.latencies.values() for x in v]
    total = len(every)
    out: dict[str, Any] = {
        "server": server, "seconds": round(elapsed, 2), "concurrency": args.concurrency,
        "requests": total, "requests_per_s": round(total / elapsed, 1) if elapsed else 0,
        "latency_ms": {"p50": round(percentile(every, 50) * 1000, 2),
                       "p90": round(percentile(every, 90) * 1000, 2),
                       "p99": round(percentile(every, 99) * 1000, 2),
                       "max": round(max(every, default=0) * 1000, 2),
                       "mean": round(statistics.fmean(every) * 1000, 2) if every else None},
        "by_kind": {k: {"count": len(v), "p50_ms": round(percentile(v, 50) * 1000, 2),
                        "p99_ms": round(percentile(v, 99) * 1000, 2),
                        "status": dict(stats.by_kind[k])}
                    for k, v in sorted(stats.latencies.items())},
        "status_classes": dict(stats.status),
        "ear_status": dict(stats.ear_status),
        "transport_errors": dict(stats.transport),
        "non_problem_4xx": stats.bad_problem,
    }
    lat = out["latency_ms"]
    print(f"verifier load: {server}, {args.concurrency} concurrent for {elapsed:.1f} s")
    print(f"  {total} requests, {out['requests_per_s']} requests/s, latency p50 {lat['p50']} ms, "
          f"p90 {lat['p90']} ms, p99 {lat['p99']} ms, max {lat['max']} ms")
    for k, v in out["by_kind"].items():
        print(f"  {k:<20} {v['count']:>7}  p50 {v['p50_ms']:>8} ms  p99 {v['p99_ms']:>8} ms  "
              f"{v['status']}")
    print(f"  status classes: {out['status_classes']}")
    print(f"  EAR status of verify answers: {out['ear_status']}")
    if stats.transport:
        print(f"  transport errors: {out['transport_errors']}")
    if stats.bad_problem:
        print(f"  4xx answers that were not problem+json: {stats.bad_problem}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="drive this verifier instead of starting one")
    ap.add_argument("--home", default=None, help="state directory (the server's, with --url)")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=16, help=f"1..{MAX_CONCURRENCY}")
    ap.add_argument("--mix", default="30,50,20", help="challenge,verify,malformed weights")
    ap.add_argument("--pool", type=int, default=None,
                    help="valid Evidence built before the clock starts (default: 150 per second)")
    ap.add_argument("--store", choices=("sqlite", "redis"), default="sqlite",
                    help="store of the started verifier (redis: a redis-server is started)")
    ap.add_argument("--max-body", type=int, default=64 * 1024,
                    help="the started verifier's max_evidence_bytes (oversized requests use it)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    if not 1 <= args.concurrency <= MAX_CONCURRENCY:
        ap.error(f"--concurrency must be 1..{MAX_CONCURRENCY}")
    if not 0 < args.seconds <= 3600:
        ap.error("--seconds must be in (0, 3600]")
    weights = tuple(int(x) for x in args.mix.split(","))
    if len(weights) != 3 or min(weights) < 0 or not sum(weights):
        ap.error("--mix is three non-negative weights: challenge,verify,malformed")
    pool = args.pool if args.pool is not None else int(150 * args.seconds)

    tmp = Path(tempfile.mkdtemp(prefix="br-load-"))
    home = Home.resolve(args.home or tmp / "home")
    server: kit.Server | None = None
    redis_cm = None
    max_body = args.max_body * 4 // 3 + 4096
    try:
        if args.url:
            base = args.url.rstrip("/")
            kit.wait_http(base + "/healthz", timeout=30)
        else:
            kit.EvidenceKit(home)  # the simulated CA, before the server starts
            cfg: dict[str, Any] = {"max_evidence_bytes": args.max_body}
            if args.store == "redis":
                redis_cm = kit.redis_server(tmp / "redis")
                cfg.update(store="redis", redis_url=redis_cm.__enter__())
            (tmp / "verifier.json").write_text(json.dumps({"verifier": cfg}))
            server = kit.Server("verifier", home.root, config=tmp / "verifier.json",
                                log=tmp / "verifier.log").wait()
            base = server.url
        t0 = time.perf_counter()
        work = Workload(base, home, pool, max_body)
        print(f"built {pool} valid Evidence in {time.perf_counter() - t0:.1f} s", flush=True)
        stats = Stats()
        elapsed = asyncio.run(drive(base, work, args.seconds, args.concurrency,
                                    (weights[0], weights[1], weights[2]), stats))
        figures = report(stats, elapsed, args, base)
        alive = server is None or server.proc.poll() is None
        figures["server_alive"] = alive
        figures["fresh_evidence_left"] = len(work.fresh)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=2))
        # Valid Evidence, used once, is warning (the simulated TEE), never anything else.
        wrong = {k: n for k, n in stats.ear_status.items()
                 if k.startswith("verify:") and k != "verify:warning"}
        failed = stats.status.get("5xx", 0) or stats.transport or not alive or \
            stats.bad_problem or wrong
        if failed:
            print("FAIL: 5xx answers, transport errors, non-problem 4xx, a dead server, or valid "
                  f"Evidence not rated warning ({wrong})")
            if server is not None:
                print(server.log_text()[-3000:])
            return 1
        print("OK: no 5xx")
        return 0
    finally:
        if server is not None:
            server.stop()
        if redis_cm is not None:
            redis_cm.__exit__(None, None, None)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
