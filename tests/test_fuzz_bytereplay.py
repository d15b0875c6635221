"""Property-based tests for every parser in `bytereplay/` that takes outside input.

Properties:
- any input either parses or raises a `BytereplayError` subclass (never a bare exception);
- what parses round-trips (run records through JSON and CBOR, base64url, nonces, CBOR items);
- record digests are stable (key order, whitespace, JSON vs CBOR form).

Budget: the profile `bytereplay-fuzz-ci` (default) keeps this file well under a minute on
two cores. `BYTEREPLAY_FUZZ_PROFILE=thorough` multiplies every `max_examples` by 20.
"""

from __future__ import annotations

import dataclasses
import json
import random
import string
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Union, get_args, get_origin, get_type_hints

import cbor2
import pytest

# -- budget -------------------------------------------------------------------------------
from fuzz_budget import budget
from hypothesis import example, given
from hypothesis import strategies as st

from bytereplay.ear import (
    EXTENSION_KEY,
    PROFILE_DRAFT,
    PROFILE_LEGACY,
    SUBMOD,
    build_ear,
    normalise,
    read_ear,
    sign_ear,
)
from bytereplay.eat import NONCE_MAX, NONCE_MIN, decode_nonce
from bytereplay.encoding import (
    b64url_decode,
    b64url_encode,
    cbor_dumps,
    cbor_loads,
    sha256_tag,
    strict_json_loads,
)
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    NonceError,
    RecordError,
    ResultError,
    SignatureError,
    TooLargeError,
)
from bytereplay.jose import keys_from_jwks, parse_unverified, verify_jwt
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey, key_from_jwk
from bytereplay.record import SCHEMA, RunRecord


def _refused_or(fn: Callable[[], Any], *types: type[BytereplayError]) -> Any:
    """Call `fn`; a typed refusal returns None, any other exception fails the test."""
    allowed = types or (BytereplayError,)
    try:
        return fn()
    except allowed:
        return None


# -- strategies ---------------------------------------------------------------------------

SAFE_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=24)
ANY_TEXT = st.text(max_size=24)  # lone surrogates included
KEY_TEXT = st.sampled_from(["a", "b", "alg", "kid", "iat", "exp", "nbf", "aud", "iss",
                            "eat_profile", "submods", SUBMOD, "ear.status", "kty", "crv",
                            "x", "y", "n", "e", "d", "k", "keys", "use", "schema", "seed",
                            "model", "digest", "sampling", "temperature", "top_p"]) | SAFE_TEXT

json_scalars = (
    st.none() | st.booleans() | st.integers() | st.integers(-(2**64), 2**64)
    | st.floats(allow_nan=False, allow_infinity=False) | ANY_TEXT
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEY_TEXT, inner, max_size=5),
    max_leaves=16,
)

# JSON *text* with what json.dumps never writes: duplicate keys, non-standard numbers,
# huge integers, escapes of lone surrogates, deep nesting.
_NASTY_LEAVES = [
    "null", "true", "false", "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "-0",
    "1E+2", "0.0000001", "9007199254740993", "1" * 400, "1" * 5000, "\"\\ud800\"",
    "\"\\udfff\\ud800\"", "\"\\u0000\"", "[]", "{}",
]
json_leaf_text = (
    st.sampled_from(_NASTY_LEAVES)
    | st.integers().map(str)
    | st.floats(allow_nan=False, allow_infinity=False).map(repr)
    | ANY_TEXT.map(json.dumps)
)


def _obj(pairs: list[tuple[str, str]]) -> str:
    return "{" + ",".join(f"{json.dumps(k)}:{v}" for k, v in pairs) + "}"


json_texts = st.recursive(
    json_leaf_text,
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.lists(st.tuples(KEY_TEXT, inner), max_size=5).map(_obj)
    ),
    max_leaves=12,
)
nested_json_texts = st.integers(1, 200).map(lambda n: "[" * n + "]" * n) | st.integers(
    1, 200).map(lambda n: '{"a":' * n + "1" + "}" * n)

b64url_texts = st.text(alphabet=string.ascii_letters + string.digits + "-_", max_size=40)
near_b64_texts = st.text(alphabet=string.ascii_letters + string.digits + "-_+/=\n \t.!", max_size=40)

