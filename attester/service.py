"""The attester service (FastAPI): deterministic inference with signed Evidence.

    POST /v1/infer   {"input", "template"?, "decode"?: {"max_new_tokens", "temperature",
                      "top_k", "top_p", "seed", "stop", "eos"}, "nonce",
                      "challenge_window"?: {"issued_at", "expires_at"},
                      "format"?: "jwt" | "cwt"}
                  -> {"output", "output_hash", "evidence", "evidence_format"}
                     (CWT evidence travels as unpadded base64url text); with
                     `veraison_verifier` configured the nonce may be left out: it comes
                     from that verifier's newSession and the answer adds "session" (the
                     session URL; "result", the EAR, with `veraison_submit`)
    GET  /v1/info    model digest and id, environment, provider, evidence key (JWK)
    GET  /healthz    200 once the model is loaded, 503 before

Every refusal is `application/problem+json` naming the offending field; inference runs
in the threadpool, never on the event loop. `bytereplay serve attester` runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from attester.apidocs import attester_schemas
from attester.config import AttesterConfig, load_config
from attester.evidence import (
    build_claims,
    encode,
    expected_report_data,
    measurements_for,
    request_claim,
)
from attester.tee import QuoteProvider, make_provider
from bytereplay import __version__, eat
from bytereplay.encoding import b64url_decode
from bytereplay.errors import BusyError, BytereplayError, MediaTypeError, NotReadyError, UsageError
from bytereplay.evidence import FORMATS, evidence_text
from bytereplay.home import Home
from bytereplay.keyring import KeyRing
from bytereplay.keys import SigningKey
from bytereplay.record import RunRecord
from bytereplay.request import (
    DECODE_KEYS,
    DEFAULT_MAX_NEW_TOKENS,
    DEFAULT_TEMPLATE,
    INPUT_MARK,
    MAX_TEMPLATE_CHARS,
    check_decode,
)
from bytereplay.veraison_client import Session, VeraisonClient
from bytereplay.web.access_log import AccessLog, configure_logging
from bytereplay.web.apidocs import ServiceApp, json_answer, json_body, problems
from bytereplay.web.http import BodyLimit, install_problem_handlers, read_json_body
from bytereplay.web.serving import bind, serve, url_of

if TYPE_CHECKING:
    from attester.engine import DecodePolicy, Engine

log = logging.getLogger("bytereplay.attester")

BODY_KEYS = ("input", "template", "decode", "nonce", "challenge_window", "format")








# -- request parsing ------------------------------------------------------------------

@dataclass(frozen=True)
class AttestRequest:
    input: str
    template: str
    decode: dict[str, Any]  # every DECODE_KEYS member, validated
    nonce: bytes
    challenge_window: tuple[str, str] | None
    format: str


def _parse_decode(value: Any, config: AttesterConfig) -> dict[str, Any]:
    """The body's decode policy with its defaults, checked by the one rule set
    (`bytereplay.request.check_decode`) within this attester's token limit."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise UsageError("decode: expected an object")
    unknown = sorted(set(value) - set(DECODE_KEYS))
    if unknown:
        raise UsageError(f"decode.{unknown[0]}: unknown field; known: {', '.join(DECODE_KEYS)}")
    limit = config.max_new_tokens
    defaults = {"max_new_tokens": min(DEFAULT_MAX_NEW_TOKENS, limit), "temperature": 0.0,
                "top_k": 0, "top_p": 1.0, "seed": 0, "stop": [], "eos": True}
    return check_decode({**defaults, **value}, prefix="decode.", max_new_tokens=limit)


def _parse_window(value: Any) -> tuple[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"issued_at", "expires_at"}:
        raise UsageError("challenge_window: expected an object with issued_at and expires_at")
    try:
        RunRecord.from_dict({"challenge_window": value})
    except BytereplayError as exc:
        raise UsageError(exc.detail) from None
    return str(value["issued_at"]), str(value["expires_at"])


def _text(name: str, value: Any, limit: int) -> str:
    if not isinstance(value, str):
        raise UsageError(f"{name}: expected a string")
    if len(value) > limit:
        raise UsageError(f"{name}: longer than {limit} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{name}: not valid Unicode text (lone surrogate)") from None
    return value


