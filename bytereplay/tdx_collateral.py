"""Intel TDX collateral: its shape, freshness at a given time, where it comes from, and
the quote's FMSPC and PCK CA that name it. Role-neutral: the `tsm` provider fetches it
for the quote object (attester `tdx_collateral_url`), the verifier reads it from its own
source or the quote (`verifier.tee.tdx_collateral` adds dcap-qvl's parse).

Collateral is dcap-qvl's `QuoteCollateralV3` JSON object: nine text fields,
`pck_crl_issuer_chain`, `root_ca_crl` (DER, hex), `pck_crl` (DER, hex),
`tcb_info_issuer_chain`, `tcb_info` (the exact signed JSON text), `tcb_info_signature`
(hex), `qe_identity_issuer_chain`, `qe_identity` (the exact signed JSON text),
`qe_identity_signature` (hex). Its signatures are checked by the verifier (dcap-qvl) against the
pinned root; this module checks its shape and what dcap-qvl does not (or does not name
well):

- every part's issue time (TCB info and QE identity `issueDate`, each CRL's
  `thisUpdate`) is not after the verification time;
- every part's `nextUpdate` is not before it; an expired part is named with its expiry.

Sources (the verifier's `SchemeTrust.collateral`, the attester's `tdx_collateral_url`):

- a folder: `<FMSPC>.json` per platform (upper or lower case hex);
- a single file (its TCB info must be for the quote's FMSPC);
- a file found and parsed is remembered by (path, mtime, size); within `recheck_s`
  (default 1 s) of its last look the source answers from memory without touching the
  disk (a replaced file is picked up within that interval; its freshness at the given
  time is checked by the caller on every use, `TdxCollateral.check_at`);
- an `http://` or `https://` Intel PCS / PCCS v4 base URL (e.g.
  `https://api.trustedservices.intel.com`). Its answers (`/sgx/certification/v4/pckcrl`,
  `/tdx/certification/v4/tcb`, `/tdx/certification/v4/qe/identity`, and the root CA
  CRL from a PCCS's `/sgx/certification/v4/rootcacrl` or, for Intel's PCS, its
  distribution point `INTEL_ROOT_CA_CRL_URL`) are assembled into the JSON form and
  cached on disk under the cache folder (`SchemeTrust.cache_dir`, the attester's
  `tdx_collateral_cache`) as `tdx-<ca>-<FMSPC>.json`; a cached entry is used while it
  is fresh at the given time and refetched otherwise.

`quote_fmspc_and_ca` reads the FMSPC (SGX extension 1.2.840.113741.1.13.1, FMSPC
1.2.840.113741.1.13.1.4) and the PCK CA (`platform` or `processor`, from the issuer) of
the PCK certificate in a v4/v5 quote's certification data (type 5, PEM chain, directly
or inside type 6, QE report certification data), with `cryptography` only.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from bytereplay.encoding import parse_rfc3339
from bytereplay.errors import QuoteError
from bytereplay.files import read_bounded

FIELDS = ("pck_crl_issuer_chain", "root_ca_crl", "pck_crl", "tcb_info_issuer_chain", "tcb_info",
          "tcb_info_signature", "qe_identity_issuer_chain", "qe_identity", "qe_identity_signature")
MAX_COLLATERAL = 1 << 20
HTTP_TIMEOUT_S = 10.0
PCK_CA = ("platform", "processor")
RECHECK_S = 1.0  # a folder or file source looks at the disk at most this often per FMSPC
INTEL_PCS_HOST = "api.trustedservices.intel.com"
# The root CA CRL's distribution point (in Intel's SGX Root CA certificate).
INTEL_ROOT_CA_CRL_URL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"
# Which part each time belongs to, in words, for refusals.
PART_NAMES = {"tcb_info": "TCB info", "qe_identity": "QE identity", "pck_crl": "PCK CRL",
              "root_ca_crl": "root CA CRL"}


def rfc3339(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _time(text: Any, where: str) -> datetime:
    if not isinstance(text, str):
        raise QuoteError(f"tdx collateral: {where} is missing or not text")
    try:
        return parse_rfc3339(text).astimezone(UTC)
    except ValueError as exc:
        raise QuoteError(f"tdx collateral: {where} {text[:40]!r} {exc}") from None


def _crl_times(hex_der: str, name: str) -> tuple[datetime, datetime]:
    try:
        crl = x509.load_der_x509_crl(bytes.fromhex(hex_der))
    except ValueError:
        raise QuoteError(f"tdx collateral: {name} is not a DER CRL in hex") from None
    next_update = crl.next_update_utc
    if next_update is None:
        raise QuoteError(f"tdx collateral: {name} has no nextUpdate")
    return crl.last_update_utc, next_update


@dataclass(frozen=True)
class TdxCollateral:
    """Parsed collateral: its JSON text, FMSPC and the times of its parts.

    `issued[part]` / `next_update[part]` for part in tcb_info, qe_identity, pck_crl,
    root_ca_crl (CRLs: thisUpdate / nextUpdate). `qvl` is dcap-qvl's object where the
    verifier parsed it (`verifier.tee.tdx_collateral.parse_collateral`), else None.
    """

    text: str
    fmspc: str
    tcb_evaluation: int | None
    issued: Mapping[str, datetime]
    next_update: Mapping[str, datetime]
    qvl: Any = None

    def as_json(self) -> dict[str, str]:
        """The `QuoteCollateralV3` JSON object (what a quote object carries)."""
        value: dict[str, str] = json.loads(self.text)
        return value

    @property
    def latest_issue(self) -> datetime:
        return max(self.issued.values())

    @property
    def earliest_expiry(self) -> datetime:
        return min(self.next_update.values())

    def fresh_at(self, at: datetime) -> bool:
        return self.latest_issue <= at <= self.earliest_expiry

    def check_at(self, at: datetime) -> dict[str, str]:
        """Refuse collateral not yet issued or expired at `at`; its times, RFC 3339.

        The result maps `issued` (the latest issue time), `next_update` (the earliest
        expiry) and `<part>_issued` / `<part>_next_update` for each part.
        """
        for part, t in self.issued.items():
            if t > at:
                what = "thisUpdate" if part.endswith("crl") else "issueDate"
                raise QuoteError(f"tdx collateral: the {PART_NAMES[part]} {what} {rfc3339(t)} is "
                                 f"after the verification time {rfc3339(at)}")
        for part, t in sorted(self.next_update.items(), key=lambda kv: kv[1]):
            if t < at:
                raise QuoteError(f"tdx collateral expired at {rfc3339(t)} (the {PART_NAMES[part]} "
                                 f"nextUpdate); the verification time is {rfc3339(at)}")
        return dict(self.times)

    @cached_property
    def times(self) -> dict[str, str]:
        """`issued`, `next_update` and `<part>_issued` / `<part>_next_update`, RFC 3339."""
        out = {"issued": rfc3339(self.latest_issue), "next_update": rfc3339(self.earliest_expiry)}
        for part in PART_NAMES:
            out[f"{part}_issued"] = rfc3339(self.issued[part])
            out[f"{part}_next_update"] = rfc3339(self.next_update[part])
        return out


def parse_collateral(value: Any) -> TdxCollateral:
    """Read collateral from its JSON object, JSON text or bytes; `QuoteError` if malformed.

    The shape and times only: dcap-qvl's own parse is the verifier's.
    """
    if isinstance(value, TdxCollateral):
        return value
    if isinstance(value, bytes | bytearray):
        if len(value) > MAX_COLLATERAL:
            raise QuoteError("tdx collateral over 1 MiB")
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise QuoteError("tdx collateral is not UTF-8 text") from None
    if isinstance(value, str):
        if len(value) > MAX_COLLATERAL:
            raise QuoteError("tdx collateral over 1 MiB")
        try:
            value = json.loads(value)
        except (ValueError, RecursionError):
            raise QuoteError("tdx collateral is not JSON") from None
    if not isinstance(value, Mapping):
        raise QuoteError("tdx collateral is a JSON object (dcap-qvl QuoteCollateralV3)")
    obj: dict[str, str] = {}
    for name in FIELDS:
        field = value.get(name)
        if not isinstance(field, str) or not field:
            raise QuoteError(f"tdx collateral field {name!r} is missing or not text")
        obj[name] = field
    try:
        tcb_info = json.loads(obj["tcb_info"])
        qe_identity = json.loads(obj["qe_identity"])
    except (ValueError, RecursionError):
        raise QuoteError("tdx collateral: tcb_info or qe_identity is not JSON") from None
    if not isinstance(tcb_info, dict) or not isinstance(qe_identity, dict):
        raise QuoteError("tdx collateral: tcb_info and qe_identity are JSON objects")
    if tcb_info.get("id") != "TDX":
        raise QuoteError(f"tdx collateral: the TCB info is for {str(tcb_info.get('id'))[:20]!r}, "
                         "not TDX")
    if qe_identity.get("id") != "TD_QE":
        raise QuoteError(f"tdx collateral: the QE identity is for "
                         f"{str(qe_identity.get('id'))[:20]!r}, not TD_QE")
    fmspc = tcb_info.get("fmspc")
    if not isinstance(fmspc, str) or len(fmspc) != 12:
        raise QuoteError("tdx collateral: the TCB info has no 12-hex-digit fmspc")
    evaluation = tcb_info.get("tcbEvaluationDataNumber")
    issued = {"tcb_info": _time(tcb_info.get("issueDate"), "TCB info issueDate"),
              "qe_identity": _time(qe_identity.get("issueDate"), "QE identity issueDate")}
    next_update = {"tcb_info": _time(tcb_info.get("nextUpdate"), "TCB info nextUpdate"),
                   "qe_identity": _time(qe_identity.get("nextUpdate"), "QE identity nextUpdate")}
    for part in ("pck_crl", "root_ca_crl"):
        issued[part], next_update[part] = _crl_times(obj[part], part)
    return TdxCollateral(text=json.dumps(obj), fmspc=fmspc.upper(),
                         tcb_evaluation=evaluation if isinstance(evaluation, int) else None,
                         issued=issued, next_update=next_update)


# -- sources ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Answer:
    url: str
    headers: dict[str, str]
    body: bytes


def _read_file(path: Path) -> bytes:
    return read_bounded(path, "tdx collateral", MAX_COLLATERAL, error=QuoteError)


class CollateralSource:
    """Collateral for an FMSPC from a folder, a file or a PCS/PCCS base URL (see module).

    `parse` reads each answer, file and cache entry (the verifier's adds dcap-qvl's).
    """

    def __init__(self, spec: str, cache_dir: Path | None = None, *,
                 parse: Callable[[Any], TdxCollateral] = parse_collateral,
                 recheck_s: float = RECHECK_S,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.spec = spec
        self.cache_dir = cache_dir
        self.parse = parse
        self.url = spec.rstrip("/") if spec.startswith(("http://", "https://")) else None
        self.recheck_s = recheck_s
        self.monotonic = monotonic
        self._memo: dict[tuple[str, ...], tuple[tuple[int, int], TdxCollateral]] = {}
        # FMSPC -> (when the disk was last looked at, the collateral found then)
        self._seen: dict[str, tuple[float, TdxCollateral]] = {}
        self._lock = threading.Lock()

    def get(self, fmspc: str, at: datetime, ca: str = "platform") -> TdxCollateral:
        """The collateral for `fmspc` (12 hex digits) fresh at `at`; `QuoteError` if none."""
        fmspc = fmspc.upper()
        if self.url is not None:
            return self._from_url(fmspc, ca, at)
        now = self.monotonic()
        seen = self._seen.get(fmspc)
        if seen is not None and now - seen[0] < self.recheck_s:
            return seen[1]  # looked at the disk under recheck_s ago: no stat, no read
        collateral = self._from_disk(fmspc)
        with self._lock:
            self._seen[fmspc] = (now, collateral)
        return collateral

    def _from_disk(self, fmspc: str) -> TdxCollateral:
        path = Path(self.spec)
        if path.is_dir():
            for name in (f"{fmspc}.json", f"{fmspc.lower()}.json"):
                if (path / name).is_file():
                    return self._load(path / name, fmspc)
            raise QuoteError(f"no tdx collateral for FMSPC {fmspc}: {path}/{fmspc}.json does not exist")
        if path.is_file():
            return self._load(path, fmspc)
        raise QuoteError(f"tdx collateral source {self.spec!r} is neither a folder, a file nor "
                         "an http(s) URL")

    def _load(self, path: Path, fmspc: str) -> TdxCollateral:
        try:
            st = path.stat()
        except OSError as exc:
            raise QuoteError(f"tdx collateral {path}: {exc.strerror}") from None
        stamp = (st.st_mtime_ns, st.st_size)
        key = (str(path),)
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None and hit[0] == stamp:
            collateral = hit[1]
        else:
            collateral = self.parse(_read_file(path))
            with self._lock:
                self._memo[key] = (stamp, collateral)
        if collateral.fmspc != fmspc:
            raise QuoteError(f"tdx collateral {path} is for FMSPC {collateral.fmspc}; the quote's "
                             f"is {fmspc}")
        return collateral

    # -- PCS / PCCS v4 --------------------------------------------------------------

    def _cache_path(self, fmspc: str, ca: str) -> Path | None:
        return self.cache_dir / f"tdx-{ca}-{fmspc}.json" if self.cache_dir else None

    def _from_url(self, fmspc: str, ca: str, at: datetime) -> TdxCollateral:
        if ca not in PCK_CA:
            raise QuoteError(f"tdx quote names an unknown PCK CA {ca!r}")
        key = ("url", fmspc, ca)
        with self._lock:
            hit = self._memo.get(key)
        if hit is not None and hit[1].fresh_at(at):
            return hit[1]
        cache = self._cache_path(fmspc, ca)
        if cache is not None and cache.is_file():
            try:
                cached = self.parse(_read_file(cache))
            except QuoteError:
                cached = None
            if cached is not None and cached.fmspc == fmspc and cached.fresh_at(at):
                with self._lock:
                    self._memo[key] = ((0, 0), cached)
                return cached
        collateral = self._fetch(fmspc, ca)
        if collateral.fmspc != fmspc:
            raise QuoteError(f"the PCS at {self.url} answered with TCB info for FMSPC "
                             f"{collateral.fmspc}, not {fmspc}")
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=cache.parent, prefix=".tdx-", suffix=".tmp")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(collateral.text)
            os.replace(tmp, cache)
        with self._lock:
            self._memo[key] = ((0, 0), collateral)
        return collateral

    def root_ca_crl_url(self) -> str:
        """Where the root CA CRL is: a PCCS serves it; Intel's PCS points to its CDP."""
        host = urllib.parse.urlsplit(self.url or "").hostname
        if host == INTEL_PCS_HOST:
            return INTEL_ROOT_CA_CRL_URL
        return f"{self.url}/sgx/certification/v4/rootcacrl"

    def _get(self, path: str, **params: str) -> _Answer:
        url = path if path.startswith(("http://", "https://")) else f"{self.url}{path}"
        try:
            with requests.get(url, params=params, timeout=HTTP_TIMEOUT_S, stream=True,
                              allow_redirects=False) as resp:
                body = resp.raw.read(MAX_COLLATERAL + 1, decode_content=True)
                status, headers, where = resp.status_code, dict(resp.headers), resp.url
        except requests.RequestException as exc:
            raise QuoteError(f"tdx collateral: GET {url} failed: {type(exc).__name__}") from None
        if len(body) > MAX_COLLATERAL:
            raise QuoteError(f"tdx collateral: GET {url} answered over 1 MiB")
        if status != 200:
            raise QuoteError(f"tdx collateral: GET {url} answered HTTP {status}")
        return _Answer(where, {k.lower(): v for k, v in headers.items()}, body)

    @staticmethod
    def _chain(answer: _Answer, header: str) -> str:
        value = answer.headers.get(header.lower())
        if not value:
            raise QuoteError(f"tdx collateral: {answer.url} sent no {header} header")
        return urllib.parse.unquote(value)

    @staticmethod
    def _crl_hex(body: bytes) -> str:
        text = body.strip()
        if text.startswith(b"-----BEGIN"):
            try:
                return x509.load_pem_x509_crl(text).public_bytes(Encoding.DER).hex()
            except ValueError:
                raise QuoteError("tdx collateral: a PEM CRL that does not parse") from None
        try:
            return bytes.fromhex(text.decode("ascii")).hex()  # PCCS answers hex text
        except (UnicodeDecodeError, ValueError):
            return body.hex()  # DER

    @staticmethod
    def _signed(answer: _Answer, key: str) -> tuple[str, str]:
        """(exact text of body[key], signature hex) from a PCS `{key: {...}, "signature"}`."""
        try:
            text = answer.body.decode("utf-8")
            whole = json.loads(text)
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise QuoteError(f"tdx collateral: {answer.url} did not answer JSON") from None
        if not isinstance(whole, dict) or not isinstance(whole.get(key), dict) \
                or not isinstance(whole.get("signature"), str):
            raise QuoteError(f"tdx collateral: {answer.url} did not answer {{{key!r}, 'signature'}}")
        begin = text.find(":", text.find(f'"{key}"')) + 1
        while text[begin] in " \t\r\n":
            begin += 1
        try:
            value, end = json.JSONDecoder().raw_decode(text, begin)
        except ValueError:
            value, end = None, begin
        if value != whole[key]:
            raise QuoteError(f"tdx collateral: {answer.url}: cannot find the exact {key} text")
        return text[begin:end], whole["signature"]

    def _fetch(self, fmspc: str, ca: str) -> TdxCollateral:
        crl = self._get("/sgx/certification/v4/pckcrl", ca=ca, encoding="der")
        tcb = self._get("/tdx/certification/v4/tcb", fmspc=fmspc)
        qe = self._get("/tdx/certification/v4/qe/identity")
        root = self._get(self.root_ca_crl_url())
        tcb_info, tcb_sig = self._signed(tcb, "tcbInfo")
        qe_identity, qe_sig = self._signed(qe, "enclaveIdentity")
        return self.parse({
            "pck_crl_issuer_chain": self._chain(crl, "SGX-PCK-CRL-Issuer-Chain"),
            "root_ca_crl": self._crl_hex(root.body),
            "pck_crl": self._crl_hex(crl.body),
            "tcb_info_issuer_chain": self._chain(tcb, "TCB-Info-Issuer-Chain"),
            "tcb_info": tcb_info, "tcb_info_signature": tcb_sig,
            "qe_identity_issuer_chain": self._chain(qe, "SGX-Enclave-Identity-Issuer-Chain"),
            "qe_identity": qe_identity, "qe_identity_signature": qe_sig,
        })



