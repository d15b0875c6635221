"""Fetching what production fetches (JWKS, RIMs, OCSP answers): one bounded HTTP call and
one disk cache, for every role.

- `http_get(url, what, limit)` and `http_post(url, body, content_type, what, limit)`:
  `http://` or `https://` only, at most `limit` bytes read, a timeout; anything wrong
  (another scheme, unreachable, a non-2xx answer, a larger body) is the given typed error
  (`QuoteError` by default) naming `what` and the URL. Never called by tests except
  against loopback servers.
- `cache_path(folder, kind, key)`: where `key` (a URL or an id) is cached: a file under
  `folder/kind/` named by the SHA-256 of the key, so no outside text becomes a path.
- `read_cache(path, limit)` (None when absent or unreadable) and `write_cache(path, data)`
  (written to a temporary file and renamed, so a reader never sees half a file).
- `cached_get(url, what, limit, cache)`: the cached copy when there is one, else the
  answer, written to the cache. For content that is verified after reading (signed
  RIMs, certificates), where a stale copy cannot pass a check it should fail.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import urllib.parse
from pathlib import Path

import requests

from bytereplay.errors import BytereplayError, QuoteError

TIMEOUT_S = 10.0


def _check_url(url: str, what: str, error: type[BytereplayError]) -> None:
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise error(f"{what} URL {url!r} is not http(s)")


def _read(resp: requests.Response, url: str, what: str, limit: int,
          error: type[BytereplayError]) -> bytes:
    with resp:
        if not 200 <= resp.status_code < 300:
            raise error(f"{what} at {url} answered {resp.status_code}")
        body = b""
        for chunk in resp.iter_content(65536):
            body += chunk
            if len(body) > limit:
                raise error(f"{what} from {url} is over {limit} bytes")
    return body


def http_get(url: str, what: str, limit: int, *, timeout: float = TIMEOUT_S,
             error: type[BytereplayError] = QuoteError) -> bytes:
    """The body of GET `url` (see the module doc)."""
    _check_url(url, what, error)
    try:
        resp = requests.get(url, timeout=timeout, stream=True)
        return _read(resp, url, what, limit, error)
    except requests.RequestException as exc:
        raise error(f"{what} at {url} could not be reached: {type(exc).__name__}") from None


def http_post(url: str, body: bytes, content_type: str, what: str, limit: int, *,
              timeout: float = TIMEOUT_S, error: type[BytereplayError] = QuoteError) -> bytes:
    """The body of POST `body` to `url` (see the module doc)."""
    _check_url(url, what, error)
    try:
        resp = requests.post(url, data=body, headers={"Content-Type": content_type},
                             timeout=timeout, stream=True)
        return _read(resp, url, what, limit, error)
    except requests.RequestException as exc:
        raise error(f"{what} at {url} could not be reached: {type(exc).__name__}") from None


def cache_path(folder: Path, kind: str, key: str) -> Path:
    return folder / kind / hashlib.sha256(key.encode()).hexdigest()


def read_cache(path: Path, limit: int) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return None
    return data if len(data) <= limit else None


def write_cache(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def cached_get(url: str, what: str, limit: int, cache: Path | None, *,
               error: type[BytereplayError] = QuoteError) -> bytes:
    """GET `url` through the disk cache file `cache` (None: no cache)."""
    if cache is not None:
        found = read_cache(cache, limit)
        if found is not None:
            return found
    body = http_get(url, what, limit, error=error)
    if cache is not None:
        write_cache(cache, body)
    return body
