"""A test root for AMD SEV-SNP: ARK -> ASK -> VCEK and real-layout reports signed by it.

Not AMD's: the verifier accepts it only as `SchemeTrust(roots=..., test_root=True)` and
names it "TEST ROOT (not AMD)". The chain has AMD's shape: a self-signed RSA ARK, an RSA
ASK (CN SEV-Milan), both RSA-PSS/SHA-384 with 48-byte salts, and a P-384 VCEK (CN
SEV-VCEK) carrying AMD's extensions: productName "Milan-B0", the TCB SPLs
(1.3.6.1.4.1.3704.1.3.x) and the 64-byte hardware id (1.3.6.1.4.1.3704.1.4).
`SnpTestRoot(product="Turin")` uses Turin's names, TCB layout (with FMC) and 8-byte
hardware id instead.

    root = SnpTestRoot()
    quote = root.tsm_quote(report_data)            # the tsm provider's dict
    trust = root.trust()                           # SchemeTrust for tee.snp
    SCHEME.verify(SCHEME.parse(quote), report_data, trust, at)

Reports are 1184 bytes in the SEV-SNP ABI layout, signed with ECDSA P-384 over
0x000..0x2A0 (R, S little-endian at 0x2A0), with the VCEK, ASK and ARK in the extended
report's certificate table (`auxblob`). Certificates are valid 2020-01-01..2049-12-31.
"""

from __future__ import annotations

import struct
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from bytereplay.encoding import b64url_encode
from verifier.tee import snp, snp_certs
from verifier.tee.base import SchemeTrust

