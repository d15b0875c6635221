"""Intel TDX: DCAP quotes v4 and v5 verified with dcap-qvl to Intel's pinned root.

The quote object is the `tsm` provider's: `{"provider": "tsm", "simulated": false,
"tee": "tdx", "outblob": <unpadded base64url quote>, ...}`, optionally with
`"collateral"`: the collateral the attester fetched, in dcap-qvl's `QuoteCollateralV3`
JSON form.

`parse` reads the quote's layout (Intel TDX DCAP Quoting Library API, appendix A) and
refuses malformed input with `QuoteError`, naming what is wrong and where:

- header (48 bytes): version 4 or 5, attestation key type 2 (ECDSA P-256), TEE type
  0x81 (TDX); v5 adds a body descriptor (type 2: TD report 1.0, 584 bytes; type 3:
  TD report 1.5, 648 bytes); v4 carries a TD report 1.0;
- then the signature data length and the signature data, which must fit; bytes after
  it (a fixed-size quote buffer's padding, test data) are not signed: they are
  ignored and counted in the claims (`tdx.trailing_bytes`); at most `MAX_QUOTE` bytes.

`verify` (and the pure `verify_quote_bytes`) then, at the given time `at` only:

1. the report data in the TD report equals the expected binding (constant time);
2. a debug TD (TD attributes bit 0, DEBUG) is refused;
3. the root: Intel's SGX Root CA shipped in the package and pinned by SHA-256
   (`INTEL_ROOT_SHA256`), or, only where `trust.test_root` is set, the single
   certificate in `trust.roots`, named "TEST ROOT (not Intel)"; a root in
   `trust.roots` without `test_root` is refused (only a test root replaces Intel's);
4. the collateral: the configured source (`trust.collateral`, see `tdx_collateral`)
   or else the collateral in the quote object; every part must be issued by `at`
   (CRL `thisUpdate` included, which dcap-qvl does not check) and not expired at
   `at` (an expired part is named with its expiry);
5. dcap-qvl (`verify_with_root_ca`) checks the quote signature, the QE report and
   its PCK signature, the PCK chain and CRLs, the TCB info and QE identity signatures
   to the root, and finds the TCB level; its verdict on a platform is remembered per
   time cell and reused for that platform's next quote with only the quote's own
   signature checked, which answers exactly as dcap-qvl would (`tdx_platform`);
6. the TCB status must be in `trust.allowed_tcb` (default UpToDate only); the status
   and advisory ids go into the result and into a refusal.

The result has `hardware=True` (chain, signature, collateral and an allowed TCB all
held), `tcb_status`, `advisories`, `collateral` (issue / next-update times, RFC 3339),
`root`, measurements `tdx.mrtd`, `tdx.rtmr0`..`tdx.rtmr3`, `tdx.mrconfigid`,
`tdx.mrowner`, `tdx.mrownerconfig`, and `claims` (those plus TD attributes, XFAM,
report data, FMSPC, TCB status, advisory ids, quote version, MRSEAM, TEE TCB SVN).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bytereplay.errors import QuoteError
from bytereplay.tdx_collateral import quote_fmspc_and_ca
from verifier.tee.base import (
    QuoteVerification,
    SchemeTrust,
    field_b64,
    field_str,
    require_report_data,
    same_bytes,
)
from verifier.tee.tdx_collateral import TdxCollateral, parse_collateral, rfc3339, source_for
from verifier.tee.tdx_platform import VERDICTS

KIND = "tdx"
PROVIDER = "tsm"
INTEL_ROOT_PEM = "intel_sgx_root_ca.pem"
INTEL_ROOT_SHA256 = "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
INTEL_ROOT_NAME = "Intel SGX Root CA"
TEST_ROOT_NAME = "TEST ROOT (not Intel)"
MAX_QUOTE = 64 * 1024

HEADER_LEN = 48
TEE_TYPE_TDX = 0x00000081
ATT_KEY_ECDSA_P256 = 2
BODY_LEN = {2: 584, 3: 648}  # v5 body type -> TD report length (1.0, 1.5)
SIG_DATA_MIN = 64 + 64 + 6   # signature, attestation key, certification data header
TD_ATTR_DEBUG = 0x01         # TD attributes, byte 0 bit 0
# Offsets inside the TD report (1.0 layout; 1.5 appends TEE_TCB_SVN2 and MRSERVICETD).
TD_FIELDS: dict[str, tuple[int, int]] = {
    "tee_tcb_svn": (0, 16), "mrseam": (16, 48), "mrsignerseam": (64, 48),
    "seam_attributes": (112, 8), "td_attributes": (120, 8), "xfam": (128, 8),
    "mrtd": (136, 48), "mrconfigid": (184, 48), "mrowner": (232, 48),
    "mrownerconfig": (280, 48), "rtmr0": (328, 48), "rtmr1": (376, 48),
    "rtmr2": (424, 48), "rtmr3": (472, 48), "report_data": (520, 64),
}
TD15_FIELDS: dict[str, tuple[int, int]] = {"tee_tcb_svn2": (584, 16), "mrservicetd": (600, 48)}
MEASUREMENTS = ("mrtd", "rtmr0", "rtmr1", "rtmr2", "rtmr3", "mrconfigid", "mrowner",
                "mrownerconfig")
NO_TCB_LEVEL = "No matching TCB level found"


@dataclass(frozen=True)
class TdxQuote:
    """A structurally valid TDX quote.

    `raw` is the quote up to the end of its signature data (`trailing` bytes after
    it were dropped); `body` the TD report; `fields` its named
    fields (see `TD_FIELDS`); `collateral` the quote object's collateral, if any.
    """

    raw: bytes
    version: int
    body_offset: int
    body: bytes
    fields: dict[str, bytes]
    collateral: Any = None
    trailing: int = 0

    @property
    def report_data(self) -> bytes:
        return self.fields["report_data"]

    @property
    def debug(self) -> bool:
        return bool(self.fields["td_attributes"][0] & TD_ATTR_DEBUG)


def looks_like_tdx(data: bytes) -> bool:
    """True when `data` starts like a TDX DCAP quote (v4/v5 header, TEE type TDX)."""
    if len(data) < HEADER_LEN:
        return False
    version, key_type, tee_type = struct.unpack_from("<HHI", data, 0)
    return version in (4, 5) and key_type == ATT_KEY_ECDSA_P256 and tee_type == TEE_TYPE_TDX


def parse_quote_bytes(quote: bytes) -> TdxQuote:
    """The TDX quote in `quote`, its layout checked; `QuoteError` naming what and where."""
    if not isinstance(quote, bytes | bytearray):
        raise QuoteError("a TDX quote is bytes")
    quote = bytes(quote)
    if len(quote) > MAX_QUOTE:
        raise QuoteError(f"TDX quote of {len(quote)} bytes is over the {MAX_QUOTE}-byte limit")
    if len(quote) < HEADER_LEN:
        raise QuoteError(f"TDX quote truncated: {len(quote)} bytes, the header alone is "
                         f"{HEADER_LEN} (offset 0)")
    version, key_type, tee_type = struct.unpack_from("<HHI", quote, 0)
    if version not in (4, 5):
        raise QuoteError(f"unsupported TDX quote version {version} at offset 0 (4 and 5 are)")
    if tee_type != TEE_TYPE_TDX:
        raise QuoteError(f"not a TDX quote: TEE type {tee_type:#x} at offset 4 (TDX is "
                         f"{TEE_TYPE_TDX:#x})")
    if key_type != ATT_KEY_ECDSA_P256:
        raise QuoteError(f"TDX quote attestation key type {key_type} at offset 2 is not "
                         f"ECDSA P-256 ({ATT_KEY_ECDSA_P256})")
    offset = HEADER_LEN
    body_len = BODY_LEN[2]
    if version == 5:
        if len(quote) < offset + 6:
            raise QuoteError(f"TDX quote v5 truncated at offset {offset}: no body descriptor")
        body_type, size = struct.unpack_from("<HI", quote, offset)
        if body_type not in BODY_LEN:
            raise QuoteError(f"TDX quote v5 body type {body_type} at offset {offset} is not a "
                             "TD report (2: TD 1.0, 3: TD 1.5)")
        body_len = BODY_LEN[body_type]
        if size != body_len:
            raise QuoteError(f"TDX quote v5 body size {size} at offset {offset + 2}; a body of "
                             f"type {body_type} is {body_len} bytes")
        offset += 6
    if len(quote) < offset + body_len + 4:
        raise QuoteError(f"TDX quote truncated inside the TD report at offset {offset} "
                         f"({len(quote)} bytes; the report and signature length need "
                         f"{offset + body_len + 4})")
    body = quote[offset: offset + body_len]
    sig_at = offset + body_len
    (sig_len,) = struct.unpack_from("<I", quote, sig_at)
    end = sig_at + 4 + sig_len
    if sig_len < SIG_DATA_MIN:
        raise QuoteError(f"TDX quote signature data length {sig_len} at offset {sig_at} is "
                         f"under the {SIG_DATA_MIN}-byte minimum")
    if end > len(quote):
        raise QuoteError(f"TDX quote truncated: the signature data length {sig_len} at offset "
                         f"{sig_at} runs to {end}, past the end ({len(quote)} bytes)")
    fields = {name: body[off: off + n] for name, (off, n) in TD_FIELDS.items()}
    if body_len == BODY_LEN[3]:
        fields.update({name: body[off: off + n] for name, (off, n) in TD15_FIELDS.items()})
    return TdxQuote(raw=quote[:end], version=version, body_offset=offset, body=body,
                    fields=fields, trailing=len(quote) - end)


@lru_cache(maxsize=1)
def intel_root_der() -> bytes:
    """Intel's SGX Root CA (DER) from the package, refused unless its SHA-256 is pinned."""
    pem = resources.files("verifier.tee").joinpath(INTEL_ROOT_PEM).read_bytes()
    der = x509.load_pem_x509_certificate(pem[pem.index(b"-----BEGIN"):]).public_bytes(Encoding.DER)
    if hashlib.sha256(der).hexdigest() != INTEL_ROOT_SHA256:
        raise QuoteError(f"the packaged {INTEL_ROOT_PEM} is not Intel's pinned SGX Root CA")
    return der


