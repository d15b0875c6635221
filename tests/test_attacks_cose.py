"""COSE/CWT (and JWT) Evidence attack catalogue against `bytereplay.evidence.decode_evidence`,
the quote check (`quote_helpers.verify_evidence`) and the verifier pipeline.

Each attack is a hand-made message (see fuzz/kit.py: an independent COSE_Sign1 writer)
that must be refused with a typed error naming the reason. A positive control shows the
same construction, unattacked, is accepted; so each refusal is the attack's doing.
Through the verifier, every attack yields a negative EAR (never an exception) and leaves
the nonce unspent.
"""

from __future__ import annotations

import base64
import datetime as dt
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import kit
from quote_helpers import Trusts, sim_trusts, verify_evidence

from bytereplay import eat
from bytereplay.encoding import b64url_encode, cbor_dumps
from bytereplay.errors import (
    BytereplayError,
    EncodingError,
    EvidenceError,
    QuoteError,
    SignatureError,
)
from bytereplay.evidence import decode_evidence
from bytereplay.home import Home
from bytereplay.keys import SigningKey, thumbprint_bytes
from verifier.tee.simulated import load_ca_pem

NONCE = bytes(range(32))
ATTACKER = SigningKey.generate("ES256")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Home:
    return Home.resolve(tmp_path_factory.mktemp("cose-home"))


@pytest.fixture(scope="module")
def ek(home: Home) -> kit.EvidenceKit:
    return kit.EvidenceKit(home)


@pytest.fixture(scope="module")
def trust(home: Home, ek: kit.EvidenceKit) -> Trusts:
    pem = load_ca_pem(home.simulated_ca)
    assert pem is not None
    return sim_trusts(pem)


def _tag(value: Any, tag: int = 18) -> bytes:
    return bytes(cbor2.dumps(cbor2.CBORTag(tag, value), canonical=True))


def _x5chain(key: SigningKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.private.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key.private, hashes.SHA256()))
    return bytes(cert.public_bytes(serialization.Encoding.DER))


@dataclass(frozen=True)
class Attack:
    name: str
    build: Callable[[kit.EvidenceKit], bytes | str]
    error: type[BytereplayError] | tuple[type[BytereplayError], ...]
    fragment: str


def _n(ek: kit.EvidenceKit) -> bytes:
    """The nonce attacks bind: NONCE, or the one a pipeline test set on the kit."""
    return getattr(ek, "attack_nonce", NONCE)


def _prot(ek: kit.EvidenceKit, **extra: Any) -> dict[Any, Any]:
    out: dict[Any, Any] = {1: -7, 4: thumbprint_bytes(ek.key.jwk)}
    for k, v in extra.items():
        label = int(k.removeprefix("l").replace("m", "-"))
        if v is None:
            out.pop(label, None)
        else:
            out[label] = v
    return out


def _cwt(ek: kit.EvidenceKit, **kw: Any) -> bytes:
    return kit.evidence_cwt(ek.claims(_n(ek)), ek.key, **kw)


def _payload(ek: kit.EvidenceKit) -> bytes:
    return cbor_dumps(kit.claims_to_cbor(ek.claims(_n(ek))))


def _signed_raw(ek: kit.EvidenceKit, protected: bytes, payload: bytes, *,
                unprotected: bytes = b"\xa0", tag: bytes = b"\xd2") -> bytes:
    """A COSE_Sign1 assembled byte by byte (to carry encodings cbor2 will not write)."""
    sig = kit.raw_sign(ek.key, kit.sig_structure(protected, payload))

    def bstr(b: bytes) -> bytes:
        return cbor2.dumps(b)

    return tag + b"\x84" + bstr(protected) + unprotected + bstr(payload) + bstr(sig)


def _swap(ek: kit.EvidenceKit) -> bytes:
    a = cbor2.loads(_cwt(ek)).value
    other = ek.claims(bytes(range(1, 33)))
    b = cbor2.loads(kit.evidence_cwt(other, ek.key)).value
    return _tag([a[0], a[1], b[2], a[3]])


