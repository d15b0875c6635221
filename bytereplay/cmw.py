"""RATS Conceptual Message Wrapper (CMW, draft-ietf-rats-msg-wrap): the record forms.

A CMW record carries one conceptual message with its media type:

    application/cmw+json   ["<media type>", "<value, unpadded base64url>"(, ind)?]
    application/cmw+cbor   [ "<media type>" / uint, bstr (, ind)? ]     (a CBOR array)

`ind` (optional) is a bitmap of what the value holds (1 reference values, 2
endorsements, 4 evidence, 8 attestation results); when present here it must say
Evidence. `unwrap` returns the inner media type and bytes; the caller decides whether
it accepts that type. Collections, tunnels, CBOR-tag CMWs and CoAP Content-Format
numbers are refused (`EncodingError`): bytereplay's Evidence is one EAT, so a record
is all it needs. Strict: exactly 2 or 3 members, no trailing bytes, text types only,
canonical base64url, deterministic CBOR without tags or trailing bytes.
"""

from __future__ import annotations

from typing import Any

from bytereplay.encoding import (
    b64url_decode,
    b64url_encode,
    cbor_dumps,
    cbor_loads,
    compact_json,
    strict_json_loads,
)
from bytereplay.errors import EncodingError, TooLargeError

MEDIA_CMW_JSON = "application/cmw+json"
MEDIA_CMW_CBOR = "application/cmw+cbor"
MEDIA_TYPES = (MEDIA_CMW_JSON, MEDIA_CMW_CBOR)
# What Veraison's services also take (its Go client sends the vnd.veraison forms); the
# unsuffixed ones are told apart by their first byte, as the draft's demultiplexer does.
ALIASES = {
    "application/vnd.veraison.cmw+json": MEDIA_CMW_JSON,
    "application/vnd.veraison.cmw+cbor": MEDIA_CMW_CBOR,
    "application/cmw": None,
    "application/vnd.veraison.cmw": None,
}
ACCEPTED = (*MEDIA_TYPES, *ALIASES)
IND_EVIDENCE = 4
MAX_IND = 31  # the draft's registered bits (1..16)
MAX_TYPE_CHARS = 256


def _check_type(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        raise EncodingError("CMW: CoAP Content-Format numbers are not accepted; "
                            "give the media type as text")
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TYPE_CHARS or \
            not value.isascii() or value.startswith("#") or "/" not in value:
        raise EncodingError("CMW: the type is a media type as text")
    return value.strip().lower()


def _check_ind(members: list[Any]) -> None:
    if len(members) == 3:
        ind = members[2]
        if isinstance(ind, bool) or not isinstance(ind, int) or not 0 < ind <= MAX_IND:
            raise EncodingError("CMW: 'ind' is a bitmap in 1..31")
        if not ind & IND_EVIDENCE:
            raise EncodingError("CMW: 'ind' says the value is not Evidence")


def unwrap(data: bytes, media: str, *, max_bytes: int) -> tuple[str, bytes]:
    """The (media type, value) in the CMW record `data` sent as `media`
    (`application/cmw+json` or `application/cmw+cbor`, or one of `ALIASES`)."""
    if len(data) > max_bytes:
        raise TooLargeError(f"CMW over {max_bytes} bytes")
    if media in ALIASES:
        media = ALIASES[media] or (MEDIA_CMW_JSON if data[:1] == b"[" else MEDIA_CMW_CBOR)
    if media == MEDIA_CMW_JSON:
        doc = strict_json_loads(data, max_bytes=max_bytes)
        if not isinstance(doc, list) or len(doc) not in (2, 3):
            raise EncodingError("CMW: a JSON record is an array [type, value] or "
                                "[type, value, ind]; collections are not accepted")
        kind = _check_type(doc[0])
        if not isinstance(doc[1], str) or not doc[1]:
            raise EncodingError("CMW: the value is unpadded base64url text")
        _check_ind(doc)
        return kind, b64url_decode(doc[1])
    if media == MEDIA_CMW_CBOR:
        if not data or data[0] not in (0x82, 0x83):
            raise EncodingError("CMW: a CBOR record is an array of 2 or 3 items; "
                                "tags and collections are not accepted")
        items = cbor_loads(data, max_bytes=max_bytes)  # one item, no tags, nothing after it
        if not isinstance(items, list) or len(items) not in (2, 3):
            raise EncodingError("CMW: a CBOR record is an array of 2 or 3 items")
        kind = _check_type(items[0])
        if not isinstance(items[1], bytes) or not items[1]:
            raise EncodingError("CMW: the value is a non-empty byte string")
        _check_ind(items)
        return kind, items[1]
    raise EncodingError(f"not a CMW media type: {media!r}")


def wrap_json(media: str, value: bytes, *, ind: int | None = IND_EVIDENCE) -> bytes:
    """A JSON CMW record of `value` typed `media` (`ind` Evidence unless None)."""
    doc: list[Any] = [media, b64url_encode(value)]
    if ind is not None:
        doc.append(ind)
    return compact_json(doc)


def wrap_cbor(media: str, value: bytes, *, ind: int | None = IND_EVIDENCE) -> bytes:
    """A CBOR CMW record of `value` typed `media` (`ind` Evidence unless None)."""
    items: list[Any] = [media, value]
    if ind is not None:
        items.append(ind)
    return cbor_dumps(items)
