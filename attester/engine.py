"""The attester's deterministic inference engine.

`Engine` loads one local Hugging Face causal LM once (after hashing every file of its
directory), runs requests through its own token loop (`attester.decode`) under the
determinism controls (`attester.controls`) and returns the output bytes, their hash,
the token ids and the run record.

Concurrency: one Engine serves many threads. Each request has its own KV cache and its
own generator; every forward pass runs under one process-wide lock, which also puts
this engine's controls in force first. So concurrent or interleaved requests get the
bytes they get alone, and two engines with different settings can share a process.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from attester import chat, controls, environment, gguf_model
from attester.decode import (
    DecodePolicy,
    InferenceError,
    RequestError,
    decode_loop,
    validate_policy,
)
from attester.model_digest import file_snapshot, model_digest_cached, snapshot
from bytereplay import __version__
from bytereplay.encoding import OCI_DIGEST_RE, sha256_tag
from bytereplay.errors import BytereplayError, ModelDirError, UsageError
from bytereplay.record import RunRecord
from bytereplay.request import DEFAULT_TEMPLATE, INPUT_MARK, MAX_TEMPLATE_CHARS

__all__ = [
    "DEFAULT_TEMPLATE",
    "DTYPES",
    "DecodePolicy",
    "Engine",
    "EngineSettings",
    "InferenceError",
    "InferenceRequest",
    "InferenceResult",
    "ModelDirError",
    "RequestError",
    "find_default_model_dir",
    "model_id_for",
]

DTYPES = ("float32", "bfloat16", "float16")
MAX_INPUT_CHARS = 1 << 18
MAX_THREADS = 1024
MAX_LABEL_CHARS = 4096

Progress = Callable[[str], None]


@dataclass(frozen=True)
class InferenceRequest:
    input: str
    template: str = DEFAULT_TEMPLATE
    decode: DecodePolicy = field(default_factory=DecodePolicy)


@dataclass(frozen=True)
class EngineSettings:
    model_dir: Path | None = None  # None => gguf_model.default_model_path() (SmolLM2)
    device: str = "cpu"
    dtype: str = "float32"
    threads: int = 1
    controls: bool = True
    container_digest: str | None = None  # OCI "sha256:<hex>", from configuration
    operator: str | None = None


@dataclass(frozen=True)
class InferenceResult:
    output: str
    output_bytes: bytes
    output_hash: str  # "sha-256:<hex>"
    token_ids: tuple[int, ...]
    record: RunRecord
    finish_reason: str = "length"  # "length", "eos" or "stop"
    prompt_tokens: int = 0  # the prompt's token count (OpenAI `usage`)


def find_default_model_dir() -> Path:
    """The fixture model: `fixtures/model` in a checkout, the data package
    `attester.fixture_model` in a wheel (pyproject.toml ships the same files)."""
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "fixtures" / "model", here / "fixture_model"]
    for c in candidates:
        if (c / "config.json").is_file():
            return c
    raise ModelDirError("no model directory given and the fixture model is not installed; "
                        "pass --model DIR (a local Hugging Face causal-LM directory)")


_HF_SNAPSHOT_RE = re.compile(r"models--([^/]+)--([^/]+)/snapshots/([0-9a-f]{7,64})$")


def model_id_for(model_dir: Path) -> str:
    """A readable id: config.json `_name_or_path` when it is a name (not a path), the
    Hugging Face cache name `org/name@revision`, or else the directory's name."""
    try:
        cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        name = cfg.get("_name_or_path") if isinstance(cfg, dict) else None
    except (OSError, ValueError):
        name = None
    if isinstance(name, str) and name and not name.startswith(("/", ".", "~")) and "\\" not in name:
        return name[:MAX_LABEL_CHARS]
    m = _HF_SNAPSHOT_RE.search(model_dir.resolve().as_posix())
    if m:
        return f"{m.group(1)}/{m.group(2)}@{m.group(3)}"
    return model_dir.resolve().name or "model"


def _torch() -> Any:
    import torch

    return torch


def _dtype_kwarg() -> str:
    """`dtype` (transformers >= 4.56) or the older `torch_dtype`."""
    import transformers

    m = re.match(r"(\d+)\.(\d+)", transformers.__version__)
    version = (int(m.group(1)), int(m.group(2))) if m else (5, 0)
    return "dtype" if version >= (4, 56) else "torch_dtype"