# -- a valid run record, derived from the dataclasses so new fields are covered ------------


def _hex64() -> st.SearchStrategy[str]:
    return st.binary(min_size=32, max_size=32).map(bytes.hex)


def _rfc3339() -> st.SearchStrategy[str]:
    return st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 1, 1),
                        timezones=st.just(UTC)).map(
        lambda d: d.strftime("%Y-%m-%dT%H:%M:%S") + (f".{d.microsecond:06d}" if d.microsecond
                                                    else "") + "Z")


_MAX_INT = 2**53 - 1  # JCS's safe integer domain
CHECK_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "_hash": _hex64().map(lambda h: "sha-256:" + h),
    "_oci_digest": _hex64().map(lambda h: "sha256:" + h) | st.just("unknown"),
    "_rfc3339": _rfc3339(),
    "_non_negative": st.integers(0, _MAX_INT),
    "_positive": st.integers(1, _MAX_INT),
    "_token_ids": st.lists(st.integers(0, _MAX_INT), max_size=6),
    "_temperature": st.floats(0.0, 100.0, allow_nan=False).filter(lambda f: str(f) != "-0.0"),
    "_top_p": st.floats(0.0, 1.0, exclude_min=True),
}


def _inner(tp: Any) -> Any:
    if get_origin(tp) in (Union, type(int | None)):
        return next(a for a in get_args(tp) if a is not type(None))
    return tp


def _value_strategy(tp: Any, check: Any) -> st.SearchStrategy[Any]:
    if check is not None:
        name = check.__name__
        if name not in CHECK_STRATEGIES:
            raise AssertionError(f"record check {name} has no strategy in this test; add one")
        return CHECK_STRATEGIES[name]
    if dataclasses.is_dataclass(tp):
        return _dict_strategy(tp)
    if get_origin(tp) is tuple:
        return st.lists(_value_strategy(get_args(tp)[0], None), max_size=4)
    if tp is bool:
        return st.booleans()
    if tp is str:
        return SAFE_TEXT
    if tp is int:
        return st.integers(-_MAX_INT, _MAX_INT)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False)
    raise AssertionError(f"record field type {tp!r} has no strategy in this test; add one")


def _dict_strategy(cls: Any) -> st.SearchStrategy[dict[str, Any]]:
    hints = get_type_hints(cls)
    fields = {f.name: _value_strategy(_inner(hints[f.name]), f.metadata.get("check"))
              for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries({}, optional=fields)


record_dicts = _dict_strategy(RunRecord)


def _leaf_paths(d: dict[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.extend(_leaf_paths(v, prefix + k + "."))
        else:
            out.append(prefix + k)
    return out


def _set_path(d: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    d = json.loads(json.dumps(d))
    node = d
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[p]
    node[parts[-1]] = value
    return d


# -- encoding: strict JSON ----------------------------------------------------------------


@budget(300)
@given(st.binary(max_size=300) | json_texts.map(str.encode))
@example(b"1" * 5000)                   # int beyond Python's str->int digit limit
@example(b'{"a": ' + b"9" * 4301 + b"}")
@example(b"\xef\xbb\xbf{}")              # UTF-8 BOM
@example(b'{"a":1,"a":2}')
@example(b"[" * 100000)
def test_strict_json_loads_only_typed_errors(data: bytes) -> None:
    _refused_or(lambda: strict_json_loads(data))
    if _utf8(data):
        _refused_or(lambda: strict_json_loads(data.decode("utf-8")))


def _utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


@budget(200)
@given(json_texts)
def test_strict_json_refuses_duplicates_and_depth_or_agrees_with_json(text: str) -> None:
    value = _refused_or(lambda: strict_json_loads(text))
    if value is None:
        return
    # What strict parsing accepts, the permissive parser reads the same way.
    assert json.loads(text) == value or value != value


@budget(100)
@given(nested_json_texts)
def test_strict_json_depth_limit(text: str) -> None:
    # A scalar counts as one level: '{"a":1}' is two levels deep.
    depth = text.count("[") or text.count("{") + 1
    if depth <= 32:
        strict_json_loads(text)
    else:
        with pytest.raises(EncodingError, match="nested deeper"):
            strict_json_loads(text)


@budget(200)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), json_leaf_text), min_size=2,
                max_size=6))
