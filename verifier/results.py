"""The attestation result: an EAR JWT signed with the verifier's key.

Claims (names from `bytereplay.ear`) inside `submods.bytereplay`, beside the status,
the trustworthiness vector and the appraisal policy id (in the draft-04 profile nested
under `bytereplay.ear.EXTENSION_KEY` without the `bytereplay.` prefix):

    bytereplay.replay        {"verdict", "environment_diff", "reason", ...}
    bytereplay.preflight     the preflight report's summary (`PreflightReport.summary()`)
    bytereplay.output_hash   the attested output hash (the relying party compares bytes)
    bytereplay.record_digest the run record digest
    bytereplay.claim         the sentence the evidence supports (`build_claim`)
    bytereplay.not_covered   what byte agreement never says (`NOT_COVERED`)
    bytereplay.tee           {"provider", "scheme", "simulated", "hardware", "chain_ok",
                              "tcb_status", "tcb_up_to_date", "advisories", "collateral",
                              "root", "test_root"} (`verifier.pipeline.tee_facts`); for
                             NVIDIA also "gpu": {"driver_version", "vbios_version",
                             "chip_sku", "cc_mode", "mismatched_measurements"}
    bytereplay.checks        {step: "ok" | what failed}

Composite evidence adds one submod per device (`cpu`, `gpu0`, `gpu1`, ...), each with its
own status, vector and policy id, carrying its `bytereplay.tee` (a GPU's: the common
facts plus "gpu" and its "status" ok | unbound | failed) and `bytereplay.checks`. The
answer's `status` is the worst of every submod's.

`eat_nonce` echoes the Evidence's nonce (whatever became of it: a refused nonce is
echoed too, and the status says what the verifier made of it).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bytereplay import ear
from bytereplay.claims import NOT_COVERED, build_claim
from bytereplay.keys import SigningKey


@dataclass(frozen=True)
class Result:
    token: str
    claims: dict[str, Any]
    status: str
    replay: dict[str, Any]
    profile: str = ear.PROFILE

    @property
    def media_type(self) -> str:
        """`application/eat+jwt; eat_profile="..."`: what the token is."""
        return ear.media_type(self.profile)

    def to_json(self) -> dict[str, Any]:
        """The `/v1/verify` answer; `result_type` names the EAR's media type and profile."""
        return {"result": self.token, "result_type": self.media_type, "status": self.status,
                "replay": self.replay}


def extensions(
    *,
    replay: dict[str, Any],
    preflight: dict[str, Any] | None,
    missing: list[str],
    output_hash: str | None,
    record_digest: str | None,
    tee: dict[str, Any] | None,
    checks: dict[str, str],
    reasons: tuple[str, ...] = (),
) -> dict[str, Any]:
    simulated = bool(tee and tee.get("simulated"))
    claim = build_claim(
        str(replay["verdict"]),
        missing=missing,
        diff_fields=[str(d["field"]) for d in replay.get("environment_diff", [])],
        reason=replay.get("reason"),
        simulated_tee=simulated,
    )
    ext: dict[str, Any] = {
        ear.REPLAY: replay,
        ear.CLAIM: claim,
        ear.NOT_COVERED_CLAIM: list(NOT_COVERED),
        ear.CHECKS: dict(checks),
    }
    if preflight is not None:
        ext[ear.PREFLIGHT] = preflight
    if output_hash is not None:
        ext[ear.OUTPUT_HASH] = output_hash
    if record_digest is not None:
        ext[ear.RECORD_DIGEST] = record_digest
    if tee is not None:
        ext[ear.TEE] = tee
    if reasons:
        ext[ear.REASONS] = list(reasons)
    return ext


def issue(
    *,
    key: SigningKey,
    vector: dict[str, int],
    nonce: str | None,
    policy_id: str,
    ext: dict[str, Any],
    profile: str = ear.PROFILE,
    raw_evidence: bytes | None = None,
    iat: int | None = None,
    devices: Mapping[str, tuple[Mapping[str, int], dict[str, Any]]] | None = None,
) -> Result:
    """The signed EAR; `devices` (composite evidence): name -> (vector, bytereplay.*
    claims) of each device's own submod."""
    submods = {ear.SUBMOD: ear.Submod(vector=vector, policy_ids=(policy_id,), extensions=ext)}
    for name, (dev_vector, dev_ext) in (devices or {}).items():
        submods[name] = ear.Submod(vector=dev_vector, policy_ids=(policy_id,),
                                   extensions=dev_ext)
    p = ear.profile_of(profile)
    claims = ear.build_ear(nonce=nonce, iat=int(time.time()) if iat is None else iat,
                           submods=submods, profile=p.uri, raw_evidence=raw_evidence)
    status = ear.worst_of(str(sub[p.status]) for sub in claims["submods"].values())
    token = ear.sign_ear(claims, key)
    return Result(token=token, claims=claims, status=status,
                  replay=dict(ext[ear.REPLAY]), profile=p.uri)
