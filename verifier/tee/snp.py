"""AMD SEV-SNP attestation reports: signature, VCEK/VLEK chain to AMD's root, TCB, binding.

The quote object is the `tsm` provider's (`attester/tee/tsm.py`):
`{"provider": "tsm", "simulated": false, "tee": "sev-snp", "outblob": <base64url report>,
"auxblob": <optional base64url certificate table>, ...}`.

What `verify_report(report, trust, at, certs=..., expected_report_data=...)` checks, in
this order (any failure raises `QuoteError` naming it):

1. The report (SEV-SNP ABI, `ATTESTATION_REPORT`): 1184 bytes, version 2, 3 or 5,
   signature algorithm 1 (ECDSA P-384 with SHA-384), a signing key of VCEK (flags
   bits 2-4 = 0) or VLEK (= 1), the chip key not masked (flags bit 1).
2. The signature: ECDSA P-384/SHA-384 over bytes 0x000..0x2A0, with R and S read as
   72-byte little-endian integers at 0x2A0 and 0x2E8, by an endorsement certificate's
   key. Candidates are `certs` (each DER or PEM; a file may also hold ASK and ARK),
   then the configured source; the first candidate that passes every check below wins.
3. The chain: the endorsement certificate (CN SEV-VCEK or SEV-VLEK as the report's
   flags say) is signed with RSA-PSS/SHA-384 by an ASK (VCEK) or ASVK (VLEK), which is
   signed by the ARK of its product. The ARKs of Milan, Genoa and Turin (and their
   ASK/ASVK) ship in `verifier/tee/amd_roots/` and are checked against the SHA-256
   fingerprints pinned here before use; the ARK found decides the product. Every
   certificate of the chain must be valid at `at`. A certificate the message brings
   is never an anchor: an ARK in the table or in `certs` is ignored.
4. The endorsement certificate's TCB extensions (1.3.6.1.4.1.3704.1.3.x: bootloader,
   TEE, SNP, microcode, and FMC on Turin) equal the report's REPORTED_TCB, and its
   hardware id (1.3.6.1.4.1.3704.1.4, raw or as an OCTET STRING) equals CHIP_ID,
   unless a VLEK signed the report or the chip id is masked (all zero).
5. The guest policy's debug bit (bit 19) is clear: a debug guest is refused.
6. Report version 3 and 5 carry the CPU family: it must belong to the product.
7. `expected_report_data`, when given, equals REPORT_DATA (constant-time compare).
8. Revocation, with `trust.crl` (`snp_certs.amd_crl`: a file, a folder of
   `<product>.crl`, or a KDS base URL with a disk cache): AMD's CRL must be issued and
   signed (RSA-PSS/SHA-384) by the ARK that decided, current at `at` (thisUpdate not
   after it, nextUpdate not before it), and list neither the ASK (ASVK) nor the
   endorsement certificate. Without `trust.crl` the result says "revocation not
   checked" (`ear_facts` and claim `snp.revocation`: "checked" or "not checked").
9. The TCB: the reported TCB meets `trust.min_tcb[product]` (component -> least SPL,
   components `bl`, `tee`, `snp`, `ucode`, and `fmc` on Turin) -> tcb_status
   "UpToDate", below it -> "OutOfDate". With no minimum for the product the status is
   "MinimumNotConfigured". A status not in `trust.allowed_tcb` (default UpToDate
   only) is refused.

`hardware` is then True and `root` names the ARK ("AMD ARK-Milan"). With
`trust.test_root` True, the self-signed certificates of `trust.roots` (PEM text or a
path to a PEM file) replace the pinned ARKs and `root` is "TEST ROOT (not AMD)";
`trust.roots` without `test_root` is refused, so a vendor root can never be swapped.

Certificate sources for `SCHEME.verify` (`verifier.tee.snp_certs`): the quote's
`auxblob` certificate table, then `trust.certs`: a folder of certificate files, or an
AMD KDS base URL (http/https) whose answers are cached under `trust.cache_dir`.
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from bytereplay.encoding import b64url_decode
from bytereplay.errors import BytereplayError, QuoteError
from verifier.tee import snp_certs
from verifier.tee.base import QuoteVerification, SchemeTrust, require_report_data, same_bytes

KIND = "snp"
PROVIDER = "tsm"
TEST_ROOT_NAME = "TEST ROOT (not AMD)"

# -- the report layout (SEV-SNP ABI specification, ATTESTATION_REPORT) -----------------
REPORT_LEN = 0x4A0
SIGNED_LEN = 0x2A0
SIG_COMPONENT_LEN = 72
VERSIONS = (2, 3, 5)
SIG_ALGO_ECDSA_P384_SHA384 = 1
POLICY_DEBUG = 1 << 19
FLAG_MASK_CHIP_KEY = 1 << 1
SIGNING_KEYS = {0: "VCEK", 1: "VLEK"}
MAX_HEX_TEXT = 3 * REPORT_LEN * 2

# name -> (offset, length) of byte fields
BYTE_FIELDS = {
    "family_id": (0x10, 16), "image_id": (0x20, 16), "report_data": (0x50, 64),
    "measurement": (0x90, 48), "host_data": (0xC0, 32), "id_key_digest": (0xE0, 48),
    "author_key_digest": (0x110, 48), "report_id": (0x140, 32), "report_id_ma": (0x160, 32),
    "chip_id": (0x1A0, 64),
}
MEASURED = ("measurement", "host_data", "id_key_digest")
TCB_FIELDS = {"current_tcb": 0x38, "reported_tcb": 0x180, "committed_tcb": 0x1E0,
              "launch_tcb": 0x1F0}

# TCB_VERSION: byte index of each security patch level, per product.
TCB_LAYOUT = {
    "Milan": {"bl": 0, "tee": 1, "snp": 6, "ucode": 7},
    "Genoa": {"bl": 0, "tee": 1, "snp": 6, "ucode": 7},
    "Turin": {"fmc": 0, "bl": 1, "tee": 2, "snp": 3, "ucode": 7},
}
CPU_FAMILY = {"Milan": 0x19, "Genoa": 0x19, "Turin": 0x1A}

# -- AMD certificate extensions ------------------------------------------------------
OID_PRODUCT_NAME = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.2")
OID_TCB = {
    "bl": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.1"),
    "tee": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.2"),
    "snp": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.3"),
    "ucode": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.8"),
    "fmc": x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.3.9"),
}
OID_HWID = x509.ObjectIdentifier("1.3.6.1.4.1.3704.1.4")
PSS_SHA384 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)

# -- pinned anchors: file -> (product, chain, SHA-256 of each certificate's DER) -------
AMD_ROOT_FILES: dict[str, tuple[str, str, tuple[str, str]]] = {
    "ask_ark_milan.pem": ("Milan", "VCEK", (
        "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd")),
    "ask_ark_milan_vlek.pem": ("Milan", "VLEK", (
        "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
        "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd")),
    "ask_ark_genoa.pem": ("Genoa", "VCEK", (
        "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1")),
    "ask_ark_genoa_vlek.pem": ("Genoa", "VLEK", (
        "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
        "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1")),
    "ask_ark_turin_vcek.pem": ("Turin", "VCEK", (
        "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a")),
    "ask_ark_turin_vlek.pem": ("Turin", "VLEK", (
        "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
        "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a")),
}


# -- parsing --------------------------------------------------------------------------

@dataclass(frozen=True)
class SnpReport:
    """A parsed attestation report: the raw 1184 bytes and the fields read from them."""

    raw: bytes
    version: int
    guest_svn: int
    policy: int
    vmpl: int
    signature_algo: int
    platform_info: int
    flags: int
    cpuid: tuple[int, int, int] | None  # family, model, stepping (version >= 3)

    def field(self, name: str) -> bytes:
        off, n = BYTE_FIELDS[name]
        return self.raw[off:off + n]

    @property
    def report_data(self) -> bytes:
        return self.field("report_data")

    @property
    def chip_id(self) -> bytes:
        return self.field("chip_id")

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    @property
    def signing_key(self) -> str:
        """"VCEK" or "VLEK" (parse refuses any other value)."""
        return SIGNING_KEYS[(self.flags >> 2) & 7]

    def tcb(self, name: str) -> bytes:
        off = TCB_FIELDS[name]
        return self.raw[off:off + 8]

    def measurements(self) -> dict[str, str]:
        return {f"snp.{k}": self.field(k).hex() for k in MEASURED}


@dataclass(frozen=True)
class SnpQuote:
    """`SCHEME.parse`'s result: the report and the certificates the quote carried."""

    report: SnpReport
    certs: tuple[bytes, ...] = ()