def test_strict_json_duplicate_keys_refused(pairs: list[tuple[str, str]]) -> None:
    text = _obj(pairs)
    keys = [k for k, _ in pairs]
    if len(set(keys)) < len(keys):
        with pytest.raises(BytereplayError):
            strict_json_loads(text)


def test_strict_json_size_limit_is_typed() -> None:
    with pytest.raises(TooLargeError, match="limit"):
        strict_json_loads(b" " * 101 + b"1", max_bytes=100)


# -- encoding: base64url and nonces -------------------------------------------------------


@budget(300)
@given(st.one_of(near_b64_texts, ANY_TEXT, st.binary(max_size=20), st.none(), st.integers()))
def test_b64url_decode_only_typed_errors_and_canonical(text: Any) -> None:
    data = _refused_or(lambda: b64url_decode(text), EncodingError)
    if data is not None:
        assert b64url_encode(data) == text  # one value, one text


@budget(200)
@given(st.binary(max_size=100))
def test_b64url_round_trip(data: bytes) -> None:
    assert b64url_decode(b64url_encode(data)) == data


@budget(200)
@given(st.binary(max_size=80))
def test_decode_nonce_round_trip_and_length(raw: bytes) -> None:
    text = b64url_encode(raw)
    if NONCE_MIN <= len(raw) <= NONCE_MAX:
        assert decode_nonce(text) == raw
    else:
        with pytest.raises(NonceError, match="bytes"):
            decode_nonce(text)


@budget(300)
@given(st.one_of(near_b64_texts, ANY_TEXT, st.binary(max_size=20), st.none(), st.integers(),
                 st.lists(st.integers(), max_size=2)))
def test_decode_nonce_only_nonce_errors(text: Any) -> None:
    _refused_or(lambda: decode_nonce(text), NonceError)


# -- encoding: CBOR -----------------------------------------------------------------------

cbor_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64) + 1, 2**64 - 1)
    | st.floats(allow_nan=False) | SAFE_TEXT | st.binary(max_size=16),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.integers(-100, 100) | SAFE_TEXT, inner, max_size=4),
    max_leaves=16,
)


def _mutate(data: bytes, rnd: random.Random) -> bytes:
    buf = bytearray(data)
    for _ in range(rnd.randint(1, 4)):
        op = rnd.randrange(4)
        pos = rnd.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rnd.randrange(256)
        elif op == 1:
            buf[pos:pos] = bytes([rnd.choice([0x5F, 0x9F, 0xBF, 0xFF, 0xC0, 0xC2, 0xD8, 0xF7,
                                              0xF9, 0xFB, 0x1B, 0x7B, 0x5B])])
        elif op == 2 and buf:
            del buf[pos:pos + rnd.randint(1, 3)]
        else:
            buf += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 3)))
    return bytes(buf)


@budget(400)
@given(st.binary(max_size=200)
       | st.tuples(cbor_plain, st.randoms(use_true_random=False)).map(
           lambda t: _mutate(cbor2.dumps(t[0], canonical=True), t[1])))
@example(b"\x9f\x01\xff")                # indefinite-length array
@example(b"\xa2\x61a\x01\x61a\x02")      # duplicate map key
@example(b"\x01\x00")                    # trailing byte
@example(b"\xc1\x1a\x00\x00\x00\x00")    # tag 1 (epoch date)
@example(b"\x5b\xff\xff\xff\xff\xff\xff\xff\xff")  # absurd length
@example(b"\x81" * 10000 + b"\x00")      # deep nesting
def test_cbor_loads_only_typed_errors_and_deterministic(data: bytes) -> None:
    for allow_tags in (False, True):
        value = _refused_or(lambda a=allow_tags: cbor_loads(data, allow_tags=a),
                            EncodingError, TooLargeError)
        if value is not None or data == b"\xf6":
            assert cbor_dumps(value) == data  # accepted only in core deterministic form


