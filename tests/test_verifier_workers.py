"""`bytereplay serve verifier --workers 2`: two processes on one loopback port.

A real subprocess. Each answer says which process gave it (`/v1/info` `process.pid`
on the same keep-alive connection), so the test can address each process:
- both processes answer, and share the signing key (one kid, one JWKS);
- a nonce consumed through one process is refused (reused) by the other, on SQLite
  (the default) and on a real Redis;
- a `bytereplay keys rotate` on the home is picked up by both processes.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import kit
from verifier_fixtures import redis_url

from bytereplay.home import Home
from bytereplay.jose import parse_unverified

REPO = Path(__file__).resolve().parent.parent
__all__ = ["redis_url"]  # the fixture, imported for pytest


class Conn:
    """One keep-alive connection, hence one serving process."""

    def __init__(self, port: int) -> None:
        self.http = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.pid = int(self.get("/v1/info")["process"]["pid"])

    def request(self, method: str, path: str, body: bytes | None = None,
                ctype: str = "application/json") -> tuple[int, Any]:
        self.http.request(method, path, body=body, headers={"content-type": ctype})
        r = self.http.getresponse()
        return r.status, json.loads(r.read())

    def get(self, path: str) -> Any:
        status, doc = self.request("GET", path)
        assert status == 200, doc
        return doc

    def verify(self, evidence: str | bytes) -> dict[str, Any]:
        body = evidence if isinstance(evidence, bytes) else evidence.encode()
        status, doc = self.request("POST", "/v1/verify?replay=false", body,
                                   "application/eat+jwt")
        assert status == 200, doc
        result: dict[str, Any] = doc
        return result


def one_per_process(port: int, workers: int = 2, tries: int = 200) -> dict[int, Conn]:
    """A connection to each process: new connections until each pid has one."""
    conns: dict[int, Conn] = {}
    spare: list[Conn] = []
    for _ in range(tries):
        c = Conn(port)
        if c.pid in conns:
            spare.append(c)  # kept open, so the next connection may land elsewhere
        else:
            conns[c.pid] = c
        if len(conns) == workers:
            break
    for c in spare:
        c.http.close()
    assert len(conns) == workers, f"only processes {sorted(conns)} answered {tries} connections"
    return conns


def _kid(token: str) -> str:
    return str(parse_unverified(token)[0]["kid"])


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_two_processes_share_nonces_and_key(store: str, tmp_path: Path,
                                            request: pytest.FixtureRequest) -> None:
    home = Home.resolve(tmp_path / "home")
    ek = kit.EvidenceKit(home)
    section: dict[str, Any] = {"replay": False}
    if store == "redis":
        section.update(store="redis", redis_url=request.getfixturevalue("redis_url"),
                       redis_prefix=f"br-workers-{tmp_path.name}:")
    config = tmp_path / "verifier.json"
    config.write_text(json.dumps({"verifier": section}))
    server = kit.Server("verifier", home.root, config=config, args=["--workers", "2"])
    try:
        server.wait()
        a, b = one_per_process(server.port).values()
        assert a.pid != b.pid and server.proc.pid not in (a.pid, b.pid)
        assert a.get("/.well-known/jwks.json") == b.get("/.well-known/jwks.json")
        assert a.get("/v1/info")["ear"]["kid"] == b.get("/v1/info")["ear"]["kid"]
        for first, second in ((a, b), (b, a)):
            _status, challenge = first.request("POST", "/v1/challenge", b"{}")
            evidence = ek.make_for(challenge)
            ok = first.verify(evidence)
            assert ok["status"] == "warning", ok  # simulated TEE: warning at best
            again = second.verify(evidence)  # the other process: the same nonce
            assert again["status"] == "contraindicated", again
            claims = parse_unverified(again["result"])[1]
            assert "already used" in json.dumps(claims), claims
            assert _kid(ok["result"]) == _kid(again["result"])
        # A nonce issued by one process is good once in the other.
        _status, challenge = a.request("POST", "/v1/challenge", b"{}")
        assert b.verify(ek.make_for(challenge))["status"] == "warning"

        # A rotation on the home reaches both processes (each re-reads the ring).
        old = a.get("/v1/info")["ear"]["kid"]
        r = subprocess.run([sys.executable, "-m", "bytereplay.cli", "keys", "rotate", "--home",
                            str(home.root), "--json"], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 0, r.stderr
        new = json.loads(r.stdout)["current"]
        deadline = time.monotonic() + 20
        for conn in (a, b):
            while conn.get("/v1/info")["ear"]["kid"] != new:
                assert time.monotonic() < deadline, "a process kept the old key"
                time.sleep(0.2)
            kids = [k["kid"] for k in conn.get("/.well-known/jwks.json")["keys"]]
            assert kids == [new, old]
            _status, challenge = conn.request("POST", "/v1/challenge", b"{}")
            assert _kid(conn.verify(ek.make_for(challenge))["result"]) == new
        assert server.proc.poll() is None, server.log_text()[-2000:]
        log = server.log_text()
        assert "listening on" in log and "(2 processes)" in log
        assert "PRIVATE KEY" not in log
    finally:
        server.stop()
    assert server.proc.returncode == 0, server.log_text()[-2000:]


def test_workers_must_be_positive(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "bytereplay.cli", "serve", "verifier", "--port",
                        "0", "--home", str(tmp_path), "--workers", "0"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == "bytereplay: error: --workers 0: expected at least 1"
