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
    mismatch        same environment, different bytes (or, for `full`, the same bytes from
                    other token ids than the recorded ones): contradicts the Evidence
    inconclusive    environment differs, different bytes
    not-run         model not available, replay disabled or skipped, request missing,
                    or the replay itself failed (the reason says which)

Methods (`method` in the outcome; config `replay_method`):

    full            regenerate token by token with the recorded seed and compare bytes
    teacher-forced  one forward pass (chunked) over the engine's own prompt ids followed
                    by the record's `output_token_ids`; at every position the engine's
                    own choice (`attester.decode.sample_choice`: greedy argmax, or the
                    seeded draw, consumed in token order) must be the recorded token; then
                    the engine's own stop rules and detokenisation (`decode_loop`, fed the
                    recorded tokens) must end the run where the record ends and give the
                    recorded output bytes. A disagreement whose gap in the verifier's own
                    logits lies within the tolerance (prefill and decode may round
                    differently there) gives `inconclusive` naming the positions; beyond
                    it, `mismatch` (same environment) at that position.
    teacher-forced-then-full (default)
                    teacher-forced first; a full replay only where it is not `match`, and
                    the full replay's verdict stands (the fast result is kept beside it)

Tolerance: `tolerance` bounds |prefill logit - decode logit|. Two logits each off by it
can swap when their gap is at most 2 x tolerance (greedy, top-k cut); a cumulative
interval edge of the tempered softmax moves by at most expm1(2 x tolerance / T) of the
kept mass (sampling, top-p cut).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bytereplay.checklist import ENVIRONMENT_FIELDS
from bytereplay.claims import (
    FULL,
    INCONCLUSIVE,
    MATCH,
    MATCH_PORTABLE,
    MISMATCH,
    NOT_RUN,
    TEACHER_FORCED,
    VERDICTS,
)
from bytereplay.encoding import sha256_tag
from bytereplay.errors import BytereplayError, EvidenceError
from bytereplay.record import RunRecord

if TYPE_CHECKING:
    from attester.engine import Engine, EngineSettings
    from verifier.config import VerifierConfig

log = logging.getLogger("bytereplay.verifier.replay")

MAX_SCAN_DEPTH = 5
RESCAN_COOLDOWN_S = 30.0
DIGEST_CACHE_FILE = "model-digests.json"

TEACHER_FORCED_THEN_FULL = "teacher-forced-then-full"
METHODS: tuple[str, ...] = (FULL, TEACHER_FORCED, TEACHER_FORCED_THEN_FULL)
# The fast check first: it costs a fraction of a regeneration, and every outcome but
# `match` is handed to a full replay, so a prefill/decode rounding difference never
# stands as the final verdict.
DEFAULT_METHOD = TEACHER_FORCED_THEN_FULL
# |prefill - decode| logit bound. Largest differences measured (float32, CPU, 1 thread):
# 1.16e-4 on SmolLM2-135M (issue 16's figure), 1.05e-5 on the fixture model
# (benchmarks/replay.py, 256 tokens). About 10x the largest seen, so only near-ties (gaps
# under 2e-3 logits) are called inconclusive, and a real substitution (gaps of whole
# logits) is still a mismatch.
DEFAULT_TOLERANCE = 1e-3
DEFAULT_CHUNK = 256
# The calibration probe run at model load: prefill against decode on this engine.
CALIBRATION_PROMPT = "bytereplay calibration: prefill against decode"
CALIBRATION_TOKENS = 32
MAX_POSITIONS_NAMED = 32


