"""The run record's codec: a JSON/CBOR value <-> the frozen dataclasses of
`bytereplay.record`, strictly, and back to a JSON-ready dict.

- `build(cls, data, prefix)`: one dataclass from a dict, each field by the converter its
  annotation selects (text at most 4096 characters of valid Unicode, integers within
  RFC 8785's exact range, finite numbers, booleans, arrays, nested groups), then the
  field's extra check (`check` in its metadata); unknown fields refused. `RecordError`
  names the dotted path.
- `unbuild(node)`: back to a dict, missing (None) fields left out.
- `plain_unbuild(node)`: the same for `RunRecord.to_json`'s fast path, or `NotPlain`
  where orjson would not write exactly the RFC 8785 bytes.

What is remembered, each a pure function of what keys it (`benchmarks/verifier.py`
decodes the same attester's record thousands of times): type hints, converters and
field specs per dataclass type; field names per type; the environment groups that
repeat from record to record (`GROUPS_MAX` of them); and, on each frozen node, its plain
form. The last two pay together: a shared group keeps its plain form, so the record's
digest (`RunRecord.to_json`) rewrites only what changed; built anew, an appraisal
costs about 10% more CPU.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Callable
from typing import Any, Union, get_args, get_origin, get_type_hints

from bytereplay.encoding import JCS_INT_MAX, jcs_plain_float
from bytereplay.errors import RecordError

Check = Callable[[str, Any], None]


_HINTS: dict[type, dict[str, Any]] = {}


def hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def inner(tp: Any) -> Any:
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
        found = hints(cls)
        self.fields: dict[str, tuple[Converter, Check | None, bool]] = {}
        for f in dataclasses.fields(cls):
            tp = inner(found[f.name])
            self.fields[f.name] = (_converter(tp), f.metadata.get("check"), tp is str)
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


def build(cls: Any, data: dict[str, Any], prefix: str) -> Any:
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
GROUPS_MAX = 1024
_GROUP_KEY_TYPES = frozenset({str, int, bool, type(None)})


def _build_group(cls: Any, data: dict[str, Any], prefix: str) -> Any:
    types_ = tuple(map(type, data.values()))
    if not _GROUP_KEY_TYPES.issuperset(types_):
        return build(cls, data, prefix)
    key = (cls, tuple(data.items()), types_)
    found = _GROUPS.get(key)
    if found is None:
        found = build(cls, data, prefix)  # a refusal raises: nothing is kept
        if len(_GROUPS) >= GROUPS_MAX:
            _GROUPS.clear()
        _GROUPS[key] = found
    return found


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}
_SCALARS = (str, int, float, bool, type(None))


def unbuild(node: Any) -> Any:
    names = _FIELD_NAMES.get(type(node))
    if names is None and dataclasses.is_dataclass(node) and not isinstance(node, type):
        names = _FIELD_NAMES[type(node)] = tuple(f.name for f in dataclasses.fields(node))
    if names is not None:
        out = {}
        for name in names:
            value = getattr(node, name)
            if value is not None:
                out[name] = value if type(value) in _SCALARS else unbuild(value)
        return out
    if isinstance(node, tuple):
        return [v if type(v) in _SCALARS else unbuild(v) for v in node]
    return node


class NotPlain(Exception):
    """A leaf the C JSON encoder would not write as RFC 8785 does."""


def _plain_leaf(value: Any) -> Any:
    t = type(value)
    if t is str or t is bool:
        return value
    if t is int:
        if -JCS_INT_MAX <= value <= JCS_INT_MAX:
            return value
        raise NotPlain
    if t is float:
        if value.is_integer():
            if -JCS_INT_MAX <= value <= JCS_INT_MAX:
                return int(value)  # ECMAScript writes 1.0 as 1 (and -0.0 as 0)
            raise NotPlain
        if not jcs_plain_float(value):
            raise NotPlain
        return value  # orjson writes float.__repr__'s shortest digits, as ECMAScript
    if t is tuple:
        return [_plain_leaf(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_unbuild(value)
    raise NotPlain


def plain_unbuild(node: Any) -> dict[str, Any]:
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
