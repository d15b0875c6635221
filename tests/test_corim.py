"""CoRIM reference values: the codec (bytereplay/corim.py), the provisioning endpoint
(POST /endorsement-provisioning/v1/submit) and `bytereplay refvals`.

The CoRIMs submitted here are built with raw cbor2 from the README's mapping (not with
bytereplay's writer), signed ones with `cryptography` directly; pycose reads what
bytereplay's writer signs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from fastapi.testclient import TestClient
from verifier_fixtures import evidence_factory, generate, make_verifier, new_home

from bytereplay import corim
from bytereplay.ear import flat_submod, peek
from bytereplay.encoding import b64url_decode
from bytereplay.errors import CorimError, SignatureError
from bytereplay.home import Home
from bytereplay.keys import SigningKey
from verifier.pipeline import Verifier
from verifier.service import create_app

REPO = Path(__file__).resolve().parent.parent
TOKEN = "provisioning-token-0123456789abcdef"
RIM_CBOR, RIM_COSE = "application/rim+cbor", "application/rim+cose"
SESSION = "application/vnd.veraison.provisioning-session+json"
JWT = "application/eat+jwt"
UNKNOWN_MODEL = "sha-256:" + "cd" * 32

# -- CoRIMs from the README's mapping, with raw cbor2 -------------------------------------

ENV = {0: {1: "bytereplay", 2: "llm-inference"}}


def dumps(value: Any) -> bytes:
    return cbor2.dumps(value, canonical=True)


def digest_m(mkey: str, tagged: str) -> dict[int, Any]:
    return {0: mkey, 1: {2: [[1, bytes.fromhex(tagged.split(":", 1)[1])]]}}


def comid(measurements: list[dict[int, Any]], **extra: Any) -> dict[int, Any]:
    body: dict[int, Any] = {1: {0: "comid-1"}, 4: {0: [[ENV, [m]] for m in measurements]}}
    body.update({int(k[1:]): v for k, v in extra.items()})
    return body


def raw_corim(measurements: list[dict[int, Any]], *, top: dict[int, Any] | None = None,
              tag: int = 501, comid_tag: int = 506, comid_map: dict[int, Any] | None = None) -> bytes:
    body = {0: "test-corim", 1: [cbor2.CBORTag(comid_tag, comid_map or comid(measurements))]}
    body.update(top or {})
    return dumps(cbor2.CBORTag(tag, body))


def model_corim(digest: str) -> bytes:
    return raw_corim([digest_m("model", digest)])


def es256_sign(key: ec.EllipticCurvePrivateKey, payload: bytes, **header: Any) -> bytes:
    """A signed CoRIM (COSE_Sign1, tag 18) made with cryptography alone."""
    protected_map = {1: -7, 3: "application/rim+cbor", 8: dumps({0: {0: "test signer"}})}
    protected_map.update({int(k[1:]): v for k, v in header.items()})
    protected = dumps(protected_map)
    to_sign = dumps(["Signature1", protected, b"", payload])
    r, s = decode_dss_signature(key.sign(to_sign, ec.ECDSA(hashes.SHA256())))
    return dumps(cbor2.CBORTag(18, [protected, {}, payload, r.to_bytes(32, "big") + s.to_bytes(32, "big")]))


def write_public(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def token_file(home: Home) -> Path:
    path = home.root / "provisioning-token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(TOKEN + "\n")
    return path


# -- the service --------------------------------------------------------------------------


@pytest.fixture()
def served(tmp_path: Path) -> Iterator[tuple[TestClient, Verifier, Home]]:
    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False, provisioning_token_file=token_file(home))
    with TestClient(create_app(verifier.config, verifier=verifier)) as client:
        yield client, verifier, home


def submit(client: TestClient, body: bytes, media: str = RIM_CBOR,
           token: str | None = TOKEN, **headers: str) -> Any:
    if token is not None:
        headers["authorization"] = f"Bearer {token}"
    return client.post("/endorsement-provisioning/v1/submit", content=body,
                       headers={"content-type": media, **headers})


def session(r: Any, status: str) -> dict[str, Any]:
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == SESSION
    doc: dict[str, Any] = r.json()
    assert doc["status"] == status, doc
    assert set(doc) <= {"status", "expiry", "failure-reason"}
    return doc


def appraise(client: TestClient, home: Home) -> dict[str, Any]:
    nonce = b64url_decode(client.post("/v1/challenge").json()["nonce"])
    evidence = evidence_factory(home).make(nonce)
    r = client.post("/v1/verify?replay=false", content=evidence, headers={"content-type": JWT})
    assert r.status_code == 200, r.text
    sub: dict[str, Any] = flat_submod(peek(r.json()["result"]))
    return sub


def stored(home: Home) -> bytes | None:
    path = home.provisioned_values
    return path.read_bytes() if path.exists() else None


def test_matching_model_digest_affirms_executables(served: tuple[TestClient, Verifier, Home]) -> None:
    client, _, home = served
    before = appraise(client, home)
    assert before["bytereplay.checks"]["reference"] == "not configured"
    digest = generate().record.get("model.digest")
    session(submit(client, model_corim(digest)), "success")
    sub = appraise(client, home)
    assert sub["ear.trustworthiness-vector"]["executables"] == 2
    assert sub["bytereplay.checks"]["reference"] == "ok"
    assert json.loads(stored(home) or b"{}")["model_digests"] == [digest]
    assert stat.S_IMODE(home.provisioned_values.stat().st_mode) & 0o077 == 0
    # Stored in the home: a verifier started later (a restart) uses them too.
    again = make_verifier(home, replay=False)
    try:
        assert again.references.model_digests == frozenset({digest})
    finally:
        again.close()


def test_unknown_model_digest_contraindicates(served: tuple[TestClient, Verifier, Home]) -> None:
    client, _, home = served
    session(submit(client, model_corim(UNKNOWN_MODEL)), "success")
    sub = appraise(client, home)
    assert sub["ear.trustworthiness-vector"]["executables"] == 96
    assert sub["bytereplay.checks"]["reference"] == "model: unmatched"


def test_corim_and_json_values_appraise_alike(tmp_path: Path) -> None:
    """The same values from the JSON file and from a CoRIM give the same facts and vector."""
    record = generate().record
    digest, torch = record.get("model.digest"), str(record.get("framework.torch"))
    cases = [
        ({"model_digests": [digest], "runtimes": [{"name": "bytereplay", "version": "0.1.0"}],
          "frameworks": [{"name": "torch", "version": torch}]},
         [digest_m("model", digest), {0: "runtime", 1: {0: {0: "0.1.0"}}},
          {0: "framework/torch", 1: {0: {0: torch}}}]),
        ({"model_digests": [UNKNOWN_MODEL], "frameworks": [{"name": "torch", "version": "0.0"}]},
         [digest_m("model", UNKNOWN_MODEL), {0: "framework/torch", 1: {0: {0: "0.0"}}}]),
    ]
    for i, (doc, measurements) in enumerate(cases):
        outcomes = []
        for source in ("json", "corim"):
            home = new_home(tmp_path, f"{source}{i}")
            if source == "json":
                path = home.root / "refs.json"
                path.write_text(json.dumps(doc))
                verifier = make_verifier(home, replay=False, reference_values=path)
            else:
                verifier = make_verifier(home, replay=False,
                                         provisioning_token_file=token_file(home))
                verifier.provisioning.submit(raw_corim(measurements), RIM_CBOR)
            try:
                result = verifier.appraise(evidence_factory(home).make(
                    verifier.issue_nonce().nonce))
                sub = flat_submod(peek(result.token))
                outcomes.append((sub["ear.trustworthiness-vector"], sub["bytereplay.checks"]["reference"]))
            finally:
                verifier.close()
        assert outcomes[0] == outcomes[1], (doc, outcomes)
    assert outcomes[1][0]["executables"] == 96 and outcomes[1][0]["configuration"] == 96
    assert outcomes[1][1] == "model: unmatched; framework: unmatched"


def _bad_corims() -> dict[str, bytes]:
    good = [digest_m("model", UNKNOWN_MODEL)]
    whole = model_corim(UNKNOWN_MODEL)
    return {
        "outer tag 500": raw_corim(good, tag=500),
        "CoMID tag 505 (CoSWID)": raw_corim(good, comid_tag=505),
        "untagged corim-map": dumps({0: "x", 1: [cbor2.CBORTag(506, comid(good))]}),
        "truncated": whole[:-7],
        "truncated to one byte": whole[:1],
        "trailing bytes": whole + b"\x00",
        "not CBOR": b"{\"model_digests\": []}",
        "unknown corim-map key": raw_corim(good, top={99: "x"}),
        "dependent-rims (not supported)": raw_corim(good, top={2: [{0: "https://x"}]}),
        "rim-validity (not supported)": raw_corim(good, top={4: {1: 0}}),
        "unknown CoMID key": raw_corim(good, comid_map=comid(good, k77=1)),
        "linked-tags": raw_corim(good, comid_map=comid(good, k3=[{0: "a", 1: 0}])),
        "endorsed triples": raw_corim(good, comid_map={1: {0: "c"}, 4: {1: [[ENV, [good[0]]]]}}),
        "unknown measurement-values key": raw_corim([{0: "model", 1: {2: [[1, b"\x00" * 32]], 99: 1}}]),
        "unknown mkey": raw_corim([{0: "weights", 1: {2: [[1, b"\x00" * 32]]}}]),
        "integer mkey": raw_corim([{0: 7, 1: {2: [[1, b"\x00" * 32]]}}]),
        "short digest": raw_corim([{0: "model", 1: {2: [[1, b"\x00" * 31]]}}]),
        "float digest algorithm": raw_corim([{0: "model", 1: {2: [[1.0, b"\x00" * 32]]}}]),
        "sha-384 digest": raw_corim([{0: "model", 1: {2: [[7, b"\x00" * 48]]}}]),
        "digests as text": raw_corim([{0: "model", 1: {2: "sha-256:00"}}]),
        "version as int": raw_corim([{0: "runtime", 1: {0: {0: 1}}}]),
        "unknown framework": raw_corim([{0: "framework/jax", 1: {0: {0: "0.4"}}}]),
        "other environment": dumps(cbor2.CBORTag(501, {0: "x", 1: [cbor2.CBORTag(506, {
            1: {0: "c"}, 4: {0: [[{0: {1: "acme", 2: "llm-inference"}}, good]]}})]})),
        "empty tags": dumps(cbor2.CBORTag(501, {0: "x", 1: []})),
        "non-deterministic map order": b"\xd9\x01\xf5\xa2\x01\x80\x00\x61x",
        "indefinite-length array": b"\xd9\x01\xf5\xa2\x00\x61x\x01\x9f\xff",
    }


def test_malformed_corims_are_refused_and_change_nothing(
        served: tuple[TestClient, Verifier, Home]) -> None:
    client, _, home = served
    session(submit(client, model_corim(generate().record.get("model.digest"))), "success")
    before = stored(home)
    assert before is not None
    for name, body in _bad_corims().items():
        with pytest.raises(CorimError):
            corim.read(body)
        doc = session(submit(client, body), "failed")
        assert doc["failure-reason"].startswith("invalid-corim: corim"), (name, doc)
        assert stored(home) == before, name
    # An oversized body is refused before it is read.
    big = raw_corim([digest_m("model", UNKNOWN_MODEL)] * 1) + b"\x00" * corim.MAX_CORIM_BYTES
    r = submit(client, big)
    assert r.status_code == 413 and r.headers["content-type"] == "application/problem+json"
    assert stored(home) == before
    assert appraise(client, home)["ear.trustworthiness-vector"]["executables"] == 2


def test_an_unreadable_store_fails_closed(served: tuple[TestClient, Verifier, Home]) -> None:
    client, _, home = served
    session(submit(client, model_corim(UNKNOWN_MODEL)), "success")
    home.provisioned_values.write_text("{not json")
    nonce = b64url_decode(client.post("/v1/challenge").json()["nonce"])
    r = client.post("/v1/verify?replay=false", content=evidence_factory(home).make(nonce),
                    headers={"content-type": JWT})
    assert r.status_code == 503 and "provisioned reference values" in r.json()["detail"]
    r = submit(client, model_corim(UNKNOWN_MODEL))
    assert r.status_code == 503
    assert home.provisioned_values.read_text() == "{not json"


def test_the_reader_names_what_is_wrong() -> None:
    bad = _bad_corims()
    cases = {
        "outer tag 500": "corim: expected tag 501 (unsigned-corim-map), got tag 500",
        "CoMID tag 505 (CoSWID)": "corim.tags[0]: expected tag 506 (concise-mid-tag), got tag 505",
        "unknown corim-map key": "corim: unknown key 99",
        "dependent-rims (not supported)": "dependent-rims (2) is not supported",
        "unknown measurement-values key": "measurements[0].mval: unknown key 99",
        "short digest": "a sha-256 digest is 32 bytes",
        "other environment": "environment.class: not bytereplay's environment",
        "truncated": "corim: malformed CBOR",
    }
    for name, text in cases.items():
        with pytest.raises(CorimError) as info:
            corim.read(bad[name])
        assert text in info.value.detail, (name, info.value.detail)
        assert info.value.status == 400 and info.value.problem == "invalid-corim"


def test_both_comid_tag_forms_and_uuid_ids_are_read() -> None:
    m = [digest_m("container", "sha256:" + "ef" * 32)]
    wrapped = dumps(cbor2.CBORTag(501, {0: b"\x01" * 16, 1: [cbor2.CBORTag(506, dumps(comid(m)))]}))
    read = corim.read(wrapped)
    assert read.id == "01010101-0101-0101-0101-010101010101"
    assert read.values == {"container_digests": ["sha256:" + "ef" * 32]}
    assert corim.read(raw_corim(m)).values == read.values


def test_writer_round_trip_and_mapping() -> None:
    doc = {"model_digests": ["sha-256:" + "11" * 32, "sha-256:" + "22" * 32],
           "container_digests": ["sha256:" + "33" * 32],
           "runtimes": [{"name": "bytereplay", "version": "0.1.0"},
                        {"name": "other", "version": "2"}],
           "frameworks": [{"name": "python", "version": "3.11.9"},
                          {"name": "torch", "version": "2.13.0"}]}
    data = corim.encode(doc, "round-trip")
    assert corim.read(data).values == doc
    # The wire form is the README's mapping: one reference triple per component.
    body = cbor2.loads(data)
    assert body.tag == 501
    triples = body.value[1][0].value[4][0]
    assert [t[1][0][0] for t in triples] == ["model", "container", "runtime",
                                             "framework/python", "framework/torch"]
    assert all(t[0] == ENV for t in triples)
    assert triples[0][1][0][1] == {2: [[1, bytes.fromhex("11" * 32)]]}
    assert triples[2][1] == [{0: "runtime", 1: {0: {0: "0.1.0"}}},
                             {0: "runtime", 1: {0: {0: "2"}, 11: "other"}}]


# -- signed CoRIMs ------------------------------------------------------------------------


@pytest.fixture()
def signed_served(tmp_path: Path) -> Iterator[tuple[TestClient, Home, ec.EllipticCurvePrivateKey]]:
    home = new_home(tmp_path)
    key = ec.generate_private_key(ec.SECP256R1())
    verifier = make_verifier(home, replay=False, provisioning_token_file=token_file(home),
                             provisioning_keys=(write_public(tmp_path / "signer.pem", key),))
    with TestClient(create_app(verifier.config, verifier=verifier)) as client:
        yield client, home, key


def test_signed_corims(signed_served: tuple[TestClient, Home, ec.EllipticCurvePrivateKey]) -> None:
    client, home, key = signed_served
    payload = model_corim(generate().record.get("model.digest"))
    other = ec.generate_private_key(ec.SECP256R1())
    # Signed with another key: refused, nothing stored.
    doc = session(submit(client, es256_sign(other, payload), RIM_COSE), "failed")
    assert doc["failure-reason"].startswith("bad-signature:")
    assert stored(home) is None
    # Unsigned while signer keys are configured: refused.
    doc = session(submit(client, payload, RIM_CBOR), "failed")
    assert "only signed CoRIMs" in doc["failure-reason"]
    # A crit header, a foreign content type, a signed body sent as rim+cbor: refused.
    for body, text in ((es256_sign(key, payload, k2=[99]), "crit"),
                       (es256_sign(key, payload, k3="application/json"), "content-type")):
        doc = session(submit(client, body, RIM_COSE), "failed")
        assert text in doc["failure-reason"]
    with pytest.raises(SignatureError):
        corim.read(es256_sign(key, payload), [other.public_key()])
    assert stored(home) is None
    # Signed with the configured key: stored, and the match affirms.
    session(submit(client, es256_sign(key, payload), RIM_COSE), "success")
    assert appraise(client, home)["ear.trustworthiness-vector"]["executables"] == 2


def test_a_signed_corim_without_configured_keys_is_refused(
        served: tuple[TestClient, Verifier, Home]) -> None:
    client, _, home = served
    key = ec.generate_private_key(ec.SECP256R1())
    doc = session(submit(client, es256_sign(key, model_corim(UNKNOWN_MODEL)), RIM_COSE), "failed")
    assert "needs a configured provisioning key" in doc["failure-reason"]
    assert stored(home) is None


def test_pycose_reads_the_signed_corim_bytereplay_writes() -> None:
    from pycose.keys import EC2Key
    from pycose.messages import Sign1Message

    for alg in ("ES256", "ES384", "EdDSA"):
        key = SigningKey.generate(alg)
        unsigned = corim.encode({"model_digests": ["sha-256:" + "aa" * 32]}, "pycose")
        signed = corim.sign(unsigned, key, "ops@example.org")
        msg = Sign1Message.decode(signed)
        assert msg.payload == unsigned
        assert msg.phdr[next(h for h in msg.phdr if getattr(h, "identifier", None) == 3)] \
            == "application/rim+cbor"
        jwk = key.jwk
        if alg != "EdDSA":
            msg.key = EC2Key.from_dict({"KTY": "EC2", "CURVE": {"ES256": "P_256", "ES384": "P_384"}[alg],
                                        "X": b64url_decode(jwk["x"]), "Y": b64url_decode(jwk["y"])})
        else:
            from pycose.keys import OKPKey

            msg.key = OKPKey.from_dict({"KTY": "OKP", "CURVE": "ED25519", "X": b64url_decode(jwk["x"])})
        assert msg.verify_signature()
        read = corim.read(signed, [key.private.public_key()])
        assert read.signed and read.verified and read.signer == "ops@example.org"


def test_ps384_is_not_a_corim_algorithm() -> None:
    key = SigningKey.generate("PS384")
    with pytest.raises(Exception) as info:
        corim.sign(corim.encode({"model_digests": ["sha-256:" + "aa" * 32]}, "x"), key, "me")
    assert "ES256" in str(info.value)


# -- the guard ----------------------------------------------------------------------------


def test_provisioning_is_off_without_a_token(tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False)
    with TestClient(create_app(verifier.config, verifier=verifier)) as client:
        r = submit(client, model_corim(UNKNOWN_MODEL))
        assert r.status_code == 404 and r.headers["content-type"] == "application/problem+json"
        assert "off" in r.json()["detail"]
    assert stored(home) is None


def test_token_accept_and_media_type(served: tuple[TestClient, Verifier, Home]) -> None:
    client, _, home = served
    body = model_corim(UNKNOWN_MODEL)
    for token in (None, "wrong-token-0123456789", TOKEN + "x", ""):
        r = submit(client, body, token=token)
        assert r.status_code == 401 and r.headers["content-type"] == "application/problem+json"
    r = client.post("/endorsement-provisioning/v1/submit", content=body,
                    headers={"content-type": RIM_CBOR, "authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401
    r = submit(client, body, accept="application/json")
    assert r.status_code == 406
    r = submit(client, body, "application/json")
    assert r.status_code == 415 and RIM_CBOR in r.headers["accept"]
    r = submit(client, b"")
    assert r.status_code == 400
    assert stored(home) is None
    session(submit(client, body, accept=f"{SESSION}, */*;q=0.1"), "success")
    assert stored(home) is not None


def test_token_file_must_be_private(tmp_path: Path) -> None:
    from bytereplay.errors import KeyConfigError

    home = new_home(tmp_path)
    path = token_file(home)
    path.chmod(0o644)
    with pytest.raises(KeyConfigError):
        make_verifier(home, replay=False, provisioning_token_file=path)


# -- the CLI ------------------------------------------------------------------------------


def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "bytereplay.cli", *args], capture_output=True,
                          cwd=REPO, timeout=120)


def test_refvals_make_and_show(tmp_path: Path) -> None:
    container = "sha256:" + "ab" * 32
    made = cli("refvals", "make", "--model", "fixtures/model", "--container", container,
               "--framework", "torch=2.13.0")
    assert made.returncode == 0, made.stderr
    path = tmp_path / "values.corim"
    path.write_bytes(made.stdout)
    shown = cli("refvals", "show", str(path))
    assert shown.returncode == 0, shown.stderr
    doc = json.loads(shown.stdout)
    model = json.loads((REPO / "fixtures" / "reference-values.json").read_text())["model_digests"]
    assert doc["signed"] is False
    assert doc["reference_values"] == {
        "model_digests": model, "container_digests": [container],
        "runtimes": [{"name": "bytereplay", "version": "0.1.0"}],
        "frameworks": [{"name": "torch", "version": "2.13.0"}]}
    assert corim.read(made.stdout).values == doc["reference_values"]

    key = SigningKey.generate("ES384")
    key_path = tmp_path / "signer.pem"
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key.private.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    pub = write_public(tmp_path / "signer.pub.pem", key.private)  # type: ignore[arg-type]
    signed = tmp_path / "signed.corim"
    made = cli("refvals", "make", "--model-digest", model[0], "--sign", str(key_path),
               "--signer", "ops", "--out", str(signed))
    assert made.returncode == 0, made.stderr
    unverified = json.loads(cli("refvals", "show", str(signed)).stdout)
    assert unverified["signed"] and unverified["verified"] is False and unverified["signer"] == "ops"
    verified = json.loads(cli("refvals", "show", str(signed), "--key", str(pub)).stdout)
    assert verified["verified"] is True
    assert verified["reference_values"]["model_digests"] == model
    wrong = write_public(tmp_path / "other.pem", ec.generate_private_key(ec.SECP384R1()))
    refused = cli("refvals", "show", str(signed), "--key", str(wrong))
    assert refused.returncode == 2 and b"does not verify" in refused.stderr
    bad = cli("refvals", "show", "README.md")
    assert bad.returncode == 2 and bad.stderr.startswith(b"bytereplay: error: corim")
