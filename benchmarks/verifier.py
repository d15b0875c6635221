"""Verifier throughput and replay cost.

    python benchmarks/verifier.py [--n 2000] [--http-n 1000] [--concurrency 16]
                                  [--replays 3] [--json]

Measures, on the fixture model and the simulated TEE:

1. the signature checks alone, per appraisal, as the issue counts them: the EAT signature
   and the quote signature (two ECDSA P-256 verifications) and the EAR signature (one
   ECDSA signing), over the real bytes: the floor any appraisal pays (the simulated CA's
   signature on the attestation key certificate is checked once per certificate and
   remembered, so an appraisal does not pay it);
2. in-process appraisals per second without replay (decode, signature, quote and binding,
   nonce consumed in SQLite, reference values, preflight, policy, EAR signed), on one
   core (the process is pinned to one CPU where the OS allows), with the ratio to (1)
   printed beside it and where the time goes;
3. appraisals per second over HTTP on loopback (`bytereplay serve verifier` in its own
   process, `?replay=false`, `--concurrency` requests in flight);
4. replay: the time of an appraisal with a full replay as a ratio of the original
   generation time (the attester's `Engine.generate` on the same request);
5. teacher-forced against full replay at 16, 64 and 256 new tokens, each as a ratio of
   the generation measured in the same run, with the prefill-against-decode agreement
   (`benchmarks/replay.py`; `--no-teacher-forced` skips it);
6. hardware quotes beside the simulated TEE (`benchmarks/tee.py`; `--no-tee` skips it):
   appraisals with a TDX quote under the test root (with and without the remembered
   platform verdict and the collateral source's recheck interval), and the real TDX
   quote (with and without the remembered verdict) and SEV-SNP report verified alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from attester.engine import Engine, EngineSettings  # noqa: E402
from attester.testing import DECODE, EvidenceFactory, run  # noqa: E402
from bytereplay.encoding import b64url_decode  # noqa: E402
from bytereplay.home import Home  # noqa: E402
from verifier.config import DEFAULT_MODEL_DIR as FIXTURE  # noqa: E402
from verifier.config import VerifierConfig  # noqa: E402
from verifier.pipeline import Verifier  # noqa: E402

# The issue's figures: 2,000 appraisals/s in-process on one core, where the signature
# checks alone allow about 7,000/s.
TARGET, TARGET_SIG_RATE = 2000, 7000


@contextlib.contextmanager
def one_core() -> Iterator[str]:
    """Pin this process to one CPU for the block (Linux); say what was done."""
    if not hasattr(os, "sched_getaffinity"):
        yield "not pinned (no sched_setaffinity here)"
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield f"pinned to CPU {cpu}"
    finally:
        os.sched_setaffinity(0, before)


def rate(fn: Callable[[Any], Any], items: list[Any]) -> float:
    started = time.perf_counter()
    for item in items:
        fn(item)
    return len(items) / (time.perf_counter() - started)


class Clock:
    """Wall and CPU time (this process) spent in `run`, and how many items ran."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.n = 0

    def run(self, fn: Callable[[Any], Any], items: list[Any]) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        for item in items:
            fn(item)
        self.wall += time.perf_counter() - wall
        self.cpu += time.process_time() - cpu
        self.n += len(items)

    def per_s(self) -> float:
        return self.n / self.wall

    def per_cpu_s(self) -> float:
        return self.n / self.cpu


