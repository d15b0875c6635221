"""A client for Veraison's challenge-response verification API (on `requests`).

Works with bytereplay's verifier (`verifier.veraison_api`) and with a Veraison
deployment alike:

    client = VeraisonClient("https://verifier.example", ear_keys=KeySet(Path("ear.jwks")))
    session = client.new_session()                 # or nonce_size=16 / nonce=b"..."
    ... the attester binds session.nonce into its Evidence ...
    done = client.submit(session, evidence, "application/eat+jwt")
    result = client.verify_result(done)            # the EAR, signature checked
    client.delete(done)

- `discovery()` reads `/.well-known/veraison/verification`; `new_session` posts to the
  `newChallengeResponseSession` endpoint it names (the documented path when the
  document cannot be read), and resolves the `Location` header against that URL.
- `submit` posts the Evidence with its media type; a `202` (a verifier that appraises
  asynchronously) is polled with GET until the session is `complete` or `failed`.
- Nonces are read as base64url, unpadded (bytereplay) or padded (Go's encoder).
- Every HTTP failure is a typed error from `bytereplay.errors`, by status: 400
  `UsageError`, 404 `NotFoundError`, 406 `NotAcceptableError`, 409 `ConflictError`, 413
  `TooLargeError`, 415 `MediaTypeError`, 503 `NotReadyError`; anything else, a
  malformed answer or no answer at all, `UpstreamError` (with `upstream_status`). The
  server's problem+json `detail` is quoted in the message.

Trust: the EAR is verified only against keys the caller chose, never against a key
taken from the answer it checks. `ear_keys` is a pinned `KeySet` (a JWKS file, URL or
dict). The discovery document's `ear-verification-key` is used only when the caller
opts in: `discovery_key_thumbprint` pins it (its RFC 7638 thumbprint must match), or
`trust_discovery_key=True` accepts it as published (trust on first use: whoever
answers the discovery request is then trusted to sign results). With neither,
`verify_result` refuses (`SignatureError`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from bytereplay import ear
from bytereplay.ar4si import STATUS_RANK
from bytereplay.encoding import b64url_decode, b64url_encode, strict_json_loads
from bytereplay.errors import (
    BytereplayError,
    ConflictError,
    EncodingError,
    MediaTypeError,
    NotAcceptableError,
    NotFoundError,
    NotReadyError,
    SignatureError,
    TooLargeError,
    UpstreamError,
    UsageError,
)
from bytereplay.jwks import KeySet
from bytereplay.keys import SIGNING_ALGS, jwk_thumbprint

SESSION_MEDIA = "application/vnd.veraison.challenge-response-session+json"
DISCOVERY_MEDIA = "application/vnd.veraison.discovery+json"
DISCOVERY_PATH = "/.well-known/veraison/verification"
NEW_SESSION_PATH = "/challenge-response/v1/newSession"
NEW_SESSION_KEY = "newChallengeResponseSession"
STATES = ("waiting", "processing", "complete", "failed")
MAX_ANSWER_BYTES = 8 << 20  # a session echoes the Evidence
_ERRORS: dict[int, type[BytereplayError]] = {
    400: UsageError, 404: NotFoundError, 406: NotAcceptableError, 409: ConflictError,
    413: TooLargeError, 415: MediaTypeError, 503: NotReadyError,
}


@dataclass(frozen=True)
class Discovery:
    """The verification service's discovery document, as published (not trusted)."""

    ear_key: dict[str, Any] | None
    media_types: list[str]
    schemes: list[str]
    version: str | None
    state: str | None
    endpoints: dict[str, str]
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Session:
    """A challenge-response session as the verifier last answered it."""

    url: str
    status: str
    nonce: bytes
    expiry: str
    accept: list[str]
    evidence: dict[str, Any] | None = None
    result: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class VerifiedResult:
    """An EAR whose signature verified: its claims, and for bytereplay's submod the
    normalised `Ear` (None for other verifiers' EARs, e.g. Veraison's own schemes)."""

    claims: dict[str, Any]
    ear: ear.Ear | None

    @property
    def status(self) -> str | None:
        """The worst submod status ('ear.status' or 'ear_status')."""
        if self.ear is not None:
            return self.ear.status
        ranks = STATUS_RANK
        found = [s for sub in self.claims.get("submods", {}).values() if isinstance(sub, dict)
                 for s in (sub.get("ear.status"), sub.get("ear_status")) if s in ranks]
        return max(found, key=lambda s: ranks[s]) if found else None


def _decode_nonce(text: Any) -> bytes:
    if not isinstance(text, str) or not text:
        raise UpstreamError("the session's nonce is not base64url text")
    stripped = text.rstrip("=")
    try:
        return b64url_decode(stripped)
    except EncodingError:
        raise UpstreamError("the session's nonce is not base64url text") from None


