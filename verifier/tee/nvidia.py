"""The `nvidia` scheme: NVIDIA confidential-computing GPU evidence (`attester.tee.nvidia`).

The quote (see `attester.tee.nvidia`) carries `attestation_report` (the SPDM 1.1
GET_MEASUREMENTS request and response, `verifier.tee.nvidia_spdm`), `cert_chain` (the
GPU's device certificates, PEM, leaf first, as NVML returns them and as nvtrust's
`hopperCertChain.txt` stores them) and `gpu_nonce`. `verify_report` checks, at a given
time and never at the wall clock:

1. the report parses (trailing or missing bytes are refused, naming the offset);
2. the SPDM request nonce equals the expected one (for a lone quote: SHA-256 of the
   expected report data; for a device of composite evidence, `verify_device`:
   `bytereplay.eat.device_gpu_nonce`), also equal to the quote's `gpu_nonce`; a
   mismatch is a `BindingError` (bound to another session);
3. the chain: every certificate valid at `at`, each signed (ECDSA) by the next, the
   last one either the pinned NVIDIA Device Identity CA (shipped in
   `verifier/tee/nvidia_roots/`, pinned by the SHA-256 of its DER, `DEVICE_ROOT_SHA256`)
   or signed by it, or, only with `trust.roots` + `trust.test_root`, a test root named
   "TEST ROOT (not NVIDIA)". The certificates in the message never act as anchors;
4. the leaf's TCG DICE TcbInfo extension (2.23.133.5.4.1) carries the report's FWID
   (SHA-384 entry); a leaf without it is refused;
5. the signature (last 96 bytes, r || s, ECDSA P-384, SHA-384 over request ||
   response) verifies with the leaf's key.

Reference values: `trust.collateral` (config `tee.nvidia.collateral`; CLI `--rims`) names
a folder of signed RIMs, or a RIM service base URL whose answers are cached under
`trust.cache_dir` (`verifier.tee.nvidia_rim`), each verified at `at` against the
pinned NVIDIA RIM root; the measurement blocks are compared with the active golden
measurements of the driver and VBIOS RIMs, and every mismatching SPDM index is listed
in `claims["mismatched_measurements"]` (None: "measurements not compared").

`hardware` is True only when the RIMs were compared with no mismatch and the report says
CC mode is on (not DEVTOOLS); the 550-driver sample does not report the CC mode, so it is
never affirming. Revocation: with `trust.ocsp` (config `tee.nvidia.ocsp`) every device
certificate is asked about at that OCSP responder (`nvidia_pki.check_ocsp`; revoked or
unknown refuses the report) and `claims["revocation"]` is "good"; without it,
"not-checked" and the reasons say "revocation not checked". The
report's opaque fields (driver and VBIOS version, chip SKU, FWID, ...) are in `claims`,
with `cc_mode` (None when the report does not say).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bytereplay.eat import gpu_nonce
from bytereplay.errors import BindingError, QuoteError
from verifier.tee.base import QuoteVerification, SchemeTrust, field_b64, same_bytes
from verifier.tee.nvidia_pki import check_links, check_ocsp, fingerprint, pinned_root, signed_by
from verifier.tee.nvidia_spdm import SIGNATURE_LEN, SpdmReport, parse_report

KIND = NAME = "nvidia"
TEST_ROOT_NAME = "TEST ROOT (not NVIDIA)"
DEVICE_ROOT_FILE = "verifier_device_root.pem"
DEVICE_ROOT_SHA256 = "102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48"
MAX_CHAIN = 1 << 16
MAX_CHAIN_CERTS = 8
OID_DICE_TCB_INFO = x509.ObjectIdentifier("2.23.133.5.4.1")
# An FWID entry of TcbInfo: SEQUENCE { OID sha384, OCTET STRING (48 bytes) }.
FWID_SHA384_PREFIX = bytes.fromhex("06096086480165030402020430")
GPU_FACTS = ("driver_version", "vbios_version", "chip_sku", "cc_mode",
             "mismatched_measurements", "revocation")
NOT_CHECKED = "not-checked"
REASON_NOT_COMPARED = "measurements not compared: no reference integrity manifests (RIMs)"
REASON_NO_REVOCATION = "revocation not checked: no OCSP responder configured"





def load_chain(blob: bytes, what: str = "the GPU certificate chain") -> list[x509.Certificate]:
    """The PEM certificates in `blob`, in order; `QuoteError` when none can be read."""
    if len(blob) > MAX_CHAIN:
        raise QuoteError(f"{what} is {len(blob)} bytes; at most {MAX_CHAIN}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            certs = list(x509.load_pem_x509_certificates(blob))
            for c in certs:
                _ = (c.not_valid_before_utc, c.not_valid_after_utc, c.extensions,
                     c.signature_hash_algorithm, c.public_key(), c.subject.rfc4514_string(),
                     c.issuer.rfc4514_string(), c.tbs_certificate_bytes, c.signature)
        except Exception:  # ValueError, UnsupportedAlgorithm, DuplicateExtension, ...
            raise QuoteError(f"{what} is not a list of readable PEM certificates") from None
    if not certs:
        raise QuoteError(f"{what} holds no certificate")
    if len(certs) > MAX_CHAIN_CERTS:
        raise QuoteError(f"{what} holds {len(certs)} certificates; at most {MAX_CHAIN_CERTS}")
    return certs


def device_root() -> x509.Certificate:
    """The pinned NVIDIA Device Identity CA; RuntimeError if the shipped file differs."""
    return pinned_root(DEVICE_ROOT_FILE, DEVICE_ROOT_SHA256, "NVIDIA Device Identity CA")


def _anchors(trust: SchemeTrust) -> tuple[list[x509.Certificate], str]:
    if not trust.roots:
        root = device_root()
        return [root], f"NVIDIA {root.subject.rfc4514_string()}"
    if not trust.test_root:
        raise QuoteError("tee.nvidia.roots may only name a test root (set tee.nvidia.test_root); "
                         "NVIDIA's Device Identity CA is pinned and cannot be replaced")
    roots: list[x509.Certificate] = []
    for entry in trust.roots:
        try:
            text = entry.encode() if "-----BEGIN" in entry else Path(entry).read_bytes()
        except OSError as exc:
            raise QuoteError(f"tee.nvidia.roots could not be read: {exc.strerror}") from None
        roots += load_chain(text, "tee.nvidia.roots")
    if any(fingerprint(r) == DEVICE_ROOT_SHA256 for r in roots):
        raise QuoteError("tee.nvidia.roots names NVIDIA's Device Identity CA as a test root; "
                         "leave tee.nvidia.roots empty to use the pinned one")
    return roots, TEST_ROOT_NAME


def check_chain(chain: list[x509.Certificate], trust: SchemeTrust, at: datetime) -> str:
    """Check `chain` (leaf first) to the anchor `trust` selects at `at`; the anchor's name."""
    roots, name = _anchors(trust)
    check_links(chain, at, "GPU")
    top = chain[-1]
    for root in roots:
        if (top == root or signed_by(top, root)) and \
                root.not_valid_before_utc <= at <= root.not_valid_after_utc:
            return name
    raise QuoteError(f"GPU certificate chain does not end at the {name} "
                     f"(top: {top.subject.rfc4514_string()!r})")