@budget(200)
@given(cbor_plain)
def test_cbor_round_trip(value: Any) -> None:
    data = cbor_dumps(value)
    assert cbor_loads(data) == value


def test_cbor_loads_refuses_tags_unless_allowed() -> None:
    tagged = cbor2.dumps(cbor2.CBORTag(99, "x"), canonical=True)
    with pytest.raises(EncodingError, match="tag 99"):
        cbor_loads(tagged)
    assert cbor_loads(tagged, allow_tags=True) == cbor2.CBORTag(99, "x")


# -- run records --------------------------------------------------------------------------


@budget(150)
@given(record_dicts)
def test_record_round_trips_and_digest_is_stable(d: dict[str, Any]) -> None:
    record = RunRecord.from_dict(d)
    assert record.to_dict() == {"schema": SCHEMA, **d}
    js, cb = record.to_json(), record.to_cbor()
    from_js, from_cb = RunRecord.from_json(js), RunRecord.from_cbor(cb)
    assert from_js == record and from_cb == record
    assert from_js.to_json() == js and from_cb.to_cbor() == cb  # fixed points
    assert record.digest() == sha256_tag(js) == from_js.digest() == from_cb.digest()
    # Key order and whitespace never change the digest.
    items = list({"schema": SCHEMA, **d}.items())
    random.Random(len(js)).shuffle(items)
    pretty = json.dumps(dict(items), indent=2, ensure_ascii=False).encode()
    assert RunRecord.from_json(pretty).digest() == record.digest()


@budget(300)
@given(st.binary(max_size=300) | json_texts.map(str.encode))
@example(b'{"sampling": {"temperature": 1' + b"0" * 400 + b"}}")
@example(b'{"seed": ' + b"1" * 5000 + b"}")
def test_record_from_json_only_record_errors(data: bytes) -> None:
    _refused_or(lambda: RunRecord.from_json(data), RecordError)


@budget(300)
@given(st.binary(max_size=300)
       | st.tuples(cbor_plain, st.randoms(use_true_random=False)).map(
           lambda t: _mutate(cbor2.dumps(t[0], canonical=True), t[1])))
@example(cbor2.dumps({"sampling": {"top_p": 2**1100}}, canonical=True))
def test_record_from_cbor_only_record_errors(data: bytes) -> None:
    _refused_or(lambda: RunRecord.from_cbor(data), RecordError)


@budget(300)
@given(record_dicts.filter(bool), st.data())
def test_record_mutated_leaf_is_refused_by_field_or_serialisable(d: dict[str, Any],
                                                                 data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(_leaf_paths(d)))
    value = data.draw(json_values)
    mutated = _set_path(d, path, value)
    record = _refused_or(lambda: RunRecord.from_dict(mutated), RecordError)
    if record is None:
        return
    # Accepted means usable: it serialises, re-parses to itself and has a digest.
    assert RunRecord.from_json(record.to_json()) == record
    assert RunRecord.from_cbor(record.to_cbor()) == record
    assert record.digest().startswith("sha-256:")


@budget(150)
@given(record_dicts, SAFE_TEXT.filter(lambda k: k not in RunRecord.__dataclass_fields__
                                      and k != "schema"), json_values)
def test_record_unknown_field_names_the_field(d: dict[str, Any], key: str, value: Any) -> None:
    if value is None:
        return
    with pytest.raises(RecordError) as info:
        RunRecord.from_dict({**d, key: value})
    assert info.value.field == key


@budget(100)
@given(json_values)
def test_record_from_dict_only_record_errors(value: Any) -> None:
    _refused_or(lambda: RunRecord.from_dict(value), RecordError)


# Bugs these properties found, each fixed; every test below fails if its bug comes back.


def test_bug_record_huge_int_in_float_field_is_a_record_error() -> None:
    with pytest.raises(RecordError, match=r"sampling\.temperature"):
        RunRecord.from_json(b'{"sampling": {"temperature": 1' + b"0" * 400 + b"}}")


def test_bug_strict_json_int_over_digit_limit_is_an_encoding_error() -> None:
    with pytest.raises(EncodingError):
        strict_json_loads(b"1" * 5000)