def _validate_settings(s: EngineSettings) -> None:
    if not isinstance(s, EngineSettings):
        raise UsageError("settings must be EngineSettings")
    try:
        environment.parse_device(s.device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if s.dtype not in DTYPES:
        raise UsageError(f"dtype must be one of {', '.join(DTYPES)}, got {s.dtype!r}")
    if isinstance(s.threads, bool) or not isinstance(s.threads, int):
        raise UsageError("threads must be an integer")
    if not 1 <= s.threads <= MAX_THREADS:
        raise UsageError(f"threads must be in 1..{MAX_THREADS}")
    if s.container_digest is not None and not OCI_DIGEST_RE.match(s.container_digest):
        raise UsageError("container digest must be an OCI digest 'sha256:<64 hex>'")
    if s.operator is not None and (not isinstance(s.operator, str) or not s.operator):
        raise UsageError("operator must be a non-empty string")
    if s.operator is not None and len(s.operator) > MAX_LABEL_CHARS:
        raise UsageError(f"operator longer than {MAX_LABEL_CHARS} characters")


def _utf8(value: str, what: str) -> bytes:
    try:
        return value.encode("utf-8")
    except UnicodeEncodeError:
        raise RequestError(f"{what} is not valid Unicode text (lone surrogate)") from None


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """No tqdm bars or info chatter from transformers while loading."""
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    level = hf_logging.get_verbosity()
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


class Engine:
    """Deterministic inference on one local causal LM. Thread-safe."""

    def __init__(self, settings: EngineSettings = EngineSettings(), progress: Progress | None = None) -> None:
        _validate_settings(settings)
        self.settings = settings
        say: Progress = progress or (lambda _msg: None)
        model_dir = Path(settings.model_dir) if settings.model_dir else gguf_model.default_model_path()
        self.model_dir = model_dir
        gguf = gguf_model.gguf_file(model_dir)  # None: a Hugging Face directory
        self._control_key = controls.ControlKey(
            settings.controls, settings.threads if settings.controls else None
        )
        # Before anything touches CUDA: the cuBLAS workspace variable and the switches.
        controls.prepare_process(settings.controls)
        torch = _torch()
        kind, index = environment.parse_device(settings.device)
        if kind == "cuda" and not torch.cuda.is_available():
            raise UsageError(f"device {settings.device!r} asked for, but CUDA is not available")
        with controls.STATE_LOCK:
            controls.ensure(self._control_key)

        say(f"model: hashing {model_dir}")
        before = file_snapshot(gguf) if gguf else snapshot(model_dir)
        self.model_digest: str = (gguf_model.gguf_digest(gguf, progress) if gguf
                                  else model_digest_cached(model_dir, progress=progress))
        self.model_id: str = gguf_model.model_id(gguf) if gguf else model_id_for(model_dir)

        from transformers import AutoModelForCausalLM, AutoTokenizer

        dtype = getattr(torch, settings.dtype)
        try:
            with _quiet_transformers():
                if gguf is not None:
                    say(f"model: loading and dequantising {gguf.name} ({settings.dtype})")
                    loaded_gguf = gguf_model.load_gguf(gguf, dtype, _dtype_kwarg())
                    self.tokenizer, model = loaded_gguf.tokenizer, loaded_gguf.model
                else:
                    say("model: loading tokenizer")
                    self.tokenizer = AutoTokenizer.from_pretrained(
                        str(model_dir), local_files_only=True, trust_remote_code=False
                    )
                    say(f"model: loading weights ({settings.dtype})")
                    model = AutoModelForCausalLM.from_pretrained(
                        str(model_dir),
                        local_files_only=True,
                        trust_remote_code=False,
                        **{_dtype_kwarg(): dtype},
                    )
        except BytereplayError:
            raise
        except Exception as exc:
            raise ModelDirError(f"cannot load the model from {model_dir}: {exc}") from None
        self.chat_template: str = chat.model_template(self.tokenizer)
        loaded = {p.dtype for p in model.parameters() if p.is_floating_point()}
        if dtype not in loaded:  # some models keep a few modules in float32 on purpose
            raise ModelDirError(f"weights loaded as {sorted(map(str, loaded))}, not {settings.dtype}")
        self.device = torch.device(kind if index is None else f"{kind}:{index}")
        say(f"model: moving to {self.device}")
        self.model = model.to(self.device).eval()
        if (file_snapshot(gguf) if gguf else snapshot(model_dir)) != before:
            raise ModelDirError("the model directory changed while it was loaded; try again")

        params = inspect.signature(self.model.forward).parameters
        self._cache_kw = "cache" if "cache" in params else "past_key_values"
        self._logits_kw = (
            "logits_to_keep"
            if "logits_to_keep" in params
            else ("num_logits_to_keep" if "num_logits_to_keep" in params else None)
        )
        self._eos_ids = self._find_eos_ids()
        cfg = self.model.config
        self._max_positions: int | None = getattr(cfg, "max_position_embeddings", None) or getattr(
            cfg, "n_positions", None
        )
        self._fallback_bos: int | None = next(
            (
                int(t)
                for t in (self.tokenizer.bos_token_id, self.tokenizer.eos_token_id)
                if isinstance(t, int)
            ),
            None,
        )
        self._tok_lock = threading.Lock()

        if kind == "cuda":
            say("model: warm-up forward")
            self._warm_up()
        with controls.STATE_LOCK:
            controls.ensure(self._control_key)
            determinism = controls.read_determinism()
            extra = controls.read_extra()
        self._static_env = environment.environment_fields(
            settings.device,
            dtype=settings.dtype,
            threads=int(extra["threads"]),  # type: ignore[call-overload]
            determinism=determinism,
            container_digest=settings.container_digest,
        )
        # The GGUF reader's version decides the dequantised weights: replay-relevant.
        framework = dict(self._static_env.get("framework") or {})  # type: ignore[call-overload]
        self._static_env["framework"] = {**framework, **gguf_model.framework_versions()}
        self.environment: dict[str, object] = {
            "runtime": {"name": "bytereplay", "version": __version__},
            "model": {"id": self.model_id, "digest": self.model_digest},
            "device": settings.device,
            "dtype": settings.dtype,
            "controls": settings.controls,
            "controls_detail": extra,
            "operator": settings.operator,
            "record_environment": self.environment_fields(),
            "detected": environment.detected(),
        }
        say("model: ready")

    # -- setup helpers ---------------------------------------------------------

    def _find_eos_ids(self) -> frozenset[int]:
        ids: set[int] = set()
        sources: list[object] = [getattr(self.tokenizer, "eos_token_id", None)]
        gen = getattr(self.model, "generation_config", None)
        if gen is not None:
            sources.append(getattr(gen, "eos_token_id", None))
        sources.append(getattr(self.model.config, "eos_token_id", None))
        for s in sources:
            if isinstance(s, int) and not isinstance(s, bool):
                ids.add(s)
            elif isinstance(s, (list, tuple)):
                ids.update(int(v) for v in s if isinstance(v, int))
        return frozenset(ids)

    def _warm_up(self) -> None:
        torch = _torch()
        tok = self._fallback_bos if self._fallback_bos is not None else 0
        with controls.STATE_LOCK, torch.inference_mode():
            controls.ensure(self._control_key)
            self.model(input_ids=torch.tensor([[tok]], device=self.device), use_cache=False)

    # -- public API ----------------------------------------------------------------

    def environment_fields(self) -> dict[str, object]:
        """The record's environment part: model, container, runtime, framework, gpu,
        toolkit, cpu, threads, dtype, determinism (read back from torch now)."""
        with controls.STATE_LOCK:
            controls.ensure(self._control_key)
            determinism = controls.read_determinism()
            threads = _torch().get_num_threads()
        env = dict(self._static_env)
        env["determinism"] = determinism
        env["threads"] = int(threads)
        return {"model": {"id": self.model_id, "digest": self.model_digest}, **env}

    def validate(self, request: InferenceRequest) -> InferenceRequest:
        """The request with its policy normalised; RequestError when it is refused."""
        if not isinstance(request, InferenceRequest):
            raise RequestError("request must be an InferenceRequest")
        if not isinstance(request.input, str):
            raise RequestError("input must be a string")
        if len(request.input) > MAX_INPUT_CHARS:
            raise RequestError(f"input longer than {MAX_INPUT_CHARS} characters")
        if not isinstance(request.template, str):
            raise RequestError("template must be a string")
        if len(request.template) > MAX_TEMPLATE_CHARS:
            raise RequestError(f"template longer than {MAX_TEMPLATE_CHARS} characters")
        _utf8(request.input, "input")
        _utf8(request.template, "template")
        if chat.is_chat(request.template):  # messages + this model's chat template
            if request.template != self.chat_template:
                raise chat.TemplateMismatch(
                    "setup change: prompt template: the request's chat template "
                    f"({chat.template_hash(request.template)}) is not this model's "
                    f"({chat.template_hash(self.chat_template)})")
            chat.parse_canonical(request.input)
        policy = validate_policy(request.decode)
        if policy is not request.decode:
            request = InferenceRequest(request.input, request.template, policy)
        return request

    def _encode(self, prompt: str, special: bool = True) -> list[int]:
        with self._tok_lock:
            ids = [int(t) for t in self.tokenizer(prompt, add_special_tokens=special)["input_ids"]]
        if not ids:
            if self._fallback_bos is None:
                raise RequestError("the prompt is empty and the tokenizer has no BOS token")
            ids = [self._fallback_bos]
        return ids

    def _detokenize(self, ids: Sequence[int]) -> str:
        with self._tok_lock:
            text = self.tokenizer.decode(
                list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False
            )
        return str(text)

    def _logits(self, input_ids: Sequence[int], cache: Any, keep: int) -> tuple[Any, Any]:
        """One forward pass under the state lock: (the logits of the last `keep` positions,
        float32 on the CPU, shape [keep, vocab]; the cache). The only place where this
        engine runs its model: the token loop and the teacher-forced pass both call it."""
        torch = _torch()
        kwargs: dict[str, Any] = {"use_cache": True}
        if cache is not None:
            kwargs[self._cache_kw] = cache
        if self._logits_kw is not None:
            kwargs[self._logits_kw] = keep
        with controls.STATE_LOCK:
            controls.ensure(self._control_key)
            x = torch.tensor([list(input_ids)], dtype=torch.long, device=self.device)
            out = self.model(input_ids=x, **kwargs)
            logits = out.logits[0, -keep:].detach().to("cpu", torch.float32, copy=True)
        new_cache = getattr(out, "cache", None)
        if new_cache is None:
            new_cache = getattr(out, "past_key_values", None)
        return logits, new_cache

    def _forward(self, input_ids: list[int], cache: Any) -> tuple[Any, Any]:
        """One token-loop step: (next-token logits on CPU, cache)."""
        logits, new_cache = self._logits(input_ids, cache, 1)
        return logits[0], new_cache

    @property
    def eos_ids(self) -> frozenset[int]:
        """The ids that end a run when the policy's `eos` rule is on."""
        return self._eos_ids

    def detokenize(self, ids: Sequence[int]) -> str:
        """Token ids to text as the token loop does it (special tokens dropped)."""
        return self._detokenize(ids)

    def prompt_ids(self, request: InferenceRequest) -> list[int]:
        """The engine's own rendering of `request` as token ids: the template filled in,
        or the chat messages rendered by the model's template (`_render_ids`), tokenised as
        `generate` does it (RequestError when it does not fit the context)."""
        request = self.validate(request)
        prompt_ids = self._render_ids(request)
        n = request.decode.max_new_tokens
        if self._max_positions and len(prompt_ids) + n > self._max_positions:
            raise RequestError(
                f"prompt ({len(prompt_ids)} tokens) plus max_new_tokens "
                f"({n}) exceeds the model's context of "
                f"{self._max_positions} tokens"
            )
        return prompt_ids

    def teacher_forced_logits(
        self, prompt_ids: Sequence[int], output_ids: Sequence[int], *, chunk: int = 256
    ) -> Any:
        """The logits from which each of `output_ids` was chosen, by teacher forcing:
        float32 tensor [len(output_ids), vocab], row i = the next-token logits after
        prompt + output_ids[:i].

        One forward pass over prompt + output_ids[:-1] (the last token is never fed back),
        keeping the logits of the last len(output_ids) positions; past `chunk` output
        tokens the rest follows through the KV cache, `chunk` tokens per pass. This
        engine's dtype and controls apply. The answer does not depend on `chunk` beyond
        rounding: on CPUs the matrix kernels round differently for different row counts
        (see benchmarks/prefill_decode.py), so neither chunk sizes nor prefill and decode
        agree bit for bit in general.
        """
        torch = _torch()
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise UsageError("chunk must be a positive integer")
        if not output_ids:
            raise RequestError("no output tokens to check")
        if not prompt_ids:
            raise RequestError("no prompt tokens")
        rest = [int(t) for t in output_ids[:-1]]
        with torch.inference_mode():
            head = rest[:chunk]
            logits, cache = self._logits([*prompt_ids, *head], None, 1 + len(head))
            rows = [logits]
            for start in range(len(head), len(rest), chunk):
                part = rest[start:start + chunk]
                logits, cache = self._logits(part, cache, len(part))
                rows.append(logits)
        return torch.cat(rows, dim=0)

    def stepwise_logits(self, prompt_ids: Sequence[int], output_ids: Sequence[int]) -> Any:
        """The logits the token loop saw when it produced `output_ids`: the same passes as
        `generate` (prompt, then one token at a time through the KV cache), fed the recorded
        tokens. Shape as `teacher_forced_logits`; for measuring prefill against decode."""
        torch = _torch()
        if not output_ids:
            raise RequestError("no output tokens to check")
        with torch.inference_mode():
            logits, cache = self._forward(list(prompt_ids), None)
            rows = [logits]
            for tok in output_ids[:-1]:
                logits, cache = self._forward([int(tok)], cache)
                rows.append(logits)
        return torch.stack(rows, dim=0)

    def generate(
        self,
        request: InferenceRequest,
        *,
        verifier_ref: str | None = None,
        challenge_window: tuple[str, str] | None = None,
    ) -> InferenceResult:
        """Run one request; same request and settings => same bytes, every time."""
        torch = _torch()
        request = self.validate(request)
        policy = request.decode
        appraisal = self._appraisal_fields(verifier_ref, challenge_window)
        prompt_ids = self.prompt_ids(request)
        state: dict[str, Any] = {}

        with torch.inference_mode():
            first, state["cache"] = self._forward(prompt_ids, None)
            with controls.STATE_LOCK:
                controls.ensure(self._control_key)
                determinism = controls.read_determinism()
                threads = int(torch.get_num_threads())

            def step(tok: int) -> Any:
                logits, state["cache"] = self._forward([tok], state["cache"])
                return logits

            out = decode_loop(
                first,
                step,
                policy,
                eos_ids=self._eos_ids,
                detokenize=self._detokenize,
            )
        output_bytes = out.text.encode("utf-8")
        output_hash = sha256_tag(output_bytes)
        env = dict(self._static_env)
        env["determinism"] = determinism
        env["threads"] = threads
        record_dict: dict[str, object] = {
            "input_hash": sha256_tag(request.input.encode("utf-8")),
            "prompt_template_hash": sha256_tag(request.template.encode("utf-8")),
            "model": {"id": self.model_id, "digest": self.model_digest},
            **env,
            "seed": policy.seed,
            "sampling": {
                "temperature": float(policy.temperature),
                "top_k": policy.top_k,
                "top_p": float(policy.top_p),
            },
            "stop": {
                "max_new_tokens": policy.max_new_tokens,
                "stop_sequences": list(policy.stop),
                "eos": policy.eos,
            },
            "output_hash": output_hash,
            "output_token_ids": list(out.token_ids),
            **appraisal,
            "operator": self.settings.operator,
        }
        record = RunRecord.from_dict(record_dict)
        return InferenceResult(
            output=out.text,
            output_bytes=output_bytes,
            output_hash=output_hash,
            token_ids=out.token_ids,
            record=record,
            finish_reason=out.finish_reason,
            prompt_tokens=len(prompt_ids),
        )

    def _render_ids(self, request: InferenceRequest) -> list[int]:
        """The prompt's token ids: the text template filled in, or the messages rendered by
        the chat template (whose output already holds its special tokens)."""
        if chat.is_chat(request.template):
            messages = chat.parse_canonical(request.input)
            with self._tok_lock:
                prompt = chat.render(self.tokenizer, messages, request.template)
            return self._encode(prompt, special=False)
        return self._encode(request.template.replace(INPUT_MARK, request.input))

    @staticmethod
    def _appraisal_fields(
        verifier_ref: str | None, challenge_window: tuple[str, str] | None
    ) -> dict[str, object]:
        """verifier_ref and challenge_window, checked before any compute is spent."""
        fields: dict[str, object] = {"verifier_ref": verifier_ref, "challenge_window": None}
        if verifier_ref is not None and (not isinstance(verifier_ref, str) or not verifier_ref):
            raise RequestError("verifier_ref must be a non-empty string")
        if challenge_window is not None:
            if not isinstance(challenge_window, (tuple, list)) or len(challenge_window) != 2:
                raise RequestError("challenge_window must be (issued_at, expires_at)")
            issued, expires = challenge_window
            fields["challenge_window"] = {"issued_at": issued, "expires_at": expires}
        try:
            RunRecord.from_dict(fields)
        except BytereplayError as exc:
            raise RequestError(exc.detail) from None
        return fields
