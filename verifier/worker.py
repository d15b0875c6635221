"""`bytereplay worker`: a replay worker of the fleet (see `verifier.fleet`).

    bytereplay worker [--config FILE] [--home DIR] [--concurrency N] [--queues DIGEST ...]

It reads the verifier configuration (`model_dir`, the replay environment, `broker_url`,
`redis_prefix`, `replay_visibility_timeout_s`, `replay_heartbeat_s`), finds the models
under `model_dir` by digest and loads them (`--queues` names the digests to serve; default
every model found), then advertises them in Redis every `replay_heartbeat_s` and
consumes their queues only, in `--concurrency` threads (default `replay_workers`).

A job is run once per delivery unless its outcome is stored already (a redelivery after
another worker finished it); its outcome is stored with `SET NX` (the first wins). A job
that cannot be read is logged and dropped: it came from no front end of ours.
One log line when a job starts and one when it ends, naming the appraisal id.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import threading

from bytereplay.errors import BytereplayError, UsageError
from bytereplay.home import Home
from bytereplay.web.access_log import configure_logging
from verifier import config as config_mod
from verifier.fleet import TASK, FleetState, celery_app, parse_job, queue_name, redact
from verifier.replay import DIGEST_CACHE_FILE, Replayer, ReplaySettings, not_run

log = logging.getLogger("bytereplay.worker")


def _models(replayer: Replayer, wanted: list[str] | None) -> list[str]:
    """The digests to serve, their engines loaded."""
    found = replayer.index.scan()
    if wanted:
        missing = [d for d in wanted if d not in found]
        if missing:
            raise UsageError(f"no model with digest {missing[0]} under "
                             f"{replayer.settings.model_dir} (found: {', '.join(found) or 'none'})")
        digests = list(dict.fromkeys(wanted))
    else:
        digests = sorted(found)
    if not digests:
        raise UsageError(f"no model found under {replayer.settings.model_dir}")
    for digest in digests:
        if replayer.engine_for(digest) is None:
            raise UsageError(f"model {digest} could not be loaded")
        log.info("worker: model %s loaded from %s", digest, found[digest])
    return digests


def run_job(replayer: Replayer, state: FleetState, text: str, worker: str) -> str:
    """One delivery of a job: its verdict, 'duplicate' when an outcome is stored already,
    'refused' for a job that cannot be read."""
    try:
        job = parse_job(text)
    except BytereplayError as exc:
        log.error("worker %s: refused a replay job: %s", worker, exc.detail)
        return "refused"
    if state.has_outcome(job.id):
        log.info("replay skipped id=%s worker=%s: an outcome is stored already", job.id, worker)
        return "duplicate"
    log.info("replay started id=%s worker=%s model=%s", job.id, worker, job.digest)
    try:
        outcome = replayer.replay(job.request, job.record, method=job.method)
    except Exception as exc:  # an engine bug: the front end must not wait for nothing
        log.exception("replay failed id=%s worker=%s", job.id, worker)
        outcome = not_run(f"the replay failed on a worker ({type(exc).__name__})",
                          request="ok")
    stored = state.settle(job.id, outcome)
    log.info("replay done id=%s worker=%s verdict=%s%s", job.id, worker, outcome.verdict,
             "" if stored is outcome else " (an earlier outcome stands)")
    return outcome.verdict


def cmd_worker(args: argparse.Namespace) -> int:
    configure_logging(getattr(args, "log_format", "text"))
    log.setLevel(logging.INFO)  # Celery sets the root logger's level to its own --loglevel
    home = Home.resolve(args.home)
    cfg = config_mod.load(home, args.config)
    concurrency = args.concurrency or cfg.replay_workers
    if concurrency < 1:
        raise UsageError("--concurrency must be at least 1")
    replayer = Replayer(ReplaySettings.from_config(cfg),
                        cache_file=home.root / DIGEST_CACHE_FILE)
    digests = _models(replayer, args.queues)
    name = f"bytereplay-{os.getpid()}@{socket.gethostname()}"
    state = FleetState(cfg.broker, cfg.redis_prefix, ttl_s=cfg.result_ttl_s,
                       heartbeat_s=cfg.replay_heartbeat_s)
    app = celery_app(cfg)

    @app.task(name=TASK, acks_late=True, reject_on_worker_lost=True)  # type: ignore[untyped-decorator]
    def replay_task(text: str) -> str:
        return run_job(replayer, state, text, name)

    stop = threading.Event()

    def heartbeat() -> None:
        while True:
            try:
                state.advertise(name, digests, concurrency)
            except Exception as exc:  # the broker is away: say so, try again next beat
                log.warning("worker %s: advertising failed: %s", name, type(exc).__name__)
            if stop.wait(cfg.replay_heartbeat_s):
                return

    beat = threading.Thread(target=heartbeat, name="fleet-heartbeat", daemon=True)
    state.advertise(name, digests, concurrency)
    beat.start()
    queues = [queue_name(cfg.redis_prefix, d) for d in digests]
    log.info("worker %s serving %d model(s) on %s, %d thread(s), queues %s", name,
             len(digests), redact(cfg.broker), concurrency, ", ".join(queues))
    argv = ["worker", "--hostname", name, "--queues", ",".join(queues),
            "--concurrency", str(concurrency), "--pool", "threads", "--loglevel", "WARNING",
            "--without-heartbeat", "--without-gossip", "--without-mingle"]
    try:
        app.worker_main(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else 1
    finally:
        stop.set()
        try:
            state.withdraw(name, digests)
        except Exception as exc:  # going away anyway; the advertisement lapses on its own
            log.warning("worker %s: withdrawing failed: %s", name, type(exc).__name__)
        state.close()
    return 0
