"""Fuzz the HTTP surface of both services in process (FastAPI TestClient).

The first byte picks the endpoint, content type and query; the rest is the body (for
`/v1/verify` JSON envelopes it is the `evidence` text). Crash: any 5xx, or a 4xx that is
not `application/problem+json` with a matching `status` member.
"""

from __future__ import annotations

import atexit
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.service", "attester.service",
                                         "bytereplay.web.http", "attester.evidence"]):
    import kit
    from fastapi.testclient import TestClient

    from attester.config import AttesterConfig
    from attester.service import Attester
    from attester.service import create_app as attester_app
    from bytereplay.home import Home
    from verifier.config import VerifierConfig
    from verifier.service import create_app as verifier_app

HOME = Home.resolve(tempfile.mkdtemp(prefix="br-fuzz-http-"))
atexit.register(shutil.rmtree, HOME.root, True)
KIT = kit.EvidenceKit(HOME)
VERIFIER = TestClient(verifier_app(VerifierConfig(home=HOME, replay=False,
                                                  max_evidence_bytes=64 * 1024)),
                      raise_server_exceptions=False)
_ATT_CONFIG = AttesterConfig(max_new_tokens=2, max_input_chars=64, max_body_bytes=4096,
                             max_pending=64)
_ATTESTER: TestClient | None = None

CTYPES = [None, "application/json", "application/eat+jwt", "application/eat+cwt",
          "text/plain", "application/json; charset=latin-1", "application/eat+jwt;q=1", ""]
QUERIES = ["?replay=false", "?replay=false&async=true", "?replay=x", ""]


def attester() -> TestClient:
    global _ATTESTER
    if _ATTESTER is None:
        svc = Attester(_ATT_CONFIG, HOME)
        svc.load_engine()
        _ATTESTER = TestClient(attester_app(_ATT_CONFIG, attester=svc),
                               raise_server_exceptions=False)
    return _ATTESTER


def check(resp: object) -> None:
    status = resp.status_code  # type: ignore[attr-defined]
    assert status < 500, f"HTTP {status}: {resp.text[:300]}"  # type: ignore[attr-defined]
    if status >= 400:
        ctype = resp.headers.get("content-type", "")  # type: ignore[attr-defined]
        assert ctype.split(";")[0] == "application/problem+json", f"4xx as {ctype!r}"
        assert resp.json().get("status") == status, "problem status differs"  # type: ignore[attr-defined]


if "--write-seeds" not in sys.argv:
    attester()  # load the model before the fuzzing clock starts


def test_one_input(data: bytes) -> None:
    if len(data) < 2:
        return
    sel, body = data[0], data[1:]
    endpoint = sel % 6
    ctype = CTYPES[(sel >> 3) % len(CTYPES)]
    headers = {} if ctype is None else {"content-type": ctype}
    if endpoint == 0:
        query = QUERIES[(sel >> 6) % len(QUERIES)]
        check(VERIFIER.post("/v1/verify" + query, content=body, headers=headers))
    elif endpoint == 1:
        text = body.decode("latin-1")
        check(VERIFIER.post("/v1/verify?replay=false", json={"evidence": text}))
        check(VERIFIER.post("/v1/verify?replay=false",
                            json={"evidence": text, "format": "cwt" if sel & 64 else "jwt"}))
    elif endpoint == 2:
        check(VERIFIER.post("/v1/challenge", content=body, headers=headers))
    elif endpoint == 3:
        check(VERIFIER.post("/v1/external/verify", content=body, headers=headers))
    elif endpoint == 4:
        path = body[:64].decode("ascii", "ignore")
        path = "".join(c for c in path if 0x21 <= ord(c) < 0x7F and c not in "?#%/")
        check(VERIFIER.get(f"/v1/results/{path}"))
    else:
        check(attester().post("/v1/infer", content=body, headers=headers))


def seeds() -> list[bytes]:
    nonce = bytes(range(32))
    jwt = str(KIT.make(nonce)).encode()
    cwt = bytes(KIT.make(nonce, fmt="cwt"))  # type: ignore[arg-type]
    infer = json.dumps({"input": "hi", "nonce": kit.b64url_encode(nonce),
                        "decode": {"max_new_tokens": 1}}).encode()
    return [bytes([0 | (2 << 3)]) + jwt, bytes([0 | (3 << 3)]) + cwt, b"\x01" + jwt,
            bytes([2 | (1 << 3)]) + b'{"size": 16}', bytes([3 | (1 << 3)]) + b'{"token": "a.b.c"}',
            b"\x04abcdefgh12345678", bytes([5 | (1 << 3)]) + infer]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