def test_bug_record_accepts_only_serialisable_strings() -> None:
    # A lone surrogate parses from JSON but cannot be written back (JCS, CBOR): refuse it.
    with pytest.raises(RecordError, match="operator"):
        RunRecord.from_json(b'{"operator": "\\ud800"}')


def test_bug_record_accepts_only_jcs_safe_integers() -> None:
    # 2**53 is accepted by the record but refused by RFC 8785: the record has no digest.
    with pytest.raises(RecordError, match="seed"):
        RunRecord.from_dict({"seed": 2**53})


def test_bug_hash_tag_with_trailing_newline_is_refused() -> None:
    # `re.match` with `$` accepts one trailing newline: two texts for one hash.
    with pytest.raises(RecordError, match="input_hash"):
        RunRecord.from_dict({"input_hash": "sha-256:" + "a" * 64 + "\n"})


# -- JOSE: tokens, keys, key sets ---------------------------------------------------------

_KEY = SigningKey.generate()
_KEYS = {_KEY.kid: _KEY.private.public_key()}
_JWKS = {"keys": [_KEY.jwk]}


def _signed(header_text: str | bytes, payload_text: str | bytes) -> str:
    """A token whose signature is valid over whatever header/payload bytes it carries."""
    from jwt.algorithms import ECAlgorithm

    h = header_text.encode() if isinstance(header_text, str) else header_text
    p = payload_text.encode() if isinstance(payload_text, str) else payload_text
    signing_input = b64url_encode(h) + "." + b64url_encode(p)
    sig = ECAlgorithm(ECAlgorithm.SHA256).sign(signing_input.encode(), _KEY.private)
    return signing_input + "." + b64url_encode(sig)


token_texts = (
    ANY_TEXT
    | st.lists(near_b64_texts, min_size=1, max_size=4).map(".".join)
    | st.tuples(json_texts, json_texts, b64url_texts).map(
        lambda t: f"{b64url_encode(t[0].encode('utf-8', 'surrogatepass'))}."
                  f"{b64url_encode(t[1].encode('utf-8', 'surrogatepass'))}.{t[2]}")
)


@budget(300)
@given(token_texts)
def test_parse_unverified_only_typed_errors(token: str) -> None:
    parsed = _refused_or(lambda: parse_unverified(token), EncodingError, TooLargeError)
    if parsed is not None:
        header, payload = parsed
        assert isinstance(header, dict) and isinstance(payload, dict)


@budget(300)
@given(token_texts)
def test_verify_jwt_junk_only_typed_errors(token: str) -> None:
    assert _refused_or(lambda: verify_jwt(token, _KEYS)) is None


_header_texts = json_texts | st.fixed_dictionaries(
    {"alg": st.sampled_from(["ES256", "ES384", "EdDSA", "none", "HS256", "RS256", "es256"])
     | json_values},
    optional={"kid": st.just(_KEY.kid) | json_values, "typ": json_values, "b64": json_values,
              "crit": json_values, "jku": json_values, "cty": json_values},
).map(json.dumps)
_claim_values = (st.integers() | st.floats() | st.booleans() | ANY_TEXT | json_values
                 | st.sampled_from([int(time.time()), int(time.time()) + 3600]))
_payload_texts = json_texts | st.fixed_dictionaries(
    {}, optional={"iat": _claim_values, "exp": _claim_values, "nbf": _claim_values,
                  "aud": _claim_values, "iss": _claim_values, "sub": json_values},
).map(lambda d: json.dumps(d, allow_nan=True))


@budget(300)
@given(_header_texts, _payload_texts,
       st.sampled_from([{}, {"issuer": "i"}, {"audience": "a"}, {"require": ("exp", "iat")},
                        {"leeway": 5.0}]))
@example('{"alg":"ES256"}', '{"exp": ' + "1" * 5000 + "}", {})
def test_verify_jwt_validly_signed_junk_only_typed_errors(header: str, payload: str,
                                                          kwargs: dict[str, Any]) -> None:
    token = _signed(header.encode("utf-8", "surrogatepass"), payload.encode("utf-8",
                                                                            "surrogatepass"))
    claims = _refused_or(lambda: verify_jwt(token, _KEYS, **kwargs))
    if claims is not None:
        assert claims == strict_json_loads(payload)
        hdr = json.loads(header)
        assert hdr["alg"] == "ES256" and not {"crit", "jku", "jwk", "x5u", "x5c"} & set(hdr)