def _hmac(alg_id: int) -> Callable[[kit.EvidenceKit], bytes]:
    def build(ek: kit.EvidenceKit) -> bytes:
        protected = cbor_dumps({1: alg_id, 4: thumbprint_bytes(ek.key.jwk)})
        payload = _payload(ek)
        mac = kit.raw_sign(kit.public_pem(ek.key), kit.sig_structure(protected, payload))
        return _tag([protected, {}, payload, mac])
    return build


def _indefinite_payload(ek: kit.EvidenceKit) -> bytes:
    claims = kit.claims_to_cbor(ek.claims(_n(ek)))
    enc = cbor_dumps(claims)
    # Same map, indefinite-length form: 0xbf <pairs> 0xff.
    head = enc[0]
    assert head & 0xE0 == 0xA0
    skip = 1 if head & 0x1F < 24 else 1 + (1 << ((head & 0x1F) - 24))
    return _signed_raw(ek, cbor_dumps({1: -7, 4: thumbprint_bytes(ek.key.jwk)}),
                       b"\xbf" + enc[skip:] + b"\xff")


def _dup_protected(ek: kit.EvidenceKit) -> bytes:
    kid = cbor2.dumps(thumbprint_bytes(ek.key.jwk))
    protected = b"\xa3\x01\x26\x01\x38\x22\x04" + kid  # {1: -7, 1: -35, 4: kid}
    return _signed_raw(ek, protected, _payload(ek))


def _dup_claim(ek: kit.EvidenceKit) -> bytes:
    payload = _payload(ek)
    n = payload[0] & 0x1F
    assert payload[0] & 0xE0 == 0xA0 and n < 23
    # One more pair: label 6 (iat) again, after the others.
    return _signed_raw(ek, cbor_dumps({1: -7, 4: thumbprint_bytes(ek.key.jwk)}),
                       bytes([0xA0 | (n + 1)]) + payload[1:] + b"\x06\x00")


def _nonshortest_alg(ek: kit.EvidenceKit) -> bytes:
    kid = cbor2.dumps(thumbprint_bytes(ek.key.jwk))
    protected = b"\xa2\x01\x38\x06\x04" + kid  # -7 written in two bytes
    return _signed_raw(ek, protected, _payload(ek))


