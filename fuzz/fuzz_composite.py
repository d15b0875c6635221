"""Fuzz composite evidence: the `bytereplay.gpu_evidence` claim's shape check, the
verifier's per-GPU appraisal (`verifier.devices.verify_gpus`) and the record comparison,
and reading an EAR with several submods (`bytereplay.ear.normalise`).

Modes (first byte): fuzzed JSON as the GPU evidence list, shape-checked and then appraised
under NVIDIA's pinned root at 2025-06-01 (nothing fuzzed may come out `ok`); fuzzed JSON
as EAR claims, normalised (a result read must never be better than a submod's worst
claim); fuzzed JSON as GPU facts compared with a record's GPU.

Crash: any exception other than a `BytereplayError`; a fuzzed GPU evidence accepted; an
EAR whose status is better than one of its submods' vectors.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import atheris
import harness

with atheris.instrument_imports(include=["verifier", "bytereplay"]):
    from bytereplay.ar4si import STATUS_RANK, status_of
    from bytereplay.ear import build_ear, normalise
    from bytereplay.encoding import strict_json_loads
    from bytereplay.evidence import check_gpu_evidence
    from bytereplay.record import Gpu
    from verifier.devices import OK, record_differences, verify_gpus
    from verifier.tee.base import SchemeTrust

AT = datetime(2025, 6, 1, tzinfo=UTC)
TRUSTS = {"nvidia": SchemeTrust(configured=True)}
DIGEST = "sha-256:" + "ab" * 32
EAR = build_ear(vector={"hardware": 2}, nonce=None, iat=1, policy_id="p")


def test_one_input(data: bytes) -> None:
    if not data:
        return
    mode, body = data[0] % 3, data[1:]
    doc = strict_json_loads(body)
    if mode == 0:
        check_gpu_evidence(doc)
        for device in verify_gpus(doc, bytes(32), DIGEST, TRUSTS, AT):
            assert device.status != OK, "fuzzed GPU evidence was accepted"
    elif mode == 1:
        claims = {**EAR, "submods": doc} if not isinstance(doc, dict) or "submods" not in doc \
            else {**EAR, **doc}
        ear = normalise(claims)
        for sub in ear.submods.values():
            assert STATUS_RANK[ear.status] >= STATUS_RANK[status_of(sub.vector)], \
                "a result better than one of its submods"
    elif isinstance(doc, dict):
        compared, diffs = record_differences(
            Gpu(arch="sm_90", sku="NVIDIA H100", driver="550.90.07"),
            [(doc.get("gpu") if isinstance(doc.get("gpu"), str) else None, doc)])
        assert len(diffs) <= compared


def seeds() -> list[bytes]:
    return [b'\x00[{"provider": "nvidia", "simulated": false, "index": 0, "gpu_nonce": "AA"}]',
            b"\x00[]",
            b'\x01{"bytereplay": {"ear.status": "affirming", "ear.trustworthiness-vector": '
            b'{"hardware": 2}}, "gpu0": {"ear.status": "warning", '
            b'"ear.trustworthiness-vector": {"hardware": 32}}}',
            b'\x02{"driver_version": "535", "gpu": "NVIDIA H200"}']


if __name__ == "__main__":
    harness.main(test_one_input, seeds)
