"""Where SEV-SNP endorsement certificates come from: the report's table, a folder, AMD KDS.

The certificates only *propose* keys: `verifier.tee.snp` accepts one only when it chains
to a pinned AMD root (or a configured test root) and matches the report. So every source
here may return too much or the wrong thing without harm; each bounds what it reads.

- `parse_cert_table(blob)`: the certificate table of an extended report, as the
  `tsm` provider saves it (configfs `auxblob`; the GHCB specification's
  `SNP_GUEST_REQUEST` certificate table): entries of 24 bytes, a 16-byte GUID, a
  little-endian u32 offset and u32 length into the blob, ended by an all-zero entry.
  GUIDs are read in the byte order AMD's tools write (`uuid_parse`, big-endian); the
  mixed-endian form some hosts use is accepted too. Returns `CertTable`.
- `folder_certs(path)`: every certificate file (`*.pem`, `*.crt`, `*.cer`, `*.der`,
  `*.testcer`) directly in a folder, at most `MAX_FOLDER_FILES` of them.
- `kds_vcek(base, product, hwid, tcb, cache_dir)`: the VCEK for one chip and TCB from
  an AMD KDS-compatible base URL (`https://kdsintf.amd.com`), as
  `{base}/vcek/v1/{product}/{hwid hex}?blSPL=..&teeSPL=..&snpSPL=..&ucodeSPL=..`
  (Turin: `fmcSPL` first, an 8-byte hwid). A VCEK for a (chip, TCB) pair never
  changes, so an answer cached under `cache_dir/snp-kds/` is used without asking
  again; validity is still checked at the verification time by the caller.

- `amd_crl(source, product, cache_dir, at)`: AMD's CRL for a product (the ARK's list of
  revoked ASK and ASVK certificates): a file (DER or PEM), a folder holding
  `<product>.crl`, or a KDS-compatible base URL, as `{base}/vcek/v1/{product}/crl`,
  whose answer is cached under `cache_dir/snp-kds/` and used while its `nextUpdate` is
  not before the verification time `at` (refetched after). Its signature, issuer and
  times are checked by `verifier.tee.snp`.

Every refusal is a `QuoteError` naming the source and, for the table, the byte offset.
"""

from __future__ import annotations

import hashlib
import struct
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from cryptography import x509

from bytereplay import fetch as fetch_mod
from bytereplay.errors import QuoteError

ENTRY_LEN = 24
MAX_TABLE = 1 << 20
MAX_ENTRIES = 64
MAX_CERT = 64 * 1024
MAX_CRL = 1 << 20
KDS_TIMEOUT_S = 10.0
MAX_FOLDER_FILES = 256
CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der", ".testcer")

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
CRL_GUID = uuid.UUID("92f81bc3-5811-4d3d-97ff-d19f88dc67ea")
NAMES = {VCEK_GUID: "vcek", VLEK_GUID: "vlek", ASK_GUID: "ask", ARK_GUID: "ark", CRL_GUID: "crl"}


@dataclass(frozen=True)
class CertTable:
    """The certificates of one extended report, by role (DER or PEM bytes as found)."""

    vcek: bytes | None = None
    vlek: bytes | None = None
    ask: bytes | None = None
    ark: bytes | None = None
    other: dict[str, bytes] = field(default_factory=dict)

    def all(self) -> tuple[bytes, ...]:
        """Every certificate in the table, endorsement keys first."""
        return tuple(c for c in (self.vcek, self.vlek, self.ask, self.ark) if c)


def _guid(raw: bytes) -> uuid.UUID:
    be = uuid.UUID(bytes=raw)
    if be in NAMES:
        return be
    le = uuid.UUID(bytes_le=raw)
    return le if le in NAMES else be


def parse_cert_table(blob: bytes) -> CertTable:
    """The certificates in an extended report's certificate table (see the module doc).

    Refuses a table over 1 MiB, without its all-zero end entry, with more than
    `MAX_ENTRIES` entries, a repeated GUID, or an entry whose offset and length fall
    outside the blob or inside the entry list, naming the entry's offset. An empty blob
    is an empty table.
    """
    if len(blob) > MAX_TABLE:
        raise QuoteError(f"SEV-SNP certificate table is {len(blob)} bytes; at most {MAX_TABLE}")
    if not blob or not any(blob):
        return CertTable()
    found: dict[uuid.UUID, bytes] = {}
    pos = 0
    while True:
        if pos + ENTRY_LEN > len(blob):
            raise QuoteError(f"SEV-SNP certificate table: entry at offset {pos} is truncated "
                             "(no all-zero end entry)")
        raw = blob[pos:pos + 16]
        offset, length = struct.unpack_from("<II", blob, pos + 16)
        if not any(blob[pos:pos + ENTRY_LEN]):
            break
        if len(found) >= MAX_ENTRIES:
            raise QuoteError(f"SEV-SNP certificate table: more than {MAX_ENTRIES} entries")
        guid = _guid(raw)
        if guid in found:
            raise QuoteError(f"SEV-SNP certificate table: entry at offset {pos} repeats GUID {guid}")
        if length == 0 or length > MAX_CERT or offset + length > len(blob):
            raise QuoteError(f"SEV-SNP certificate table: entry at offset {pos} ({guid}) points "
                             f"outside the table (offset {offset}, length {length}, table "
                             f"{len(blob)} bytes)")
        found[guid] = blob[offset:offset + length]
        pos += ENTRY_LEN
    end = pos + ENTRY_LEN
    for i in range(0, pos, ENTRY_LEN):
        offset, _length = struct.unpack_from("<II", blob, i + 16)
        if offset < end:
            raise QuoteError(f"SEV-SNP certificate table: entry at offset {i} points into the "
                             f"entry list (offset {offset} < {end})")
    other = {str(g): d for g, d in found.items() if g not in (VCEK_GUID, VLEK_GUID, ASK_GUID,
                                                              ARK_GUID)}
    return CertTable(vcek=found.get(VCEK_GUID), vlek=found.get(VLEK_GUID),
                     ask=found.get(ASK_GUID), ark=found.get(ARK_GUID), other=other)