ATTACKS: list[Attack] = [
    # algorithms
    Attack("alg-missing", lambda ek: _cwt(ek, protected=_prot(ek, l1=None)), SignatureError,
           "not allowed"),
    Attack("alg-zero-reserved", lambda ek: _cwt(ek, protected=_prot(ek, l1=0)), SignatureError,
           "not allowed"),
    Attack("alg-unknown-id", lambda ek: _cwt(ek, protected=_prot(ek, l1=-65535)),
           SignatureError, "not allowed"),
    Attack("alg-as-text-none", lambda ek: _cwt(ek, protected=_prot(ek, l1="none")),
           SignatureError, "not allowed"),
    Attack("alg-as-text-ES256", lambda ek: _cwt(ek, protected=_prot(ek, l1="ES256")),
           SignatureError, "not allowed"),
    Attack("alg-ES512", lambda ek: _cwt(ek, protected=_prot(ek, l1=-36)), SignatureError,
           "not allowed"),
    Attack("alg-RS256", lambda ek: _cwt(ek, protected=_prot(ek, l1=-257)), SignatureError,
           "not allowed"),
    *[Attack(f"hmac-alg-{i}-public-key-as-secret", _hmac(i), SignatureError,
             "HMAC algorithms are refused") for i in (4, 5, 6, 7)],
    Attack("alg-ES384-on-P256-cnf-key", lambda ek: _cwt(ek, protected=_prot(ek, l1=-35)),
           SignatureError, "does not fit"),
    Attack("alg-EdDSA-on-EC-cnf-key", lambda ek: _cwt(ek, protected=_prot(ek, l1=-8)),
           SignatureError, "does not fit"),
    # headers that would extend or re-key the message
    Attack("crit", lambda ek: _cwt(ek, protected=_prot(ek, l2=[1])), SignatureError,
           "'crit' is refused"),
    Attack("x5chain-attacker-cert", lambda ek: _cwt(ek, protected=_prot(ek, l33=_x5chain(
        ATTACKER))), SignatureError, "'x5chain' is not trusted"),
    Attack("x5bag", lambda ek: _cwt(ek, protected=_prot(ek, l32=[_x5chain(ATTACKER)])),
           SignatureError, "'x5bag' is not trusted"),
    Attack("x5t", lambda ek: _cwt(ek, protected=_prot(ek, l34=[-16, b"\x00" * 32])),
           SignatureError, "'x5t' is not trusted"),
    Attack("x5u", lambda ek: _cwt(ek, protected=_prot(ek, l35="http://127.0.0.1:1/x")),
           SignatureError, "'x5u' is not trusted"),
    Attack("unknown-header-label", lambda ek: _cwt(ek, protected=_prot(ek, l99=1)),
           SignatureError, "not allowed"),
    Attack("cose-key-in-header", lambda ek: _cwt(ek, protected=_prot(
        ek, lm1=kit.jwk_to_cose_key(ATTACKER.jwk))), SignatureError, "not allowed"),
    Attack("kid-missing", lambda ek: _cwt(ek, protected=_prot(ek, l4=None)), SignatureError,
           "lacks kid"),
    Attack("kid-as-text", lambda ek: _cwt(ek, protected=_prot(ek, l4=ek.key.kid)),
           SignatureError, "lacks kid"),
    Attack("kid-of-attacker-key", lambda ek: _cwt(ek, protected=_prot(
        ek, l4=thumbprint_bytes(ATTACKER.jwk))), SignatureError, "not the RFC 7638 thumbprint"),
    Attack("typ-wrong", lambda ek: _cwt(ek, protected=_prot(ek, l16="application/ear+cwt")),
           EvidenceError, "typ"),
    # the unprotected header carries nothing
    Attack("unprotected-alg", lambda ek: _cwt(ek, protected=_prot(ek, l1=None),
                                              unprotected={1: -7}), SignatureError, "not allowed"),
    Attack("unprotected-alg-beside-protected", lambda ek: _cwt(ek, unprotected={1: -7}),
           SignatureError, "unprotected header parameters are refused"),
    Attack("unprotected-kid", lambda ek: _cwt(ek, unprotected={4: thumbprint_bytes(
        ATTACKER.jwk)}), SignatureError, "unprotected header parameters are refused"),
    Attack("unprotected-x5chain", lambda ek: _cwt(ek, unprotected={33: _x5chain(ATTACKER)}),
           SignatureError, "unprotected header parameters are refused"),
    Attack("unprotected-not-a-map", lambda ek: _cwt(ek, unprotected=[]), EvidenceError,
           "unprotected header is a map"),
    # CBOR encoding games
    Attack("indefinite-outer-array", lambda ek: b"\xd2\x9f" + cbor2.dumps(
        cbor2.loads(_cwt(ek)).value, canonical=True)[1:] + b"\xff", EncodingError,
        "deterministic"),
    Attack("indefinite-payload-map", _indefinite_payload, EncodingError, "deterministic"),
    Attack("indefinite-unprotected-map", lambda ek: _signed_raw(
        ek, cbor_dumps(_prot(ek)), _payload(ek), unprotected=b"\xbf\xff"), EncodingError,
        "deterministic"),
    Attack("duplicate-protected-label", _dup_protected, EncodingError, "deterministic"),
    Attack("duplicate-claim-label", _dup_claim, EncodingError, "deterministic"),
    Attack("non-shortest-integer", _nonshortest_alg, EncodingError, "deterministic"),
    Attack("trailing-bytes-after-message", lambda ek: _cwt(ek) + b"\x00", EncodingError,
           "deterministic"),
    Attack("trailing-bytes-in-payload", lambda ek: _signed_raw(
        ek, cbor_dumps(_prot(ek)), _payload(ek) + b"\xf6"), EncodingError, "deterministic"),
    Attack("trailing-bytes-in-protected", lambda ek: _signed_raw(
        ek, cbor_dumps(_prot(ek)) + b"\x00", _payload(ek)), EncodingError, "deterministic"),
    Attack("empty-protected", lambda ek: _signed_raw(ek, b"", _payload(ek)), EvidenceError,
           "non-empty"),
    # tags where none belong
    Attack("untagged", lambda ek: _cwt(ek, tag=None), EvidenceError, "tag 18"),
    Attack("tag-98-cose-sign", lambda ek: _cwt(ek, tag=98), EvidenceError, "tag 18"),
    Attack("tag-17-cose-mac0", lambda ek: _cwt(ek, tag=17), EvidenceError, "tag 18"),
    Attack("double-tag-18", lambda ek: _tag(cbor2.loads(_cwt(ek))), EvidenceError,
           "four items"),
    Attack("tagged-protected-bstr", lambda ek: _tag([cbor2.CBORTag(24, cbor_dumps(_prot(ek))),
                                                     {}, _payload(ek), b"\x00" * 64]),
           EncodingError, "unexpected CBOR tag"),
    Attack("tag-in-unprotected", lambda ek: _cwt(ek, unprotected={4: cbor2.CBORTag(
        99, 0)}), EncodingError, "unexpected CBOR tag"),
    Attack("date-tag-in-unprotected", lambda ek: _cwt(ek, unprotected={4: cbor2.CBORTag(
        1, 0)}), EncodingError, "not allowed"),
    Attack("tag-in-payload-claim", lambda ek: kit.cose_sign1(
        _prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))), 6: cbor2.CBORTag(1, 1)}, ek.key),
        EncodingError, "not allowed"),
    Attack("unknown-tag-in-payload-claim", lambda ek: kit.cose_sign1(
        _prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))), 6: cbor2.CBORTag(99, 1)}, ek.key),
        EncodingError, "tag 99 not allowed"),
    Attack("bignum-iat", lambda ek: kit.cose_sign1(
        _prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))), 6: 2**64}, ek.key),
        SignatureError, "iat"),
    Attack("tag-in-protected", lambda ek: _cwt(ek, protected=cbor2.dumps(
        {1: -7, 4: cbor2.CBORTag(24, thumbprint_bytes(ek.key.jwk))}, canonical=True)),
        EncodingError, "tag 24 not allowed"),
    # shape
    Attack("three-items", lambda ek: _tag(cbor2.loads(_cwt(ek)).value[:3]), EvidenceError,
           "four items"),
    Attack("detached-payload", lambda ek: _tag([cbor_dumps(_prot(ek)), {}, None, b"\x00" * 64]),
           EvidenceError, "attached"),
    Attack("signature-not-bytes", lambda ek: _cwt(ek, signature=b"")[:-1] + b"\x60",
           EvidenceError, "signature is a byte string"),
    Attack("signature-der-not-raw", lambda ek: _cwt(ek, signature=b"\x30" + b"\x00" * 70),
           SignatureError, "r||s"),
    # the signature
    Attack("payload-swap", _swap, SignatureError, "does not verify"),
    Attack("signature-flip", lambda ek: _cwt(ek, signature=bytes(64)), SignatureError,
           "does not verify"),
    Attack("signed-by-other-key-cnf-kid", lambda ek: kit.cose_sign1(
        _prot(ek), _payload(ek), ATTACKER), SignatureError, "does not verify"),
    Attack("signed-by-other-key-own-kid", lambda ek: kit.cose_sign1(
        _prot(ek, l4=thumbprint_bytes(ATTACKER.jwk)), _payload(ek), ATTACKER),
        SignatureError, "not the RFC 7638 thumbprint"),
    # claims
    Attack("claim-by-name-not-label", lambda ek: kit.cose_sign1(
        _prot(ek), {("eat_nonce" if k == 10 else k): v
                    for k, v in kit.claims_to_cbor(ek.claims(_n(ek))).items()}, ek.key),
        EvidenceError, "integer label"),
    Attack("cnf-private-key", lambda ek: kit.cose_sign1(
        _prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))), 8: {1: {
            **kit.jwk_to_cose_key(ek.key.jwk), -4: b"\x01" * 32}}}, ek.key),
        EvidenceError, "private"),
    Attack("cnf-symmetric-key", lambda ek: kit.cose_sign1(
        _prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))), 8: {1: {1: 4, -1: b"k" * 32}}},
        ek.key), EvidenceError, "unsupported COSE key type"),
    Attack("nonce-as-text", lambda ek: kit.cose_sign1(
        _prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))), 10: b64url_encode(NONCE)}, ek.key),
        EvidenceError, "byte string"),
    Attack("bytes-inside-record", lambda ek: kit.cose_sign1(
        _prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))), "bytereplay.output_hash": b"x"},
        ek.key), EvidenceError, "byte strings are not allowed"),
]


