"""Fuzz NVIDIA GPU evidence: `verifier.tee.nvidia_spdm` and `verifier.tee.nvidia`.

Modes (first byte): raw or hex report parsing; nvtrust's H100 sample
(fixtures/tee/nvidia/hopperAttestationReport.txt) with fuzzed bytes XORed in, verified
with its chain against the pinned NVIDIA Device Identity CA at 2025-06-01; the sample
report with a fuzzed certificate chain; the sample VBIOS RIM with fuzzed bytes XORed
in (`verifier.tee.nvidia_rim.verify_rim`); a RIM service answer
(`nvidia_rim._service_rim`); an OCSP answer about the sample's leaf
(`nvidia_pki.read_ocsp_answer`).

Crash: any exception other than a `BytereplayError`; a changed report accepted whose
signed bytes differ from the genuine ones; a fuzzed chain accepted.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier.tee", "bytereplay"]):
    from verifier.tee import nvidia, nvidia_pki, nvidia_rim, nvidia_spdm
    from verifier.tee.base import SchemeTrust

NV = harness.REPO / "fixtures" / "tee" / "nvidia"
AT = datetime(2025, 6, 1, tzinfo=UTC)
REPORT = nvidia_spdm.parse_report((NV / "hopperAttestationReport.txt").read_bytes()).raw
CHAIN = (NV / "hopperCertChain.txt").read_bytes()
TRUST = SchemeTrust(configured=True)
GENUINE = nvidia.load_chain(CHAIN)
RIM = (NV / "1010_0200_882_96005E0001_test_no_gpu.swidtag").read_bytes()


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 6, data[1:]
    if mode == 0:
        nvidia_spdm.parse_report(body)
    elif mode == 1:  # the genuine report with fuzzed bytes XORed in at an offset
        fdp = atheris.FuzzedDataProvider(body)
        at = fdp.ConsumeIntInRange(0, len(REPORT) - 1)
        patch = fdp.ConsumeBytes(64)
        raw = bytearray(REPORT)
        for i, b in enumerate(patch[: len(REPORT) - at]):
            raw[at + i] ^= b
        nvidia.verify_report(bytes(raw), CHAIN, TRUST, AT, None)
        assert bytes(raw) == REPORT, "changed report accepted"
    elif mode == 2:  # a fuzzed chain
        nvidia.verify_report(REPORT, body, TRUST, AT, None)
        assert nvidia.load_chain(body)[0] == GENUINE[0], "a fuzzed chain accepted another leaf"
    elif mode == 4:
        nvidia_rim._service_rim(body, "fuzz")
    elif mode == 5:
        nvidia_pki.read_ocsp_answer(body, GENUINE[0], GENUINE[1], AT)
        raise AssertionError("a fuzzed OCSP answer was accepted")
    else:  # the VBIOS RIM with fuzzed bytes XORed in: signature and chain checks
        fdp = atheris.FuzzedDataProvider(body)
        at = fdp.ConsumeIntInRange(0, len(RIM) - 1)
        patch = fdp.ConsumeBytes(32)
        raw = bytearray(RIM)
        for i, b in enumerate(patch[: len(RIM) - at]):
            raw[at + i] ^= b
        nvidia_rim.verify_rim(bytes(raw), AT)


def seeds() -> list[bytes]:
    return [b"\x00" + REPORT, b"\x00" + REPORT.hex().encode(), b"\x01" + bytes(8),
            b"\x01\x90\x00\x01", b"\x02" + CHAIN, b"\x02" + CHAIN[:800],
            b"\x03" + bytes(8), b'\x04{"rim": "AAAA", "sha256": "00"}', b"\x05\x30\x03\x0a\x01\x00"]


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
