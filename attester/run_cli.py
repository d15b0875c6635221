"""`bytereplay run`: one deterministic inference, its output and its hash.

    bytereplay run --prompt TEXT [--template T] [--seed N] [--max-new-tokens N]
                   [--temperature X] [--top-k K] [--top-p P] [--stop S ...]
                   [--model DIR] [--device D] [--dtype D] [--threads N]
                   [--output-file FILE] [--json]

Prints the output text and then its `sha-256:<hex>` hash; with `--json` prints
`{"output", "output_hash", "record"}`. `--output-file` writes the exact output bytes
(the printed text has a newline after it; the attested bytes do not). Bad input: one
line on stderr, exit 2.
`python -m attester.run_cli ...` takes the same options (no `bytereplay` needed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bytereplay.errors import UsageError

if TYPE_CHECKING:
    from attester.engine import DecodePolicy, EngineSettings, InferenceRequest


def write_output_file(path: str, data: bytes) -> None:
    """The exact output bytes, as attested (`--output-file`): no newline is added."""
    try:
        Path(path).write_bytes(data)
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def decode_policy_from_args(args: argparse.Namespace) -> DecodePolicy:
    """The decode policy named by the decode flags (`bytereplay run`, the benchmarks)."""
    from attester.engine import DecodePolicy

    return DecodePolicy(
        max_new_tokens=args.max_new_tokens,
        temperature=args.temperature,
        top_k=args.top_k,
        top_p=args.top_p,
        seed=args.seed,
        stop=tuple(getattr(args, "stop", None) or ()),
    )


def _settings_and_request(args: argparse.Namespace) -> tuple[EngineSettings, InferenceRequest]:
    from attester.engine import (
        DEFAULT_TEMPLATE,
        EngineSettings,
        InferenceRequest,
    )

    policy = decode_policy_from_args(args)
    template = args.template if args.template is not None else DEFAULT_TEMPLATE
    request = InferenceRequest(input=args.prompt, template=template, decode=policy)
    settings = EngineSettings(
        model_dir=Path(args.model) if args.model else None,
        device=args.device or "cpu",
        dtype=args.dtype or "float32",
        threads=args.threads if args.threads is not None else 1,
    )
    return settings, request


def cmd_run(args: argparse.Namespace) -> int:
    """Handler for `bytereplay run` (argparse dests: prompt, template, seed,
    max_new_tokens, temperature, top_k, top_p, stop, model, dtype, threads, json)."""
    from attester.engine import Engine

    settings, request = _settings_and_request(args)
    progress = None
    if sys.stderr.isatty() and not args.json:
        progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    engine = Engine(settings, progress=progress)
    result = engine.generate(request)
    if args.output_file:
        write_output_file(args.output_file, result.output.encode("utf-8"))
    if args.json:
        doc = {
            "output": result.output,
            "output_hash": result.output_hash,
            "record": result.record.to_dict(),
        }
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(result.output + "\n")
        sys.stdout.write(result.output_hash + "\n")
    sys.stdout.flush()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m attester.run_cli ...` is `bytereplay run ...`: one parser for both."""
    from bytereplay.cli import main as cli_main

    return cli_main(["run", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