@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
@pytest.mark.parametrize("via", ["cwt", "auto", "text"])
def test_cose_attack_is_refused(ek: kit.EvidenceKit, attack: Attack, via: str) -> None:
    data = attack.build(ek)
    assert isinstance(data, bytes)
    if via == "text":  # CWT Evidence sent as unpadded base64url text (the JSON envelope)
        args: tuple[Any, ...] = (b64url_encode(data), "cwt")
    else:
        args = (data, "cwt" if via == "cwt" else None)
        if via == "auto" and not data.startswith((b"\xd2", b"\xd8\x3d")):
            args = (data, "cwt")  # not tag 18/61: auto-detection reads it as a JWT
    with pytest.raises(attack.error) as info:
        decode_evidence(*args)
    assert attack.fragment.lower() in info.value.detail.lower(), info.value.detail
    assert info.value.status < 500


def test_positive_control_hand_made_cwt_is_accepted(ek: kit.EvidenceKit,
                                                    trust: Trusts) -> None:
    data = _cwt(ek)
    decoded = decode_evidence(data)
    assert decoded.format == "cwt" and decoded.nonce == NONCE
    assert verify_evidence(data, trust).evidence.key_thumbprint == ek.key.kid
    assert decode_evidence(b64url_encode(data), "cwt").nonce == NONCE
    # the CWT tag (61) around COSE_Sign1 is allowed
    assert decode_evidence(_tag(cbor2.loads(data), 61)).nonce == NONCE
    # and the kit's claims also make valid JWT Evidence
    assert decode_evidence(ek.make(NONCE)).format == "jwt"