# -- the quote's FMSPC and PCK CA ------------------------------------------------------

QUOTE_HEADER_LEN = 48
TD_REPORT_LEN = {4: 584}            # v4: TD report 1.0; v5: its body descriptor says
V5_BODY_LEN = {2: 584, 3: 648}
CERT_PCK_CHAIN = 5                  # certification data: PEM PCK chain (leaf first)
CERT_QE_REPORT = 6                  # certification data: QE report, then type 5 inside
QE_REPORT_LEN = 384 + 64            # QE report and its signature
SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
FMSPC_OID = "1.2.840.113741.1.13.1.4"
MAX_QUOTE_LEN = 64 * 1024


def _no_fmspc(why: str) -> QuoteError:
    return QuoteError(f"TDX quote: no FMSPC in its PCK certificate: {why}")


def _cert_data(quote: bytes) -> tuple[int, bytes]:
    """(type, data) of a v4/v5 quote's certification data (after signature and key)."""
    if len(quote) > MAX_QUOTE_LEN:
        raise _no_fmspc(f"the quote is over {MAX_QUOTE_LEN} bytes")
    if len(quote) < QUOTE_HEADER_LEN + 6:
        raise _no_fmspc("the quote is truncated")
    version = struct.unpack_from("<H", quote, 0)[0]
    offset = QUOTE_HEADER_LEN
    if version == 4:
        body_len = TD_REPORT_LEN[4]
    elif version == 5:
        body_type, body_len = struct.unpack_from("<HI", quote, offset)
        if V5_BODY_LEN.get(body_type) != body_len:
            raise _no_fmspc(f"v5 body type {body_type} of {body_len} bytes is not a TD report")
        offset += 6
    else:
        raise _no_fmspc(f"quote version {version} (4 and 5 are read)")
    offset += body_len + 4 + 64 + 64  # TD report, signature data length, signature, key
    return _typed(quote, offset, "quote")