def _hex_text(data: bytes) -> bytes | None:
    """The bytes that hex text `data` spells (whitespace between pairs allowed), else None."""
    if len(data) > MAX_HEX_TEXT or not data.isascii():
        return None
    try:
        decoded = bytes.fromhex(data.decode("ascii"))
    except ValueError:
        return None
    return decoded if len(decoded) == REPORT_LEN else None


def parse_report(data: bytes) -> SnpReport:
    """The report in `data`: 1184 raw bytes, or that many as hex text (whitespace allowed).

    Refuses (QuoteError, naming the offset) any other length, a version other than 2, 3
    or 5, a signature algorithm other than ECDSA P-384/SHA-384, a signing key other
    than VCEK or VLEK, a masked chip key (no signature), and non-zero reserved bits
    in the signature's padding.
    """
    if not isinstance(data, bytes | bytearray):
        raise QuoteError("SEV-SNP report must be bytes")
    raw = bytes(data)
    if len(raw) != REPORT_LEN:
        decoded = _hex_text(raw)
        if decoded is None:
            raise QuoteError(f"SEV-SNP report is {len(raw)} bytes; expected {REPORT_LEN} raw "
                             f"bytes or {2 * REPORT_LEN} hex digits")
        raw = decoded
    version, guest_svn, policy = struct.unpack_from("<IIQ", raw, 0)
    if version not in VERSIONS:
        raise QuoteError(f"SEV-SNP report version {version} at offset 0x0 is not supported "
                         f"(supported: {', '.join(map(str, VERSIONS))})")
    vmpl, sig_algo = struct.unpack_from("<II", raw, 0x30)
    if sig_algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise QuoteError(f"SEV-SNP signature algorithm {sig_algo} at offset 0x34 is not "
                         "ECDSA P-384 with SHA-384 (1)")
    if vmpl > 3:
        raise QuoteError(f"SEV-SNP VMPL {vmpl} at offset 0x30 is out of range (0..3)")
    (platform_info,) = struct.unpack_from("<Q", raw, 0x40)
    (flags,) = struct.unpack_from("<I", raw, 0x48)
    if flags & FLAG_MASK_CHIP_KEY:
        raise QuoteError("SEV-SNP report flags at offset 0x48 mask the chip key: the report "
                         "is not signed")
    key = (flags >> 2) & 7
    if key not in SIGNING_KEYS:
        raise QuoteError(f"SEV-SNP signing key {key} in the flags at offset 0x48 is neither "
                         "VCEK (0) nor VLEK (1)")
    for off in (SIGNED_LEN + 48, SIGNED_LEN + SIG_COMPONENT_LEN + 48):
        if any(raw[off:off + SIG_COMPONENT_LEN - 48]):
            raise QuoteError(f"SEV-SNP signature component at offset {off - 48:#x} is wider "
                             "than 384 bits")
    cpuid = (raw[0x188], raw[0x189], raw[0x18A]) if version >= 3 else None
    return SnpReport(raw=raw, version=version, guest_svn=guest_svn, policy=policy, vmpl=vmpl,
                     signature_algo=sig_algo, platform_info=platform_info, flags=flags,
                     cpuid=cpuid)


