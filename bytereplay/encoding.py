"""Canonical encodings and hashes shared by every role.

- unpadded base64url for nonces and binary fields in JSON,
- RFC 8785 JCS for JSON digests,
- RFC 8949 section 4.2 core deterministic CBOR,
- the `sha-256:<hex>` tag used for every hash in the run record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from typing import Any

import cbor2
import rfc8785

from bytereplay.errors import EncodingError, TooLargeError

HASH_PREFIX = "sha-256:"
HASH_RE = re.compile(r"^sha-256:[0-9a-f]{64}$")
OCI_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_B64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")
MAX_JSON_DEPTH = 32


def sha256_tag(data: bytes) -> str:
    """The `sha-256:<hex>` tag of `data`."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url: refuses padding, other alphabets and stray bytes."""
    if not isinstance(text, str) or not _B64URL_RE.match(text) or len(text) % 4 == 1:
        raise EncodingError("not unpadded base64url text")
    try:
        data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise EncodingError(f"not unpadded base64url text: {exc}") from None
    if b64url_encode(data) != text:
        # Non-canonical trailing bits would let two texts name one value.
        raise EncodingError("non-canonical base64url text")
    return data


def jcs(value: Any) -> bytes:
    """RFC 8785 canonical JSON bytes."""
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError, ValueError) as exc:
        raise EncodingError(f"cannot canonicalise JSON: {exc}") from None


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise EncodingError(f"duplicate JSON key {key!r}")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise EncodingError(f"non-standard JSON number {name}")


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
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except UnicodeDecodeError:
        raise EncodingError("JSON is not valid UTF-8") from None
    except RecursionError:
        raise EncodingError(f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise EncodingError(f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer past Python's digit limit
        raise EncodingError(f"malformed JSON: {exc}") from None
    _depth(value, max_depth)
    return value


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
