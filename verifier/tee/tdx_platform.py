"""dcap-qvl's verdict on a TDX quote, remembered for the next quote of the same platform.

`dcap_qvl.verify_with_root_ca(quote, collateral, root, now)` is a pure function of its
four inputs (no clock of its own, no network, no state), and most of its work is the
platform's: the collateral's signatures and chains to the root, the CRLs, the PCK chain,
the QE report and its PCK signature, the QE identity and the TCB level. Between two
quotes of one TD only the report data and the quote's own ECDSA signature differ.
`PlatformVerdicts.verify(raw, signed_len, report_data_at, collateral, root_der, now_s)`
answers exactly what dcap-qvl answers (its TCB status and advisory ids, or its
`ValueError`), doing that platform work once per platform and time cell:

- **key**: the root (DER), the collateral (the exact JSON text dcap-qvl parsed), and the
  quote without its 64-byte report data and its 64-byte quote signature: the header,
  every other TD report field (TEE TCB SVN, MRSIGNERSEAM, SEAM and TD attributes,
  MRSERVICETD, ...), the attestation key, the QE report, its signature, the QE
  authentication data and the PCK chain: everything else dcap-qvl reads.
- **remembered**: only a success of dcap-qvl, with the attestation key and the *time
  cell* of its time `now_s`: the open interval between the nearest instants below and
  above `now_s` among every instant in the inputs: every UTCTime and GeneralizedTime in
  the root, in every certificate of the quote's PCK chain and of the three issuer
  chains, and in both CRLs (their entries' revocation dates included), and every
  RFC 3339 time anywhere in the TCB info and QE identity (issue dates, next updates,
  TCB dates), each as its whole second below and above. A success at an instant that
  is itself one of them is not remembered; inputs whose instants cannot all be read
  are never remembered.
- **a later quote** with the same key at a time inside the cell: its ECDSA P-256
  signature over header (and v5 body descriptor) and TD report is checked with
  `cryptography` against the remembered attestation key; when it holds, the remembered
  status and advisories are the answer. A miss, a time outside the cell, or a signature
  that does not hold runs dcap-qvl on the whole quote, so every refusal is dcap-qvl's own.

Why this equals dcap-qvl: it compares its time only with instants found in its inputs
(certificate validity and CRL times in rustls-webpki's path validation, the collateral's
issue and next-update times), so each comparison comes out the same at every time
inside one cell; the report data is read by nothing but the quote signature (it is
returned, never judged); an ECDSA verification is the same computation in ring and in
OpenSSL. `tests/test_tee_tdx_platform.py` holds the fast path equal to dcap-qvl on the
real samples and under the test root, for every tamper case and on both sides of every
instant. The verdict cache is bounded (`MAX_ENTRIES`, cleared when full) and can be
switched off (`enabled`), which the benchmark does to measure what it earns.
"""

from __future__ import annotations

import binascii
import bisect
import json
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dcap_qvl
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from bytereplay.tdx_collateral import TdxCollateral

SIG_LEN = 64            # the quote's ECDSA P-256 signature, r || s
ATT_KEY_LEN = 64        # the attestation key, x || y
REPORT_DATA_LEN = 64
MAX_ENTRIES = 256
MAX_DER_DEPTH = 32
CHAIN_FIELDS = ("pck_crl_issuer_chain", "tcb_info_issuer_chain", "qe_identity_issuer_chain")
CRL_FIELDS = ("root_ca_crl", "pck_crl")
JSON_FIELDS = ("tcb_info", "qe_identity")
_ECDSA = ec.ECDSA(hashes.SHA256())
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.S)
_UTC_TIME = re.compile(r"(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)(\d\d)?(Z|[+-]\d{4})")
_GEN_TIME = re.compile(r"(\d{4})(\d\d)(\d\d)(\d\d)(\d\d)?(\d\d)?([.,]\d+)?(Z|[+-]\d{4})?")
_RFC3339 = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[+-]\d\d:\d\d)")
_DATE_LIKE = re.compile(r"\d{4}-\d\d-\d\d")


class NotCacheable(ValueError):
    """An input whose instants cannot all be read: its verdict is not remembered."""


# -- every instant in the inputs -------------------------------------------------------

def _seconds(t: datetime) -> tuple[int, int]:
    """The whole seconds at or below and at or above `t` (equal for whole-second times)."""
    delta = t - datetime(1970, 1, 1, tzinfo=UTC)
    whole = delta.days * 86400 + delta.seconds
    return whole, whole + (1 if delta.microseconds else 0)


def _offset(text: str) -> timedelta:
    if text in ("", "Z", "z"):
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:4]))


