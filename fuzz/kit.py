"""Shared kit for the fuzz targets, the attack / concurrency / restart tests and the load
benchmark: valid Evidence without running a model, hand-made COSE, real servers.

Evidence here is built from the fixture run record (no torch): its quote comes from the
simulated TEE of a `Home`, so a verifier started on the same home trusts it. It is valid
for every appraisal step except replay (run the verifier with `replay=false`).

    kit = EvidenceKit(home)
    token = kit.make(nonce)                  # JWT Evidence
    cwt = kit.make(nonce, fmt="cwt")         # COSE_Sign1 CWT Evidence
    claims = kit.claims(nonce)               # to tamper with, then kit.sign_*(claims, ...)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cbor2
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bytereplay import eat  # noqa: E402
from bytereplay.encoding import b64url_decode, b64url_encode, cbor_dumps, sha256_tag  # noqa: E402
from bytereplay.home import Home  # noqa: E402
from bytereplay.keys import SigningKey, load_or_create_key, thumbprint_bytes  # noqa: E402
from bytereplay.record import RunRecord  # noqa: E402

FIXTURE_RECORD = REPO / "fixtures" / "records" / "complete.json"
INPUT, TEMPLATE, OUTPUT = "What is 2 + 2?", "Q: {input}\nA:", b" 4, of course."
DECODE: dict[str, Any] = {"max_new_tokens": 16, "temperature": 0.7, "top_k": 40, "top_p": 0.9,
                          "seed": 7, "stop": ["\n\n"], "eos": True}
COSE_ALG = {"ES256": -7, "ES384": -35, "EdDSA": -8, "PS384": -38}


def fixture_record(output: bytes = OUTPUT) -> RunRecord:
    rec = RunRecord.from_json(FIXTURE_RECORD.read_bytes())
    return (rec.replace("input_hash", sha256_tag(INPUT.encode()))
               .replace("prompt_template_hash", sha256_tag(TEMPLATE.encode()))
               .replace("output_hash", sha256_tag(output)))


def claims_request() -> dict[str, Any]:
    """The `bytereplay.request` claim that fits `fixture_record()`."""
    from attester.evidence import request_claim

    return request_claim(INPUT, TEMPLATE, DECODE)


class EvidenceKit:
    """Evidence signed by the home's attester key and quoted by its simulated TEE."""

    def __init__(self, home: Home) -> None:
        from attester.tee.simulated import SimulatedProvider

        self.home = home
        self.key = load_or_create_key(home.attester_key)
        self.provider = SimulatedProvider(home.simulated_ca)
        self.record = fixture_record()

    def claims(self, nonce: bytes, *, record: RunRecord | None = None,
               cnf_key: SigningKey | None = None, quote_key: SigningKey | None = None,
               iat: int | None = None) -> dict[str, Any]:
        """Claims (JWT form) whose quote binds `nonce`, the record and `quote_key`
        (default: the cnf key)."""
        from attester.evidence import (
            build_claims,
            expected_report_data,
            measurements_for,
            request_claim,
        )

        record = record or self.record
        key = cnf_key or self.key
        quote = self.provider.quote(
            expected_report_data(nonce, record, (quote_key or key).jwk), measurements_for(record))
        return build_claims(record=record, nonce=nonce, key=key, quote=quote,
                            request=request_claim(INPUT, TEMPLATE, DECODE), iat=iat)

    def make(self, nonce: bytes, fmt: str = "jwt", **kw: Any) -> str | bytes:
        from attester.evidence import encode

        sign_key = kw.pop("sign_key", None)
        claims = self.claims(nonce, **kw)
        return encode(claims, sign_key or kw.get("cnf_key") or self.key, fmt)


    def make_for(self, challenge: Mapping[str, str], fmt: str = "jwt", **kw: Any) -> str | bytes:
        """Evidence answering a verifier's challenge (`{"nonce", "issued_at",
        "expires_at"}`, as `/v1/challenge` gives it): the record's challenge window is the
        challenge's, as the attester writes it."""
        record = (kw.pop("record", None) or self.record) \
            .replace("challenge_window.issued_at", challenge["issued_at"]) \
            .replace("challenge_window.expires_at", challenge["expires_at"])
        return self.make(b64url_decode(challenge["nonce"]), fmt, record=record, **kw)


# -- hand-made COSE_Sign1 ---------------------------------------------------------------


def jwk_to_cose_key(jwk: Mapping[str, Any]) -> dict[int, Any]:
    if jwk["kty"] == "EC":
        out: dict[int, Any] = {1: 2, -1: {"P-256": 1, "P-384": 2}[jwk["crv"]],
                               -2: b64url_decode(jwk["x"]), -3: b64url_decode(jwk["y"])}
    elif jwk["kty"] == "OKP":
        out = {1: 1, -1: 6, -2: b64url_decode(jwk["x"])}
    else:
        out = {1: 3, -1: b64url_decode(jwk["n"]), -2: b64url_decode(jwk["e"])}
    if jwk.get("alg") in COSE_ALG:
        out[3] = COSE_ALG[jwk["alg"]]
    return out


