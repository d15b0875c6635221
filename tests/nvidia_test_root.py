"""A test root for NVIDIA GPU evidence: a device CA, a leaf with an FWID, real-layout reports.

Not NVIDIA's: the verifier accepts it only as `SchemeTrust(roots=..., test_root=True)`
and names it "TEST ROOT (not NVIDIA)". The chain has the shape of a GPU's: a
self-signed P-384 root, a P-384 intermediate and a P-384 leaf carrying the TCG DICE
TcbInfo extension (2.23.133.5.4.1) with one SHA-384 FWID. Reports are SPDM 1.1
GET_MEASUREMENTS request + response in the layout `verifier.tee.nvidia_spdm` reads,
signed with the leaf's key (r || s, 96 bytes).

    root = NvidiaTestRoot()
    quote = root.quote(report_data)         # the nvidia provider's dict
    SCHEME.verify(SCHEME.parse(quote), report_data, root.trust(), at)

Certificates are valid 2020-01-01..2049-12-31.
"""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bytereplay.eat import gpu_nonce
from bytereplay.encoding import b64url_encode
from verifier.tee import nvidia_spdm as spdm
from verifier.tee.base import SchemeTrust
from verifier.tee.nvidia import FWID_SHA384_PREFIX, OID_DICE_TCB_INFO

NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2049, 12, 31, tzinfo=UTC)
AT = datetime(2025, 6, 1, tzinfo=UTC)
FWID = bytes(range(48))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bytereplay tests")])


def _der_len(n: int) -> bytes:
    return bytes([n]) if n < 0x80 else bytes([0x81, n])


def tcb_info(fwid: bytes) -> bytes:
    """A minimal TcbInfo: SEQUENCE { [6] SEQUENCE { SEQUENCE { sha384, OCTET STRING } } }."""
    entry = FWID_SHA384_PREFIX + fwid
    entry = b"\x30" + _der_len(len(entry)) + entry
    fwids = b"\xa6" + _der_len(len(entry)) + entry
    return b"\x30" + _der_len(len(fwids)) + fwids


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool, fwid: bytes | None = None,
          not_after: datetime = NOT_AFTER) -> x509.Certificate:
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(_name(issuer))
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(NOT_BEFORE).not_valid_after(not_after)
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if fwid is not None:
        b = b.add_extension(x509.UnrecognizedExtension(OID_DICE_TCB_INFO, tcb_info(fwid)),
                            critical=False)
    return b.sign(issuer_key, hashes.SHA384())


def build_report(nonce: bytes, key: ec.EllipticCurvePrivateKey, *, fwid: bytes = FWID,
                 measurements: dict[int, bytes] | None = None, cc_mode: int | None = 1,
                 driver: str = "550.90.07", vbios: bytes = bytes.fromhex("009f009601000000"),
                 ) -> bytes:
    """An SPDM 1.1 GET_MEASUREMENTS request + signed response for `nonce` (32 bytes)."""
    meas = measurements if measurements is not None else default_measurements()
    request = bytes([0x11, 0xE0, 0x01, 0xFF]) + nonce + b"\x00"
    record = b"".join(bytes([i, 1]) + struct.pack("<H", 3 + len(v)) + b"\x00"
                      + struct.pack("<H", len(v)) + v for i, v in sorted(meas.items()))
    fields = [(spdm.OPAQUE_DRIVER_VERSION, driver.encode() + b"\0"),
              (spdm.OPAQUE_VBIOS_VERSION, vbios), (spdm.OPAQUE_CHIP_SKU, b"882\0"),
              (spdm.OPAQUE_PROJECT, b"1010\0"), (spdm.OPAQUE_PROJECT_SKU, b"0200\0"),
              (spdm.OPAQUE_FWID, fwid)]
    if cc_mode is not None:
        fields.append((spdm.OPAQUE_FEATURE_FLAG, struct.pack("<I", cc_mode)))
    opaque = b"".join(struct.pack("<HH", t, len(v)) + v for t, v in fields)
    response = (bytes([0x11, 0x60, 0, 0, len(meas)]) + len(record).to_bytes(3, "little")
                + record + bytes(32) + struct.pack("<H", len(opaque)) + opaque)
    r, s = decode_dss_signature(key.sign(request + response, ec.ECDSA(hashes.SHA384())))
    return request + response + r.to_bytes(48, "big") + s.to_bytes(48, "big")


