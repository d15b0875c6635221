"""`bytereplay attest`: one inference with signed Evidence, printed as JSON.

    bytereplay attest --prompt TEXT --nonce <base64url> [--format jwt|cwt]
                      [--provider simulated|tsm|nvidia] [--home DIR] [--config FILE]
                      [--template T] [--seed N] [--max-new-tokens N] [--temperature X]
                      [--top-k K] [--top-p P] [--stop S ...] [--model DIR]
                      [--device D] [--dtype D] [--threads N]
                      [--out FILE] [--output-file FILE]

Prints the same JSON as `POST /v1/infer`: {"output", "output_hash", "evidence",
"evidence_format"}. `--out FILE` also writes the Evidence itself (JWT text, or CWT
bytes), which `bytereplay verify FILE` reads, as it reads the printed JSON;
`--output-file FILE` writes the exact output bytes, for `bytereplay appraise --output`.
The nonce is checked before anything loads: not base64url, or outside 8..64 bytes,
gives one line on stderr and exit 2 (as does any bad input).
`--model`, `--device`, `--dtype` and `--threads` override the configuration file.
"""

from __future__ import annotations

import argparse
import json
import sys

from attester.config import load_config
from attester.run_cli import write_output_file
from attester.service import Attester, parse_infer_body
from bytereplay.eat import decode_nonce
from bytereplay.encoding import b64url_decode
from bytereplay.home import Home


def cmd_attest(args: argparse.Namespace) -> int:
    decode_nonce(args.nonce)  # NonceError -> "bytereplay: error: ...", exit 2
    home = Home.resolve(args.home)
    config = load_config(home, args.config).with_overrides(
        provider=args.provider, model_dir=args.model, device=args.device, dtype=args.dtype,
        threads=args.threads)
    decode = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature,
              "top_k": args.top_k, "top_p": args.top_p, "seed": args.seed,
              "stop": list(args.stop or [])}
    body = {"input": args.prompt, "decode": decode, "nonce": args.nonce, "format": args.format}
    if args.template is not None:
        body["template"] = args.template
    request = parse_infer_body(body, config)
    attester = Attester(config, home)
    attester.load_engine()
    answer = attester.attest(request)
    if args.output_file:
        write_output_file(args.output_file, answer["output"].encode("utf-8"))
    if args.out:
        evidence = answer["evidence"]
        write_output_file(args.out, b64url_decode(evidence) if answer["evidence_format"] == "cwt"
                          else evidence.encode("ascii"))
    sys.stdout.write(json.dumps(answer, ensure_ascii=False) + "\n")
    sys.stdout.flush()
    return 0
