"""`bytereplay quote verify FILE`: one TDX quote or SEV-SNP report, checked offline at a time.

    bytereplay quote verify FILE [--kind tdx|snp] [--collateral FILE] [--cert FILE]...
                                 [--at RFC3339] [--report-data HEX] [--allow-tcb STATE]...
                                 [--min-tcb COMPONENT=N,...] [--config FILE] [--json]

- `--kind` defaults to detection from the bytes (`looks_like_tdx`, `looks_like_snp`).
- TDX: `--collateral` is the collateral in dcap-qvl's `QuoteCollateralV3` JSON form. Without
  it, `tee.tdx.collateral` of `--config` is the source; with neither, usage error (nothing
  is fetched unless the config names a URL).
- SNP: each `--cert` is a PEM or DER file; one file may also hold the ASK and ARK, but only
  the ARKs pinned in the package (or a test root named as such in `--config`) decide.
  Without `--cert`, `tee.snp.certs` of `--config` is consulted.
- `--at` is the verification time (RFC 3339 with an offset); default: now. Every
  certificate and collateral validity is judged at that time.
- `--report-data` (128 hex digits) also checks the quote's report data.
- `--allow-tcb` (repeatable) replaces the allowed TCB states (default `UpToDate`, or the
  config's); `--min-tcb` sets the SEV-SNP minimum TCB for the report's product.

Exit codes: 0 verified, 1 not verified (the reasons printed), 2 malformed input or usage.
`--json` prints `{"kind", "verified", "tcb_status", "reasons", "report_data",
"measurements", "debug"}` (plus `root`, `advisories`, `collateral`, `test_root`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

from bytereplay.encoding import parse_rfc3339
from bytereplay.errors import QuoteError, UsageError
from bytereplay.files import read_bounded
from verifier.tee.base import SchemeTrust

MAX_FILE = 1 << 20
KINDS = ("tdx", "snp", "nvidia")
NVIDIA_KEYS = ("driver_version", "vbios_version", "cc_mode", "mismatched_measurements",
               "revocation")


def _read(path: str, what: str) -> bytes:
    return read_bounded(path, what, MAX_FILE)


def parse_at(text: str | None) -> datetime:
    """The verification time: RFC 3339 with an offset, or now when not given."""
    if text is None:
        return datetime.now(UTC)
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        raise UsageError(f"--at {text!r} {exc}") from None


def _min_tcb(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip().isdigit():
            raise UsageError(f"--min-tcb {text!r}: expected COMPONENT=N,... (e.g. bl=3,snp=8)")
        out[name.strip()] = int(value)
    return out


def detect_kind(data: bytes) -> str:
    from verifier.tee.snp import looks_like_snp
    from verifier.tee.tdx import looks_like_tdx

    if looks_like_tdx(data):
        return "tdx"
    if looks_like_snp(data):
        return "snp"
    raise UsageError("neither a TDX quote (v4/v5) nor an SEV-SNP report; give --kind to say which")


def _trust(args: argparse.Namespace, kind: str) -> SchemeTrust:
    trust = SchemeTrust(configured=True)
    if args.config:
        from bytereplay.home import Home
        from verifier import config as config_mod
        from verifier.trust import load_trust_sources, scheme_trusts

        cfg = config_mod.load(Home.resolve(args.home), args.config)
        trust = scheme_trusts(cfg, load_trust_sources(cfg)).get(kind, trust)
    if args.allow_tcb:
        trust = dataclasses.replace(trust, allowed_tcb=tuple(args.allow_tcb))
    if args.ocsp:
        trust = dataclasses.replace(trust, ocsp=args.ocsp)
    return trust


def _parse(kind: str, data: bytes) -> Any:
    """The parsed quote; QuoteError here is malformed input (exit 2)."""
    if kind == "nvidia":
        from verifier.tee.nvidia_spdm import parse_report as parse_spdm

        return parse_spdm(data)
    if kind == "tdx":
        from verifier.tee.tdx import parse_quote_bytes

        return parse_quote_bytes(data)
    from verifier.tee.snp import parse_report

    return parse_report(data)


def _facts(kind: str, parsed: Any) -> tuple[bytes, dict[str, str], bool]:
    """(report data, measurements, debug) as the bytes say, verified or not."""
    if kind == "nvidia":  # the SPDM request nonce stands in for the report data
        return (parsed.request_nonce,
                {f"nvidia.{i}": v.hex() for i, v in parsed.measurements().items()},
                parsed.cc_mode == "devtools")
    if kind == "tdx":
        from verifier.tee.tdx import MEASUREMENTS

        regs = {f"tdx.{k}": parsed.fields[k].hex() for k in MEASUREMENTS if k in parsed.fields}
        return parsed.report_data, regs, parsed.debug
    return parsed.report_data, parsed.measurements(), parsed.debug


def _verify(kind: str, parsed: Any, args: argparse.Namespace, trust: SchemeTrust,
            at: datetime, expected: bytes | None) -> Any:
    if kind == "tdx":
        from verifier.tee.tdx import verify_parsed
        from verifier.tee.tdx_collateral import parse_collateral

        collateral = None
        if args.collateral:
            try:
                collateral = parse_collateral(_read(args.collateral, "collateral"))
            except QuoteError as exc:
                raise UsageError(f"--collateral {args.collateral}: {exc.detail}") from None
        elif trust.collateral is None:
            raise UsageError("a TDX quote needs its collateral: give --collateral FILE "
                             "(or --config with tee.tdx.collateral)")
        return verify_parsed(parsed, trust, at, collateral=collateral,
                             expected_report_data=expected)
    if kind == "nvidia":
        from verifier.tee.nvidia import to_verification
        from verifier.tee.nvidia import verify_report as verify_gpu

        if len(args.cert) != 1:
            raise UsageError("an NVIDIA report needs its GPU certificate chain: give --cert "
                             "CHAIN.txt once (PEM, leaf first)")
        nonce = _hex_arg(args.nonce, 32, "--nonce")
        from verifier.tee.nvidia import compare_rims

        result = verify_gpu(parsed, _read(args.cert[0], "certificate chain"), trust, at, nonce)
        result = compare_rims(result, args.rims or trust.collateral, at, trust.cache_dir)
        return to_verification(result, parsed.request_nonce,
                               nonce_checked=nonce is not None)
    from verifier.tee.snp import verify_report

    certs = tuple(_read(p, "certificate") for p in args.cert)
    if args.min_tcb:
        minimum = _min_tcb(args.min_tcb)
        trust = dataclasses.replace(
            trust, min_tcb={**trust.min_tcb, **{p: minimum for p in products_of(parsed)}})
    return verify_report(parsed, trust, at, certs=certs, expected_report_data=expected,
                         fetch_more=trust.certs is not None, certs_from="given with --cert")


def _hex_arg(text: str | None, size: int, flag: str) -> bytes | None:
    """The `size` bytes a hex option gives, None when it is absent; UsageError otherwise."""
    if text is None:
        return None
    try:
        value = bytes.fromhex(text)
    except ValueError:
        value = b""
    if len(value) != size:
        raise UsageError(f"{flag} must be {2 * size} hex digits ({size} bytes)")
    return value


def products_of(parsed: Any) -> tuple[str, ...]:
    """The products `--min-tcb` applies to: those of the report's CPU family, or every
    product for a version 2 report, which does not name its family (the chain decides)."""
    from verifier.tee.snp import CPU_FAMILY

    family = parsed.cpuid[0] if parsed.cpuid else None
    named = tuple(name for name, fam in CPU_FAMILY.items() if fam == family)
    return named or tuple(CPU_FAMILY)


def cmd_quote_verify(args: argparse.Namespace) -> int:
    at = parse_at(args.at)
    expected = _hex_arg(args.report_data, 64, "--report-data")
    data = _read(args.file, "quote")
    kind = args.kind or detect_kind(data)
    if args.cert and kind not in ("snp", "nvidia"):
        raise UsageError("--cert is for SEV-SNP and NVIDIA reports")
    if (args.rims is not None or args.ocsp is not None) and kind != "nvidia":
        raise UsageError("--rims and --ocsp are for NVIDIA reports")
    if args.nonce is not None and kind != "nvidia":
        raise UsageError("--nonce is for NVIDIA reports (use --report-data otherwise)")
    if args.report_data is not None and kind == "nvidia":
        raise UsageError("--report-data is not for NVIDIA reports: give --nonce")
    if args.min_tcb and kind != "snp":
        raise UsageError("--min-tcb is for SEV-SNP reports")
    if args.collateral and kind != "tdx":
        raise UsageError("--collateral is for TDX quotes")
    try:
        parsed = _parse(kind, data)
    except QuoteError as exc:
        raise UsageError(f"{args.file}: malformed {kind} input: {exc.detail}") from None
    report_data, measurements, debug = _facts(kind, parsed)
    trust = _trust(args, kind)
    out: dict[str, Any] = {"kind": kind, "verified": False, "tcb_status": None, "reasons": [],
                           "report_data": report_data.hex(), "measurements": measurements,
                           "debug": debug, "at": at.isoformat().replace("+00:00", "Z")}
    try:
        result = _verify(kind, parsed, args, trust, at, expected)
    except QuoteError as exc:
        out["reasons"] = [exc.detail]
    else:
        out.update(verified=bool(result.hardware), tcb_status=result.tcb_status,
                   reasons=list(result.reasons), root=result.root,
                   advisories=list(result.advisories), collateral=dict(result.collateral),
                   test_root=trust.test_root)
        if kind == "nvidia":
            out.update({k: result.claims.get(k) for k in NVIDIA_KEYS})
        if not result.hardware:
            out["reasons"].append("not verified to a hardware root")
    if args.json:
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print(f"{kind}: {'VERIFIED' if out['verified'] else 'NOT VERIFIED'} at {out['at']}"
              + (f", TCB {out['tcb_status']}" if out["tcb_status"] else "")
              + (f", root {out['root']}" if out.get("root") else ""))
        for reason in out["reasons"]:
            print(f"  - {reason}")
    return 0 if out["verified"] else 1
