"""The run record, `deterministic_run_preflight.v1`.

One canonical object that fixes the output bytes of one inference. Every field is
optional: a record with missing fields is still appraised, its claim is smaller
(see `bytereplay.preflight`). Parsing is strict: unknown fields, wrong types and
malformed hashes raise `RecordError` naming the field.

The dataclasses below are the one source of truth for the record's shape; the
checklist in `bytereplay.checklist` names every leaf and a test keeps them in step.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import types
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

import orjson

from bytereplay.encoding import (
    HASH_RE,
    JCS_INT_MAX,
    OCI_DIGEST_RE,
    cbor_dumps,
    cbor_loads,
    jcs,
    jcs_plain_float,
    sha256_tag,
    strict_json_loads,
)
from bytereplay.errors import BytereplayError, RecordError

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
    if not 0.0 <= value <= 100.0:
        raise RecordError(path, "must be in 0..100")


def _top_p(path: str, value: float) -> None:
    if not 0.0 < value <= 1.0:
        raise RecordError(path, "must be in (0, 1]")


Check = Callable[[str, Any], None]


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
        record: RunRecord = _build(cls, body, "")
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
        out = _unbuild(self)
        assert isinstance(out, dict)
        return {"schema": SCHEMA, **out}

    def to_json(self) -> bytes:
        """RFC 8785 canonical JSON bytes."""
        try:
            plain = _plain_unbuild(self)
        except _NotPlain:
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
        child = _inner(_hints(type(node))[head])()
    return dataclasses.replace(node, **{head: _replace_in(child, rest, value)})


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _inner(tp: Any) -> Any:
    """Strip `| None` from an annotation."""
    if get_origin(tp) in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return args[0]
    return tp


def _utf8(text: str) -> bool:
    """Whether `text` can be written as UTF-8 (JSON lets lone surrogates through)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


Converter = Callable[[Any, str], Any]
_CONVERTERS: dict[Any, Converter] = {}


def _converter(tp: Any) -> Converter:
    """The converter for annotation `tp` (without `| None`), made once per type."""
    found = _CONVERTERS.get(tp)
    if found is None:
        found = _CONVERTERS[tp] = _make_converter(tp)
    return found