def looks_like_snp(data: bytes) -> bool:
    """True when `data` reads as an SEV-SNP report (raw or hex); never raises."""
    try:
        parse_report(data)
    except (BytereplayError, ValueError, TypeError):
        return False
    return True


# -- certificates ---------------------------------------------------------------------

def _load_certs(blob: bytes) -> list[x509.Certificate]:
    """`_load_certs_cached`, as a fresh list."""
    return list(_load_certs_cached(bytes(blob)))


@functools.lru_cache(maxsize=256)
def _load_certs_cached(blob: bytes) -> tuple[x509.Certificate, ...]:
    """Every usable certificate in `blob` (DER, or one or more PEM blocks).

    `cryptography` parses fields lazily, so each certificate's names, validity,
    extensions, key and signature algorithm are read here once: a certificate whose
    fields do not parse, or whose key or algorithm is unknown, is refused here rather
    than failing later. QuoteError when `blob` holds no usable certificate.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # AMD's serial numbers draw a deprecation warning
        try:
            if b"-----BEGIN" in blob:
                certs = list(x509.load_pem_x509_certificates(blob))
            else:
                certs = [x509.load_der_x509_certificate(blob)]
        except Exception:  # the parser's errors vary (ValueError, InvalidVersion, ...)
            raise QuoteError("an SEV-SNP certificate is neither DER nor PEM") from None
        usable = tuple(c for c in certs if _usable(c))
    if not usable:
        raise QuoteError("an SEV-SNP certificate has fields, a key or an algorithm that "
                         "cannot be read")
    return usable


def _usable(cert: x509.Certificate) -> bool:
    try:
        _cn(cert.subject), _cn(cert.issuer)
        _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.extensions,
             cert.signature, cert.tbs_certificate_bytes, cert.signature_algorithm_oid)
        if cert.signature_algorithm_oid == SignatureAlgorithmOID.RSASSA_PSS:
            _ = cert.signature_hash_algorithm
        cert.public_key()
    except Exception:  # ValueError, TypeError, UnsupportedAlgorithm, DuplicateExtension, ...
        return False
    return True


def _fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def _cn(name: x509.Name) -> str:
    values = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(values[0].value) if values else ""


@dataclass(frozen=True)
class _Anchor:
    cert: x509.Certificate
    name: str  # "AMD ARK-Milan" or TEST_ROOT_NAME
    product: str | None  # None: a test root (the product comes from the VCEK)


@dataclass(frozen=True)
class _Anchors:
    roots: tuple[_Anchor, ...]
    intermediates: tuple[x509.Certificate, ...]


@functools.lru_cache(maxsize=1024)
def _pss_ok(child: x509.Certificate, parent: x509.Certificate) -> bool:
    """True when `parent` signed `child` with RSA-PSS/SHA-384 and the names chain.

    Memoised: certificates compare and hash by their DER bytes, so a result is reused
    only for the very same pair of certificates.
    """
    if child.issuer != parent.subject:
        return False
    if child.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS:
        return False
    if not isinstance(child.signature_hash_algorithm, hashes.SHA384):
        return False
    key = parent.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(child.signature, child.tbs_certificate_bytes, PSS_SHA384, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


@functools.cache
def amd_anchors() -> _Anchors:
    """The pinned AMD ARKs and ASK/ASVKs, each checked against its pinned fingerprint.

    Raises RuntimeError (a broken installation, not bad input) when a shipped file
    does not hold exactly the pinned certificates or an ARK is not self-signed.
    """
    roots: dict[str, _Anchor] = {}
    inter: list[x509.Certificate] = []
    folder = resources.files("verifier.tee") / "amd_roots"
    for fname, (product, _chain, pins) in AMD_ROOT_FILES.items():
        certs = _load_certs(folder.joinpath(fname).read_bytes())
        if tuple(_fingerprint(c) for c in certs) != pins:
            raise RuntimeError(f"verifier/tee/amd_roots/{fname} does not hold the pinned AMD "
                               "certificates (SHA-256 fingerprints differ)")
        ask, ark = certs
        if not _pss_ok(ark, ark) or not _pss_ok(ask, ark):
            raise RuntimeError(f"verifier/tee/amd_roots/{fname}: the pinned chain does not verify")
        roots.setdefault(pins[1], _Anchor(ark, f"AMD {_cn(ark.subject)}", product))
        inter.append(ask)
    return _Anchors(tuple(roots.values()), tuple(inter))


def _test_anchors(trust: SchemeTrust) -> _Anchors:
    roots: list[_Anchor] = []
    inter: list[x509.Certificate] = []
    for entry in trust.roots:
        text = entry.encode() if "-----BEGIN" in entry else Path(entry).read_bytes()
        for cert in _load_certs(text):
            if cert.issuer == cert.subject and _pss_ok(cert, cert):
                roots.append(_Anchor(cert, TEST_ROOT_NAME, None))
            else:
                inter.append(cert)
    if not roots:
        raise QuoteError("tee.snp.roots holds no self-signed RSA-PSS root certificate")
    pinned = {a.cert for a in amd_anchors().roots}
    if any(r.cert in pinned for r in roots):
        raise QuoteError("tee.snp.roots names an AMD ARK as a test root; AMD's roots are "
                         "pinned: leave tee.snp.roots empty to use them")
    return _Anchors(tuple(roots), tuple(inter))


def anchors_for(trust: SchemeTrust, products: Sequence[str] | None = None) -> _Anchors:
    """The anchors `trust` selects: the pinned AMD ones (of `products` only, when given),
    or its test root.

    Refuses `trust.roots` without `trust.test_root`: only a test root may replace AMD's.
    """
    if not trust.roots:
        pinned = amd_anchors()
        if products is None:
            return pinned
        unknown = set(products) - set(TCB_LAYOUT)
        if unknown:
            raise QuoteError(f"unknown SEV-SNP products {sorted(unknown)}; known: "
                             f"{', '.join(TCB_LAYOUT)}")
        roots = tuple(a for a in pinned.roots if a.product in products)
        keep = {a.cert.subject for a in roots}
        return _Anchors(roots, tuple(c for c in pinned.intermediates if c.issuer in keep))
    if not trust.test_root:
        raise QuoteError("tee.snp.roots may only name a test root (set tee.snp.test_root); "
                         "AMD's roots are pinned and cannot be replaced")
    try:
        return _test_anchors(trust)
    except OSError as exc:
        raise QuoteError(f"tee.snp.roots could not be read: {exc.strerror}") from None


def _der_value(value: bytes, tag: int) -> bytes | None:
    """The content of one DER TLV of `tag` that spans all of `value`, else None."""
    if len(value) < 2 or value[0] != tag:
        return None
    n, pos = value[1], 2
    if n & 0x80:
        width = n & 0x7F
        if width == 0 or width > 2 or len(value) < 2 + width:
            return None
        n, pos = int.from_bytes(value[2:2 + width], "big"), 2 + width
    return value[pos:] if len(value) - pos == n else None


def _ext(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> bytes | None:
    try:
        ext = cert.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    return ext.value if isinstance(ext, x509.UnrecognizedExtension) else None


def _ext_int(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> int | None:
    raw = _ext(cert, oid)
    body = _der_value(raw, 0x02) if raw is not None else None
    if not body or len(body) > 8:
        return None
    return int.from_bytes(body, "big", signed=True)


def cert_hwid(cert: x509.Certificate) -> bytes | None:
    """The hardware id extension: raw (legacy) or an OCTET STRING; None when absent."""
    raw = _ext(cert, OID_HWID)
    if raw is None:
        return None
    if len(raw) in (8, 64):
        return raw
    return _der_value(raw, 0x04)


def cert_product(cert: x509.Certificate) -> str | None:
    """The product named by the VCEK's productName extension ("Milan-B0" -> "Milan")."""
    raw = _ext(cert, OID_PRODUCT_NAME)
    body = _der_value(raw, 0x16) if raw is not None else None
    if body is None:
        return None
    name = body.decode("ascii", "replace").split("-")[0]
    return name if name in TCB_LAYOUT else None


