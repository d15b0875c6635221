"""The attester's request and answer schemas for its API description (`bytereplay.web.apidocs`)."""

from __future__ import annotations

from bytereplay import request as rq
from bytereplay.web.apidocs import Schema

# -- the attester's bodies --------------------------------------------------------------

def attester_schemas(max_input_chars: int, max_new_tokens: int, *,
                     nonce_required: bool = True) -> dict[str, Schema]:
    """Request and answer schemas of the attester's routes, with this config's limits."""
    from attester.evidence import FORMATS

    window: Schema = {
        "type": "object", "additionalProperties": False,
        "required": ["issued_at", "expires_at"],
        "description": "copy `issued_at` and `expires_at` from the verifier's challenge; "
                       "without it the record's challenge window is missing",
        "properties": {"issued_at": {"type": "string", "format": "date-time"},
                       "expires_at": {"type": "string", "format": "date-time"}},
    }
    decode: Schema = {
        "type": "object", "additionalProperties": False,
        "description": "decode policy; every member optional",
        "properties": {
            "max_new_tokens": {"type": "integer", "minimum": 1, "maximum": max_new_tokens,
                               "default": min(rq.DEFAULT_MAX_NEW_TOKENS, max_new_tokens)},
            "temperature": {"type": "number", "minimum": 0, "maximum": 100, "default": 0,
                            "description": "0 = greedy"},
            "top_k": {"type": "integer", "minimum": 0, "maximum": rq.MAX_TOP_K, "default": 0},
            "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1, "default": 1},
            "seed": {"type": "integer", "minimum": 0, "maximum": rq.MAX_SEED, "default": 0},
            "stop": {"type": "array", "maxItems": rq.MAX_STOP_SEQUENCES, "default": [],
                     "items": {"type": "string", "minLength": 1,
                               "maxLength": rq.MAX_STOP_CHARS}},
            "eos": {"type": "boolean", "default": True, "description": "stop at end-of-sequence"},
        },
    }
    infer_request: Schema = {
        "title": "InferRequest", "type": "object", "additionalProperties": False,
        "required": ["input", "nonce"] if nonce_required else ["input"],
        "properties": {
            "input": {"type": "string", "maxLength": max_input_chars,
                      "description": "the user input"},
            "template": {"type": "string", "maxLength": rq.MAX_TEMPLATE_CHARS,
                         "default": rq.DEFAULT_TEMPLATE,
                         "description": "prompt template; `{input}` marks where the input goes"},
            "decode": decode,
            "nonce": {"type": "string", "pattern": "^[A-Za-z0-9_-]+$",
                      "description": "the verifier's nonce (8..64 bytes), unpadded base64url"
                                     + ("" if nonce_required else
                                        "; without one, the configured Veraison-style "
                                        "verifier's newSession gives it")},
            "challenge_window": window,
            "format": {"type": "string", "enum": list(FORMATS),
                       "description": "Evidence format (default: the configured one)"},
        },
    }
    infer_answer: Schema = {
        "title": "InferAnswer", "type": "object",
        "required": ["output", "output_hash", "evidence", "evidence_format"],
        "properties": {
            "output": {"type": "string", "description": "the exact output text"},
            "output_hash": {"type": "string", "description": "sha-256:<hex> of the UTF-8 output"},
            "evidence": {"type": "string",
                         "description": "the signed EAT: a JWT, or a CWT as unpadded base64url"},
            "evidence_format": {"type": "string", "enum": list(FORMATS)},
            "session": {"type": "string", "format": "uri",
                        "description": "the Veraison session the nonce came from (no nonce "
                                       "in the request, `veraison_verifier` configured): "
                                       "POST the Evidence there"},
            "result": {"type": "string",
                       "description": "the verifier's EAR, when `veraison_submit` is on"},
        },
    }
    info: Schema = {
        "title": "AttesterInfo", "type": "object",
        "properties": {
            "runtime": {"type": "object"}, "model_id": {"type": "string"},
            "model_digest": {"type": "string"}, "container_digest": {"type": ["string", "null"]},
            "environment": {"type": "object", "description": "the determinism-relevant setup"},
            "provider": {"type": "string"}, "simulated": {"type": "boolean"},
            "evidence_key": {"type": "object", "description": "public JWK of the Evidence key"},
            "evidence_keys": {"type": "object", "description": "JWK Set: the current Evidence "
                              "key and the rotated-out ones not yet retired"},
            "evidence_formats": {"type": "array", "items": {"type": "string"}},
            "eat_profile": {"type": "string"}, "verifier_ref": {"type": ["string", "null"]},
            "operator": {"type": ["string", "null"]}, "limits": {"type": "object"},
        },
    }
    health: Schema = {
        "title": "AttesterHealth", "type": "object", "required": ["status"],
        "properties": {"status": {"type": "string", "enum": ["ready", "starting", "failed"]},
                       "detail": {"type": ["string", "null"]}},
    }
    return {"infer_request": infer_request, "infer_answer": infer_answer, "info": info,
            "health": health}


# -- the /docs page -----------------------------------------------------------------------
