"""Canonical encodings and hashes shared by every role.

- unpadded base64url for nonces and binary fields in JSON,
- RFC 8785 JCS for JSON digests,
- RFC 8949 section 4.2 core deterministic CBOR,
- the `sha-256:<hex>` tag used for every hash in the run record,
- compact JSON for what is signed but not digested (`compact_json`).

base64 goes through `pybase64` (SIMD; CPython's codec is byte by byte, and Evidence is
kilobytes of base64url inside base64url) and compact JSON through `orjson`.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import re
from datetime import datetime
from typing import Any

import cbor2
import orjson
import pybase64
import rfc8785

from bytereplay.errors import EncodingError, TooLargeError

HASH_PREFIX = "sha-256:"
HASH_RE = re.compile(r"^sha-256:[0-9a-f]{64}\Z")  # \Z: no trailing newline
OCI_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")
MAX_JSON_DEPTH = 32


def sha256_tag(data: bytes) -> str:
    """The `sha-256:<hex>` tag of `data`."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def b64url_encode(data: bytes) -> str:
    return pybase64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


_B64URL_VALUE = {c: i for i, c in enumerate(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")}


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url: refuses padding, other alphabets and stray bytes.

    Only the canonical text of a value is accepted (one value, one text), so every
    refusal says "not canonical" / "non-canonical".
    """
    if not isinstance(text, str) or not text.isascii() or len(text) % 4 == 1 \
            or "=" in text or "+" in text or "/" in text:
        raise EncodingError("not canonical unpadded base64url text")
    try:
        # With '+', '/' and '=' refused above, validation accepts exactly the base64url
        # alphabet (the padding is ours): no whitespace, no stray characters.
        data = pybase64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_",
                                  validate=True)
    except (binascii.Error, ValueError):
        raise EncodingError("not canonical unpadded base64url text") from None
    # Non-canonical trailing bits would let two texts name one value: the bits of the
    # last character that encode no byte must be zero.
    rest = len(text) % 4
    if rest and _B64URL_VALUE[text[-1]] & (0x0F if rest == 2 else 0x03):
        raise EncodingError("non-canonical base64url text")
    return data


def b64_decode(text: str) -> bytes:
    """Strict padded standard base64 (certificates in quotes): refuses stray characters."""
    return pybase64.b64decode(text, validate=True)


def b64_encode(data: bytes) -> str:
    return pybase64.b64encode(data).decode("ascii")


_COMPACT_JSON = {sort: json.JSONEncoder(separators=(",", ":"), sort_keys=sort)
                 for sort in (False, True)}
_ORJSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


def compact_json(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact UTF-8 JSON of `value` (keys in insertion order unless `sort_keys`), for
    signed payloads that nobody re-derives and for cache keys. Text that is not valid
    Unicode (a lone surrogate quoted from hostile input) is refused by orjson and written
    escaped by the standard encoder."""
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS | (
            orjson.OPT_SORT_KEYS if sort_keys else 0))
    except orjson.JSONEncodeError:
        return _COMPACT_JSON[sort_keys].encode(value).encode("ascii")


JCS_INT_MAX = 2**53 - 1  # the largest integer RFC 8785 (rfc8785) writes exactly


def jcs_plain_float(value: float) -> bool:
    """Whether a float that is not integral is written the same by ECMAScript (RFC 8785),
    Python's repr and orjson: the shortest round-trip digits, with no exponent."""
    text = repr(value)
    return "e" not in text and "n" not in text  # exponent forms differ; inf/nan refused


def _orjson_writes_jcs(value: Any) -> bool:
    """Whether orjson's sorted compact writing of `value` is its RFC 8785 text, byte for
    byte: exact JSON types; ASCII object keys (code point order is UTF-16 order there);
    integers JCS writes exactly; floats that are not integral and whose repr has no
    exponent (ECMAScript and orjson write the same shortest digits); text escaped the same
    way (`\\"`, `\\\\`, `\\b\\f\\n\\r\\t`, other controls as lowercase `\\u00xx`, nothing
    else; orjson refuses lone surrogates)."""
    t = type(value)
    if t is str or t is bool or value is None:
        return True
    if t is int:
        return bool(-JCS_INT_MAX <= value <= JCS_INT_MAX)
    if t is float:
        return not value.is_integer() and jcs_plain_float(value)
    if t is dict:
        return all(type(k) is str and k.isascii() and _orjson_writes_jcs(v)
                   for k, v in value.items())
    if t is list or t is tuple:
        return all(_orjson_writes_jcs(v) for v in value)
    return False


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes.

    Plain JSON values (see `_orjson_writes_jcs`) are written by orjson, byte-identical to
    `rfc8785.dumps`; everything else (and every refusal) is rfc8785's own.
    """
    try:
        if _orjson_writes_jcs(value):
            return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except (orjson.JSONEncodeError, RecursionError):
        pass
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot canonicalise JSON: {exc}") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):  # some key came twice: name the first repeated one
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise EncodingError(f"duplicate JSON key {key!r}")
            seen.add(key)
    return out


def _reject_constant(name: str) -> Any:
    raise EncodingError(f"non-standard JSON number {name}")


# One decoder for every call (as `json.loads` keeps one for its defaults): making one per
# call builds a new scanner each time.
_STRICT_DECODER = json.JSONDecoder(object_pairs_hook=_reject_duplicates,
                                   parse_constant=_reject_constant)


def _depth(value: Any, limit: int) -> None:
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            raise EncodingError(f"JSON nested deeper than {limit} levels")
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)


def _check_size(data: bytes | str, max_bytes: int) -> None:
    if len(data) > max_bytes:
        raise TooLargeError(f"input is {len(data)} bytes; the limit is {max_bytes}")


def strict_json_loads(
    data: bytes | str, *, max_bytes: int = 1 << 20, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse JSON refusing duplicate keys, NaN/Infinity, deep nesting and oversize input."""
    _check_size(data, max_bytes)
    value = _compact_parse(data) if isinstance(data, bytes) else _NOT_COMPACT
    if value is _NOT_COMPACT:
        value = _strict_parse(data, max_depth)
    if _openers(data) + 1 > max_depth:  # else nothing can nest deeper than the limit
        _depth(value, max_depth)
    return value


_NOT_COMPACT: Any = object()


def _compact_parse(data: bytes) -> Any:
    """orjson's parse of `data` when `data` is exactly orjson's compact writing of that
    parse, else `_NOT_COMPACT`. Such text has no duplicate keys (a dict writes each key
    once, and a dropped member would make the writing differ), no NaN, and each number and
    string in its one shortest spelling, so the strict parser reads the same value from it;
    it is also what bytereplay signs (`compact_json`). Anything else, the strict parser
    decides."""
    try:
        value = orjson.loads(data)
        if orjson.dumps(value) == data:
            return value
    except (orjson.JSONDecodeError, orjson.JSONEncodeError):
        pass
    return _NOT_COMPACT


def _strict_parse(data: bytes | str, max_depth: int) -> Any:
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return _STRICT_DECODER.decode(text)
    except UnicodeDecodeError:
        raise EncodingError("JSON is not valid UTF-8") from None
    except RecursionError:
        raise EncodingError(f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise EncodingError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise EncodingError(f"malformed JSON: {exc}") from None


def _openers(data: bytes | str) -> int:
    """The count of `{` and `[` in the JSON `data` (inside strings too, which only makes it
    larger). Plus one (a scalar inside the innermost container), it bounds the depth
    `_depth` measures."""
    if isinstance(data, bytes):
        return data.count(b"{") + data.count(b"[")
    return data.count("{") + data.count("[")


def cbor_dumps(value: Any) -> bytes:
    """Core deterministic CBOR (RFC 8949 section 4.2): shortest forms, sorted map keys."""
    try:
        return bytes(cbor2.dumps(value, canonical=True))
    except (cbor2.CBOREncodeError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot encode CBOR: {exc}") from None


def _plain_cbor(value: Any, depth: int, allow_tags: bool) -> Any:
    if depth > MAX_JSON_DEPTH:
        raise EncodingError(f"CBOR nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, cbor2.CBORTag):
        if not allow_tags:
            raise EncodingError(f"CBOR tag {value.tag} not allowed here")
        return cbor2.CBORTag(value.tag, _plain_cbor(value.value, depth + 1, allow_tags))
    if isinstance(value, dict):
        return {k: _plain_cbor(v, depth + 1, allow_tags) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_cbor(v, depth + 1, allow_tags) for v in value]
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    raise EncodingError(f"CBOR item of type {type(value).__name__} not allowed")


def cbor_loads(data: bytes, *, max_bytes: int = 1 << 20, allow_tags: bool = False) -> Any:
    """Decode CBOR strictly: one item, no trailing bytes, deterministic encoding only.

    Re-encoding and comparing refuses indefinite lengths, non-shortest integers and
    unsorted or duplicate map keys in one check.
    """
    _check_size(data, max_bytes)
    if not isinstance(data, (bytes, bytearray)):
        raise EncodingError("CBOR input must be bytes")
    try:
        value = cbor2.loads(bytes(data))
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise EncodingError(f"malformed CBOR: {exc}") from None
    except Exception as exc:  # cbor2's C decoder raises a few other types on junk
        raise EncodingError(f"malformed CBOR: {exc}") from None
    value = _plain_cbor(value, 0, allow_tags)
    if cbor_dumps(value) != bytes(data):
        raise EncodingError("CBOR is not in core deterministic encoding (RFC 8949 4.2)")
    return value


def is_int(value: Any) -> bool:
    """An integer in JSON or CBOR data: `true` and `false` are not integers here (Python
    says they are), and CBOR's arrays and maps are not (unhashable as labels)."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_rfc3339(text: str) -> datetime:
    """An RFC 3339 time with its offset (`Z` or +hh:mm) as an aware datetime; ValueError
    saying which (not a time, or no offset) otherwise."""
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError("is not an RFC 3339 time") from None
    if t.tzinfo is None:
        raise ValueError("has no time zone offset (e.g. Z)")
    return t
