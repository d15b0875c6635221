"""Replay: re-run the recorded request in the verifier's own environment and compare.

The recorded request (`bytereplay.request`) is checked against the run record first
(input and template hashes, decode settings). The model is found by its digest among
the model directories under the configured `model_dir` (scanned once; digests cached in
memory and in `<home>/model-digests.json`, keyed by each file's path, size and mtime,
so a restart does not re-hash gigabytes). The run uses the attester's `Engine` with
the recorded decode settings and seed but the VERIFIER's engine settings (device,
dtype, threads, controls): an attester that ran in bfloat16 against a float32 verifier
shows `dtype` in the environment diff. One Engine per (model digest, settings) is kept
and reused.

Verdicts (`bytereplay.claims`), from the output hash and the determinism-relevant
environment (`bytereplay.checklist.ENVIRONMENT_FIELDS`; a field missing from the record
counts as differing, since sameness cannot be shown):

    match           same environment, same bytes
    match-portable  environment differs, same bytes anyway
    mismatch        same environment, different bytes: contradicts the Evidence
    inconclusive    environment differs, different bytes
    not-run         model not available, replay disabled or skipped, request missing,
                    or the replay itself failed (the reason says which)
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bytereplay.checklist import ENVIRONMENT_FIELDS
from bytereplay.claims import INCONCLUSIVE, MATCH, MATCH_PORTABLE, MISMATCH, NOT_RUN
from bytereplay.encoding import sha256_tag
from bytereplay.errors import BytereplayError
from bytereplay.record import RunRecord

if TYPE_CHECKING:
    from attester.engine import Engine, EngineSettings

log = logging.getLogger("bytereplay.verifier.replay")

MAX_SCAN_DEPTH = 5
RESCAN_COOLDOWN_S = 30.0
DIGEST_CACHE_FILE = "model-digests.json"


@dataclass(frozen=True)
class ReplayOutcome:
    verdict: str
    environment_diff: tuple[dict[str, Any], ...] = ()
    reason: str | None = None
    replay_output_hash: str | None = None
    first_divergence: int | None = None  # index of the first differing token id
    seconds: float | None = None
    facts: dict[str, str] = field(default_factory=dict)  # policy facts: request

    @property
    def diff_fields(self) -> list[str]:
        return [str(d["field"]) for d in self.environment_diff]

    def to_json(self) -> dict[str, Any]:
        """The EAR's `bytereplay.replay` claim."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "environment_diff": [dict(d) for d in self.environment_diff],
            "reason": self.reason,
        }
        if self.replay_output_hash is not None:
            out["replay_output_hash"] = self.replay_output_hash
        if self.first_divergence is not None:
            out["first_divergent_token"] = self.first_divergence
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 4)
        return out


def not_run(reason: str, **facts: str) -> ReplayOutcome:
    return ReplayOutcome(NOT_RUN, reason=reason, facts=dict(facts))


def verdict_for(same_bytes: bool, diff: list[dict[str, Any]]) -> str:
    if same_bytes:
        return MATCH_PORTABLE if diff else MATCH
    return INCONCLUSIVE if diff else MISMATCH


def environment_diff(recorded: RunRecord, replayed: RunRecord) -> list[dict[str, Any]]:
    """{field, recorded, replayed} for each determinism-relevant field that differs."""
    out: list[dict[str, Any]] = []
    for path in ENVIRONMENT_FIELDS:
        a, b = recorded.get(path), replayed.get(path)
        if a is None or a != b or not recorded.is_present(path):
            out.append({"field": path, "recorded": a, "replayed": b})
    return out


def check_request(request: Any, record: RunRecord) -> str | None:
    """Why the recorded request does not describe the recorded run, or None when it does."""
    if not isinstance(request, Mapping):
        return "the request is not an object"
    text, template, decode = request.get("input"), request.get("template"), request.get("decode")
    if not isinstance(text, str) or not isinstance(template, str) or not isinstance(decode, dict):
        return "the request lacks input, template or decode"
    for name, value, recorded in (("input", text, record.input_hash),
                                  ("template", template, record.prompt_template_hash)):
        try:
            digest = sha256_tag(value.encode("utf-8"))
        except UnicodeEncodeError:
            return f"the request's {name} is not valid Unicode text"
        if recorded is not None and digest != recorded:
            field_name = "input_hash" if name == "input" else "prompt_template_hash"
            return f"the request's {name} does not hash to the record's {field_name}"
    return None