def tcb_parts(tcb: bytes, product: str) -> dict[str, int]:
    """The security patch levels in one 8-byte TCB_VERSION, by the product's layout."""
    return {k: tcb[i] for k, i in TCB_LAYOUT[product].items()}


def _valid_at(cert: x509.Certificate, at: datetime, what: str) -> None:
    if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
        raise QuoteError(f"the {what} certificate ({_cn(cert.subject)}) is not valid at "
                         f"{at.isoformat()} (valid {cert.not_valid_before_utc.isoformat()} .. "
                         f"{cert.not_valid_after_utc.isoformat()})")


def _signature_ok(report: SnpReport, key: ec.EllipticCurvePublicKey) -> bool:
    sig = report.raw[SIGNED_LEN:SIGNED_LEN + 2 * SIG_COMPONENT_LEN]
    r = int.from_bytes(sig[:SIG_COMPONENT_LEN], "little")
    s = int.from_bytes(sig[SIG_COMPONENT_LEN:], "little")
    if r == 0 or s == 0:
        return False
    try:
        key.verify(encode_dss_signature(r, s), report.raw[:SIGNED_LEN],
                   ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return False
    return True


@dataclass(frozen=True)
class _Endorsed:
    cert: x509.Certificate
    ask: x509.Certificate  # the ASK (or ASVK) that signed `cert`
    anchor: _Anchor
    product: str
    reasons: tuple[str, ...]


def _check_endorsement(report: SnpReport, cert: x509.Certificate,
                       intermediates: Sequence[x509.Certificate], anchors: _Anchors,
                       at: datetime) -> _Endorsed:
    """Steps 2-4 of the module doc for one candidate certificate; QuoteError if any fails."""
    signer = report.signing_key
    if _cn(cert.subject) != f"SEV-{signer}":
        raise QuoteError(f"the report names {signer} as its signing key but the certificate "
                         f"given is {_cn(cert.subject) or 'unnamed'}")
    key = cert.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        raise QuoteError(f"the {signer} certificate does not hold an ECDSA P-384 key")
    if not _signature_ok(report, key):
        raise QuoteError(f"the SEV-SNP report signature does not verify with the {signer} "
                         "key: the report was altered or another chip signed it")
    issuers = [c for c in intermediates if c.subject == cert.issuer and c.issuer != c.subject]
    if not issuers:
        raise QuoteError(f"no certificate of the {signer}'s issuer {_cn(cert.issuer)} is known "
                         "(pinned or given): the chain to AMD's root cannot be built")
    signed_by = [c for c in issuers if _pss_ok(cert, c)]
    if not signed_by:
        raise QuoteError(f"the {signer} certificate's signature does not verify against its "
                         f"issuer {_cn(cert.issuer)}: the certificate was altered or is not AMD's")
    for ask in signed_by:
        for anchor in anchors.roots:
            if not _pss_ok(ask, anchor.cert):
                continue
            product = anchor.product or cert_product(cert) or "Milan"
            _valid_at(anchor.cert, at, "ARK")
            _valid_at(ask, at, "ASVK" if signer == "VLEK" else "ASK")
            _valid_at(cert, at, signer)
            reasons = [f"report signature verified with the {signer} ({product}); "
                       f"{signer} -> {_cn(ask.subject)} -> {anchor.name} verified with RSA-PSS "
                       f"at {at.isoformat()}"]
            reasons += _check_extensions(report, cert, product, signer)
            return _Endorsed(cert, ask, anchor, product, tuple(reasons))
    names = ", ".join(a.name for a in anchors.roots)
    raise QuoteError(f"the {signer}'s issuer {_cn(signed_by[0].subject)} is not signed by a "
                     f"trusted root ({names})")


def _check_extensions(report: SnpReport, cert: x509.Certificate, product: str,
                      signer: str) -> list[str]:
    reported = tcb_parts(report.tcb("reported_tcb"), product)
    for name, value in reported.items():
        got = _ext_int(cert, OID_TCB[name])
        if got is None:
            raise QuoteError(f"the {signer} certificate lacks its {name} TCB extension "
                             f"({OID_TCB[name].dotted_string})")
        if got != value:
            raise QuoteError(f"the {signer} certificate's {name} SPL {got} differs from the "
                             f"report's reported TCB ({name} {value})")
    reasons = [f"{signer} TCB extensions equal the reported TCB "
               + ", ".join(f"{k}={v}" for k, v in reported.items())]
    chip = report.chip_id
    if signer == "VLEK":
        reasons.append("VLEK-signed: the chip id is not bound to a certificate")
    elif not any(chip):
        reasons.append("chip id masked: the VCEK's hardware id was not compared")
    else:
        hwid = cert_hwid(cert)
        if hwid is None:
            raise QuoteError("the VCEK certificate lacks a readable hardware id extension "
                             "(1.3.6.1.4.1.3704.1.4)")
        if hwid + bytes(len(chip) - len(hwid)) != chip:
            raise QuoteError("the VCEK certificate's hardware id differs from the report's "
                             "chip id: it endorses another chip")
        reasons.append("VCEK hardware id equals the report's chip id")
    return reasons


def _tcb_status(report: SnpReport, product: str, trust: SchemeTrust) -> tuple[str, str]:
    minimum = trust.min_tcb.get(product)
    parts = tcb_parts(report.tcb("reported_tcb"), product)
    if not minimum:
        return "MinimumNotConfigured", (f"no minimum TCB configured for {product} "
                                        f"(tee.snp.min_tcb.{product})")
    unknown = set(minimum) - set(parts)
    if unknown:
        raise QuoteError(f"tee.snp.min_tcb.{product} names unknown components {sorted(unknown)}; "
                         f"known: {', '.join(parts)}")
    low = [f"{k} {parts[k]} < {v}" for k, v in minimum.items() if parts[k] < v]
    if low:
        return "OutOfDate", f"reported TCB below the {product} minimum: " + ", ".join(low)
    return "UpToDate", f"reported TCB meets the {product} minimum"


def _claims(report: SnpReport, product: str, signer: str) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "version": report.version, "vmpl": report.vmpl, "policy": f"{report.policy:#x}",
        "debug": report.debug, "guest_svn": report.guest_svn, "product": product,
        "signing_key": signer, "platform_info": f"{report.platform_info:#x}",
    }
    for name in ("measurement", "host_data", "id_key_digest", "report_data", "chip_id",
                 "family_id", "image_id", "report_id"):
        claims[name] = report.field(name).hex()
    for name in TCB_FIELDS:
        claims[name] = {"raw": report.tcb(name).hex(), **tcb_parts(report.tcb(name), product)}
    if report.cpuid is not None:
        claims["cpuid"] = {"family": report.cpuid[0], "model": report.cpuid[1],
                           "stepping": report.cpuid[2]}
    return claims