def interleaved(jobs: dict[str, tuple[Callable[[Any], Any], list[Any]]],
                rounds: int) -> dict[str, Clock]:
    """Run each job's items in `rounds` slices, the jobs taking turns, so that all of them
    meet the same load on a shared machine (their ratio is then fair)."""
    clocks = {name: Clock() for name in jobs}
    for r in range(rounds):
        for name, (fn, items) in jobs.items():
            size = -(-len(items) // rounds)
            clocks[name].run(fn, items[r * size:(r + 1) * size])
    return clocks


# -- 1. the signature checks alone -------------------------------------------------------


def signature_work(evidence: list[str], verifier: Verifier,
                   sample_ear: str) -> tuple[Callable[[Any], None], list[Any]]:
    """The signature checks of one appraisal, prepared so the timed part is only them
    (`sample_ear`: an EAR this verifier issued, whose signing input size the EAR
    signature takes)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from bytereplay.evidence import decode_evidence
    from bytereplay.keys import key_from_jwk
    from verifier.tee.simulated import _leaf_from_chain, signed_bytes

    ecdsa = ec.ECDSA(hashes.SHA256())
    items = []
    for token in evidence:
        d = decode_evidence(token)
        head, body, sig = token.split(".")
        raw = b64url_decode(sig)
        der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
        quote_pub = _leaf_from_chain(d.quote)[1].public_key()
        items.append((key_from_jwk(d.jwk), der, f"{head}.{body}".encode(), quote_pub,
                      b64url_decode(d.quote["signature"]), signed_bytes(d.quote)))
    ear_key = verifier.key.private
    assert isinstance(ear_key, ec.EllipticCurvePrivateKey), "the benchmark signs EARs with ES256"
    ear_payload = b"x" * len(sample_ear.rsplit(".", 1)[0])

    def check(item: Any) -> None:
        eat_pub, der, signed, quote_pub, quote_sig, quote_bytes = item
        eat_pub.verify(der, signed, ecdsa)  # the EAT
        quote_pub.verify(quote_sig, quote_bytes, ecdsa)  # the quote
        ear_key.sign(ear_payload, ecdsa)  # the EAR

    return check, items


# -- 2. where the time goes -----------------------------------------------------------------


def breakdown(evidence: list[str], verifier: Verifier) -> dict[str, float]:
    from bytereplay import eat
    from bytereplay.evidence import decode_evidence
    from verifier.tee.base import verify_quote

    trust, at = verifier.trust(), verifier.now()
    decoded = [decode_evidence(t) for t in evidence]
    gc.collect()  # what the list above promoted: not a cost of the timed loops below
    out = {"decode_evidence_us": 1e6 / rate(decode_evidence, evidence)}
    out["verify_quote_us"] = 1e6 / rate(
        lambda d: verify_quote(d.quote, trust, eat.report_data(d.nonce, d.record_digest,
                                                               d.key_thumbprint_bytes), at),
        decoded)
    return {k: round(v, 1) for k, v in out.items()}


# -- 3. over HTTP ----------------------------------------------------------------------------


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of process `pid` (Linux /proc), or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_rate(home: Home, factory: EvidenceFactory, n: int, concurrency: int) -> dict[str, Any]:
    import httpx

    port = free_port()
    config = home.root / "bench-verifier.json"
    config.write_text(json.dumps({"verifier": {"replay": False}}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "bytereplay.cli", "serve", "verifier", "--host", "127.0.0.1",
         "--port", str(port), "--home", str(home.root), "--config", str(config)],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=url, timeout=5) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/healthz").status_code == 200:
                        break
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the verifier did not start")
                time.sleep(0.1)
            nonces = [b64url_decode(client.post("/v1/challenge").json()["nonce"])
                      for _ in range(n)]
        evidence = [factory.make(nonce) for nonce in nonces]

        async def go() -> tuple[float, list[str]]:
            limits = httpx.Limits(max_connections=concurrency)
            async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
                gate = asyncio.Semaphore(concurrency)

                async def one(token: str | bytes) -> str:
                    async with gate:
                        r = await client.post("/v1/verify?replay=false", content=token,
                                              headers={"content-type": "application/eat+jwt"})
                        return str(r.json()["status"])

                await one(factory.make(b64url_decode(
                    (await client.post("/v1/challenge")).json()["nonce"])))  # warm up
                started = time.perf_counter()
                statuses = await asyncio.gather(*(one(t) for t in evidence))
                return time.perf_counter() - started, list(statuses)

        cpu_before = cpu_seconds(proc.pid)
        seconds, statuses = asyncio.run(go())
        cpu_after = cpu_seconds(proc.pid)
        out: dict[str, Any] = {"appraisals_per_s": round(n / seconds, 1), "n": n,
                               "concurrency": concurrency, "statuses": sorted(set(statuses))}
        if cpu_before is not None and cpu_after is not None:
            out["server_cpu_ms_per_appraisal"] = round(1e3 * (cpu_after - cpu_before) / n, 2)
        return out
    finally:
        proc.terminate()
        proc.wait(timeout=20)


# -- 4. replay -----------------------------------------------------------------------------


def replay_ratio(home: Home, engine: Engine, replays: int) -> dict[str, Any]:
    # its own engine, as a sidecar has; the full method, whose cost this section tracks
    verifier = Verifier(VerifierConfig(home=home, replay_method="full", model_dir=FIXTURE))
    factory = EvidenceFactory(home, engine)
    rows = []
    try:
        started = time.perf_counter()
        warm = verifier.appraise(factory.make(verifier.issue_nonce().nonce))  # loads the model
        load_s = time.perf_counter() - started
        assert warm.replay["verdict"] == "match", warm.replay
        for tokens in (16, 64):
            for i in range(replays):
                decode = {**DECODE, "max_new_tokens": tokens, "seed": 100 + i}
                prompt = f"Replay benchmark prompt number {i}"
                t0 = time.perf_counter()
                result = run(engine, prompt, decode)
                generation_s = time.perf_counter() - t0
                evidence = factory.make(verifier.issue_nonce().nonce, prompt=prompt,
                                        decode=decode, result=result)
                t1 = time.perf_counter()
                out = verifier.appraise(evidence)
                appraisal_s = time.perf_counter() - t1
                assert out.replay["verdict"] == "match", out.replay
                rows.append({"max_new_tokens": tokens, "tokens": len(result.token_ids),
                             "generation_s": generation_s, "replay_s": out.replay["seconds"],
                             "appraisal_s": appraisal_s})
    finally:
        verifier.close()
    summary: dict[str, Any] = {"first_replay_with_model_load_s": round(load_s, 3)}
    for tokens in (16, 64):
        sel = [r for r in rows if r["max_new_tokens"] == tokens]
        summary[f"max_new_tokens={tokens}"] = {
            "generation_ms": round(1e3 * statistics.median(r["generation_s"] for r in sel), 1),
            "replay_ms": round(1e3 * statistics.median(r["replay_s"] for r in sel), 1),
            "appraisal_with_replay_ms": round(
                1e3 * statistics.median(r["appraisal_s"] for r in sel), 1),
            "ratio_replay_to_generation": round(statistics.median(
                r["replay_s"] / r["generation_s"] for r in sel), 2),
            "ratio_appraisal_to_generation": round(statistics.median(
                r["appraisal_s"] / r["generation_s"] for r in sel), 2),
        }
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=2000, help="in-process appraisals")
    parser.add_argument("--http-n", type=int, default=1000, help="appraisals over HTTP")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--replays", type=int, default=3, help="replays per length")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--no-http", action="store_true", help="skip the HTTP measurement")
    parser.add_argument("--no-replay", action="store_true", help="skip the replay measurement")
    parser.add_argument("--no-tee", action="store_true",
                        help="skip the hardware-quote measurement (benchmarks/tee.py)")
    parser.add_argument("--no-teacher-forced", action="store_true",
                        help="skip the teacher-forced against full replay table")
    parser.add_argument("--rounds", type=int, default=10,
                        help="slices in which the signature baseline and the appraisals take "
                             "turns (so both meet the same load)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bytereplay-bench-") as tmp:
        home = Home.resolve(Path(tmp) / "home")
        engine = Engine(EngineSettings(model_dir=FIXTURE))
        factory = EvidenceFactory(home, engine)
        verifier = Verifier(VerifierConfig(home=home, replay=False))
        try:
            t0 = time.perf_counter()
            evidence = [str(factory.make(verifier.issue_nonce().nonce)) for _ in range(args.n)]
            make_rate = args.n / (time.perf_counter() - t0)
            warm = verifier.appraise(str(factory.make(verifier.issue_nonce().nonce)))
            check, items = signature_work(evidence, verifier, warm.token)
            with one_core() as pinning:
                # Only the statuses are kept: holding every result would make the cyclic
                # garbage collector rescan them (and torch's objects) again and again.
                seen: set[str] = set()
                gc.collect()
                clocks = interleaved({
                    "signatures": (check, items),
                    "appraisals": (lambda token: seen.add(
                        verifier.appraise(token, replay=False).status), evidence),
                }, args.rounds)
                where = breakdown(evidence[:500], verifier)
            statuses = sorted(seen)
        finally:
            verifier.close()
        sig, app = clocks["signatures"], clocks["appraisals"]
        sig_rate, appraisal_rate = sig.per_s(), app.per_s()
        report: dict[str, Any] = {
            "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                        "in_process": pinning, "load_average": os.getloadavg()},
            "signature_checks_alone_per_s": round(sig_rate, 1),
            "signature_checks_alone_per_cpu_s": round(sig.per_cpu_s(), 1),
            "in_process_appraisals_per_s": round(appraisal_rate, 1),
            "in_process_appraisals_per_cpu_s": round(app.per_cpu_s(), 1),
            "ratio_to_signature_checks": round(appraisal_rate / sig_rate, 3),
            "ratio_to_signature_checks_cpu": round(app.per_cpu_s() / sig.per_cpu_s(), 3),
            "in_process_statuses": statuses,
            "per_appraisal_us": round(1e6 / appraisal_rate, 1),
            "per_appraisal_cpu_us": round(1e6 / app.per_cpu_s(), 1),
            "of_which_us": where,
            "evidence_made_per_s": round(make_rate, 1),
            "target": {
                "appraisals_per_s": TARGET,
                "met": appraisal_rate >= TARGET,
                # The issue sets 2,000/s where the signature checks alone allow about
                # 7,000/s: the same share of this machine's signature rate.
                "scaled_to_this_machine_per_s": round(TARGET * sig_rate / TARGET_SIG_RATE, 1),
                "scaled_met": appraisal_rate / sig_rate >= TARGET / TARGET_SIG_RATE,
            },
        }
        if not args.no_http:
            report["http"] = http_rate(home, factory, args.http_n, args.concurrency)
        if not args.no_replay:
            report["replay"] = replay_ratio(home, engine, args.replays)
        if not args.no_teacher_forced:
            import replay as replay_bench  # benchmarks/replay.py, beside this file

            from bytereplay.default_model import smollm2_path
            from bytereplay.errors import ModelDirError

            models: dict[str, Path] = {"fixture": FIXTURE}
            try:
                models["smollm2"] = smollm2_path()
            except ModelDirError as exc:  # not installed: say so, measure the fixture
                report["teacher_forced_smollm2"] = f"not measured: {exc.detail}"
            report["teacher_forced"] = {
                name: replay_bench.measure(path, [16, 64, 256], args.replays)
                for name, path in models.items()}
    if not args.no_tee:
        from benchmarks.tee import measure

        report["tee"] = measure(min(args.n, 600), 6)

    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"machine: {report['machine']}")
    t = report["target"]
    print(f"signature checks alone (2 ECDSA verify + 1 sign): {sig_rate:,.0f}/s "
          f"({report['signature_checks_alone_per_cpu_s']:,.0f} per CPU-second)")
    print(f"in-process appraisals without replay:             {appraisal_rate:,.0f}/s "
          f"({app.per_cpu_s():,.0f} per CPU-second; {report['per_appraisal_us']:.0f} us "
          f"each, {report['per_appraisal_cpu_us']:.0f} us CPU)")
    print(f"ratio appraisals / signature checks alone:        "
          f"{report['ratio_to_signature_checks']:.3f} (wall), "
          f"{report['ratio_to_signature_checks_cpu']:.3f} (CPU time)")
    print(f"target {TARGET:,}/s: {'met' if t['met'] else 'NOT met'}; scaled to this machine's "
          f"signature rate ({TARGET:,} x {sig_rate:,.0f} / {TARGET_SIG_RATE:,} = "
          f"{t['scaled_to_this_machine_per_s']:,.0f}/s, ratio {TARGET / TARGET_SIG_RATE:.3f}): "
          f"{'met' if t['scaled_met'] else 'NOT met'}")
    print(f"  of which: {where}")
    if "http" in report:
        h = report["http"]
        print(f"over HTTP on loopback (concurrency {h['concurrency']}):       "
              f"{h['appraisals_per_s']:,.0f}/s (server CPU "
              f"{h.get('server_cpu_ms_per_appraisal', '?')} ms per appraisal; the client shares "
              "the machine)")
    if "tee" in report:
        print("hardware quotes beside the simulated TEE (benchmarks/tee.py, interleaved):")
        from benchmarks.tee import JOBS

        for name in JOBS:
            r = report["tee"][name]
            print(f"  {name:31s} {r['per_cpu_s']:8,.0f} per CPU-second "
                  f"(x{r['ratio_to_simulated_cpu']:.3f} of simulated)")
        g = report["tee"]["goal"]
        print(f"  goal >= {g['tdx_appraisals_per_core_s']:,} TDX appraisals per CPU-second: "
              f"{'met' if g['met'] else 'NOT met'}")
    if "replay" in report:
        print("replay vs the original generation:")
        for key, value in report["replay"].items():
            print(f"  {key}: {value}")
    if "teacher_forced" in report:
        import replay as replay_bench

        for name, table in report["teacher_forced"].items():
            print(f"teacher-forced against full replay on {name} (whole appraisal / "
                  "generation, same run):")
            replay_bench.print_table(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