def _jwk_member() -> st.SearchStrategy[Any]:
    return (st.binary(max_size=70).map(b64url_encode) | json_values | near_b64_texts)


jwk_dicts = st.fixed_dictionaries(
    {"kty": st.sampled_from(["EC", "RSA", "OKP", "oct", "EC2", ""]) | json_values},
    optional={"crv": st.sampled_from(["P-256", "P-384", "P-521", "Ed25519", "X25519",
                                      "secp256k1", "Ed448"]) | json_values,
              "x": _jwk_member(), "y": _jwk_member(), "n": _jwk_member(), "e": _jwk_member(),
              "d": _jwk_member(), "k": _jwk_member(), "kid": json_values,
              "use": st.sampled_from(["sig", "enc"]) | json_values, "alg": json_values},
)
jwks_values = (
    json_values
    | st.lists(jwk_dicts | st.just(_KEY.jwk), max_size=3).map(lambda ks: {"keys": ks})
)


@budget(300)
@given(jwk_dicts | json_values)
def test_key_from_jwk_only_signature_errors(jwk: Any) -> None:
    _refused_or(lambda: key_from_jwk(jwk), SignatureError)


@budget(300)
@given(jwks_values)
@example({"keys": [{"kty": "EC", "crv": "\ud800", "x": "a", "y": "b"}]})
def test_keys_from_jwks_only_signature_errors(jwks: Any) -> None:
    keys = _refused_or(lambda: keys_from_jwks(jwks), SignatureError)
    if keys is not None:
        assert keys and all(isinstance(k, str) for k in keys)


def test_bug_jwk_thumbprint_of_unencodable_member_is_a_signature_error() -> None:
    # keys.jwk_thumbprint encodes with ensure_ascii=False: a lone surrogate (from a JSON
    # "\ud800" escape in a JWKS file) raises UnicodeEncodeError.
    doc = strict_json_loads(b'{"keys":[{"kty":"EC","crv":"\\ud800","x":"a","y":"b"}]}')
    with pytest.raises(SignatureError):
        keys_from_jwks(doc)


@budget(200)
@given(token_texts | st.tuples(_header_texts, _payload_texts).map(lambda t: _signed(*t)))
def test_keyset_verify_only_typed_errors(token: str) -> None:
    _refused_or(lambda: KeySet(_JWKS).verify(token))


# -- EAR ----------------------------------------------------------------------------------

_VALID_EAR = build_ear(vector={"executables": 2, "hardware": 32}, nonce="bm9uY2Vub25jZQ",
                       iat=int(time.time()), policy_id="p", extensions={"bytereplay.x": 1})
_VALID_LEGACY = build_ear(vector={"executables": 2, "hardware": 32}, nonce=None, iat=1,
                          policy_id="p", extensions={"bytereplay.x": 1}, profile=PROFILE_LEGACY)

_STATUSES = st.sampled_from(["none", "affirming", "warning", "contraindicated"])
_submod = st.fixed_dictionaries(
    {}, optional={
        "ear.status": _STATUSES | json_values,
        "ear_status": _STATUSES | json_values,
        "ear.trustworthiness-vector": st.dictionaries(
            st.sampled_from(["executables", "hardware", "x"]) | SAFE_TEXT,
            st.integers(-200, 200) | json_values, max_size=3) | json_values,
        "ear_trustworthiness_vector": st.dictionaries(
            st.sampled_from(["executables", "hardware"]) | SAFE_TEXT,
            st.integers(-200, 200), max_size=3),
        "ear.appraisal-policy-id": json_values,
        "ear_appraisal_policy_ids": st.lists(SAFE_TEXT, max_size=2) | json_values,
        "eat_profile": json_values,
        EXTENSION_KEY: st.dictionaries(st.sampled_from(["replay", "output_hash", "tee"]),
                                       json_values, max_size=2) | json_values,
        "bytereplay.replay": json_values,
        "bytereplay.output_hash": json_values,
    })


