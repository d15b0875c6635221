"""A pinned key set from a JWKS dict, file or URL: cached with a TTL, refetched once on an
unknown `kid`, with a cooldown so a flood of bad tokens cannot hammer the source.

A URL source may name a disk cache (`cache_file`): every JWKS fetched is written there,
and when the URL cannot be reached (or answers badly) the last JWKS written is used, so
a restart while the service is down still verifies its tokens."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bytereplay import fetch
from bytereplay.encoding import strict_json_loads
from bytereplay.errors import BytereplayError, SignatureError
from bytereplay.jose import MAX_TOKEN_BYTES, keys_from_jwks, parse_jwt, verify_parsed
from bytereplay.keys import SIGNING_ALGS, PublicKey

MAX_JWKS_BYTES = 256 * 1024


class KeySet:
    """Verification keys from one configured source.

    `source` is a JWKS dict (static), a `Path` to a JWKS file, or an http(s) URL.
    """

    def __init__(
        self,
        source: Mapping[str, Any] | Path | str,
        *,
        ttl: float = 300.0,
        cooldown: float = 30.0,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        cache_file: Path | None = None,
    ) -> None:
        self.source = source
        self.cache_file = cache_file
        self.ttl, self.cooldown, self.timeout, self._clock = ttl, cooldown, timeout, clock
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at: float | None = None
        self._last_refetch: float | None = None
        self._failure: tuple[float, SignatureError] | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def _load(self) -> dict[str, PublicKey]:
        self.fetches += 1
        src = self.source
        if isinstance(src, Mapping):
            return keys_from_jwks(dict(src))
        if isinstance(src, Path) or not str(src).startswith(("http://", "https://")):
            try:
                data: bytes = Path(src).read_bytes()
            except OSError as exc:
                raise SignatureError(f"cannot read key set {src}: {exc.strerror}") from None
        else:
            try:
                data = fetch.http_get(str(src), "key set", MAX_JWKS_BYTES,
                                      timeout=self.timeout, error=SignatureError)
                keys = self._parse(data, src)
            except SignatureError as exc:
                cached = (fetch.read_cache(self.cache_file, MAX_JWKS_BYTES)
                          if self.cache_file is not None else None)
                if cached is None:
                    raise SignatureError(f"cannot fetch key set {src}: {exc.detail}") from None
                return self._parse(cached, self.cache_file)
            if self.cache_file is not None:
                fetch.write_cache(self.cache_file, data)
            return keys
        return self._parse(data, src)

    @staticmethod
    def _parse(data: bytes, src: object) -> dict[str, PublicKey]:
        try:
            doc = strict_json_loads(data, max_bytes=MAX_JWKS_BYTES)
        except BytereplayError as exc:
            raise SignatureError(f"key set {src} is not a JWKS: {exc.detail}") from None
        return keys_from_jwks(doc)

    def _load_remembering_failure(self, now: float) -> dict[str, PublicKey]:
        # An unreachable source fails fast for `cooldown` seconds instead of making
        # every caller wait for its own timeout.
        if self._failure is not None and now - self._failure[0] < self.cooldown:
            raise self._failure[1]
        try:
            keys = self._load()
        except SignatureError as exc:
            self._failure = (now, exc)
            raise
        self._failure = None
        return keys

    def keys(self) -> dict[str, PublicKey]:
        with self._lock:
            now = self._clock()
            if self._fetched_at is None or now - self._fetched_at > self.ttl:
                self._keys = self._load_remembering_failure(now)
                self._fetched_at = now
            return dict(self._keys)

    def key_for(self, kid: str | None) -> dict[str, PublicKey]:
        """The key set, refetched once (subject to the cooldown) if `kid` is unknown."""
        keys = self.keys()
        if kid is None or kid in keys or isinstance(self.source, Mapping):
            return keys
        with self._lock:
            now = self._clock()
            if self._last_refetch is not None and now - self._last_refetch < self.cooldown:
                return dict(self._keys)
            self._last_refetch = now
            self._keys = self._load()
            self._fetched_at = now
            return dict(self._keys)

    def verify(self, token: str, *, algorithms: tuple[str, ...] = SIGNING_ALGS,
               max_bytes: int = MAX_TOKEN_BYTES, **kwargs: Any) -> dict[str, Any]:
        """Parse once, pick the key by `kid` (refetching once if unknown), verify."""
        parsed = parse_jwt(token, max_bytes=max_bytes)
        kid = parsed.header.get("kid")
        keys = self.key_for(kid if isinstance(kid, str) else None)
        return verify_parsed(parsed, keys, algorithms=algorithms, **kwargs)
