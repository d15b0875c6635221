"""Composite evidence and the GPU evidence against the run record.

**Composite evidence** carries the CPU quote (`bytereplay.quote`) and one GPU evidence per
device (`bytereplay.gpu_evidence`), all under the session's one nonce: GPU `i`'s SPDM
nonce must be `bytereplay.eat.device_gpu_nonce(nonce, record digest, i)`.
`verify_gpus` checks each with the `nvidia` scheme (`verifier.tee.nvidia.verify_device`)
under the verifier's `tee.nvidia` trust, at the given time, and gives one `Device` per
GPU: `ok`; `unbound` (it verifies, or would, but its nonce is another session's or
another position's: a replayed report); or `failed` (any other refusal, or no
`tee.nvidia` trust).

**The record against the GPU evidence.** The run record names the GPU it ran on
(`gpu.sku`, `gpu.driver`). `record_differences` compares them with every GPU evidence the
appraisal accepted (a lone `nvidia` quote, or each composite device): the driver version
the GPU signed (SPDM opaque data) and the GPU name the evidence gives (NVML's, the same
source as the record's SKU). A field the record leaves missing, `none` or `unknown` is
not compared. A difference contradicts the record's configuration.

`device_facts` gives the appraisal policy its `devices` input: one member per device,
`cpu` (the CPU quote) and `gpu0`, `gpu1`, ... in index order, from which the policy
derives each device's own trustworthiness vector (the EAR's per-device submods).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bytereplay.eat import device_gpu_nonce
from bytereplay.errors import BindingError, BytereplayError
from bytereplay.record import Gpu
from verifier.tee.base import QuoteVerification, SchemeTrust

OK, UNBOUND, FAILED = "ok", "unbound", "failed"
NOT_RECORDED = (None, "", "none", "unknown")


@dataclass(frozen=True)
class Device:
    """One GPU of composite evidence, as appraised."""

    name: str  # gpu0, gpu1, ...
    status: str  # ok | unbound | failed
    detail: str  # "ok" or why not
    verification: QuoteVerification | None = None
    gpu_name: str | None = None  # the GPU name the evidence gives (NVML)
    facts: dict[str, Any] = field(default_factory=dict)  # the GPU facts (driver, VBIOS, ...)


def verify_gpus(items: list[dict[str, Any]], nonce: bytes, record_digest: str,
                trusts: Mapping[str, SchemeTrust], at: datetime) -> list[Device]:
    """Each GPU evidence checked for its derived SPDM nonce (see the module doc)."""
    from verifier.tee.nvidia import verify_device

    out: list[Device] = []
    trust = trusts.get("nvidia")
    for i, item in enumerate(items):
        name = f"gpu{i}"
        gpu_name = item.get("gpu") if isinstance(item.get("gpu"), str) else None
        if item.get("provider") != "nvidia":
            out.append(Device(name, FAILED, f"GPU evidence from an unknown provider "
                                            f"{item.get('provider')!r}", gpu_name=gpu_name))
            continue
        if trust is None or not trust.configured:
            out.append(Device(name, FAILED, "nvidia evidence is refused: this verifier has no "
                                            "trust configuration for nvidia (config tee.nvidia)",
                              gpu_name=gpu_name))
            continue
        try:
            q = verify_device(item, device_gpu_nonce(nonce, record_digest, i), trust, at)
        except BindingError as exc:
            out.append(Device(name, UNBOUND, exc.detail, gpu_name=gpu_name))
        except BytereplayError as exc:
            out.append(Device(name, FAILED, exc.detail, gpu_name=gpu_name))
        else:
            out.append(Device(name, OK, OK, q, gpu_name, dict(q.ear_facts.get("gpu", {}))))
    return out


def record_differences(gpu: Gpu | None, evidence: list[tuple[str | None, dict[str, Any]]]
                       ) -> tuple[int, list[str]]:
    """How many fields could be compared, and where the record's GPU contradicts accepted
    GPU evidence ((GPU name, GPU facts) per device), in words."""
    if gpu is None:
        return 0, []
    compared, out = 0, []
    for i, (name, facts) in enumerate(evidence):
        signed_driver = facts.get("driver_version")
        if gpu.driver not in NOT_RECORDED and signed_driver not in NOT_RECORDED:
            compared += 1
            if gpu.driver != signed_driver:
                out.append(f"gpu.driver: the record says {gpu.driver!r}, GPU {i}'s evidence "
                           f"{signed_driver!r}")
        if gpu.sku not in NOT_RECORDED and name not in NOT_RECORDED:
            compared += 1
            if gpu.sku != name:
                out.append(f"gpu.sku: the record says {gpu.sku!r}, GPU {i}'s evidence {name!r}")
    return compared, out


def device_facts(tee: dict[str, Any] | None, quote_status: str,
                 devices: list[Device]) -> dict[str, Any]:
    """The policy's `devices` input (see the module doc); empty for a lone quote."""
    if not devices:
        return {}
    cpu: dict[str, Any] = {"kind": "cpu", "status": OK if quote_status == OK else FAILED,
                           "simulated": bool(tee and tee.get("simulated")),
                           "hardware": bool(tee and tee.get("hardware")),
                           "tcb_up_to_date": bool(tee and tee.get("tcb_up_to_date"))}
    out = {"cpu": cpu}
    for d in devices:
        q = d.verification
        out[d.name] = {"kind": "gpu", "status": d.status, "simulated": False,
                       "hardware": bool(q is not None and q.hardware),
                       "tcb_up_to_date": True}
    return out


def device_tee(d: Device, test_root: bool) -> dict[str, Any]:
    """A GPU's `bytereplay.tee` in its EAR submod: the common facts and its GPU facts."""
    q = d.verification
    return {"provider": "nvidia", "scheme": "nvidia", "simulated": False,
            "hardware": bool(q is not None and q.hardware),
            "chain_ok": bool(q is not None and q.chain_ok), "tcb_status": None,
            "tcb_up_to_date": True, "advisories": [], "collateral": {},
            "root": q.root if q is not None else None, "test_root": test_root,
            "status": d.status, "gpu": d.facts or None}
