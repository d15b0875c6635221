"""Veraison's challenge-response API and discovery document, on the verifier sidecar.

Follows veraison/docs `api/challenge-response` and `api/well-known` and what
veraison/services answers (written here from those descriptions):

    POST   /challenge-response/v1/newSession[?nonceSize=N | ?nonce=<base64url>]
           -> 201, Location: session/<id> (relative to the newSession URL), body
              {"status": "waiting", "nonce", "expiry", "accept"}
    POST   /challenge-response/v1/session/{id}   body: the Evidence, Content-Type one
           of `EVIDENCE_TYPES` -> 200 {"status": "complete", "nonce", "expiry",
           "accept", "evidence": {"type", "value"}, "result": <EAR JWT>}
    GET    /challenge-response/v1/session/{id}   -> 200, the session as it stands
    DELETE /challenge-response/v1/session/{id}   -> 204
    GET    /.well-known/veraison/verification    -> the discovery document

Sessions (`application/vnd.veraison.challenge-response-session+json`):

- `nonceSize` is 8..64 (default: the configured nonce size, 32); `nonce` is the
  client's own, base64url (unpadded, or padded as Go's encoder writes it), 8..64 bytes;
  both together are refused (400). The session's nonce IS the verifier's single-use
  nonce (`Store.issue` / `Store.register`): the session expires with it (`expiry`), and
  the nonce is consumed once, whichever endpoint (this one or /v1/verify) receives
  Evidence bound to it.
- Session state lives in the nonce store (SQLite or Redis), never in process memory, so
  any process or replica sharing the store answers for any session.
- The `Accept` header must allow the session media type (else 406); a missing one does.
- The Evidence body is what the attester produces for /v1/verify: one EAT (JWT text or
  COSE_Sign1 CWT) that carries the run record, the request to replay, the quote and any
  external tokens inside its signed claims, so nothing travels beside it. A CMW record
  (`application/cmw+json` / `+cbor`, `bytereplay.cmw`) is unwrapped first; its inner
  type must be an EAT type (Veraison's aliases `application/vnd.veraison.cmw+json`,
  `+cbor` and the unsuffixed forms are read too). Anything else is 415 with an `Accept` header listing the
  supported types; an empty body 400; an unknown (or expired) session 404; a session
  that already received Evidence 409 (Evidence is accepted once per session: two
  concurrent submissions race on `Store.claim_session`, one wins).
- Evidence whose nonce is not the session's is appraised to a negative EAR without
  touching that other nonce; Evidence that fails any check still completes the session,
  with a negative EAR.
- The EAR uses the legacy profile `tag:github.com,2023:veraison/ear` (what Veraison's
  clients read) unless the request's `Accept` names another known profile as an
  `eat_profile` parameter (e.g. `..., application/eat+jwt; eat_profile="<draft
  profile>"`); an unknown one is 406.

All errors are application/problem+json.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from bytereplay import __version__, cmw, ear
from bytereplay.eat import MEDIA_CWT, MEDIA_JWT, NONCE_MAX, NONCE_MIN
from bytereplay.encoding import b64_encode, b64url_decode, b64url_encode
from bytereplay.errors import (
    BytereplayError,
    ConflictError,
    EncodingError,
    MediaTypeError,
    NotAcceptableError,
    NotFoundError,
    QueueFull,
    StoreUnavailable,
    UsageError,
)
from bytereplay.web.accept import accepts, requested_param
from bytereplay.web.access_log import note
from bytereplay.web.apidocs import Responses, Schema, json_answer, problems
from bytereplay.web.http import PROBLEM
from verifier.nonces import (
    SESSION_COMPLETE,
    SESSION_FAILED,
    SESSION_WAITING,
    IssuedNonce,
    rfc3339,
)
from verifier.pipeline import Verifier
from verifier.results import Result
from verifier.tee.base import known_kinds

SESSION_MEDIA = "application/vnd.veraison.challenge-response-session+json"
DISCOVERY_MEDIA = "application/vnd.veraison.discovery+json"
BASE = "/challenge-response/v1"
NEW_SESSION = f"{BASE}/newSession"
DISCOVERY = "/.well-known/veraison/verification"
EAT_TYPES = (MEDIA_JWT, MEDIA_CWT)
EVIDENCE_TYPES = (*EAT_TYPES, *cmw.MEDIA_TYPES)
# The session API's EAR profile unless the request asks for another: Veraison's
# clients read the legacy profile (the rest of the verifier defaults to draft-04).
SESSION_PROFILE = ear.LEGACY.uri
READY, DOWN = "READY", "DOWN"
MAX_NONCE_PARAM = 128  # base64url of 64 bytes with padding is 88 characters


SESSION_SCHEMA: Schema = {
    "title": "ChallengeResponseSession", "type": "object",
    "required": ["status", "nonce", "expiry", "accept"],
    "properties": {
        "status": {"type": "string", "enum": ["waiting", "processing", "complete", "failed"]},
        "nonce": {"type": "string", "description": "unpadded base64url"},
        "expiry": {"type": "string", "format": "date-time"},
        "accept": {"type": "array", "items": {"type": "string"},
                   "description": "the Evidence media types the session takes"},
        "evidence": {"type": "object", "required": ["type", "value"],
                     "properties": {"type": {"type": "string"},
                                    "value": {"type": "string", "format": "byte",
                                              "description": "standard base64"}}},
        "result": {"type": "string", "description": "the EAR (compact JWT)"},
    },
}
DISCOVERY_SCHEMA: Schema = {
    "title": "VerificationDiscovery", "type": "object",
    "required": ["ear-verification-key", "media-types", "version", "service-state",
                 "api-endpoints"],
    "properties": {
        "ear-verification-key": {"type": "object", "description": "the EAR key (JWK, alg)"},
        "media-types": {"type": "array", "items": {"type": "string"}},
        "attestation-schemes": {"type": "array", "items": {"type": "string"}},
        "version": {"type": "string"},
        "service-state": {"type": "string", "enum": [READY, DOWN]},
        "api-endpoints": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_DELETED: Responses = {204: {"description": "Deleted"}}
_LOCATION = {"Location": {"description": "session/<id>, relative to the newSession URL",
                          "schema": {"type": "string"}}}
_QUERY = [
    {"name": "nonceSize", "in": "query", "required": False,
     "schema": {"type": "integer", "minimum": NONCE_MIN, "maximum": NONCE_MAX}},
    {"name": "nonce", "in": "query", "required": False,
     "schema": {"type": "string", "format": "base64url"}},
]


def parse_nonce_request(nonce: str | None, size: str | None,
                        default_size: int) -> tuple[bytes | None, int]:
    """The query of newSession: (the client's nonce or None, the size to mint).
    UsageError (400) for both at once, a size outside 8..64 or not a decimal number, a
    nonce that is not base64url or decodes outside 8..64 bytes."""
    if nonce is not None and size is not None:
        raise UsageError("nonce and nonceSize are mutually exclusive")
    if size is not None:
        if not size.isascii() or not size.isdigit() or len(size) > 3 or \
                not NONCE_MIN <= int(size) <= NONCE_MAX:
            raise UsageError(f"nonceSize must be an integer in {NONCE_MIN}..{NONCE_MAX}")
        return None, int(size)
    if nonce is None:
        return None, default_size
    text = nonce
    if len(text) > MAX_NONCE_PARAM:
        raise UsageError("nonce is too long")
    if text.endswith("="):  # padded base64url (Go's base64.URLEncoding): exact padding only
        stripped = text.rstrip("=")
        if len(text) % 4 or len(text) - len(stripped) > 2:
            raise UsageError("nonce must be base64url")
        text = stripped
    try:
        raw = b64url_decode(text)
    except EncodingError:
        raise UsageError("nonce must be base64url (RFC 4648 section 5)") from None
    if not NONCE_MIN <= len(raw) <= NONCE_MAX:
        raise UsageError(f"nonce must decode to {NONCE_MIN}..{NONCE_MAX} bytes; got {len(raw)}")
    return raw, len(raw)


def profile_for(accept: str | None) -> str:
    """The EAR profile URI a request's `Accept` asks for with an `eat_profile` parameter
    (SESSION_PROFILE when none); NotAcceptableError for a profile this verifier lacks."""
    profile = requested_param(accept, "eat_profile")
    if profile is None:
        return SESSION_PROFILE
    if profile in ear.PROFILES:
        return profile
    raise NotAcceptableError(f"EAR profile {profile!r} is not issued here; known: "
                             f"{', '.join(ear.PROFILES)}")


def _need_session_media(request: Request) -> None:
    if not accepts(request.headers.get("accept"), SESSION_MEDIA):
        raise NotAcceptableError(f"the only supported output format is {SESSION_MEDIA}")


def _media(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _session_answer(doc: dict[str, Any], status: int = 200,
                    headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(doc, status_code=status, media_type=SESSION_MEDIA,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _unsupported(request: Request, detail: str) -> JSONResponse:
    """415 problem+json with the supported types in `Accept` (RFC 9110 section 15.5.16)."""
    body = MediaTypeError(detail).problem_json(request.url.path)
    return JSONResponse(body, status_code=415, media_type=PROBLEM,
                        headers={"Accept": ", ".join(EVIDENCE_TYPES)})


def _valid_id(session_id: str) -> bool:
    try:
        return str(uuid.UUID(session_id)) == session_id
    except ValueError:
        return False


def new_session_doc(issued: IssuedNonce) -> dict[str, Any]:
    return {"status": SESSION_WAITING, "nonce": b64url_encode(issued.nonce),
            "expiry": rfc3339(issued.expires_at), "accept": list(EVIDENCE_TYPES)}


def discovery_document(v: Verifier, ready: bool) -> dict[str, Any]:
    """The verification service's discovery document (`DISCOVERY_MEDIA`)."""
    return {
        "ear-verification-key": dict(v.key.jwk),
        "media-types": list(EVIDENCE_TYPES),
        "attestation-schemes": list(known_kinds()),
        "version": f"bytereplay {__version__}",
        "service-state": READY if ready else DOWN,
        "api-endpoints": {"newChallengeResponseSession": NEW_SESSION},
    }


def install(app: FastAPI, v: Verifier) -> None:
    """Add the session API and the discovery document to the sidecar `app`."""
    store_call = _store_caller()

    @app.post(NEW_SESSION, summary="Veraison: open a challenge-response session",
              status_code=201, openapi_extra={"parameters": _QUERY},
              responses=json_answer("The new session", SESSION_SCHEMA, status=201,
                                    headers=_LOCATION, media=SESSION_MEDIA)
              | problems(400, 406, 503))
    async def new_session(request: Request) -> JSONResponse:
        _need_session_media(request)
        q = request.query_params
        nonce, size = parse_nonce_request(q.get("nonce"), q.get("nonceSize"),
                                          v.config.nonce_size)
        if nonce is None:
            issued = await run_in_threadpool(v.issue_nonce, size)
        else:
            issued = await store_call(v.store.register, nonce)
        session_id = str(uuid.uuid4())
        doc = new_session_doc(issued)
        await store_call(v.store.put_session, session_id, doc, issued.expires_at)
        return _session_answer(doc, 201, {"Location": f"session/{session_id}"})

    @app.post(BASE + "/session/{session_id}", summary="Veraison: submit Evidence",
              response_model=None,
              openapi_extra={"requestBody": {"required": True, "content": {
                  t: {"schema": {"type": "string", "format": "binary"}}
                  for t in EVIDENCE_TYPES}}},
              responses=json_answer("The session, complete, with the EAR", SESSION_SCHEMA,
                                    media=SESSION_MEDIA)
              | problems(400, 404, 406, 409, 413, 415, 503))
    async def submit(session_id: str, request: Request) -> Response:
        _need_session_media(request)
        profile = profile_for(request.headers.get("accept"))
        media = _media(request)
        if media not in EAT_TYPES and media not in cmw.ACCEPTED:
            return _unsupported(request, f"content type {media or '(none)'!r} is not "
                                         f"accepted; send one of {', '.join(EVIDENCE_TYPES)}")
        body = await request.body()
        if not body:
            raise UsageError("the request body is empty; send the Evidence")
        inner, value = media, body
        if media in cmw.ACCEPTED:
            inner, value = cmw.unwrap(body, media, max_bytes=v.config.max_body_bytes)
            if inner not in EAT_TYPES:
                return _unsupported(request, f"the CMW carries {inner!r}; the Evidence must "
                                             f"be {MEDIA_JWT} or {MEDIA_CWT}")
        data: bytes | str = value
        if inner == MEDIA_JWT:
            try:
                data = value.decode("ascii").strip()
            except UnicodeDecodeError:
                raise UsageError("an application/eat+jwt body is ASCII text") from None
        if not _valid_id(session_id):
            raise NotFoundError(f"no session {session_id!r}")
        if v.queue_full():  # before the session or its nonce is touched
            raise QueueFull("the replay queue is full; try again later")
        before = await store_call(v.store.claim_session, session_id)
        if before is None:
            raise NotFoundError(f"no session {session_id!r} (unknown or expired)")
        if before != SESSION_WAITING:
            raise ConflictError(f"session {session_id} is {before}: Evidence is accepted "
                                "once per session")
        doc = await store_call(v.store.get_session, session_id)
        if doc is None:  # expired between the claim and now
            raise NotFoundError(f"no session {session_id!r} (expired)")
        doc["evidence"] = {"type": inner, "value": b64_encode(value)}
        try:
            result = await _appraise(v, data, inner, profile, b64url_decode(doc["nonce"]))
        except Exception:
            await store_call(v.store.update_session, session_id, SESSION_FAILED, doc)
            raise
        doc["result"] = result.token
        await store_call(v.store.update_session, session_id, SESSION_COMPLETE, doc)
        note(request, ear_status=result.status, replay=str(result.replay.get("verdict")))
        return _session_answer({**doc, "status": SESSION_COMPLETE})

    @app.get(BASE + "/session/{session_id}", summary="Veraison: the session as it stands",
             responses=json_answer("The session", SESSION_SCHEMA, media=SESSION_MEDIA)
             | problems(404, 406, 503))
    async def get_session(session_id: str, request: Request) -> JSONResponse:
        _need_session_media(request)
        doc = await store_call(v.store.get_session, session_id) \
            if _valid_id(session_id) else None
        if doc is None:
            raise NotFoundError(f"no session {session_id!r} (unknown or expired)")
        return _session_answer(doc)

    @app.delete(BASE + "/session/{session_id}", summary="Veraison: delete the session",
                status_code=204, response_model=None,
                responses=_DELETED | problems(404, 503))
    async def delete_session(session_id: str) -> Response:
        gone = await store_call(v.store.delete_session, session_id) \
            if _valid_id(session_id) else False
        if not gone:
            raise NotFoundError(f"no session {session_id!r} (unknown or expired)")
        return Response(status_code=204)

    @app.get(DISCOVERY, summary="Veraison: the verification service's discovery document",
             responses=json_answer("The discovery document", DISCOVERY_SCHEMA,
                                   media=DISCOVERY_MEDIA) | problems(406))
    async def discovery(request: Request) -> JSONResponse:
        header = request.headers.get("accept")
        if not (accepts(header, DISCOVERY_MEDIA) or accepts(header, "application/json")):
            raise NotAcceptableError(f"the only supported output format is {DISCOVERY_MEDIA}")
        try:
            ready = bool(await run_in_threadpool(v.store.ping))
        except Exception:
            ready = False
        return JSONResponse(discovery_document(v, ready), media_type=DISCOVERY_MEDIA,
                            headers={"Cache-Control": "public, max-age=60"})


def _store_caller() -> Any:
    """Run a store call in the thread pool; anything but our own errors is the store's
    failure (503), not the client's."""

    async def call(fn: Any, *args: Any) -> Any:
        try:
            return await run_in_threadpool(fn, *args)
        except BytereplayError:
            raise
        except Exception as exc:
            raise StoreUnavailable(f"the verifier store failed: {exc}") from None

    return call


async def _appraise(v: Verifier, data: bytes | str, media: str, profile: str,
                    nonce: bytes) -> Result:
    """The whole appraisal (replay in the worker pool when due), as /v1/verify runs it."""
    fmt = "jwt" if media == MEDIA_JWT else "cwt"

    def sync_part() -> tuple[Result | None, Any]:
        a = v.begin(data, fmt, profile=profile, session_nonce=nonce)
        if v.needs_replay(a):
            return None, a
        return v.finish(a), None

    result, pending = await run_in_threadpool(sync_part)
    if result is None:
        result = await asyncio.wrap_future(v.submit(pending))
    return result
