"""The run record, `deterministic_run_preflight.v1`.

One canonical object that fixes the output bytes of one inference. Every field is
optional: a record with missing fields is still appraised, its claim is smaller
(see `bytereplay.preflight`). Parsing is strict: unknown fields, wrong types and
malformed hashes raise `RecordError` naming the field.

The dataclasses below are the one source of truth for the record's shape; the
checklist in `bytereplay.checklist` names every leaf and a test keeps them in step.
Reading and writing them is `bytereplay.record_codec`'s.
"""

from __future__ import annotations

import dataclasses
import operator
import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import orjson

from bytereplay.encoding import (
    HASH_RE,
    OCI_DIGEST_RE,
    cbor_dumps,
    cbor_loads,
    jcs,
    sha256_tag,
    strict_json_loads,
)
from bytereplay.errors import BytereplayError, RecordError
from bytereplay.record_codec import Check, NotPlain, build, hints, inner, plain_unbuild, unbuild
from bytereplay.request import MAX_TEMPERATURE, temperature_ok, top_p_ok

SCHEMA = "deterministic_run_preflight.v1"
MAX_RECORD_BYTES = 1 << 20
MISSING_SENTINELS = ("unknown",)  # a recorded "unknown" is reported as missing


def _hash(path: str, value: str) -> None:
    if not HASH_RE.match(value):
        raise RecordError(path, "expected 'sha-256:' followed by 64 lowercase hex digits")


def _oci_digest(path: str, value: str) -> None:
    if value not in MISSING_SENTINELS and not OCI_DIGEST_RE.match(value):
        raise RecordError(path, "expected an OCI digest 'sha256:' followed by 64 lowercase hex digits")


def _rfc3339(path: str, value: str) -> None:
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})", value):
        raise RecordError(path, "expected an RFC 3339 timestamp such as 2026-01-01T00:00:00Z")
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RecordError(path, "expected an RFC 3339 timestamp") from None


def _non_negative(path: str, value: int) -> None:
    if value < 0:
        raise RecordError(path, "must not be negative")


def _positive(path: str, value: int) -> None:
    if value < 1:
        raise RecordError(path, "must be at least 1")


def _token_ids(path: str, value: tuple[int, ...]) -> None:
    for i, tok in enumerate(value):
        if tok < 0:
            raise RecordError(f"{path}[{i}]", "token ids are not negative")


def _temperature(path: str, value: float) -> None:
    if not temperature_ok(value):
        raise RecordError(path, f"must be in 0..{MAX_TEMPERATURE:g}")


def _top_p(path: str, value: float) -> None:
    if not top_p_ok(value):
        raise RecordError(path, "must be in (0, 1]")


def checked(check: Check) -> Any:
    """A dataclass field, default None (missing), with an extra value check."""
    return dataclasses.field(default=None, metadata={"check": check})


@dataclasses.dataclass(frozen=True)
class Model:
    id: str | None = None
    digest: str | None = checked(_hash)


@dataclasses.dataclass(frozen=True)
class Container:
    digest: str | None = checked(_oci_digest)


@dataclasses.dataclass(frozen=True)
class Runtime:
    name: str | None = None
    version: str | None = None


@dataclasses.dataclass(frozen=True)
class Framework:
    torch: str | None = None
    transformers: str | None = None
    python: str | None = None
    gguf: str | None = None  # the GGUF reader ("not-installed"): it dequantises GGUF weights


@dataclasses.dataclass(frozen=True)
class Gpu:
    arch: str | None = None
    sku: str | None = None
    sm_count: int | None = checked(_non_negative)
    driver: str | None = None


@dataclasses.dataclass(frozen=True)
class Toolkit:
    cuda: str | None = None
    cublas: str | None = None
    cudnn: str | None = None


@dataclasses.dataclass(frozen=True)
class Cpu:
    model: str | None = None
    capability: str | None = None


@dataclasses.dataclass(frozen=True)
class Determinism:
    deterministic_algorithms: bool | None = None
    cudnn_deterministic: bool | None = None
    cudnn_benchmark: bool | None = None
    tf32: bool | None = None
    float32_matmul_precision: str | None = None
    cublas_workspace_config: str | None = None


@dataclasses.dataclass(frozen=True)
class Sampling:
    temperature: float | None = checked(_temperature)
    top_k: int | None = checked(_non_negative)
    top_p: float | None = checked(_top_p)


@dataclasses.dataclass(frozen=True)
class Stop:
    max_new_tokens: int | None = checked(_positive)
    stop_sequences: tuple[str, ...] | None = None
    eos: bool | None = None


@dataclasses.dataclass(frozen=True)
class ChallengeWindow:
    issued_at: str | None = checked(_rfc3339)
    expires_at: str | None = checked(_rfc3339)


