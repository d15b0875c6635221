"""The fast paths of the appraisal give the same answers as the slow ones.

- `bytereplay.encoding.jcs` and `RunRecord.to_json` write the bytes `rfc8785.dumps` writes
  (or refuse as it does), so record digests do not change;
- `b64url_decode` accepts exactly the canonical unpadded base64url texts;
- `RunRecord.from_dict` builds the records `__init__` builds; `digest()` is remembered
  without touching equality, hashing or `replace`;
- `bytereplay.jose` verifies tokens as pyjwt did (same acceptance, same refusals) after
  one strict parse, and signs tokens pyjwt reads;
- the simulated TEE remembers the leaf->CA signature check per certificate pair, but
  checks validity times against `now` on every call;
- the optional `bytereplay.external_tokens` claim is named once and bounded.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
import string
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
import rfc8785
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from quote_helpers import Trusts, sim_trusts
from quote_helpers import verify as verify_quote

from attester.evidence import build_claims, encode, request_claim
from attester.tee.simulated import SimulatedProvider
from bytereplay import ear, eat
from bytereplay.encoding import (
    b64_decode,
    b64_encode,
    b64url_decode,
    b64url_encode,
    compact_json,
    jcs,
    sha256_tag,
    strict_json_loads,
)
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    EvidenceError,
    QuoteError,
    RecordError,
    SignatureError,
)
from bytereplay.evidence import EXTERNAL_TOKENS, decode_evidence
from bytereplay.jose import parse_jwt, sign_jwt, verify_jwt, verify_parsed
from bytereplay.keys import SigningKey
from bytereplay.record import RunRecord, leaf_paths
from verifier import external
from verifier.tee.simulated import load_ca_pem

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
FAST = settings(deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _rfc8785(value: Any) -> bytes | str:
    try:
        return bytes(rfc8785.dumps(value))
    except Exception as exc:  # the refusal, by name
        return type(exc).__name__


def _ours(value: Any) -> bytes | str:
    try:
        return jcs(value)
    except EncodingError:
        return "refused"


# -- JCS ----------------------------------------------------------------------------------

floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [0.0, -0.0, 1.0, -1.0, 0.7, 1e-4, 1e-7, 1e16, 1e21, 1e22, 2.0**53, 2.0**53 - 1,
     123456789012345.6, 5e-324, 1.7976931348623157e308, 100.0, 0.1 + 0.2])
ints = st.integers() | st.sampled_from([2**53 - 1, 2**53, -(2**53) + 1, -(2**53), 0])
texts = st.text() | st.sampled_from(["\x00\x1f\x7f", '"\\/\b\f\n\r\t', "\u2028\u2029",
                                     "\ud800", "é\U0001f600", "\ue000"])
json_like = st.recursive(
    st.none() | st.booleans() | ints | floats | texts,
    lambda inner: st.lists(inner, max_size=5) | st.tuples(inner, inner)
    | st.dictionaries(texts, inner, max_size=5),
    max_leaves=30)


@FAST
@given(json_like)
@example({"\ue000": 1, "\U0001f600": 2})  # UTF-16 order differs from code point order
@example({1: 2})
@example([float("nan")])
@example({"a": 1.0, "b": -0.0, "c": 1e21, "d": 1e-7})
def test_jcs_is_rfc8785_byte_for_byte(value: Any) -> None:
    expected = _rfc8785(value)
    got = _ours(value)
    if isinstance(expected, bytes):
        assert got == expected
    else:
        assert got == "refused"


def test_jcs_refuses_other_types_as_rfc8785_does() -> None:
    for value in (b"bytes", {1, 2}, object(), {"k": b"v"}):
        assert _ours(value) == "refused"


def _records() -> list[RunRecord]:
    out = [RunRecord(), RunRecord.from_json((FIXTURES / "records" / "complete.json").read_bytes())]
    base = out[1]
    for path, value in [("sampling.temperature", 1.0), ("sampling.top_p", 1.0),
                        ("sampling.temperature", 0.7), ("sampling.temperature", 1e-7),
                        ("sampling.temperature", 0.0), ("seed", 2**53 - 1),
                        ("gpu.arch", "é\u2028\x01\"\\"), ("operator", "\ud800"),
                        ("output_token_ids", (0, 2**53 - 1)), ("stop.stop_sequences", ()),
                        ("seed", 2**53)]:
        out.append(base.replace(path, value))
    # Records built directly (not parsed) may hold any leaf type: the slow path decides.
    out.append(dataclasses.replace(base, seed=1.0))  # type: ignore[arg-type]
    out.append(dataclasses.replace(base, seed=1e300))  # type: ignore[arg-type]
    out.append(dataclasses.replace(base, output_token_ids=[1, 2]))  # type: ignore[arg-type]
    return out


@pytest.mark.parametrize("record", _records())
def test_record_to_json_is_rfc8785_of_to_dict(record: RunRecord) -> None:
    expected = _rfc8785(record.to_dict())
    try:
        got: bytes | str = record.to_json()
    except EncodingError:
        got = "refused"
    if isinstance(expected, bytes):
        assert got == expected
        assert record.digest() == sha256_tag(expected)
    else:
        assert got == "refused"


@settings(deadline=None, max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=()), max_size=40),  # lone surrogates too
       number=st.floats(allow_nan=False, allow_infinity=False),
       ids=st.lists(st.integers(-(2**53 - 1), 2**53 - 1), max_size=5))
def test_record_to_json_is_rfc8785_for_any_text_and_number(text: str, number: float,
                                                           ids: list[int]) -> None:
    base = _records()[1]
    record = dataclasses.replace(
        base.replace("gpu.arch", text).replace("sampling.temperature", number),
        output_token_ids=tuple(ids))
    expected = _rfc8785(record.to_dict())
    try:
        got: bytes | str = record.to_json()
    except EncodingError:
        got = "refused"
    assert got == (expected if isinstance(expected, bytes) else "refused")


def test_repeated_groups_are_built_once_and_stay_strict() -> None:
    raw = json.loads((FIXTURES / "records" / "complete.json").read_bytes())
    first, second = RunRecord.from_dict(raw), RunRecord.from_dict(json.loads(json.dumps(raw)))
    assert first.gpu is second.gpu and first.determinism is second.determinism
    assert first == second and first.digest() == second.digest()
    # A member equal to a kept one but of another type is read on its own: refused here.
    one = {**raw, "gpu": {**raw["gpu"], "sm_count": 1}}
    assert RunRecord.from_dict(one).gpu is RunRecord.from_dict(one).gpu  # kept
    for odd in (True, 1.0):
        with pytest.raises(RecordError, match=r"gpu\.sm_count"):
            RunRecord.from_dict({**raw, "gpu": {**raw["gpu"], "sm_count": odd}})
    # Groups with numbers that are not integers are built every time (-0.0 == 0.0).
    sampling = {**raw["sampling"], "temperature": -0.0}
    a = RunRecord.from_dict({**raw, "sampling": sampling})
    b = RunRecord.from_dict({**raw, "sampling": {**sampling, "temperature": 0.0}})
    assert a.sampling is not b.sampling and repr(a.sampling.temperature) == "-0.0"
    # The digest of a record whose groups are shared is still rfc8785's.
    assert second.to_json() == bytes(rfc8785.dumps(second.to_dict()))


def test_record_digest_of_the_fixture_is_unchanged() -> None:
    """The digest of fixtures/records/complete.json, computed with rfc8785 itself."""
    record = RunRecord.from_json((FIXTURES / "records" / "complete.json").read_bytes())
    assert record.digest() == sha256_tag(bytes(rfc8785.dumps(record.to_dict())))


# -- records --------------------------------------------------------------------------------


def test_from_dict_builds_what_init_builds() -> None:
    record = RunRecord.from_json((FIXTURES / "records" / "complete.json").read_bytes())

    def rebuilt(node: Any) -> Any:
        if dataclasses.is_dataclass(node) and not isinstance(node, type):
            return type(node)(**{f.name: rebuilt(getattr(node, f.name))
                                 for f in dataclasses.fields(node)})
        return node

    again = rebuilt(record)
    assert again == record and hash(again) == hash(record) and repr(again) == repr(record)
    assert vars(again) == {k: v for k, v in vars(record).items() if k != "_digest"}
    for path in leaf_paths():
        assert again.get(path) == record.get(path)


def test_digest_is_remembered_but_invisible() -> None:
    record = RunRecord.from_json((FIXTURES / "records" / "complete.json").read_bytes())
    fresh = RunRecord.from_dict(record.to_dict())
    first = record.digest()
    assert record.digest() is first  # computed once
    assert record == fresh and hash(record) == hash(fresh) and repr(record) == repr(fresh)
    changed = record.replace("seed", 8)
    assert changed.digest() != first
    assert changed.digest() == sha256_tag(bytes(rfc8785.dumps(changed.to_dict())))
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.seed = 9  # type: ignore[misc]


def test_get_with_missing_groups_and_wrong_names() -> None:
    empty, full = RunRecord(), RunRecord.from_json(
        (FIXTURES / "records" / "complete.json").read_bytes())
    assert empty.get("gpu.arch") is None and full.get("gpu.arch") is not None
    assert empty.get("gpu.no_such_field") is None  # the group is missing first
    with pytest.raises(AttributeError):
        full.get("gpu.no_such_field")
    with pytest.raises(AttributeError):
        empty.get("no_such_group")


# -- base64url --------------------------------------------------------------------------------

_ALPHABET = string.ascii_letters + string.digits + "-_"


def _reference_b64url(text: Any) -> bytes | None:
    """The definition: unpadded, base64url alphabet only, length not 1 mod 4, and the text
    is the one the bytes encode to."""
    if not isinstance(text, str) or any(c not in _ALPHABET for c in text) or len(text) % 4 == 1:
        return None
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    return data if base64.urlsafe_b64encode(data).rstrip(b"=").decode() == text else None


@settings(deadline=None, max_examples=1000)
@given(st.text(alphabet=_ALPHABET + "+/= \n\t.\x00é", max_size=12)
       | st.binary(max_size=20).map(b64url_encode))
@example("AAAA\n")
@example("AB")
@example("AQ")
@example("")
def test_b64url_decode_accepts_exactly_canonical_text(text: str) -> None:
    expected = _reference_b64url(text)
    if expected is None:
        with pytest.raises(EncodingError, match="canonical"):
            b64url_decode(text)
    else:
        assert b64url_decode(text) == expected


@settings(deadline=None, max_examples=300)
@given(st.text(alphabet=string.ascii_letters + string.digits + "+/= \n-_", max_size=16)
       | st.binary(max_size=20).map(lambda b: base64.b64encode(b).decode()))
def test_b64_decode_is_the_standard_decoder_or_stricter(text: str) -> None:
    """What it accepts, the standard strict decoder reads the same; what that refuses, it
    refuses too (it also refuses padding after a complete group, which the standard one
    lets through)."""
    try:
        expected: bytes | None = binascii.a2b_base64(text.encode(), strict_mode=True)
    except ValueError:
        expected = None
    try:
        got: bytes | None = b64_decode(text)
    except ValueError:
        got = None
    if got is not None:
        assert got == expected
        assert b64_encode(got) == base64.b64encode(got).decode()
    else:
        assert expected is None or "=" in text, text  # refused only for its padding


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(),  # lone surrogates too
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                 max_size=4),
    max_leaves=12)


@settings(deadline=None, max_examples=500)
@given(json_values, st.booleans())
@example({"t": "\ud800", "b": 2**64}, True)
def test_compact_json_reads_back_as_the_value(value: Any, sort_keys: bool) -> None:
    text = compact_json(value, sort_keys=sort_keys)
    assert json.loads(text) == value
    if sort_keys and isinstance(value, dict):
        assert list(json.loads(text)) == sorted(value)


def _parsed_or_error(parse: Any, data: bytes) -> str:
    """What a parse gives, with types and order visible: repr of the value, or the error."""
    try:
        return repr(parse(data))
    except EncodingError as exc:
        return f"refused: {exc.detail}"


def _spellings(value: Any) -> st.SearchStrategy[bytes]:
    """`value` written as bytereplay signs it, as the standard library writes it, and
    with a duplicate key, an escape or a space slipped in."""
    compact = compact_json(value)
    return st.sampled_from([
        compact,
        json.dumps(value).encode(),
        json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(),
        compact.replace(b"{", b'{"k":0,"k":1,', 1) if compact.startswith(b"{") and
        compact != b"{}" else compact,
        compact.replace(b"{", b'{"k":0,', 1).replace(b'}', b',"k":0}', 1),
        compact.replace(b"e", b"\\u0065", 1), compact + b" ", compact.replace(b":", b": ", 1),
    ])


@settings(deadline=None, max_examples=800)
@given(json_values.flatmap(_spellings) | st.binary(max_size=40))
@example(b'{"a":1,"a":1}')
@example(b'{"a":NaN}')
@example(b'[1.0,-0.0,1e5,100000.0,"\\ud800",18446744073709551616]')
@example(b'"\xef\xbb\xbf1"')
def test_strict_json_loads_fast_path_reads_what_the_strict_parser_reads(data: bytes) -> None:
    """The compact fast path only ever answers for text the strict parser reads the same
    way; every other text (duplicates, escapes, spaces, odd numbers) gets the strict
    parser's own answer."""
    from bytereplay import encoding

    expected = _parsed_or_error(lambda d: encoding._strict_parse(d, 10**6), data)
    got = _parsed_or_error(lambda d: strict_json_loads(d, max_depth=10**6), data)
    assert got == expected