def _asn1_time(content: bytes) -> datetime | None:
    """The instant a UTCTime or GeneralizedTime content names, or None."""
    try:
        text = content.decode("ascii")
    except UnicodeDecodeError:
        return None
    try:
        if m := _UTC_TIME.fullmatch(text):
            yy = int(m[1])
            t = datetime(1900 + yy if yy >= 50 else 2000 + yy, int(m[2]), int(m[3]), int(m[4]),
                         int(m[5]), int(m[6] or 0), tzinfo=UTC)
            return t - _offset(m[7])
        if m := _GEN_TIME.fullmatch(text):
            fraction = float("0." + m[7][1:]) if m[7] else 0.0
            t = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5] or 0),
                         int(m[6] or 0), tzinfo=UTC) + timedelta(seconds=fraction)
            return t - _offset(m[8] or "")
    except (ValueError, OverflowError):
        return None
    return None


def der_instants(data: bytes, out: set[int], depth: int = 0) -> None:
    """Add to `out` every instant in the DER elements `data`: every UTCTime (0x17) and
    GeneralizedTime (0x18), any primitive whose content reads as one (implicitly tagged
    times), and those inside OCTET and BIT STRINGs that hold DER (extension values).
    `NotCacheable` when `data` is not a whole sequence of DER elements or a time tag
    holds no time."""
    if depth > MAX_DER_DEPTH:
        raise NotCacheable("DER nested too deep")
    i, n = 0, len(data)
    while i < n:
        tag = data[i]
        i += 1
        if tag & 0x1F == 0x1F:  # a high tag number: base-128 digits
            while True:
                if i >= n:
                    raise NotCacheable("DER tag runs past the end")
                i += 1
                if not data[i - 1] & 0x80:
                    break
        if i >= n:
            raise NotCacheable("DER length missing")
        first = data[i]
        i += 1
        if first < 0x80:
            length = first
        else:
            k = first & 0x7F
            if k == 0 or k > 4 or i + k > n:
                raise NotCacheable("DER length not definite")
            length = int.from_bytes(data[i: i + k], "big")
            i += k
        if i + length > n:
            raise NotCacheable("DER element runs past the end")
        value = data[i: i + length]
        i += length
        if tag & 0x20:
            der_instants(value, out, depth + 1)
            continue
        t = _asn1_time(value) if 11 <= length <= 32 else None
        if t is not None:
            out.update(_seconds(t))
        elif tag in (0x17, 0x18):
            raise NotCacheable(f"a DER time that does not read: {value[:32]!r}")
        if tag in (0x03, 0x04) and length > 1:
            inner: set[int] = set()
            try:
                der_instants(value[1:] if tag == 0x03 else value, inner, depth + 1)
            except NotCacheable:
                continue  # opaque bytes, not DER
            out |= inner


def pem_instants(text: bytes, out: set[int]) -> None:
    """Every instant in every PEM block of `text` (any label)."""
    for m in _PEM.finditer(text):
        try:
            der = binascii.a2b_base64(b"".join(m[2].split()), strict_mode=True)
        except binascii.Error:
            raise NotCacheable("a PEM block that is not base64") from None
        der_instants(der, out)
    if text.count(b"-----BEGIN") != len(_PEM.findall(text)):
        raise NotCacheable("a PEM block without its end")


def json_instants(value: Any, out: set[int]) -> None:
    """Every RFC 3339 time in the JSON value `value`, at any depth."""
    if isinstance(value, dict):
        for item in value.values():
            json_instants(item, out)
    elif isinstance(value, list):
        for item in value:
            json_instants(item, out)
    elif isinstance(value, str) and _DATE_LIKE.match(value):
        m = _RFC3339.fullmatch(value)
        if m is None:
            raise NotCacheable(f"a date that does not read as RFC 3339: {value[:40]!r}")
        try:
            t = datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]),
                         tzinfo=UTC)
        except ValueError:
            raise NotCacheable(f"not a date: {value[:40]!r}") from None
        if m[7]:
            t += timedelta(seconds=float("0" + m[7]))
        out.update(_seconds(t - _offset(m[8])))


def instants(raw: bytes, signed_len: int, collateral: TdxCollateral, root_der: bytes) -> list[int]:
    """Every instant (whole seconds) in the inputs of one verification, sorted."""
    out: set[int] = set()
    der_instants(root_der, out)
    pem_instants(raw[signed_len:], out)  # the PCK chain in the certification data
    obj = json.loads(collateral.text)
    for name in CHAIN_FIELDS:
        pem_instants(obj[name].encode(), out)
    for name in CRL_FIELDS:
        try:
            der_instants(bytes.fromhex(obj[name]), out)
        except ValueError as exc:
            raise NotCacheable(f"{name}: {exc}") from None
    for name in JSON_FIELDS:
        json_instants(json.loads(obj[name]), out)
    return sorted(out)