def _finite(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else x


@dataclass(frozen=True)
class ReplayOutcome:
    verdict: str
    environment_diff: tuple[dict[str, Any], ...] = ()
    reason: str | None = None
    replay_output_hash: str | None = None
    first_divergence: int | None = None  # index of the first differing token id
    seconds: float | None = None
    facts: dict[str, str] = field(default_factory=dict)  # policy facts: request
    method: str = FULL
    # teacher-forced: the smallest margin over all positions (None: none finite) and its
    # unit ("logit" greedy, "mass" sampling); positions whose disagreement lies within the
    # tolerance; the prefill-against-decode measurement of this engine (calibration).
    margin: float | None = None
    margin_unit: str | None = None
    inconclusive_positions: tuple[int, ...] = ()
    tolerance: float | None = None
    bitwise: dict[str, Any] | None = None
    fast: dict[str, Any] | None = None  # the teacher-forced outcome a full replay followed

    @property
    def diff_fields(self) -> list[str]:
        return [str(d["field"]) for d in self.environment_diff]

    @property
    def bitwise_equal(self) -> bool | None:
        """Prefill logits equalled decode logits bit for bit on the measured rows; None
        when not measured."""
        if self.bitwise is None:
            return None
        return bool(self.bitwise.get("equal_rows") == self.bitwise.get("rows"))

    def to_json(self) -> dict[str, Any]:
        """The EAR's `bytereplay.replay` claim."""
        out: dict[str, Any] = {
            "verdict": self.verdict,
            "method": self.method,
            "environment_diff": [dict(d) for d in self.environment_diff],
            "reason": self.reason,
        }
        if self.replay_output_hash is not None:
            out["replay_output_hash"] = self.replay_output_hash
        if self.first_divergence is not None:
            out["first_divergent_token"] = self.first_divergence
        if self.seconds is not None:
            out["seconds"] = round(self.seconds, 4)
        if self.method == TEACHER_FORCED:
            out["margin"] = _finite(self.margin)
            out["margin_unit"] = self.margin_unit
            out["inconclusive_positions"] = list(self.inconclusive_positions[:MAX_POSITIONS_NAMED])
            out["tolerance"] = self.tolerance
            out["bitwise"] = self.bitwise_equal
            if self.bitwise is not None:
                out["bitwise_measurement"] = dict(self.bitwise)
        if self.fast is not None:
            out["teacher_forced"] = dict(self.fast)
        return out


def not_run(reason: str, **facts: str) -> ReplayOutcome:
    return ReplayOutcome(NOT_RUN, reason=reason, facts=dict(facts))


# -- the outcome on the wire (a replay worker to the front end, `verifier.fleet`) -------

_WIRE_FIELDS = {f.name: f for f in dataclasses.fields(ReplayOutcome)}


def outcome_to_wire(outcome: ReplayOutcome) -> dict[str, Any]:
    """Every field of `outcome` as plain JSON (a margin that is not finite travels as null,
    which the EAR claim writes for it anyway)."""
    doc = dataclasses.asdict(outcome)
    doc["margin"] = _finite(outcome.margin)
    doc["environment_diff"] = [dict(d) for d in outcome.environment_diff]
    doc["inconclusive_positions"] = list(outcome.inconclusive_positions)
    return doc


def _wire_field(name: str, value: Any) -> Any:
    kinds: dict[str, tuple[type, ...]] = {
        "verdict": (str,), "reason": (str, type(None)), "replay_output_hash": (str, type(None)),
        "first_divergence": (int, type(None)), "seconds": (int, float, type(None)),
        "facts": (dict,), "method": (str,), "margin": (int, float, type(None)),
        "margin_unit": (str, type(None)), "tolerance": (int, float, type(None)),
        "bitwise": (dict, type(None)), "fast": (dict, type(None)),
        "environment_diff": (list,), "inconclusive_positions": (list,)}
    if isinstance(value, bool) or not isinstance(value, kinds[name]):
        raise EvidenceError(f"replay outcome: {name!r} has the wrong type")
    return _wire_value(name, value)


def _wire_value(name: str, value: Any) -> Any:
    if name == "verdict" and value not in VERDICTS:
        raise EvidenceError(f"replay outcome: unknown verdict {value!r}")
    if name == "method" and value not in (FULL, TEACHER_FORCED):
        raise EvidenceError(f"replay outcome: unknown method {value!r}")
    if name == "facts" and not all(isinstance(v, str) for v in value.values()):
        raise EvidenceError("replay outcome: 'facts' values are text")
    if name == "environment_diff":
        if not all(isinstance(d, dict) and isinstance(d.get("field"), str) for d in value):
            raise EvidenceError("replay outcome: 'environment_diff' holds {field, ...} objects")
        return tuple(dict(d) for d in value)
    if name == "inconclusive_positions":
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in value):
            raise EvidenceError("replay outcome: 'inconclusive_positions' are integers")
        return tuple(value)
    return value