def build_cert_table(entries: Mapping[uuid.UUID, bytes]) -> bytes:
    """A certificate table holding `entries` (GUID -> DER), GUIDs written big-endian."""
    head = ENTRY_LEN * (len(entries) + 1)
    table, body = bytearray(), bytearray()
    for guid, data in entries.items():
        table += guid.bytes + struct.pack("<II", head + len(body), len(data))
        body += data
    return bytes(table + bytes(ENTRY_LEN) + body)


def folder_certs(path: Path) -> tuple[bytes, ...]:
    """The certificate files directly in `path` (see the module doc), sorted by name."""
    if not path.is_dir():
        raise QuoteError(f"SEV-SNP certificate folder {path} does not exist")
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES and p.is_file())
    if len(files) > MAX_FOLDER_FILES:
        raise QuoteError(f"SEV-SNP certificate folder {path} holds {len(files)} certificate "
                         f"files; at most {MAX_FOLDER_FILES}")
    out = []
    for p in files:
        if p.stat().st_size <= MAX_CERT:
            out.append(p.read_bytes())
    return tuple(out)


def kds_vcek_url(base: str, product: str, hwid: bytes, tcb: Mapping[str, int]) -> str:
    """The KDS URL of the VCEK for chip `hwid` at TCB `tcb` (component name -> SPL)."""
    query = {}
    if "fmc" in tcb:
        query["fmcSPL"] = f"{tcb['fmc']:02d}"
    query.update({"blSPL": f"{tcb['bl']:02d}", "teeSPL": f"{tcb['tee']:02d}",
                  "snpSPL": f"{tcb['snp']:02d}", "ucodeSPL": f"{tcb['ucode']:02d}"})
    return (f"{base.rstrip('/')}/vcek/v1/{urllib.parse.quote(product)}/{hwid.hex()}?"
            + urllib.parse.urlencode(query))


def _cache_path(cache_dir: Path, url: str) -> Path:
    return cache_dir / "snp-kds" / (hashlib.sha256(url.encode()).hexdigest() + ".der")


def fetch(url: str, cache_dir: Path | None, *, limit: int = MAX_CERT,
          use_cached: bool = True) -> bytes:
    """GET `url` (http or https only) at most `limit` bytes, through the disk cache
    (`use_cached` False: ask again and replace the cached answer)."""
    cached = _cache_path(cache_dir, url) if cache_dir is not None else None
    if use_cached:
        return fetch_mod.cached_get(url, "AMD KDS", limit, cached)
    body = fetch_mod.http_get(url, "AMD KDS", limit)
    if cached is not None:
        fetch_mod.write_cache(cached, body)
    return body


def kds_vcek(base: str, product: str, hwid: bytes, tcb: Mapping[str, int],
             cache_dir: Path | None) -> bytes:
    """The VCEK (DER) for chip `hwid` at `tcb` from the KDS at `base`, cached on disk."""
    return fetch(kds_vcek_url(base, product, hwid, tcb), cache_dir)


def kds_crl_url(base: str, product: str) -> str:
    """The KDS URL of AMD's CRL for `product` (Milan, Genoa, Turin)."""
    return f"{base.rstrip('/')}/vcek/v1/{urllib.parse.quote(product)}/crl"


def load_crl(data: bytes, where: str) -> x509.CertificateRevocationList:
    """A CRL from DER or PEM bytes; `QuoteError` naming `where` otherwise."""
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data.strip())
        return x509.load_der_x509_crl(data)
    except (ValueError, x509.InvalidVersion):
        raise QuoteError(f"AMD CRL from {where} is not a DER or PEM CRL") from None


_CRLS: dict[str, tuple[tuple[int, int] | None, x509.CertificateRevocationList]] = {}


def amd_crl(source: str, product: str, cache_dir: Path | None,
            at: datetime) -> x509.CertificateRevocationList:
    """AMD's CRL for `product` from `source` (see the module doc). Kept in memory: a URL's
    answer while its `nextUpdate` is not before `at`, a file's while its modification
    time and size stay the same."""
    if source.startswith(("http://", "https://")):
        url = kds_crl_url(source, product)
        held = _CRLS.get(url)
        if held is not None and (held[1].next_update_utc or at) >= at:
            return held[1]
        crl = load_crl(fetch(url, cache_dir, limit=MAX_CRL), url)
        next_update = crl.next_update_utc
        if cache_dir is not None and (next_update is None or next_update < at):
            crl = load_crl(fetch(url, cache_dir, limit=MAX_CRL, use_cached=False), url)
        _CRLS[url] = (None, crl)
        return crl
    path = Path(source)
    if path.is_dir():
        path = path / f"{product}.crl"
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
        held = _CRLS.get(str(path))
        if held is not None and held[0] == stamp:
            return held[1]
        if st.st_size > MAX_CRL:
            raise QuoteError(f"AMD CRL {path} is over {MAX_CRL} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise QuoteError(f"AMD CRL {path}: {exc.strerror}") from None
    crl = load_crl(data, str(path))
    _CRLS[str(path)] = (stamp, crl)
    return crl
