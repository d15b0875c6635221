"""NVIDIA reference integrity manifests (RIMs): signed SWID tags with golden measurements.

A RIM is an ISO/IEC 19770-2 SWID tag (`SoftwareIdentity`) with an enveloped XML-DSig
signature (ECDSA P-384, SHA-384, C14N 1.1) whose `KeyInfo` carries the signing
certificate chain, leaf first. `verify_rim(data, at)` accepts one only when:

- the chain in `KeyInfo` is valid at `at`, each certificate signed by the next, ending
  at (or signed by) NVIDIA's RIM root shipped in `verifier/tee/nvidia_roots/`
  (`verifier_RIM_root.pem`, pinned by the SHA-256 of its DER, `RIM_ROOT_PIN`), or, only
  under a scheme trust marked `test_root`, also at that test root; the certificates in the
  message never act as anchors;
- the XML signature verifies (`signxml`) with the leaf's key, and only the signed
  document is read afterwards.

Its `Payload` lists `Resource type="Measurement"` elements: `index` (0-based; SPDM
measurement block index - 1), `active` ("True"/"False"), `alternatives` (N) and
`Hash0`..`Hash{N-1}` (hex, SHA-384, in the `xmlenc#sha384` namespace). Only active
measurements are golden.

`compare(measurements, rims)` compares SPDM blocks (`{spdm index: value}`) with the
active golden measurements of the driver and VBIOS RIMs: an index is mismatching when
its value is none of the alternatives, or when the report lacks it. An index active in
both RIMs is refused as a conflict. `load_rims(folder, at)` reads every `*.swidtag` and
`*.xml` directly in a folder (at most `MAX_FILES`, each at most `MAX_RIM` bytes).
OCSP for the RIM certificates is not checked.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bytereplay import fetch
from bytereplay.encoding import b64_decode, strict_json_loads
from bytereplay.errors import BytereplayError, QuoteError
from verifier.tee.nvidia_pki import check_links, pinned_root, signed_by

RIM_ROOT_FILE = "verifier_RIM_root.pem"
RIM_ROOT_PIN = "12977b5115acb0381179279fffeb5a8c4d264971ebb32298023a465fa41df5d1"
MAX_RIM = 1 << 20
MAX_FILES = 64
SWID_NS = "http://standards.iso.org/iso/19770/-2/2015/schema.xsd"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
SHA384_NS = "http://www.w3.org/2001/04/xmlenc#sha384"
MAX_ALTERNATIVES = 16
RIM_SERVICE_PATH = "/v1/rim/"
DRIVER_RIM_PREFIX = "NV_GPU_DRIVER_GH100_"  # Hopper: the SPDM layout verifier.tee reads
VBIOS_RIM_PREFIX = "NV_GPU_VBIOS_"


@dataclass(frozen=True)
class Rim:
    """One verified RIM: its tag id, product/version and active golden measurements."""

    name: str
    tag_id: str
    version: str
    signer: str
    golden: dict[int, tuple[bytes, ...]]  # SPDM index (1-based) -> alternatives



def rim_root() -> x509.Certificate:
    """The pinned NVIDIA RIM root; RuntimeError if the shipped file differs."""
    return pinned_root(RIM_ROOT_FILE, RIM_ROOT_PIN, "NVIDIA RIM root")


def _chain(root_el: Any, name: str, at: datetime,
           anchors: list[x509.Certificate] | None) -> list[x509.Certificate]:
    texts = [el.text or "" for el in root_el.iter(f"{{{DSIG_NS}}}X509Certificate")]
    if not texts:
        raise QuoteError(f"RIM {name}: no signing certificate in KeyInfo")
    certs: list[x509.Certificate] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in texts[:8]:
            pem = ("-----BEGIN CERTIFICATE-----\n" + "".join(text.split())
                   + "\n-----END CERTIFICATE-----\n").encode()
            try:
                cert = x509.load_pem_x509_certificate(pem)
                _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, cert.public_key(),
                     cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(),
                     cert.signature_hash_algorithm)
                certs.append(cert)
            except Exception:  # ValueError, UnsupportedAlgorithm, ...
                raise QuoteError(f"RIM {name}: a KeyInfo certificate cannot be read") from None
    check_links(certs, at, f"RIM {name}: signing")
    top = certs[-1]
    if not any(top == root or signed_by(top, root) for root in [rim_root(), *(anchors or [])]):
        raise QuoteError(f"RIM {name}: the signing chain does not end at NVIDIA's RIM root"
                         + (" or the test root" if anchors else ""))
    return certs


def verify_rim(data: bytes, at: datetime, name: str = "document",
               anchors: list[x509.Certificate] | None = None) -> Rim:
    """One RIM verified at `at` (see the module doc); `QuoteError` naming the failure.
    `anchors`: a test root accepted beside NVIDIA's RIM root (only from a scheme trust
    marked `test_root`)."""
    from lxml import etree
    from signxml.exceptions import SignXMLException
    from signxml.verifier import SignatureConfiguration, XMLVerifier

    if len(data) > MAX_RIM:
        raise QuoteError(f"RIM {name} is {len(data)} bytes; at most {MAX_RIM}")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)
    try:
        doc = etree.fromstring(data, parser=parser)
    except etree.XMLSyntaxError as exc:
        raise QuoteError(f"RIM {name} is not XML ({exc.msg})") from None
    certs = _chain(doc, name, at, anchors)
    leaf_pem = certs[0].public_bytes(serialization.Encoding.PEM).decode()
    try:
        verified = XMLVerifier().verify(
            doc, x509_cert=leaf_pem, expect_config=SignatureConfiguration(verification_time=at))
    except (SignXMLException, etree.LxmlError, ValueError) as exc:  # C14N, schema, syntax
        raise QuoteError(f"RIM {name}: the XML signature does not verify ({exc})") from None
    if isinstance(verified, list):  # only with expect_references > 1; never here
        raise QuoteError(f"RIM {name}: more than one signed reference")
    signed = verified.signed_xml
    if signed is None or signed.tag != f"{{{SWID_NS}}}SoftwareIdentity":
        raise QuoteError(f"RIM {name}: the signed document is not a SWID tag")
    golden: dict[int, tuple[bytes, ...]] = {}
    for res in signed.iter(f"{{{SWID_NS}}}Resource"):
        if res.get("type") != "Measurement" or res.get("active") != "True":
            continue
        try:
            index = int(res.get("index", "")) + 1
            count = int(res.get("alternatives", "1"))
            if not 1 <= count <= MAX_ALTERNATIVES or index in golden:
                raise ValueError
            golden[index] = tuple(bytes.fromhex(res.get(f"{{{SHA384_NS}}}Hash{i}", ""))
                                  for i in range(count))
        except ValueError:
            raise QuoteError(f"RIM {name}: measurement resource {res.get('name')!r} is "
                             "malformed") from None
    meta = next(signed.iter(f"{{{SWID_NS}}}Meta"), None)
    version = meta.get("colloquialVersion", "") if meta is not None else ""
    return Rim(name=name, tag_id=signed.get("tagId", ""), version=version,
               signer=certs[0].subject.rfc4514_string(), golden=golden)


def load_rims(folder: str | Path, at: datetime,
              anchors: list[x509.Certificate] | None = None) -> list[Rim]:
    """Every RIM directly in `folder`, each verified at `at`; `QuoteError` on any failure."""
    path = Path(folder)
    try:
        files = sorted(p for p in path.iterdir()
                       if p.suffix in (".swidtag", ".xml") and p.is_file())
    except OSError as exc:
        raise QuoteError(f"RIM folder {folder} cannot be read: {exc.strerror}") from None
    if not files:
        raise QuoteError(f"RIM folder {folder} holds no *.swidtag file")
    if len(files) > MAX_FILES:
        raise QuoteError(f"RIM folder {folder} holds more than {MAX_FILES} RIMs")
    return [verify_rim(p.read_bytes()[:MAX_RIM + 1], at, p.name, anchors) for p in files]


def compare(measurements: dict[int, bytes], rims: list[Rim]) -> list[int]:
    """The SPDM indexes whose values are none of the active golden alternatives."""
    golden: dict[int, tuple[bytes, ...]] = {}
    for rim in rims:
        for index, values in rim.golden.items():
            if index in golden:
                raise QuoteError(f"RIMs conflict: measurement index {index} is active in more "
                                 f"than one RIM ({rim.name})")
            golden[index] = values
    return sorted(i for i, values in golden.items() if measurements.get(i) not in values)



def rim_ids(fields: dict[str, Any]) -> tuple[str, str]:
    """The driver and VBIOS RIM ids a report's opaque fields name (see the module doc)."""
    try:
        driver = str(fields["driver_version"])
        vbios = str(fields["vbios_version"]).replace(".", "").upper()
        vbios_id = "_".join((str(fields["project"]), str(fields["project_sku"]),
                             str(fields["chip_sku"]), vbios))
    except KeyError as exc:
        raise QuoteError(f"the report does not name its RIMs: no {exc.args[0]}") from None
    ids = (DRIVER_RIM_PREFIX + driver, VBIOS_RIM_PREFIX + vbios_id)
    if not all(i.replace("_", "").replace(".", "").isalnum() and i.isascii() for i in ids):
        raise QuoteError("the report's version fields do not make RIM ids")
    return ids


