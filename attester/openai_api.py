"""The OpenAI-compatible API of the attester: chat completions that carry Evidence.

    POST /v1/chat/completions   OpenAI's request and response, non-streaming or
                                `stream: true` (server-sent events), plus `attestation`
    GET  /v1/models             the one model served, with its digest

Accepted request fields: `model` (the served id or its digest), `messages`
(`{role, content}` with text content), `max_tokens` / `max_completion_tokens`,
`temperature` (default 1, as OpenAI; 0 = greedy), `top_p`, `seed` (default 0), `stop`
(text or a list), `n` (1 only), `stream`, `stream_options`, `user`; and, as extra
body fields (the official client's `extra_body=`), the verifier's `nonce`, its
`challenge_window` `{issued_at, expires_at}` and `evidence_format` ("jwt" | "cwt").

Refused with 400 in OpenAI's error shape `{"error": {"message", "type", "param",
"code"}}`, never silently ignored: `n` > 1, a non-empty `logit_bias`, `tools` /
`functions` / a `tool_choice` other than "none", non-zero `presence_penalty` or
`frequency_penalty`, `logprobs` / `top_logprobs`, a `response_format` other than text,
and any field not named above. These would change the bytes outside the recorded
settings, or the engine lacks them.

The answer is OpenAI's `chat.completion` with `usage` (prompt and completion tokens)
and one extra top-level object:

    "attestation": {"evidence", "evidence_format", "output_hash", "nonce", "nonce_bound"}

`output_hash` is `sha-256:` over the exact UTF-8 bytes of `choices[0].message.content`.
Send `evidence` to the verifier's /v1/verify, then give the EAR and those bytes to the
relying party. In a stream the chunks carry the content (split at word boundaries;
their concatenation is the content exactly), and the last chunk before `data: [DONE]`
carries `finish_reason`, `usage` and `attestation`. The stream starts once the run is
complete: Evidence covers whole outputs only.

A request without `nonce` is still answered. Its Evidence binds the fixed value
`NO_NONCE` ("bytereplay:no-nonce", which no verifier issues) and the answer says
`"nonce": null, "nonce_bound": false`; a verifier appraises such Evidence as not
bound to any challenge of its own (instance identity not shown for this request).

Under the hood a chat request is an ordinary attested request (attester/chat.py):
`input` = the canonical messages, `template` = the model's chat template, so /v1/verify
and replay need nothing new.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from attester import chat
from attester.evidence import (
    build_claims,
    encode,
    expected_report_data,
    measurements_for,
    request_claim,
)
from bytereplay import __version__, eat
from bytereplay.encoding import b64url_encode
from bytereplay.errors import BytereplayError, UsageError
from bytereplay.evidence import evidence_text
from bytereplay.web.http import read_json_body

if TYPE_CHECKING:
    from attester.engine import Engine, InferenceResult
    from attester.service import Attester, AttestRequest

NO_NONCE = b"bytereplay:no-nonce"
DEFAULT_MAX_TOKENS = 128
MAX_OPENAI_STOPS = 4

ACCEPTED = frozenset({
    "model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p",
    "seed", "stop", "n", "stream", "stream_options", "user",
    # refused unless neutral (checked below)
    "logit_bias", "presence_penalty", "frequency_penalty", "logprobs", "top_logprobs",
    "tools", "tool_choice", "functions", "function_call", "response_format",
    "parallel_tool_calls",
    # bytereplay's extra body fields
    "nonce", "challenge_window", "evidence_format",
})


class OpenAIError(BytereplayError):
    """A refusal with OpenAI's `param` and `code`."""

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None,
                 status: int = 400) -> None:
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


