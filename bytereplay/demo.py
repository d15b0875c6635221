"""`bytereplay demo`: the whole flow on the embedded defaults.

The fixture model, the simulated TEE and SQLite; an attester and a verifier served by
uvicorn on loopback ports in this process; the relying party as a library. It shows:

1. challenge -> infer -> preflight checklist of the run record,
2. verify (with replay) -> the decoded EAR,
3. the relying party's decision: allow, the claim, what it does not cover,
4. the same result with a tampered output: deny,
5. a run recorded in a different environment (bfloat16) replayed by the float32
   verifier: `inconclusive`, with the differing field named.

Exit 0 when every step shows what it should, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

import requests

from bytereplay.claims import INCONCLUSIVE, MATCH
from bytereplay.ear import EXTENSION_KEY, EXTENSION_PREFIX, PREFLIGHT, SUBMOD, peek
from bytereplay.evidence import decode_evidence
from bytereplay.home import Home
from bytereplay.preflight import preflight

PROMPT = "Replay the bytes before you trust the answer."
# Sampled decoding: a bfloat16 run then differs from the float32 replay (greedy decoding
# on the tiny fixture model gives the same bytes in both precisions).
DECODE: dict[str, Any] = {"max_new_tokens": 24, "temperature": 0.8, "top_k": 0, "top_p": 1.0,
                          "seed": 3, "stop": []}
RULE = "=" * 78
OPERATOR = "demo@bytereplay.local"


def _say(text: str) -> None:
    print(text, flush=True)


def _step(n: int, title: str) -> None:
    _say(f"\n{RULE}\n{n}. {title}\n{RULE}")


class _LoopbackServer:
    """A uvicorn server on a free 127.0.0.1 port (bound at once, so its URL is known before
    the app exists), run in a background thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server: Any = None
        self.thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, app: Any, timeout: float = 120.0) -> None:
        import uvicorn

        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       name=f"demo-{self.name}", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the {self.name} did not become ready on {self.url}")

    def stop(self) -> None:
        if self.server is not None and self.thread is not None:
            self.server.should_exit = True
            self.thread.join(timeout=10)
        self.sock.close()


@contextlib.contextmanager
def _served(server: _LoopbackServer, app: Any) -> Iterator[_LoopbackServer]:
    try:
        server.start(app)
        yield server
    finally:
        server.stop()


def _post_json(url: str, body: Any) -> Any:
    resp = requests.post(url, json=body, timeout=300)
    if resp.status_code >= 400:
        raise RuntimeError(f"POST {url} -> {resp.status_code}: {resp.text}")
    return resp.json()


def _challenge(verifier_url: str) -> dict[str, Any]:
    value: dict[str, Any] = _post_json(f"{verifier_url}/v1/challenge", {})
    return value


def _verify(verifier_url: str, evidence: str) -> dict[str, Any]:
    resp = requests.post(f"{verifier_url}/v1/verify", data=evidence.encode("ascii"),
                         headers={"Content-Type": "application/eat+jwt"}, timeout=600)
    if resp.status_code != 200:
        raise RuntimeError(f"verify -> {resp.status_code}: {resp.text}")
    value: dict[str, Any] = resp.json()
    return value


def _ear_for_display(token: str) -> dict[str, Any]:
    """The EAR claims, with the long preflight report cut to its summary."""
    claims = peek(token)
    sub = claims.get("submods", {}).get(SUBMOD, {})
    # draft-04 nests bytereplay's claims under one key, without their prefix; legacy does not
    nested = sub.get(EXTENSION_KEY)
    holder, name = (nested, PREFLIGHT.removeprefix(EXTENSION_PREFIX)) \
        if isinstance(nested, dict) else (sub, PREFLIGHT)
    report = holder.get(name)
    if isinstance(report, dict):
        holder[name] = {"complete": report.get("complete"), "missing": report.get("missing")}
    return claims


def _infer_body(challenge: dict[str, Any]) -> dict[str, Any]:
    return {"input": PROMPT, "decode": DECODE, "nonce": challenge["nonce"],
            "challenge_window": {"issued_at": challenge["issued_at"],
                                 "expires_at": challenge["expires_at"]}}