@lru_cache(maxsize=16)
def _test_root_der(roots: tuple[str, ...]) -> bytes:
    certs: list[x509.Certificate] = []
    for pem in roots:
        try:
            certs += x509.load_pem_x509_certificates(pem.encode())
        except ValueError:
            raise QuoteError("tee.tdx roots: not PEM certificates") from None
    if len(certs) != 1:
        raise QuoteError(f"tee.tdx roots must hold exactly one test root certificate, not "
                         f"{len(certs)}")
    return certs[0].public_bytes(Encoding.DER)


def root_for(trust: SchemeTrust) -> tuple[bytes, str]:
    """(root DER, its name): Intel's pinned root, or the configured TEST ROOT."""
    if not trust.roots:
        return intel_root_der(), INTEL_ROOT_NAME
    if not trust.test_root:
        raise QuoteError("tee.tdx roots: only a test root (test_root: true) may replace Intel's "
                         "pinned SGX Root CA")
    return _test_root_der(tuple(trust.roots)), TEST_ROOT_NAME


def _collateral_for(parsed: TdxQuote, trust: SchemeTrust, at: datetime,
                    given: Any) -> tuple[TdxCollateral, str]:
    if given is not None:
        return parse_collateral(given), "given"
    if trust.collateral:
        fmspc, ca = _fmspc_and_ca(parsed)
        source = source_for(trust.collateral, trust.cache_dir)
        return source.get(fmspc, at, ca), "source"
    if parsed.collateral is not None:
        return parse_collateral(parsed.collateral), "quote"
    raise QuoteError("no tdx collateral: the quote carries none and tee.tdx.collateral is not "
                     "configured")