def error_body(status: int, message: str, param: str | None, code: str | None) -> dict[str, Any]:
    """OpenAI's error object."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    if status == 404:
        kind = "invalid_request_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


# Our field names in messages from attester.service / attester.chat -> OpenAI's.
_PARAM_OF = {"input": "messages", "decode.max_new_tokens": "max_tokens",
             "decode.temperature": "temperature", "decode.top_p": "top_p",
             "decode.seed": "seed", "decode.stop": "stop", "nonce": "nonce",
             "challenge_window": "challenge_window", "format": "evidence_format",
             "messages": "messages"}


def _error_response(exc: BytereplayError) -> JSONResponse:
    if isinstance(exc, OpenAIError):
        param, code = exc.param, exc.code
    else:
        m = re.match(r"^([A-Za-z_.]+)(?:\[\d+\])?[.:\[]", exc.detail)
        param = _PARAM_OF.get(m.group(1)) if m else None
        code = exc.problem.replace("-", "_")
    return JSONResponse(error_body(exc.status, exc.detail, param, code), status_code=exc.status)


def _refuse(param: str, why: str) -> OpenAIError:
    return OpenAIError(f"{param}: {why}", param=param, code="unsupported_parameter")


def _check_unsupported(body: dict[str, Any]) -> None:
    """Refuse what would break determinism or that the engine lacks (see docstring)."""
    unknown = sorted(set(body) - ACCEPTED)
    if unknown:
        raise _refuse(unknown[0], "not supported by this server")
    n = body.get("n")
    if n is not None and n != 1:
        raise _refuse("n", "only n=1 is supported: each completion is one attested run")
    if body.get("logit_bias"):
        raise _refuse("logit_bias", "not supported: it changes the bytes outside the recorded settings")
    for name in ("presence_penalty", "frequency_penalty"):
        v = body.get(name)
        if v is not None and v != 0:
            raise _refuse(name, "not supported by the deterministic engine (only 0)")
    for name in ("tools", "functions", "function_call"):
        if body.get(name):
            raise _refuse(name, "tool calling is not supported")
    if body.get("tool_choice") not in (None, "none"):
        raise _refuse("tool_choice", "tool calling is not supported")
    if body.get("logprobs") or body.get("top_logprobs") is not None:
        param = "logprobs" if body.get("logprobs") else "top_logprobs"
        raise _refuse(param, "log probabilities are not returned")
    fmt = body.get("response_format")
    if fmt is not None and fmt != {"type": "text"}:
        raise _refuse("response_format", "only {\"type\": \"text\"} is supported")


def _number(body: dict[str, Any], name: str, default: float) -> Any:
    v = body.get(name)
    return default if v is None else v


def _infer_body(body: dict[str, Any], max_new_tokens: int) -> dict[str, Any]:
    """The /v1/infer body for this chat request (validated by `parse_infer_body`)."""
    if "messages" not in body:
        raise OpenAIError("messages: required", param="messages", code="missing_required_parameter")
    mt, mct = body.get("max_tokens"), body.get("max_completion_tokens")
    if mt is not None and mct is not None and mt != mct:
        raise OpenAIError("max_tokens and max_completion_tokens differ", param="max_tokens",
                          code="invalid_value")
    max_tokens = mct if mct is not None else mt
    stop = body.get("stop")
    if stop is None:
        stop = []
    elif isinstance(stop, str):
        stop = [stop]
    elif not isinstance(stop, list) or len(stop) > MAX_OPENAI_STOPS:
        raise OpenAIError(f"stop: text or a list of at most {MAX_OPENAI_STOPS} texts", param="stop",
                          code="invalid_value")
    if body.get("stream") not in (None, True, False):
        raise OpenAIError("stream: expected true or false", param="stream", code="invalid_value")
    nonce = body.get("nonce")
    if nonce is not None:
        try:
            if not isinstance(nonce, str):
                raise UsageError("expected unpadded base64url text")
            eat.decode_nonce(nonce)
        except BytereplayError as exc:
            raise OpenAIError(f"nonce: {exc.detail}", param="nonce", code="invalid_nonce") from None
    out: dict[str, Any] = {
        "input": chat.canonical_messages(body["messages"]),
        "decode": {
            "max_new_tokens": max_new_tokens if max_tokens is None else max_tokens,
            "temperature": _number(body, "temperature", 1.0),
            "top_p": _number(body, "top_p", 1.0),
            "top_k": 0,
            "seed": _number(body, "seed", 0),
            "stop": stop,
            "eos": True,
        },
        "nonce": b64url_encode(NO_NONCE) if nonce is None else nonce,
    }
    if body.get("challenge_window") is not None:
        out["challenge_window"] = body["challenge_window"]
    if body.get("evidence_format") is not None:
        out["format"] = body["evidence_format"]
    return out


def _check_model(body: dict[str, Any], engine: Engine) -> None:
    name = body.get("model")
    if not isinstance(name, str) or not name:
        raise OpenAIError("model: required (see GET /v1/models)", param="model",
                          code="missing_required_parameter")
    if name not in (engine.model_id, engine.model_digest):
        raise OpenAIError(f"The model `{name}` does not exist; this server serves "
                          f"`{engine.model_id}` ({engine.model_digest})", param="model",
                          code="model_not_found", status=404)


def attest_chat(svc: Attester, req: AttestRequest) -> tuple[InferenceResult, str]:
    """Run the chat request (input = canonical messages, template = the model's chat
    template) and sign its Evidence: (result, evidence text). As `Attester.attest`,
    keeping the engine's result for `usage` and `finish_reason`."""
    from attester.engine import DecodePolicy, InferenceRequest

    engine = svc._engine()
    d = req.decode
    policy = DecodePolicy(max_new_tokens=d["max_new_tokens"], temperature=d["temperature"],
                          top_k=d["top_k"], top_p=d["top_p"], seed=d["seed"],
                          stop=tuple(d["stop"]), eos=d["eos"])
    result = engine.generate(InferenceRequest(input=req.input, template=req.template, decode=policy),
                             verifier_ref=svc.config.verifier_ref,
                             challenge_window=req.challenge_window)
    record = result.record
    quote = svc.provider.quote(expected_report_data(req.nonce, record, svc.key.jwk),
                               measurements_for(record))
    claims = build_claims(record=record, nonce=req.nonce, key=svc.key, quote=quote,
                          request=request_claim(req.input, req.template, req.decode))
    return result, evidence_text(encode(claims, svc.key, req.format))


