"""Shared HTTP plumbing for the FastAPI services: problem+json errors and body limits.

Used by the attester service and, through the one-way import, the verifier sidecar.
Every refusal is RFC 9457 `application/problem+json`, never a 500 with a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from bytereplay.encoding import strict_json_loads
from bytereplay.errors import BytereplayError, TooLargeError, UsageError

PROBLEM = "application/problem+json"
log = logging.getLogger("bytereplay.http")


def problem_response(status: int, title: str, detail: str, *, type_: str = "about:blank",
                     instance: str | None = None) -> JSONResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def error_response(exc: BytereplayError, instance: str | None = None) -> JSONResponse:
    return JSONResponse(exc.problem_json(instance), status_code=exc.status, media_type=PROBLEM)


class BodyLimit:
    """Refuse request bodies over `max_bytes` before they are buffered (413 problem+json)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_problem(send, TooLargeError(f"body over {self.max_bytes} bytes"))
            return
        seen = 0
        too_big = False

        async def limited() -> Message:
            nonlocal seen, too_big
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    too_big = True
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _BodyTooLarge:
            await _send_problem(send, TooLargeError(f"body over {self.max_bytes} bytes"))


class _BodyTooLarge(Exception):
    pass


async def _send_problem(send: Send, exc: BytereplayError) -> None:
    resp = error_response(exc)
    await send({"type": "http.response.start", "status": resp.status_code,
                "headers": resp.raw_headers})
    await send({"type": "http.response.body", "body": resp.body})


def install_problem_handlers(app: FastAPI) -> None:
    """Map every error path to problem+json; unexpected errors become a logged 500 problem."""

    @app.exception_handler(BytereplayError)
    async def _ours(request: Request, exc: BytereplayError) -> Response:
        return error_response(exc, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        detail = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg"))
        return error_response(UsageError(detail), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem_response(exc.status_code, "HTTP error", str(exc.detail),
                                instance=request.url.path)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s", request.url.path)
        return problem_response(500, "Internal error", "the server could not complete the request",
                                instance=request.url.path)


async def read_json_body(request: Request, max_bytes: int) -> Any:
    """The request body as strict JSON (duplicate keys, depth, size refused)."""
    body = await request.body()
    if not body:
        raise UsageError("request body is empty; expected JSON")
    return strict_json_loads(body, max_bytes=max_bytes)
