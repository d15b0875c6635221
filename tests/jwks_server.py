"""A JWKS document served on loopback that tests can rotate and count fetches of."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bytereplay.keys import SigningKey


class JwksServer:
    """Serves `self.doc` at http://127.0.0.1:<port><path>; `hits` counts the GETs."""

    def __init__(self, path: str = "/jwks.json") -> None:
        self.doc: dict[str, Any] = {"keys": []}
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.hits += 1
                body = json.dumps(outer.doc).encode()
                self.send_response(200 if self.path == path else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def publish(self, *keys: SigningKey) -> None:
        self.doc = {"keys": [dict(k.jwk) for k in keys]}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