def _typed(data: bytes, offset: int, where: str) -> tuple[int, bytes]:
    if len(data) < offset + 6:
        raise _no_fmspc(f"the {where} is truncated before its certification data")
    kind, size = struct.unpack_from("<HI", data, offset)
    end = offset + 6 + size
    if end > len(data):
        raise _no_fmspc(f"the {where}'s certification data (type {kind}) runs past its end")
    return kind, data[offset + 6: end]


def _pck_chain(quote: bytes) -> bytes:
    kind, data = _cert_data(quote)
    if kind == CERT_QE_REPORT:
        if len(data) < QE_REPORT_LEN + 2:
            raise _no_fmspc("the QE report certification data is truncated")
        (auth_len,) = struct.unpack_from("<H", data, QE_REPORT_LEN)
        kind, data = _typed(data, QE_REPORT_LEN + 2 + auth_len, "QE report certification data")
    if kind != CERT_PCK_CHAIN:
        raise _no_fmspc(f"certification data type {kind} is not a PCK certificate chain (5)")
    return data


def _der(data: bytes, offset: int) -> tuple[int, bytes, int]:
    """(tag, value, next offset) of the DER element at `offset`."""
    if offset + 2 > len(data):
        raise _no_fmspc("the SGX extension is truncated")
    tag, first = data[offset], data[offset + 1]
    offset += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or offset + n > len(data):
            raise _no_fmspc("the SGX extension has a bad DER length")
        length = int.from_bytes(data[offset: offset + n], "big")
        offset += n
    if offset + length > len(data):
        raise _no_fmspc("the SGX extension is truncated")
    return tag, data[offset: offset + length], offset + length