def _candidates(blobs: Iterable[bytes]) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """(endorsement certificates, other certificates) from `blobs`; unreadable ones skipped."""
    ends: list[x509.Certificate] = []
    others: list[x509.Certificate] = []
    for blob in blobs:
        try:
            certs = _load_certs(blob)
        except QuoteError:
            continue
        for cert in certs:
            (ends if _cn(cert.subject) in ("SEV-VCEK", "SEV-VLEK") else others).append(cert)
    return ends, others


def verify_report(report: bytes | SnpReport, trust: SchemeTrust, at: datetime, *,
                  certs: Sequence[bytes] = (), expected_report_data: bytes | None = None,
                  fetch_more: bool = True, products: Sequence[str] | None = None,
                  certs_from: str = "given with the report") -> QuoteVerification:
    """Verify one SEV-SNP report at `at` (see the module doc for every check, in order).

    `report` is raw or hex (or already parsed); `certs` are DER/PEM blobs proposing the
    VCEK/VLEK (and ASK); with `fetch_more`, `trust.certs` is consulted when they do not
    suffice. `products` limits the pinned AMD roots to those products (e.g. ("Genoa",)).
    `certs_from` says in the reasons where `certs` came from. `collateral` of the result
    holds the endorsement certificate's validity (`<vcek|vlek>_not_before/_not_after`).
    Returns the verification; raises QuoteError naming the refusal (for several
    candidate certificates, each one's refusal).
    """
    if at.tzinfo is None:
        raise QuoteError("the verification time must carry a time zone")
    parsed = report if isinstance(report, SnpReport) else parse_report(report)
    anchors = anchors_for(trust, products)
    ends, others = _candidates(certs)
    endorsed: _Endorsed | None = None
    errors: list[str] = []
    found_in = certs_from

    def attempt(cands: Sequence[x509.Certificate], inter: Sequence[x509.Certificate],
                where: str) -> None:
        nonlocal endorsed, found_in
        for cert in cands:
            try:
                endorsed = _check_endorsement(parsed, cert, inter, anchors, at)
                found_in = where
                return
            except QuoteError as exc:
                if exc.detail not in errors:
                    errors.append(exc.detail)

    intermediates = [*others, *anchors.intermediates]
    attempt(ends, intermediates, certs_from)
    if endorsed is None and fetch_more and trust.certs:
        try:
            fetched = _source_certs(parsed, trust)
        except QuoteError as exc:
            errors.append(exc.detail)
        else:
            more_ends, more_others = _candidates(fetched)
            attempt(more_ends, [*more_others, *intermediates],
                    f"from tee.snp.certs ({trust.certs})")
    if endorsed is None:
        if not errors:
            raise QuoteError(f"no {parsed.signing_key} certificate for this SEV-SNP report: none "
                             "in the report's certificate table, none given, and none from "
                             "tee.snp.certs")
        raise QuoteError("; ".join(errors))
    product = endorsed.product
    if parsed.debug:
        raise QuoteError(f"the SEV-SNP guest policy {parsed.policy:#x} allows debugging "
                         "(bit 19): a debug guest is refused")
    if parsed.cpuid is not None and parsed.cpuid[0] != CPU_FAMILY[product]:
        raise QuoteError(f"the report's CPU family {parsed.cpuid[0]:#x} is not {product}'s "
                         f"({CPU_FAMILY[product]:#x})")
    signer = parsed.signing_key
    reasons = [*endorsed.reasons, f"{signer} certificate {found_in}"]
    reasons.append(f"guest policy {parsed.policy:#x}: debug off; VMPL {parsed.vmpl}")
    if expected_report_data is not None:
        require_report_data(expected_report_data)
        if not same_bytes(parsed.report_data, expected_report_data):
            raise QuoteError("the sev-snp report data does not match SHA-512(nonce || record "
                             "digest || evidence key thumbprint): the report is not bound to "
                             "this evidence")
        reasons.append("report data inside the sev-snp report binds nonce, run record digest "
                       "and evidence key")
    revocation, why = _check_revocation(endorsed, signer, trust, at)
    reasons.append(why)
    status, why = _tcb_status(parsed, product, trust)
    reasons.append(why)
    if status not in trust.allowed_tcb:
        raise QuoteError(f"SEV-SNP TCB status {status} is not allowed (tee.snp.allowed_tcb: "
                         f"{', '.join(trust.allowed_tcb)}): {why}")
    return QuoteVerification(
        provider=PROVIDER, simulated=False, hardware=True,
        measurements=parsed.measurements(), report_data=parsed.report_data, chain_ok=True,
        reasons=tuple(reasons), scheme=KIND, tcb_status=status, root=endorsed.anchor.name,
        debug=parsed.debug, claims={**_claims(parsed, product, signer), "snp.revocation": revocation},
        ear_facts={"revocation": revocation},
        collateral={f"{signer.lower()}_not_before": _rfc3339(endorsed.cert.not_valid_before_utc),
                    f"{signer.lower()}_not_after": _rfc3339(endorsed.cert.not_valid_after_utc)})


