"""Both services: one request log line per request (refusals included), text and JSON
formats; /openapi.json and a /docs page with no outside URL; a busy port is one error
line and exit 2 through `bytereplay serve`."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from verifier_fixtures import evidence_factory, free_port, make_verifier, new_home, shared_engine

from attester.config import AttesterConfig
from attester.service import Attester
from attester.service import create_app as attester_app
from bytereplay.encoding import b64url_decode, b64url_encode
from bytereplay.errors import UsageError
from bytereplay.home import Home
from bytereplay.web.access_log import ACCESS_LOGGER, AccessLog, JsonFormatter, access_fields, formatter
from bytereplay.web.apidocs import DOCS_HEADERS, DOCS_HTML
from bytereplay.web.serving import bind
from verifier.service import create_app as verifier_app

REPO = Path(__file__).resolve().parent.parent
JWT = "application/eat+jwt"
NONCE = b64url_encode(bytes(range(32)))
TEXT_LINE = re.compile(r"^\S+ \S+ INFO bytereplay\.access: method=(?P<method>[A-Z]+) "
                       r"path=(?P<path>\S+) status=(?P<status>\d{3}) "
                       r"duration_ms=(?P<ms>\d+(\.\d+)?)(?P<rest>( \w+=\S+)*)$")


class Captured:
    """The access logger's lines, formatted as `bytereplay serve` writes them."""

    def __init__(self) -> None:
        self.text, self.json = io.StringIO(), io.StringIO()
        self.handlers = []
        for stream, fmt in ((self.text, "text"), (self.json, "json")):
            handler = logging.StreamHandler(stream)
            handler.setFormatter(formatter(fmt))
            self.handlers.append(handler)

    def __enter__(self) -> Captured:
        logger = logging.getLogger(ACCESS_LOGGER)
        self.level = logger.level
        logger.setLevel(logging.INFO)
        for h in self.handlers:
            logger.addHandler(h)
        return self

    def __exit__(self, *exc: object) -> None:
        logger = logging.getLogger(ACCESS_LOGGER)
        for h in self.handlers:
            logger.removeHandler(h)
        logger.setLevel(self.level)

    def text_lines(self) -> list[dict[str, str]]:
        out = []
        for line in self.text.getvalue().splitlines():
            m = TEXT_LINE.match(line)
            assert m, line
            doc = m.groupdict()
            doc.update(kv.split("=", 1) for kv in doc.pop("rest").split())
            out.append(doc)
        return out

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json.getvalue().splitlines()]