def parse_infer_body(body: Any, config: AttesterConfig) -> AttestRequest:
    """Validate a /v1/infer body; UsageError (or NonceError) naming the field."""
    if not isinstance(body, dict):
        raise UsageError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(BODY_KEYS))
    if unknown:
        raise UsageError(f"{unknown[0]}: unknown field; known: {', '.join(BODY_KEYS)}")
    for name in ("input", "nonce"):
        if name not in body:
            raise UsageError(f"{name}: required field is missing")
    text = _text("input", body["input"], config.max_input_chars)
    template = body.get("template", DEFAULT_TEMPLATE)
    template = _text("template", template, MAX_TEMPLATE_CHARS)
    if INPUT_MARK not in template:
        raise UsageError("template: must contain '{input}' where the input goes")
    decode = _parse_decode(body.get("decode"), config)
    if not isinstance(body["nonce"], str):
        raise UsageError("nonce: expected unpadded base64url text")
    nonce = eat.decode_nonce(body["nonce"])  # NonceError: not base64url / outside 8..64
    fmt = body.get("format", config.evidence_format)
    if fmt not in FORMATS:
        raise UsageError(f"format: expected one of {', '.join(FORMATS)}")
    return AttestRequest(input=text, template=template, decode=decode, nonce=nonce,
                         challenge_window=_parse_window(body.get("challenge_window")),
                         format=str(fmt))


def _policy(decode: dict[str, Any]) -> DecodePolicy:
    from attester.engine import DecodePolicy

    return DecodePolicy(max_new_tokens=decode["max_new_tokens"],
                        temperature=decode["temperature"], top_k=decode["top_k"],
                        top_p=decode["top_p"], seed=decode["seed"],
                        stop=tuple(decode["stop"]), eos=decode["eos"])


# -- the attester ---------------------------------------------------------------------

def _nvidia(index: int) -> Any:
    from attester.tee.nvidia import NvidiaProvider

    return NvidiaProvider(index)