def _crl_signed_by(crl: x509.CertificateRevocationList, ark: x509.Certificate) -> bool:
    """True when the ARK signed `crl` with RSA-PSS/SHA-384 (as AMD signs its CRLs)."""
    key = ark.public_key()
    if crl.signature_algorithm_oid != SignatureAlgorithmOID.RSASSA_PSS or \
            not isinstance(crl.signature_hash_algorithm, hashes.SHA384) or \
            not isinstance(key, rsa.RSAPublicKey):
        return False
    try:
        key.verify(crl.signature, crl.tbs_certlist_bytes, PSS_SHA384, hashes.SHA384())
    except InvalidSignature:
        return False
    return True


def _check_revocation(endorsed: _Endorsed, signer: str, trust: SchemeTrust,
                      at: datetime) -> tuple[str, str]:
    """("checked" or "not checked", the reason) for AMD's CRL (`trust.crl`): issued by
    the ARK that decided, signed by it, current at `at`, and listing neither the ASK
    (ASVK) nor the VCEK (VLEK). QuoteError when it fails or lists one of them."""
    if not trust.crl:
        return "not checked", ("revocation not checked: no AMD CRL configured (tee.snp.crl), "
                               "so a revoked ASK would go unnoticed")
    try:
        return _crl_lists_none(snp_certs.amd_crl(trust.crl, endorsed.product, trust.cache_dir,
                                                 at), endorsed, signer, at)
    except QuoteError:
        raise
    except (ValueError, TypeError) as exc:  # cryptography reads a CRL's fields lazily
        raise QuoteError(f"the AMD CRL does not parse: {str(exc)[:120]}") from None


