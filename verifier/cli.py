"""`bytereplay verify EVIDENCE [--replay] [--format jwt|cwt] [--home] [--config] [--json]`.

Appraises Evidence in-process with the same pipeline as the sidecar and prints the EAR
(decoded) and its status. EVIDENCE is a file (or `-` for stdin) holding a JWT, a CWT
(binary or unpadded base64url text), or the attester's JSON answer
(`{"evidence", "evidence_format", ...}` from `/v1/infer` or `bytereplay attest`).

Nonces: the command did not issue the Evidence's nonce. It runs with
`nonce_mode = "store-if-known"`: when the home's store (the one `bytereplay serve
verifier` uses with the same home and configuration) issued the nonce, it is consumed
there as usual (a reused or expired nonce is refused); when the store never saw it, the
nonce is reported `not checked` and instance-identity stays at warning, so the status is
warning at best.

Replay runs only with `--replay`. Exit status: 0 when the status is affirming or
warning, 1 when it is contraindicated or none, 2 on bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bytereplay.ear import peek
from bytereplay.encoding import strict_json_loads
from bytereplay.errors import BytereplayError, UsageError
from bytereplay.home import Home
from verifier import config as config_mod
from verifier.pipeline import Verifier

MAX_INPUT_BYTES = 4 << 20


def read_evidence(source: str, fmt: str | None) -> tuple[bytes | str, str | None]:
    """The Evidence in `source` (a path or '-') and its format when known."""
    try:
        data = sys.stdin.buffer.read(MAX_INPUT_BYTES + 1) if source == "-" else \
            Path(source).read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    if len(data) > MAX_INPUT_BYTES:
        raise UsageError(f"{source} is larger than {MAX_INPUT_BYTES} bytes")
    text: str | None
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        text = None
    if text is None:
        return data, fmt or "cwt"
    if text.startswith("{"):
        try:
            doc = strict_json_loads(text, max_bytes=MAX_INPUT_BYTES)
        except BytereplayError as exc:
            raise UsageError(f"{source}: {exc.detail}") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("evidence"), str):
            raise UsageError(f"{source}: a JSON file must hold an 'evidence' member")
        found = doc.get("evidence_format") or doc.get("format")
        return doc["evidence"], fmt or (found if found in ("jwt", "cwt") else None)
    return text, fmt


def render(result_json: dict[str, Any], claims: dict[str, Any]) -> str:
    sub = claims.get("submods", {}).get("bytereplay", {})
    vector = sub.get("ear.trustworthiness-vector") or sub.get("ear_trustworthiness_vector") or {}
    lines = [f"status: {result_json['status']}"]
    replay = result_json["replay"]
    lines.append(f"replay: {replay.get('verdict')}" +
                 (f" ({replay['reason']})" if replay.get("reason") else ""))
    for diff in replay.get("environment_diff", []):
        lines.append(f"  differs: {diff['field']}: recorded {diff['recorded']!r}, "
                     f"replayed {diff['replayed']!r}")
    lines.append("trustworthiness vector:")
    lines.extend(f"  {k}: {v}" for k, v in vector.items())
    lines.append("checks:")
    lines.extend(f"  {k}: {v}" for k, v in sub.get("bytereplay.checks", {}).items())
    if sub.get("bytereplay.claim"):
        lines.append(f"claim: {sub['bytereplay.claim']}")
    lines.append("not covered: " + "; ".join(sub.get("bytereplay.not_covered", [])))
    lines.append(f"result (EAR JWT): {result_json['result']}")
    return "\n".join(lines)


def cmd_verify(args: argparse.Namespace) -> int:
    data, fmt = read_evidence(args.evidence, args.format)
    home = Home.resolve(args.home)
    cfg = config_mod.load(home, args.config).replace(nonce_mode="store-if-known")
    if args.replay:
        cfg = cfg.replace(replay=True)
    verifier = Verifier(cfg)
    try:
        result = verifier.appraise(data, fmt, replay=bool(args.replay))
    finally:
        verifier.close()
    out = result.to_json()
    claims = peek(result.token)
    if args.json:
        print(json.dumps({**out, "ear": claims}, indent=2, ensure_ascii=False))
    else:
        print(render(out, claims))
    return 0 if result.status in ("affirming", "warning") else 1