ear_claims = st.one_of(
    st.dictionaries(KEY_TEXT, json_values, max_size=6),
    st.fixed_dictionaries(
        {"eat_profile": st.sampled_from([PROFILE_LEGACY, PROFILE_DRAFT]) | json_values,
         "iat": st.integers() | json_values},
        optional={
            "eat_nonce": json_values,
            "ear_status": _STATUSES | json_values,
            "submods": st.fixed_dictionaries({}, optional={
                SUBMOD: _submod | json_values, "gpu0": _submod | json_values}) | json_values,
            "ear.verifier-id": json_values,
            "ear_verifier_id": st.fixed_dictionaries({"developer": SAFE_TEXT,
                                                      "build": SAFE_TEXT}) | json_values,
            "ear_raw_evidence": SAFE_TEXT | json_values,
        },
    ),
)

_RANK = {"affirming": 0, "none": 1, "warning": 2, "contraindicated": 3}


@budget(400)
@given(ear_claims)
@example(_VALID_EAR)
@example(_VALID_LEGACY)
def test_ear_normalise_only_result_errors_and_never_better_than_vector(claims: Any) -> None:
    from bytereplay.ar4si import status_of

    ear = _refused_or(lambda: normalise(claims), ResultError)
    if ear is None:
        return
    assert _RANK[ear.status] >= _RANK[status_of(ear.vector)]
    for sub in ear.submods.values():  # no submod better than its vector, none than the EAR
        assert _RANK[sub.tier] >= _RANK[status_of(sub.vector)]
        assert _RANK[ear.status] >= _RANK[sub.tier]
        assert all(-128 <= v <= 127 for v in sub.vector.values())
    assert isinstance(ear.iat, int) and not isinstance(ear.iat, bool)
    assert ear.nonce is None or isinstance(ear.nonce, str)


@budget(200)
@given(token_texts
       | ear_claims.map(lambda c: _signed(json.dumps({"alg": "ES256", "kid": _KEY.kid}),
                                          json.dumps(c, allow_nan=True)))
       | json_texts.map(lambda p: _signed('{"alg":"ES256"}', p.encode("utf-8",
                                                                       "surrogatepass"))))
def test_read_ear_only_typed_errors(token: str) -> None:
    ear = _refused_or(lambda: read_ear(token, KeySet(_JWKS)))
    if ear is not None:
        assert ear.profile in (PROFILE_LEGACY, PROFILE_DRAFT)


@pytest.mark.parametrize("claims", [_VALID_EAR, _VALID_LEGACY])
def test_read_ear_accepts_a_valid_ear(claims: dict[str, Any]) -> None:
    token = sign_ear(claims, _KEY)
    ear = read_ear(token, KeySet(_JWKS))
    assert ear.status == "warning" and ear.extensions == {"bytereplay.x": 1}


# -- RFC 8785: `jcs` against the reference implementation --------------------------------

jcs_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**54), 2**54) | st.floats()
    | st.floats(min_value=-1e25, max_value=1e25) | st.floats(min_value=-1e-3, max_value=1e-3)
    | st.sampled_from([0.0, -0.0, 1e16, 1e21, 1e-7, 5e-324, 1.7976931348623157e308, 0.1,
                       123456789012345680000.0, 2.0**53, -(2.0**53), 1e15 + 0.5])
    | st.text(max_size=12) | st.sampled_from(["\x00", "\x7f", "\u2028", "\ud800", "é", "😀"]),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=6) | st.sampled_from(["a", "é", "😀", "\ufb33", "\x00"]),
                      inner, max_size=4),
    max_leaves=20,
)


@budget(500)
@given(jcs_values)
def test_jcs_agrees_with_rfc8785(value: Any) -> None:
    """Whatever shortcut `bytereplay.encoding.jcs` takes, its bytes are the reference's."""
    import rfc8785

    from bytereplay.encoding import jcs

    try:
        expected: bytes | None = bytes(rfc8785.dumps(value))
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(EncodingError):
            jcs(value)
    else:
        assert jcs(value) == expected