def test_hmac_attack_is_a_genuine_mac(ek: kit.EvidenceKit) -> None:
    """The HMAC forgery carries a correct MAC keyed by the cnf public key: it is refused for
    its algorithm, not for a broken tag."""
    import hmac

    msg = cbor2.loads(_hmac(5)(ek)).value
    expect = hmac.new(kit.public_pem(ek.key), kit.sig_structure(msg[0], msg[2]), "sha256")
    assert msg[3] == expect.digest()


# -- unhashable header values: once a crash, now a refusal (a bug found here, fixed) ------


@pytest.mark.parametrize("build", [
    lambda ek: _cwt(ek, protected=_prot(ek, l1=[-7])),
    lambda ek: _cwt(ek, protected=_prot(ek, l1={1: 2})),
    lambda ek: kit.cose_sign1(_prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))),
                                          8: {1: {1: [2]}}}, ek.key),
    lambda ek: kit.cose_sign1(_prot(ek), {**kit.claims_to_cbor(ek.claims(_n(ek))),
                                          8: {1: {**kit.jwk_to_cose_key(ek.key.jwk), 3: [-7]}}},
                              ek.key),
], ids=["alg-array", "alg-map", "cnf-kty-array", "cnf-alg-array"])
def test_bug_unhashable_cose_values_are_refused_not_crashes(ek: kit.EvidenceKit,
                                                            build: Callable[..., bytes]) -> None:
    with pytest.raises(BytereplayError):
        decode_evidence(build(ek))