class NvidiaTestRoot:
    """A test device CA -> intermediate -> leaf (with FWID) and reports signed by the leaf."""

    def __init__(self, fwid: bytes = FWID) -> None:
        self.fwid = fwid
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.ica_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf_key = ec.generate_private_key(ec.SECP384R1())
        self.root = _cert("Test Device Identity CA", self.root_key, "Test Device Identity CA",
                          self.root_key, ca=True)
        self.ica = _cert("Test GPU Identity", self.ica_key, "Test Device Identity CA",
                         self.root_key, ca=True)
        self.leaf = _cert("Test GPU FMC LF", self.leaf_key, "Test GPU Identity", self.ica_key,
                          ca=False, fwid=fwid)
        self.rim_key = ec.generate_private_key(ec.SECP384R1())
        self.rim_signer = _cert("Test RIM Signer", self.rim_key, "Test Device Identity CA",
                                self.root_key, ca=False)

    def rim(self, measurements: dict[int, bytes] | None = None) -> bytes:
        """A RIM signed under this test root with these golden values (default: the
        measurements `report` writes)."""
        return build_rim(measurements or default_measurements(), self.rim_key,
                         [self.rim_signer, self.root])

    def root_pem(self) -> str:
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    def chain_pem(self, *certs: x509.Certificate) -> bytes:
        """The chain leaf first (default leaf, intermediate, root)."""
        use = certs or (self.leaf, self.ica, self.root)
        return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in use)

    def trust(self) -> SchemeTrust:
        return SchemeTrust(configured=True, roots=(self.root_pem(),), test_root=True)

    def report(self, nonce: bytes, **kw: Any) -> bytes:
        return build_report(nonce, self.leaf_key, fwid=self.fwid, **kw)

    def quote(self, report_data: bytes, **kw: Any) -> dict[str, Any]:
        """The `nvidia` provider's quote dict for `report_data` (64 bytes)."""
        nonce = gpu_nonce(report_data)
        return {"provider": "nvidia", "simulated": False, "gpu": "NVIDIA H100 (test root)",
                "driver": "550.90.07", "gpu_nonce": b64url_encode(nonce),
                "attestation_report": b64url_encode(self.report(nonce, **kw)),
                "cert_chain": b64url_encode(self.chain_pem()), "software_measurements": {}}


def build_rim(measurements: dict[int, bytes], signer_key: ec.EllipticCurvePrivateKey,
              chain: list[x509.Certificate], *, version: str = "550.90.07") -> bytes:
    """A signed SWID tag (the RIM layout `verifier.tee.nvidia_rim` reads) whose active
    golden measurements are `measurements` ({SPDM index: value}), signed (XML-DSig,
    ECDSA P-384, SHA-384) with `signer_key`, its chain (leaf first) in KeyInfo."""
    from lxml import etree
    from signxml import XMLSigner
    from signxml.algorithms import DigestAlgorithm, SignatureMethod

    from verifier.tee.nvidia_rim import SHA384_NS, SWID_NS

    root = etree.Element(f"{{{SWID_NS}}}SoftwareIdentity",
                         nsmap={None: SWID_NS, "SHA384": SHA384_NS},
                         tagId=f"test-rim-{version}", name="test RIM", version=version)
    etree.SubElement(root, f"{{{SWID_NS}}}Meta", colloquialVersion=version)
    payload = etree.SubElement(root, f"{{{SWID_NS}}}Payload")
    for index, value in sorted(measurements.items()):
        etree.SubElement(payload, f"{{{SWID_NS}}}Resource", type="Measurement",
                         index=str(index - 1), active="True", alternatives="1",
                         name=f"m{index}", attrib={f"{{{SHA384_NS}}}Hash0": value.hex()})
    signer = XMLSigner(signature_algorithm=SignatureMethod.ECDSA_SHA384,
                       digest_algorithm=DigestAlgorithm.SHA384)
    signed = signer.sign(root, key=signer_key, cert=list(chain))
    out: bytes = etree.tostring(signed)
    return out


def default_measurements() -> dict[int, bytes]:
    """The measurement blocks `build_report` writes when given none."""
    return {i: hashlib.sha384(bytes([i])).digest() for i in range(1, 5)}
