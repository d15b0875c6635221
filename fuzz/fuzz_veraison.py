"""Fuzz the parsers of the Veraison session API: CMW record unwrapping
(`bytereplay.cmw.unwrap`, JSON and CBOR), the `Accept` header (`bytereplay.web.accept`),
the newSession query (`verifier.veraison_api.parse_nonce_request`), and the session
endpoints themselves in process (FastAPI TestClient).

Crash: any exception other than a `BytereplayError`; an unwrapped CMW that does not
re-wrap to an equivalent record; a nonce outside 8..64 bytes accepted; any HTTP 5xx, or
a 4xx that is not problem+json.
"""

from __future__ import annotations

import atexit
import shutil
import sys
import tempfile
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["bytereplay.cmw", "bytereplay.web.accept",
                                         "verifier.veraison_api"]):
    from fastapi.testclient import TestClient

    from bytereplay import cmw
    from bytereplay.eat import NONCE_MAX, NONCE_MIN
    from bytereplay.home import Home
    from bytereplay.web.accept import accepts, media_ranges, requested_param
    from verifier.config import VerifierConfig
    from verifier.service import create_app
    from verifier.veraison_api import EVIDENCE_TYPES, NEW_SESSION, parse_nonce_request

HOME = Home.resolve(tempfile.mkdtemp(prefix="br-fuzz-veraison-"))
atexit.register(shutil.rmtree, HOME.root, True)
_CLIENT: TestClient | None = None
CTYPES = [*EVIDENCE_TYPES, *cmw.ALIASES, "text/plain", "", "application/cmw+json; charset=utf-8"]
MAX = 64 * 1024


def client() -> TestClient:
    global _CLIENT
    if _CLIENT is None:
        _CLIENT = TestClient(create_app(VerifierConfig(home=HOME, replay=False,
                                                       max_evidence_bytes=MAX)),
                             raise_server_exceptions=False)
        # Entered once: one event loop and one thread pool for the whole run (a client
        # used outside `with` starts new worker threads per request, and each thread
        # opens its own SQLite connection).
        _CLIENT.__enter__()
    return _CLIENT


def check(resp: object) -> None:
    status = resp.status_code  # type: ignore[attr-defined]
    assert status < 500, f"HTTP {status}: {resp.text[:300]}"  # type: ignore[attr-defined]
    if status >= 400:
        assert resp.headers["content-type"] == "application/problem+json", \
            "a refusal that is not problem+json"  # type: ignore[attr-defined]


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 8, data[1:]
    if mode == 0:
        kind, value = cmw.unwrap(body, cmw.MEDIA_CMW_JSON, max_bytes=MAX)
        again = cmw.unwrap(cmw.wrap_json(kind, value), cmw.MEDIA_CMW_JSON, max_bytes=MAX)
        assert again == (kind, value), "a JSON CMW does not survive re-wrapping"
    elif mode == 1:
        kind, value = cmw.unwrap(body, cmw.MEDIA_CMW_CBOR, max_bytes=MAX)
        again = cmw.unwrap(cmw.wrap_cbor(kind, value), cmw.MEDIA_CMW_CBOR, max_bytes=MAX)
        assert again == (kind, value), "a CBOR CMW does not survive re-wrapping"
    elif mode in (2, 3):
        header = body.decode("latin-1")
        for r in media_ranges(header):
            assert 0.0 <= r.q <= 1.0 and "/" in r.type, "a malformed range accepted"
        accepts(header, "application/vnd.veraison.challenge-response-session+json")
        requested_param(header, "eat_profile")
    elif mode == 4:
        text = body.decode("latin-1")
        nonce, _, size = text.partition("&")
        raw, n = parse_nonce_request(nonce or None, size or None, 32)
        assert NONCE_MIN <= n <= NONCE_MAX, "a nonce size outside 8..64 accepted"
        assert raw is None or len(raw) == n, "the size is not the nonce's"
    elif mode == 5:
        check(client().post(NEW_SESSION + "?" + quote(body.decode("latin-1"), safe="=&"),
                            headers={"accept": "*/*"}))
    else:
        c = client()
        r = c.post(NEW_SESSION)
        check(r)
        url = NEW_SESSION.rsplit("/", 1)[0] + "/" + r.headers["location"]
        ctype = CTYPES[body[0] % len(CTYPES)] if body else ""
        headers = {"content-type": ctype} if ctype else {}
        if mode == 7 and len(body) > 1:
            headers["accept"] = "".join(chr(b) for b in body[1:40] if 32 <= b < 127)
        check(c.post(url, content=body[1:], headers=headers))
        check(c.get(url))


def seeds() -> list[bytes]:
    jwt = b"eyJhbGciOiJFUzI1NiJ9.e30.AAAA"
    return [
        b"\x00" + cmw.wrap_json("application/eat+jwt", jwt),
        b"\x00" + b'["application/eat+jwt","ZXlK",4]',
        b'\x00["#cmw-c2j-tunnel","AAAA"]', b'\x00{"__cmwc_t":"x"}',
        b"\x01" + cmw.wrap_cbor("application/eat+cwt", b"\xd2\x84"),
        b"\x01\x82\x19\x01\x07\x41\x00",
        b'\x02application/vnd.veraison.challenge-response-session+json;q=0.9, */*;q=0',
        b'\x03application/eat+jwt; eat_profile="tag:github.com,2023:veraison/ear", text/*',
        b"\x04AAAAAAAAAAA", b"\x04&16", b"\x04AAAAAAAAAAA=&8", b"\x04&99",
        b"\x05nonceSize=8", b"\x05nonce=AAAAAAAAAAA&nonceSize=8",
        b"\x06\x00" + jwt, b"\x06\x02" + cmw.wrap_json("application/eat+jwt", jwt),
        b"\x07\x03" + cmw.wrap_cbor("text/plain", b"x"),
    ]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