class Attester:
    """Engine + evidence key + TEE provider, and the one operation: `attest`."""

    def __init__(self, config: AttesterConfig, home: Home, *, engine: Engine | None = None,
                 provider: QuoteProvider | None = None, key: SigningKey | None = None,
                 gpus: Sequence[Any] | None = None) -> None:
        self.config, self.home = config, home
        # A fixed key (tests), or the ring: a rotation is picked up without a restart.
        self._fixed_key = key
        self.keys = None if key is not None else KeyRing(
            config.evidence_key_path(home), alg=config.key_alg,
            create=config.evidence_key is None)
        self.provider = provider or make_provider(
            config.provider, simulated_dir=home.simulated_ca, tsm_root=config.tsm_root,
            nvidia_device=config.nvidia_device, tdx_collateral_url=config.tdx_collateral_url,
            tdx_collateral_cache=config.collateral_cache(home))
        # Composite evidence: each GPU named in `gpu_evidence`, attested beside the quote.
        self.gpus: list[Any] = list(gpus) if gpus is not None else [
            _nvidia(i) for i in config.gpu_evidence]
        self.engine: Engine | None = engine
        self.load_error: str | None = None
        self._pending = 0
        self._lock = threading.Lock()

    @property
    def key(self) -> SigningKey:
        """The current evidence key."""
        if self.keys is None:
            assert self._fixed_key is not None
            return self._fixed_key
        return self.keys.current

    def published_keys(self) -> list[dict[str, Any]]:
        """The current evidence key and the rotated-out ones not yet retired."""
        if self.keys is None:
            return [dict(self.key.jwk)]
        return list(self.keys.jwks()["keys"])

    @property
    def ready(self) -> bool:
        return self.engine is not None

    def load_engine(self) -> None:
        """Hash and load the model (slow; call from a worker thread)."""
        from attester.engine import Engine, EngineSettings

        c = self.config
        self.engine = Engine(EngineSettings(
            model_dir=c.model_path, device=c.device, dtype=c.dtype, threads=c.threads,
            container_digest=c.container_digest, operator=c.operator))

    def _engine(self) -> Engine:
        if self.engine is None:
            raise NotReadyError(self.load_error or "the model is still loading; retry shortly")
        return self.engine

    @contextlib.contextmanager
    def slot(self) -> Iterator[None]:
        """At most `max_pending` requests in flight; 503 beyond."""
        with self._lock:
            if self._pending >= self.config.max_pending:
                raise BusyError(f"{self._pending} requests in flight; retry later")
            self._pending += 1
        try:
            yield
        finally:
            with self._lock:
                self._pending -= 1

    def attest(self, req: AttestRequest) -> dict[str, Any]:
        """Run the request, quote the binding, sign the Evidence; the /v1/infer answer."""
        from attester.engine import InferenceRequest

        engine = self._engine()
        key = self.key  # one key for the binding and the signature, even across a rotation
        result = engine.generate(
            InferenceRequest(input=req.input, template=req.template, decode=_policy(req.decode)),
            verifier_ref=self.config.verifier_ref, challenge_window=req.challenge_window)
        record = result.record
        quote = self.provider.quote(expected_report_data(req.nonce, record, key.jwk),
                                    measurements_for(record))
        digest = record.digest()
        gpu_evidence = [{**gpu.device_evidence(eat.device_gpu_nonce(req.nonce, digest, i)),
                         "index": i} for i, gpu in enumerate(self.gpus)]
        claims = build_claims(record=record, nonce=req.nonce, key=key, quote=quote,
                              request=request_claim(req.input, req.template, req.decode),
                              gpu_evidence=gpu_evidence)
        evidence = encode(claims, key, req.format)
        return {"output": result.output, "output_hash": result.output_hash,
                "evidence": evidence_text(evidence), "evidence_format": req.format}

    def info(self) -> dict[str, Any]:
        engine = self._engine()
        c = self.config
        return {
            "runtime": {"name": "bytereplay", "version": __version__},
            "model_id": engine.model_id,
            "model_digest": engine.model_digest,
            "container_digest": c.container_digest,
            "environment": engine.environment,
            "provider": self.provider.name,
            "simulated": bool(self.provider.simulated),
            "evidence_key": dict(self.key.jwk),
            "evidence_keys": {"keys": self.published_keys()},
            "evidence_formats": list(FORMATS),
            "eat_profile": eat.PROFILE,
            "verifier_ref": c.verifier_ref,
            "operator": c.operator,
            "limits": {"max_body_bytes": c.max_body_bytes, "max_input_chars": c.max_input_chars,
                       "max_new_tokens": c.max_new_tokens, "max_pending": c.max_pending},
        }

    def ready_line(self, url: str | None = None) -> str:
        engine = self._engine()
        where = f" on {url}" if url else ""
        sim = " (SIMULATED TEE, not hardware)" if self.provider.simulated else ""
        return (f"bytereplay attester ready{where}: model {engine.model_id} "
                f"{engine.model_digest}, provider {self.provider.name}{sim}, "
                f"evidence key {self.key.alg} kid {self.key.kid}")


# -- the app --------------------------------------------------------------------------

_STAND_IN = "A" * 43  # 32 zero bytes: replaced by the session's nonce before any use


def _submit(client: VeraisonClient, session: Session, answer: dict[str, Any]) -> str | None:
    """POST the answer's Evidence to its Veraison session; the EAR it completes with."""
    fmt = answer["evidence_format"]
    body = answer["evidence"].encode("ascii") if fmt == "jwt" else \
        b64url_decode(answer["evidence"])
    done = client.submit(session, body, eat.MEDIA_JWT if fmt == "jwt" else eat.MEDIA_CWT)
    return done.result


def _check_media_type(request: Request) -> None:
    ctype = request.headers.get("content-type")
    if ctype is None:
        return
    media = ctype.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise MediaTypeError(f"content-type {media!r}; send application/json")


