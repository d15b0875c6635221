"""The verifier key set served over HTTP (loopback): fetched, cached, refetched once on an
unknown kid, with a cooldown against floods of unknown kids."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bytereplay.jwks import KeySet
from bytereplay.keys import SigningKey
from relying_party import evaluate
from relying_party.testing import jwks_of, make_result

OUT = b"served bytes"


class JwksServer:
    def __init__(self) -> None:
        self.jwks: dict[str, Any] = {"keys": []}
        self.hits = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits += 1
                body = json.dumps(server.jwks).encode()
                self.send_response(200 if self.path == "/.well-known/jwks.json" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def served() -> Iterator[JwksServer]:
    srv = JwksServer()
    yield srv
    srv.close()


def test_url_key_set_verifies_and_is_cached(served: JwksServer) -> None:
    key = SigningKey.generate()
    served.jwks = jwks_of(key)
    token = make_result(key, output=OUT)
    assert evaluate(token, output=OUT, verifier_keys=served.url).allow
    assert evaluate(token, output=OUT, verifier_keys=served.url).allow
    assert served.hits == 1  # the second call used the cached key set (TTL)


def test_unknown_kid_refetches_once_then_cools_down(served: JwksServer) -> None:
    old, new, rogue = SigningKey.generate(), SigningKey.generate(), SigningKey.generate()
    served.jwks = jwks_of(old)
    now = [1000.0]
    keys = KeySet(served.url, ttl=300, cooldown=30, clock=lambda: now[0])
    assert evaluate(make_result(old, output=OUT), output=OUT, verifier_keys=keys).allow
    assert served.hits == 1

    # The verifier rotates to a new key: the first result under it triggers one refetch.
    served.jwks = jwks_of(old, new)
    d = evaluate(make_result(new, output=OUT), output=OUT, verifier_keys=keys)
    assert d.allow, d.reasons
    assert served.hits == 2

    # A flood of unknown kids inside the cooldown does not hammer the server.
    for _ in range(5):
        d = evaluate(make_result(rogue, output=OUT), output=OUT, verifier_keys=keys)
        assert not d.allow and "unknown key id" in d.reasons[0]
    assert served.hits == 2

    # After the cooldown, one more refetch is allowed; the rogue key is still unknown.
    now[0] += 31
    assert not evaluate(make_result(rogue, output=OUT), output=OUT, verifier_keys=keys).allow
    assert served.hits == 3


def test_unreachable_key_set_denies_without_raising() -> None:
    key = SigningKey.generate()
    d = evaluate(make_result(key, output=OUT), output=OUT,
                 verifier_keys="http://127.0.0.1:9/.well-known/jwks.json")
    assert not d.allow and "cannot fetch key set" in d.reasons[0]
