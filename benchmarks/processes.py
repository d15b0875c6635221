"""The verifier over HTTP with 1 and 2 processes (`serve verifier --workers N`), in one run.

    python benchmarks/processes.py [--n 6000] [--concurrency 16] [--rounds 2] [--workers 1,2]
                                   [--no-rotation] [--json]

Each configuration is a fresh `bytereplay serve verifier --workers N` on a loopback port
(SQLite store in one home, `?replay=false`), driven with `--concurrency` keep-alive
connections. The configurations take turns, `--rounds` times, so that both meet the same
load from whatever else runs on the machine; the median round is reported.

The load generator shares the machine. It is kept lean so that the server's cost is
what is measured: plain HTTP/1.1 over asyncio streams, requests built ahead of the
clock, each answer read by its Content-Length and its JSON `status` member checked. The
nonces (`POST /v1/challenge`) and the Evidence are made before the clock starts.

Reported per configuration: appraisals/s, p50 and p99 latency (ms), errors (transport
errors, non-200 answers, and any status other than the Evidence's expected one), the
server's CPU ms per appraisal (all its processes), and the ratio to 1 process.

Key rotation: unless `--no-rotation`, the last configuration is run once more with a
key rotation on the home half-way through the load (`bytereplay.keyring.rotate`, what
`bytereplay keys rotate` does, here in-process so that no interpreter start-up is
counted). Reported: its rate as a ratio of the same configuration without the
rotation, and how many EARs carried the old and the new `kid` (every process must
switch to the new key).

`--http-stacks`: instead, one process each of uvicorn on asyncio + h11 and on uvloop +
httptools (the verifier extra installs the latter, and uvicorn picks them), the same app,
side by side; batches of `--batch` appraisals take turns between them, `--rounds` times,
and each server's CPU per appraisal is summed: the ratio is the C loop's and parser's
saving, measured under the same load.

Goal on a 2-core machine, the load generator included: >= 900 appraisals/s with 2
processes, p99 <= 50 ms, 0 errors.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import orjson  # noqa: E402

from attester.engine import Engine, EngineSettings  # noqa: E402
from attester.testing import EvidenceFactory  # noqa: E402
from bytereplay import keyring  # noqa: E402
from bytereplay.encoding import b64url_decode  # noqa: E402
from bytereplay.home import Home  # noqa: E402
from bytereplay.jose import parse_unverified  # noqa: E402
from verifier.config import DEFAULT_MODEL_DIR as FIXTURE  # noqa: E402

GOAL_RATE, GOAL_P99_MS = 900.0, 50.0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and its live descendants (Linux /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[int(entry.name)] = int(fields[1])
            times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    family, frontier = {root}, [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        family.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in family)


def _request(path: str, body: bytes, media: str) -> bytes:
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {media}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    request: bytes) -> tuple[int, bytes]:
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def drive(port: int, requests: list[bytes], concurrency: int, *,
                midway: Any = None) -> dict[str, Any]:
    """Send `requests` over `concurrency` keep-alive connections; latencies and answers."""
    latencies: list[float] = []
    answers: list[tuple[int, bytes]] = []
    errors: dict[str, int] = {}
    queue = iter(range(len(requests)))
    half = len(requests) // 2
    fired = asyncio.Event()

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in queue:
                if midway is not None and i == half and not fired.is_set():
                    fired.set()
                    await asyncio.get_running_loop().run_in_executor(None, midway)
                t0 = time.perf_counter()
                try:
                    answer = await _exchange(reader, writer, requests[i])
                except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    writer.close()
                    reader, writer = await asyncio.open_connection("127.0.0.1", port)
                    continue
                latencies.append(time.perf_counter() - t0)
                answers.append(answer)
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "latencies": latencies, "answers": answers, "errors": errors}


async def _challenges(port: int, n: int) -> list[bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = _request("/v1/challenge", b"", "application/json")
    out = []
    try:
        for _ in range(n):
            status, body = await _exchange(reader, writer, request)
            if status != 200:
                raise SystemExit(f"/v1/challenge answered {status}")
            out.append(b64url_decode(orjson.loads(body)["nonce"]))
    finally:
        writer.close()
    return out


def start(home: Home, config: Path, workers: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytereplay.cli", "serve", "verifier", "--host", "127.0.0.1",
         "--port", str(port), "--home", str(home.root), "--config", str(config),
         "--workers", str(workers)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    import httpx

    deadline = time.monotonic() + 120
    pids: set[int] = set()
    while len(pids) < workers:  # every process answers before the clock starts
        # A new connection each time: the kernel hands it to one of the processes.
        with contextlib.suppress(httpx.TransportError), \
                httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as fresh:
            r = fresh.get("/v1/info")
            if r.status_code == 200:
                pids.add(int(r.json()["process"]["pid"]))
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise SystemExit(f"the verifier with {workers} processes did not start")
        time.sleep(0.05)
    return proc, port


def measure(home: Home, factory: EvidenceFactory, config: Path, workers: int, n: int,
            concurrency: int, *, rotate: bool = False) -> dict[str, Any]:
    proc, port = start(home, config, workers)
    try:
        nonces = asyncio.run(_challenges(port, n + concurrency))
        tokens = [str(factory.make(nonce)).encode("ascii") for nonce in nonces]
        requests = [_request("/v1/verify?replay=false", t, "application/eat+jwt")
                    for t in tokens]
        asyncio.run(drive(port, requests[:concurrency], concurrency))  # warm every connection
        midway = None
        if rotate:
            def midway() -> None:  # what `bytereplay keys rotate --home` does, in-process
                keyring.rotate(home.verifier_key, at=time.time(), retire_after=3600)
        cpu0 = tree_cpu_seconds(proc.pid)
        run = asyncio.run(drive(port, requests[concurrency:], concurrency, midway=midway))
        cpu = tree_cpu_seconds(proc.pid) - cpu0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    errors = dict(run["errors"])
    kids: dict[str, int] = {}
    for status, body in run["answers"]:
        if status != 200:
            errors[f"http {status}"] = errors.get(f"http {status}", 0) + 1
            continue
        doc = orjson.loads(body)
        if doc.get("status") != "warning":  # simulated TEE, valid Evidence: warning
            errors[f"status {doc.get('status')}"] = errors.get(f"status {doc.get('status')}", 0) + 1
        kid = str(parse_unverified(doc["result"])[0].get("kid"))
        kids[kid] = kids.get(kid, 0) + 1
    lat = sorted(run["latencies"])
    return {
        "workers": workers, "n": n, "concurrency": concurrency,
        "appraisals_per_s": round(len(lat) / run["seconds"], 1),
        "p50_ms": round(1e3 * lat[len(lat) // 2], 2),
        "p99_ms": round(1e3 * lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
        "errors": sum(errors.values()), "error_kinds": errors,
        "server_cpu_ms_per_appraisal": round(1e3 * cpu / n, 3),
        "kids": kids,
    }


_STACK_SERVER = """
import sys, uvicorn
from bytereplay.home import Home
from verifier import config
from verifier.service import create_app
app = create_app(config.load(Home.resolve(sys.argv[1]), sys.argv[5]))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), http=sys.argv[3], loop=sys.argv[4],
            log_config=None, log_level="warning", access_log=False)