def leaf_fwids(cert: x509.Certificate) -> list[bytes]:
    """The SHA-384 FWIDs in the certificate's TCG DICE TcbInfo extension."""
    try:
        ext = cert.extensions.get_extension_for_oid(OID_DICE_TCB_INFO)
    except x509.ExtensionNotFound:
        return []
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    out, pos = [], raw.find(FWID_SHA384_PREFIX)
    while pos >= 0:
        start = pos + len(FWID_SHA384_PREFIX)
        if start + 48 <= len(raw):
            out.append(raw[start:start + 48])
        pos = raw.find(FWID_SHA384_PREFIX, start)
    return out


def _signature_ok(report: SpdmReport, key: ec.EllipticCurvePublicKey) -> bool:
    if not isinstance(key.curve, ec.SECP384R1):
        return False
    half = SIGNATURE_LEN // 2
    r = int.from_bytes(report.signature[:half], "big")
    s = int.from_bytes(report.signature[half:], "big")
    try:
        key.verify(encode_dss_signature(r, s), report.signed, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class NvidiaResult:
    report: SpdmReport
    root: str
    claims: dict[str, Any]


def verify_report(report: bytes | SpdmReport, chain: bytes, trust: SchemeTrust, at: datetime,
                  expected_nonce: bytes | None) -> NvidiaResult:
    """Checks 1 to 5 of the module doc; `QuoteError` naming the first that fails.

    `expected_nonce` None skips the nonce check (the CLI without --nonce; never the
    verifier's quote path).
    """
    parsed = report if isinstance(report, SpdmReport) else parse_report(report)
    if expected_nonce is not None and not same_bytes(parsed.request_nonce, expected_nonce):
        raise BindingError("the SPDM request nonce is not the expected one: the GPU evidence "
                           "is not bound to this evidence")
    certs = load_chain(chain)
    root = check_chain(certs, trust, at)
    leaf = certs[0]
    fwids = leaf_fwids(leaf)
    if not fwids:
        raise QuoteError("the GPU leaf certificate has no FWID (TCG DICE TcbInfo) extension: "
                         "it is not the attestation signing certificate")
    if parsed.fwid is None or not any(same_bytes(f, parsed.fwid) for f in fwids):
        raise QuoteError("the report's FWID does not match the leaf certificate's FWID")
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not _signature_ok(parsed, key):
        raise QuoteError("the SPDM measurement signature is invalid (ECDSA P-384 with the "
                         "leaf certificate's key over request || response)")
    claims: dict[str, Any] = dict(parsed.fields)
    claims["cc_mode"] = parsed.cc_mode
    claims["measurements"] = {str(i): v.hex() for i, v in parsed.measurements().items()}
    claims["mismatched_measurements"] = None
    claims["revocation"] = check_ocsp(certs, trust.ocsp, at) if trust.ocsp else NOT_CHECKED
    return NvidiaResult(parsed, root, claims)


def compare_rims(result: NvidiaResult, rims: str | Path | None, at: datetime,
                 cache_dir: Path | None = None,
                 anchors: list[x509.Certificate] | None = None) -> NvidiaResult:
    """`result` with `mismatched_measurements` (a list of SPDM indexes) when `rims` names a
    RIM folder or a RIM service URL (answers cached under `cache_dir`); each RIM is
    verified at `at` against the pinned RIM root first (`anchors`: a test root beside it)."""
    if rims is None:
        return result
    from verifier.tee.nvidia_rim import compare, fetch_rims, load_rims

    if str(rims).startswith(("http://", "https://")):
        loaded = fetch_rims(str(rims), result.claims, at, cache_dir, anchors)
    else:
        loaded = load_rims(rims, at, anchors)
    claims = dict(result.claims)
    claims["mismatched_measurements"] = compare(result.report.measurements(), loaded)
    claims["rims"] = [{"name": r.name, "version": r.version, "tag_id": r.tag_id}
                      for r in loaded]
    return NvidiaResult(result.report, result.root, claims)


def to_verification(result: NvidiaResult, report_data: bytes, *,
                    nonce_checked: bool = True) -> QuoteVerification:
    """The `QuoteVerification` of a verified report: `hardware` True only when the RIMs
    were compared with no mismatch and CC mode is on (not DEVTOOLS)."""
    measurements = {f"nvidia.{k}": v for k, v in result.claims["measurements"].items()}
    cc = result.claims.get("cc_mode")
    mismatched = result.claims.get("mismatched_measurements")
    reasons = ["SPDM signature, FWID and device chain verified",
               REASON_NO_REVOCATION if result.claims.get("revocation", NOT_CHECKED) == NOT_CHECKED
               else "revocation checked (OCSP): every device certificate is good"]
    if mismatched is None:
        reasons.append(REASON_NOT_COMPARED)
    elif mismatched:
        reasons.append("measurements do not match the RIMs' golden values at SPDM indexes "
                       + ", ".join(map(str, mismatched)))
    else:
        reasons.append("measurements match the active golden values of the signed RIMs")
    if cc != "on":
        reasons.append(f"CC mode {cc or 'not reported by the evidence'}: not affirming")
    hardware = mismatched == [] and cc == "on" and nonce_checked
    reasons.append("the SPDM request nonce was checked" if nonce_checked
                   else "the SPDM request nonce was NOT checked (no expected nonce)")
    return QuoteVerification(
        provider=NAME, scheme=KIND, simulated=False, hardware=hardware, measurements=measurements,
        report_data=report_data, chain_ok=True, root=result.root, debug=cc == "devtools",
        reasons=tuple(reasons),
        claims={k: v for k, v in result.claims.items() if k != "measurements"},
        # The GPU's own facts in the EAR, mismatching RIM indexes included.
        ear_facts={"gpu": {k: result.claims.get(k) for k in GPU_FACTS}},
    )


def _verify(quote: dict[str, Any], expected_report_data: bytes, trust: SchemeTrust,
            at: datetime) -> QuoteVerification:
    return verify_device(quote, gpu_nonce(expected_report_data), trust, at,
                         report_data=expected_report_data)


def verify_device(quote: dict[str, Any], expected_nonce: bytes, trust: SchemeTrust,
                  at: datetime, *, report_data: bytes | None = None) -> QuoteVerification:
    """One GPU's evidence (the provider's dict) checked for `expected_nonce`: a lone GPU
    quote's (SHA-256 of the report data) or a composite evidence device's
    (`bytereplay.eat.device_gpu_nonce`). `BindingError` when it is bound to another nonce,
    `QuoteError` for any other refusal."""
    if not same_bytes(field_b64(quote, "gpu_nonce"), expected_nonce):
        raise BindingError("the GPU nonce is not the one this evidence derives: the GPU "
                           "evidence is not bound to this evidence")
    result = verify_report(field_b64(quote, "attestation_report"),
                           field_b64(quote, "cert_chain"), trust, at, expected_nonce)
    # Under a test root the RIMs may be signed by it too (never without `test_root`).
    anchors = _anchors(trust)[0] if trust.test_root else None
    return to_verification(compare_rims(result, trust.collateral, at, trust.cache_dir, anchors),
                           report_data if report_data is not None else expected_nonce)


class NvidiaScheme:
    """The `QuoteVerifier` of NVIDIA GPU evidence."""

    kind = KIND

    def parse(self, quote: dict[str, Any]) -> dict[str, Any]:
        return quote

    def verify(self, parsed: dict[str, Any], expected_report_data: bytes, trust: SchemeTrust,
               at: datetime) -> QuoteVerification:
        return _verify(parsed, expected_report_data, trust, at)


SCHEME = NvidiaScheme()
