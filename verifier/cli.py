"""`bytereplay verify EVIDENCE [--no-replay] [--replay-method M] [--format jwt|cwt] [--home]
[--config] [--json]`.

Appraises Evidence in-process with the same pipeline as the sidecar and prints the EAR
(decoded) and its status. EVIDENCE is a file (or `-` for stdin) holding a JWT, a CWT
(binary or unpadded base64url text), or the attester's JSON answer
(`{"evidence", "evidence_format", ...}` from `/v1/infer` or `bytereplay attest`), or
what `bytereplay attest --out FILE` wrote. A file of no such shape is a usage error:
one line naming what was expected, exit 2, never a negative EAR.

Nonces: the command did not issue the Evidence's nonce. It runs with
`nonce_mode = "store-if-known"`: when the home's store (the one `bytereplay serve
verifier` uses with the same home and configuration) issued the nonce, it is consumed
there as usual (a reused or expired nonce is refused); when the store never saw it, the
nonce is reported `not checked` and instance-identity stays at warning, so the status is
warning at best.

The run is replayed, as the sidecar does; `--no-replay` skips it (verdict `not-run`).
Exit status: 0 when the status is affirming or warning, 1 when it is contraindicated or
none, 2 on bad input.

`--verifier URL` sends the Evidence to a verifier's Veraison challenge-response API
instead (`bytereplay.veraison_client`; bytereplay's sidecar or a Veraison deployment):
to the session `--session URL` when given, else to a new session opened with the
Evidence's own nonce (`newSession?nonce=`; bytereplay's verifier takes a nonce it
issued as it is, and refuses one already used). `--wrap cmw-json|cmw-cbor` sends the
EAT inside a CMW record. The EAR is checked with keys the caller chose: `--ear-keys`
(a JWKS file or URL), or the discovery document's key when pinned by
`--ear-key-thumbprint` or accepted as published with `--trust-discovery-key`; with
none of these the command refuses (exit 2) rather than print an unchecked result.
`--ear-profile draft-04` asks for the draft EAR profile (default: the legacy profile
Veraison's clients read).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bytereplay import cmw
from bytereplay.ear import CHECKS, CLAIM, LEGACY, NOT_COVERED_CLAIM, flat_submod, peek, profile_of
from bytereplay.eat import MEDIA_CWT, MEDIA_JWT
from bytereplay.encoding import b64url_decode, strict_json_loads
from bytereplay.errors import BytereplayError, UsageError
from bytereplay.home import Home
from verifier import config as config_mod
from verifier.pipeline import Verifier

MAX_INPUT_BYTES = 4 << 20


EXPECTED = ("expected a JWT (text with two dots), a CWT (binary or unpadded base64url text), or "
            "the JSON that `bytereplay attest` prints ({\"evidence\", \"evidence_format\"})")
_B64URL = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def read_evidence(source: str, fmt: str | None) -> tuple[bytes | str, str | None]:
    """The Evidence in `source` (a path or '-') and its format when known.

    What the file holds is recognised by its shape: JSON (the attester's answer, any
    text encoding of UTF-8), a compact JWT or base64url CWT text, else binary CWT. A file
    of none of these shapes is a usage error (exit 2), not a negative result."""
    try:
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1) if source == "-" else \
            Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{source} is larger than {MAX_INPUT_BYTES} bytes")
    return sniff_evidence(data, source, fmt)


def sniff_evidence(data: bytes, source: str, fmt: str | None) -> tuple[bytes | str, str | None]:
    """What `read_evidence` read, recognised by its shape (see there); UsageError if none."""
    stripped = data.strip()
    if not stripped:
        raise UsageError(f"{source} is empty; {EXPECTED}")
    if stripped.startswith(b"{"):
        try:
            doc = strict_json_loads(stripped, max_bytes=MAX_INPUT_BYTES)
        except BytereplayError as exc:
            raise UsageError(f"{source}: not valid JSON ({exc.detail}); {EXPECTED}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("evidence"), str):
            raise UsageError(f"{source}: JSON without an 'evidence' text member; {EXPECTED}")
        found = doc.get("evidence_format") or doc.get("format")
        return doc["evidence"], fmt or (found if found in ("jwt", "cwt") else None)
    if all(b in _B64URL for b in stripped.replace(b".", b"")):
        text = stripped.decode("ascii")
        if fmt is None:
            fmt = "jwt" if text.count(".") == 2 else "cwt" if "." not in text else None
        if fmt is None:
            raise UsageError(f"{source}: text with {text.count('.')} dots; {EXPECTED}")
        return text, fmt
    # COSE_Sign1 (tag 18), a CWT tag (61) or an untagged four-item array.
    if data[:1] in (b"\xd2", b"\x84") or data[:2] == b"\xd8\x3d":
        if fmt == "jwt":
            raise UsageError(f"{source}: --format jwt, but the file holds binary COSE (a CWT)")
        return data, "cwt"
    raise UsageError(f"{source}: neither JSON, a JWT, base64url text nor COSE; {EXPECTED}")


def render(result_json: dict[str, Any], claims: dict[str, Any]) -> str:
    sub = flat_submod(claims)
    vector = sub.get(LEGACY.vector) or {}
    lines = [f"status: {result_json['status']}"]
    replay = result_json["replay"]
    method = replay.get("method") if replay.get("verdict") != "not-run" else None
    lines.append(f"replay: {replay.get('verdict')}" + (f" by {method}" if method else "") +
                 (f" ({replay['reason']})" if replay.get("reason") else ""))
    for diff in replay.get("environment_diff", []):
        lines.append(f"  differs: {diff['field']}: recorded {diff['recorded']!r}, "
                     f"replayed {diff['replayed']!r}")
    lines.append("trustworthiness vector:")
    lines.extend(f"  {k}: {v}" for k, v in vector.items())
    lines.append("checks:")
    lines.extend(f"  {k}: {v}" for k, v in sub.get(CHECKS, {}).items())
    if sub.get(CLAIM):
        lines.append(f"claim: {sub[CLAIM]}")
    lines.append("not covered: " + "; ".join(sub.get(NOT_COVERED_CLAIM, [])))
    lines.append(f"result (EAR JWT): {result_json['result']}")
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    data, fmt = read_evidence(args.evidence, args.format)
    if getattr(args, "verifier", None):
        return verify_remote(args, data, fmt)
    home = Home.resolve(args.home)
    cfg = config_mod.load(home, args.config).replace(nonce_mode="store-if-known")
    if args.replay:
        cfg = cfg.replace(replay=True)
    verifier = Verifier(cfg)
    try:
        result = verifier.appraise(data, fmt, replay=args.replay,
                                   replay_method=getattr(args, "replay_method", None),
                                   profile=getattr(args, "ear_profile", None))
    finally:
        verifier.close()
    out = result.to_json()
    claims = peek(result.token)
    if args.json:
        print(json.dumps({**out, "ear": claims}, indent=2, ensure_ascii=False))
    else:
        print(render(out, claims))
    return 0 if result.status in ("affirming", "warning") else 1


def _client(args: argparse.Namespace) -> Any:
    from bytereplay.jwks import KeySet
    from bytereplay.veraison_client import VeraisonClient

    keys = None
    if args.ear_keys:
        source = args.ear_keys
        keys = KeySet(source if source.startswith(("http://", "https://")) else Path(source))
    if keys is None and args.ear_key_thumbprint is None and not args.trust_discovery_key:
        raise UsageError("--verifier: say which key checks the EAR: --ear-keys FILE|URL, "
                         "--ear-key-thumbprint T (pin the discovery key) or "
                         "--trust-discovery-key (accept the key the verifier publishes)")
    return VeraisonClient(args.verifier, ear_keys=keys,
                          discovery_key_thumbprint=args.ear_key_thumbprint,
                          trust_discovery_key=args.trust_discovery_key)


def verify_remote(args: argparse.Namespace, data: bytes | str, fmt: str | None) -> int:
    """`bytereplay verify EVIDENCE --verifier URL`: one Veraison session (see above)."""
    from bytereplay.evidence import decode_evidence

    if fmt is None:
        raise UsageError("--verifier: give --format jwt or cwt for this Evidence")
    body = data.encode("ascii") if isinstance(data, str) and fmt == "jwt" else \
        b64url_decode(data) if isinstance(data, str) else data
    media = MEDIA_JWT if fmt == "jwt" else MEDIA_CWT
    if args.wrap:
        form = args.wrap.removeprefix("cmw-")
        body = cmw.wrap_json(media, body) if form == "json" else cmw.wrap_cbor(media, body)
        media = f"application/cmw+{form}"
    client = _client(args)
    # Without --session: a new one with the Evidence's own nonce (read by decoding it,
    # which checks its signature by its cnf key on the way).
    session = args.session or client.new_session(nonce=decode_evidence(data, fmt).nonce)
    accept = f'application/eat+jwt; eat_profile="{profile_of(args.ear_profile).uri}"' \
        if args.ear_profile else None
    done = client.submit(session, body, media, accept=accept)
    if done.status != "complete":
        raise UsageError(f"the session {done.url} ended {done.status}, without a result")
    verified = client.verify_result(done)
    status = verified.status or "none"
    if args.json:
        print(json.dumps({"session": done.url, "status": status, "result": done.result,
                          "ear": verified.claims}, indent=2, ensure_ascii=False))
    elif verified.ear is not None:
        sub = verified.claims["submods"]["bytereplay"]
        print(f"session: {done.url}")
        print(render({"status": status, "result": done.result,
                      "replay": sub.get("bytereplay.replay", {})}, verified.claims))
    else:
        print(f"session: {done.url}")
        print(f"status: {status}")
        for name, sub in verified.claims.get("submods", {}).items():
            print(f"  {name}: {sub.get('ear.status') or sub.get('ear_status')}")
        print(f"result (EAR JWT): {done.result}")
    return 0 if status in ("affirming", "warning") else 1