def claims_to_cbor(claims: Mapping[str, Any]) -> dict[Any, Any]:
    """JWT-form Evidence claims as the CWT claims map (integer labels, nonce as bytes)."""
    out: dict[Any, Any] = {}
    for name, value in claims.items():
        if name == eat.EAT_NONCE:
            value = b64url_decode(value)
        elif name == eat.CNF:
            value = {1: jwk_to_cose_key(value["jwk"])}
        out[eat.CWT_LABELS.get(name, name)] = value
    return out


def sig_structure(protected: bytes, payload: bytes) -> bytes:
    return cbor_dumps(["Signature1", protected, b"", payload])


def raw_sign(key: Any, data: bytes, alg: str = "ES256") -> bytes:
    """ES256/ES384 raw r||s, EdDSA; or HMAC when `key` is bytes."""
    if isinstance(key, bytes):
        import hmac as _hmac

        digest = {"HS256": "sha256", "HS384": "sha384", "HS512": "sha512"}.get(alg, "sha256")
        return _hmac.new(key, data, digest).digest()
    if isinstance(key, SigningKey):
        key = key.private
    if isinstance(key, ec.EllipticCurvePrivateKey):
        h = hashes.SHA384() if alg == "ES384" else hashes.SHA256()
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(h)))
        n = (key.curve.key_size + 7) // 8
        return r.to_bytes(n, "big") + s.to_bytes(n, "big")
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return bytes(key.sign(data))
    raise TypeError(type(key))


def cose_sign1(protected: dict[Any, Any] | bytes, payload: dict[Any, Any] | bytes, key: Any,
               *, unprotected: Any = None, alg: str = "ES256", tag: int | None = 18,
               signature: bytes | None = None) -> bytes:
    """A COSE_Sign1 message; maps given as dicts are encoded deterministically."""
    p = protected if isinstance(protected, bytes) else cbor_dumps(protected)
    body = payload if isinstance(payload, bytes) else cbor_dumps(payload)
    sig = signature if signature is not None else raw_sign(key, sig_structure(p, body), alg)
    msg = [p, {} if unprotected is None else unprotected, body, sig]
    return bytes(cbor2.dumps(cbor2.CBORTag(tag, msg) if tag is not None else msg,
                             canonical=True))


def evidence_cwt(claims: Mapping[str, Any], key: SigningKey, **kw: Any) -> bytes:
    """Well-formed CWT Evidence for JWT-form `claims`, signed with `key` (kid = thumbprint)."""
    protected = kw.pop("protected", None) or {1: COSE_ALG[key.alg], 4: thumbprint_bytes(key.jwk)}
    return cose_sign1(protected, claims_to_cbor(claims), key, **kw)


def jws(header: Mapping[str, Any] | bytes, payload: Mapping[str, Any] | bytes, key: Any,
        alg: str = "ES256") -> str:
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    p = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    si = b64url_encode(h) + "." + b64url_encode(p)
    return si + "." + b64url_encode(raw_sign(key, si.encode(), alg))


def public_pem(key: SigningKey) -> bytes:
    return bytes(key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen[bytes] | None = None, timeout: float = 60.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout} s")
        time.sleep(0.05)


class Server:
    """`bytereplay serve <role>` in a subprocess on a free loopback port."""

    def __init__(self, role: str, home: Path, *, port: int | None = None,
                 config: Path | None = None, log: Path | None = None,
                 env: Mapping[str, str] | None = None, args: Sequence[str] = ()) -> None:
        self.role, self.home = role, Path(home)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "bytereplay.cli", "serve", role, "--host", "127.0.0.1",
               "--port", str(self.port), "--home", str(self.home)]
        if config is not None:
            cmd += ["--config", str(config)]
        cmd += list(args)
        self.log_path = log or (self.home / f"{role}-{self.port}.log")
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self._log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})

    def wait(self, timeout: float = 60.0) -> Server:
        try:
            wait_http(self.url + "/healthz", self.proc, timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n--- {self.log_path}:\n{self.log_text()[-3000:]}") from None
        return self

    def log_text(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self._log.close()


@contextlib.contextmanager
def redis_server(workdir: Path, *, port: int | None = None,
                 persist: bool = False) -> Iterator[str]:
    """A real redis-server on loopback (`port`, or a free one) in `workdir`; yields its
    URL. `persist`: an append-only file in `workdir`, so a server started again there
    finds what the last one had (it is written out when the server is stopped).

    Raises RuntimeError (callers turn it into a test FAILURE, never a skip) when
    redis-server is not installed."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server): "
                           "the Redis concurrency and restart checks need a real server")
    import redis

    port = port or free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(workdir),
         "--save", "", "--appendonly", "yes" if persist else "no",
         "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 15
    try:
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {port}") from None
                time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def forged_snp_quote(report_data: bytes, measurements: dict[str, str]) -> dict[str, Any]:
    """An SEV-SNP 'report' anyone can write: zeros, version 2, the chosen report data.
    Its hardware signature is never checked without vendor collateral."""
    import struct

    blob = bytearray(0x4A0)
    struct.pack_into("<I", blob, 0, 2)
    blob[0x50:0x90] = report_data
    return {"provider": "tsm", "simulated": False, "kernel_provider": "sev_guest",
            "tee": "sev-snp", "generation": 1, "outblob": b64url_encode(bytes(blob)),
            "software_measurements": measurements}
