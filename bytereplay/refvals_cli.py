"""`bytereplay refvals`: reference values as a CoRIM (`bytereplay.corim`).

    bytereplay refvals make --model DIR --container sha256:... [--sign KEY] > values.corim
    bytereplay refvals show FILE [--key PUBLIC_KEY]

`make` (handler in `attester.refvals_cli`, which computes model digests) writes the
CoRIM's bytes to standard output or `--out`; `show` prints one as JSON: its id, whether
it is signed, by whom, whether the signature was verified (only with `--key`), and the
reference values in the JSON file's form. A malformed CoRIM exits 2 naming what is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bytereplay import corim
from bytereplay.errors import UsageError
from bytereplay.files import read_bounded
from bytereplay.keys import read_public_key, read_signing_key


def write_corim(doc: Mapping[str, Any], corim_id: str, *, sign: str | None, signer: str | None,
                out: str | None) -> int:
    """Encode (and sign with the PEM key at `sign`) and write to `out` or stdout."""
    data = corim.encode(doc, corim_id)
    if sign is not None:
        key = read_signing_key(Path(sign))
        data = corim.sign(data, key, signer or key.kid)
    if out is None or out == "-":
        if sys.stdout.isatty():
            raise UsageError("a CoRIM is binary: redirect standard output or give --out FILE")
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        try:
            Path(out).write_bytes(data)
        except OSError as exc:
            raise UsageError(f"cannot write {out}: {exc.strerror}") from None
    return 0


def cmd_refvals_show(args: argparse.Namespace) -> int:
    data = read_bounded(args.file, "CoRIM", corim.MAX_CORIM_BYTES)
    if args.key:
        shown = corim.read(data, [read_public_key(Path(k)) for k in args.key])
    else:
        shown = corim.inspect(data)
    print(json.dumps(shown.to_json(), indent=2))
    return 0