def _oid_der(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    out = bytearray([40 * parts[0] + parts[1]])
    for part in parts[2:]:
        chunk = [part & 0x7F]
        part >>= 7
        while part:
            chunk.append(0x80 | (part & 0x7F))
            part >>= 7
        out += bytes(reversed(chunk))
    return bytes(out)


_FMSPC_OID_DER = _oid_der(FMSPC_OID)


def _fmspc_of(extension: bytes) -> str:
    tag, entries, _ = _der(extension, 0)
    if tag != 0x30:
        raise _no_fmspc("the SGX extension is not a DER SEQUENCE")
    offset = 0
    while offset < len(entries):
        tag, entry, offset = _der(entries, offset)
        if tag != 0x30:
            continue
        oid_tag, oid, rest = _der(entry, 0)
        if oid_tag == 0x06 and oid == _FMSPC_OID_DER:
            value_tag, value, _ = _der(entry, rest)
            if value_tag != 0x04 or len(value) != 6:
                raise _no_fmspc("its FMSPC is not a 6-byte OCTET STRING")
            return value.hex().upper()
    raise _no_fmspc(f"the SGX extension has no FMSPC ({FMSPC_OID})")


def quote_fmspc_and_ca(quote: bytes) -> tuple[str, str]:
    """The FMSPC (12 upper-case hex digits) and PCK CA (`platform` or `processor`) of the
    PCK certificate in a TDX quote v4/v5; `QuoteError` naming what is missing.

    Reads only; the certificate is not checked here (the verifier checks the chain).
    """
    chain = _pck_chain(bytes(quote))
    try:
        certs = x509.load_pem_x509_certificates(chain.rstrip(b"\0"))
    except ValueError:
        raise _no_fmspc("the PCK certificate chain is not PEM certificates") from None
    leaf = certs[0]
    try:
        ext = leaf.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound:
        raise _no_fmspc(f"the PCK certificate has no SGX extension ({SGX_EXTENSION_OID})") from None
    except ValueError:
        raise _no_fmspc("the PCK certificate's extensions do not parse") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise _no_fmspc("the SGX extension is not raw DER")
    fmspc = _fmspc_of(value.value)
    issuer = " ".join(str(a.value) for a in leaf.issuer.get_attributes_for_oid(
        x509.NameOID.COMMON_NAME))
    if "Processor" in issuer:
        ca = "processor"
    elif "Platform" in issuer:
        ca = "platform"
    else:
        raise _no_fmspc(f"the PCK certificate's issuer {issuer[:80]!r} is neither a "
                        "Platform nor a Processor CA")
    return fmspc, ca
