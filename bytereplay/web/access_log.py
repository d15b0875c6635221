"""One log line per HTTP request, for both services, and the text or JSON log format.

`AccessLog` is a pure ASGI middleware, installed outermost, so it also sees the
requests that the body limit, the problem handlers or the router refuse (413, 4xx,
404). Each line names the method, the path, the status and the duration in ms; a
handler adds its own fields with `note(request, ...)` (the verifier names the EAR
status and the replay verdict). Never logged: bodies, Evidence, headers, query
strings, client addresses. The path is the matched route's template where there is
one (`/v1/results/{result_id}`: no result id in the log), otherwise the path as sent,
percent-escaped and cut to `MAX_PATH_CHARS`, so that no request can forge a log line.

`configure_logging("text" | "json")` sets up the root handler for `bytereplay serve`:
with "json" every line, start-up lines included, is one JSON object.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

ACCESS_LOGGER = "bytereplay.access"
NOTES_KEY = "bytereplay.access_notes"  # the ASGI scope key holding a handler's fields
MAX_PATH_CHARS = 200
MAX_NOTE_CHARS = 64
LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

access_log = logging.getLogger(ACCESS_LOGGER)

_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                  b"-._~/!$&'()*+,;=:@%{}")


def note(request: Request, **fields: str | int | None) -> None:
    """Add fields (short text or integers) to this request's log line."""
    notes = request.scope.get(NOTES_KEY)
    if isinstance(notes, dict):
        notes.update({k: v for k, v in fields.items() if v is not None})


def _safe_text(raw: bytes, limit: int) -> str:
    """`raw` as printable ASCII: any other byte as %XX, cut to `limit` characters."""
    out = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw[:limit * 3])
    return out if len(out) <= limit else out[:limit - 3] + "..."


def _path(scope: Scope) -> str:
    route = scope.get("route")
    template = getattr(route, "path", None)
    if isinstance(template, str) and template:
        return _safe_text(template.encode("utf-8", "backslashreplace"), MAX_PATH_CHARS)
    raw = scope.get("raw_path")
    if not isinstance(raw, bytes):
        raw = str(scope.get("path", "")).encode("utf-8", "backslashreplace")
    return _safe_text(raw.split(b"?", 1)[0], MAX_PATH_CHARS)


def _note_value(value: Any) -> str | int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return _safe_text(str(value).encode("utf-8", "backslashreplace"), MAX_NOTE_CHARS)


def access_fields(scope: Scope, status: int, seconds: float) -> dict[str, Any]:
    """The fields of one request's line (method, path, status, duration_ms, notes)."""
    method = _safe_text(str(scope.get("method", "")).encode("ascii", "replace"), 16)
    fields: dict[str, Any] = {"method": method, "path": _path(scope), "status": status,
                              "duration_ms": round(seconds * 1000, 3)}
    notes = scope.get(NOTES_KEY)
    if isinstance(notes, dict):
        for key, value in notes.items():
            if key not in fields:
                fields[str(key)] = _note_value(value)
    return fields


def access_text(fields: dict[str, Any]) -> str:
    """`method=POST path=/v1/verify status=200 duration_ms=12.5 ear_status=... replay=...`"""
    return " ".join(f"{key}={value}" for key, value in fields.items())


class AccessLog:
    """Log one line per HTTP request once the response is sent (or the app fails)."""

    def __init__(self, app: ASGIApp, logger: logging.Logger | None = None) -> None:
        self.app = app
        self.logger = logger or access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[NOTES_KEY] = {}
        status = 0
        start = time.perf_counter()

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        except BaseException:
            status = status or 500  # the outer error middleware answers 500
            raise
        finally:
            fields = access_fields(scope, status, time.perf_counter() - start)
            self.logger.info("%s", access_text(fields), extra={"access": fields})


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object: time, level, logger, message, and for request
    lines the access fields (method, path, status, duration_ms, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC)
        doc: dict[str, Any] = {
            "time": when.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = getattr(record, "access", None)
        if isinstance(fields, dict):
            doc["message"] = f"{fields.get('method')} {fields.get('path')} {fields.get('status')}"
            doc.update({k: v for k, v in fields.items() if k not in doc})
        else:
            doc["message"] = record.getMessage()
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=True, default=str, separators=(",", ":"))


def formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    if log_format == "text":
        return logging.Formatter(TEXT_FORMAT)
    raise ValueError(f"log format {log_format!r}; expected one of {', '.join(LOG_FORMATS)}")


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """One stderr handler on the root logger with the chosen format (replacing any)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)
