"""`bytereplay appraise RESULT --output FILE [--policy NAME|PATH] [--verifier-keys JWKS]
[--nonce N] [--home DIR] [--json]`.

Exit status: 0 allow, 1 deny, 2 bad input (unreadable file, unusable key set, bad policy).
Without `--verifier-keys` the verifier's public key is derived from the state
directory (`$BYTEREPLAY_HOME` or `--home`), and the output says so.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bytereplay.eat import decode_nonce
from bytereplay.errors import BytereplayError, UsageError
from bytereplay.files import read_bounded
from bytereplay.home import Home
from bytereplay.jwks import KeySet
from bytereplay.keyring import KeyRing, manifest_path
from relying_party.evaluate import evaluate
from relying_party.policy import load_policy

MAX_RESULT_BYTES = 2 * 1024 * 1024
MAX_OUTPUT_BYTES = 256 * 1024 * 1024


def _read(name: str, what: str, limit: int) -> bytes:
    return read_bounded(name, what, limit)


def _verifier_keys(args: argparse.Namespace) -> tuple[KeySet, str]:
    """The pinned key set and a sentence saying where it came from."""
    source = args.verifier_keys
    if source:
        if source.startswith(("http://", "https://")):
            keys, said = KeySet(source), f"verifier keys: fetched from {source}"
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise UsageError(f"verifier key set {path} does not exist")
            keys, said = KeySet(path), f"verifier keys: {path}"
    else:
        home = Home.resolve(args.home)
        pem = home.verifier_key
        if not pem.is_file() and not manifest_path(pem).is_file():
            raise UsageError(
                f"no --verifier-keys given and no verifier key at {pem}; pass the verifier's "
                "JWKS (file or URL, e.g. http://HOST:8702/.well-known/jwks.json)"
            )
        # Loads the ring (refusing a key file readable by others): the current key and
        # the rotated-out ones not yet retired, as the verifier publishes them.
        ring = KeyRing(pem)
        keys = KeySet(ring.jwks())
        said = (f"verifier keys: derived from the verifier key in {home.root} "
                f"(kid {ring.current.kid}); pass --verifier-keys to pin another")
    try:
        kids = sorted(keys.keys())  # load now: an unusable key set is bad input (exit 2)
    except BytereplayError as exc:
        raise UsageError(f"verifier key set unusable: {exc.detail}") from None
    return keys, f"{said} [{', '.join(kids)}]"


def cmd_appraise(args: argparse.Namespace) -> int:
    if args.nonce:
        decode_nonce(args.nonce)  # a malformed --nonce is bad input (exit 2), not a deny
    result = _read(args.result, "result", MAX_RESULT_BYTES)
    output = _read(args.output, "output", MAX_OUTPUT_BYTES)
    policy = load_policy(args.policy)  # PolicyError -> exit 2
    keys, keys_said = _verifier_keys(args)
    decision = evaluate(result, output=output, policy=policy, verifier_keys=keys,
                        expected_nonce=args.nonce or None)
    if args.json:
        doc: dict[str, Any] = {**decision.to_dict(), "verifier_keys": keys_said}
        print(json.dumps(doc, indent=2))
    else:
        print(decision.render())
        print(keys_said)
    return 0 if decision.allow else 1