def _make_converter(tp: Any) -> Converter:
    if dataclasses.is_dataclass(tp):
        cls = tp

        def convert_object(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise RecordError(path, "expected an object")
            return _build_group(cls, value, path + ".")

        return convert_object
    if get_origin(tp) is tuple:
        item_tp = get_args(tp)[0]
        convert_item = _converter(item_tp)

        def convert_tuple(value: Any, path: str) -> Any:
            if not isinstance(value, (list, tuple)):
                raise RecordError(path, "expected an array")
            if item_tp is int and all(type(v) is int and -JCS_INT_MAX <= v <= JCS_INT_MAX
                                      for v in value):
                return tuple(value)  # what the item-by-item path returns for plain ints
            if item_tp is str and all(type(v) is str and len(v) <= 4096 and _utf8(v) for v in value):
                return tuple(value)
            return tuple(convert_item(v, f"{path}[{i}]") for i, v in enumerate(value))

        return convert_tuple
    if tp is bool:
        def convert_bool(value: Any, path: str) -> Any:
            if not isinstance(value, bool):
                raise RecordError(path, "expected true or false")
            return value

        return convert_bool
    if tp is int:
        def convert_int(value: Any, path: str) -> Any:
            if isinstance(value, bool) or not isinstance(value, int):
                raise RecordError(path, "expected an integer")
            if abs(value) > JCS_INT_MAX:
                raise RecordError(path, "integer out of range")
            return value

        return convert_int
    if tp is float:
        def convert_float(value: Any, path: str) -> Any:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise RecordError(path, "expected a number")
            if value != value or value in (float("inf"), float("-inf")):
                raise RecordError(path, "expected a finite number")
            if isinstance(value, int) and abs(value) > JCS_INT_MAX:
                raise RecordError(path, "number out of range")
            return float(value)

        return convert_float
    if tp is str:
        def convert_str(value: Any, path: str) -> Any:
            if not isinstance(value, str):
                raise RecordError(path, "expected a string")
            if len(value) > 4096:
                raise RecordError(path, "string longer than 4096 characters")
            if not _utf8(value):
                raise RecordError(path, "not valid Unicode text (lone surrogate)")
            return value

        return convert_str

    def unsupported(value: Any, path: str) -> Any:  # pragma: no cover
        raise RecordError(path, f"unsupported type {tp!r}")

    return unsupported


class _Spec:
    """How `_build` reads one dataclass: per field (converter, extra check or None, whether
    the converter is the plain-text one); the all-None field values; whether instances
    may be made without calling `__init__` (every field defaults to None, no
    `__post_init__`: the state `__init__` would set is exactly those values)."""

    __slots__ = ("defaults", "direct", "fields")

    def __init__(self, cls: Any) -> None:
        hints = _hints(cls)
        self.fields: dict[str, tuple[Converter, Check | None, bool]] = {}
        for f in dataclasses.fields(cls):
            inner = _inner(hints[f.name])
            self.fields[f.name] = (_converter(inner), f.metadata.get("check"), inner is str)
        self.defaults = {f.name: None for f in dataclasses.fields(cls)}
        self.direct = (
            not hasattr(cls, "__post_init__") and not hasattr(cls, "__slots__")
            and all(f.default is None and f.init for f in dataclasses.fields(cls)))


_SPECS: dict[Any, _Spec] = {}


def _spec(cls: Any) -> _Spec:
    found = _SPECS.get(cls)
    if found is None:
        found = _SPECS[cls] = _Spec(cls)
    return found


def _build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    spec = _spec(cls)
    fields = spec.fields
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        entry = fields.get(key) if isinstance(key, str) else None
        if entry is None:
            raise RecordError(prefix + str(key), "unknown field")
        if value is None:
            continue
        convert, check, plain_text = entry
        if plain_text and type(value) is str and len(value) <= 4096 and \
                (value.isascii() or _utf8(value)):
            converted = value  # what the text converter returns, without the call
        else:
            converted = convert(value, prefix + key)
        if check is not None:
            check(prefix + key, converted)
        kwargs[key] = converted
    if not spec.direct:
        return cls(**kwargs)
    obj = object.__new__(cls)  # a frozen dataclass: set its fields as __init__ would
    state = obj.__dict__
    state.update(spec.defaults)
    state.update(kwargs)
    return obj


# The groups of a record that repeat from run to run (the environment: model, container,
# runtime, framework, gpu, toolkit, cpu, determinism are the same on every Evidence of an
# attester) are built once. `_build` is a pure function of a group's members and what it
# builds is frozen, so one instance serves every record that names the same members. Only
# members of exact type text, integer, boolean or null make a key (True == 1 == 1.0 and
# -0.0 == 0.0 would otherwise share one); a group with any other member is built anew.
_GROUPS: dict[tuple[Any, ...], Any] = {}
_GROUPS_MAX = 1024
_GROUP_KEY_TYPES = frozenset({str, int, bool, type(None)})


def _build_group(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    types_ = tuple(map(type, data.values()))
    if not _GROUP_KEY_TYPES.issuperset(types_):
        return _build(cls, data, prefix)
    key = (cls, tuple(data.items()), types_)
    found = _GROUPS.get(key)
    if found is None:
        found = _build(cls, data, prefix)  # a refusal raises: nothing is kept
        if len(_GROUPS) >= _GROUPS_MAX:
            _GROUPS.clear()
        _GROUPS[key] = found
    return found


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = (str, int, float, bool, type(None))


def _unbuild(node: Any) -> Any:
    names = _FIELD_NAMES.get(type(node))
    if names is None and dataclasses.is_dataclass(node) and not isinstance(node, type):
        names = _FIELD_NAMES[type(node)] = tuple(f.name for f in dataclasses.fields(node))
    if names is not None:
        out = {}
        for name in names:
            value = getattr(node, name)
            if value is not None:
                out[name] = value if type(value) in _SCALARS else _unbuild(value)
        return out
    if isinstance(node, tuple):
        return [v if type(v) in _SCALARS else _unbuild(v) for v in node]
    return node


class _NotPlain(Exception):
    """A leaf the C JSON encoder would not write as RFC 8785 does."""


def _plain_leaf(value: Any) -> Any:
    t = type(value)
    if t is str or t is bool:
        return value
    if t is int:
        if -JCS_INT_MAX <= value <= JCS_INT_MAX:
            return value
        raise _NotPlain
    if t is float:
        if value.is_integer():
            if -JCS_INT_MAX <= value <= JCS_INT_MAX:
                return int(value)  # ECMAScript writes 1.0 as 1 (and -0.0 as 0)
            raise _NotPlain
        if not jcs_plain_float(value):
            raise _NotPlain
        return value  # orjson writes float.__repr__'s shortest digits, as ECMAScript
    if t is tuple:
        return [_plain_leaf(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain_unbuild(value)
    raise _NotPlain


def _plain_unbuild(node: Any) -> dict[str, Any]:
    """`_unbuild` for `to_json`'s fast path; raises `_NotPlain` where it cannot be used.

    Kept on the (frozen) node once made, for the groups that many records share; nobody
    changes it (orjson only reads it), and equality, hashing and `replace` never see it."""
    cached: dict[str, Any] | None = node.__dict__.get("_plain")
    if cached is not None:
        return cached
    names = _FIELD_NAMES.get(type(node))
    if names is None:
        names = _FIELD_NAMES[type(node)] = tuple(f.name for f in dataclasses.fields(node))
    out = {}
    for name in names:
        value = getattr(node, name)
        if value is not None:
            t = type(value)
            out[name] = value if t is str or t is bool else _plain_leaf(value)
    object.__setattr__(node, "_plain", out)
    return out


def leaf_paths(cls: Any = RunRecord, prefix: str = "") -> Iterator[str]:
    """Every leaf field of the record as a dotted path, in declaration order."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        inner = _inner(hints[f.name])
        if dataclasses.is_dataclass(inner):
            yield from leaf_paths(inner, prefix + f.name + ".")
        else:
            yield prefix + f.name