def _fmspc_and_ca(parsed: TdxQuote) -> tuple[str, str]:
    """The FMSPC and PCK CA of the quote's PCK certificate (cached by certification data;
    read by `bytereplay.tdx_collateral.quote_fmspc_and_ca`, as the attester reads them).

    The key is the signature data after the quote's own signature (attestation key, QE
    report, PCK chain), which is the same for every quote of one platform; the value is
    a pure function of the quote, so caching it trusts nothing.
    """
    sig_at = parsed.body_offset + len(parsed.body)
    return _fmspc_and_ca_of(parsed.raw[sig_at + 4 + 64:], parsed.raw)


_FMSPC_CA: dict[bytes, tuple[str, str]] = {}
_FMSPC_CA_MAX = 256


def _fmspc_and_ca_of(key: bytes, raw: bytes) -> tuple[str, str]:
    found = _FMSPC_CA.get(key)
    if found is None:
        found = quote_fmspc_and_ca(raw)
        if len(_FMSPC_CA) >= _FMSPC_CA_MAX:
            _FMSPC_CA.clear()
        _FMSPC_CA[key] = found
    return found


def _as_utc(at: datetime) -> datetime:
    if at.tzinfo is None:
        raise QuoteError("the verification time needs a time zone")
    return at.astimezone(UTC)