def cell(points: list[int], now_s: int) -> tuple[float, float] | None:
    """The open interval of whole seconds around `now_s` that holds no instant of
    `points`; None when `now_s` is one of them."""
    at = bisect.bisect_left(points, now_s)
    if at < len(points) and points[at] == now_s:
        return None
    low = float(points[at - 1]) if at > 0 else float("-inf")
    high = float(points[at]) if at < len(points) else float("inf")
    return low, high


# -- the verdicts ----------------------------------------------------------------------

@dataclass(frozen=True)
class Verdict:
    """dcap-qvl's success for one key, and where it holds."""

    status: str
    advisories: tuple[str, ...]
    key: ec.EllipticCurvePublicKey
    low: float   # the cell, exclusive at both ends
    high: float


class PlatformVerdicts:
    """dcap-qvl with its platform verdicts remembered (see the module docstring)."""

    def __init__(self, *, enabled: bool = True, max_entries: int = MAX_ENTRIES) -> None:
        self.enabled = enabled
        self.max_entries = max_entries
        self.hits = 0     # answered with one signature check
        self.misses = 0   # answered by dcap-qvl
        self._verdicts: dict[tuple[bytes, str, bytes], Verdict] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self._verdicts.clear()
            self.hits = self.misses = 0

    def verify(self, raw: bytes, signed_len: int, report_data_at: int, collateral: TdxCollateral,
               root_der: bytes, now_s: int) -> tuple[str, tuple[str, ...]]:
        """dcap-qvl's (TCB status, advisory ids) for the quote `raw` (up to the end of its
        signature data), whose signed part is `raw[:signed_len]` and report data
        `raw[report_data_at:report_data_at + 64]`; dcap-qvl's `ValueError` on refusal."""
        if not self.enabled:
            return self._dcap_qvl(raw, collateral, root_der, now_s)
        sig_at = signed_len + 4  # after the signature data length
        platform = b"".join((raw[:report_data_at], raw[report_data_at + REPORT_DATA_LEN: sig_at],
                             raw[sig_at + SIG_LEN:]))
        key = (root_der, collateral.text, platform)
        found = self._verdicts.get(key)
        if found is not None and found.low < now_s < found.high:
            sig = raw[sig_at: sig_at + SIG_LEN]
            der = encode_dss_signature(int.from_bytes(sig[:32], "big"),
                                       int.from_bytes(sig[32:], "big"))
            try:
                found.key.verify(der, raw[:signed_len], _ECDSA)
            except InvalidSignature:
                pass  # dcap-qvl below gives its own refusal
            else:
                self.hits += 1
                return found.status, found.advisories
        status, advisories = self._dcap_qvl(raw, collateral, root_der, now_s)
        self._remember(key, raw, signed_len, collateral, root_der, now_s, status, advisories)
        return status, advisories

    def _dcap_qvl(self, raw: bytes, collateral: TdxCollateral, root_der: bytes,
                  now_s: int) -> tuple[str, tuple[str, ...]]:
        self.misses += 1
        report = dcap_qvl.verify_with_root_ca(raw, collateral.qvl, root_der, now_s)
        return str(report.status), tuple(str(a) for a in report.advisory_ids)

    def _remember(self, key: tuple[bytes, str, bytes], raw: bytes, signed_len: int,
                  collateral: TdxCollateral, root_der: bytes, now_s: int, status: str,
                  advisories: tuple[str, ...]) -> None:
        try:
            where = cell(instants(raw, signed_len, collateral, root_der), now_s)
        except (NotCacheable, ValueError, KeyError, TypeError):
            return  # inputs read differently here than dcap-qvl read them: never remembered
        if where is None:
            return
        att_key = raw[signed_len + 4 + SIG_LEN: signed_len + 4 + SIG_LEN + ATT_KEY_LEN]
        try:
            public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + att_key)
        except ValueError:
            return
        with self._lock:
            if len(self._verdicts) >= self.max_entries:
                self._verdicts.clear()
            self._verdicts[key] = Verdict(status, advisories, public, *where)


VERDICTS = PlatformVerdicts()

__all__ = ["MAX_ENTRIES", "VERDICTS", "NotCacheable", "PlatformVerdicts", "Verdict", "cell",
           "der_instants", "instants", "json_instants", "pem_instants"]