def test_compact_json_takes_the_fast_path() -> None:
    from bytereplay import encoding

    value = {"b": [1, 2.5, "é", None, True], "a": {"x": -0.0}}
    assert encoding._compact_parse(compact_json(value)) == value
    for other in (json.dumps(value).encode(), b'{"a":1,"a":2}', b'{"a": 1}'):
        assert encoding._compact_parse(other) is encoding._NOT_COMPACT


def test_compact_json_is_compact_utf8() -> None:
    value = {"b": [1, "é", None, True], "a": {"x": 2.5}}
    assert compact_json(value) == '{"b":[1,"é",null,true],"a":{"x":2.5}}'.encode()
    assert compact_json(value, sort_keys=True) == '{"a":{"x":2.5},"b":[1,"é",null,true]}'.encode()


def test_compact_json_refuses_what_json_refuses() -> None:
    for odd in (datetime.now(UTC), dataclasses.make_dataclass("D", [])(), {1, 2}, b"x"):
        with pytest.raises(TypeError):
            compact_json({"x": odd})


# -- JWT: one parse, the checks pyjwt made ------------------------------------------------


KEYS = {alg: SigningKey.generate(alg) for alg in ("ES256", "ES384", "EdDSA", "PS384")}


def _pyjwt(token: str, key: SigningKey, alg: str, **kw: Any) -> dict[str, Any] | str:
    opts = {"require": list(kw.pop("require", ())), "verify_aud": kw.get("audience") is not None}
    try:
        out: dict[str, Any] = jwt.decode(token, key.private.public_key(), algorithms=[alg],
                                         options=opts, **kw)  # type: ignore[arg-type]
        return out
    except jwt.PyJWTError:
        return "refused"


