"""NVIDIA GPU attestation reports: an SPDM 1.1 GET_MEASUREMENTS request and its response.

The report (as NVML returns it, and as nvtrust's samples store it in hex text) is the
request followed by the response; the response ends with the signature. Layout, all
integers little-endian:

Request (37 bytes): version 0x11, code 0xE0, param1 (bit 0: signature requested, must
be set), param2 (measurement operation; 0xFF = all blocks), a 32-byte nonce, the slot
id (1 byte).

Response: version 0x11, code 0x60, param1, param2 (slot id), number of blocks (1 byte),
measurement record length (3 bytes), the measurement record, the responder nonce (32),
opaque data length (2), opaque data, signature (96 bytes: r then s, big-endian, ECDSA
P-384 over SHA-384 of request || response up to the signature).

Measurement record: blocks of index (1), measurement specification (1, DMTF = 0x01),
size (2), then `size` bytes: DMTF value type (1), value size (2), value. Indexes are
unique; the record length must equal the sum of the blocks.

Opaque data: NVIDIA's list of fields, each type (2), size (2), value. Known types:
3 driver version (NUL-terminated text), 4 GPU info, 6 VBIOS version (8 bytes, shown as
`96.00.9f.00.01`: bytes 3, 2, 1, 0, 4), 11 NVDEC0 status, 12 measurement counts (u32
per index), 13 CPR info, 14 board id, 15 chip SKU, 16 chip SKU mod, 17 project,
18 project SKU, 19 project SKU mod, 20 FWID (48 bytes), 21 protected PCIe status,
36 feature flags (the CC mode: 0 off, 1 on, 2 DEVTOOLS; absent in older drivers, and
then the CC mode is *not reported*). Unknown types are kept as hex.

`parse_report(data)` accepts raw bytes or hex text; every refusal is a `QuoteError`
naming the byte offset (in the raw report) where the layout breaks, including missing
and trailing bytes.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from bytereplay.errors import QuoteError

SPDM_VERSION = 0x11
GET_MEASUREMENTS = 0xE0
MEASUREMENTS = 0x60
NONCE_LEN = 32
REQUEST_LEN = 4 + NONCE_LEN + 1
SIGNATURE_LEN = 96
DMTF_SPEC = 0x01
MAX_REPORT = 1 << 16
HEX_TEXT = re.compile(rb"\s*([0-9a-fA-F]*)\s*")

OPAQUE_DRIVER_VERSION = 3
OPAQUE_GPU_INFO = 4
OPAQUE_VBIOS_VERSION = 6
OPAQUE_NVDEC0_STATUS = 11
OPAQUE_MEASUREMENT_COUNT = 12
OPAQUE_CPR_INFO = 13
OPAQUE_BOARD_ID = 14
OPAQUE_CHIP_SKU = 15
OPAQUE_CHIP_SKU_MOD = 16
OPAQUE_PROJECT = 17
OPAQUE_PROJECT_SKU = 18
OPAQUE_PROJECT_SKU_MOD = 19
OPAQUE_FWID = 20
OPAQUE_PROTECTED_PCIE_STATUS = 21
OPAQUE_FEATURE_FLAG = 36
FWID_LEN = 48
TEXT_FIELDS = {OPAQUE_DRIVER_VERSION: "driver_version", OPAQUE_CHIP_SKU: "chip_sku",
               OPAQUE_CHIP_SKU_MOD: "chip_sku_mod", OPAQUE_PROJECT: "project",
               OPAQUE_PROJECT_SKU: "project_sku", OPAQUE_NVDEC0_STATUS: "nvdec0_status",
               OPAQUE_PROTECTED_PCIE_STATUS: "protected_pcie_status"}
HEX_FIELDS = {OPAQUE_GPU_INFO: "gpu_info", OPAQUE_CPR_INFO: "cpr_info",
              OPAQUE_BOARD_ID: "board_id", OPAQUE_PROJECT_SKU_MOD: "project_sku_mod",
              OPAQUE_FWID: "fwid"}
CC_MODES = {0: "off", 1: "on", 2: "devtools"}


@dataclass(frozen=True)
class MeasurementBlock:
    index: int
    value_type: int
    value: bytes
    offset: int  # of the block in the raw report


@dataclass(frozen=True)
class SpdmReport:
    """One parsed GET_MEASUREMENTS exchange."""

    raw: bytes
    request_nonce: bytes
    responder_nonce: bytes
    blocks: tuple[MeasurementBlock, ...]
    opaque: dict[int, bytes]
    signature: bytes
    fields: dict[str, Any] = field(default_factory=dict)

    @property
    def signed(self) -> bytes:
        """request || response without the signature: what the signature covers."""
        return self.raw[:-SIGNATURE_LEN]

    @property
    def fwid(self) -> bytes | None:
        return self.opaque.get(OPAQUE_FWID)

    @property
    def cc_mode(self) -> str | None:
        """"on", "off", "devtools", "unknown(N)", or None when the report does not say."""
        flag = self.opaque.get(OPAQUE_FEATURE_FLAG)
        if flag is None:
            return None
        value = int.from_bytes(flag, "little")
        return CC_MODES.get(value, f"unknown({value})")

    def measurements(self) -> dict[int, bytes]:
        return {b.index: b.value for b in self.blocks}


def _raw(data: bytes) -> bytes:
    if len(data) > 2 * MAX_REPORT + 64:
        raise QuoteError(f"NVIDIA attestation report is {len(data)} bytes; at most {MAX_REPORT}")
    if data[:2] == bytes([SPDM_VERSION, GET_MEASUREMENTS]):
        return data
    m = HEX_TEXT.fullmatch(data)
    if m is None or len(m.group(1)) % 2:
        raise QuoteError("NVIDIA attestation report is neither an SPDM request (11 e0 ...) "
                         "nor its hex text")
    return bytes.fromhex(m.group(1).decode("ascii"))


def _need(data: bytes, at: int, n: int, what: str) -> None:
    if at + n > len(data):
        raise QuoteError(f"NVIDIA attestation report: {what} at offset {at} needs {n} bytes, "
                         f"{max(0, len(data) - at)} left (truncated)")


def _text(value: bytes) -> str:
    return value.split(b"\0", 1)[0].decode("ascii", "replace")


def _vbios(value: bytes) -> str:
    if len(value) < 5:
        return value.hex()
    return ".".join(f"{value[i]:02x}" for i in (3, 2, 1, 0, 4))


def _fields(opaque: dict[int, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind, value in opaque.items():
        if kind in TEXT_FIELDS:
            out[TEXT_FIELDS[kind]] = _text(value)
        elif kind in HEX_FIELDS:
            out[HEX_FIELDS[kind]] = value.hex()
        elif kind == OPAQUE_VBIOS_VERSION:
            out["vbios_version"] = _vbios(value)
        elif kind == OPAQUE_MEASUREMENT_COUNT:
            counts = struct.unpack_from(f"<{len(value) // 4}I", value)
            out["measurement_count"] = {str(i + 1): c for i, c in enumerate(counts)}
        elif kind != OPAQUE_FEATURE_FLAG:
            out[f"opaque_{kind}"] = value.hex()
    return out


def parse_report(data: bytes) -> SpdmReport:
    """The request and response in `data` (raw or hex text); see the module doc."""
    raw = _raw(data)
    if len(raw) > MAX_REPORT:
        raise QuoteError(f"NVIDIA attestation report is {len(raw)} bytes; at most {MAX_REPORT}")
    _need(raw, 0, REQUEST_LEN, "the GET_MEASUREMENTS request")
    version, code, attributes, _operation = raw[:4]
    if version != SPDM_VERSION or code != GET_MEASUREMENTS:
        raise QuoteError(f"NVIDIA attestation report: offset 0 holds SPDM version {version:#x} "
                         f"code {code:#x}, not a 1.1 GET_MEASUREMENTS request (0x11 0xe0)")
    if not attributes & 1:
        raise QuoteError("NVIDIA attestation report: offset 2: the request did not ask for a "
                         "signature")
    request_nonce = raw[4:4 + NONCE_LEN]
    pos = REQUEST_LEN
    _need(raw, pos, 8, "the MEASUREMENTS response header")
    if raw[pos] != SPDM_VERSION or raw[pos + 1] != MEASUREMENTS:
        raise QuoteError(f"NVIDIA attestation report: offset {pos} holds SPDM version "
                         f"{raw[pos]:#x} code {raw[pos + 1]:#x}, not a 1.1 MEASUREMENTS "
                         "response (0x11 0x60)")
    count = raw[pos + 4]
    record_len = int.from_bytes(raw[pos + 5:pos + 8], "little")
    pos += 8
    _need(raw, pos, record_len, "the measurement record")
    end = pos + record_len
    blocks: list[MeasurementBlock] = []
    seen: set[int] = set()
    while pos < end:
        start = pos
        if pos + 4 > end:
            raise QuoteError(f"NVIDIA attestation report: measurement block at offset {pos} "
                             "runs past the record")
        index, spec, size = raw[pos], raw[pos + 1], int.from_bytes(raw[pos + 2:pos + 4], "little")
        if spec != DMTF_SPEC or size < 3 or pos + 4 + size > end:
            raise QuoteError(f"NVIDIA attestation report: measurement block at offset {pos} "
                             f"(index {index}) is malformed (specification {spec}, size {size})")
        value_type = raw[pos + 4]
        value_size = int.from_bytes(raw[pos + 5:pos + 7], "little")
        if value_size != size - 3:
            raise QuoteError(f"NVIDIA attestation report: measurement block at offset {pos} "
                             f"(index {index}) value size {value_size} != {size - 3}")
        if index in seen:
            raise QuoteError(f"NVIDIA attestation report: measurement block at offset {pos} "
                             f"repeats index {index}")
        seen.add(index)
        blocks.append(MeasurementBlock(index, value_type, raw[pos + 7:pos + 4 + size], start))
        pos += 4 + size
    if len(blocks) != count:
        raise QuoteError(f"NVIDIA attestation report: offset {REQUEST_LEN + 4} announces "
                         f"{count} measurement blocks, the record holds {len(blocks)}")
    _need(raw, pos, NONCE_LEN + 2, "the responder nonce and opaque length")
    responder_nonce = raw[pos:pos + NONCE_LEN]
    pos += NONCE_LEN
    opaque_len = int.from_bytes(raw[pos:pos + 2], "little")
    pos += 2
    _need(raw, pos, opaque_len, "the opaque data")
    opaque: dict[int, bytes] = {}
    o_end = pos + opaque_len
    while pos < o_end:
        if pos + 4 > o_end:
            raise QuoteError(f"NVIDIA attestation report: opaque field at offset {pos} runs "
                             "past the opaque data")
        kind, size = struct.unpack_from("<HH", raw, pos)
        if pos + 4 + size > o_end:
            raise QuoteError(f"NVIDIA attestation report: opaque field {kind} at offset {pos} "
                             f"({size} bytes) runs past the opaque data")
        if kind in opaque:
            raise QuoteError(f"NVIDIA attestation report: opaque field {kind} at offset {pos} "
                             "is repeated")
        opaque[kind] = raw[pos + 4:pos + 4 + size]
        pos += 4 + size
    fwid = opaque.get(OPAQUE_FWID)
    if fwid is not None and len(fwid) != FWID_LEN:
        raise QuoteError(f"NVIDIA attestation report: the FWID is {len(fwid)} bytes, not "
                         f"{FWID_LEN}")
    _need(raw, pos, SIGNATURE_LEN, "the signature")
    if len(raw) != pos + SIGNATURE_LEN:
        raise QuoteError(f"NVIDIA attestation report: {len(raw) - pos - SIGNATURE_LEN} trailing "
                         f"bytes after the signature at offset {pos + SIGNATURE_LEN}")
    return SpdmReport(raw=raw, request_nonce=request_nonce, responder_nonce=responder_nonce,
                      blocks=tuple(blocks), opaque=opaque, signature=raw[pos:],
                      fields=_fields(opaque))
