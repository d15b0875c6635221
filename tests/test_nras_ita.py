"""NVIDIA NRAS answers (platform token + GPU tokens) and Intel Trust Authority TDX tokens,
signed by a test JWKS served on loopback, checked at a fixed time (never the wall clock)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from fastapi.testclient import TestClient
from jwks_server import JwksServer
from verifier_fixtures import make_verifier, new_home

from bytereplay.errors import SignatureError
from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey
from verifier import ita, nras
from verifier.config import ExternalService
from verifier.external import ExternalVerifier, keyset_for, verify_external_token
from verifier.service import create_app

NOW = 1_750_000_000
NRAS_ISS = "https://nras.attestation.example"
ITA_ISS = "https://ita.attestation.example"
NONCE = bytes(range(32))
REPORT_DATA = bytes(range(64))


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("ES384")


@pytest.fixture
def jwks(key: SigningKey) -> Iterator[JwksServer]:
    server = JwksServer()
    server.publish(key)
    yield server
    server.close()


def sign(key: SigningKey, claims: dict[str, Any], *, iss: str = NRAS_ISS,
         alg: str | None = None) -> str:
    body = {"iss": iss, "iat": NOW, "nbf": NOW, "exp": NOW + 300, **claims}
    return jwt.encode(body, key.private, algorithm=alg or key.alg, headers={"kid": key.kid})


def gpu_claims(**kw: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {c: True for c in nras.GPU_CHECKS}
    claims.update({"eat_nonce": NONCE.hex(), "measres": "success", "secboot": True,
                   "dbgstat": "disabled", "hwmodel": "GH100 A01 GSP BROM",
                   "x-nvidia-gpu-driver-version": "550.90.07",
                   "x-nvidia-gpu-vbios-version": "96.00.9F.00.01",
                   nras.CERT_CHAIN: {"x-nvidia-cert-status": "valid",
                                     "x-nvidia-cert-ocsp-status": "good"}})
    claims.update(kw)
    return claims


def answer(key: SigningKey, gpus: dict[str, str], *, digests: dict[str, str] | None = None,
           **platform: Any) -> str:
    subs = {g: ["DIGEST", ["SHA-256", hashlib.sha256(t.encode()).hexdigest()]]
            for g, t in gpus.items()}
    subs.update({g: ["DIGEST", ["SHA-256", d]] for g, d in (digests or {}).items()})
    claims = {"eat_nonce": NONCE.hex(), nras.OVERALL: True, "submods": subs, **platform}
    return json.dumps([["JWT", sign(key, claims)], gpus])


def nras_service(url: str) -> ExternalService:
    return ExternalService(name="nras", jwks=url, issuer=NRAS_ISS, kind="nras")


def verify_nras(text: str, url: str, nonce: bytes = NONCE) -> nras.NrasResult:
    svc = nras_service(url)
    return nras.verify_answer(text, svc, keyset_for(svc), nonce, NOW)


def test_platform_and_gpu_tokens_verify_and_map(jwks: JwksServer, key: SigningKey) -> None:
    gpus = {"GPU-0": sign(key, gpu_claims()),
            "GPU-1": sign(key, gpu_claims(**{nras.MISMATCHES: [{"index": 9}, {"index": 3}]},
                                          measres="fail"))}
    result = verify_nras(answer(key, gpus), jwks.url)
    assert result.nras_overall is True
    g0, g1 = result.gpus["GPU-0"], result.gpus["GPU-1"]
    assert g0["driver_version"] == "550.90.07" and g0["vbios_version"] == "96.00.9f.00.01"
    assert g0["mismatched_measurements"] == [] and g0["revocation"] == "good"
    assert g0["cc_mode"] is None and g0["hardware"] is False  # NRAS does not report CC mode
    assert g1["mismatched_measurements"] == [3, 9]
    assert not result.hardware


def test_the_overall_result_is_an_input_never_the_verdict(jwks: JwksServer,
                                                         key: SigningKey) -> None:
    bad = sign(key, gpu_claims(**{"x-nvidia-gpu-attestation-report-signature-verified": False}))
    result = verify_nras(answer(key, {"GPU-0": bad}), jwks.url)
    assert result.nras_overall is True  # NRAS said yes ...
    assert result.gpus["GPU-0"]["failed_checks"] == [
        "x-nvidia-gpu-attestation-report-signature-verified"]  # ... its own claim says no
    assert result.gpus["GPU-0"]["hardware"] is False


def test_a_gpu_token_whose_digest_is_not_in_the_platform_submods_is_refused(
        jwks: JwksServer, key: SigningKey) -> None:
    good = sign(key, gpu_claims())
    other = sign(key, gpu_claims(**{"x-nvidia-gpu-driver-version": "999.0"}))
    # the platform token vouches for `good`; the answer carries `other` in its place
    text = answer(key, {"GPU-0": good})
    doc = json.loads(text)
    doc[1]["GPU-0"] = other
    with pytest.raises(SignatureError, match="digest is not the one in the platform"):
        verify_nras(json.dumps(doc), jwks.url)
    with pytest.raises(SignatureError, match="do not name the answer's GPUs"):
        doc = json.loads(text)
        doc[1]["GPU-1"] = good
        verify_nras(json.dumps(doc), jwks.url)
    with pytest.raises(SignatureError, match="is not \\[\"DIGEST\""):
        verify_nras(answer(key, {"GPU-0": good}, submods={"GPU-0": ["HASH", good]}), jwks.url)


def test_a_wrong_nonce_is_refused(jwks: JwksServer, key: SigningKey) -> None:
    gpus = {"GPU-0": sign(key, gpu_claims())}
    with pytest.raises(SignatureError, match="platform token: eat_nonce is not the expected"):
        verify_nras(answer(key, gpus), jwks.url, nonce=bytes(32))
    stale = {"GPU-0": sign(key, gpu_claims(eat_nonce="00" * 32))}
    with pytest.raises(SignatureError, match="GPU token 'GPU-0': eat_nonce is not the expected"):
        verify_nras(answer(key, stale), jwks.url)


@pytest.mark.parametrize("where", ["platform", "gpu"])
def test_alg_none_and_hs256_are_refused(jwks: JwksServer, key: SigningKey, where: str) -> None:
    for alg, secret in (("none", None), ("HS256", "secret" * 8)):
        forged = jwt.encode({"iss": NRAS_ISS, "exp": NOW + 60, "eat_nonce": NONCE.hex(),
                             **(gpu_claims() if where == "gpu" else {})},
                            secret, algorithm=alg, headers={"kid": key.kid})
        if where == "gpu":
            text = answer(key, {"GPU-0": forged})
        else:
            text = json.dumps([["JWT", forged], {"GPU-0": sign(key, gpu_claims())}])
        with pytest.raises(SignatureError, match=r"refused|not in the allowed"):
            verify_nras(text, jwks.url)


def test_malformed_answers_are_refused(jwks: JwksServer) -> None:
    for text in ("{}", "[]", '[["JWT", 1], {}]', '[["JWS", "a.b.c"], {"GPU-0": "x"}]',
                 '[["JWT", "a.b.c"], {}]', '[["JWT", "a.b.c"], {"GPU-0": 1}]', "[", "x"):
        with pytest.raises(SignatureError):
            verify_nras(text, jwks.url)


def test_a_revoked_gpu_certificate_refuses_the_answer(jwks: JwksServer, key: SigningKey) -> None:
    revoked = sign(key, gpu_claims(**{nras.CERT_CHAIN: {"x-nvidia-cert-ocsp-status": "revoked"}}))
    with pytest.raises(SignatureError, match="revoked"):
        verify_nras(answer(key, {"GPU-0": revoked}), jwks.url)


def test_the_jwks_disk_cache_serves_when_the_url_is_down(tmp_path: Path, key: SigningKey) -> None:
    server = JwksServer()
    server.publish(key)
    cache = tmp_path / "nras-jwks.json"
    svc = ExternalService(name="nras", jwks=server.url, issuer=NRAS_ISS, kind="nras",
                          jwks_cache=cache)
    text = answer(key, {"GPU-0": sign(key, gpu_claims())})
    nras.verify_answer(text, svc, keyset_for(svc), NONCE, NOW)
    assert cache.is_file() and server.hits == 1
    server.close()  # the service goes away; a fresh key set (a restart) still verifies
    nras.verify_answer(text, svc, keyset_for(svc), NONCE, NOW)
    with pytest.raises(SignatureError, match="cannot fetch key set"):
        KeySet(server.url).keys()  # without a cache it cannot


# -- Intel Trust Authority -----------------------------------------------------------------

def ita_claims(nested: bool = True, **kw: Any) -> dict[str, Any]:
    tdx = {"attester_tcb_status": "UpToDate", "tdx_mrtd": "ab" * 48,
           **{f"tdx_rtmr{i}": f"{i:02x}" * 48 for i in range(4)},
           "tdx_report_data": REPORT_DATA.hex(), "tdx_is_debuggable": False}
    claims: dict[str, Any] = {"tdx": tdx} if nested else dict(tdx)
    claims.update({"policy_ids_matched": [{"id": "p1"}], "policy_ids_unmatched": []})
    claims.update(kw)
    return claims


def ita_service(url: str) -> ExternalService:
    return ExternalService(name="ita", jwks=url, issuer=ITA_ISS, kind="ita")


@pytest.mark.parametrize("nested", [True, False])
def test_ita_tdx_claims_map_onto_local_tdx(jwks: JwksServer, key: SigningKey,
                                           nested: bool) -> None:
    svc = ita_service(jwks.url)
    found = ita.verify_token(sign(key, ita_claims(nested), iss=ITA_ISS), svc, keyset_for(svc),
                             expected_report_data=REPORT_DATA, now=NOW)
    assert found.tdx["tcb_status"] == "UpToDate" and not found.tdx["debug"]
    assert found.tdx["measurements"]["tdx.mrtd"] == "ab" * 48
    assert found.tdx["measurements"]["tdx.rtmr3"] == "03" * 48


def test_ita_refusals(jwks: JwksServer, key: SigningKey) -> None:
    svc = ita_service(jwks.url)
    ks = keyset_for(svc)
    cases = [
        (ita_claims(policy_ids_unmatched=[{"id": "p2"}]), "policy_ids_unmatched is not empty"),
        (ita_claims(tdx={**ita_claims()["tdx"], "attester_tcb_status": "OutOfDate"}),
         "TCB status 'OutOfDate' is not allowed"),
        (ita_claims(tdx={**ita_claims()["tdx"], "tdx_is_debuggable": True}), "debuggable"),
        (ita_claims(tdx={**ita_claims()["tdx"], "tdx_report_data": "00" * 64}),
         "not the expected report data"),
        (ita_claims(tdx={**ita_claims()["tdx"], "tdx_mrtd": "zz"}), "tdx_mrtd is not hex"),
    ]
    for claims, text in cases:
        with pytest.raises(SignatureError, match=text):
            ita.verify_token(sign(key, claims, iss=ITA_ISS), svc, ks,
                             expected_report_data=REPORT_DATA, now=NOW)
    with pytest.raises(SignatureError, match="token expired"):
        ita.verify_token(sign(key, ita_claims(), iss=ITA_ISS), svc, ks, now=NOW + 3600)


# -- routing, the pipeline and the endpoint -----------------------------------------------

def test_external_verifier_routes_nras_answers_and_ita_tokens(jwks: JwksServer,
                                                              key: SigningKey) -> None:
    ev = ExternalVerifier([nras_service(jwks.url), ita_service(jwks.url)])
    text = answer(key, {"GPU-0": sign(key, gpu_claims())})
    out = ev.verify(text, gpu_nonce=NONCE, now=NOW)
    assert out.service == "nras" and out.mapped["gpus"]["GPU-0"]["driver_version"] == "550.90.07"
    with pytest.raises(SignatureError, match="checked against the GPU nonce"):
        ev.verify(text, now=NOW)
    out = ev.verify(sign(key, ita_claims(), iss=ITA_ISS), now=NOW)
    assert out.service == "ita" and out.mapped["tdx"]["tcb_status"] == "UpToDate"
    with pytest.raises(SignatureError, match="not an NRAS service"):
        verify_external_token(text, ita_service(jwks.url), now=NOW)


def test_pipeline_binds_an_nras_answer_to_the_evidence(jwks: JwksServer, key: SigningKey,
                                                       tmp_path: Path) -> None:
    from verifier_fixtures import evidence_factory

    from bytereplay.eat import gpu_nonce, report_data
    from bytereplay.encoding import b64url_decode
    from bytereplay.evidence import decode_evidence

    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False, external=(nras_service(jwks.url),))
    verifier.clock = lambda: float(NOW)
    factory = evidence_factory(home)
    try:
        for bound, expected in ((True, "nras: ok"), (False, "eat_nonce is not the expected")):
            nonce = verifier.issue_nonce()
            evidence = factory.make(b64url_decode(nonce.to_json()["nonce"]))
            d = decode_evidence(evidence)
            rd = report_data(d.nonce, d.record_digest, d.key_thumbprint_bytes)
            gn = gpu_nonce(rd) if bound else bytes(32)
            gpu = sign(key, gpu_claims(eat_nonce=gn.hex()))
            subs = {"GPU-0": ["DIGEST", ["SHA-256", hashlib.sha256(gpu.encode()).hexdigest()]]}
            platform = sign(key, {"eat_nonce": gn.hex(), nras.OVERALL: True, "submods": subs})
            text = json.dumps([["JWT", platform], {"GPU-0": gpu}])
            result = verifier.appraise(evidence, external_tokens=[text], replay=False)
            from bytereplay.ear import flat_submod, peek

            checks = flat_submod(peek(result.token))["bytereplay.checks"]
            assert expected in checks["external"], checks
    finally:
        verifier.close()


def test_the_endpoint_takes_the_nonce(jwks: JwksServer, key: SigningKey, tmp_path: Path) -> None:
    home = new_home(tmp_path)
    verifier = make_verifier(home, replay=False, external=(nras_service(jwks.url),))
    verifier.clock = lambda: float(NOW)
    text = answer(key, {"GPU-0": sign(key, gpu_claims())})
    with TestClient(create_app(verifier.config, verifier=verifier)) as client:
        r = client.post("/v1/external/verify", json={"token": text, "nonce": NONCE.hex()})
        assert r.status_code == 200, r.text
        assert r.json()["mapped"]["gpus"]["GPU-0"]["vbios_version"] == "96.00.9f.00.01"
        r = client.post("/v1/external/verify", json={"token": text, "nonce": "00" * 32})
        assert r.status_code == 400 and "eat_nonce" in r.json()["detail"]
        r = client.post("/v1/external/verify", json={"token": text, "nonce": "zz"})
        assert r.status_code == 400 and "64 hex digits" in r.json()["detail"]