def _ours_jwt(token: str, key: SigningKey, alg: str, **kw: Any) -> dict[str, Any] | str:
    try:
        return verify_jwt(token, {key.kid: key.private.public_key()}, algorithms=(alg,), **kw)
    except SignatureError:
        return "refused"


def _mostly(*values: Any) -> st.SearchStrategy[Any]:
    """Often absent (None), often a good value, sometimes one of the odd `values`."""
    return st.one_of(st.none(), st.none(), st.sampled_from(values[:1]), st.sampled_from(values))


class Offset(float):
    """A time claim as seconds from now (at least 5 s away from now and from every leeway
    edge, so that pyjwt and this module, reading the clock moments apart, see one side)."""


time_values = st.one_of(
    st.none(), st.none(),
    st.sampled_from([-10**8, -10**6, -100, -60.5, -45, -15, 15, 45, 100, 10**6, 10**8])
    .map(Offset),
    st.sampled_from(["123", "tomorrow", True, [1], {"a": 1}, 1e400]))


@settings(deadline=None, max_examples=300)
@given(alg=st.sampled_from(sorted(KEYS)), exp=time_values, nbf=time_values, iat=time_values,
       iss=_mostly("https://v", "https://x", 5, ["https://v"]),
       aud=_mostly("rp", "other", ["rp", "x"], ["x"], [], 3, [3]),
       sub=_mostly("s", 5), jti=_mostly("j", 5),
       want_iss=st.sampled_from([None, "https://v"]), want_aud=st.sampled_from([None, "rp"]),
       leeway=st.sampled_from([0, 30, 10**7 + 3]),
       require=st.sampled_from([(), ("iat",), ("exp", "iss")]))
