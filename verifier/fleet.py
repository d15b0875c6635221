"""Replay on a Celery worker fleet over Redis: what the front ends and the workers share.

With `replay_backend: "celery"` a verifier front end loads no model. It runs every step
up to replay (the nonce is consumed there, once), sends a replay job to the queue of the
record's model digest and, when the outcome comes back, runs the policy and signs the
EAR. `bytereplay worker` processes (`verifier.worker`) load their models, advertise them
by digest and consume those models' queues only, so a job goes only to a worker that
holds its model.

    front ends ──job──▶ Redis (broker) ──▶ workers holding the model
         ▲                 │  outcome, first stored wins
         └──── outcome ────┘

The job (the task's one argument, JSON text) carries only what replay needs, never a key:

    {"v": 1, "id": <appraisal id>, "digest": <model digest>, "method": <replay method|null>,
     "request": <the recorded request>, "record": <the run record>}

Delivery is at least once: tasks are acknowledged late (`acks_late`; a pool process lost
mid-task rejects its job back to the queue, `task_reject_on_worker_lost`), and a job taken
by a worker that dies is delivered again once the broker's visibility timeout has passed.
So a job may run twice. Its outcome is stored under the appraisal id with `SET NX`: the
first one stored wins, a later delivery sees it and does not run again, and every reader
gets the same outcome. The front end stores its answer (the signed EAR) the same way, so
one appraisal id never has two EARs. Celery's own result backend is not used: it keeps
the last result written, not the first.

Redis keys (under `redis_prefix`, default `bytereplay:`):

    fleet:outcome:<id>       the replay outcome (`verifier.replay.outcome_to_wire`), SET NX
    fleet:answer:<id>        the front end's answer {"result", "status", "replay", "claims"}, SET NX
    fleet:model:<digest>     hash: worker name -> advertisement expiry (ms)
    fleet:workers            hash: worker name -> {"digests", "concurrency", "expires"}
    replay.<digest>          the model's Celery queue (a Redis list)

A worker refreshes its advertisement every `replay_heartbeat_s`; one not refreshed for
three of them has lapsed. A job whose model no live worker advertises for
`replay_worker_wait_s` ends `not-run`, naming the reason, and so does one without an
outcome within `result_ttl_s` (by then its pending result has expired anyway); a job
waiting in a long queue while workers holding its model live waits its turn. The front
end stores such a `not-run` with the same `SET NX`, so a late worker cannot change it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bytereplay.encoding import strict_json_loads
from bytereplay.errors import BytereplayError, EvidenceError, StoreUnavailable
from bytereplay.record import RunRecord
from verifier.replay import (
    METHODS,
    ReplayOutcome,
    not_run,
    outcome_from_wire,
    outcome_to_wire,
    preconditions,
)

if TYPE_CHECKING:
    from celery import Celery

    from verifier.config import VerifierConfig
    from verifier.metrics import Metrics

log = logging.getLogger("bytereplay.verifier.fleet")

TASK = "bytereplay.replay"
JOB_VERSION = 1
MAX_JOB_BYTES = 4 << 20
MAX_OUTCOME_BYTES = 1 << 20
HEARTBEATS_TO_LAPSE = 3
# How often a waiting front end looks for its outcome: soon at first, then less often.
POLL_FIRST_S, POLL_MAX_S = 0.01, 0.1


def redact(url: str) -> str:
    """`url` without its password (for logs and /v1/info)."""
    head, sep, tail = url.partition("@")
    if not sep or "://" not in head:
        return url
    scheme, _, cred = head.partition("://")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user + ':***' if ':' in cred else user}@{tail}"


def queue_name(prefix: str, digest: str) -> str:
    """The Celery queue of the model with `digest` (one per model digest)."""
    return f"{prefix}replay.{digest}"


# -- the job on the wire ----------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    id: str
    digest: str
    method: str | None
    request: Any
    record: RunRecord

    def to_text(self) -> str:
        return json.dumps({"v": JOB_VERSION, "id": self.id, "digest": self.digest,
                           "method": self.method, "request": self.request,
                           "record": self.record.to_dict()}, separators=(",", ":"))


def parse_job(text: str | bytes) -> Job:
    """A job as `Job.to_text` wrote it; anything else is refused (`EvidenceError`, or the
    record parser's `RecordError`)."""
    doc = strict_json_loads(text, max_bytes=MAX_JOB_BYTES)
    if not isinstance(doc, dict) or set(doc) != {"v", "id", "digest", "method", "request",
                                                 "record"}:
        raise EvidenceError("replay job: an object {v, id, digest, method, request, record}")
    if doc["v"] != JOB_VERSION or isinstance(doc["v"], bool):
        raise EvidenceError(f"replay job: version {doc['v']!r} is not {JOB_VERSION}")
    job_id, digest, method = doc["id"], doc["digest"], doc["method"]
    if not isinstance(job_id, str) or not 8 <= len(job_id) <= 64 or not job_id.isascii() \
            or not all(c.isalnum() or c in "-_" for c in job_id):
        raise EvidenceError("replay job: 'id' is 8..64 letters, digits, '-' or '_'")
    if method is not None and method not in METHODS:
        raise EvidenceError(f"replay job: 'method' is one of {', '.join(METHODS)} or null")
    if not isinstance(doc["request"], dict):
        raise EvidenceError("replay job: 'request' is an object")
    record = RunRecord.from_dict(doc["record"])
    if not isinstance(digest, str) or record.get("model.digest") != digest:
        raise EvidenceError("replay job: 'digest' is the record's model digest")
    return Job(job_id, digest, method, doc["request"], record)


def parse_outcome(text: str | bytes) -> ReplayOutcome:
    """A stored outcome (`outcome_to_wire` as JSON); anything else is refused."""
    return outcome_from_wire(strict_json_loads(text, max_bytes=MAX_OUTCOME_BYTES))


# -- the Celery application ---------------------------------------------------------------


def celery_app(cfg: VerifierConfig) -> Celery:
    """The Celery application of the fleet: Redis as broker, JSON only, late acks, one
    job prefetched per worker thread, the configured visibility timeout."""
    from celery import Celery

    vis = cfg.replay_visibility_timeout_s
    app = Celery("bytereplay", broker=cfg.broker, set_as_current=False)
    app.conf.update(
        task_serializer="json", accept_content=["json"], result_serializer="json",
        task_ignore_result=True,  # outcomes travel as fleet:outcome:<id>, first wins
        task_acks_late=True, task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": vis,
            # Look for jobs of dead workers often enough for the timeout to mean something.
            "unacked_restore_interval": max(1, min(10, int(vis / 2))),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False, worker_redirect_stdouts=False,
        worker_send_task_events=False, task_send_sent_event=False,
        worker_enable_remote_control=False,
    )
    return app


# -- shared state in Redis ------------------------------------------------------------------


class FleetState:
    """Outcomes, answers and advertisements in the fleet's Redis."""

    def __init__(self, url: str, prefix: str, *, ttl_s: float, heartbeat_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        import redis

        self.prefix, self.ttl_ms = prefix, int(ttl_s * 1000)
        self.heartbeat_s = heartbeat_s
        self.clock = clock
        self.client = redis.Redis.from_url(url, socket_timeout=10.0, socket_connect_timeout=5.0,
                                           health_check_interval=30)

    def _key(self, *parts: str) -> str:
        return self.prefix + "fleet:" + ":".join(parts)

    # outcomes and answers: the first stored wins
    def settle(self, job_id: str, outcome: ReplayOutcome) -> ReplayOutcome:
        """Store `outcome` unless one is stored already; the stored one."""
        key = self._key("outcome", job_id)
        text = json.dumps(outcome_to_wire(outcome), separators=(",", ":"))
        if self.client.set(key, text, nx=True, px=self.ttl_ms):
            return outcome
        stored = self.client.get(key)
        return outcome if stored is None else parse_outcome(stored)

    def outcome(self, job_id: str) -> ReplayOutcome | None:
        stored = self.client.get(self._key("outcome", job_id))
        return None if stored is None else parse_outcome(stored)

    def has_outcome(self, job_id: str) -> bool:
        return bool(self.client.exists(self._key("outcome", job_id)))

    def answer_once(self, job_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        """Store the front end's answer unless one is stored already; the stored one."""
        key = self._key("answer", job_id)
        if self.client.set(key, json.dumps(doc, separators=(",", ":")), nx=True,
                           px=self.ttl_ms):
            return doc
        stored = self.client.get(key)
        if stored is None:
            return doc
        found = strict_json_loads(stored, max_bytes=MAX_OUTCOME_BYTES)
        if not isinstance(found, dict):
            raise EvidenceError("stored answer: expected an object")
        return found

    # advertisements
    @property
    def lapse_ms(self) -> int:
        return int(self.heartbeat_s * HEARTBEATS_TO_LAPSE * 1000)

    def advertise(self, worker: str, digests: list[str], concurrency: int) -> None:
        expires = int(self.clock() * 1000) + self.lapse_ms
        pipe = self.client.pipeline()
        for digest in digests:
            pipe.hset(self._key("model", digest), worker, expires)
            pipe.pexpire(self._key("model", digest), self.lapse_ms)
        pipe.hset(self._key("workers"), worker, json.dumps(
            {"digests": digests, "concurrency": concurrency, "expires": expires}))
        pipe.execute()

    def withdraw(self, worker: str, digests: list[str]) -> None:
        pipe = self.client.pipeline()
        for digest in digests:
            pipe.hdel(self._key("model", digest), worker)
        pipe.hdel(self._key("workers"), worker)
        pipe.execute()

    def model_workers(self, digest: str) -> int:
        """Live workers advertising `digest` (lapsed entries are dropped)."""
        now = int(self.clock() * 1000)
        found = self.client.hgetall(self._key("model", digest))
        lapsed = [w for w, exp in found.items() if int(exp) <= now]
        if lapsed:
            self.client.hdel(self._key("model", digest), *lapsed)
        return len(found) - len(lapsed)

    def workers(self) -> dict[str, dict[str, Any]]:
        """Live workers: name -> {"digests", "concurrency", "expires"}."""
        now = int(self.clock() * 1000)
        out: dict[str, dict[str, Any]] = {}
        lapsed: list[Any] = []
        for name, raw in self.client.hgetall(self._key("workers")).items():
            try:
                doc = json.loads(raw)
                alive = int(doc["expires"]) > now
            except (ValueError, KeyError, TypeError):
                alive = False
            if alive:
                out[name.decode() if isinstance(name, bytes) else str(name)] = doc
            else:
                lapsed.append(name)
        if lapsed:
            self.client.hdel(self._key("workers"), *lapsed)
        return out

    def queue_depth(self, digest: str) -> int:
        return int(self.client.llen(queue_name(self.prefix, digest)))

    def close(self) -> None:
        self.client.close()


# -- the front end's side -------------------------------------------------------------------


class FleetClient:
    """Sends replay jobs and waits for their outcomes (one waiting thread per job, from the
    verifier's pool). Thread-safe."""

    def __init__(self, cfg: VerifierConfig, metrics: Metrics,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.metrics, self.clock = cfg, metrics, clock
        self.state = FleetState(cfg.broker, cfg.redis_prefix, ttl_s=cfg.result_ttl_s,
                                heartbeat_s=cfg.replay_heartbeat_s)
        self.app = celery_app(cfg)
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()

    def _sleep(self, seconds: float) -> None:
        """Pause a waiting job; a front end shutting down stops waiting (its waiting results
        are stored as failed; the workers still store the outcomes)."""
        if self._closing.wait(seconds):
            raise StoreUnavailable("the verifier is shutting down; the replay's outcome is "
                                   "not collected here")

    def _wait_for_worker(self, digest: str, wait_s: float) -> bool:
        deadline = self.clock() + wait_s
        while True:
            if self.state.model_workers(digest) > 0:
                return True
            if self.clock() >= deadline:
                return False
            self._sleep(min(0.25, max(0.0, deadline - self.clock())))

    def _no_worker(self, digest: str, any_longer: bool = False) -> str:
        return (f"no replay worker holds model {digest}"
                f"{' any longer' if any_longer else ''} (waited "
                f"{self.cfg.replay_worker_wait_s:g} s)")

    def replay(self, job_id: str, request: Any, record: RunRecord,
               method: str | None) -> ReplayOutcome:
        """The outcome of replaying (request, record) on the fleet; never raises for a bad
        run or a missing worker (the outcome says why). Raises `StoreUnavailable` (503)
        when the fleet's Redis fails."""
        try:
            return self._replay(job_id, request, record, method)
        except BytereplayError:
            raise
        except Exception as exc:  # redis or kombu: the broker is away, not the Evidence's fault
            raise StoreUnavailable(f"the replay fleet's Redis failed: {type(exc).__name__}") \
                from None

    def _replay(self, job_id: str, request: Any, record: RunRecord,
                method: str | None) -> ReplayOutcome:
        refused = preconditions(request, record)
        if refused is not None:
            return refused
        digest = str(record.get("model.digest"))
        with self._lock:
            self._seen.add(digest)
        wait_s = self.cfg.replay_worker_wait_s
        if not self._wait_for_worker(digest, wait_s):
            return self.state.settle(job_id, not_run(self._no_worker(digest), request="ok"))
        job = Job(job_id, digest, method, request, record)
        sent = self.clock()
        self.app.send_task(TASK, args=[job.to_text()], queue=queue_name(self.cfg.redis_prefix,
                                                                         digest),
                           task_id=job_id)
        give_up = sent + self.cfg.result_ttl_s
        pause, last_worker, next_check = POLL_FIRST_S, sent, sent + 1.0
        while True:
            outcome = self.state.outcome(job_id)
            now = self.clock()
            if outcome is not None:
                self.metrics.replay_job_seconds.observe(now - sent)
                return outcome
            if now >= next_check:  # is anyone left who could take it?
                next_check = now + 1.0
                if self.state.model_workers(digest) > 0:
                    last_worker = now
                elif now - last_worker >= wait_s:
                    return self.state.settle(job_id, not_run(
                        self._no_worker(digest, any_longer=True), request="ok"))
            if now >= give_up:
                return self.state.settle(job_id, not_run(
                    f"no replay result within {give_up - sent:g} s", request="ok"))
            self._sleep(pause)
            pause = min(POLL_MAX_S, pause * 2)

    def answer_once(self, job_id: str, doc: dict[str, Any]) -> dict[str, Any]:
        try:
            return self.state.answer_once(job_id, doc)
        except BytereplayError:
            raise
        except Exception as exc:  # as in `replay`
            raise StoreUnavailable(f"the replay fleet's Redis failed: {type(exc).__name__}") \
                from None

    def refresh_metrics(self) -> None:
        """Queue depth per model, live workers (all, and per model) into the metrics."""
        m = self.metrics
        try:
            workers = self.state.workers()
            digests = set(self._seen)
            for doc in workers.values():
                digests.update(str(d) for d in doc.get("digests", []))
            m.replay_workers.set(len(workers))
            for digest in sorted(digests):
                m.replay_queue_depth.labels(digest).set(self.state.queue_depth(digest))
                m.replay_model_workers.labels(digest).set(
                    sum(digest in doc.get("digests", []) for doc in workers.values()))
        except (BytereplayError, OSError, ValueError) as exc:
            log.warning("replay fleet metrics not read: %s", exc)
        except Exception as exc:  # redis.RedisError: metrics must not fail the scrape
            log.warning("replay fleet metrics not read: %s", type(exc).__name__)

    def info(self) -> dict[str, Any]:
        try:
            workers = self.state.workers()
        except Exception as exc:  # the broker is down: /v1/info still answers
            workers = {}
            log.warning("replay fleet not reachable: %s", type(exc).__name__)
        return {"backend": "celery", "broker": redact(self.cfg.broker),
                "visibility_timeout_s": self.cfg.replay_visibility_timeout_s,
                "worker_wait_s": self.cfg.replay_worker_wait_s,
                "workers": {name: {"models": doc.get("digests", []),
                                   "concurrency": doc.get("concurrency")}
                            for name, doc in sorted(workers.items())}}

    def stop_waiting(self) -> None:
        self._closing.set()

    def close(self) -> None:
        self._closing.set()
        self.state.close()
        self.app.close()