def _finish(result: InferenceResult) -> str:
    return "length" if result.finish_reason == "length" else "stop"


def _pieces(text: str) -> list[str]:
    """Stream pieces: words with their trailing space; they join to `text` exactly."""
    return [p for p in re.findall(r"\s*\S+\s*|\s+", text) if p] or [""]


def install_openai_routes(app: FastAPI, svc: Attester) -> None:
    """Add POST /v1/chat/completions and GET /v1/models to the attester app."""

    @app.get("/v1/models", summary="OpenAI: the model served, with its digest")
    async def models() -> Response:
        try:
            engine = svc._engine()
        except BytereplayError as exc:
            return _error_response(exc)
        return JSONResponse({"object": "list", "data": [
            {"id": engine.model_id, "object": "model", "created": 0, "owned_by": "bytereplay",
             "digest": engine.model_digest}]})

    @app.post("/v1/chat/completions",
              summary="OpenAI: chat completion with Evidence (`attestation`)",
              description="OpenAI's chat completion (also `stream: true`), run under the "
                          "determinism controls; `nonce` and `challenge_window` come as "
                          "extra body fields; the answer's `attestation` carries the "
                          "Evidence. Refusals use OpenAI's error shape.")
    async def chat_completions(request: Request) -> Response:
        try:
            return await _chat(request)
        except BytereplayError as exc:
            return _error_response(exc)

    async def _chat(request: Request) -> Response:
        from attester.service import parse_infer_body

        config = svc.config
        body = await read_json_body(request, config.max_body_bytes)
        if not isinstance(body, dict):
            raise UsageError("the request body must be a JSON object")
        _check_unsupported(body)
        engine = svc._engine()  # 503 while the model loads
        _check_model(body, engine)
        infer = _infer_body(body, min(DEFAULT_MAX_TOKENS, config.max_new_tokens))
        # All of /v1/infer's checks (limits, nonce, window, format), then the chat template.
        req = dataclasses.replace(parse_infer_body(infer, config), template=engine.chat_template)
        with svc.slot():
            result, evidence = await run_in_threadpool(attest_chat, svc, req)
        nonce_bound = body.get("nonce") is not None
        attestation = {"evidence": evidence, "evidence_format": req.format,
                       "output_hash": result.output_hash,
                       "nonce": body.get("nonce") if nonce_bound else None,
                       "nonce_bound": nonce_bound}
        completion_tokens = len(result.token_ids)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": completion_tokens,
                 "total_tokens": result.prompt_tokens + completion_tokens}
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()),
                "model": engine.model_id, "system_fingerprint": f"bytereplay-{__version__}"}
        if not body.get("stream"):
            return JSONResponse({
                **head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": result.output},
                             "logprobs": None, "finish_reason": _finish(result)}],
                "usage": usage, "attestation": attestation})

        def chunk(delta: dict[str, Any], finish: str | None, **extra: Any) -> bytes:
            doc = {**head, "object": "chat.completion.chunk",
                   "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                "finish_reason": finish}], **extra}
            return b"data: " + json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n\n"

        async def events() -> AsyncIterator[bytes]:
            yield chunk({"role": "assistant", "content": ""}, None)
            for piece in _pieces(result.output):
                if piece:
                    yield chunk({"content": piece}, None)
            yield chunk({}, _finish(result), usage=usage, attestation=attestation)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})