# -- Evidence signed with a key other than the one the quote binds ------------------------


def test_cnf_key_swapped_for_attacker_key_fails_the_quote_binding(ek: kit.EvidenceKit,
                                                                  trust: Trusts) -> None:
    """The attacker re-signs genuine claims with their own key and names it in cnf: the
    signature verifies, but the quote's report data binds the attester's key thumbprint."""
    genuine = ek.claims(_n(ek))
    forged = {**genuine, eat.CNF: {"jwk": dict(ATTACKER.jwk)}}
    for data in (kit.evidence_cwt(forged, ATTACKER),
                 kit.jws({"alg": "ES256", "kid": ATTACKER.kid, "typ": "eat+jwt"}, forged,
                         ATTACKER)):
        assert decode_evidence(data).key_thumbprint == ATTACKER.kid  # signature is fine
        with pytest.raises(QuoteError, match="report data"):
            verify_evidence(data, trust)


def test_evidence_signed_by_a_key_other_than_cnf(ek: kit.EvidenceKit) -> None:
    claims = ek.claims(_n(ek))
    jwt_cnf_kid = kit.jws({"alg": "ES256", "kid": ek.key.kid, "typ": "eat+jwt"}, claims, ATTACKER)
    with pytest.raises(SignatureError, match="does not verify"):
        decode_evidence(jwt_cnf_kid)
    jwt_own_kid = kit.jws({"alg": "ES256", "kid": ATTACKER.kid, "typ": "eat+jwt"}, claims,
                          ATTACKER)
    with pytest.raises(SignatureError, match="thumbprint of the cnf key"):
        decode_evidence(jwt_own_kid)


# -- JWT Evidence: the same games in the other format -------------------------------------


@pytest.mark.parametrize(("header", "error", "fragment"), [
    ({"alg": "none"}, SignatureError, "refused"),
    ({"alg": "HS256"}, SignatureError, "only asymmetric"),
    ({"alg": "ES256", "typ": "JWT"}, EvidenceError, "typ"),
    ({"alg": "ES256", "crit": ["exp"]}, SignatureError, "'crit'"),
    ({"alg": "ES256", "jwk": ATTACKER.jwk}, SignatureError, "'jwk'"),
    ({"alg": "ES256", "x5c": [base64.b64encode(_x5chain(ATTACKER)).decode()]}, SignatureError,
     "'x5c'"),
    ({"alg": "ES384"}, SignatureError, "does not fit"),
], ids=["none", "hs256", "typ-JWT", "crit", "jwk", "x5c", "es384-on-p256"])
def test_jwt_evidence_header_attacks(ek: kit.EvidenceKit, header: dict[str, Any],
                                     error: type[BytereplayError], fragment: str) -> None:
    full = {"kid": ek.key.kid, "typ": "eat+jwt", **header}
    alg = "HS256" if header["alg"] == "HS256" else "ES256"
    key: Any = kit.public_pem(ek.key) if alg == "HS256" else ek.key
    token = kit.jws(full, ek.claims(_n(ek)), key, alg)
    if header["alg"] == "none":
        token = token.rsplit(".", 1)[0] + "."
    with pytest.raises(error) as info:
        decode_evidence(token)
    assert fragment.lower() in info.value.detail.lower()


def test_jwt_evidence_padded_signature_is_refused(ek: kit.EvidenceKit) -> None:
    token = ek.make(NONCE)
    assert isinstance(token, str)
    with pytest.raises(EncodingError, match=r"canonical|base64url"):
        decode_evidence(token + "==")


# -- through the verifier: negative EAR, nonce left alone ---------------------------------