def _check_lines(cap: Captured, sent: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """Exactly one text and one JSON line per request sent, in order, with its method,
    path, status and a duration; the JSON lines returned."""
    text, docs = cap.text_lines(), cap.json_lines()
    assert len(text) == len(docs) == len(sent) == 20
    for (method, path, status), line, doc in zip(sent, text, docs, strict=True):
        assert (line["method"], line["path"], int(line["status"])) == (method, path, status)
        assert (doc["method"], doc["path"], doc["status"]) == (method, path, status)
        assert doc["logger"] == ACCESS_LOGGER and doc["level"] == "info"
        assert isinstance(doc["duration_ms"], float) and doc["duration_ms"] >= 0
        assert float(line["ms"]) >= 0 and doc["time"].endswith("Z")
    return docs


# -- the verifier: 20 requests, refusals included ------------------------------------------

@pytest.fixture(scope="module")
def verifier_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[
        tuple[TestClient, Home]]:
    home = new_home(tmp_path_factory.mktemp("logs-verifier"))
    verifier = make_verifier(home, max_evidence_bytes=64 * 1024)
    with TestClient(verifier_app(verifier.config, verifier=verifier),
                    raise_server_exceptions=False) as client:
        yield client, home


def test_verifier_logs_every_request(verifier_client: tuple[TestClient, Home]) -> None:
    client, home = verifier_client
    factory = evidence_factory(home)
    sent: list[tuple[str, str, int]] = []

    def go(method: str, path: str, want: int, route: str | None = None,
           **kw: Any) -> httpx.Response:
        r = client.request(method, path, **kw)
        assert r.status_code == want, r.text
        sent.append((method, route or path.split("?")[0], want))
        return r

    with Captured() as cap:
        nonce = go("POST", "/v1/challenge", 200).json()["nonce"]
        evidence = factory.make(b64url_decode(nonce))
        answer = go("POST", "/v1/verify", 200, content=evidence, headers={"content-type": JWT})
        assert (answer.json()["status"], answer.json()["replay"]["verdict"]) == ("warning", "match")
        go("POST", "/v1/verify?replay=false", 200, content=evidence,
           headers={"content-type": JWT})  # the nonce is spent: a negative EAR
        go("POST", "/v1/verify?replay=false", 200, json={"evidence": "x.y.z"})
        go("POST", "/v1/verify", 400, content=b"{bad", headers={"content-type": "application/json"})
        go("POST", "/v1/verify", 415, content=b"abc", headers={"content-type": "text/plain"})
        go("POST", "/v1/verify", 413, content=b"A" * (200 * 1024), headers={"content-type": JWT})
        go("POST", "/v1/verify?replay=maybe", 400, content=evidence,
           headers={"content-type": JWT})
        go("POST", "/v1/challenge", 400, json={"size": 4})
        go("POST", "/v1/challenge", 415, content=b"size=8", headers={"content-type": "text/plain"})
        go("GET", "/v1/results/abcdefgh12345678", 404, route="/v1/results/{result_id}")
        go("GET", "/no/such/path", 404)
        go("DELETE", "/v1/challenge", 405)
        go("POST", "/v1/external/verify", 400, content=b"[", headers={"content-type": "application/json"})
        go("GET", "/.well-known/jwks.json", 200)
        go("GET", "/v1/info", 200)
        go("GET", "/healthz", 200)
        go("GET", "/metrics", 200)
        go("GET", "/openapi.json", 200)
        go("GET", "/docs", 200)
    docs = _check_lines(cap, sent)
    verifies = [d for d in docs if d["path"] == "/v1/verify" and d["status"] == 200]
    assert [(d["ear_status"], d["replay"]) for d in verifies] == [
        ("warning", "match"), ("contraindicated", "not-run"), ("contraindicated", "not-run")]
    texts = [t for t in cap.text_lines() if t["path"] == "/v1/verify" and t["status"] == "200"]
    assert (texts[0]["ear_status"], texts[0]["replay"]) == ("warning", "match")
    for d in docs:  # refusals and other routes carry no verify fields
        if d not in verifies:
            assert "ear_status" not in d and "replay" not in d
    # nothing of the evidence, the nonce, the query string or the result id is logged
    logged = cap.text.getvalue() + cap.json.getvalue()
    for secret in (str(evidence)[:40], str(evidence).split(".")[2][:20], nonce,
                   "abcdefgh12345678", "replay=false", "maybe", "x.y.z"):
        assert secret not in logged


def test_verifier_async_verify_is_noted_pending(verifier_client: tuple[TestClient, Home]) -> None:
    client, home = verifier_client
    nonce = client.post("/v1/challenge").json()["nonce"]
    evidence = evidence_factory(home).make(b64url_decode(nonce))
    with Captured() as cap:
        r = client.post("/v1/verify?async=true&replay=false", content=evidence,
                        headers={"content-type": JWT})
        assert r.status_code == 202
    (doc,) = cap.json_lines()
    assert (doc["status"], doc["ear_status"], doc["replay"]) == (202, "pending", "pending")


# -- the attester: 20 requests, refusals included ------------------------------------------

@pytest.fixture(scope="module")
def attester_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    config = AttesterConfig(max_body_bytes=4096, max_new_tokens=8)
    svc = Attester(config, Home.resolve(tmp_path_factory.mktemp("logs-attester")),
                   engine=shared_engine())
    with TestClient(attester_app(config, attester=svc), raise_server_exceptions=False) as client:
        yield client


def test_attester_logs_every_request(attester_client: TestClient) -> None:
    client = attester_client
    sent: list[tuple[str, str, int]] = []
    ok = {"input": "Hi", "decode": {"max_new_tokens": 2}, "nonce": NONCE}

    def go(method: str, path: str, want: int, **kw: Any) -> httpx.Response:
        r = client.request(method, path, **kw)
        assert r.status_code == want, r.text
        sent.append((method, path.split("?")[0], want))
        return r

    with Captured() as cap:
        answer = go("POST", "/v1/infer", 200, json=ok)
        go("POST", "/v1/infer", 200, json=ok | {"format": "cwt"})
        go("POST", "/v1/infer", 400, content=b"{", headers={"content-type": "application/json"})
        go("POST", "/v1/infer", 400, json=ok | {"extra": 1})
        go("POST", "/v1/infer", 400, json={"input": "Hi"})
        go("POST", "/v1/infer", 400, json=ok | {"nonce": "not base64url!"})
        go("POST", "/v1/infer", 400, json=[])
        go("POST", "/v1/infer", 415, content=b"input=Hi", headers={"content-type": "text/plain"})
        go("POST", "/v1/infer", 413, content=b"x" * 5000,
           headers={"content-type": "application/json"})
        go("POST", "/v1/infer?token=s3cret", 413, json={"input": "y" * 5000, "nonce": NONCE})
        go("GET", "/v1/infer", 405)
        go("GET", "/nothing-here", 404)
        go("GET", "/v1/nothing", 404)
        go("GET", "/healthz", 200)
        go("GET", "/v1/info", 200)
        go("GET", "/openapi.json", 200)
        go("GET", "/docs", 200)
        go("GET", "/redoc", 307, follow_redirects=False)
        go("PUT", "/healthz", 405)
        go("POST", "/v1/infer", 400, content=b'{"input": "a", "input": "b", "nonce": "AAAAAAAAAAA"}',
           headers={"content-type": "application/json"})
    docs = _check_lines(cap, sent)
    assert all(set(d) == {"time", "level", "logger", "message", "method", "path", "status",
                          "duration_ms"} for d in docs)
    logged = cap.text.getvalue() + cap.json.getvalue()
    for secret in (NONCE, "s3cret", "token=", answer.json()["evidence"][:40],
                   answer.json()["output_hash"]):
        assert secret not in logged


# -- the middleware on its own ----------------------------------------------------------------

def test_access_line_cannot_be_forged_and_app_errors_are_500() -> None:
    scope: dict[str, Any] = {"type": "http", "method": "GET", "path": "/x\ny",
                             "raw_path": b"/x\nINFO forged=1 " + b"z" * 500}
    fields = access_fields(scope, 404, 0.001)
    assert "\n" not in fields["path"] and " " not in fields["path"]
    assert fields["path"].startswith("/x%0AINFO") and len(fields["path"]) <= 200
    assert fields["duration_ms"] == 1.0

    async def broken(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    import asyncio

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("test.access")
    logger.addHandler(Keep())
    logger.setLevel(logging.INFO)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        pass

    with pytest.raises(RuntimeError):
        asyncio.run(AccessLog(broken, logger)({"type": "http", "method": "GET", "path": "/",
                                               "raw_path": b"/"}, receive, send))
    (record,) = records
    line = json.loads(JsonFormatter().format(record))
    assert (line["method"], line["path"], line["status"]) == ("GET", "/", 500)


# -- /openapi.json and /docs -----------------------------------------------------------------

def _check_docs(client: TestClient, paths: dict[str, str]) -> dict[str, Any]:
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.text == DOCS_HTML
    assert "default-src 'none'" in r.headers["content-security-policy"]
    assert r.headers["content-security-policy"] == DOCS_HEADERS["Content-Security-Policy"]
    assert not re.search(r"https?:|//[a-z0-9]", r.text, re.IGNORECASE)  # no outside URL
    assert not re.search(r"<(link|img|iframe)\b|\bsrc=|@import", r.text, re.IGNORECASE)
    assert 'fetch("openapi.json"' in r.text
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    assert doc["openapi"].startswith("3.")
    assert "/docs" not in doc["paths"] and "/redoc" not in doc["paths"]
    assert doc["components"]["schemas"]["Problem"]["required"] == ["type", "title", "status",
                                                                   "detail"]
    for path, method in paths.items():
        op = doc["paths"][path][method]
        assert op["summary"]
        assert "422" not in op["responses"]
        for code, answer in op["responses"].items():
            assert answer["description"]
            assert len(answer["content"]) == 1  # no stray empty application/json
            if code.startswith("4"):
                assert list(answer["content"]) == ["application/problem+json"]
    return doc


def test_verifier_openapi_and_docs(verifier_client: tuple[TestClient, Home]) -> None:
    client, _ = verifier_client
    doc = _check_docs(client, {"/v1/challenge": "post", "/v1/verify": "post",
                               "/v1/results/{result_id}": "get", "/v1/external/verify": "post",
                               "/.well-known/jwks.json": "get", "/v1/info": "get",
                               "/healthz": "get", "/metrics": "get"})
    verify = doc["paths"]["/v1/verify"]["post"]
    body = verify["requestBody"]["content"]
    assert set(body) == {JWT, "application/eat+cwt", "application/json"}
    assert body["application/json"]["schema"]["required"] == ["evidence"]
    assert {p["name"] for p in verify["parameters"]} == {"replay", "async", "Accept"}
    ok = verify["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["required"]) == {"result", "status", "replay"}
    assert "match" in ok["properties"]["replay"]["properties"]["verdict"]["enum"]
    assert verify["responses"]["202"]["headers"]["Location"]
    for code in ("400", "413", "415"):
        problem = verify["responses"][code]["content"]["application/problem+json"]["schema"]
        assert problem == {"$ref": "#/components/schemas/Problem"}
    challenge = doc["paths"]["/v1/challenge"]["post"]
    assert challenge["requestBody"]["required"] is False
    assert set(challenge["responses"]["200"]["content"]["application/json"]["schema"][
        "required"]) == {"nonce", "issued_at", "expires_at"}
    assert doc["paths"]["/v1/external/verify"]["post"]["requestBody"]["content"][
        "application/json"]["schema"]["required"] == ["token"]


def test_attester_openapi_and_docs(attester_client: TestClient) -> None:
    doc = _check_docs(attester_client, {"/v1/infer": "post", "/v1/info": "get",
                                        "/healthz": "get"})
    infer = doc["paths"]["/v1/infer"]["post"]
    schema = infer["requestBody"]["content"]["application/json"]["schema"]
    assert infer["requestBody"]["required"] is True
    assert schema["required"] == ["input", "nonce"] and schema["additionalProperties"] is False
    assert set(schema["properties"]) == {"input", "template", "decode", "nonce",
                                         "challenge_window", "format"}
    assert schema["properties"]["decode"]["properties"]["max_new_tokens"]["maximum"] == 8
    answer = infer["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(answer["required"]) == {"output", "output_hash", "evidence", "evidence_format"}
    assert set(infer["responses"]) >= {"200", "400", "413", "415", "503"}
    r = attester_client.get("/redoc", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "docs"


# -- bytereplay serve: busy port, ready line, JSON lines --------------------------------------

def _bytereplay() -> list[str]:
    exe = Path(sys.executable).parent / "bytereplay"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "bytereplay.cli"]


@pytest.mark.parametrize("role", ["verifier", "attester"])
@pytest.mark.parametrize("log_format", ["text", "json"])
def test_busy_port_is_one_line_and_exit_2(tmp_path: Path, role: str, log_format: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = subprocess.run(
            [*_bytereplay(), "serve", role, "--host", "127.0.0.1", "--port", str(port),
             "--home", str(tmp_path / "home"), "--log-format", log_format],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0] == (f"bytereplay: error: cannot listen on 127.0.0.1:{port}: the port is "
                        "already in use (stop the other process or choose another --port)")
    assert "listening" not in proc.stderr and "Errno" not in proc.stderr


def test_bind_claims_the_port_at_once() -> None:
    """Two services started together: the second is refused at its check, not later."""
    first = bind("127.0.0.1", 0)
    try:
        port = first[0].getsockname()[1]
        with pytest.raises(UsageError, match="already in use"):
            bind("127.0.0.1", port)
    finally:
        for sock in first:
            sock.close()
    for host, port in (("127.0.0.1", 70000), ("no-such-host.invalid", 8000)):
        with pytest.raises(UsageError, match=r"--port|--host"):
            bind(host, port)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], check: Callable[[], str]) -> None:
    deadline = time.monotonic() + 60
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            assert proc.poll() is None, check()
            try:
                if client.get("/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the verifier did not become healthy"
            time.sleep(0.1)


def test_serve_verifier_json_lines(tmp_path: Path) -> None:
    port = free_port()
    err = tmp_path / "stderr"
    with open(err, "wb") as fh:
        proc = subprocess.Popen(
            [*_bytereplay(), "serve", "verifier", "--host", "127.0.0.1", "--port", str(port),
             "--home", str(tmp_path / "home"), "--log-format", "json"],
            stdout=subprocess.PIPE, stderr=fh, cwd=tmp_path,
            env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, err.read_text)
        with httpx.Client(base_url=url, timeout=10) as client:
            assert client.get("/docs").status_code == 200
            assert client.get("/openapi.json").status_code == 200
            assert client.post("/v1/verify", content=b"x",
                               headers={"content-type": "text/plain"}).status_code == 415
            assert client.post("/v1/verify?replay=false", content=b"a.b.c",
                               headers={"content-type": JWT}).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    lines = [json.loads(line) for line in err.read_text().splitlines()]  # every line is JSON
    messages = [d["message"] for d in lines]
    listening = [i for i, m in enumerate(messages) if m == f"verifier listening on {url}"]
    assert len(listening) == 1
    assert any(m.startswith("verifier home ") for m in messages[:listening[0]])
    access = [d for d in lines if d["logger"] == ACCESS_LOGGER and d["path"] != "/healthz"]
    assert [(d["method"], d["path"], d["status"]) for d in access] == [
        ("GET", "/docs", 200), ("GET", "/openapi.json", 200), ("POST", "/v1/verify", 415),
        ("POST", "/v1/verify", 200)]
    assert (access[-1]["ear_status"], access[-1]["replay"]) == ("contraindicated", "not-run")
    assert all(isinstance(d["duration_ms"], float) for d in access)