def run_demo(home: Home) -> bool:
    from attester.config import AttesterConfig
    from attester.engine import Engine, EngineSettings
    from attester.service import Attester, parse_infer_body
    from attester.service import create_app as attester_app
    from relying_party import evaluate
    from verifier.config import from_dict
    from verifier.service import create_app as verifier_app

    ok = True
    _step(1, "Set-up: the default model (SmolLM2-135M-Instruct), simulated TEE, SQLite, loopback")
    _say(f"state directory: {home.root}")
    # Run outside a container: the container digest stays missing and the claim says so.
    engine = Engine(EngineSettings(operator=OPERATOR), progress=lambda msg: _say(f"  [model] {msg}"))
    _say(f"model {engine.model_id} {engine.model_digest}")
    ver_server, att_server = _LoopbackServer("verifier"), _LoopbackServer("attester")
    # The attester creates the simulated platform CA in the home on first start; the
    # verifier, started afterwards with the same home, trusts it (and says so).
    attester_cfg = AttesterConfig(provider="simulated", operator=OPERATOR,
                                  verifier_ref=ver_server.url)
    attester = Attester(attester_cfg, home, engine=engine)
    verifier_cfg = from_dict({}, home)

    with _served(ver_server, verifier_app(verifier_cfg)) as ver:
        with _served(att_server, attester_app(attester_cfg, attester=attester)) as att:
            _say(f"verifier on {ver.url}, attester on {att.url} (SIMULATED TEE, not hardware)")

            _step(2, "Challenge, a question over the OpenAI API, and the run record's preflight checklist")
            challenge = _challenge(ver.url)
            _say(f"nonce {challenge['nonce']} (expires {challenge['expires_at']})")
            from attester.demo_chat import ask  # a real question, over the OpenAI API

            answer = ask(att.url, engine.model_id, challenge, say=_say)
            output = answer["output"].encode("utf-8")
            _say(f"output ({len(output)} bytes): {answer['output']!r}")
            _say(f"output hash: {answer['output_hash']}")
            record = decode_evidence(answer["evidence"], "jwt").record
            _say(f"run record {record.digest()}")
            _say(preflight(record, policy="default").render())

            _step(3, "Verify: quote, signatures, nonce, preflight, replay -> signed EAR")
            _say("[replay] re-running the recorded request in the verifier's environment ...")
            verified = _verify(ver.url, answer["evidence"])
            _say(f"status: {verified['status']}, replay: {json.dumps(verified['replay'])}")
            _say("decoded EAR (preflight report cut to its summary):")
            _say(json.dumps(_ear_for_display(verified["result"]), indent=2))
            ok &= verified["replay"].get("verdict") == MATCH

            _step(4, "Relying party: evaluate(ear, output=..., policy='default')")
            jwks = f"{ver.url}/.well-known/jwks.json"
            decision = evaluate(verified["result"], output=output, policy="default",
                                verifier_keys=jwks, expected_nonce=challenge["nonce"])
            _say(decision.render())
            ok &= decision.allow

            _step(5, "The same result with a tampered output")
            tampered = evaluate(verified["result"], output=output + b" (edited)", policy="default",
                                verifier_keys=jwks, expected_nonce=challenge["nonce"])
            _say(tampered.render())
            ok &= not tampered.allow

        _step(6, "A run recorded in a different environment (bfloat16), replayed in float32")
        bf16 = Engine(EngineSettings(dtype="bfloat16", operator=OPERATOR),
                      progress=lambda msg: _say(f"  [model, bfloat16] {msg}"))
        bf16_cfg = AttesterConfig(provider="simulated", operator=OPERATOR,
                                  verifier_ref=ver.url, dtype="bfloat16")
        bf16_attester = Attester(bf16_cfg, home, engine=bf16)
        challenge = _challenge(ver.url)
        answer = bf16_attester.attest(parse_infer_body(_infer_body(challenge), bf16_cfg))
        _say(f"bfloat16 output hash: {answer['output_hash']}")
        _say("[replay] re-running the recorded request in the verifier's environment ...")
        verified = _verify(ver.url, answer["evidence"])
        _say(f"status: {verified['status']}, replay: {json.dumps(verified['replay'])}")
        decision = evaluate(verified["result"], output=answer["output"].encode("utf-8"),
                            policy="default", verifier_keys=f"{ver.url}/.well-known/jwks.json",
                            expected_nonce=challenge["nonce"])
        _say(decision.render())
        replay = verified["replay"]
        ok &= replay.get("verdict") == INCONCLUSIVE
        ok &= any(d.get("field") == "dtype" for d in replay.get("environment_diff", []))
    return bool(ok)


def cmd_demo(args: argparse.Namespace) -> int:
    with contextlib.ExitStack() as stack:
        if args.home:
            home = Home.resolve(args.home)
        else:
            home = Home.resolve(stack.enter_context(tempfile.TemporaryDirectory(prefix="bytereplay-demo-")))
        started = time.monotonic()
        ok = run_demo(home)
        _say(f"\n{RULE}")
        took = time.monotonic() - started
        if ok:
            _say(f"demo complete in {took:.1f} s: allow with its claim, deny for a tampered output, "
                 "inconclusive for a differing recorded environment.")
            return 0
        _say(f"demo FAILED after {took:.1f} s: a step did not show what it should (see above).")
        return 1


if __name__ == "__main__":
    sys.exit(cmd_demo(argparse.Namespace(home=None)))
