"""A loopback HTTP server answering with a test's own function: the only network the RIM
service and OCSP tests use.

    with LoopbackHttp(lambda method, path, body: (200, "application/json", b"{}")) as srv:
        srv.url  # http://127.0.0.1:<port>
        srv.requests  # [(method, path), ...]
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Callable
from typing import Any

Answer = Callable[[str, str, bytes], tuple[int, str, bytes]]


class LoopbackHttp:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                outer.requests.append((method, self.path))
                status, ctype, out = outer.answer(method, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LoopbackHttp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