NOT_BEFORE = datetime(2020, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2049, 12, 31, tzinfo=UTC)
PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
CHIP_ID = bytes(range(0x40, 0x80))
TCB = {"bl": 3, "tee": 0, "snp": 8, "ucode": 115}
TURIN_TCB = {"fmc": 1, "bl": 2, "tee": 0, "snp": 3, "ucode": 72}
PRODUCT_NAME = {"Milan": "Milan-B0", "Genoa": "Genoa-B1", "Turin": "Turin"}
MEASUREMENT = bytes(range(48))


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Engineering"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "bytereplay test root (not AMD)"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _der_int(v: int) -> bytes:
    body = v.to_bytes(max(1, (v.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def tcb_bytes(tcb: dict[str, int], product: str = "Milan") -> bytes:
    """A TCB_VERSION from its SPLs, in the product's layout."""
    out = bytearray(8)
    for k, i in snp.TCB_LAYOUT[product].items():
        out[i] = tcb[k]
    return bytes(out)


class SnpTestRoot:
    """One test ARK/ASK/VCEK chain and the reports it signs (keys made on construction)."""

    def __init__(self, *, product: str = "Milan", chip_id: bytes | None = None,
                 tcb: dict[str, int] | None = None, rsa_bits: int = 2048) -> None:
        self.product = product
        turin = product == "Turin"
        self.chip_id = chip_id if chip_id is not None else (CHIP_ID[:8] + bytes(56) if turin
                                                            else CHIP_ID)
        self.tcb = dict(tcb or (TURIN_TCB if turin else TCB))
        p = product
        self.ark_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        self.ask_key = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.ark = self._cert(_name(f"ARK-{p}"), _name(f"ARK-{p}"), self.ark_key.public_key(),
                              self.ark_key, ca=True)
        self.ask = self._cert(_name(f"SEV-{p}"), _name(f"ARK-{p}"), self.ask_key.public_key(),
                              self.ark_key, ca=True)
        self.asvk = self._cert(_name(f"SEV-VLEK-{p}"), _name(f"ARK-{p}"),
                               self.ask_key.public_key(), self.ark_key, ca=True)
        self.vcek = self.make_vcek()
        self.vlek = self.make_vcek(vlek=True)

    def _cert(self, subject: x509.Name, issuer: x509.Name, public: Any, signer: rsa.RSAPrivateKey,
              *, ca: bool, extensions: dict[str, bytes] | None = None) -> x509.Certificate:
        builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                   .public_key(public).serial_number(x509.random_serial_number())
                   .not_valid_before(NOT_BEFORE).not_valid_after(NOT_AFTER)
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        for oid, value in (extensions or {}).items():
            builder = builder.add_extension(
                x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), critical=False)
        return builder.sign(signer, hashes.SHA384(), rsa_padding=PSS)

    def make_vcek(self, *, hwid: bytes | None = None, tcb: dict[str, int] | None = None,
                  hwid_octet_string: bool = False, vlek: bool = False) -> x509.Certificate:
        """A VCEK for this chain's key, with the given (default: this chip's) extensions.

        With `vlek`: a VLEK instead (CN SEV-VLEK, issued by the ASVK, a CSP id and no
        hardware id), for reports whose flags name the VLEK.
        """
        p = self.product
        hw = (self.chip_id[:8] if p == "Turin" else self.chip_id) if hwid is None else hwid
        levels = self.tcb if tcb is None else tcb
        name = PRODUCT_NAME[p].encode()
        ext = {
            "1.3.6.1.4.1.3704.1.1": _der_int(0),
            "1.3.6.1.4.1.3704.1.2": b"\x16" + bytes([len(name)]) + name,
            "1.3.6.1.4.1.3704.1.3.1": _der_int(levels["bl"]),
            "1.3.6.1.4.1.3704.1.3.2": _der_int(levels["tee"]),
            "1.3.6.1.4.1.3704.1.3.3": _der_int(levels["snp"]),
            "1.3.6.1.4.1.3704.1.3.8": _der_int(levels["ucode"]),
            "1.3.6.1.4.1.3704.1.4": (b"\x04" + bytes([len(hw)]) + hw) if hwid_octet_string else hw,
        }
        if "fmc" in levels:
            ext["1.3.6.1.4.1.3704.1.3.9"] = _der_int(levels["fmc"])
        if vlek:
            del ext["1.3.6.1.4.1.3704.1.4"]
            ext["1.3.6.1.4.1.3704.1.5"] = b"\x16\x04test"
            return self._cert(_name("SEV-VLEK"), _name(f"SEV-VLEK-{p}"),
                              self.vcek_key.public_key(), self.ask_key, ca=False, extensions=ext)
        return self._cert(_name("SEV-VCEK"), _name(f"SEV-{p}"), self.vcek_key.public_key(),
                          self.ask_key, ca=False, extensions=ext)

    @staticmethod
    def pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()

    @staticmethod
    def der(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.DER)

    def crl(self, *, revoked: tuple[x509.Certificate, ...] = (),
            this_update: datetime = datetime(2025, 1, 1, tzinfo=UTC),
            next_update: datetime = datetime(2026, 1, 1, tzinfo=UTC),
            signer: rsa.RSAPrivateKey | None = None, pss: bool = True) -> bytes:
        """AMD's CRL for this product as KDS serves it (DER), signed by the ARK with
        RSA-PSS/SHA-384 (or `signer`, or PKCS#1 v1.5 with `pss` False)."""
        builder = (x509.CertificateRevocationListBuilder().issuer_name(self.ark.subject)
                   .last_update(this_update).next_update(next_update))
        for cert in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
                .revocation_date(this_update).build())
        pad = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48) if pss \
            else padding.PKCS1v15()
        crl = builder.sign(signer or self.ark_key, hashes.SHA384(), rsa_padding=pad)
        return crl.public_bytes(serialization.Encoding.DER)

    def trust(self, **overrides: Any) -> SchemeTrust:
        """`SchemeTrust` trusting this test root, with a minimum TCB equal to the chip's."""
        base = SchemeTrust(configured=True, roots=(self.pem(self.ark),), test_root=True,
                           min_tcb={self.product: dict(self.tcb)})
        return replace(base, **overrides)

    def report(self, report_data: bytes, *, debug: bool = False, version: int = 2,
               policy: int = 0x30000, vmpl: int = 0, measurement: bytes = MEASUREMENT,
               reported_tcb: dict[str, int] | None = None, chip_id: bytes | None = None,
               vlek: bool = False) -> bytes:
        """A signed 1184-byte report binding `report_data` (64 bytes)."""
        if len(report_data) != 64:
            raise ValueError("report data is 64 bytes")
        raw = bytearray(snp.REPORT_LEN)
        pol = policy | (snp.POLICY_DEBUG if debug else 0)
        struct.pack_into("<IIQ", raw, 0, version, 1, pol)
        struct.pack_into("<II", raw, 0x30, vmpl, snp.SIG_ALGO_ECDSA_P384_SHA384)
        tcb = tcb_bytes(reported_tcb or self.tcb, self.product)
        raw[0x38:0x40] = tcb
        struct.pack_into("<Q", raw, 0x40, 1)
        struct.pack_into("<I", raw, 0x48, (1 << 2) if vlek else 0)
        raw[0x50:0x90] = report_data
        raw[0x90:0xC0] = measurement
        raw[0xC0:0xE0] = bytes(range(0xC0, 0xE0))
        raw[0x180:0x188] = tcb
        if version >= 3:
            raw[0x188:0x18B] = bytes([snp.CPU_FAMILY[self.product], 0x01, 0x01])
        raw[0x1A0:0x1E0] = self.chip_id if chip_id is None else chip_id
        raw[0x1E0:0x1E8] = tcb
        raw[0x1F0:0x1F8] = tcb
        return self.sign(bytes(raw))

    def sign(self, raw: bytes) -> bytes:
        """`raw` with its signature (0x2A0..) replaced by the VCEK's over 0x000..0x2A0."""
        der = self.vcek_key.sign(raw[:snp.SIGNED_LEN], ec.ECDSA(hashes.SHA384()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(72, "little") + s.to_bytes(72, "little")
        return raw[:snp.SIGNED_LEN] + sig + raw[snp.SIGNED_LEN + len(sig):]

    def cert_table(self, vcek: x509.Certificate | None = None, *, vlek: bool = False) -> bytes:
        """The extended report's certificate table: VCEK (or VLEK), ASK (or ASVK), ARK."""
        if vlek:
            return snp_certs.build_cert_table({
                snp_certs.VLEK_GUID: self.der(self.vlek), snp_certs.ASK_GUID: self.der(self.asvk),
                snp_certs.ARK_GUID: self.der(self.ark)})
        return snp_certs.build_cert_table({
            snp_certs.VCEK_GUID: self.der(vcek or self.vcek),
            snp_certs.ASK_GUID: self.der(self.ask),
            snp_certs.ARK_GUID: self.der(self.ark),
        })

    def tsm_quote(self, report_data: bytes, *, debug: bool = False, **report: Any) -> dict[str, Any]:
        """The `tsm` provider's quote for a report binding `report_data`, certificates in auxblob."""
        return {
            "provider": "tsm", "simulated": False, "kernel_provider": "sev_guest",
            "tee": "sev-snp", "generation": 1,
            "outblob": b64url_encode(self.report(report_data, debug=debug, **report)),
            "auxblob": b64url_encode(self.cert_table(vlek=bool(report.get("vlek")))),
            "software_measurements": {},
        }