def test_verify_jwt_agrees_with_pyjwt(alg: str, exp: Any, nbf: Any, iat: Any, iss: Any,
                                      aud: Any, sub: Any, jti: Any, want_iss: str | None,
                                      want_aud: str | None, leeway: int,
                                      require: tuple[str, ...]) -> None:
    now = int(time.time())
    exp, nbf, iat = ((now + (int(v) if v.is_integer() else float(v)))
                     if isinstance(v, Offset) else v for v in (exp, nbf, iat))
    claims = {k: v for k, v in {"exp": exp, "nbf": nbf, "iat": iat, "iss": iss, "aud": aud,
                                "sub": sub, "jti": jti, "x": 1}.items() if v is not None}
    key = KEYS[alg]
    body = json.dumps(claims, allow_nan=True).replace("Infinity", "1e400")
    token = ".".join([b64url_encode(json.dumps({"alg": alg, "kid": key.kid}).encode()),
                      b64url_encode(body.encode()), ""])
    token = _resign(token, key)
    kw = {"issuer": want_iss, "audience": want_aud, "leeway": leeway, "require": require}
    theirs = _pyjwt(token, key, alg, **kw)
    ours = _ours_jwt(token, key, alg, **kw)
    assert (ours == "refused") == (theirs == "refused"), (ours, theirs)
    if ours != "refused":
        assert ours == theirs


