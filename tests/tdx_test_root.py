"""A TEST ROOT (not Intel) for TDX: a whole Intel-shaped PKI and TDX quotes under it.

Real TDX hardware is not available to the tests, so this builds, with `cryptography`,
everything `dcap_qvl.verify_with_root_ca` needs, with the real layouts:

- a test root CA ("TEST ROOT (not Intel) SGX Root CA"), a PCK platform CA under it and
  a PCK leaf certificate carrying the Intel SGX extension (PPID, TCB, PCE-ID, FMSPC,
  SGX type), a TCB signing certificate, the root CA CRL and the PCK CRL;
- a TDX TCB info (v3) and a TD_QE identity (v2), both signed by the TCB signing key;
- TDX quotes v4 (TD report 1.0) and v5 (TD report 1.5) whose report data is a given
  64 bytes, signed by an attestation key whose hash the QE report (signed by the PCK
  key) binds, with the PCK chain carried inside the quote (certification data type 5).

Nothing here is Intel's: every subject says TEST ROOT, the verifier names the root
"TEST ROOT (not Intel)", and a trust built with `trust()` marks `test_root=True`. The
verifier only accepts it where a test configures it.

Use:

    root = TdxTestRoot()
    quote = root.tsm_quote(report_data)           # tsm provider dict, collateral embedded
    trust = root.trust()                          # SchemeTrust trusting this test root
    SCHEME.verify(SCHEME.parse(quote), report_data, trust, root.at)

All times are fixed: the certificates hold from `not_before` to `not_after`, the
collateral is issued at `issued` and next updated at `next_update`; `at` lies
between them. The defaults span 2025-01-01 to 2045-01-01 so that a pipeline that
verifies at the wall clock also accepts the evidence.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bytereplay.encoding import b64url_encode
from verifier.tee.base import SchemeTrust

TEST_ORG = "bytereplay TEST ROOT (not Intel)"
QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")  # Intel's QE vendor id
TEST_FMSPC = bytes.fromhex("7E57007E5700")
CPU_SVN = bytes([3, 3, 2, 2, 4, 1, 0, 5] + [0] * 8)
PCE_SVN = 11
PCE_ID = b"\x00\x00"
TEE_TCB_SVN = bytes([5, 1, 2] + [0] * 13)  # TDX module 1.x, SVN 5
QE_MRSIGNER = hashlib.sha256(b"bytereplay TEST ROOT QE signer").digest()
QE_ISVSVN = 4
QE_ISVPRODID = 2
TD_DEBUG = 0x01  # TD attributes byte 0, bit 0
SEPT_VE_DISABLE = bytes.fromhex("0000001000000000")
SGX_EXT = "1.2.840.113741.1.13.1"

_DEFAULT_NOT_BEFORE = datetime(2025, 1, 1, tzinfo=UTC)
_DEFAULT_NOT_AFTER = datetime(2045, 1, 1, tzinfo=UTC)
_DEFAULT_ISSUED = datetime(2025, 1, 1, tzinfo=UTC)
_DEFAULT_NEXT = datetime(2045, 1, 1, tzinfo=UTC)
_DEFAULT_AT = datetime(2026, 1, 1, tzinfo=UTC)


# -- a little DER, for the SGX extension only -----------------------------------------

def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([40 * parts[0] + parts[1]])
    for p in parts[2:]:
        chunk = [p & 0x7F]
        p >>= 7
        while p:
            chunk.append(0x80 | (p & 0x7F))
            p >>= 7
        body += bytes(reversed(chunk))
    return _der(0x06, body)


def _int(value: int, tag: int = 0x02) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return _der(tag, raw)


def _entry(oid: str, value: bytes) -> bytes:
    return _der(0x30, _oid(oid) + value)


def sgx_extension(fmspc: bytes, cpu_svn: bytes = CPU_SVN, pce_svn: int = PCE_SVN,
                  ppid: bytes = b"\x7e" * 16) -> bytes:
    """The DER value of Intel's SGX extension (1.2.840.113741.1.13.1) for a PCK cert."""
    tcb = b"".join(_entry(f"{SGX_EXT}.2.{i + 1}", _int(svn)) for i, svn in enumerate(cpu_svn))
    tcb += _entry(f"{SGX_EXT}.2.17", _int(pce_svn))
    tcb += _entry(f"{SGX_EXT}.2.18", _der(0x04, cpu_svn))
    config = (_entry(f"{SGX_EXT}.7.1", _der(0x01, b"\x00"))
              + _entry(f"{SGX_EXT}.7.2", _der(0x01, b"\x00"))
              + _entry(f"{SGX_EXT}.7.3", _der(0x01, b"\x00")))
    return _der(0x30, b"".join([
        _entry(f"{SGX_EXT}.1", _der(0x04, ppid)),
        _entry(f"{SGX_EXT}.2", _der(0x30, tcb)),
        _entry(f"{SGX_EXT}.3", _der(0x04, PCE_ID)),
        _entry(f"{SGX_EXT}.4", _der(0x04, fmspc)),
        _entry(f"{SGX_EXT}.5", _int(1, tag=0x0A)),
        _entry(f"{SGX_EXT}.6", _der(0x04, b"\x7e" * 16)),
        _entry(f"{SGX_EXT}.7", _der(0x30, config)),
    ]))