def _crl_lists_none(crl: x509.CertificateRevocationList, endorsed: _Endorsed, signer: str,
                    at: datetime) -> tuple[str, str]:
    ark = endorsed.anchor
    if crl.issuer != ark.cert.subject:
        raise QuoteError(f"the AMD CRL is issued by {_cn(crl.issuer) or 'an unnamed issuer'}, "
                         f"not by {ark.name}")
    if not _crl_signed_by(crl, ark.cert):
        raise QuoteError(f"the AMD CRL's signature does not verify with {ark.name} "
                         "(RSA-PSS/SHA-384)")
    this_update, next_update = crl.last_update_utc, crl.next_update_utc
    if this_update > at:
        raise QuoteError(f"the AMD CRL thisUpdate {_rfc3339(this_update)} is after the "
                         f"verification time {_rfc3339(at)}")
    if next_update is None or next_update < at:
        when = _rfc3339(next_update) if next_update else "(no nextUpdate)"
        raise QuoteError(f"the AMD CRL expired at {when}; the verification time is "
                         f"{_rfc3339(at)}")
    ask_name = "ASVK" if signer == "VLEK" else "ASK"
    for cert, what in ((endorsed.ask, ask_name), (endorsed.cert, signer)):
        if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
            raise QuoteError(f"the {what} certificate (serial {cert.serial_number:x}) is revoked "
                             f"by AMD's CRL of {_rfc3339(this_update)}")
    return "checked", (f"AMD CRL of {_rfc3339(this_update)} (next update "
                       f"{_rfc3339(next_update)}) signed by {ark.name}: neither the {ask_name} "
                       f"nor the {signer} is revoked")


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def _products_for(report: SnpReport) -> tuple[str, ...]:
    if report.cpuid is not None:
        return tuple(p for p, fam in CPU_FAMILY.items() if fam == report.cpuid[0])
    return ("Milan", "Genoa")


