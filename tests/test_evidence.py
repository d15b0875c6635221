"""Evidence (EAT as JWT and CWT/COSE_Sign1): signing, strict reading, binding.

Both formats are also read with independent implementations: python-jose for the JWT,
pycose for COSE_Sign1.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, hmac
from cryptography.hazmat.primitives.asymmetric import ec
from quote_helpers import Trusts, sim_trusts, verify, verify_evidence

from attester.evidence import (
    build_claims,
    encode,
    encode_cwt,
    encode_jwt,
    expected_report_data,
    measurements_for,
    request_claim,
)
from attester.tee.simulated import SimulatedProvider
from bytereplay import cose, eat
from bytereplay.cose import COSE_SIGN1_TAG, cose_key_to_jwk, jwk_to_cose_key
from bytereplay.encoding import b64url_decode, b64url_encode, cbor_dumps, sha256_tag
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    EvidenceError,
    NonceError,
    QuoteError,
    SignatureError,
    TooLargeError,
)
from bytereplay.evidence import EXTERNAL_TOKENS, FORMATS, decode_evidence
from bytereplay.keys import SigningKey, thumbprint_bytes
from bytereplay.record import RunRecord
from verifier.tee.simulated import load_ca_pem

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
INPUT, TEMPLATE = "What is 2 + 2?", "Q: {input}\nA:"
OUTPUT = b" 4, of course."
DECODE = {"max_new_tokens": 16, "temperature": 0.7, "top_k": 40, "top_p": 0.9, "seed": 7,
          "stop": ["\n\n"], "eos": True}


@pytest.fixture(scope="module")
def record() -> RunRecord:
    rec = RunRecord.from_json((FIXTURES / "records" / "complete.json").read_bytes())
    return (rec.replace("input_hash", sha256_tag(INPUT.encode()))
               .replace("prompt_template_hash", sha256_tag(TEMPLATE.encode()))
               .replace("output_hash", sha256_tag(OUTPUT)))


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sim") / "simulated-tee"


@pytest.fixture(scope="module")
def provider(sim_dir: Path) -> SimulatedProvider:
    return SimulatedProvider(sim_dir)


@pytest.fixture(scope="module")
def trust(provider: SimulatedProvider, sim_dir: Path) -> Trusts:
    pem = load_ca_pem(sim_dir)
    assert pem is not None
    return sim_trusts(pem)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("ES256")


@pytest.fixture(scope="module")
def nonce() -> bytes:
    return os.urandom(32)


def make_claims(record: RunRecord, nonce: bytes, key: SigningKey,
                provider: SimulatedProvider, **over: Any) -> dict[str, Any]:
    quote = provider.quote(expected_report_data(nonce, record, key.jwk), measurements_for(record))
    claims = build_claims(record=record, nonce=nonce, key=key, quote=quote,
                          request=request_claim(INPUT, TEMPLATE, DECODE))
    claims.update(over)
    return claims


@pytest.fixture(scope="module")
def claims(record: RunRecord, nonce: bytes, key: SigningKey,
           provider: SimulatedProvider) -> dict[str, Any]:
    return make_claims(record, nonce, key, provider)


# -- round trips ---------------------------------------------------------------------

@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_and_quote_binding(fmt: str, claims: dict[str, Any], key: SigningKey,
                                      trust: Trusts, record: RunRecord, nonce: bytes) -> None:
    evidence = encode(claims, key, fmt)
    decoded = decode_evidence(evidence)
    assert decoded.format == fmt and decoded.alg == "ES256"
    assert decoded.claims == claims  # normalised to the JWT form in both formats
    assert decoded.record == record and decoded.nonce == nonce
    assert decoded.key_thumbprint == key.kid
    assert decoded.key_thumbprint_bytes == thumbprint_bytes(key.jwk)
    assert decoded.expected_report_data == eat.report_data(nonce, record.digest(),
                                                            thumbprint_bytes(key.jwk))
    assert decoded.output_matches(OUTPUT)
    verified = verify_evidence(evidence, trust)
    assert verified.quote.simulated and not verified.quote.hardware and verified.quote.chain_ok
    assert verified.quote.measurements == measurements_for(record)


@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA", "PS384"])
@pytest.mark.parametrize("fmt", FORMATS)
def test_every_signing_algorithm(alg: str, fmt: str, record: RunRecord, nonce: bytes,
                                 provider: SimulatedProvider, trust: Trusts) -> None:
    k = SigningKey.generate(alg)
    evidence = encode(make_claims(record, nonce, k, provider), k, fmt)
    verified = verify_evidence(evidence, trust, fmt)
    assert verified.evidence.alg == alg
    assert verified.evidence.jwk["kid"] == k.kid


def test_cwt_as_base64url_text_and_cwt_tag(claims: dict[str, Any], key: SigningKey) -> None:
    cwt = encode_cwt(claims, key)
    assert decode_evidence(b64url_encode(cwt), "cwt").claims == claims
    wrapped = cbor2.dumps(cbor2.CBORTag(61, cbor2.loads(cwt)), canonical=True)
    assert decode_evidence(wrapped).claims == claims


def test_cwt_layout(claims: dict[str, Any], key: SigningKey, nonce: bytes) -> None:
    msg = cbor2.loads(encode_cwt(claims, key))
    assert isinstance(msg, cbor2.CBORTag) and msg.tag == COSE_SIGN1_TAG
    protected, unprotected, payload, signature = msg.value
    assert cbor2.loads(protected) == {1: -7, 4: thumbprint_bytes(key.jwk)}
    assert unprotected == {} and len(signature) == 64
    body = cbor2.loads(payload)
    assert body[10] == nonce and body[265] == eat.PROFILE and isinstance(body[6], int)
    assert body[8] == {1: jwk_to_cose_key(key.jwk)}
    assert body[eat.RECORD_DIGEST] == claims[eat.RECORD_DIGEST]
    assert cbor_dumps(body) == payload  # deterministic CBOR


def test_cose_key_conversion_round_trips() -> None:
    for alg in ("ES256", "ES384", "EdDSA", "PS384"):
        k = SigningKey.generate(alg)
        assert cose_key_to_jwk(jwk_to_cose_key(k.jwk)) == k.jwk
    ck = jwk_to_cose_key(SigningKey.generate("ES256").jwk)
    with pytest.raises(EvidenceError, match="private or unknown"):
        cose_key_to_jwk({**ck, -4: b"\x01" * 32})


# -- independent implementations -----------------------------------------------------

@pytest.mark.parametrize("alg", ["ES256", "ES384"])
def test_jwt_verifies_with_python_jose(alg: str, record: RunRecord, nonce: bytes,
                                       provider: SimulatedProvider) -> None:
    from jose import jws
    from jose import jwt as jose_jwt

    k = SigningKey.generate(alg)
    token = encode_jwt(make_claims(record, nonce, k, provider), k)
    claims = jose_jwt.decode(token, k.jwk, algorithms=[alg])
    assert claims[eat.EAT_NONCE] == b64url_encode(nonce)
    assert claims[eat.CNF]["jwk"]["kid"] == k.kid
    assert jws.get_unverified_header(token) == {"alg": alg, "kid": k.kid, "typ": "eat+jwt"}
    other = SigningKey.generate(alg)
    with pytest.raises(Exception):  # noqa: B017 - jose's own error types
        jose_jwt.decode(token, other.jwk, algorithms=[alg])


@pytest.mark.parametrize("alg", ["ES256", "EdDSA", "PS384"])
def test_jwt_verifies_with_jwcrypto(alg: str, record: RunRecord, nonce: bytes,
                                    provider: SimulatedProvider) -> None:
    """python-jose has no PS384 or EdDSA: jwcrypto checks those."""
    import json

    from jwcrypto import jwk as jc_jwk
    from jwcrypto import jws as jc_jws

    k = SigningKey.generate(alg)
    token = encode_jwt(make_claims(record, nonce, k, provider), k)
    obj = jc_jws.JWS()
    obj.deserialize(token)
    obj.verify(jc_jwk.JWK(**k.jwk), alg=alg)
    assert json.loads(obj.payload)[eat.EAT_NONCE] == b64url_encode(nonce)
    with pytest.raises(jc_jws.InvalidJWSSignature):
        obj.verify(jc_jwk.JWK(**SigningKey.generate(alg).jwk), alg=alg)


def _pycose_key(jwk: dict[str, Any]) -> Any:
    from pycose.keys.ec2 import EC2Key
    from pycose.keys.okp import OKPKey

    if jwk["kty"] == "EC":
        crv = {"P-256": "P_256", "P-384": "P_384"}[jwk["crv"]]
        return EC2Key(crv=crv, x=b64url_decode(jwk["x"]), y=b64url_decode(jwk["y"]))
    return OKPKey(crv="ED25519", x=b64url_decode(jwk["x"]))


@pytest.mark.parametrize("alg", ["ES256", "ES384", "EdDSA"])
def test_cwt_verifies_with_pycose(alg: str, record: RunRecord, nonce: bytes,
                                  provider: SimulatedProvider) -> None:
    from pycose.messages.sign1message import Sign1Message

    k = SigningKey.generate(alg)
    cwt = encode_cwt(make_claims(record, nonce, k, provider), k)
    msg = Sign1Message.decode(cwt)
    msg.key = _pycose_key(k.jwk)
    assert msg.verify_signature()
    assert msg.payload is not None and cbor2.loads(msg.payload)[10] == nonce
    msg.key = _pycose_key(SigningKey.generate(alg).jwk)
    assert not msg.verify_signature()


def test_pycose_signed_cwt_is_read(claims: dict[str, Any], key: SigningKey) -> None:
    """A COSE_Sign1 produced by pycose over our claims verifies with decode_evidence."""
    from pycose.algorithms import Es256
    from pycose.headers import KID, Algorithm
    from pycose.keys.ec2 import EC2Key
    from pycose.messages.sign1message import Sign1Message

    ours = cbor2.loads(encode_cwt(claims, key)).value
    assert isinstance(key.private, ec.EllipticCurvePrivateKey)
    priv = key.private.private_numbers()
    cose_key = EC2Key(crv="P_256", d=priv.private_value.to_bytes(32, "big"),
                      x=b64url_decode(key.jwk["x"]), y=b64url_decode(key.jwk["y"]))
    msg = Sign1Message(phdr={Algorithm: Es256, KID: thumbprint_bytes(key.jwk)},
                       payload=ours[2], key=cose_key)
    data = msg.encode()
    assert decode_evidence(data, "cwt").claims == claims


# -- tampering: output, record, nonce, quote -----------------------------------------

def _flip(data: bytes, i: int) -> bytes:
    return data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:]


def test_changed_output_byte_does_not_match(claims: dict[str, Any], key: SigningKey) -> None:
    decoded = decode_evidence(encode_jwt(claims, key))
    assert decoded.output_matches(OUTPUT)
    for i in range(len(OUTPUT)):
        assert not decoded.output_matches(_flip(OUTPUT, i))
    assert not decoded.output_matches(OUTPUT + b"\n")


def test_any_flipped_cwt_byte_is_refused(claims: dict[str, Any], key: SigningKey) -> None:
    cwt = encode_cwt(claims, key)
    for i in range(0, len(cwt), 3):
        with pytest.raises(BytereplayError):
            decode_evidence(_flip(cwt, i), "cwt")


def test_any_changed_jwt_character_is_refused(claims: dict[str, Any], key: SigningKey) -> None:
    token = encode_jwt(claims, key)
    for i in [*range(0, len(token), 5), len(token) - 1]:
        c = token[i]
        repl = "." if c == "A" else ("B" if c == "." else "A")
        with pytest.raises(BytereplayError):
            decode_evidence(token[:i] + repl + token[i + 1:], "jwt")


@pytest.mark.parametrize("fmt", FORMATS)
def test_changed_record_is_refused(fmt: str, claims: dict[str, Any], key: SigningKey,
                                   trust: Trusts) -> None:
    record = dict(claims[eat.RECORD])
    record["seed"] = record["seed"] + 1
    # Re-signed with the attester's own key, the record no longer matches its digest ...
    with pytest.raises(EvidenceError, match="record_digest"):
        decode_evidence(encode({**claims, eat.RECORD: record}, key, fmt))
    # ... and with a fixed-up digest (and request) the quote binding breaks.
    fixed = {**claims, eat.RECORD: record,
             eat.RECORD_DIGEST: RunRecord.from_dict(record).digest(),
             eat.REQUEST: {**claims[eat.REQUEST],
                           "decode": {**claims[eat.REQUEST]["decode"], "seed": record["seed"]}}}
    with pytest.raises(QuoteError, match="report data"):
        verify_evidence(encode(fixed, key, fmt), trust)


@pytest.mark.parametrize("fmt", FORMATS)
def test_changed_nonce_breaks_binding(fmt: str, claims: dict[str, Any], key: SigningKey,
                                      trust: Trusts, nonce: bytes) -> None:
    other = b64url_encode(_flip(nonce, 0))
    with pytest.raises(QuoteError, match="not bound"):
        verify_evidence(encode({**claims, eat.EAT_NONCE: other}, key, fmt), trust)


@pytest.mark.parametrize("fmt", FORMATS)
def test_changed_quote_is_refused(fmt: str, claims: dict[str, Any], key: SigningKey,
                                  trust: Trusts) -> None:
    quote = claims[eat.QUOTE]
    measured = {**quote, "measurements": {**quote["measurements"], "runtime": "evil/1.0"}}
    with pytest.raises(QuoteError, match="signature"):
        verify_evidence(encode({**claims, eat.QUOTE: measured}, key, fmt), trust)
    rd = b64url_decode(quote["report_data"])
    moved = {**quote, "report_data": b64url_encode(_flip(rd, 63))}
    with pytest.raises(QuoteError, match="signature"):
        verify_evidence(encode({**claims, eat.QUOTE: moved}, key, fmt), trust)
    stamp = {**quote, "timestamp": "2000-01-01T00:00:00Z"}
    with pytest.raises(QuoteError, match="signature"):
        verify_evidence(encode({**claims, eat.QUOTE: stamp}, key, fmt), trust)


@pytest.mark.parametrize("fmt", FORMATS)
def test_other_key_cannot_reuse_the_quote(fmt: str, claims: dict[str, Any],
                                          trust: Trusts) -> None:
    """An attacker re-signing the Evidence with its own key: the quote binds the real one."""
    thief = SigningKey.generate("ES256")
    stolen = {**claims, eat.CNF: {"jwk": thief.jwk}}
    decode_evidence(encode(stolen, thief, fmt))  # the signature itself is fine ...
    with pytest.raises(QuoteError, match="not bound"):
        verify_evidence(encode(stolen, thief, fmt), trust)  # ... the binding is not


@pytest.mark.parametrize("fmt", FORMATS)
def test_evidence_by_another_key_than_cnf_is_refused(fmt: str, claims: dict[str, Any]) -> None:
    thief = SigningKey.generate("ES256")
    with pytest.raises(SignatureError, match="thumbprint"):
        decode_evidence(encode(claims, thief, fmt))


@pytest.mark.parametrize("fmt", FORMATS)
def test_inconsistent_claims_are_refused(fmt: str, claims: dict[str, Any], key: SigningKey) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({eat.OUTPUT_HASH: sha256_tag(b"other")}, "output_hash"),
        ({eat.MEASUREMENTS: {**claims[eat.MEASUREMENTS], "runtime": "x"}}, "measurements"),
        ({eat.REQUEST: {**claims[eat.REQUEST], "input": "other"}}, "input_hash"),
        ({eat.REQUEST: {**claims[eat.REQUEST], "template": "{input}!"}}, "prompt_template_hash"),
        ({eat.EAT_PROFILE: "tag:example.org,2026:other"}, "eat_profile"),
        ({eat.QUOTE: {"provider": "simulated"}}, "bytereplay.quote"),
        ({"extra": 1}, "unknown claims"),
    ]
    for change, message in cases:
        with pytest.raises(EvidenceError, match=message):
            decode_evidence(encode({**claims, **change}, key, fmt))
    without = {k: v for k, v in claims.items() if k != eat.QUOTE}
    with pytest.raises(EvidenceError, match=r"lacks claims: bytereplay\.quote"):
        decode_evidence(encode(without, key, fmt))


# -- nonces -----------------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 7, 65, 128])
def test_nonce_outside_8_to_64_bytes_is_refused(size: int, record: RunRecord, key: SigningKey,
                                                 provider: SimulatedProvider,
                                                 claims: dict[str, Any]) -> None:
    bad = os.urandom(size)
    with pytest.raises(NonceError, match=r"8\.\.64"):
        build_claims(record=record, nonce=bad, key=key, quote=claims[eat.QUOTE],
                     request=claims[eat.REQUEST])
    with pytest.raises(NonceError, match=r"8\.\.64"):
        eat.decode_nonce(b64url_encode(bad))
    for fmt in FORMATS:
        with pytest.raises(EvidenceError, match=r"8\.\.64"):
            decode_evidence(encode({**claims, eat.EAT_NONCE: b64url_encode(bad)}, key, fmt))


@pytest.mark.parametrize("size", [8, 64])
def test_nonce_bounds_are_accepted(size: int, record: RunRecord, key: SigningKey,
                                   provider: SimulatedProvider, trust: Trusts) -> None:
    n = os.urandom(size)
    for fmt in FORMATS:
        verified = verify_evidence(encode(make_claims(record, n, key, provider), key, fmt), trust)
        assert verified.evidence.nonce == n


# -- JWT refusals ---------------------------------------------------------------------

def _jwt(header: dict[str, Any], claims: dict[str, Any], sig: bytes = b"") -> str:
    import json

    def part(obj: Any) -> str:
        return b64url_encode(json.dumps(obj).encode())

    return f"{part(header)}.{part(claims)}.{b64url_encode(sig)}"


def test_jwt_refusals(claims: dict[str, Any], key: SigningKey) -> None:
    good = encode_jwt(claims, key)
    header = {"alg": "ES256", "kid": key.kid, "typ": "eat+jwt"}
    with pytest.raises(SignatureError, match="refused"):
        decode_evidence(_jwt({**header, "alg": "none"}, claims))
    mac = hmac.HMAC(b"k" * 32, hashes.SHA256())
    with pytest.raises(SignatureError, match="refused"):
        decode_evidence(_jwt({**header, "alg": "HS256"}, claims, mac.finalize()))
    for name in ("jwk", "jku", "x5u", "x5c", "crit"):
        with pytest.raises(SignatureError, match=name):
            decode_evidence(_jwt({**header, name: "x"}, claims, b"s" * 64))
    with pytest.raises(EvidenceError, match="typ"):
        decode_evidence(encode_jwt(claims, key).replace(good.split(".")[0], _jwt(
            {**header, "typ": "JWT"}, {}).split(".")[0]))
    with pytest.raises(EncodingError, match="duplicate"):
        h, p, s = good.split(".")
        payload = b64url_decode(p)
        dup = b'{"iat":1,' + payload[1:]
        decode_evidence(f"{h}.{b64url_encode(dup)}.{s}")
    with pytest.raises(TooLargeError):
        decode_evidence("a" * (600 * 1024))
    with pytest.raises(EvidenceError, match="empty"):
        decode_evidence(b"")


# -- COSE refusals --------------------------------------------------------------------

def _cose(key: SigningKey, protected: dict[int, Any], payload: bytes,
          unprotected: dict[int, Any] | None = None, tag: int | None = COSE_SIGN1_TAG) -> bytes:
    p = cbor_dumps(protected)
    sig = cose.sign(key, cose.sig_structure(p, payload))
    msg: Any = [p, unprotected or {}, payload, sig]
    return cbor_dumps(cbor2.CBORTag(tag, msg) if tag is not None else msg)


def test_cose_refusals(claims: dict[str, Any], key: SigningKey) -> None:
    payload = cbor2.loads(encode_cwt(claims, key)).value[2]
    kid = thumbprint_bytes(key.jwk)
    ok = {1: -7, 4: kid}
    assert decode_evidence(_cose(key, ok, payload)).claims == claims
    cases: list[tuple[bytes, type[BytereplayError], str]] = [
        (_cose(key, {**ok, 2: [1]}, payload), SignatureError, "crit"),
        (_cose(key, {**ok, 33: b"cert"}, payload), SignatureError, "x5chain"),
        (_cose(key, {**ok, 35: "https://x"}, payload), SignatureError, "x5u"),
        (_cose(key, {**ok, 1: 5}, payload), SignatureError, "HMAC"),
        (_cose(key, {**ok, 1: -999}, payload), SignatureError, "not allowed"),
        (_cose(key, {1: -7}, payload), SignatureError, "kid"),
        (_cose(key, {**ok, 4: b"\x00" * 32}, payload), SignatureError, "thumbprint"),
        (_cose(key, ok, payload, unprotected={4: kid}), SignatureError, "unprotected"),
        (_cose(key, ok, payload, tag=None), EvidenceError, "tag 18"),
        (_cose(key, ok, payload, tag=98), EvidenceError, "tag 18"),
        (_cose(key, {**ok, 1: -35}, payload), SignatureError, "does not fit"),
    ]
    for data, err, message in cases:
        with pytest.raises(err, match=message):
            decode_evidence(data, "cwt")


def test_cose_structure_refusals(claims: dict[str, Any], key: SigningKey) -> None:
    cwt = encode_cwt(claims, key)
    protected, _, payload, sig = cbor2.loads(cwt).value
    kid = thumbprint_bytes(key.jwk)
    # Indefinite-length array (0x9f ... 0xff) instead of 0x84.
    body = cwt[1:]
    assert body[0] == 0x84
    with pytest.raises(EncodingError, match="deterministic"):
        decode_evidence(b"\xd2\x9f" + body[1:] + b"\xff", "cwt")
    # Detached payload.
    with pytest.raises(EvidenceError, match="attached"):
        decode_evidence(cbor_dumps(cbor2.CBORTag(18, [protected, {}, None, sig])), "cwt")
    # A tag inside the payload (on iat).
    raw = cbor2.loads(payload)
    for tag, message in ((1, "datetime"), (4242, "tag 4242")):
        tagged = cbor2.dumps({**raw, 6: cbor2.CBORTag(tag, raw[6])}, canonical=True)
        with pytest.raises(EncodingError, match=message):
            decode_evidence(_cose(key, {1: -7, 4: kid}, tagged), "cwt")
    # A registered claim under its text name.
    text_iat = cbor_dumps({**{k: v for k, v in raw.items() if k != 6}, "iat": raw[6]})
    with pytest.raises(EvidenceError, match="integer label"):
        decode_evidence(_cose(key, {1: -7, 4: kid}, text_iat), "cwt")
    # Duplicate map key in the payload: hand-built bytes.
    dup = bytearray(payload)
    assert dup[0] & 0xE0 == 0xA0 and dup[0] & 0x1F < 24
    dup[0] += 1
    dup += cbor2.dumps(6) + cbor2.dumps(raw[6])
    with pytest.raises(EncodingError):
        decode_evidence(_cose(key, {1: -7, 4: kid}, bytes(dup)), "cwt")
    # Nonce as text in a CWT.
    with pytest.raises(EvidenceError, match="byte string"):
        decode_evidence(_cose(key, {1: -7, 4: kid},
                              cbor_dumps({**raw, 10: b64url_encode(raw[10])})), "cwt")
    # Signature of the wrong length.
    with pytest.raises(SignatureError, match="r\\|\\|s"):
        decode_evidence(cbor_dumps(cbor2.CBORTag(18, [protected, {}, payload, sig[:-1]])), "cwt")
    # Junk.
    with pytest.raises(EncodingError):
        decode_evidence(b"\xd2\x84\x41", "cwt")
    with pytest.raises(EncodingError, match="base64url"):
        decode_evidence(base64.b64encode(cwt).decode() + "==", "cwt")


def test_unknown_format_is_refused(claims: dict[str, Any], key: SigningKey) -> None:
    with pytest.raises(EvidenceError, match="format"):
        decode_evidence(encode_jwt(claims, key), "xml")
    with pytest.raises(EvidenceError, match="format"):
        encode(claims, key, "xml")


def test_quote_binding_is_checked_by_verify_quote(claims: dict[str, Any], key: SigningKey,
                                                  trust: Trusts) -> None:
    decoded = decode_evidence(encode_jwt(claims, key))
    result = verify(decoded.quote, trust, decoded.expected_report_data)
    assert result.report_data == decoded.expected_report_data
    with pytest.raises(QuoteError, match="not bound"):
        verify(decoded.quote, trust, bytes(64))


@pytest.mark.parametrize("fmt", FORMATS)
def test_optional_external_tokens_claim(fmt: str, record: RunRecord, nonce: bytes,
                                        key: SigningKey, claims: dict[str, Any]) -> None:
    with_tokens = build_claims(record=record, nonce=nonce, key=key, quote=claims[eat.QUOTE],
                               request=claims[eat.REQUEST], external_tokens=["a.b.c"])
    decoded = decode_evidence(encode(with_tokens, key, fmt))
    assert decoded.claims[EXTERNAL_TOKENS] == ["a.b.c"]
    assert EXTERNAL_TOKENS not in decode_evidence(encode(claims, key, fmt)).claims