class VeraisonClient:
    """One verifier at `base_url` (scheme, host and any path prefix)."""

    def __init__(self, base_url: str, *, timeout: float = 60.0,
                 http: requests.Session | None = None, ear_keys: KeySet | None = None,
                 discovery_key_thumbprint: str | None = None,
                 trust_discovery_key: bool = False,
                 algorithms: tuple[str, ...] = SIGNING_ALGS,
                 poll_interval: float = 1.0, sleep: Callable[[float], None] = time.sleep
                 ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise UsageError(f"the verifier URL must be http:// or https://, got {base_url!r}")
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout, self.algorithms = timeout, algorithms
        self.http = http or requests.Session()
        self.ear_keys = ear_keys
        self.discovery_key_thumbprint = discovery_key_thumbprint
        self.trust_discovery_key = trust_discovery_key
        self.poll_interval, self._sleep = poll_interval, sleep
        self._discovery: Discovery | None = None

    # -- HTTP ---------------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return urljoin(self.base_url, path.lstrip("/")) if not path.startswith("http") \
            else path

    def _request(self, method: str, url: str, *, accept: str | None,
                 ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}) or {})
        if accept is not None:
            headers["Accept"] = accept
        try:
            resp = self.http.request(method, url, headers=headers, timeout=self.timeout,
                                     allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise UpstreamError(f"{method} {url}: no answer ({type(exc).__name__}: {exc})") \
                from None
        if len(resp.content) > MAX_ANSWER_BYTES:
            raise UpstreamError(f"{method} {url}: answer over {MAX_ANSWER_BYTES} bytes",
                                resp.status_code)
        if resp.status_code in ok:
            return resp
        raise self._error(method, url, resp)

    @staticmethod
    def _error(method: str, url: str, resp: requests.Response) -> BytereplayError:
        detail = resp.reason or ""
        try:
            doc = strict_json_loads(resp.content, max_bytes=64 * 1024)
            if isinstance(doc, dict) and isinstance(doc.get("detail"), str):
                detail = doc["detail"][:500]
        except BytereplayError:
            pass
        text = f"{method} {url}: HTTP {resp.status_code}" + (f": {detail}" if detail else "")
        cls = _ERRORS.get(resp.status_code)
        if cls is None:
            return UpstreamError(text, resp.status_code)
        err = cls(text)
        if resp.status_code == 415 and resp.headers.get("Accept"):
            err.detail += f" (the verifier accepts: {resp.headers['Accept']})"
        return err

    def _json(self, resp: requests.Response) -> dict[str, Any]:
        try:
            doc = strict_json_loads(resp.content, max_bytes=MAX_ANSWER_BYTES)
        except BytereplayError as exc:
            raise UpstreamError(f"{resp.url}: the answer is not JSON ({exc.detail})",
                                resp.status_code) from None
        if not isinstance(doc, dict):
            raise UpstreamError(f"{resp.url}: the answer is not a JSON object", resp.status_code)
        return doc

    # -- the API ------------------------------------------------------------------------

    def discovery(self, *, refresh: bool = False) -> Discovery:
        """The discovery document (read once, then remembered)."""
        if self._discovery is not None and not refresh:
            return self._discovery
        resp = self._request("GET", self._url(DISCOVERY_PATH), ok=(200,),
                             accept=f"{DISCOVERY_MEDIA}, application/json;q=0.5")
        doc = self._json(resp)
        key = doc.get("ear-verification-key")
        endpoints = doc.get("api-endpoints") or {}
        if (key is not None and not isinstance(key, dict)) or not isinstance(endpoints, dict):
            raise UpstreamError("the discovery document is malformed")
        self._discovery = Discovery(
            ear_key=key, media_types=[m for m in doc.get("media-types") or [] if
                                      isinstance(m, str)],
            schemes=[s for s in doc.get("attestation-schemes") or [] if isinstance(s, str)],
            version=doc.get("version") if isinstance(doc.get("version"), str) else None,
            state=doc.get("service-state") if isinstance(doc.get("service-state"), str)
            else None,
            endpoints={k: v for k, v in endpoints.items() if isinstance(v, str)}, raw=doc)
        return self._discovery

    def new_session_url(self) -> str:
        """The newSession URL the discovery document names (the documented path if the
        document is unavailable or names none)."""
        try:
            path = self.discovery().endpoints.get(NEW_SESSION_KEY, NEW_SESSION_PATH)
        except (UpstreamError, NotFoundError, NotAcceptableError):
            path = NEW_SESSION_PATH
        return self._url(path)

    def new_session(self, *, nonce_size: int | None = None,
                    nonce: bytes | None = None) -> Session:
        """A new session: the verifier's nonce (`nonce_size` bytes, or its default), or
        the caller's `nonce`."""
        if nonce is not None and nonce_size is not None:
            raise UsageError("give a nonce or a nonce size, not both")
        params: dict[str, str] = {}
        if nonce_size is not None:
            params["nonceSize"] = str(int(nonce_size))
        if nonce is not None:
            params["nonce"] = b64url_encode(nonce)
        url = self.new_session_url()
        resp = self._request("POST", url, params=params, ok=(201,), accept=SESSION_MEDIA)
        location = resp.headers.get("Location")
        if not location:
            raise UpstreamError("newSession answered 201 without a Location", 201)
        session = self._session(urljoin(url, location), self._json(resp))
        if nonce is not None and session.nonce != nonce:
            raise UpstreamError("the verifier's session carries another nonce than the one "
                                "given", 201)
        return session

    def submit(self, session: Session | str, evidence: bytes | str, media_type: str, *,
               accept: str | None = None, wait: float = 300.0) -> Session:
        """Post `evidence` (`media_type`, e.g. application/eat+jwt) to the session; wait
        up to `wait` seconds for an asynchronous verifier. `accept` adds media ranges to
        the Accept header (e.g. an EAR profile request)."""
        url = session.url if isinstance(session, Session) else session
        body = evidence.encode("ascii") if isinstance(evidence, str) else evidence
        resp = self._request("POST", url, data=body, ok=(200, 202),
                             headers={"Content-Type": media_type},
                             accept=SESSION_MEDIA + (f", {accept}" if accept else ""))
        done = self._session(url, self._json(resp))
        deadline = time.monotonic() + wait
        while done.status == "processing":
            if time.monotonic() > deadline:
                raise UpstreamError(f"the session {url} is still processing after {wait} s")
            self._sleep(self.poll_interval)
            done = self.get(url)
        return done

    def get(self, session: Session | str) -> Session:
        url = session.url if isinstance(session, Session) else session
        resp = self._request("GET", url, ok=(200,), accept=SESSION_MEDIA)
        return self._session(url, self._json(resp))

    def delete(self, session: Session | str) -> None:
        url = session.url if isinstance(session, Session) else session
        self._request("DELETE", url, ok=(200, 204), accept=None)

    @staticmethod
    def _session(url: str, doc: Mapping[str, Any]) -> Session:
        status = doc.get("status")
        if status not in STATES:
            raise UpstreamError(f"the session's status {status!r} is not one of {STATES}")
        accept = doc.get("accept")
        if not isinstance(accept, list) or not all(isinstance(a, str) for a in accept):
            accept = []
        expiry = doc.get("expiry")
        evidence = doc.get("evidence")
        result = doc.get("result")
        if result is not None and not isinstance(result, str):
            raise UpstreamError("the session's result is not text (a compact JWT)")
        return Session(url=url, status=str(status), nonce=_decode_nonce(doc.get("nonce")),
                       expiry=expiry if isinstance(expiry, str) else "", accept=accept,
                       evidence=evidence if isinstance(evidence, dict) else None,
                       result=result, raw=dict(doc))

    # -- the EAR ------------------------------------------------------------------------

    def _keys(self) -> KeySet:
        if self.ear_keys is not None:
            return self.ear_keys
        if self.discovery_key_thumbprint is None and not self.trust_discovery_key:
            raise SignatureError(
                "no EAR verification key: pin a JWKS (ear_keys), pin the discovery key's "
                "thumbprint, or opt in to trusting the discovery document's key")
        key = self.discovery().ear_key
        if key is None:
            raise SignatureError("the discovery document publishes no ear-verification-key")
        if self.discovery_key_thumbprint is not None and \
                jwk_thumbprint(key) != self.discovery_key_thumbprint:
            raise SignatureError("the discovery document's EAR key is not the pinned one "
                                 f"(thumbprint {jwk_thumbprint(key)})")
        return KeySet({"keys": [key]})

    def verify_result(self, session: Session | str) -> VerifiedResult:
        """The session's EAR, its signature checked against the caller's trusted keys;
        for bytereplay's submod also normalised (`bytereplay.ear.normalise`)."""
        token = session.result if isinstance(session, Session) else session
        if not token:
            raise UsageError("the session has no result yet")
        claims = self._keys().verify(token, algorithms=self.algorithms, require=("iat",),
                                     max_bytes=ear.MAX_EAR_BYTES)
        subs = claims.get("submods")
        mine = isinstance(subs, dict) and ear.SUBMOD in subs
        return VerifiedResult(claims=claims, ear=ear.normalise(claims) if mine else None)
