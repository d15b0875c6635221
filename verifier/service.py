"""The verifier sidecar: FastAPI + uvicorn around `verifier.pipeline.Verifier`.

    POST /v1/challenge          {"size"?: 8..64} -> {"nonce", "issued_at", "expires_at"}
    POST /v1/verify             Evidence -> {"result": <EAR JWT>, "result_type", "status",
                                 "replay"}; the EAR's profile is the configured one
                                 (`ear_profile`) unless `Accept` names one:
                                 `application/eat+jwt; eat_profile="<uri>"` (also
                                 `application/eat-jwt`); without JSON in `Accept` the
                                 answer is the bare EAR with that media type; an unknown
                                 profile is 406 (`bytereplay.web.accept.choose_ear`)
                                 body: raw, Content-Type application/eat+jwt or
                                 application/eat+cwt; or JSON {"evidence", "format"?,
                                 "external_tokens"?} (a CWT as unpadded base64url)
                                 ?replay=false skips replay; ?replay_method=full (or
                                 teacher-forced, teacher-forced-then-full) overrides the
                                 configured method for this request; ?async=true answers 202 with
                                 {"id", "poll"} and a Location header, the replay running
                                 in the worker pool (or on the replay fleet); on the fleet a
                                 request without it waits `replay_sync_timeout_s`, then
                                 answers the same 202
    GET  /v1/results/{id}        202 {"state": "pending"} | 200 {"state": "done", ...} | 404
    POST /v1/external/verify     {"token", "service"?, "nonce"?, "report_data"?} ->
                                 {"service", "claims", "mapped"}
    POST /endorsement-provisioning/v1/submit
                                 a CoRIM (application/rim+cbor, or signed application/rim+cose)
                                 with Authorization: Bearer <token> -> 200
                                 application/vnd.veraison.provisioning-session+json
                                 {"status": "success" | "failed", "expiry", "failure-reason"?};
                                 404 while no token is configured, 401 without the token,
                                 406 when Accept excludes the session type, 415 another
                                 content type, 400 an empty body, 413 an oversized one
                                 (see verifier/provisioning.py)
    GET  /.well-known/jwks.json  the EAR verification key
    GET  /v1/info                configuration, trust anchors, policy id, models
    GET  /healthz                200 once ready (store reachable)
    GET  /metrics                Prometheus text
    GET  /openapi.json, /docs    the API description and a page rendering it (no CDN)
    Veraison's challenge-response API (/challenge-response/v1/newSession, .../session/{id})
    and GET /.well-known/veraison/verification: `verifier.veraison_api`

Where no step can wait on the network (SQLite, no collateral URL), nonces are issued and
Evidence is appraised up to replay on the event loop; otherwise in a thread
(`appraises_inline`). Replays run in the replay pool.

One log line per request (`bytereplay.web.access_log`), with the EAR status and the replay
verdict for /v1/verify; `bytereplay serve verifier --log-format json` for JSON lines.

Evidence that fails a check yields a negative EAR (HTTP 200), never a 5xx. Requests
that cannot be appraised at all are refused with problem+json: a body that is not the
declared JSON (400), an unknown content type (415), an oversized body or Evidence (413),
an unknown result id (404), a full replay queue or unreachable store (503).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import logging
import os
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bytereplay import corim
from bytereplay.eat import MEDIA_CWT, MEDIA_JWT, NONCE_MAX, NONCE_MIN
from bytereplay.errors import (
    BytereplayError,
    CorimError,
    MediaTypeError,
    NotAcceptableError,
    NotFoundError,
    QueueFull,
    SignatureError,
    StoreUnavailable,
    TooLargeError,
    UsageError,
)
from bytereplay.home import Home
from bytereplay.keyring import KeyRing
from bytereplay.web.accept import EarChoice, choose_ear
from bytereplay.web.access_log import AccessLog, configure_logging, note
from bytereplay.web.apidocs import Responses, ServiceApp, json_answer, json_body, problems
from bytereplay.web.http import BodyLimit, install_problem_handlers, read_json_body
from bytereplay.web.serving import bind, reuse_port_twins, serve, serve_workers, url_of
from verifier import apidocs as doc
from verifier import config as config_mod
from verifier import provisioning, veraison_api
from verifier.config import VerifierConfig
from verifier.nonces import SqliteStore
from verifier.pipeline import Appraisal, Verifier, check_replay_method
from verifier.results import Result

log = logging.getLogger("bytereplay.verifier")

JSON_TYPES = ("application/json",)
MAX_JSON_BYTES = 64 * 1024




def _flag(request: Request, name: str, default: bool) -> bool:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise UsageError(f"query parameter {name!r} must be true or false")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def _read_evidence(request: Request, max_body: int) -> tuple[bytes | str, str | None,
                                                                    list[Any] | None]:
    media = _media_type(request)
    if media == MEDIA_JWT:
        body = await request.body()
        try:
            return body.decode("ascii").strip(), "jwt", None
        except UnicodeDecodeError:
            raise UsageError("an application/eat+jwt body is ASCII text") from None
    if media == MEDIA_CWT:
        return await request.body(), "cwt", None
    if media in JSON_TYPES:
        doc = await read_json_body(request, max_body)
        if not isinstance(doc, dict):
            raise UsageError("the JSON body is an object {\"evidence\", \"format\"}")
        unknown = sorted(set(doc) - {"evidence", "format", "external_tokens"})
        if unknown:
            raise UsageError(f"unknown member {unknown[0]!r} in the JSON body")
        evidence, fmt = doc.get("evidence"), doc.get("format")
        if not isinstance(evidence, str) or not evidence:
            raise UsageError("'evidence' is the Evidence as text (a JWT, or a CWT as "
                             "unpadded base64url)")
        if fmt is not None and fmt not in ("jwt", "cwt"):
            raise UsageError("'format' is 'jwt' or 'cwt'")
        tokens = doc.get("external_tokens")
        if tokens is not None and (not isinstance(tokens, list) or
                                   not all(isinstance(t, str) for t in tokens)):
            raise UsageError("'external_tokens' is a list of JWT texts")
        return evidence, fmt, tokens
    raise MediaTypeError(
        f"content type {media or '(none)'!r} is not accepted; send {MEDIA_JWT}, "
        f"{MEDIA_CWT} or application/json")


def accepts(header: str | None, media: str) -> bool:
    """Whether an Accept header allows `media` (absent, */*, type/* or the type itself,
    with a q-value above 0)."""
    if header is None or not header.strip():
        return True
    main = media.split("/")[0]
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        name = fields[0].lower()
        q = next((f[2:] for f in fields[1:] if f.replace(" ", "").lower().startswith("q=")), "1")
        try:
            weight = float(q.split("=")[-1])
        except ValueError:
            weight = 0.0
        if weight > 0 and name in ("*/*", f"{main}/*", media):
            return True
    return False


_PROVISIONING_ANSWER: Responses = {200: {
    "description": "The provisioning session's outcome",
    "content": {provisioning.SESSION_MEDIA: {"schema": doc.PROVISIONING_SESSION}}}}


def _now_text(now: float) -> str:
    return datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
def appraises_inline(config: VerifierConfig, store_kind: str) -> bool:
    """Whether nonces are issued, and Evidence appraised up to replay, on the event loop.

    Where no step can wait on the network (the SQLite store, and no TEE collateral or
    certificates fetched from a URL), an appraisal is CPU work of about half a
    millisecond: done on the event loop it saves the hand-off to a thread and back, which
    under load costs more than the work (the two threads take turns on the GIL). With
    Redis, or a URL to fetch from, the work goes to a thread so that the loop keeps
    serving while it waits. Replays always run in the replay pool."""
    if store_kind != "sqlite":
        return False
    return not any(str(loc).startswith(("http://", "https://"))
                   for t in config.tee.values() for loc in (t.collateral, t.certs) if loc)


def _ear_answer(result: Result, choice: EarChoice) -> Response:
    """The JSON answer, or the bare EAR where the client accepts only the EAR media type."""
    if choice.raw:
        return Response(result.token, media_type=result.media_type,
                        headers={"Cache-Control": "no-store"})
    return JSONResponse(result.to_json())


def create_app(config: VerifierConfig, *, verifier: Verifier | None = None) -> FastAPI:
    """The sidecar app. The verifier (store, keys, policy) is built here, closed on shutdown."""
    v = verifier or Verifier(config)
    inline = appraises_inline(config, v.store.kind)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if v.replayer is not None:  # hash the model directories before the first replay
            threading.Thread(target=v.replayer.index.scan, name="model-scan", daemon=True).start()
        try:
            yield
        finally:
            await run_in_threadpool(v.close)

    app = ServiceApp(title="bytereplay verifier", version="1", lifespan=lifespan,
                     description="Issues nonces, appraises Evidence (signatures, TEE quote, "
                                 "reference values, preflight, replay) and answers a signed "
                                 "EAR. Evidence that fails a check gets a negative EAR "
                                 "(200); a request that cannot be appraised is refused "
                                 "with application/problem+json.")
    app.state.verifier = v
    install_problem_handlers(app)

    @app.exception_handler(BytereplayError)
    async def _ours(request: Request, exc: BytereplayError) -> Response:
        v.metrics.transport_errors.labels(str(exc.status)).inc()
        return JSONResponse(exc.problem_json(request.url.path), status_code=exc.status,
                            media_type="application/problem+json")

    @app.post("/v1/challenge", summary="Issue a single-use nonce",
              openapi_extra=json_body(doc.CHALLENGE_REQUEST, required=False,
                                      description="optional; an empty body takes the default"),
              responses=json_answer("A fresh nonce and its window", doc.CHALLENGE)
              | problems(400, 413, 415, 503))
    async def challenge(request: Request) -> JSONResponse:
        size = config.nonce_size
        if await request.body():
            if _media_type(request) not in JSON_TYPES:
                raise MediaTypeError("send the challenge options as application/json")
            doc = await read_json_body(request, 4096)
            if not isinstance(doc, dict) or set(doc) - {"size"}:
                raise UsageError("the challenge body is {\"size\": 8..64}")
            if "size" in doc:
                size = doc["size"]
                if isinstance(size, bool) or not isinstance(size, int) or \
                        not NONCE_MIN <= size <= NONCE_MAX:
                    raise UsageError(f"size must be an integer in {NONCE_MIN}..{NONCE_MAX}")
        issued = v.issue_nonce(size) if inline else await run_in_threadpool(v.issue_nonce, size)
        return JSONResponse(issued.to_json(), headers={"Cache-Control": "no-store"})

    def _sync_part(data: bytes | str, fmt: str | None, want_replay: bool,
                   tokens: list[Any] | None, method: str | None,
                   profile: str) -> tuple[Result | None, Appraisal | None]:
        """Every step up to replay; the whole appraisal when no replay is due."""
        a = v.begin(data, fmt, replay=want_replay, external_tokens=tokens, replay_method=method,
                    profile=profile)
        if v.needs_replay(a):
            return None, a
        return v.finish(a), None

    @app.post("/v1/verify", summary="Appraise Evidence and answer a signed EAR",
              description="The body is the raw Evidence (application/eat+jwt or "
                          "application/eat+cwt) or a JSON envelope. The nonce is consumed; "
                          "the run is replayed unless replay=false. With async=true the "
                          "answer is 202 and the result is polled at /v1/results/{id}.",
              openapi_extra=doc.verify_extra(),
              responses=json_answer("The EAR, its status and the replay verdict", doc.RESULT)
              | json_answer("Accepted; poll the result", doc.ACCEPTED, status=202,
                            headers={"Location": {"description": "the poll path",
                                                  "schema": {"type": "string"}}})
              | problems(400, 406, 413, 415, 503))
    async def verify(request: Request) -> Response:
        want_replay = _flag(request, "replay", True)
        run_async = _flag(request, "async", False)
        method = request.query_params.get("replay_method")  # e.g. full, for a strict RP
        check_replay_method(method)
        choice = choose_ear(request.headers.get("accept"), config.ear_profile)
        profile = choice.profile.uri
        data, fmt, tokens = await _read_evidence(request, config.max_body_bytes)
        if want_replay and v.queue_full():  # before the nonce is consumed
            raise QueueFull("the replay queue is full; try again later")
        def store_result(result_id: str) -> Callable[[Future[Result]], None]:
            def store(f: Future[Result]) -> None:
                try:
                    v.store.put_result(result_id, f.result().to_json())
                except Exception:
                    log.exception("appraisal %s failed", result_id)
                    v.store.put_result(result_id, {"state": "failed",
                                                   "detail": "the appraisal failed"})
            return store

        def accepted(result_id: str) -> JSONResponse:
            note(request, ear_status="pending", replay="pending")
            poll = f"/v1/results/{result_id}"
            return JSONResponse({"id": result_id, "state": "pending", "poll": poll},
                                status_code=202, headers={"Location": poll})

        if not run_async:
            if inline and tokens is None:  # external tokens may fetch their service's JWKS
                result, pending = _sync_part(data, fmt, want_replay, tokens, method, profile)
            else:  # one thread hop when nothing is left for the replay pool
                result, pending = await run_in_threadpool(_sync_part, data, fmt, want_replay,
                                                          tokens, method, profile)
            if result is None:
                assert pending is not None
                if v.fleet is None:
                    result = await asyncio.wrap_future(v.submit(pending))
                else:  # the fleet: wait a while, then answer as async=true does
                    await run_in_threadpool(v.store.put_pending, pending.id)
                    future = v.submit(pending)
                    future.add_done_callback(store_result(pending.id))
                    try:
                        result = await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(
                            future)), timeout=config.replay_sync_timeout_s)
                    except TimeoutError:
                        return accepted(pending.id)
            note(request, ear_status=result.status, replay=str(result.replay.get("verdict")))
            return _ear_answer(result, choice)
        # Async: the steps up to replay here, the rest (replay, policy, EAR) in the pool.

        def accept() -> Appraisal:
            a = v.begin(data, fmt, replay=want_replay, external_tokens=tokens,
                        replay_method=method, profile=profile)
            v.store.put_pending(a.id)
            return a

        appraisal = await run_in_threadpool(accept)
        v.submit(appraisal).add_done_callback(store_result(appraisal.id))
        return accepted(appraisal.id)

    @app.get("/v1/results/{result_id}", summary="An async appraisal's result",
             responses=json_answer("Done (or failed)", doc.STORED_RESULT)
             | json_answer("Still pending", doc.STORED_RESULT, status=202) | problems(404, 503))
    async def results(result_id: str) -> JSONResponse:
        if not 8 <= len(result_id) <= 64:
            raise NotFoundError(f"no result {result_id!r}")
        doc = await run_in_threadpool(v.store.get_result, result_id)
        if doc is None:
            raise NotFoundError(f"no result {result_id!r} (unknown or expired)")
        return JSONResponse(doc, status_code=202 if doc.get("state") == "pending" else 200)

    @app.post("/v1/external/verify", summary="Verify an external attestation service's token",
              openapi_extra=json_body(doc.EXTERNAL_REQUEST),
              responses=json_answer("The service and the verified claims", doc.EXTERNAL_ANSWER)
              | problems(400, 413, 415))
    async def external_verify(request: Request) -> JSONResponse:
        doc = await read_json_body(request, 64 * 1024)
        if not isinstance(doc, dict) or not isinstance(doc.get("token"), str) or \
                set(doc) - {"token", "service", "nonce", "report_data"}:
            raise UsageError("the body is {\"token\": <JWT or NRAS answer>, \"service\"?: "
                             "<name>, \"nonce\"?: <hex>, \"report_data\"?: <hex>}")
        service = doc.get("service")
        if service is not None and not isinstance(service, str):
            raise UsageError("'service' is text")
        hexes = {}
        for name, size in (("nonce", 32), ("report_data", 64)):
            text = doc.get(name)
            try:
                hexes[name] = None if text is None else bytes.fromhex(text)
            except (TypeError, ValueError):
                hexes[name] = b""
            if hexes[name] is not None and len(hexes[name] or b"") != size:
                raise UsageError(f"'{name}' is {2 * size} hex digits")
        token = await run_in_threadpool(
            functools.partial(v.external.verify, doc["token"], service, gpu_nonce=hexes["nonce"],
                              report_data=hexes["report_data"], now=v.now().timestamp()))
        return JSONResponse({"service": token.service, "claims": token.claims,
                             "mapped": token.mapped})

    @app.post("/endorsement-provisioning/v1/submit",
              summary="Provision reference values as a CoRIM (Veraison's provisioning API)",
              description="The body is a CoRIM: application/rim+cbor (unsigned) or "
                          "application/rim+cose (COSE_Sign1, verified with a configured "
                          "provisioning key). Guarded by the configured bearer token; off "
                          "(404) without one. A CoRIM that is refused answers 200 with "
                          "status 'failed' and the reason, and changes nothing stored.",
              openapi_extra={"requestBody": {"required": True, "content": {
                  m: {"schema": {"type": "string", "format": "binary"}}
                  for m in provisioning.CORIM_MEDIA}}},
              responses=_PROVISIONING_ANSWER | problems(400, 401, 404, 406, 413, 415, 503))
    async def provision(request: Request) -> Response:
        v.provisioning.authorize(request.headers.get("authorization"))
        if not accepts(request.headers.get("accept"), provisioning.SESSION_MEDIA):
            raise NotAcceptableError(f"the only answer is {provisioning.SESSION_MEDIA}")
        media = _media_type(request)
        if media not in provisioning.CORIM_MEDIA:
            exc = MediaTypeError(f"content type {media or '(none)'!r} is not accepted; send "
                                 f"{' or '.join(provisioning.CORIM_MEDIA)}")
            return JSONResponse(exc.problem_json(request.url.path), status_code=exc.status,
                                media_type="application/problem+json",
                                headers={"Accept": ", ".join(provisioning.CORIM_MEDIA)})
        body = await request.body()
        if not body:
            raise UsageError("empty body: send the CoRIM")
        if len(body) > corim.MAX_CORIM_BYTES:
            raise TooLargeError(f"a CoRIM is at most {corim.MAX_CORIM_BYTES} bytes")
        try:
            read = await run_in_threadpool(v.provisioning.submit, body, media)
        except (CorimError, SignatureError, UsageError) as exc:
            note(request, provisioning="failed")
            session = {"status": "failed", "expiry": _now_text(v.clock()),
                       "failure-reason": f"{exc.problem}: {exc.detail}"}
            return JSONResponse(session, media_type=provisioning.SESSION_MEDIA)
        except OSError as exc:
            raise StoreUnavailable(f"the provisioned values cannot be stored: "
                                   f"{exc.strerror}") from None
        log.info("provisioned reference values from CoRIM %r (%s)", read.id,
                 f"signed by {read.signer!r}" if read.signed else "unsigned")
        note(request, provisioning="success")
        return JSONResponse({"status": "success", "expiry": _now_text(v.clock())},
                            media_type=provisioning.SESSION_MEDIA)

    @app.get("/.well-known/jwks.json", summary="The EAR verification key set",
             responses=json_answer("Public keys (JWK Set)", doc.JWKS))
    async def jwks() -> JSONResponse:
        return JSONResponse(v.jwks(), headers={"Cache-Control": "public, max-age=300"})

    @app.get("/v1/info", summary="Configuration, trust anchors, policy id, models",
             responses=json_answer("The verifier's setup", doc.INFO))
    async def info() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(v.info))

    @app.get("/healthz", summary="Readiness (the store is reachable)",
             responses=json_answer("Ready", doc.HEALTH) | problems(503))
    async def healthz() -> JSONResponse:
        try:
            await run_in_threadpool(v.store.ping)
        except Exception as exc:
            raise StoreUnavailable(f"the store is not reachable: {exc}") from None
        return JSONResponse({"status": "ok", "store": v.store.kind})

    @app.get("/metrics", summary="Prometheus metrics",
             responses={200: {"description": "Prometheus text exposition",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    async def metrics() -> Response:
        await run_in_threadpool(v.refresh_metrics)
        return Response(v.metrics.render(), media_type=v.metrics.content_type)

    veraison_api.install(app, v)

    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(AccessLog)  # outermost: it also logs what BodyLimit refuses
    return app


# `--workers N`: each spawned process builds its app from these, set by the parent.
WORKER_ENV = "BYTEREPLAY_VERIFIER_WORKER"


def app_from_environment() -> FastAPI:
    """The app of one `--workers` process (uvicorn's factory): the parent's home,
    configuration and log format, passed in `$BYTEREPLAY_VERIFIER_WORKER`."""
    settings = json.loads(os.environ[WORKER_ENV])
    configure_logging(settings["log_format"])
    home = Home.resolve(settings["home"])
    app = create_app(config_mod.load(home, settings["config"]))
    log.info("verifier process %d ready", os.getpid())
    return app


def _serve_workers(args: argparse.Namespace, sockets: list[Any]) -> int:
    try:
        home = Home.resolve(args.home)
        cfg = config_mod.load(home, args.config)
        # Checked once here, so that a bad key is one line and exit 2, not N failed children;
        # a home's first key is made here too, before the children race to make it.
        ring = KeyRing(cfg.ear_key_path, alg=cfg.key_alg, create=cfg.ear_key is None)
        if cfg.store == "sqlite":  # the schema, once, before the children open the file
            SqliteStore(cfg.store_path).close()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    config = None if args.config is None else str(Path(args.config).resolve())
    os.environ[WORKER_ENV] = json.dumps({"home": str(home.root), "config": config,
                                         "log_format": getattr(args, "log_format", "text")})
    url = url_of(args.host, sockets)
    log.info("verifier home %s, store %s, EAR key kid %s, %d processes", home.root, cfg.store,
             ring.current.kid, args.workers)
    groups = [sockets] + [reuse_port_twins(sockets) for _ in range(args.workers - 1)]
    return serve_workers("verifier.service:app_from_environment", groups, log_level="warning",
                         on_listening=lambda: log.info("verifier listening on %s (%d processes)",
                                                       url, args.workers))


def cmd_serve(args: argparse.Namespace) -> int:
    """`bytereplay serve verifier --host --port --config --home --log-format --workers`."""
    configure_logging(getattr(args, "log_format", "text"))
    workers = getattr(args, "workers", 1)
    if workers < 1:
        raise UsageError(f"--workers {workers}: expected at least 1")
    # A busy port: one line, exit 2, nothing logged.
    sockets = bind(args.host, args.port, reuse_port=workers > 1)
    if workers > 1:
        return _serve_workers(args, sockets)
    try:
        home = Home.resolve(args.home)
        cfg = config_mod.load(home, args.config)
        app = create_app(cfg)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    v: Verifier = app.state.verifier
    url = url_of(args.host, sockets)
    log.info("verifier home %s, store %s, appraisal policy %s", home.root, v.store.kind,
             v.policy.policy_id)
    return serve(app, sockets, log_level="warning",
                 on_listening=lambda: log.info("verifier listening on %s", url))