def _named_schema(value: Any, record: RunRecord) -> RunRecord:
    """A record read from a file or the wire names its schema: an empty or foreign object
    is refused, not read as a record with every item missing. (`from_dict` builds records
    in code, where the schema is implied.)"""
    if "schema" not in value:  # checked after the fields, whose errors are more precise
        raise RecordError("schema", f"missing: a run record names its schema {SCHEMA!r}")
    return record


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """The run record. `None` anywhere means the item is missing."""

    schema: ClassVar[str] = SCHEMA

    input_hash: str | None = checked(_hash)
    prompt_template_hash: str | None = checked(_hash)
    model: Model | None = None
    container: Container | None = None
    runtime: Runtime | None = None
    framework: Framework | None = None
    gpu: Gpu | None = None
    toolkit: Toolkit | None = None
    cpu: Cpu | None = None
    threads: int | None = checked(_positive)
    dtype: str | None = None
    determinism: Determinism | None = None
    seed: int | None = checked(_non_negative)
    sampling: Sampling | None = None
    stop: Stop | None = None
    output_hash: str | None = checked(_hash)
    output_token_ids: tuple[int, ...] | None = checked(_token_ids)
    verifier_ref: str | None = None
    challenge_window: ChallengeWindow | None = None
    operator: str | None = None

    # -- construction -------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Any) -> RunRecord:
        if not isinstance(data, dict):
            raise RecordError("", "a run record is a JSON object")
        body = dict(data)
        schema = body.pop("schema", SCHEMA)
        if schema != SCHEMA:
            raise RecordError("schema", f"expected {SCHEMA!r}, got {schema!r}")
        record: RunRecord = build(cls, body, "")
        return record

    @classmethod
    def from_json(cls, data: bytes | str) -> RunRecord:
        try:
            value = strict_json_loads(data, max_bytes=MAX_RECORD_BYTES)
        except RecordError:
            raise
        except BytereplayError as exc:
            raise RecordError("", exc.detail) from None
        return _named_schema(value, cls.from_dict(value))

    @classmethod
    def from_cbor(cls, data: bytes) -> RunRecord:
        try:
            value = cbor_loads(data, max_bytes=MAX_RECORD_BYTES)
        except BytereplayError as exc:
            raise RecordError("", exc.detail) from None
        return _named_schema(value, cls.from_dict(value))

    # -- serialisation ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; missing fields are left out."""
        out = unbuild(self)
        assert isinstance(out, dict)
        return {"schema": SCHEMA, **out}

    def to_json(self) -> bytes:
        """RFC 8785 canonical JSON bytes."""
        try:
            plain = plain_unbuild(self)
        except NotPlain:
            return jcs(self.to_dict())
        # Every leaf is text, a boolean or an integer ECMAScript writes exactly (floats of
        # integer value became integers, other floats write their shortest repr without
        # an exponent), and every key is an ASCII field name: here orjson writes exactly
        # the RFC 8785 bytes (the same escapes, the same shortest digits; a property test
        # holds it to rfc8785 itself).
        try:
            return orjson.dumps({"schema": SCHEMA, **plain}, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # lone surrogates: rfc8785 says why
            return jcs(self.to_dict())

    def to_cbor(self) -> bytes:
        """Core deterministic CBOR bytes."""
        return cbor_dumps(self.to_dict())

    def digest(self) -> str:
        """SHA-256 over the JCS encoding, as `sha-256:<hex>`.

        Computed once per record: the record is frozen (and so is everything in it), so
        the value is kept in a private attribute that equality, hashing and `replace`
        never see."""
        cached: str | None = self.__dict__.get("_digest")
        if cached is None:
            cached = sha256_tag(self.to_json())
            object.__setattr__(self, "_digest", cached)
        return cached

    def get(self, path: str) -> Any:
        """Value at a dotted path such as `gpu.arch`, or None when missing."""
        getter = _GETTERS.get(path)
        if getter is None:
            getter = operator.attrgetter(path)
            if len(_GETTERS) < 4096:
                _GETTERS[path] = getter
        try:
            return getter(self)  # every step present: the C attribute walk
        except AttributeError:  # a missing group on the way (or a wrong name): step by step
            pass
        node: Any = self
        for part in path.split("."):
            if node is None:
                return None
            node = getattr(node, part)
        return node

    def is_present(self, path: str) -> bool:
        value = self.get(path)
        return value is not None and value not in MISSING_SENTINELS

    def present(self, paths: tuple[str, ...]) -> list[bool]:
        """`is_present` of each of `paths`, with one C attribute walk each (the getters
        are made once per tuple of paths; a missing group on the way takes `is_present`)."""
        getters = _BATCHES.get(paths)
        if getters is None:
            getters = tuple(operator.attrgetter(p) for p in paths)
            if len(_BATCHES) < 64:
                _BATCHES[paths] = getters
        out: list[bool] = []
        for path, getter in zip(paths, getters, strict=True):
            try:
                value = getter(self)
            except AttributeError:
                out.append(self.is_present(path))
                continue
            out.append(value is not None and value not in MISSING_SENTINELS)
        return out

    def replace(self, path: str, value: Any) -> RunRecord:
        """A copy with the dotted `path` set to `value` (None removes it)."""
        return _replace_in(self, path, value)  # type: ignore[no-any-return]


_GETTERS: dict[str, operator.attrgetter[Any]] = {}
_BATCHES: dict[tuple[str, ...], tuple[operator.attrgetter[Any], ...]] = {}


def _replace_in(node: Any, path: str, value: Any) -> Any:
    head, _, rest = path.partition(".")
    if not rest:
        return dataclasses.replace(node, **{head: value})
    child = getattr(node, head)
    if child is None:
        child = inner(hints(type(node))[head])()
    return dataclasses.replace(node, **{head: _replace_in(child, rest, value)})


def leaf_paths(cls: Any = RunRecord, prefix: str = "") -> Iterator[str]:
    """Every leaf field of the record as a dotted path, in declaration order."""
    found = hints(cls)
    for f in dataclasses.fields(cls):
        tp = inner(found[f.name])
        if dataclasses.is_dataclass(tp):
            yield from leaf_paths(tp, prefix + f.name + ".")
        else:
            yield prefix + f.name