def decode_settings(request: Mapping[str, Any], record: RunRecord) -> dict[str, Any]:
    """The decode policy to replay with: the recorded settings, the request's where the
    record lacks one (the Evidence decoder has checked that the two agree)."""
    decode = dict(request.get("decode") or {})
    recorded = {
        "seed": record.seed,
        "temperature": record.get("sampling.temperature"),
        "top_k": record.get("sampling.top_k"),
        "top_p": record.get("sampling.top_p"),
        "max_new_tokens": record.get("stop.max_new_tokens"),
        "eos": record.get("stop.eos"),
        "stop": record.get("stop.stop_sequences"),
    }
    for key, value in recorded.items():
        if value is not None:
            decode[key] = value
    if "stop" in decode:
        decode["stop"] = tuple(decode["stop"])
    return decode


# -- finding models by digest ---------------------------------------------------------


def _candidates(root: Path) -> list[Path]:
    """Model directories (those holding config.json) and GGUF files at or below `root`."""
    out: list[Path] = []
    if root.is_file() and root.suffix.lower() == ".gguf":
        return [root]
    if not root.is_dir():
        return out
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        depth = len(here.relative_to(root).parts)
        if "config.json" in filenames:
            out.append(here)
            dirnames[:] = []  # a model directory's subfolders belong to it
            continue
        out.extend(here / f for f in sorted(filenames) if f.lower().endswith(".gguf"))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) \
            if depth < MAX_SCAN_DEPTH else []
    return out


