"""The verifier sidecar: FastAPI + uvicorn around `verifier.pipeline.Verifier`.

    POST /v1/challenge          {"size"?: 8..64} -> {"nonce", "issued_at", "expires_at"}
    POST /v1/verify             Evidence -> {"result": <EAR JWT>, "status", "replay"}
                                 body: raw, Content-Type application/eat+jwt or
                                 application/eat+cwt; or JSON {"evidence", "format"?,
                                 "external_tokens"?} (a CWT as unpadded base64url)
                                 ?replay=false skips replay; ?replay_method=full (or
                                 teacher-forced, teacher-forced-then-full) overrides the
                                 configured method for this request; ?async=true answers 202 with
                                 {"id", "poll"} and a Location header, the replay running
                                 in the worker pool
    GET  /v1/results/{id}        202 {"state": "pending"} | 200 {"state": "done", ...} | 404
    POST /v1/external/verify     {"token", "service"?, "nonce"?, "report_data"?} ->
                                 {"service", "claims", "mapped"}
    GET  /.well-known/jwks.json  the EAR verification key
    GET  /v1/info                configuration, trust anchors, policy id, models
    GET  /healthz                200 once ready (store reachable)
    GET  /metrics                Prometheus text
    GET  /openapi.json, /docs    the API description and a page rendering it (no CDN)

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
import logging
import threading
from collections.abc import AsyncIterator
from concurrent.futures import Future
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bytereplay.eat import MEDIA_CWT, MEDIA_JWT, NONCE_MAX, NONCE_MIN
from bytereplay.errors import (
    BytereplayError,
    MediaTypeError,
    NotFoundError,
    QueueFull,
    StoreUnavailable,
    UsageError,
)
from bytereplay.home import Home
from bytereplay.web.access_log import AccessLog, configure_logging, note
from bytereplay.web.apidocs import ServiceApp, json_answer, json_body, problems
from bytereplay.web.http import BodyLimit, install_problem_handlers, read_json_body
from bytereplay.web.serving import bind, serve, url_of
from verifier import apidocs as doc
from verifier import config as config_mod
from verifier.config import VerifierConfig
from verifier.nonces import new_result_id
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


def create_app(config: VerifierConfig, *, verifier: Verifier | None = None) -> FastAPI:
    """The sidecar app. The verifier (store, keys, policy) is built here, closed on shutdown."""
    v = verifier or Verifier(config)

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
        issued = await run_in_threadpool(v.issue_nonce, size)
        return JSONResponse(issued.to_json(), headers={"Cache-Control": "no-store"})

    def _sync_part(data: bytes | str, fmt: str | None, want_replay: bool,
                   tokens: list[Any] | None,
                   method: str | None) -> tuple[Result | None, Appraisal | None]:
        """Every step up to replay; the whole appraisal when no replay is due."""
        a = v.begin(data, fmt, replay=want_replay, external_tokens=tokens, replay_method=method)
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
              | problems(400, 413, 415, 503))
    async def verify(request: Request) -> JSONResponse:
        want_replay = _flag(request, "replay", True)
        run_async = _flag(request, "async", False)
        method = request.query_params.get("replay_method")  # e.g. full, for a strict RP
        check_replay_method(method)
        data, fmt, tokens = await _read_evidence(request, config.max_body_bytes)
        if want_replay and v.queue_full():  # before the nonce is consumed
            raise QueueFull("the replay queue is full; try again later")
        if not run_async:
            # One thread hop when nothing is left for the replay pool.
            result, pending = await run_in_threadpool(_sync_part, data, fmt, want_replay, tokens,
                                                      method)
            if result is None:
                assert pending is not None
                result = await asyncio.wrap_future(v.submit(pending))
            note(request, ear_status=result.status, replay=str(result.replay.get("verdict")))
            return JSONResponse(result.to_json())
        # Async: the steps up to replay here, the rest (replay, policy, EAR) in the pool.
        result_id = new_result_id()

        def accept() -> Appraisal:
            a = v.begin(data, fmt, replay=want_replay, external_tokens=tokens,
                        replay_method=method)
            v.store.put_pending(result_id)
            return a

        future = v.submit(await run_in_threadpool(accept))

        def store_result(f: Future[Result]) -> None:
            try:
                v.store.put_result(result_id, f.result().to_json())
            except Exception:
                log.exception("appraisal %s failed", result_id)
                v.store.put_result(result_id, {"state": "failed",
                                               "detail": "the appraisal failed"})

        future.add_done_callback(store_result)
        note(request, ear_status="pending", replay="pending")
        poll = f"/v1/results/{result_id}"
        return JSONResponse({"id": result_id, "state": "pending", "poll": poll},
                            status_code=202, headers={"Location": poll})

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
        return Response(v.metrics.render(), media_type=v.metrics.content_type)

    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(AccessLog)  # outermost: it also logs what BodyLimit refuses
    return app


def cmd_serve(args: argparse.Namespace) -> int:
    """`bytereplay serve verifier --host --port --config --home --log-format`."""
    configure_logging(getattr(args, "log_format", "text"))
    sockets = bind(args.host, args.port)  # a busy port: one line, exit 2, nothing logged
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
