"""16 concurrent inference requests to the attester: each answer's bytes equal the bytes of
the same request run alone.

The attester app runs in process (httpx ASGI transport), so the 16 requests share one
event loop and one Engine, and their inference runs in the threadpool at the same time.
Compared per request: the output text, its hash, the run record digest and the output
token ids from the signed Evidence (which must also verify).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from attester.config import AttesterConfig
from attester.service import Attester, create_app
from bytereplay.encoding import b64url_encode
from bytereplay.evidence import decode_evidence
from bytereplay.home import Home

N = 16
PROMPTS = ["Hello", "The quick brown fox", "What is 2 + 2?", "Once upon a time", "", "Lorem",
           "The verifier replays the bytes", "Q", "Tell me about GPUs", "1 2 3 4",
           "A long, long prompt with several words in it", "x" * 50, "Ünïcödé ✓", "stop here",
           "Why?", "bytereplay"]
TEMPLATES = ["{input}", "Q: {input}\nA:"]


def _request(i: int) -> dict[str, Any]:
    """16 distinct requests: greedy and sampled, several seeds, lengths and stops."""
    decode: dict[str, Any] = {"max_new_tokens": 4 + i % 7, "seed": 1000 + i,
                              "temperature": 0.0 if i % 3 == 0 else 0.6 + 0.1 * (i % 5),
                              "top_k": [0, 5, 40][i % 3], "top_p": [1.0, 0.9, 0.5][i % 3]}
    if i % 4 == 1:
        decode["stop"] = ["e"]
    return {"input": PROMPTS[i], "template": TEMPLATES[i % 2], "decode": decode,
            "nonce": b64url_encode(os.urandom(32)), "format": "cwt" if i % 2 else "jwt"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    config = AttesterConfig(max_new_tokens=16, max_pending=N * 2,
                            container_digest="sha256:" + "ab" * 32)
    svc = Attester(config, Home.resolve(tmp_path_factory.mktemp("attester-conc")))
    svc.load_engine()
    yield create_app(config, attester=svc)


def _bytes_of(answer: dict[str, Any]) -> tuple[str, str, str, tuple[int, ...]]:
    ev = decode_evidence(answer["evidence"], answer["evidence_format"])
    assert ev.output_hash == answer["output_hash"]
    return (answer["output"], answer["output_hash"], ev.record_digest,
            tuple(ev.record.output_token_ids or ()))


async def _post_all(app: Any, bodies: list[dict[str, Any]], concurrent: bool) -> list[Any]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://attester",
                                 timeout=300.0) as client:
        if concurrent:
            start = asyncio.Event()

            async def one(body: dict[str, Any]) -> httpx.Response:
                await start.wait()
                return await client.post("/v1/infer", json=body)

            tasks = [asyncio.create_task(one(b)) for b in bodies]
            await asyncio.sleep(0)
            start.set()
            return list(await asyncio.gather(*tasks))
        return [await client.post("/v1/infer", json=b) for b in bodies]


def test_16_concurrent_requests_equal_their_lone_runs(app: Any) -> None:
    bodies = [_request(i) for i in range(N)]
    lone = asyncio.run(_post_all(app, bodies, concurrent=False))
    # Fresh nonces for the concurrent round; the bytes must not depend on the nonce.
    again = [{**b, "nonce": b64url_encode(os.urandom(32))} for b in bodies]
    together = asyncio.run(_post_all(app, again, concurrent=True))
    assert [r.status_code for r in lone] == [200] * N, [r.text for r in lone if r.status_code != 200]
    assert [r.status_code for r in together] == [200] * N, \
        [r.text for r in together if r.status_code != 200]
    for i, (a, b) in enumerate(zip(lone, together, strict=True)):
        assert _bytes_of(a.json()) == _bytes_of(b.json()), f"request {i} ({bodies[i]}) differs"
    # The requests really differ from each other (so equality above is not vacuous).
    assert len({r.json()["output_hash"] for r in lone}) >= N // 2


def test_16_concurrent_copies_of_one_request_agree(app: Any) -> None:
    body = _request(5)
    answers = asyncio.run(_post_all(app, [{**body, "nonce": b64url_encode(os.urandom(32))}
                                          for _ in range(N)], concurrent=True))
    assert {r.status_code for r in answers} == {200}
    assert len({_bytes_of(r.json()) for r in answers}) == 1
