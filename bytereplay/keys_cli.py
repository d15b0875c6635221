"""`bytereplay keys rotate|list [--role verifier|attester] [--home DIR] [--config FILE]
[--key FILE] [--retire-after S] [--at RFC3339] [--json]`.

The ring is the role's signing key file: `--key FILE`, else the configured one (the
verifier's `ear_key`, the attester's `evidence_key`), else the home's
(`keys/verifier-ear.pem`, `keys/attester-evidence.pem`). `rotate` adds a new current key
and gives every older one a retirement time: `--at` (the rotation's time, default now)
plus `--retire-after` (default the role's `key_retire_after_s`, 86400 s). Serving
processes pick the rotation up by themselves (see `bytereplay.keyring`). `list` prints
each key's kid and state at `--at`. Only kids and times are printed, never a key.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from bytereplay.errors import UsageError
from bytereplay.home import Home
from bytereplay.keyring import DEFAULT_RETIRE_AFTER_S, KeyRing, parse_time, rfc3339, rotate
from bytereplay.keys import DEFAULT_ALG


def _role_settings(args: argparse.Namespace) -> tuple[Path, str, float]:
    """The ring file, the algorithm of a new key and the retirement delay of the role."""
    if args.key and not args.config:  # a key file alone needs no role installed
        return (Path(args.key).expanduser(), getattr(args, "alg", None) or DEFAULT_ALG,
                DEFAULT_RETIRE_AFTER_S)
    home = Home.resolve(args.home)
    try:
        if args.role == "verifier":
            from verifier import config as verifier_config

            v = verifier_config.load(home, args.config)
            path, alg, retire = v.ear_key_path, v.key_alg, v.key_retire_after_s
        else:
            from attester.config import load_config

            a = load_config(home, args.config)
            path, alg, retire = (a.evidence_key_path(home), a.key_alg,
                                 float(a.key_retire_after_s))
    except ModuleNotFoundError as exc:
        raise UsageError(f"reading the {args.role} configuration needs the {args.role} extra: "
                         f"pip install 'bytereplay[{args.role}]' (cannot import {exc.name}); "
                         "or name the key file with --key") from None
    if args.key:
        path = Path(args.key).expanduser()
    return path, getattr(args, "alg", None) or alg or DEFAULT_ALG, retire


def _at(args: argparse.Namespace) -> float:
    if args.at is None:
        return time.time()
    try:
        return parse_time(args.at, "--at")
    except Exception as exc:
        raise UsageError(str(getattr(exc, "detail", exc))) from None


def _state(retire_at: float | None, at: float) -> str:
    if retire_at is None:
        return "current"
    return f"retiring at {rfc3339(retire_at)}" if retire_at > at else \
        f"retired at {rfc3339(retire_at)}"


def cmd_rotate(args: argparse.Namespace) -> int:
    path, alg, retire_after = _role_settings(args)
    if args.retire_after is not None:
        if args.retire_after < 0:
            raise UsageError("--retire-after must be >= 0 seconds")
        retire_after = args.retire_after
    at = _at(args)
    done = rotate(path, alg=alg, at=at, retire_after=retire_after)
    doc: dict[str, Any] = {
        "ring": str(path), "created": done.created, "current": done.current.key.kid,
        "retiring": [{"kid": k.key.kid, "retire_at": k.to_json()["retire_at"]}
                     for k in done.retiring],
        "forgotten": list(done.forgotten)}
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    verb = "created the first key" if done.created else "rotated"
    print(f"{args.role} key ring {path}: {verb}; current kid {done.current.key.kid}")
    for k in done.retiring:
        print(f"  kid {k.key.kid}: {_state(k.retire_at, at)} (still in the published key set "
              "until then)")
    for kid in done.forgotten:
        print(f"  kid {kid}: retired before this rotation; its key file was deleted")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    path, _alg, _retire = _role_settings(args)
    at = _at(args)
    entries = KeyRing(path).entries()
    rows = [{**k.to_json(), "state": _state(k.retire_at, at).split(" at ")[0],
             "published": k.published_at(at)} for k in entries]
    if args.json:
        print(json.dumps({"ring": str(path), "at": rfc3339(at), "keys": rows}, indent=2))
        return 0
    print(f"{args.role} key ring {path} at {rfc3339(at)}:")
    for k in reversed(entries):
        print(f"  kid {k.key.kid} ({k.key.alg}): {_state(k.retire_at, at)}")
    return 0
