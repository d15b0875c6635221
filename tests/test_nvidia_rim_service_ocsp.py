"""NVIDIA reference values from a RIM service URL (disk cache) and revocation by OCSP, each
against a loopback server; times fixed, never the wall clock."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp
from loopback_http import LoopbackHttp
from nvidia_test_root import AT, NvidiaTestRoot
from test_tee_nvidia import CHAIN, DRIVER_RIM, NV, PINNED, REPORT, SAMPLE_AT, SAMPLE_MISMATCHES

from bytereplay.cli import main
from bytereplay.errors import QuoteError
from verifier.tee import nvidia, nvidia_rim, nvidia_spdm
from verifier.tee.base import verify_quote

VBIOS_RIM = NV / "1010_0200_882_96005E0001_test_no_gpu.swidtag"
DRIVER_ID = "NV_GPU_DRIVER_GH100_550.90.07"
VBIOS_ID = "NV_GPU_VBIOS_1010_0200_882_96009F0001"


def rim_service(files: dict[str, Path], *, bad_digest: bool = False) -> LoopbackHttp:
    def answer(method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        rim_id = path.removeprefix(nvidia_rim.RIM_SERVICE_PATH)
        if method != "GET" or rim_id not in files:
            return 404, "application/json", b'{"error": "not found"}'
        rim = files[rim_id].read_bytes()
        digest = "00" * 32 if bad_digest else hashlib.sha256(rim).hexdigest()
        doc = {"id": rim_id, "rim": base64.b64encode(rim).decode(), "sha256": digest,
               "rim_format": "SWIDTAG"}
        return 200, "application/json", json.dumps(doc).encode()
    return LoopbackHttp(answer)


def test_the_report_names_its_rims() -> None:
    fields = nvidia_spdm.parse_report(REPORT).fields
    assert nvidia_rim.rim_ids(fields) == (DRIVER_ID, VBIOS_ID)
    with pytest.raises(QuoteError, match="no project"):
        nvidia_rim.rim_ids({"driver_version": "1", "vbios_version": "2"})
    with pytest.raises(QuoteError, match="do not make RIM ids"):
        nvidia_rim.rim_ids({**fields, "driver_version": "../../x"})


def test_rims_from_a_service_url_through_the_disk_cache(tmp_path: Path) -> None:
    result = nvidia.verify_report(REPORT, CHAIN, PINNED, SAMPLE_AT, None)
    files = {DRIVER_ID: DRIVER_RIM, VBIOS_ID: VBIOS_RIM}
    with rim_service(files) as srv:
        compared = nvidia.compare_rims(result, srv.url, SAMPLE_AT, tmp_path)
        assert compared.claims["mismatched_measurements"] == SAMPLE_MISMATCHES
        assert sorted(p for _, p in srv.requests) == [f"/v1/rim/{DRIVER_ID}",
                                                      f"/v1/rim/{VBIOS_ID}"]
        url = srv.url
    # the service is gone: the cached answers still serve, and are verified again
    again = nvidia.compare_rims(result, url, SAMPLE_AT, tmp_path)
    assert again.claims["mismatched_measurements"] == SAMPLE_MISMATCHES
    with pytest.raises(QuoteError, match="not valid at"):  # the cache is re-verified at `at`
        nvidia.compare_rims(result, url, datetime(2025, 7, 1, tzinfo=UTC), tmp_path)
    with pytest.raises(QuoteError, match="could not be reached"):  # no cache, no service
        nvidia.compare_rims(result, url, SAMPLE_AT, tmp_path / "empty")


def _refused(server: LoopbackHttp, text: str) -> None:
    result = nvidia.verify_report(REPORT, CHAIN, PINNED, SAMPLE_AT, None)
    try:
        with pytest.raises(QuoteError, match=text):
            nvidia.compare_rims(result, server.url, SAMPLE_AT, None)
    finally:
        server.close()


def test_rim_service_refusals() -> None:
    _refused(rim_service({DRIVER_ID: DRIVER_RIM}), "answered 404")
    _refused(rim_service({DRIVER_ID: DRIVER_RIM, VBIOS_ID: VBIOS_RIM}, bad_digest=True),
             "SHA-256 is not its sha256")
    _refused(LoopbackHttp(lambda m, p, b: (200, "application/json", b'{"rim": "%%%"}')),
             "'rim' is not base64")
    _refused(LoopbackHttp(lambda m, p, b: (200, "application/json", b"[1]")), "is not a RIM")


def test_cli_rims_from_a_url(capsys: pytest.CaptureFixture[str]) -> None:
    with rim_service({DRIVER_ID: DRIVER_RIM, VBIOS_ID: VBIOS_RIM}) as srv:
        rc = main(["quote", "verify", str(NV / "hopperAttestationReport.txt"), "--kind",
                   "nvidia", "--cert", str(NV / "hopperCertChain.txt"), "--rims", srv.url,
                   "--at", "2025-06-01T00:00:00Z", "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert rc == 1 and doc["mismatched_measurements"] == SAMPLE_MISMATCHES
    assert doc["revocation"] == "not-checked"


# -- OCSP ----------------------------------------------------------------------------------

class Responder:
    """An OCSP responder for a test root's chain: answers per serial with the status set in
    `revoked` (serials), signed by the issuer (`tamper`: its signature's last byte flipped)."""

    def __init__(self, root: NvidiaTestRoot) -> None:
        self.issuers = {root.leaf.serial_number: (root.leaf, root.ica, root.ica_key),
                        root.ica.serial_number: (root.ica, root.root, root.root_key)}
        self.revoked: set[int] = set()
        self.tamper = False
        self.this_update = AT - timedelta(hours=1)
        self.next_update = AT + timedelta(days=1)
        self.http = LoopbackHttp(self.answer)

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        req = ocsp.load_der_ocsp_request(body)
        cert, issuer, key = self.issuers[req.serial_number]
        revoked = req.serial_number in self.revoked
        builder = ocsp.OCSPResponseBuilder().add_response(
            cert=cert, issuer=issuer, algorithm=hashes.SHA384(),
            cert_status=ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD,
            this_update=self.this_update, next_update=self.next_update,
            revocation_time=AT - timedelta(days=2) if revoked else None,
            revocation_reason=x509.ReasonFlags.key_compromise if revoked else None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, issuer)
        der = bytearray(builder.sign(key, hashes.SHA384()).public_bytes(Encoding.DER))
        if self.tamper:  # no certificates follow: the last byte is the signature's
            der[-1] ^= 0x01
        return 200, "application/ocsp-response", bytes(der)


def _verify(root: NvidiaTestRoot, url: str | None) -> nvidia.NvidiaResult:
    nonce = bytes(32)
    trust = dataclasses.replace(root.trust(), ocsp=url)
    return nvidia.verify_report(root.report(nonce), root.chain_pem(), trust, AT, nonce)


def test_ocsp_good_and_revoked() -> None:
    root = NvidiaTestRoot()
    responder = Responder(root)
    try:
        result = _verify(root, responder.http.url)
        assert result.claims["revocation"] == "good"
        assert len(responder.http.requests) == 2  # leaf and intermediate
        verification = nvidia.to_verification(result, bytes(64))
        assert nvidia.REASON_NO_REVOCATION not in verification.reasons
        assert any("revocation checked (OCSP)" in r for r in verification.reasons)
        assert verification.ear_facts["gpu"]["revocation"] == "good"
        responder.revoked.add(root.leaf.serial_number)
        with pytest.raises(QuoteError, match=r"CN=Test GPU FMC LF' is revoked \(OCSP\)"):
            _verify(root, responder.http.url)
    finally:
        responder.http.close()


def test_ocsp_answers_that_do_not_count() -> None:
    root = NvidiaTestRoot()
    responder = Responder(root)
    try:
        responder.tamper = True
        with pytest.raises(QuoteError, match="signature is invalid"):
            _verify(root, responder.http.url)
        responder.tamper = False
        responder.next_update = AT - timedelta(minutes=1)
        with pytest.raises(QuoteError, match="not current at"):
            _verify(root, responder.http.url)
    finally:
        responder.http.close()
    srv = LoopbackHttp(lambda m, p, b: (200, "application/ocsp-response", b"\x30\x00"))
    try:
        with pytest.raises(QuoteError, match="malformed"):
            _verify(root, srv.url)
    finally:
        srv.close()


def test_without_a_responder_revocation_is_not_checked_and_the_ear_says_so() -> None:
    root = NvidiaTestRoot()
    trust = root.trust()
    rd = bytes(range(64))
    result = verify_quote(root.quote(rd), {"nvidia": trust}, rd, AT)
    assert result.claims["revocation"] == "not-checked"
    assert result.ear_facts["gpu"]["revocation"] == "not-checked"
    assert nvidia.REASON_NO_REVOCATION in result.reasons
