"""Nonce single use under concurrency: 100 parallel submissions of the same Evidence to the
verifier are accepted exactly once, on SQLite and on Redis.

Two shapes, each on both stores:
- in process: two `Verifier` replicas sharing one store, 100 threads released together;
- over HTTP: two `bytereplay serve verifier` processes (replicas) sharing one store,
  100 concurrent requests split between them.

Redis is a real `redis-server` on a free loopback port in a temp dir; when it is not
installed the Redis tests FAIL (never skip).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import kit
from verifier_fixtures import redis_url

from bytereplay.ear import read_ear
from bytereplay.home import Home
from bytereplay.jwks import KeySet

N = 100


__all__ = ["redis_url"]  # the fixture, imported for pytest


def _store_config(store: str, redis_url: str | None, prefix: str) -> dict[str, Any]:
    if store == "redis":
        assert redis_url is not None
        return {"store": "redis", "redis_url": redis_url, "redis_prefix": prefix}
    return {"store": "sqlite"}


def _outcome(token: str, jwks: dict[str, Any]) -> tuple[str, str]:
    ear = read_ear(token, KeySet(jwks))
    return ear.status, str(ear.extensions["bytereplay.checks"]["nonce"])


def _assert_exactly_one(outcomes: list[tuple[str, str]]) -> None:
    nonce_checks = Counter("ok" if n == "ok" else n.split(":")[0] for _, n in outcomes)
    accepted = [o for o in outcomes if o[1] == "ok"]
    assert len(outcomes) == N
    assert len(accepted) == 1, nonce_checks
    assert accepted[0][0] == "warning"  # simulated TEE: never better than warning
    refused = [o for o in outcomes if o[1] != "ok"]
    assert all(s == "contraindicated" and "already used" in n for s, n in refused), \
        Counter(refused)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_same_evidence_100_threads_two_replicas(store: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    from verifier.config import VerifierConfig
    from verifier.pipeline import Verifier

    url = request.getfixturevalue("redis_url") if store == "redis" else None
    home = Home.resolve(tmp_path / "home")
    ek = kit.EvidenceKit(home)
    extra = _store_config(store, url, f"br-conc-{tmp_path.name}:")
    replicas = [Verifier(VerifierConfig(home=home, replay=False, **extra)) for _ in range(2)]
    try:
        challenge = replicas[0].issue_nonce().to_json()
        evidence = ek.make_for(challenge)
        barrier = threading.Barrier(N)

        def submit(i: int) -> str:
            barrier.wait(timeout=60)
            return replicas[i % 2].appraise(evidence, replay=False).token

        with ThreadPoolExecutor(max_workers=N) as pool:
            tokens = list(pool.map(submit, range(N)))
        jwks = replicas[0].jwks()
        _assert_exactly_one([_outcome(t, jwks) for t in tokens])
        # CWT Evidence for the same (now used) nonce is refused too: the nonce, not the
        # encoding, is what is single-use.
        cwt = ek.make_for(challenge, fmt="cwt")
        assert _outcome(replicas[1].appraise(cwt, "cwt", replay=False).token, jwks)[1] != "ok"
    finally:
        for v in replicas:
            v.close()


async def _fire(urls: list[str], body: bytes, ctype: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=N, max_keepalive_connections=N)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        start = asyncio.Event()

        async def one(i: int) -> httpx.Response:
            await start.wait()
            return await client.post(f"{urls[i % len(urls)]}/v1/verify?replay=false",
                                     content=body, headers={"content-type": ctype})

        tasks = [asyncio.create_task(one(i)) for i in range(N)]
        await asyncio.sleep(0.05)
        start.set()
        return list(await asyncio.gather(*tasks))


@pytest.mark.parametrize("fmt", ["jwt", "cwt"])
@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_same_evidence_100_requests_two_server_processes(store: str, fmt: str, tmp_path: Path,
                                                         request: pytest.FixtureRequest) -> None:
    url = request.getfixturevalue("redis_url") if store == "redis" else None
    home = Home.resolve(tmp_path / "home")
    ek = kit.EvidenceKit(home)  # creates the simulated CA the servers will trust
    config = tmp_path / "verifier.json"
    config.write_text(json.dumps({"verifier": {
        "replay": False, **_store_config(store, url, f"br-conc-http-{tmp_path.name}:")}}))
    servers = [kit.Server("verifier", home.root, config=config, log=tmp_path / f"s{i}.log")
               for i in range(2)]
    try:
        for s in servers:
            s.wait()
        challenge = httpx.post(f"{servers[0].url}/v1/challenge").json()
        evidence = ek.make_for(challenge, fmt=fmt)
        body = evidence if isinstance(evidence, bytes) else evidence.encode()
        responses = asyncio.run(_fire([s.url for s in servers], body,
                                      f"application/eat+{fmt}"))
        assert Counter(r.status_code for r in responses) == {200: N}, \
            [r.text[:200] for r in responses if r.status_code != 200][:3]
        jwks = httpx.get(f"{servers[1].url}/.well-known/jwks.json").json()
        assert jwks == httpx.get(f"{servers[0].url}/.well-known/jwks.json").json()
        _assert_exactly_one([_outcome(r.json()["result"], jwks) for r in responses])
        for s in servers:
            assert s.proc.poll() is None, s.log_text()[-2000:]
    finally:
        for s in servers:
            s.stop()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_store_consume_100_threads_two_store_instances(store: str, tmp_path: Path,
                                                       request: pytest.FixtureRequest) -> None:
    """The atomic step alone, so the 100 threads collide inside it (the full pipeline
    spreads them out over decode and quote checks first)."""
    from verifier.nonces import NonceRefused, RedisStore, SqliteStore

    url = request.getfixturevalue("redis_url") if store == "redis" else None
    stores: list[Any]
    if store == "redis":
        assert url is not None
        stores = [RedisStore(url, prefix=f"br-conc-store-{tmp_path.name}:") for _ in range(2)]
    else:
        stores = [SqliteStore(tmp_path / "nonces.sqlite3") for _ in range(2)]
    try:
        for _round in range(5):
            nonce = stores[0].issue().nonce
            barrier = threading.Barrier(N)

            def consume(i: int, nonce: bytes = nonce, barrier: threading.Barrier = barrier) -> str:
                barrier.wait(timeout=60)
                try:
                    stores[i % 2].consume(nonce)
                except NonceRefused as exc:
                    return exc.reason
                return "ok"

            with ThreadPoolExecutor(max_workers=N) as pool:
                outcomes = Counter(pool.map(consume, range(N)))
            assert outcomes == {"ok": 1, "reused": N - 1}, outcomes
    finally:
        for s in stores:
            s.close()