def _resign(unsigned: str, key: SigningKey) -> str:
    """Sign `header.payload.` with pyjwt's own algorithm objects."""
    head, body, _ = unsigned.split(".")
    algo = jwt.get_algorithm_by_name(key.alg)
    sig = algo.sign(f"{head}.{body}".encode(), key.private)
    return f"{head}.{body}.{b64url_encode(sig)}"


@pytest.mark.parametrize("alg", sorted(KEYS))
def test_sign_jwt_is_read_by_pyjwt_and_by_us(alg: str) -> None:
    key = KEYS[alg]
    now = int(time.time())
    claims = {"iat": now, "iss": "https://v", "n": [1, 2.5, "é", None, {"b": True}]}
    token = sign_jwt({**claims, "exp": datetime.fromtimestamp(now + 600, UTC)}, key,
                     typ="ear+jwt")
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": key.kid, "typ": "ear+jwt"}
    assert token.split(".")[0] == b64url_encode(
        json.dumps(header, separators=(",", ":"), sort_keys=True).encode())
    theirs = jwt.decode(token, key.private.public_key(), algorithms=[alg])
    assert theirs == {**claims, "exp": now + 600}
    assert verify_jwt(token, {key.kid: key.private.public_key()}, algorithms=(alg,)) == theirs
    with pytest.raises(TypeError, match="iss"):
        sign_jwt({"iss": 5}, key)