def _check_binding(parsed: TdxQuote, expected: bytes) -> None:
    require_report_data(expected)
    if not same_bytes(parsed.report_data, expected):
        raise QuoteError("the tdx report data does not match SHA-512(nonce || record digest || "
                         "evidence key thumbprint): the quote is not bound to this evidence")


def verify_parsed(parsed: TdxQuote, trust: SchemeTrust, at: datetime, *, collateral: Any = None,
                  expected_report_data: bytes | None = None) -> QuoteVerification:
    """Verify a parsed quote (see the module docstring); `QuoteError` on any refusal."""
    at = _as_utc(at)
    if expected_report_data is not None:
        _check_binding(parsed, expected_report_data)
    if parsed.debug:
        raise QuoteError("debug TD refused: the TD attributes DEBUG bit is set (offset "
                         f"{parsed.body_offset + TD_FIELDS['td_attributes'][0]})")
    root_der, root_name = root_for(trust)
    coll, origin = _collateral_for(parsed, trust, at, collateral)
    times = coll.check_at(at)
    signed_len = parsed.body_offset + len(parsed.body)
    try:
        status, advisories = VERDICTS.verify(
            parsed.raw, signed_len, parsed.body_offset + TD_FIELDS["report_data"][0], coll,
            root_der, int(at.timestamp()))
    except Exception as exc:  # dcap-qvl raises ValueError for every refusal
        message = " ".join(str(exc).split())[:300]
        if NO_TCB_LEVEL in message:
            raise QuoteError(f"tdx quote refused: no matching TCB level for FMSPC {coll.fmspc} in "
                             f"the TCB info (evaluation {coll.tcb_evaluation}): the platform's "
                             "SVNs are below every listed level") from None
        raise QuoteError(f"tdx quote refused by dcap-qvl under {root_name}: {message}") from None
    if status not in trust.allowed_tcb:
        raise QuoteError(f"tdx TCB status {status} is not allowed (allowed: "
                         f"{', '.join(trust.allowed_tcb) or 'none'}); advisories: "
                         f"{', '.join(advisories) or 'none'}")
    return _result(parsed, coll, times, origin, status, advisories, root_name,
                   bound=expected_report_data is not None)


