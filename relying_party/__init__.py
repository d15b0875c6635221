"""The relying party: appraise an attestation result (EAR) for one model output.

    from relying_party import evaluate
    decision = evaluate(ear_jwt, output=output_bytes, policy="default",
                        verifier_keys="https://verifier.internal/.well-known/jwks.json")
    if decision.allow:
        ...

This package imports only `bytereplay` (and regopy): a relying app installs no torch.
"""

from __future__ import annotations

from bytereplay.errors import PolicyError
from relying_party.decision import AppCheckResult, Decision, PolicyRef
from relying_party.evaluate import AppCheck, evaluate, key_set
from relying_party.policy import SHIPPED, Policy, load_policy

__all__ = [
    "SHIPPED",
    "AppCheck",
    "AppCheckResult",
    "Decision",
    "Policy",
    "PolicyError",
    "PolicyRef",
    "evaluate",
    "key_set",
    "load_policy",
]