def _service_rim(answer: bytes, rim_id: str) -> bytes:
    try:
        doc = strict_json_loads(answer, max_bytes=2 * MAX_RIM)
        if not isinstance(doc, dict) or not isinstance(doc.get("rim"), str):
            raise QuoteError("no 'rim'")
        rim = b64_decode(doc["rim"])
    except BytereplayError as exc:
        raise QuoteError(f"RIM service answer for {rim_id} is not a RIM: {exc.detail}") from None
    except ValueError:
        raise QuoteError(f"RIM service answer for {rim_id}: 'rim' is not base64") from None
    digest = doc.get("sha256")
    if digest is not None and (not isinstance(digest, str)
                               or hashlib.sha256(rim).hexdigest() != digest.lower()):
        raise QuoteError(f"RIM service answer for {rim_id}: the RIM's SHA-256 is not its "
                         "sha256")
    return rim


def fetch_rims(base: str, fields: dict[str, Any], at: datetime, cache_dir: Path | None,
               anchors: list[x509.Certificate] | None = None) -> list[Rim]:
    """The report's driver and VBIOS RIMs from the RIM service at `base`, through the disk
    cache, each verified at `at`; `QuoteError` on any failure."""
    out: list[Rim] = []
    for rim_id in rim_ids(fields):
        url = base.rstrip("/") + RIM_SERVICE_PATH + rim_id
        cache = (fetch.cache_path(cache_dir, "nvidia-rims", url)
                 if cache_dir is not None else None)
        answer = fetch.cached_get(url, "RIM service", 2 * MAX_RIM, cache)
        out.append(verify_rim(_service_rim(answer, rim_id), at, rim_id, anchors))
    return out
