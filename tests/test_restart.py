"""Crash and restart: `bytereplay serve verifier` is SIGKILLed in the middle of a load and
started again on the same `BYTEREPLAY_HOME`, several times over.

After each restart:
- every Evidence accepted before any crash is refused when submitted again (its nonce
  stays used), and Evidence whose answer was lost in the crash is accepted at most once;
- every async result id handed out (202) is still served: `done` with a complete,
  signed EAR that verifies against the verifier's published key (unchanged across
  restarts), or still `pending` (its appraisal was cut off), never half-written; a result
  seen `done` before a crash is served byte for byte the same after it;
- a nonce issued before the crash and not yet used is still accepted (once).

SQLite (the default store), and Redis (the redis-server survives the verifier crashes).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import kit

from bytereplay.ear import read_ear
from bytereplay.errors import BytereplayError
from bytereplay.home import Home
from bytereplay.jwks import KeySet

CYCLES = 3
LOAD_S = 1.0
WORKERS = 6


@dataclass
class Seen:
    ek: kit.EvidenceKit
    lock: threading.Lock = field(default_factory=threading.Lock)
    accepted: list[tuple[bytes, str]] = field(default_factory=list)
    lost: list[tuple[bytes, str]] = field(default_factory=list)  # sent, no answer (crash)
    result_ids: list[str] = field(default_factory=list)
    done: dict[str, dict[str, Any]] = field(default_factory=dict)  # id -> doc seen pre-crash
    spare_challenges: list[dict[str, str]] = field(default_factory=list)
    requests: int = 0
    errors: list[str] = field(default_factory=list)  # unexpected answers in load threads


def _load(base: str, seen: Seen, stop: threading.Event, seed: int) -> None:
    try:
        _load_loop(base, seen, stop, seed)
    except Exception as exc:  # an assertion in a thread: report it from the main thread
        with seen.lock:
            seen.errors.append(repr(exc))


def _load_loop(base: str, seen: Seen, stop: threading.Event, seed: int) -> None:
    rnd = random.Random(seed)
    ek = seen.ek
    with httpx.Client(base_url=base, timeout=10.0) as client:
        while not stop.is_set():
            body: bytes | None = None
            ctype = ""
            try:
                challenge = client.post("/v1/challenge").json()
                if rnd.random() < 0.1:
                    with seen.lock:
                        seen.spare_challenges.append(challenge)
                    continue
                fmt = rnd.choice(["jwt", "cwt"])
                ev = ek.make_for(challenge, fmt=fmt)
                body = ev if isinstance(ev, bytes) else ev.encode()
                ctype = f"application/eat+{fmt}"
                if rnd.random() < 0.5:
                    resp = client.post("/v1/verify?replay=false&async=true", content=body,
                                       headers={"content-type": ctype})
                    assert resp.status_code == 202, resp.text
                    rid = resp.json()["id"]
                    with seen.lock:
                        seen.result_ids.append(rid)
                        seen.requests += 1
                    poll = client.get(f"/v1/results/{rid}")
                    if poll.status_code == 200:
                        with seen.lock:
                            seen.done[rid] = poll.json()
                            if poll.json()["status"] == "warning":
                                seen.accepted.append((body, ctype))
                else:
                    resp = client.post("/v1/verify?replay=false", content=body,
                                       headers={"content-type": ctype})
                    assert resp.status_code == 200, resp.text
                    with seen.lock:
                        seen.requests += 1
                        if resp.json()["status"] == "warning":
                            seen.accepted.append((body, ctype))
            except (httpx.HTTPError, ValueError):
                if body is not None:
                    with seen.lock:
                        seen.lost.append((body, ctype))
                if stop.is_set():
                    return
                time.sleep(0.05)  # the server is down; the main thread restarts it


def _sample(items: list[Any], recent: int = 120, older: int = 40) -> list[Any]:
    """The newest `recent` items (this crash's), and `older` ones from earlier crashes."""
    head, tail = items[:-recent], items[-recent:]
    return random.Random(len(items)).sample(head, min(older, len(head))) + tail


def _verify(client: httpx.Client, body: bytes, ctype: str) -> dict[str, Any]:
    resp = client.post("/v1/verify?replay=false", content=body, headers={"content-type": ctype})
    assert resp.status_code == 200, resp.text
    doc: dict[str, Any] = resp.json()
    return doc


def _check_ear(token: str, jwks: dict[str, Any]) -> str:
    try:
        ear = read_ear(token, KeySet(jwks))
    except BytereplayError as exc:  # a torn or half-written result would land here
        raise AssertionError(f"a served result is not a complete signed EAR: {exc}") from None
    for claim in ("bytereplay.checks", "bytereplay.claim", "bytereplay.replay"):
        assert claim in ear.extensions, claim
    return ear.status


def _run(tmp_path: Path, store_cfg: dict[str, Any]) -> dict[str, int]:
    home = Home.resolve(tmp_path / "home")
    ek = kit.EvidenceKit(home)
    config = tmp_path / "verifier.json"
    config.write_text(json.dumps({"verifier": {"replay": False, **store_cfg}}))
    seen = Seen(ek)
    port = kit.free_port()
    jwks_before: dict[str, Any] | None = None
    figures = {"restarts": 0, "accepted_refused_after_restart": 0, "results_checked": 0,
               "pending_after_crash": 0, "lost_in_crash": 0}
    server = kit.Server("verifier", home.root, port=port, config=config,
                        log=tmp_path / "verifier.log").wait()
    try:
        for cycle in range(CYCLES):
            jwks = httpx.get(f"{server.url}/.well-known/jwks.json").json()
            jwks_before = jwks_before or jwks
            assert jwks == jwks_before, "the EAR key changed across a restart"
            stop = threading.Event()
            threads = [threading.Thread(target=_load, args=(server.url, seen, stop,
                                                            cycle * 100 + i), daemon=True)
                       for i in range(WORKERS)]
            for t in threads:
                t.start()
            time.sleep(LOAD_S)
            server.kill()  # SIGKILL mid-load: no shutdown handler runs
            stop.set()
            for t in threads:
                t.join(timeout=30)
            assert not seen.errors, seen.errors
            assert seen.requests > 0, "no load reached the server"
            server = kit.Server("verifier", home.root, port=port, config=config,
                                log=tmp_path / "verifier.log").wait()
            figures["restarts"] += 1
            _check_after_restart(server.url, seen, jwks_before, figures)
        return figures
    finally:
        server.stop()


def _check_after_restart(base: str, seen: Seen, jwks: dict[str, Any],
                         figures: dict[str, int]) -> None:
    with httpx.Client(base_url=base, timeout=30.0) as client:
        assert client.get("/.well-known/jwks.json").json() == jwks
        # 1. used nonces stay used
        with seen.lock:
            accepted, lost = list(seen.accepted), list(seen.lost)
            ids, done = list(seen.result_ids), dict(seen.done)
            spare, seen.spare_challenges = list(seen.spare_challenges), []
            seen.lost = []
        for body, ctype in _sample(accepted):
            doc = _verify(client, body, ctype)
            assert doc["status"] == "contraindicated", "accepted Evidence accepted again"
            checks = read_ear(doc["result"], KeySet(jwks)).extensions["bytereplay.checks"]
            assert "already used" in checks["nonce"], checks
            figures["accepted_refused_after_restart"] += 1
        # Evidence whose answer the crash swallowed: accepted at most once from now on.
        for body, ctype in lost:
            first, second = _verify(client, body, ctype), _verify(client, body, ctype)
            assert second["status"] == "contraindicated"
            if first["status"] == "warning":
                with seen.lock:
                    seen.accepted.append((body, ctype))
            figures["lost_in_crash"] += 1
        # 2. results survive, complete or pending, never half-written
        for rid in _sample(ids):
            resp = client.get(f"/v1/results/{rid}")
            assert resp.status_code in (200, 202), (rid, resp.status_code, resp.text)
            doc = resp.json()
            if resp.status_code == 202:
                assert doc == {"state": "pending"}, doc
                figures["pending_after_crash"] += 1
                continue
            assert doc["state"] == "done" and set(doc) >= {"result", "status", "replay"}, doc
            status = _check_ear(doc["result"], jwks)
            assert status == doc["status"]
            if rid in done:
                assert done[rid] == doc, "a result changed across a restart"
            figures["results_checked"] += 1
        # 3. a nonce issued before the crash and never used is still good, once
        for challenge in spare[:5]:
            ev = seen.ek.make_for(challenge)
            body = ev if isinstance(ev, bytes) else ev.encode()
            assert _verify(client, body, "application/eat+jwt")["status"] == "warning"
            assert _verify(client, body, "application/eat+jwt")["status"] == "contraindicated"


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    try:
        with kit.redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_sigkill_mid_load_and_restart(store: str, tmp_path: Path,
                                      request: pytest.FixtureRequest) -> None:
    store_cfg: dict[str, Any] = {}
    if store == "redis":
        store_cfg = {"store": "redis", "redis_url": request.getfixturevalue("redis_url"),
                     "redis_prefix": f"br-restart-{tmp_path.name}:"}
    figures = _run(tmp_path, store_cfg)
    print(f"restart figures ({store}): {figures}")
    assert figures["restarts"] == CYCLES
    assert figures["accepted_refused_after_restart"] > 0
    assert figures["results_checked"] > 0