def test_one_parse_serves_routing_and_verification() -> None:
    key = KEYS["ES256"]
    now = int(time.time())
    token = sign_jwt({"iat": now, "a": 1}, key)
    parsed = parse_jwt(token)
    assert parsed.signing_input == token.rsplit(".", 1)[0].encode()
    assert verify_parsed(parsed, {key.kid: key.private.public_key()}) == {"iat": now, "a": 1}
    with pytest.raises(EncodingError, match=r"malformed JWT signature: .*canonical"):
        parse_jwt(token + "==")
    with pytest.raises(SignatureError, match="curve"):
        verify_parsed(parsed, {key.kid: KEYS["ES384"].private.public_key()},
                      algorithms=("ES256",))
    with pytest.raises(SignatureError, match="refused"):
        verify_parsed(parsed, {key.kid: KEYS["PS384"].private.public_key()},
                      algorithms=("ES256",))


# -- simulated TEE: the chain check is remembered, validity is not ---------------------------


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> tuple[SimulatedProvider, Trusts]:
    folder = tmp_path_factory.mktemp("perf-home") / "simulated-tee"
    provider = SimulatedProvider(folder)
    pem = load_ca_pem(folder)
    assert pem is not None
    return provider, sim_trusts(pem)


RD = os.urandom(64)
MEAS = {"model_digest": "sha-256:" + "1" * 64, "container_digest": "unknown",
        "runtime": "bytereplay/0.1.0"}


def test_cached_chain_still_checks_validity_every_time(
        sim: tuple[SimulatedProvider, Trusts]) -> None:
    provider, trust = sim
    quote = provider.quote(RD, MEAS)
    assert verify_quote(quote, trust, RD).chain_ok  # the pair is now remembered
    with pytest.raises(QuoteError, match="expired"):
        verify_quote(quote, trust, RD, datetime.now(UTC) + timedelta(days=3 * 365))
    with pytest.raises(QuoteError, match="not valid yet"):
        verify_quote(quote, trust, RD, datetime.now(UTC) - timedelta(days=1))
    assert verify_quote(quote, trust, RD).chain_ok


def test_cached_chain_is_per_anchor(sim: tuple[SimulatedProvider, Trusts],
                                    tmp_path: Path) -> None:
    provider, trust = sim
    quote = provider.quote(RD, MEAS)
    assert verify_quote(quote, trust, RD).chain_ok
    other = SimulatedProvider(tmp_path / "other")
    other_pem = load_ca_pem(tmp_path / "other")
    assert other_pem is not None
    with pytest.raises(QuoteError, match="does not chain"):
        verify_quote(quote, sim_trusts(other_pem), RD)
    assert verify_quote(other.quote(RD, MEAS), sim_trusts(other_pem), RD)


def test_junk_certificate_fields_are_quote_errors(
        sim: tuple[SimulatedProvider, Trusts]) -> None:
    provider, trust = sim
    quote = provider.quote(RD, MEAS)
    der = base64.b64decode(quote["cert_chain"][0])
    at = der.find(b"\xa0\x03\x02\x01\x02")  # version [0] EXPLICIT INTEGER 2 (v3)
    for bad in (der[:at + 4] + b"\x3b" + der[at + 5:], der[:-40], der[:200], b"\x30\x00"):
        junk = {**quote, "cert_chain": [base64.b64encode(bad).decode()]}
        with pytest.raises(QuoteError):
            verify_quote(junk, trust, RD)


# -- the external tokens claim ----------------------------------------------------------------


