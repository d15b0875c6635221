"""Replay on a Celery worker fleet over a real redis-server on loopback (`verifier.fleet`).

- Two `bytereplay serve verifier` front ends (replay_backend celery) and two `bytereplay
  worker` processes: 40 async verifications spread over both front ends all end `match`;
  one worker is SIGKILLed while it holds a job, and that job is delivered again to the
  other worker; every job completes once (one EAR per appraisal, 40 appraisals counted in
  all), every nonce is consumed exactly once.
- A job for a model digest that no worker holds ends `not-run`, naming the reason, after
  the configured wait; a request without async=true waits for its replay and answers 200.
- Idempotency, in process: a job delivered twice runs once (the second delivery finds the
  outcome), two deliveries racing store one outcome (the first), and an appraisal
  finished twice gives one EAR.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from verifier_fixtures import DECODE, UNKNOWN_MODEL, evidence_factory, kit, redis_url

from bytereplay.ear import read_ear
from bytereplay.encoding import b64url_decode
from bytereplay.home import Home
from bytereplay.jwks import KeySet
from bytereplay.keys import load_or_create_key
from verifier.config import VerifierConfig
from verifier.fleet import FleetState, Job, celery_app, parse_job
from verifier.nonces import REUSED, RedisStore
from verifier.pipeline import Verifier
from verifier.replay import ReplayOutcome
from verifier.worker import run_job

__all__ = ["redis_url"]

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO / "fixtures" / "model"
JOBS = 40
# Long enough (32 tokens, full replay: 0.2 to 0.5 s here) for a kill to land mid-job.
SLOW = {**DECODE, "max_new_tokens": 32, "eos": False}
FLEET = {"store": "redis", "replay_backend": "celery", "model_dir": str(MODEL),
         "replay_visibility_timeout_s": 4, "replay_worker_wait_s": 3,
         "replay_heartbeat_s": 1, "replay_sync_timeout_s": 30}


class Worker:
    """`bytereplay worker` in a subprocess, its log in a file."""

    def __init__(self, home: Path, config: Path, log: Path) -> None:
        self.log_path = log
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bytereplay.cli", "worker", "--home", str(home),
             "--config", str(config), "--concurrency", "1"],
            cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT, env=dict(os.environ))

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ids(self, what: str) -> list[str]:
        return re.findall(rf"replay {what} id=([A-Za-z0-9_-]+)", self.text())

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()


@dataclass
class Fleet:
    home: Home
    redis_url: str
    fronts: list[kit.Server]
    workers: list[Worker]


def _wait_workers(url: str, count: int, workers: list[Worker], timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        found = httpx.get(f"{url}/v1/info", timeout=10).json()["replay"]["workers"]
        if len(found) >= count:
            return
        for w in workers:
            assert w.proc.poll() is None, f"a worker exited:\n{w.text()[-3000:]}"
        assert time.monotonic() < deadline, f"{len(found)} of {count} workers advertised"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("fleet")
    home = Home.resolve(tmp / "home")
    evidence_factory(home)  # the attester key and the simulated CA, before anyone starts
    load_or_create_key(home.verifier_key)  # one EAR key for both front ends
    config = tmp / "fleet.json"
    config.write_text(json.dumps({"verifier": {**FLEET, "redis_url": redis_url}}))
    fronts = [kit.Server("verifier", home.root, config=config, log=tmp / f"front{i}.log")
              for i in range(2)]
    workers = [Worker(home.root, config, tmp / f"worker{i}.log") for i in range(2)]
    try:
        for f in fronts:
            f.wait(timeout=120)
        _wait_workers(fronts[0].url, 2, workers)
        yield Fleet(home, redis_url, fronts, workers)
    finally:
        for w in workers:
            w.stop()
        for f in fronts:
            f.stop()


def _metric(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name + " ") or line.startswith(name + "{"))


def _poll(client: httpx.Client, rid: str) -> dict[str, Any] | None:
    resp = client.get(f"/v1/results/{rid}")
    assert resp.status_code in (200, 202), resp.text
    return resp.json() if resp.status_code == 200 else None


def test_forty_jobs_over_two_front_ends_survive_a_killed_worker(fleet: Fleet) -> None:
    factory = evidence_factory(fleet.home)
    fronts = [httpx.Client(base_url=f.url, timeout=30) for f in fleet.fronts]
    sent: dict[str, tuple[str, bytes, str]] = {}  # id -> (nonce, evidence, front url)
    for i in range(JOBS):
        client = fronts[i % 2]
        nonce = client.post("/v1/challenge").json()["nonce"]
        ev = factory.make(b64url_decode(nonce), decode=SLOW)
        body = ev if isinstance(ev, bytes) else ev.encode()
        resp = client.post("/v1/verify?async=true&replay_method=full", content=body,
                           headers={"content-type": "application/eat+jwt"})
        assert resp.status_code == 202, resp.text
        sent[resp.json()["id"]] = (nonce, body, str(client.base_url))

    # SIGKILL the first worker while it holds a job: started, not done.
    victim, other = fleet.workers
    deadline = time.monotonic() + 40
    while not set(victim.ids("started")) - set(victim.ids("done")):
        assert time.monotonic() < deadline, "the first worker never started a job"
        time.sleep(0.005)
    victim.kill()
    held = set(victim.ids("started")) - set(victim.ids("done"))
    assert held, "the kill did not land while the worker held a job"

    # Every job completes, `match`, including the one the dead worker held.
    results: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 90  # about 20 s here; room for a loaded machine
    while len(results) < JOBS:
        assert time.monotonic() < deadline, f"{JOBS - len(results)} jobs never completed"
        for rid in sorted(set(sent) - set(results)):
            doc = _poll(fronts[len(results) % 2], rid)  # either front end serves any result
            if doc is not None:
                results[rid] = doc
        time.sleep(0.2)
    jwks = KeySet(fronts[0].get("/.well-known/jwks.json").json())
    nonces: list[str] = []
    for rid, doc in results.items():
        assert doc["state"] == "done" and doc["replay"]["verdict"] == "match", (rid, doc)
        ear = read_ear(doc["result"], jwks)
        assert ear.extensions["bytereplay.replay"]["verdict"] == "match"
        nonces.append(str(ear.nonce))
    assert sorted(nonces) == sorted(n for n, _, _ in sent.values())  # one EAR per nonce
    assert held <= set(other.ids("started")), "the held job was not delivered again"
    assert held <= set(other.ids("done"))

    # None twice: 40 appraisals signed across both front ends, 40 job latencies.
    texts = [c.get("/metrics").text for c in fronts]
    assert sum(_metric(t, "bytereplay_verifier_appraisals_total") for t in texts) == JOBS
    assert sum(_metric(t, "bytereplay_verifier_replay_job_seconds_count") for t in texts) == JOBS
    assert _metric(texts[0], "bytereplay_verifier_replay_workers") >= 1
    assert "bytereplay_verifier_replay_queue_depth{model=" in texts[0]

    # Each nonce consumed exactly once: all used, and a resubmission is refused.
    store = RedisStore(fleet.redis_url)
    try:
        assert all(store.peek(b64url_decode(n)) == REUSED for n in nonces)
    finally:
        store.close()
    nonce, body, url = next(iter(sent.values()))
    again = httpx.post(f"{url}/v1/verify?replay=false", content=body,
                       headers={"content-type": "application/eat+jwt"}, timeout=30).json()
    assert again["status"] == "contraindicated"
    checks = read_ear(again["result"], jwks).extensions["bytereplay.checks"]
    assert "already used" in checks["nonce"]
    for c in fronts:
        c.close()


def test_unknown_model_is_not_run_and_sync_waits(fleet: Fleet) -> None:
    factory = evidence_factory(fleet.home)
    front = fleet.fronts[1].url
    with httpx.Client(base_url=front, timeout=60) as client:
        nonce = client.post("/v1/challenge").json()["nonce"]
        ev = factory.make(b64url_decode(nonce), edits={"model.digest": UNKNOWN_MODEL})
        started = time.monotonic()
        doc = client.post("/v1/verify", content=ev,
                          headers={"content-type": "application/eat+jwt"}).json()
        assert time.monotonic() - started >= FLEET["replay_worker_wait_s"]
        assert doc["replay"]["verdict"] == "not-run", doc
        assert doc["replay"]["reason"] == (f"no replay worker holds model {UNKNOWN_MODEL} "
                                           "(waited 3 s)")
        # A request without async=true waits for the worker's outcome: 200, match.
        nonce = client.post("/v1/challenge").json()["nonce"]
        ev = factory.make(b64url_decode(nonce))
        resp = client.post("/v1/verify", content=ev,
                           headers={"content-type": "application/eat+jwt"})
        assert resp.status_code == 200 and resp.json()["replay"]["verdict"] == "match", resp.text


# -- idempotency, in process ---------------------------------------------------------------


class CountingReplayer:
    """Stands in for `Replayer`: counts replays, each outcome with its own `seconds`."""

    def __init__(self, pause: float = 0.0) -> None:
        self.calls, self.pause = 0, pause
        self.lock = threading.Lock()

    def replay(self, request: Any, record: Any, method: str | None = None) -> ReplayOutcome:
        with self.lock:
            self.calls += 1
            n = self.calls
        time.sleep(self.pause)
        return ReplayOutcome("match", reason="stand-in", seconds=float(n), method="full")


def _job(factory: Any, nonce: bytes, job_id: str) -> Job:
    from bytereplay.evidence import decode_evidence

    d = decode_evidence(factory.make(nonce), "jwt")
    return Job(job_id, str(d.record.get("model.digest")), None, d.request, d.record)


def test_a_duplicated_delivery_gives_one_outcome_and_one_ear(tmp_path: Path,
                                                             redis_url: str) -> None:
    home = Home.resolve(tmp_path / "home")
    factory = evidence_factory(home)
    prefix = "idem:"
    state = FleetState(redis_url, prefix, ttl_s=60, heartbeat_s=1)
    # Delivered twice in turn: the second delivery finds the outcome and does not run.
    rep = CountingReplayer()
    text = _job(factory, b"n" * 32, "job-one-0001").to_text()
    assert parse_job(text).to_text() == text
    assert run_job(rep, state, text, "w1") == "match"  # type: ignore[arg-type]
    assert run_job(rep, state, text, "w2") == "duplicate"  # type: ignore[arg-type]
    assert rep.calls == 1
    # Delivered twice at once (a visibility timeout shorter than the replay): both run,
    # one outcome is stored, the first; both readers see it.
    rep = CountingReplayer(pause=0.2)
    text = _job(factory, b"m" * 32, "job-two-0002").to_text()
    threads = [threading.Thread(target=run_job, args=(rep, state, text, f"w{i}"))
               for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rep.calls == 2
    stored = state.outcome("job-two-0002")
    assert stored is not None and stored.seconds in (1.0, 2.0)
    assert state.settle("job-two-0002", replace(stored, seconds=99.0)) == stored
    # A replay that raises on the worker still ends the job: not-run, naming it.
    broken = CountingReplayer()
    broken.replay = lambda *a, **k: 1 / 0  # type: ignore[method-assign, assignment, return-value]
    text = _job(factory, b"k" * 32, "job-three-003").to_text()
    assert run_job(broken, state, text, "w3") == "not-run"  # type: ignore[arg-type]
    failed = state.outcome("job-three-003")
    assert failed is not None and failed.reason == \
        "the replay failed on a worker (ZeroDivisionError)"

    # The front end: an appraisal whose outcome is stored, finished twice -> one EAR.
    config = VerifierConfig(home=home, store="redis", redis_url=redis_url, redis_prefix=prefix,
                            replay_backend="celery", replay_worker_wait_s=1)
    v = Verifier(config)
    try:
        issued = v.issue_nonce()
        a = v.begin(factory.make(issued.nonce), "jwt")
        assert v.needs_replay(a) and a.facts["nonce"] == "ok"
        digest = str(a.decoded.record.get("model.digest")) if a.decoded else ""
        state.advertise("w-stand-in", [digest], 1)
        state.settle(a.id, ReplayOutcome("match", reason="stand-in", seconds=0.5))
        first, second = v.finish(a), v.finish(a)
        assert first.token == second.token and first.replay["verdict"] == "match"
        # The nonce was consumed once, by begin: a second begin is refused.
        assert v.begin(factory.make(issued.nonce), "jwt").facts["nonce"] == REUSED
    finally:
        v.close()
        state.withdraw("w-stand-in", [digest])
        state.close()
        celery_app(config).close()


def test_job_and_outcome_parsers_refuse_bad_input() -> None:
    from bytereplay.errors import BytereplayError
    from verifier.fleet import parse_outcome

    for bad in (b"", b"[]", b'{"v": 1}', b'{"v": 2, "id": "x", "digest": "d", "method": null,'
                b' "request": {}, "record": {}}', b"\xff"):
        with pytest.raises(BytereplayError):
            parse_job(bad)
    for bad in (b"{}", b'{"verdict": "maybe"}', b'{"verdict": "match", "extra": 1}',
                b'{"verdict": "match", "seconds": "1"}', b'{"verdict": "match", "facts": {"a": 1}}'):
        with pytest.raises(BytereplayError):
            parse_outcome(bad)


def test_sync_request_answers_202_after_the_configured_wait(tmp_path: Path,
                                                            redis_url: str) -> None:
    """No worker takes the job (one is advertised, none consumes): a request without
    async=true waits `replay_sync_timeout_s`, answers 202 with the poll URL; when the
    outcome arrives, the front end runs the policy and signs the EAR, served at the URL."""
    from fastapi.testclient import TestClient

    from bytereplay.evidence import decode_evidence
    from verifier.service import create_app

    home = Home.resolve(tmp_path / "home")
    factory = evidence_factory(home)
    prefix = "sync:"
    config = VerifierConfig(home=home, store="redis", redis_url=redis_url, redis_prefix=prefix,
                            replay_backend="celery", replay_sync_timeout_s=0.5)
    state = FleetState(redis_url, prefix, ttl_s=60, heartbeat_s=5)
    digest = ""
    v = Verifier(config)
    try:
        with TestClient(create_app(config, verifier=v)) as client:
            nonce = client.post("/v1/challenge").json()["nonce"]
            ev = factory.make(b64url_decode(nonce))
            digest = str(decode_evidence(ev, "jwt").record.get("model.digest"))
            state.advertise("w-idle", [digest], 1)
            started = time.monotonic()
            resp = client.post("/v1/verify", content=ev,
                               headers={"content-type": "application/eat+jwt"})
            assert resp.status_code == 202, resp.text
            assert time.monotonic() - started >= 0.5
            rid = resp.json()["id"]
            assert resp.headers["location"] == f"/v1/results/{rid}"
            assert client.get(f"/v1/results/{rid}").status_code == 202
            assert state.queue_depth(digest) == 1  # the job waits in its model's queue
            metrics = client.get("/metrics").text
            assert f'bytereplay_verifier_replay_queue_depth{{model="{digest}"}} 1.0' in metrics
            assert "bytereplay_verifier_replay_workers 1.0" in metrics
            state.settle(rid, ReplayOutcome("match", reason="stand-in", seconds=0.1))
            deadline = time.monotonic() + 10
            while (done := client.get(f"/v1/results/{rid}")).status_code == 202:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            doc = done.json()
            assert doc["replay"]["verdict"] == "match" and doc["status"] == "warning", doc
    finally:
        state.withdraw("w-idle", [digest])
        state.close()


def test_fleet_configuration_is_checked(tmp_path: Path) -> None:
    from bytereplay.errors import UsageError
    from verifier.config import from_dict

    home = Home.resolve(tmp_path / "home")
    cfg = from_dict({"replay_backend": "celery", "broker_url": "redis://:secret@h:1/0",
                     "replay_visibility_timeout_s": 5}, home)
    assert cfg.broker == "redis://:secret@h:1/0" and cfg.replay_visibility_timeout_s == 5.0
    assert from_dict({"replay_backend": "celery", "redis_url": "redis://r:2/0"}, home).broker \
        == "redis://r:2/0"
    for bad in ({"replay_backend": "threads"}, {"replay_backend": "celery", "broker_url": "amqp://x"},
                {"replay_worker_wait_s": 0}, {"replay_sync_timeout_s": "1"}):
        with pytest.raises(UsageError):
            from_dict(bad, home)
    from verifier.fleet import redact
    assert redact("redis://:secret@h:1/0") == "redis://:***@h:1/0"
    assert redact("redis://user:pw@h/0") == "redis://user:***@h/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
