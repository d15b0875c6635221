"""`bytereplay serve attester` as a real process: healthz turns 200 once ready, a ready
line is logged, keys are never logged, and /v1/infer answers over the socket."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from quote_helpers import sim_trusts, verify_evidence

from bytereplay.encoding import b64url_encode
from bytereplay.home import Home
from verifier.tee.simulated import load_ca_pem

REPO = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_attester_process(tmp_path: Path) -> None:
    home = tmp_path / "home"
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bytereplay.cli", "serve", "attester", "--host", "127.0.0.1",
             "--port", str(port), "--home", str(home)],
            cwd=REPO, stdout=fh, stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = httpx.get(base + "/healthz", timeout=2).status_code
            except httpx.HTTPError:
                status = None
            if status == 200:
                break
            time.sleep(0.3)
        assert status == 200, log.read_text()
        nonce = b64url_encode(os.urandom(32))
        resp = httpx.post(base + "/v1/infer", timeout=60, json={
            "input": "Hi", "decode": {"max_new_tokens": 4}, "nonce": nonce, "format": "cwt"})
        assert resp.status_code == 200, resp.text
        pem = load_ca_pem(Home.resolve(home).simulated_ca)
        assert pem is not None
        verify_evidence(resp.json()["evidence"], sim_trusts(pem), "cwt")
        bad = httpx.post(base + "/v1/infer", content=b"{", timeout=10,
                         headers={"content-type": "application/json"})
        assert bad.status_code == 400
        assert bad.headers["content-type"].startswith("application/problem+json")
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text()
    assert "bytereplay attester ready on http://127.0.0.1:" in text
    assert "SIMULATED TEE" in text
    for pem_file in (Home.resolve(home).attester_key,
                     Home.resolve(home).simulated_ca / "ca-key.pem",
                     Home.resolve(home).simulated_ca / "attestation-key.pem"):
        secret = pem_file.read_text().splitlines()[1]
        assert secret not in text
    assert "PRIVATE KEY" not in text