def outcome_from_wire(doc: Any) -> ReplayOutcome:
    """The outcome `outcome_to_wire` wrote; anything else is refused (`EvidenceError`)."""
    if not isinstance(doc, dict):
        raise EvidenceError("replay outcome: expected an object")
    unknown = sorted(set(doc) - set(_WIRE_FIELDS))
    if unknown:
        raise EvidenceError(f"replay outcome: unknown member {unknown[0]!r}")
    if "verdict" not in doc:
        raise EvidenceError("replay outcome: 'verdict' is required")
    return ReplayOutcome(**{k: _wire_field(k, v) for k, v in doc.items()})


def preconditions(request: Any, record: RunRecord) -> ReplayOutcome | None:
    """The `not-run` outcome of a run that cannot be replayed whatever the model (no
    request, a request that does not describe the record, no model digest, no output
    hash); None when it can be."""
    if request is None:
        return not_run("the Evidence carries no request to replay", request="missing")
    problem = check_request(request, record)
    if problem is not None:
        return not_run(f"the recorded request does not match the record: {problem}",
                       request="differs")
    if not isinstance(record.get("model.digest"), str):
        return not_run("the record names no model digest", request="ok")
    if record.output_hash is None:
        return not_run("the record has no output hash to compare", request="ok")
    return None


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
    method: str = DEFAULT_METHOD
    tolerance: float = DEFAULT_TOLERANCE
    chunk: int = DEFAULT_CHUNK
    calibrate: bool = True  # measure prefill against decode once per loaded engine

    @classmethod
    def from_config(cls, cfg: VerifierConfig) -> ReplaySettings:
        """The replay settings of a verifier configuration (front end or fleet worker)."""
        return cls(cfg.model_dir, cfg.device, cfg.dtype, cfg.threads, cfg.controls,
                   method=cfg.replay_method, tolerance=cfg.replay_tolerance,
                   chunk=cfg.replay_chunk, calibrate=cfg.replay_calibrate)


class _RecordEnded(Exception):
    """The stop rules asked for a token after the record's last one."""


class _Forced:
    """Teacher forcing inside the engine's own `decode_loop`: `choose` re-derives the
    engine's choice from the teacher-forced logits and returns the RECORDED token (so the
    loop's stop rules and text follow the record); `step` hands the next row."""

    def __init__(self, logits: Any, recorded: list[int], policy: Any) -> None:
        from attester.decode import TokenChooser

        self.logits, self.recorded = logits, recorded
        self.chooser = TokenChooser(policy)
        self.i = 0
        self.margin = math.inf
        self.disagreements: list[tuple[int, int, int, float, str]] = []

    def choose(self, logits: Any) -> int:
        i = self.i
        if i >= len(self.recorded):
            raise _RecordEnded
        c = self.chooser.choice(logits, self.recorded[i])
        self.margin = min(self.margin, c.margin)
        if c.token != self.recorded[i]:
            assert c.gap is not None and c.gap_unit is not None
            self.disagreements.append((i, c.token, self.recorded[i], c.gap, c.gap_unit))
        self.i += 1
        return self.recorded[i]

    def step(self, _tok: int) -> Any:
        if self.i >= len(self.recorded):
            raise _RecordEnded
        return self.logits[self.i]


