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
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from bytereplay.ear import CHECKS, CLAIM, LEGACY, NOT_COVERED_CLAIM, flat_submod, peek
from bytereplay.encoding import strict_json_loads
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
