"""`bytereplay refvals make`: a CoRIM of reference values for a model (see
`bytereplay.refvals_cli`). The model digest is the attester's own (`attester.model_digest`,
or the GGUF file's digest), computed without torch, through the digest cache."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from attester import gguf_model
from attester.model_digest import model_digest_cached
from bytereplay import __version__
from bytereplay.errors import UsageError
from bytereplay.refvals_cli import write_corim


def digest_of(path: Path) -> str:
    """The digest a run record names for the model at `path` (directory or .gguf)."""
    gguf = gguf_model.gguf_file(path)
    return gguf_model.gguf_digest(gguf) if gguf is not None else model_digest_cached(path)


def cmd_refvals_make(args: argparse.Namespace) -> int:
    digests = [digest_of(Path(m)) for m in args.model] + list(args.model_digest)
    if not digests and not args.container:
        raise UsageError("name a model (--model DIR or --model-digest) or a container")
    doc: dict[str, Any] = {}
    if digests:
        doc["model_digests"] = digests
    if args.container:
        doc["container_digests"] = list(args.container)
    if args.runtime != "none":
        doc["runtimes"] = [{"name": "bytereplay", "version": args.runtime or __version__}]
    frameworks = []
    for item in args.framework:
        name, sep, version = item.partition("=")
        if not sep or not name or not version:
            raise UsageError(f"--framework takes NAME=VERSION, not {item!r}")
        frameworks.append({"name": name, "version": version})
    if frameworks:
        doc["frameworks"] = frameworks
    corim_id = args.id or f"bytereplay-refvals-{digests[0][8:24] if digests else 'container'}"
    return write_corim(doc, corim_id, sign=args.sign, signer=args.signer, out=args.out)