def create_app(config: AttesterConfig, *, home: Home | None = None,
               engine: Engine | None = None, attester: Attester | None = None,
               url: str | None = None) -> FastAPI:
    """The attester app. Pass `engine` (or a whole `attester`) to share a loaded model;
    otherwise the model loads in a background thread at startup (healthz 503 until then).
    Key and provider are set up here, so a missing TEE fails at once."""
    svc = attester or Attester(config, home or Home.resolve(), engine=engine)

    def _load() -> None:
        try:
            svc.load_engine()
        except BytereplayError as exc:
            svc.load_error = f"model failed to load: {exc.detail}"
            log.error("bytereplay attester: %s", svc.load_error)
            return
        except Exception as exc:
            svc.load_error = f"model failed to load: {type(exc).__name__}"
            log.exception("bytereplay attester: model failed to load")
            return
        log.info("%s", svc.ready_line(url))

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if not svc.ready:
            threading.Thread(target=_load, name="attester-load", daemon=True).start()
        yield

    app = ServiceApp(title="bytereplay attester", version=__version__, lifespan=lifespan,
                     description="Deterministic inference with signed Evidence (EAT). "
                                 "Every refusal is application/problem+json.")
    app.state.attester = svc
    install_problem_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    app.add_middleware(AccessLog)  # outermost: it also logs what BodyLimit refuses
    doc = attester_schemas(config.max_input_chars, config.max_new_tokens,
                           nonce_required=config.veraison_verifier is None)
    veraison = None
    if config.veraison_verifier is not None:
        veraison = VeraisonClient(config.veraison_verifier)

    @app.get("/healthz", summary="Readiness",
             description="200 once the model is loaded; 503 while it loads or if it failed.",
             responses=json_answer("Ready", doc["health"])
             | json_answer("Starting, or the model failed to load", doc["health"], status=503))
    async def healthz() -> JSONResponse:
        if svc.ready:
            return JSONResponse({"status": "ready"})
        status = "failed" if svc.load_error else "starting"
        return JSONResponse({"status": status, "detail": svc.load_error}, status_code=503)

    @app.get("/v1/info", summary="Model, environment, TEE provider and Evidence key",
             responses=json_answer("The attester's setup", doc["info"]) | problems(503))
    async def info() -> JSONResponse:
        return JSONResponse(svc.info())

    @app.post("/v1/infer", summary="Run one deterministic inference and sign Evidence",
              description="Runs the input under the determinism controls, binds the "
                          "verifier's nonce into a TEE quote and answers the exact output "
                          "with signed Evidence (EAT) to send to the verifier's /v1/verify.",
              openapi_extra=json_body(doc["infer_request"]),
              responses=json_answer("The output and its Evidence", doc["infer_answer"])
              | problems(400, 413, 415, 503))
    async def infer(request: Request) -> JSONResponse:
        _check_media_type(request)
        body = await read_json_body(request, config.max_body_bytes)
        # No nonce and a Veraison verifier configured: the body is checked first (with a
        # stand-in nonce), then the challenge comes from a new session.
        from_session = veraison is not None and isinstance(body, dict) and "nonce" not in body
        req = parse_infer_body({**body, "nonce": _STAND_IN} if from_session else body, config)
        svc._engine()  # 503 before spending anything while the model loads
        with svc.slot():
            session = None
            if from_session and veraison is not None:
                session = await run_in_threadpool(veraison.new_session)
                req = dataclasses.replace(req, nonce=session.nonce)
            answer = await run_in_threadpool(svc.attest, req)
            if session is not None and veraison is not None:
                answer["session"] = session.url
                if config.veraison_submit:
                    answer["result"] = await run_in_threadpool(_submit, veraison, session,
                                                               answer)
        return JSONResponse(answer)

    from attester.openai_api import install_openai_routes  # /v1/chat/completions, /v1/models

    install_openai_routes(app, svc)
    return app


def cmd_serve(args: argparse.Namespace) -> int:
    """`bytereplay serve attester --host H --port P [--config F] [--home D] [--log-format]`."""
    configure_logging(getattr(args, "log_format", "text"))
    sockets = bind(args.host, args.port)  # a busy port: one line, exit 2, nothing logged
    try:
        home = Home.resolve(args.home)
        config = load_config(home, args.config)
        url = url_of(args.host, sockets)
        app = create_app(config, home=home, url=url)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    log.info("bytereplay attester %s starting on %s (provider %s, home %s)",
             __version__, url, config.provider, home.root)
    return serve(app, sockets, log_level="info",
                 on_listening=lambda: log.info("bytereplay attester listening on %s", url))
