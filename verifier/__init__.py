"""The verifier role: nonces, appraisal, replay with verdicts, signed attestation results (EAR).

`verifier.pipeline.Verifier` is the in-process appraiser; `verifier.service.create_app`
wraps it in the sidecar HTTP service; `verifier.cli.cmd_verify` is `bytereplay verify`.
Importing this package does not import torch; replay loads the attester's engine lazily.
"""
