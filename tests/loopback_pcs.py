"""A loopback Intel PCS / PCCS v4 serving one collateral object (dcap-qvl's
`QuoteCollateralV3` JSON), counting requests: the only network the TDX collateral tests
use (the verifier's source in `test_tee_tdx.py`, the attester's fetch in `test_tee.py`).
"""

from __future__ import annotations

import http.server
import threading
from typing import Any
from urllib.parse import quote


def _header(text: str) -> str:
    return quote(text, safe="")


class LoopbackPcs:
    """Serves `collateral` (changeable between requests) on 127.0.0.1; `status` set to an
    HTTP error code makes every answer that error; `close()` stops it."""

    def __init__(self, collateral: dict[str, str], *, status: int | None = None) -> None:
        self.collateral = collateral
        self.status = status
        self.requests: list[str] = []
        pcs = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                pcs.requests.append(self.path)
                if pcs.status is not None:
                    self.send_error(pcs.status)
                    return
                c = pcs.collateral
                path = self.path.split("?")[0]
                headers: dict[str, str] = {}
                if path == "/sgx/certification/v4/pckcrl":
                    body = bytes.fromhex(c["pck_crl"])
                    headers["SGX-PCK-CRL-Issuer-Chain"] = _header(c["pck_crl_issuer_chain"])
                elif path == "/tdx/certification/v4/tcb":
                    body = ('{"tcbInfo":' + c["tcb_info"] + ',"signature":"'
                            + c["tcb_info_signature"] + '"}').encode()
                    headers["TCB-Info-Issuer-Chain"] = _header(c["tcb_info_issuer_chain"])
                elif path == "/tdx/certification/v4/qe/identity":
                    body = ('{"enclaveIdentity": ' + c["qe_identity"] + ', "signature": "'
                            + c["qe_identity_signature"] + '"}').encode()
                    headers["SGX-Enclave-Identity-Issuer-Chain"] = _header(
                        c["qe_identity_issuer_chain"])
                elif path == "/sgx/certification/v4/rootcacrl":
                    body = c["root_ca_crl"].encode()  # PCCS answers hex text
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
