"""Request and answer schemas of the verifier's routes, for `/openapi.json` (see
`bytereplay.web.apidocs`)."""

from __future__ import annotations

from typing import Any

from bytereplay.ar4si import AFFIRMING, CONTRAINDICATED, NONE, WARNING
from bytereplay.claims import INCONCLUSIVE, MATCH, MATCH_PORTABLE, MISMATCH, NOT_RUN
from bytereplay.eat import MEDIA_CWT, MEDIA_JWT, NONCE_MAX, NONCE_MIN
from bytereplay.web.apidocs import Schema

STATUSES = [AFFIRMING, WARNING, CONTRAINDICATED, NONE]
VERDICTS = [MATCH, MATCH_PORTABLE, MISMATCH, INCONCLUSIVE, NOT_RUN]

CHALLENGE_REQUEST: Schema = {
    "title": "ChallengeRequest", "type": "object", "additionalProperties": False,
    "properties": {"size": {"type": "integer", "minimum": NONCE_MIN, "maximum": NONCE_MAX,
                            "description": "nonce size in bytes (default: the configured one)"}},
}
CHALLENGE: Schema = {
    "title": "Challenge", "type": "object", "required": ["nonce", "issued_at", "expires_at"],
    "properties": {
        "nonce": {"type": "string", "description": "single-use nonce, unpadded base64url"},
        "issued_at": {"type": "string", "format": "date-time"},
        "expires_at": {"type": "string", "format": "date-time",
                       "description": "pass both times to the attester as `challenge_window`"},
    },
}
VERIFY_JSON: Schema = {
    "title": "VerifyRequest", "type": "object", "additionalProperties": False,
    "required": ["evidence"],
    "properties": {
        "evidence": {"type": "string", "minLength": 1,
                     "description": "the Evidence: a JWT, or a CWT as unpadded base64url "
                                    "(the attester's `evidence` member as it is)"},
        "format": {"type": "string", "enum": ["jwt", "cwt"],
                   "description": "detected when absent"},
        "external_tokens": {"type": "array", "items": {"type": "string"},
                            "description": "JWTs of configured external attestation services"},
    },
}
REPLAY: Schema = {
    "title": "Replay", "type": "object", "required": ["verdict"],
    "description": "the EAR's bytereplay.replay claim",
    "properties": {
        "verdict": {"type": "string", "enum": VERDICTS},
        "reason": {"type": ["string", "null"]},
        "environment_diff": {"type": "array", "items": {
            "type": "object", "properties": {"field": {"type": "string"},
                                             "recorded": {}, "replayed": {}}}},
        "replay_output_hash": {"type": "string"},
        "first_divergent_token": {"type": "integer"},
        "seconds": {"type": "number"},
    },
}
RESULT: Schema = {
    "title": "VerifyResult", "type": "object", "required": ["result", "status", "replay"],
    "properties": {
        "result": {"type": "string",
                   "description": "the EAR, a JWT signed with the key at /.well-known/jwks.json"},
        "result_type": {"type": "string",
                        "description": "the EAR's media type and profile: "
                                       "application/eat+jwt; eat_profile=\"<uri>\""},
        "status": {"type": "string", "enum": STATUSES,
                   "description": "the EAR's overall status (the worst submod's)"},
        "replay": REPLAY,
    },
}
ACCEPTED: Schema = {
    "title": "VerifyAccepted", "type": "object", "required": ["id", "state", "poll"],
    "properties": {"id": {"type": "string"}, "state": {"type": "string", "const": "pending"},
                   "poll": {"type": "string", "description": "GET this path for the result"}},
}
STORED_RESULT: Schema = {
    "title": "StoredResult", "type": "object", "required": ["state"],
    "description": "pending (202), or done with the /v1/verify answer (200), or failed (200)",
    "properties": {"state": {"type": "string", "enum": ["pending", "done", "failed"]},
                   "result": {"type": "string"}, "result_type": {"type": "string"},
                   "status": {"type": "string", "enum": STATUSES},
                   "replay": REPLAY, "detail": {"type": "string"}},
}
EXTERNAL_REQUEST: Schema = {
    "title": "ExternalVerifyRequest", "type": "object", "additionalProperties": False,
    "required": ["token"],
    "properties": {"token": {"type": "string",
                             "description": "the service's JWT, or an NRAS answer as JSON text"},
                   "service": {"type": "string", "description": "name of a configured service"},
                   "nonce": {"type": "string", "description": "NRAS: the GPU nonce (64 hex "
                                                              "digits) the answer must carry"},
                   "report_data": {"type": "string", "description": "ITA: the TDX report "
                                                                    "data (128 hex digits)"}},
}
EXTERNAL_ANSWER: Schema = {
    "title": "ExternalVerifyAnswer", "type": "object", "required": ["service", "claims"],
    "properties": {"service": {"type": "string"}, "claims": {"type": "object"},
                   "mapped": {"type": "object", "description": "NRAS: {gpus, nras_overall}; "
                                                               "ITA: {tdx}; as local "
                                                               "verification names them"}},
}
JWKS: Schema = {
    "title": "JWKS", "type": "object", "required": ["keys"],
    "properties": {"keys": {"type": "array", "items": {"type": "object",
                                                       "description": "a public JWK"}}},
}
INFO: Schema = {
    "title": "VerifierInfo", "type": "object",
    "properties": {name: {"type": "object"} for name in
                   ("ear", "appraisal_policy", "trust", "nonces", "replay",
                    "provisioning", "process")} | {
        "verifier": {"type": "string"}, "external": {"type": "array"},
        "reference_values": {"type": ["object", "null"]},
        "now": {"type": "string", "format": "date-time"}},
}
PROVISIONING_SESSION: Schema = {
    "title": "ProvisioningSession", "type": "object", "required": ["status", "expiry"],
    "properties": {"status": {"type": "string", "enum": ["success", "failed"]},
                   "expiry": {"type": "string", "format": "date-time"},
                   "failure-reason": {"type": "string",
                                      "description": "why the CoRIM was refused: the typed "
                                                     "error's problem id and its detail"}},
}
HEALTH: Schema = {
    "title": "VerifierHealth", "type": "object", "required": ["status", "store"],
    "properties": {"status": {"type": "string", "const": "ok"}, "store": {"type": "string"}},
}


def verify_extra() -> dict[str, Any]:
    """`openapi_extra` of POST /v1/verify: three body forms and the two query flags."""
    flag = {"type": "string", "enum": ["true", "false", "1", "0", "yes", "no", "on", "off"]}
    return {
        "parameters": [
            {"name": "replay", "in": "query", "required": False,
             "schema": flag | {"default": "true"}, "description": "false skips the replay"},
            {"name": "async", "in": "query", "required": False,
             "schema": flag | {"default": "false"},
             "description": "true answers 202 at once; poll the result"},
            {"name": "Accept", "in": "header", "required": False, "schema": {"type": "string"},
             "description": "application/json (the default answer); with "
                            "application/eat+jwt; eat_profile=\"<uri>\" the EAR is written in "
                            "that profile (tag:ietf.org,2026:rats/ear#04 or "
                            "tag:github.com,2023:veraison/ear), and without JSON the answer is "
                            "the bare EAR of that media type; an unknown profile is 406"},
        ],
        "requestBody": {"required": True, "content": {
            MEDIA_JWT: {"schema": {"type": "string",
                                   "description": "the Evidence JWT (compact JWS), ASCII"}},
            MEDIA_CWT: {"schema": {"type": "string", "format": "binary",
                                   "description": "the Evidence CWT (COSE_Sign1 bytes)"}},
            "application/json": {"schema": VERIFY_JSON},
        }},
    }
