"""Property-based tests for Evidence (EAT as JWT and as COSE_Sign1 CWT) and TEE quotes.

- `bytereplay.evidence.decode_evidence`: any bytes or text, and validly signed messages whose
  headers or claims were mutated, raise only `BytereplayError`s (or decode);
- `verifier.tee.base.verify_quote`: any quote dict (junk, and mutations of a genuine
  simulated quote, of a tsm quote, of an nvidia quote) raises only `BytereplayError`s, and
  no mutation of a genuine quote's signed content is accepted.

Budget: the `bytereplay-fuzz-ci` profile (see tests/test_fuzz_bytereplay.py);
`BYTEREPLAY_FUZZ_PROFILE=thorough` multiplies the examples by 20.
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import kit
from fuzz_budget import budget
from quote_helpers import all_trusts
from quote_helpers import verify as verify_quote
from snp_test_root import SnpTestRoot
from tdx_test_root import TdxTestRoot

from attester.evidence import expected_report_data
from bytereplay.encoding import b64url_encode
from bytereplay.errors import BytereplayError
from bytereplay.evidence import decode_evidence
from bytereplay.home import Home
from bytereplay.keys import thumbprint_bytes
from verifier.tee.simulated import load_ca_pem


def _refused_or(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except BytereplayError:
        return None


# Module-level kit: hypothesis forbids function-scoped fixtures inside @given.
_HOME = Home.resolve(tempfile.mkdtemp(prefix="br-fuzz-evidence-"))
atexit.register(shutil.rmtree, _HOME.root, True)
KIT = kit.EvidenceKit(_HOME)
NONCE = bytes(range(32))
CLAIMS = KIT.claims(NONCE)
CBOR_CLAIMS = kit.claims_to_cbor(CLAIMS)
KID = thumbprint_bytes(KIT.key.jwk)
TRUST = all_trusts(str(load_ca_pem(_HOME.simulated_ca)))
GOOD_JWT = KIT.make(NONCE)
GOOD_CWT = KIT.make(NONCE, fmt="cwt")

# -- strategies ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=3),
    max_leaves=10,
)
cbor_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats()
    | st.text(max_size=12) | st.binary(max_size=40)
    | st.builds(cbor2.CBORTag, st.sampled_from([1, 2, 18, 24, 61, 99, 55799]), st.integers(0, 9)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.integers(-40, 300) | st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    out = list(value)
    out[head] = _replace(out[head], rest, new)
    return out


def _delete(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != path[0]}
        return [v for i, v in enumerate(value) if i != path[0]]
    head = path[0]
    if isinstance(value, dict):
        return {**value, head: _delete(value[head], path[1:])}
    out = list(value)
    out[head] = _delete(out[head], path[1:])
    return out


JSON_PATHS = _paths(CLAIMS)[1:]
CBOR_PATHS = _paths(CBOR_CLAIMS)[1:]


def _mutated(start: Any, values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """`start` with 1..3 of its members replaced by `values` or deleted."""

    @st.composite
    def mutate(draw: st.DrawFn) -> Any:
        claims: Any = start
        for _ in range(draw(st.integers(1, 3))):
            paths = _paths(claims)[1:] or [()]
            path = draw(st.sampled_from(paths))
            if path and draw(st.booleans()) and draw(st.booleans()):
                claims = _delete(claims, path)
            else:
                claims = _replace(claims, path, draw(values))
        return claims

    return mutate()


def mutated_json_claims() -> st.SearchStrategy[Any]:
    return _mutated(CLAIMS, json_values)


def mutated_cbor_claims() -> st.SearchStrategy[Any]:
    return _mutated(CBOR_CLAIMS, cbor_values)


protected_headers = st.one_of(
    st.dictionaries(st.sampled_from([1, 2, 3, 4, 16, 32, 33, 34, 35, -1, 99]), cbor_values,
                    max_size=4),
    st.fixed_dictionaries({1: st.sampled_from([-7, -35, -8, -38, 5, 0]) | cbor_values,
                           4: st.just(KID) | cbor_values}),
    cbor_values,
)

# -- decode_evidence ----------------------------------------------------------------------


@budget(300)
@given(st.binary(max_size=400) | st.text(max_size=200)
       | st.binary(max_size=300).map(lambda b: b"\xd2" + b)
       | st.integers(0, len(GOOD_CWT)).map(lambda i: GOOD_CWT[:i])
       | st.integers(0, len(GOOD_JWT)).map(lambda i: str(GOOD_JWT)[:i]),
       st.sampled_from([None, "jwt", "cwt"]))
def test_decode_evidence_junk_only_typed_errors(data: bytes | str, fmt: str | None) -> None:
    _refused_or(lambda: decode_evidence(data, fmt))


@budget(200)
@given(mutated_json_claims(), st.sampled_from(["eat+jwt", "application/eat+jwt", "JWT"]))
def test_decode_evidence_validly_signed_jwt_mutations(claims: Any, typ: str) -> None:
    payload = json.dumps(claims).encode()
    token = kit.jws({"alg": "ES256", "kid": KIT.key.kid, "typ": typ}, payload, KIT.key)
    decoded = _refused_or(lambda: decode_evidence(token))
    if decoded is not None:
        assert decoded.key_thumbprint == KIT.key.kid
        assert decoded.output_hash == decoded.record.output_hash


@budget(200)
@given(mutated_cbor_claims())
def test_decode_evidence_validly_signed_cwt_claim_mutations(claims: Any) -> None:
    try:
        payload = bytes(cbor2.dumps(claims, canonical=True))
    except Exception:
        return  # not encodable (e.g. a float key); nothing to send
    data = kit.cose_sign1({1: -7, 4: KID}, payload, KIT.key)
    decoded = _refused_or(lambda: decode_evidence(data))
    if decoded is not None:
        assert decoded.key_thumbprint == KIT.key.kid


@budget(300)
@given(protected_headers, st.one_of(st.just({}), cbor_values))
@example({1: [-7], 4: KID}, {})      # unhashable alg (was a TypeError: a bug, fixed)
@example({1: -7, 4: KID}, {1: -7})
def test_decode_evidence_validly_signed_cwt_header_mutations(protected: Any,
                                                             unprotected: Any) -> None:
    try:
        data = kit.cose_sign1(bytes(cbor2.dumps(protected, canonical=True)), CBOR_CLAIMS, KIT.key,
                              unprotected=unprotected)
    except Exception:
        return
    decoded = _refused_or(lambda: decode_evidence(data))
    if decoded is not None:
        assert protected == {1: -7, 4: KID} and unprotected in ({}, None)  # None: kit sends {}


@budget(100)
@given(st.integers(0, 10**6), st.binary(min_size=1, max_size=1))
def test_decode_evidence_byte_flips_never_verify(pos: int, byte: bytes) -> None:
    for good in (GOOD_CWT, str(GOOD_JWT).encode()):
        i = pos % len(good)
        if good[i:i + 1] == byte:
            continue
        data = good[:i] + byte + good[i + 1:]
        arg: bytes | str = data if good is GOOD_CWT else data.decode("latin-1")
        assert _refused_or(lambda a=arg: decode_evidence(a)) is None or data == good


# -- verify_quote -------------------------------------------------------------------------

EXPECTED = KIT.claims(NONCE)  # a fresh quote over the same binding
SIM_QUOTE = EXPECTED["bytereplay.quote"]
REPORT_DATA = expected_report_data(NONCE, KIT.record, KIT.key.jwk)


# Real-layout quotes under TEST ROOTs (named as such), trusted in TRUST below.
_TDX_ROOT = TdxTestRoot()
_SNP_ROOT = SnpTestRoot()
TRUST = {**TRUST, "tdx": _TDX_ROOT.trust(), "snp": _SNP_ROOT.trust()}
TEST_ROOT_AT = _TDX_ROOT.at  # inside both test roots' validity


QUOTES = {"simulated": SIM_QUOTE, "tdx": _TDX_ROOT.tsm_quote(REPORT_DATA),
          "snp": _SNP_ROOT.tsm_quote(REPORT_DATA, version=3),
          "nvidia": {"provider": "nvidia", "simulated": False, "attestation_report": "AAAA",
                     "gpu_nonce": "AAAA"}}


def test_genuine_quotes_verify() -> None:
    assert verify_quote(SIM_QUOTE, TRUST, REPORT_DATA).chain_ok
    for kind in ("tdx", "snp"):
        result = verify_quote(QUOTES[kind], TRUST, REPORT_DATA, TEST_ROOT_AT)
        assert result.hardware and result.root is not None and "TEST ROOT" in result.root


@budget(300)
@given(json_values | st.dictionaries(st.sampled_from(
    ["provider", "simulated", "version", "alg", "cert_chain", "signature", "report_data",
     "measurements", "timestamp", "tee", "outblob", "attestation_report", "gpu_nonce"]),
    json_values | st.sampled_from(["simulated", "tsm", "nvidia", "tdx", "sev-snp", "ES256"])
    | st.binary(max_size=1300).map(b64url_encode), max_size=8))
def test_verify_quote_junk_only_typed_errors(quote: Any) -> None:
    _refused_or(lambda: verify_quote(quote, TRUST, REPORT_DATA))


@budget(300)
@given(st.sampled_from(list(QUOTES)), st.data())
def test_verify_quote_mutations_only_typed_errors(which: str, data: st.DataObject) -> None:
    quote = QUOTES[which]
    path = data.draw(st.sampled_from(_paths(quote)[1:]))
    new = data.draw(json_values | st.binary(max_size=1300).map(b64url_encode))
    mutated = _replace(quote, path, new)
    when = TEST_ROOT_AT if which in ("tdx", "snp") else None
    result = _refused_or(lambda: verify_quote(mutated, TRUST, REPORT_DATA, when))
    if result is not None and which == "simulated" and path[0] != "signature":
        # Every field but the signature is signed: only a no-op change may pass.
        assert mutated == quote or json.dumps(mutated, sort_keys=True) == json.dumps(
            quote, sort_keys=True)


@pytest.mark.parametrize("which", list(QUOTES))
def test_verify_quote_refuses_other_report_data(which: str) -> None:
    with pytest.raises(BytereplayError):
        verify_quote(QUOTES[which], TRUST, bytes(64), TEST_ROOT_AT if which != "simulated" else None)


def test_bug_quote_certificate_with_invalid_x509_version_is_a_quote_error() -> None:
    """Found by fuzz/fuzz_quote.py. `verifier/tee/simulated.py:_leaf_from_chain` catches
    (binascii.Error, ValueError), but cryptography raises `x509.InvalidVersion` (an
    Exception, not a ValueError) for a certificate whose version field is not 0..2. The
    verifier's quote step catches only BytereplayError, so this Evidence, which anyone can
    sign, gets a 500 from /v1/verify instead of a negative EAR."""
    import base64

    der = base64.b64decode(SIM_QUOTE["cert_chain"][0])
    at = der.find(b"\xa0\x03\x02\x01\x02")  # version [0] EXPLICIT INTEGER 2 (v3)
    assert at > 0
    bad = der[:at + 4] + b"\x3b" + der[at + 5:]
    quote = {**SIM_QUOTE, "cert_chain": [base64.b64encode(bad).decode(),
                                         *SIM_QUOTE["cert_chain"][1:]]}
    with pytest.raises(BytereplayError):
        verify_quote(quote, TRUST, REPORT_DATA)