# -- helpers ----------------------------------------------------------------------

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, TEST_ORG),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "US")])


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    r, s = decode_dss_signature(key.sign(data, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _raw_pub(key: ec.EllipticCurvePrivateKey) -> bytes:
    point = key.public_key().public_bytes(serialization.Encoding.X962,
                                          serialization.PublicFormat.UncompressedPoint)
    return point[1:]


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


class TdxTestRoot:
    """A TEST ROOT (not Intel) PKI with its collateral, and TDX quotes under it.

    Keyword arguments fix what tests vary: certificate validity (`not_before`,
    `not_after`), collateral times (`issued`, `next_update`, `crl_this_update`), the
    TCB level's `tcb_status` and `advisories`, the `fmspc`, and the verification time
    `at` that `trust()`-based tests should use. Keys are fresh per instance.
    """

    def __init__(self, *, not_before: datetime = _DEFAULT_NOT_BEFORE,
                 not_after: datetime = _DEFAULT_NOT_AFTER, issued: datetime = _DEFAULT_ISSUED,
                 next_update: datetime = _DEFAULT_NEXT, crl_this_update: datetime | None = None,
                 tcb_status: str = "UpToDate", advisories: tuple[str, ...] = (),
                 fmspc: bytes = TEST_FMSPC, at: datetime = _DEFAULT_AT) -> None:
        self.at = at
        self.fmspc = fmspc
        self._qe_sigs: dict[bytes, bytes] = {}
        self.not_before, self.not_after = not_before, not_after
        self.issued, self.next_update = issued, next_update
        self.crl_this_update = crl_this_update or issued
        self.tcb_status, self.advisories = tcb_status, advisories
        curve = ec.SECP256R1()
        self.root_key = ec.generate_private_key(curve)
        self.pck_ca_key = ec.generate_private_key(curve)
        self.pck_key = ec.generate_private_key(curve)
        self.tcb_key = ec.generate_private_key(curve)
        self.attestation_key = ec.generate_private_key(curve)
        self.root_cert = self._cert("TEST ROOT (not Intel) SGX Root CA", self.root_key,
                                    self.root_key, None, ca=1)
        self.pck_ca_cert = self._cert("TEST ROOT (not Intel) SGX PCK Platform CA",
                                      self.pck_ca_key, self.root_key, self.root_cert, ca=0)
        self.pck_cert = self._cert("TEST ROOT (not Intel) SGX PCK Certificate", self.pck_key,
                                   self.pck_ca_key, self.pck_ca_cert, ca=None,
                                   sgx=sgx_extension(fmspc))
        self.tcb_cert = self._cert("TEST ROOT (not Intel) SGX TCB Signing", self.tcb_key,
                                   self.root_key, self.root_cert, ca=None)
        self.collateral = self._collateral()

    # -- PKI --------------------------------------------------------------------------

    def _cert(self, cn: str, key: ec.EllipticCurvePrivateKey, issuer_key: ec.EllipticCurvePrivateKey,
              issuer: x509.Certificate | None, *, ca: int | None,
              sgx: bytes | None = None) -> x509.Certificate:
        subject = _name(cn)
        builder = (x509.CertificateBuilder()
                   .subject_name(subject)
                   .issuer_name(issuer.subject if issuer else subject)
                   .public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(self.not_before)
                   .not_valid_after(self.not_after)
                   .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                                  critical=False)
                   .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                       issuer_key.public_key()), critical=False))
        if ca is not None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=ca),
                                            critical=True)
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        else:
            builder = builder.add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                            critical=True)
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=True, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        if sgx is not None:
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXT), sgx), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    def _crl(self, issuer: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> bytes:
        crl = (x509.CertificateRevocationListBuilder()
               .issuer_name(issuer.subject)
               .last_update(self.crl_this_update)
               .next_update(self.next_update)
               .add_extension(x509.CRLNumber(1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()),
                              critical=False)
               .sign(key, hashes.SHA256()))
        return crl.public_bytes(serialization.Encoding.DER)

    @property
    def root_pem(self) -> str:
        """The test root certificate, PEM: what `trust()` puts in `roots`."""
        return _pem(self.root_cert)

    # -- collateral -------------------------------------------------------------------

    def tcb_info(self) -> str:
        """The TDX TCB info (v3) JSON text, exactly as signed."""
        level: dict[str, Any] = {
            "tcb": {"sgxtcbcomponents": [{"svn": s} for s in CPU_SVN], "pcesvn": PCE_SVN,
                    "tdxtcbcomponents": [{"svn": s} for s in TEE_TCB_SVN]},
            "tcbDate": "2024-03-13T00:00:00Z", "tcbStatus": self.tcb_status,
        }
        if self.advisories:
            level["advisoryIDs"] = list(self.advisories)
        zeros48 = "00" * 48
        body = {
            "id": "TDX", "version": 3, "issueDate": _iso(self.issued),
            "nextUpdate": _iso(self.next_update), "fmspc": self.fmspc.hex().upper(),
            "pceId": PCE_ID.hex().upper(), "tcbType": 0, "tcbEvaluationDataNumber": 17,
            "tdxModule": {"mrsigner": zeros48, "attributes": "0000000000000000",
                          "attributesMask": "FFFFFFFFFFFFFFFF"},
            "tdxModuleIdentities": [{
                "id": "TDX_01", "mrsigner": zeros48, "attributes": "0000000000000000",
                "attributesMask": "FFFFFFFFFFFFFFFF",
                "tcbLevels": [{"tcb": {"isvsvn": TEE_TCB_SVN[0]}, "tcbDate": "2024-03-13T00:00:00Z",
                               "tcbStatus": "UpToDate"}]}],
            "tcbLevels": [level],
        }
        return json.dumps(body, separators=(",", ":"))

    def qe_identity(self) -> str:
        """The TD_QE identity (v2) JSON text, exactly as signed."""
        return json.dumps({
            "id": "TD_QE", "version": 2, "issueDate": _iso(self.issued),
            "nextUpdate": _iso(self.next_update), "tcbEvaluationDataNumber": 17,
            "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": QE_MRSIGNER.hex().upper(), "isvprodid": QE_ISVPRODID,
            "tcbLevels": [{"tcb": {"isvsvn": QE_ISVSVN}, "tcbDate": "2024-03-13T00:00:00Z",
                           "tcbStatus": "UpToDate"}],
        }, separators=(",", ":"))

    def _collateral(self) -> dict[str, str]:
        tcb_info, qe_identity = self.tcb_info(), self.qe_identity()
        chain = _pem(self.tcb_cert, self.root_cert)
        return {
            "pck_crl_issuer_chain": _pem(self.pck_ca_cert, self.root_cert),
            "root_ca_crl": self._crl(self.root_cert, self.root_key).hex(),
            "pck_crl": self._crl(self.pck_ca_cert, self.pck_ca_key).hex(),
            "tcb_info_issuer_chain": chain,
            "tcb_info": tcb_info,
            "tcb_info_signature": _raw_sig(self.tcb_key, tcb_info.encode()).hex(),
            "qe_identity_issuer_chain": chain,
            "qe_identity": qe_identity,
            "qe_identity_signature": _raw_sig(self.tcb_key, qe_identity.encode()).hex(),
        }

    def collateral_at(self, *, issued: datetime, next_update: datetime,
                      crl_this_update: datetime | None = None) -> dict[str, str]:
        """Collateral re-signed by this root's keys with other times (for expiry tests)."""
        saved = (self.issued, self.next_update, self.crl_this_update)
        self.issued, self.next_update = issued, next_update
        self.crl_this_update = crl_this_update or issued
        try:
            return self._collateral()
        finally:
            self.issued, self.next_update, self.crl_this_update = saved

    def collateral_json(self) -> str:
        """The collateral in dcap-qvl's `QuoteCollateralV3` JSON form."""
        return json.dumps(self.collateral)

    # -- quotes -----------------------------------------------------------------------

    def td_report(self, report_data: bytes, *, version: int = 4, debug: bool = False) -> bytes:
        """A TD report body: 584 bytes (TD 1.0, quote v4) or 648 (TD 1.5, quote v5)."""
        if len(report_data) != 64:
            raise ValueError("report data is 64 bytes")
        attributes = bytearray(SEPT_VE_DISABLE)
        if debug:
            attributes[0] |= TD_DEBUG
        body = b"".join([
            TEE_TCB_SVN,                                   # 0   tee_tcb_svn
            hashlib.sha384(b"test mrseam").digest(),       # 16  mr_seam
            bytes(48),                                     # 64  mr_signer_seam
            bytes(8),                                      # 112 seam_attributes
            bytes(attributes),                             # 120 td_attributes
            bytes.fromhex("e702060000000000"),             # 128 xfam
            hashlib.sha384(b"test mrtd").digest(),         # 136 mr_td
            hashlib.sha384(b"test mrconfigid").digest(),   # 184 mr_config_id
            hashlib.sha384(b"test mrowner").digest(),      # 232 mr_owner
            hashlib.sha384(b"test mrownerconfig").digest(),  # 280 mr_owner_config
            *(hashlib.sha384(b"test rtmr%d" % i).digest() for i in range(4)),  # 328 rtmr0-3
            report_data,                                   # 520 report_data
        ])
        if version == 5:
            body += TEE_TCB_SVN + bytes(48)                # 584 tee_tcb_svn2, 600 mr_servicetd
        return body

    def _qe_report(self, auth_data: bytes) -> bytes:
        bound = hashlib.sha256(_raw_pub(self.attestation_key) + auth_data).digest()
        report = bytearray(384)
        report[48:64] = bytes.fromhex("11000000000000000000000000000000")  # attributes
        report[64:96] = hashlib.sha256(b"test QE mrenclave").digest()
        report[128:160] = QE_MRSIGNER
        struct.pack_into("<HH", report, 256, QE_ISVPRODID, QE_ISVSVN)
        report[320:352] = bound
        return bytes(report)

    def quote(self, report_data: bytes, *, version: int = 4, debug: bool = False) -> bytes:
        """A TDX quote (v4 or v5) whose TD report carries `report_data`, fully signed."""
        if version not in (4, 5):
            raise ValueError("TDX quote version 4 or 5")
        header = struct.pack("<HHIHH16s20s", version, 2, 0x81, 0, 0, QE_VENDOR_ID,
                             b"bytereplay TESTROOT!")
        body = self.td_report(report_data, version=version, debug=debug)
        signed = header + (struct.pack("<HI", 3, len(body)) if version == 5 else b"") + body
        auth_data = bytes(range(32))
        qe_report = self._qe_report(auth_data)
        chain = _pem(self.pck_cert, self.pck_ca_cert, self.root_cert).encode()
        # As on hardware, the QE certifies its attestation key once: every quote of this
        # platform carries the same QE report and signature (ECDSA would differ per call).
        qe_sig = self._qe_sigs.get(qe_report)
        if qe_sig is None:
            qe_sig = self._qe_sigs[qe_report] = _raw_sig(self.pck_key, qe_report)
        qe_cert_data = (qe_report + qe_sig
                        + struct.pack("<H", len(auth_data)) + auth_data
                        + struct.pack("<HI", 5, len(chain)) + chain)
        sig_data = (_raw_sig(self.attestation_key, signed) + _raw_pub(self.attestation_key)
                    + struct.pack("<HI", 6, len(qe_cert_data)) + qe_cert_data)
        return signed + struct.pack("<I", len(sig_data)) + sig_data

    def tsm_quote(self, report_data: bytes, *, version: int = 4, debug: bool = False,
                  collateral: bool = True) -> dict[str, Any]:
        """The `tsm` provider's quote object for a TDX guest, with the collateral embedded."""
        out: dict[str, Any] = {
            "provider": "tsm", "simulated": False, "kernel_provider": "tdx_guest", "tee": "tdx",
            "generation": 1,
            "outblob": b64url_encode(self.quote(report_data, version=version, debug=debug)),
            "software_measurements": {},
        }
        if collateral:
            out["collateral"] = dict(self.collateral)
        return out

    def write_files(self, folder: Path) -> dict[str, Path]:
        """Write the test root PEM and a collateral folder for config-driven tests.

        Returns `{"root": <folder>/tdx-test-root.pem, "collateral": <folder>/collateral}`;
        the collateral folder holds `<FMSPC>.json` (what `tee.tdx.collateral` reads).
        """
        folder.mkdir(parents=True, exist_ok=True)
        root = folder / "tdx-test-root.pem"
        root.write_text(self.root_pem)
        collateral = folder / "collateral"
        collateral.mkdir(exist_ok=True)
        (collateral / f"{self.fmspc.hex().upper()}.json").write_text(self.collateral_json())
        return {"root": root, "collateral": collateral}

    def trust(self, **overrides: Any) -> SchemeTrust:
        """A `SchemeTrust` for tdx that trusts this TEST ROOT (and nothing else)."""
        base = SchemeTrust(configured=True, roots=(self.root_pem,), test_root=True)
        return replace(base, **overrides)