def _source_certs(report: SnpReport, trust: SchemeTrust) -> list[bytes]:
    """Certificates from `trust.certs`: a folder, or a KDS base URL (VCEK only)."""
    source = trust.certs or ""
    if re.match(r"^https?://", source):
        if report.signing_key != "VCEK":
            raise QuoteError("a VLEK cannot be fetched from AMD KDS; give it in the report's "
                             "certificate table or a tee.snp.certs folder")
        if not any(report.chip_id):
            raise QuoteError("the chip id is masked, so its VCEK cannot be fetched from KDS")
        out: list[bytes] = []
        errors: list[str] = []
        for product in _products_for(report):
            hwid = report.chip_id[:8] if product == "Turin" else report.chip_id
            try:
                out.append(snp_certs.kds_vcek(source, product, hwid,
                                              tcb_parts(report.tcb("reported_tcb"), product),
                                              trust.cache_dir))
                break
            except QuoteError as exc:
                errors.append(exc.detail)
        if not out:
            raise QuoteError("; ".join(errors))
        return out
    return list(snp_certs.folder_certs(Path(source)))


# -- the QuoteVerifier ---------------------------------------------------------------

class SnpVerifier:
    """`QuoteVerifier` for `tsm` quotes with `tee` "sev-snp"."""

    @property
    def kind(self) -> str:
        return KIND

    def parse(self, quote: dict[str, Any]) -> SnpQuote:
        """The report in `outblob` and the certificates of `auxblob`'s table."""
        if not isinstance(quote, dict):
            raise QuoteError("a quote is a JSON object")
        if quote.get("provider") != PROVIDER or quote.get("tee") != "sev-snp":
            raise QuoteError("not a tsm sev-snp quote")
        if quote.get("simulated") is not False:
            raise QuoteError("a sev-snp quote must say simulated: false")
        report = parse_report(_b64_field(quote, "outblob", snp_certs.MAX_TABLE))
        certs: tuple[bytes, ...] = ()
        if quote.get("auxblob") is not None:
            certs = snp_certs.parse_cert_table(
                _b64_field(quote, "auxblob", snp_certs.MAX_TABLE)).all()
        return SnpQuote(report, certs)

    def verify(self, parsed: Any, expected_report_data: bytes, trust: SchemeTrust,
               at: datetime) -> QuoteVerification:
        """`verify_report` with the table's certificates, then `trust.certs`."""
        if not isinstance(parsed, SnpQuote):
            raise QuoteError("not a parsed sev-snp quote")
        require_report_data(expected_report_data)
        return verify_report(parsed.report, trust, at, certs=parsed.certs,
                             expected_report_data=expected_report_data,
                             certs_from="from the report's certificate table")


def _b64_field(quote: dict[str, Any], name: str, limit: int) -> bytes:
    value = quote.get(name)
    if not isinstance(value, str):
        raise QuoteError(f"quote field {name!r} is missing or not text")
    if len(value) > limit * 4 // 3 + 4:
        raise QuoteError(f"quote field {name!r} is over {limit} bytes")
    try:
        return b64url_decode(value)
    except BytereplayError:
        raise QuoteError(f"quote field {name!r} is not unpadded base64url") from None


SCHEME = SnpVerifier()