def test_external_tokens_claim_is_named_once() -> None:
    assert EXTERNAL_TOKENS == eat.EXTERNAL_TOKENS == external.EXTERNAL_TOKENS
    assert ear.REASONS == "bytereplay.reasons"


@pytest.fixture(scope="module")
def evidence_parts(sim: tuple[SimulatedProvider, Trusts]) -> dict[str, Any]:
    """Evidence parts for `decode_evidence` (which does not check the quote). The record
    lacks the input and template hashes, so any replay request text agrees with it."""
    record = RunRecord.from_json((FIXTURES / "records" / "complete.json").read_bytes())
    record = record.replace("input_hash", None).replace("prompt_template_hash", None)
    provider, _ = sim
    return {"record": record, "key": SigningKey.generate("ES256"), "nonce": os.urandom(32),
            "quote": provider.quote(RD, MEAS)}


@pytest.mark.parametrize(("tokens", "fragment"), [
    (["a.b.c"] * (eat.MAX_EXTERNAL_TOKENS + 1), "at most"),
    (["x" * (eat.MAX_EXTERNAL_TOKEN_CHARS + 1)], "limit"),
    ([5], "not text"),
])
def test_external_tokens_claim_is_bounded(evidence_parts: dict[str, Any], tokens: list[Any],
                                          fragment: str) -> None:
    p = evidence_parts
    request = _request_for(p["record"])
    with pytest.raises(EvidenceError, match=fragment):
        build_claims(record=p["record"], nonce=p["nonce"], key=p["key"], quote=p["quote"],
                     request=request, external_tokens=tokens)
    claims = build_claims(record=p["record"], nonce=p["nonce"], key=p["key"], quote=p["quote"],
                          request=request)
    claims[EXTERNAL_TOKENS] = tokens
    for fmt in ("jwt", "cwt"):
        with pytest.raises(EvidenceError, match=fragment):
            decode_evidence(encode(claims, p["key"], fmt))


def test_external_tokens_claim_within_bounds_passes(evidence_parts: dict[str, Any]) -> None:
    p = evidence_parts
    tokens = ["a.b.c"] * eat.MAX_EXTERNAL_TOKENS
    claims = build_claims(record=p["record"], nonce=p["nonce"], key=p["key"], quote=p["quote"],
                          request=_request_for(p["record"]), external_tokens=tokens)
    for fmt in ("jwt", "cwt"):
        assert decode_evidence(encode(claims, p["key"], fmt)).claims[EXTERNAL_TOKENS] == tokens


def _request_for(record: RunRecord) -> dict[str, Any]:
    """A replay request the record agrees with (it fixes no input or template hash)."""
    assert record.input_hash is None and record.prompt_template_hash is None
    decode = {"max_new_tokens": record.get("stop.max_new_tokens"),
              "temperature": record.get("sampling.temperature"),
              "top_k": record.get("sampling.top_k"), "top_p": record.get("sampling.top_p"),
              "seed": record.seed, "stop": list(record.get("stop.stop_sequences") or ()),
              "eos": record.get("stop.eos")}
    return request_claim("x", "{input}", decode)


def test_float_helpers_cover_the_edges() -> None:
    for f in (0.7, 1.0, -0.0, 1e-7, 1e21, 2.0**53, math.pi * 1e15, -2.5, 1e-4, 9.999e15):
        assert jcs(f) == bytes(rfc8785.dumps(f))
    with pytest.raises(BytereplayError):
        jcs(float("inf"))


def test_the_pipelines_fact_defaults_read_back_as_the_steps_declare_them() -> None:
    """`new_facts` (a JSON copy made once) is `default_facts` (the steps' own defaults),
    and each copy is its own."""
    from verifier.pipeline import default_facts, new_facts

    first, second = new_facts(), new_facts()
    assert first == second == default_facts()
    first["evidence"]["decode"] = "ok"
    assert second["evidence"]["decode"] == "not-run"