"""
STACKS = {"asyncio+h11": ("h11", "asyncio"), "uvloop+httptools": ("httptools", "uvloop")}


def http_stacks(home: Home, factory: EvidenceFactory, config: Path, batch: int, rounds: int,
                concurrency: int) -> dict[str, Any]:
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    import httpx

    try:
        for name, (http, loop) in STACKS.items():
            port = free_port()
            servers[name] = (subprocess.Popen(
                [sys.executable, "-c", _STACK_SERVER, str(home.root), str(port), http, loop,
                 str(config)], env={**os.environ, "PYTHONPATH": str(REPO)},
                stderr=subprocess.DEVNULL), port)
        for proc, port in servers.values():
            deadline = time.monotonic() + 120
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("a stack server did not start")
                time.sleep(0.1)
        cpu = dict.fromkeys(servers, 0.0)
        for i in range(rounds):
            for name in (list(servers) if i % 2 == 0 else list(reversed(servers))):
                proc, port = servers[name]
                tokens = [str(factory.make(n)).encode("ascii")
                          for n in asyncio.run(_challenges(port, batch))]
                requests = [_request("/v1/verify?replay=false", t, "application/eat+jwt")
                            for t in tokens]
                before = tree_cpu_seconds(proc.pid)
                asyncio.run(drive(port, requests, concurrency))
                cpu[name] += tree_cpu_seconds(proc.pid) - before
    finally:
        for proc, _port in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    out: dict[str, Any] = {name: {"server_cpu_ms_per_appraisal": round(1e3 * c / (batch * rounds), 3)}
                           for name, c in cpu.items()}
    out["ratio"] = round(cpu["uvloop+httptools"] / cpu["asyncio+h11"], 3)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=6000, help="appraisals per configuration")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2", help="process counts, comma-separated")
    parser.add_argument("--no-rotation", action="store_true",
                        help="skip the run with a key rotation during the load")
    parser.add_argument("--http-stacks", action="store_true",
                        help="compare asyncio+h11 with uvloop+httptools instead (see above)")
    parser.add_argument("--batch", type=int, default=300, help="--http-stacks batch size")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    counts = [int(w) for w in args.workers.split(",")]

    with tempfile.TemporaryDirectory(prefix="bytereplay-bench-") as tmp:
        home = Home.resolve(Path(tmp) / "home")
        config = home.root / "bench-verifier.json"
        config.write_text(json.dumps({"verifier": {"replay": False}}))
        factory = EvidenceFactory(home, Engine(EngineSettings(model_dir=FIXTURE)))
        if args.http_stacks:
            stacks = http_stacks(home, factory, config, args.batch, max(args.rounds, 2),
                                 args.concurrency)
            if args.json:
                print(json.dumps(stacks, indent=2))
            else:
                for name in STACKS:
                    print(f"{name}: {stacks[name]['server_cpu_ms_per_appraisal']} ms server CPU "
                          "per appraisal")
                print(f"ratio uvloop+httptools / asyncio+h11: {stacks['ratio']:.3f}")
            return 0
        rounds: dict[int, list[dict[str, Any]]] = {w: [] for w in counts}
        rotations: list[dict[str, Any]] = []
        for _ in range(args.rounds):
            for w in counts:
                rounds[w].append(measure(home, factory, config, w, args.n, args.concurrency))
            if not args.no_rotation:
                rotations.append(measure(home, factory, config, counts[-1], args.n,
                                         args.concurrency, rotate=True))

    def median(runs: list[dict[str, Any]]) -> dict[str, Any]:
        ordered = sorted(runs, key=lambda r: float(r["appraisals_per_s"]))
        return {**ordered[(len(ordered) - 1) // 2], "rounds": [
            {k: r[k] for k in ("appraisals_per_s", "p50_ms", "p99_ms", "errors")} for r in runs]}

    report: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                    "load_average_after": os.getloadavg()},
        "configurations": {str(w): median(rounds[w]) for w in counts}}
    base = report["configurations"][str(counts[0])]["appraisals_per_s"]
    for w in counts:
        c = report["configurations"][str(w)]
        c["ratio_to_first"] = round(c["appraisals_per_s"] / base, 3)
    last = report["configurations"][str(counts[-1])]
    report["goal"] = {"appraisals_per_s": GOAL_RATE, "p99_ms": GOAL_P99_MS,
                      "met": last["appraisals_per_s"] >= GOAL_RATE and
                      last["p99_ms"] <= GOAL_P99_MS and last["errors"] == 0}
    if rotations:
        rot = median(rotations)
        rot["ratio_to_no_rotation"] = round(rot["appraisals_per_s"] / last["appraisals_per_s"], 3)
        report["rotation"] = rot
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"machine: {report['machine']}")
    for w in counts:
        c = report["configurations"][str(w)]
        print(f"{w} process(es): {c['appraisals_per_s']:,.0f} appraisals/s, p50 {c['p50_ms']} ms, "
              f"p99 {c['p99_ms']} ms, errors {c['errors']}, server CPU "
              f"{c['server_cpu_ms_per_appraisal']} ms each, x{c['ratio_to_first']:.3f} of "
              f"{counts[0]}; rounds {[r['appraisals_per_s'] for r in c['rounds']]}")
    g = report["goal"]
    print(f"goal with {counts[-1]} processes: >= {GOAL_RATE:.0f}/s, p99 <= {GOAL_P99_MS:.0f} ms, "
          f"0 errors: {'met' if g['met'] else 'NOT met'}")
    if rotations:
        r = report["rotation"]
        print(f"with a key rotation half-way ({counts[-1]} processes): "
              f"{r['appraisals_per_s']:,.0f}/s (x{r['ratio_to_no_rotation']:.3f} of no rotation), "
              f"p99 {r['p99_ms']} ms, errors {r['errors']}, EARs per kid {r['kids']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
