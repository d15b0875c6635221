"""Shared helpers for the verifier tests: one Engine per process, Evidence construction,
a real redis-server on a free loopback port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "fuzz"))
import kit

from attester.engine import Engine, EngineSettings, InferenceResult
from attester.testing import DECODE, PROMPT, TEMPLATE, EvidenceFactory, run, tamper_jwt
from bytereplay.home import Home
from verifier.config import VerifierConfig
from verifier.pipeline import Verifier

__all__ = ["DECODE", "PROMPT", "TEMPLATE", "EvidenceFactory", "tamper_jwt"]

OTHER_HASH = "sha-256:" + "ab" * 32
UNKNOWN_MODEL = "sha-256:" + "cd" * 32

_ENGINE: Engine | None = None
_RUNS: dict[str, InferenceResult] = {}


def shared_engine() -> Engine:
    """One float32 engine on the fixture model for the whole test process."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = Engine(EngineSettings())
    return _ENGINE


def engine_factory(settings: EngineSettings) -> Engine:
    """The verifier's engine factory: the shared engine where the settings allow it."""
    shared = shared_engine()
    s = shared.settings
    if (settings.device, settings.dtype, settings.threads, settings.controls) == \
            (s.device, s.dtype, s.threads, s.controls) and settings.model_dir is not None and \
            Path(settings.model_dir).resolve() == shared.model_dir.resolve():
        return shared
    return Engine(settings)


def generate(prompt: str = PROMPT, decode: dict[str, Any] | None = None) -> InferenceResult:
    """The shared engine's run for (prompt, decode), computed once per process."""
    return run(shared_engine(), prompt, decode, _RUNS)


def evidence_factory(home: Home) -> EvidenceFactory:
    """Evidence from the shared engine, signed with `home`'s attester key and simulated TEE."""
    return EvidenceFactory(home, shared_engine(), _RUNS)


def make_verifier(home: Home, *, nonce_store: Any = None, **overrides: Any) -> Verifier:
    config = VerifierConfig(home=home, **overrides)
    return Verifier(config, store=nonce_store, engine_factory=engine_factory)


def new_home(tmp_path: Path, name: str = "home") -> Home:
    return Home.resolve(tmp_path / name)


# -- redis ------------------------------------------------------------------------------


free_port = kit.free_port


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port, in a temp dir. FAILS (never skips)
    when redis-server is not installed: CI installs it (apt-get install redis-server)."""
    try:
        with kit.redis_server(tmp_path_factory.mktemp("redis")) as url:
            yield url
    except RuntimeError as exc:
        pytest.fail(str(exc))


def store_options(kind: str, request: pytest.FixtureRequest, prefix: str) -> dict[str, Any]:
    """Verifier options for a store kind: nothing for SQLite; the redis_url fixture and a
    key prefix of its own for Redis."""
    if kind != "redis":
        return {}
    return {"store": "redis", "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": prefix}


class Served:
    """The verifier sidecar app on a real loopback port (uvicorn in a thread)."""

    def __init__(self, verifier: Verifier) -> None:
        import threading
        import time

        import uvicorn

        from verifier.service import create_app

        self.port = free_port()
        config = uvicorn.Config(create_app(verifier.config, verifier=verifier), host="127.0.0.1",
                                port=self.port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while not self.server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)


CONTAINER = "sha256:" + "ab" * 32  # the container digest `attest_once` records


def attest_once(home: Home, provider_name: str, provider: Any,
                issued: Any, gpus: Any = None) -> tuple[str, bytes, str]:
    """One run through the real attester (`Attester.attest`, its own engine, a complete
    record: container, operator, verifier) with `provider` capturing the quote (and `gpus`,
    composite evidence, each GPU's), for the challenge `issued`: (Evidence, output bytes,
    nonce text)."""
    from attester.config import AttesterConfig
    from attester.service import Attester, parse_infer_body

    config = AttesterConfig(provider=provider_name, container_digest=CONTAINER,
                            operator="ops@example.org", verifier_ref="http://127.0.0.1:1")
    attester = Attester(config, home, provider=provider, gpus=gpus)
    attester.load_engine()
    challenge = issued.to_json()
    req = parse_infer_body({"input": "Say hello", "decode": {"max_new_tokens": 8},
                            "nonce": challenge["nonce"],
                            "challenge_window": {"issued_at": challenge["issued_at"],
                                                 "expires_at": challenge["expires_at"]}},
                           config)
    answer = attester.attest(req)
    return answer["evidence"], answer["output"].encode(), challenge["nonce"]