@pytest.fixture(scope="module")
def verifier(home: Home, ek: kit.EvidenceKit) -> Iterator[Any]:
    from verifier.config import TeeTrustConfig, VerifierConfig
    from verifier.pipeline import Verifier

    # snp configured without collateral: the forged-quote test below needs it accepted.
    v = Verifier(VerifierConfig(home=home, replay=False, tee={"snp": TeeTrustConfig()}))
    yield v
    v.close()


PIPELINE_ATTACKS = ["alg-missing", "hmac-alg-5-public-key-as-secret", "crit",
                    "x5chain-attacker-cert", "unprotected-alg-beside-protected",
                    "indefinite-payload-map", "duplicate-claim-label", "trailing-bytes-after-message",
                    "tag-in-payload-claim", "payload-swap", "signed-by-other-key-cnf-kid"]


@pytest.mark.parametrize("name", PIPELINE_ATTACKS)
def test_pipeline_answers_attacks_with_a_negative_ear_and_keeps_the_nonce(
        verifier: Any, ek: kit.EvidenceKit, name: str) -> None:
    from bytereplay.ear import read_ear
    from bytereplay.jwks import KeySet

    issued = verifier.issue_nonce()
    ek.attack_nonce = issued.nonce  # type: ignore[attr-defined]
    try:
        data = next(a for a in ATTACKS if a.name == name).build(ek)
    finally:
        del ek.attack_nonce  # type: ignore[attr-defined]
    result = verifier.appraise(data, "cwt", replay=False)
    ear = read_ear(result.token, KeySet(verifier.jwks()))
    assert ear.status == "contraindicated", (name, ear.extensions.get("bytereplay.checks"))
    assert verifier.store.peek(issued.nonce) == "fresh"  # a forgery cannot burn the nonce
    # ...and the genuine Evidence for that nonce is still accepted afterwards.
    genuine = verifier.appraise(ek.make(issued.nonce, fmt="cwt"), "cwt", replay=False)
    assert read_ear(genuine.token, KeySet(verifier.jwks())).extensions[
        "bytereplay.checks"]["nonce"] == "ok"


def test_pipeline_turns_unhashable_header_crash_into_a_negative_ear(
        verifier: Any, ek: kit.EvidenceKit) -> None:
    """Bug (fixed): `decode_evidence` raised TypeError, which `step_decode` did not catch,
    so the verifier raised (HTTP 500) instead of answering with an EAR."""
    result = verifier.appraise(_cwt(ek, protected=_prot(ek, l1=[-7])), "cwt", replay=False)
    assert result.status == "contraindicated"


def test_bug_forged_unchecked_tsm_quote_does_not_affirm_instance_identity(
        verifier: Any, ek: kit.EvidenceKit) -> None:
    """No TEE at all: the attacker writes an SEV-SNP report by hand (its signature is never
    checked: no collateral is configured) binding their own key. The EAR must not affirm
    anything the unchecked quote was supposed to show. Today `instance-identity` is 2
    (affirming) because the policy treats 'bound by a quote' as proof even when nothing
    checked the quote's signature (policies/appraisal.rego, instance-identity rule)."""
    from attester.evidence import (
        build_claims,
        encode,
        expected_report_data,
        measurements_for,
    )
    from bytereplay.ear import read_ear
    from bytereplay.jwks import KeySet

    nonce = verifier.issue_nonce().nonce
    quote = kit.forged_snp_quote(expected_report_data(nonce, ek.record, ATTACKER.jwk),
                              measurements_for(ek.record))
    claims = build_claims(record=ek.record, nonce=nonce, key=ATTACKER, quote=quote,
                          request=kit.claims_request())
    ear = read_ear(verifier.appraise(encode(claims, ATTACKER, "jwt"), replay=False).token,
                   KeySet(verifier.jwks()))
    assert ear.status != "affirming"
    assert ear.vector.get("hardware", 0) >= 32
    assert ear.vector.get("instance-identity", 0) not in range(2, 32), ear.vector