class ModelIndex:
    """Model directories under `root`, by digest; digests computed once and cached."""

    def __init__(self, root: Path, cache_file: Path | None = None,
                 digest_fn: Callable[[Path], str] | None = None) -> None:
        self.root = Path(root)
        self.cache_file = cache_file
        self._digest_fn = digest_fn
        self._lock = threading.Lock()
        self._by_digest: dict[str, Path] = {}
        self._scanned_at: float | None = None
        self._cache: dict[str, dict[str, Any]] = self._read_cache()

    def _read_cache(self) -> dict[str, dict[str, Any]]:
        if self.cache_file is None or not self.cache_file.exists():
            return {}
        try:
            doc = json.loads(self.cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return doc if isinstance(doc, dict) else {}

    def _write_cache(self) -> None:
        if self.cache_file is None:
            return
        tmp = self.cache_file.with_suffix(f".tmp-{os.getpid()}-{threading.get_ident()}")
        try:
            tmp.write_text(json.dumps(self._cache, indent=1), encoding="utf-8")
            os.replace(tmp, self.cache_file)
        except OSError as exc:
            log.warning("cannot write the model digest cache %s: %s", self.cache_file, exc)

    def _digest(self, path: Path) -> str:
        from attester.model_digest import model_digest, snapshot

        if path.is_file():  # a GGUF file: the digest is its plain SHA-256
            from attester.gguf_model import gguf_digest

            return gguf_digest(path)
        snap = [list(s) for s in snapshot(path)]
        key = str(path.resolve())
        hit = self._cache.get(key)
        if hit is not None and hit.get("snapshot") == snap and isinstance(hit.get("digest"), str):
            return str(hit["digest"])
        log.info("model digest: hashing %s", path)
        digest = (self._digest_fn or model_digest)(path)
        self._cache[key] = {"snapshot": snap, "digest": digest}
        self._write_cache()
        return digest

    def scan(self) -> dict[str, Path]:
        with self._lock:
            found: dict[str, Path] = {}
            for path in _candidates(self.root):
                try:
                    found.setdefault(self._digest(path), path)
                except BytereplayError as exc:
                    log.warning("skipping model directory %s: %s", path, exc.detail)
            self._by_digest = found
            self._scanned_at = time.monotonic()
            return dict(found)

    def find(self, digest: str) -> Path | None:
        """The directory of the model with `digest`; rescans (at most every 30 s) on a miss."""
        with self._lock:
            hit = self._by_digest.get(digest)
            stale = self._scanned_at is None or \
                time.monotonic() - self._scanned_at > RESCAN_COOLDOWN_S
        if hit is not None:
            return hit
        if stale:
            return self.scan().get(digest)
        return None

    def known(self) -> dict[str, str]:
        with self._lock:
            return {d: str(p) for d, p in self._by_digest.items()}


# -- the replayer ---------------------------------------------------------------------

EngineFactory = Callable[["EngineSettings"], "Engine"]


@dataclass(frozen=True)
class ReplaySettings:
    model_dir: Path
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    controls: bool = True


class Replayer:
    """Replays runs; keeps one Engine per (model digest, settings). Thread-safe."""

    def __init__(self, settings: ReplaySettings, *, cache_file: Path | None = None,
                 engine_factory: EngineFactory | None = None) -> None:
        self.settings = settings
        self.index = ModelIndex(settings.model_dir, cache_file)
        self._factory = engine_factory
        self._engines: dict[tuple[str, Any], Engine] = {}
        self._locks: dict[tuple[str, Any], threading.Lock] = {}
        self._lock = threading.Lock()

    def engine_settings(self, model_dir: Path) -> EngineSettings:
        from attester.engine import EngineSettings

        s = self.settings
        return EngineSettings(model_dir=model_dir, device=s.device, dtype=s.dtype,
                              threads=s.threads, controls=s.controls)

    def engine_for(self, digest: str) -> Engine | None:
        """The (cached) engine for the model with `digest`, or None when not available."""
        model_dir = self.index.find(digest)
        if model_dir is None:
            return None
        settings = self.engine_settings(model_dir)
        key = (digest, settings)
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                return engine
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            engine = self._engines.get(key)
            if engine is None:
                factory = self._factory
                if factory is None:
                    from attester.engine import Engine

                    factory = Engine
                engine = factory(settings)
                if engine.model_digest != digest:
                    raise BytereplayError(f"the model directory {model_dir} changed: its digest "
                                          f"is now {engine.model_digest}")
                with self._lock:
                    self._engines[key] = engine
        return engine

    def replay(self, request: Any, record: RunRecord) -> ReplayOutcome:
        """Replay one run; never raises for a bad run (the outcome says why)."""
        if request is None:
            return not_run("the Evidence carries no request to replay", request="missing")
        problem = check_request(request, record)
        if problem is not None:
            return not_run(f"the recorded request does not match the record: {problem}",
                           request="differs")
        digest = record.get("model.digest")
        if not isinstance(digest, str):
            return not_run("the record names no model digest", request="ok")
        if record.output_hash is None:
            return not_run("the record has no output hash to compare", request="ok")
        try:
            engine = self.engine_for(digest)
        except Exception as exc:  # ModelDirError, or transformers failing on the directory
            if not isinstance(exc, BytereplayError):
                log.exception("loading the model %s failed", digest)
            detail = exc.detail if isinstance(exc, BytereplayError) else type(exc).__name__
            return not_run(f"the model could not be loaded: {detail}", request="ok")
        if engine is None:
            return not_run(f"model {digest} is not available to the verifier", request="ok")
        return self._run(engine, request, record)

    def _run(self, engine: Engine, request: Mapping[str, Any], record: RunRecord) -> ReplayOutcome:
        from attester.engine import DecodePolicy, InferenceRequest

        started = time.perf_counter()
        try:
            policy = DecodePolicy(**decode_settings(request, record))
            result = engine.generate(InferenceRequest(str(request["input"]),
                                                      str(request["template"]), policy))
            here = RunRecord.from_dict(engine.environment_fields())
        except Exception as exc:  # the engine refused the request, or failed running it
            if not isinstance(exc, BytereplayError):
                log.exception("replay failed")
            detail = exc.detail if isinstance(exc, BytereplayError) else type(exc).__name__
            return not_run(f"the replay failed: {detail}", request="ok")
        seconds = time.perf_counter() - started
        diff = environment_diff(record, here)
        same = result.output_hash == record.output_hash
        divergence = None
        recorded_ids = record.output_token_ids
        if not same and recorded_ids is not None:
            pairs = zip(recorded_ids, result.token_ids, strict=False)
            divergence = next((i for i, (a, b) in enumerate(pairs) if a != b),
                              min(len(recorded_ids), len(result.token_ids)))
        verdict = verdict_for(same, diff)
        reasons = {
            MATCH: "the replay reproduced the output bytes in the same environment",
            MATCH_PORTABLE: "the replay reproduced the output bytes in a different environment",
            MISMATCH: "the replay produced different bytes in the same environment",
            INCONCLUSIVE: "the replay produced different bytes in a different environment",
        }
        return ReplayOutcome(verdict, tuple(diff), reasons[verdict], result.output_hash,
                             divergence, seconds, {"request": "ok"})

    def info(self) -> dict[str, Any]:
        s = self.settings
        return {"model_dir": str(s.model_dir), "device": s.device, "dtype": s.dtype,
                "threads": s.threads, "controls": s.controls, "models": self.index.known()}