def within_tolerance(gap: float, unit: str, tolerance: float, temperature: float) -> bool:
    """Whether a disagreement of `gap` could come from logits each off by `tolerance`."""
    if unit == "logit":
        return gap <= 2 * tolerance
    if temperature <= 0:
        return False
    return gap <= math.expm1(2 * tolerance / temperature)


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
        self._calibrations: dict[int, dict[str, Any]] = {}

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

    def replay(self, request: Any, record: RunRecord, method: str | None = None) -> ReplayOutcome:
        """Replay one run by `method` (default: the configured one); never raises for a
        bad run (the outcome says why)."""
        method = method or self.settings.method
        if method not in METHODS:
            raise BytereplayError(f"replay method must be one of {', '.join(METHODS)}")
        refused = preconditions(request, record)
        if refused is not None:
            return refused
        digest = str(record.get("model.digest"))
        try:
            engine = self.engine_for(digest)
        except Exception as exc:  # ModelDirError, or transformers failing on the directory
            if not isinstance(exc, BytereplayError):
                log.exception("loading the model %s failed", digest)
            detail = exc.detail if isinstance(exc, BytereplayError) else type(exc).__name__
            return not_run(f"the model could not be loaded: {detail}", request="ok")
        if engine is None:
            return not_run(f"model {digest} is not available to the verifier", request="ok")
        if method == FULL:
            return self._run(engine, request, record)
        fast = self._teacher_forced(engine, request, record)
        if method == TEACHER_FORCED or fast.verdict == MATCH:
            return fast
        full = self._run(engine, request, record)
        summary = {k: v for k, v in fast.to_json().items()
                   if k in ("verdict", "reason", "first_divergent_token", "seconds", "margin",
                            "margin_unit", "inconclusive_positions", "bitwise")}
        return dataclasses.replace(full, fast=summary)

    def calibration(self, engine: Engine) -> dict[str, Any] | None:
        """Prefill against decode on `engine`, measured once (a greedy probe of
        CALIBRATION_TOKENS tokens): rows compared, rows bitwise equal, the largest
        absolute logit difference, the argmax agreement. None when switched off."""
        if not self.settings.calibrate:
            return None
        with self._lock:
            hit = self._calibrations.get(id(engine))
        if hit is not None:
            return hit
        from attester.engine import DecodePolicy, InferenceRequest

        req = InferenceRequest(CALIBRATION_PROMPT,
                               decode=DecodePolicy(max_new_tokens=CALIBRATION_TOKENS, eos=False))
        ids = list(engine.generate(req).token_ids)
        prompt = engine.prompt_ids(req)
        found = measure_agreement(engine.stepwise_logits(prompt, ids),
                                  engine.teacher_forced_logits(prompt, ids,
                                                               chunk=self.settings.chunk))
        found["probe_tokens"] = len(ids)
        with self._lock:
            self._calibrations[id(engine)] = found
        return found

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
        recorded_ids = record.output_token_ids
        # The token ids are part of the attested record: equal bytes from other tokens
        # still contradict it (and the teacher-forced method catches them at a position).
        same = result.output_hash == record.output_hash and (
            recorded_ids is None or tuple(recorded_ids) == tuple(result.token_ids))
        divergence = None
        if not same and recorded_ids is not None:
            pairs = zip(recorded_ids, result.token_ids, strict=False)
            divergence = next((i for i, (a, b) in enumerate(pairs) if a != b),
                              min(len(recorded_ids), len(result.token_ids)))
        verdict = verdict_for(same, diff)
        reasons: dict[str, str] = {
            MATCH: "the replay reproduced the output bytes in the same environment",
            MATCH_PORTABLE: "the replay reproduced the output bytes in a different environment",
            MISMATCH: "the replay produced different bytes in the same environment",
            INCONCLUSIVE: "the replay produced different bytes in a different environment",
        }
        reason = reasons[verdict]
        if not same and result.output_hash == record.output_hash:
            reason = reason.replace("different bytes", "the same bytes from different token ids")
        return ReplayOutcome(verdict, tuple(diff), reason, result.output_hash,
                             divergence, seconds, {"request": "ok"}, method=FULL)

    def _teacher_forced(self, engine: Engine, request: Mapping[str, Any],
                        record: RunRecord) -> ReplayOutcome:
        from attester.decode import decode_loop
        from attester.engine import DecodePolicy, InferenceRequest

        def outcome(verdict: str, reason: str, **kw: Any) -> ReplayOutcome:
            return ReplayOutcome(verdict, tuple(diff), reason, method=TEACHER_FORCED,
                                 seconds=time.perf_counter() - started, facts={"request": "ok"},
                                 tolerance=tol, bitwise=bitwise, **kw)

        started = time.perf_counter()
        tol = self.settings.tolerance
        if not record.output_token_ids:
            return ReplayOutcome(NOT_RUN, reason="the record has no output token ids to "
                                 "teacher-force", method=TEACHER_FORCED, facts={"request": "ok"})
        recorded = [int(t) for t in record.output_token_ids]
        try:
            policy = DecodePolicy(**decode_settings(request, record))
            req = InferenceRequest(str(request["input"]), str(request["template"]), policy)
            prompt_ids = engine.prompt_ids(req)
            policy = engine.validate(req).decode
            bitwise = self.calibration(engine)
            logits = engine.teacher_forced_logits(prompt_ids, recorded, chunk=self.settings.chunk)
            here = RunRecord.from_dict(engine.environment_fields())
            forced = _Forced(logits, recorded, policy)
            ended_early = False
            try:
                out = decode_loop(logits[0], forced.step, policy, eos_ids=engine.eos_ids,
                                  detokenize=engine.detokenize, choose=forced.choose)
            except _RecordEnded:
                ended_early, out = True, None
        except Exception as exc:  # the engine refused the request, or failed running it
            if not isinstance(exc, BytereplayError):
                log.exception("teacher-forced replay failed")
            detail = exc.detail if isinstance(exc, BytereplayError) else type(exc).__name__
            return ReplayOutcome(NOT_RUN, reason=f"the teacher-forced replay failed: {detail}",
                                 method=TEACHER_FORCED, facts={"request": "ok"})
        diff = environment_diff(record, here)
        unit = "logit" if policy.greedy else "mass"
        margin = {"margin": forced.margin, "margin_unit": unit}
        checked = forced.i  # positions whose choice was re-derived
        hard = [d for d in forced.disagreements
                if not within_tolerance(d[3], d[4], tol, float(policy.temperature))]
        soft = [d for d in forced.disagreements if d not in hard]
        where = f" (environment differs: {', '.join(str(d['field']) for d in diff)})" \
            if diff else ""
        if hard:
            i, chosen, rec, gap, gunit = hard[0]
            return outcome(verdict_for(False, diff),
                           f"position {i}: the recorded token {rec} is not the engine's "
                           f"choice {chosen} (gap {gap:.3g} {gunit}, beyond the tolerance "
                           f"{tol:g}){where}", first_divergence=i,
                           inconclusive_positions=tuple(d[0] for d in soft), **margin)
        if ended_early or out is None:
            return outcome(verdict_for(False, diff),
                           f"stop rule: the record ends after {len(recorded)} tokens, but no "
                           f"stop rule holds there (max_new_tokens {policy.max_new_tokens}, "
                           f"no EOS or stop sequence){where}",
                           first_divergence=len(recorded), **margin)
        if len(out.token_ids) < len(recorded):
            k = len(out.token_ids) - 1
            return outcome(verdict_for(False, diff),
                           f"stop rule: the run ends at position {k} ({out.finish_reason}), "
                           f"but the record continues to {len(recorded)} tokens{where}",
                           first_divergence=k + 1, **margin)
        replay_hash = sha256_tag(out.text.encode("utf-8"))
        if replay_hash != record.output_hash:
            return outcome(verdict_for(False, diff),
                           "detokenisation: the recorded output bytes are not the text of "
                           f"the recorded tokens{where}", replay_output_hash=replay_hash,
                           **margin)
        if soft:
            positions = tuple(d[0] for d in soft)
            named = ", ".join(map(str, positions[:MAX_POSITIONS_NAMED]))
            return outcome(INCONCLUSIVE,
                           f"near-tie at position(s) {named}: the recorded token differs from "
                           f"the engine's choice only within the tolerance {tol:g}, where "
                           f"prefill and decode may round differently{where}",
                           replay_output_hash=replay_hash, first_divergence=positions[0],
                           inconclusive_positions=positions, **margin)
        verdict = verdict_for(True, diff)
        text = (f"teacher forcing re-derived all {checked} recorded tokens, the stop rule and "
                "the output bytes")
        return outcome(verdict, text + (" in the same environment" if not diff else where),
                       replay_output_hash=replay_hash, **margin)

    def info(self) -> dict[str, Any]:
        s = self.settings
        return {"model_dir": str(s.model_dir), "device": s.device, "dtype": s.dtype,
                "threads": s.threads, "controls": s.controls, "method": s.method,
                "tolerance": s.tolerance, "models": self.index.known()}


def measure_agreement(decode: Any, prefill: Any) -> dict[str, Any]:
    """Prefill logits against decode logits, row by row: rows, bitwise-equal rows, the
    largest absolute difference, the share of rows whose argmax agrees."""
    import torch

    rows = int(decode.shape[0])
    equal = int(sum(bool(torch.equal(decode[i], prefill[i])) for i in range(rows)))
    max_abs = float((decode.double() - prefill.double()).abs().max()) if rows else 0.0
    agree = int((decode.argmax(dim=-1) == prefill.argmax(dim=-1)).sum())
    return {"rows": rows, "equal_rows": equal, "max_abs_diff": max_abs,
            "argmax_agreement": round(agree / rows, 6) if rows else 1.0}