def _result(parsed: TdxQuote, coll: TdxCollateral, times: dict[str, str], origin: str,
            status: str, advisories: tuple[str, ...], root_name: str,
            bound: bool) -> QuoteVerification:
    f = parsed.fields
    measurements = {f"tdx.{name}": f[name].hex() for name in MEASUREMENTS}
    claims: dict[str, Any] = {
        **measurements,
        "tdx.td_attributes": f["td_attributes"].hex(), "tdx.xfam": f["xfam"].hex(),
        "tdx.report_data": f["report_data"].hex(), "tdx.mrseam": f["mrseam"].hex(),
        "tdx.tee_tcb_svn": f["tee_tcb_svn"].hex(), "tdx.quote_version": parsed.version,
        "tdx.fmspc": coll.fmspc, "tdx.tcb_status": status, "tdx.advisory_ids": list(advisories),
        "tdx.tcb_evaluation": coll.tcb_evaluation, "tdx.collateral": dict(times),
        "tdx.root": root_name, "tdx.trailing_bytes": parsed.trailing,
    }
    where = {"given": "given", "source": "from the configured source",
             "quote": "carried in the quote object"}[origin]
    reasons = [
        f"TDX quote v{parsed.version}: signature, QE report, PCK chain and CRLs verified by "
        f"dcap-qvl to {root_name}",
        f"collateral ({where}) for FMSPC {coll.fmspc}: TCB info and QE identity signatures "
        f"verified; issued {times['issued']}, next update {times['next_update']}",
        f"TCB status {status} is allowed" + (f"; advisories: {', '.join(advisories)}"
                                             if advisories else "; no advisories"),
        "TD is not a debug TD",
    ]
    if root_name == TEST_ROOT_NAME:
        reasons.insert(0, "verified under a TEST ROOT (not Intel): not evidence of real hardware "
                          "outside a test")
    if bound:
        reasons.append("report data inside the tdx quote binds nonce, run record digest and "
                       "evidence key")
    return QuoteVerification(
        provider=PROVIDER, simulated=False, hardware=True, measurements=measurements,
        report_data=f["report_data"], chain_ok=True, reasons=tuple(reasons), scheme=KIND,
        tcb_status=status, advisories=advisories,
        collateral={"issued": times["issued"], "next_update": times["next_update"]},
        root=root_name, debug=False, claims=claims)


def verify_quote_bytes(quote: bytes, trust: SchemeTrust, at: datetime, *, collateral: Any = None,
                       expected_report_data: bytes | None = None) -> QuoteVerification:
    """Verify the raw TDX quote `quote` under `trust` at `at` (for the CLI and tests).

    `collateral` (a `QuoteCollateralV3` JSON object, its text, or a parsed
    `TdxCollateral`) overrides `trust.collateral`. With `expected_report_data` the
    report data binding is checked too. Raises `QuoteError` on any refusal.
    """
    return verify_parsed(parse_quote_bytes(quote), trust, at, collateral=collateral,
                         expected_report_data=expected_report_data)


class TdxScheme:
    """The `tdx` `QuoteVerifier`: tsm quote objects whose `tee` is `tdx`."""

    @property
    def kind(self) -> str:
        return KIND

    def parse(self, quote: dict[str, Any]) -> TdxQuote:
        """The quote object's TDX quote (and collateral, if carried); `QuoteError` if malformed."""
        if not isinstance(quote, dict):
            raise QuoteError("a quote is a JSON object")
        if field_str(quote, "tee") != "tdx":
            raise QuoteError(f"the tdx scheme reads tsm quotes with tee 'tdx', not "
                             f"{str(quote.get('tee'))[:20]!r}")
        if quote.get("simulated") is not False:
            raise QuoteError("a tdx quote must say simulated: false")
        text = field_str(quote, "outblob")
        if len(text) > MAX_QUOTE * 4 // 3 + 4:
            raise QuoteError(f"tdx outblob over the {MAX_QUOTE}-byte limit")
        parsed = parse_quote_bytes(field_b64(quote, "outblob"))
        collateral = quote.get("collateral")
        if collateral is not None:
            if not isinstance(collateral, Mapping):
                raise QuoteError("quote field 'collateral' is not a JSON object")
            parsed = TdxQuote(raw=parsed.raw, version=parsed.version,
                              body_offset=parsed.body_offset, body=parsed.body,
                              fields=parsed.fields, collateral=dict(collateral),
                              trailing=parsed.trailing)
        return parsed

    def verify(self, parsed: Any, expected_report_data: bytes, trust: SchemeTrust,
               at: datetime) -> QuoteVerification:
        """Verify `parsed` (from `parse`) bound to `expected_report_data` at `at`."""
        if not isinstance(parsed, TdxQuote):
            raise QuoteError("tdx verify takes what tdx parse returned")
        require_report_data(expected_report_data)
        return verify_parsed(parsed, trust, at, expected_report_data=expected_report_data)


SCHEME = TdxScheme()

__all__ = ["INTEL_ROOT_SHA256", "KIND", "SCHEME", "TEST_ROOT_NAME", "TdxQuote", "TdxScheme",
           "looks_like_tdx", "parse_quote_bytes", "rfc3339", "verify_parsed", "verify_quote_bytes"]
