"""A signing key that can be shared by replicas and rotated: the key ring.

A ring is named by its key file `P` (e.g. `$BYTEREPLAY_HOME/keys/verifier-ear.pem`, or a
file in a mounted secret shared by every replica). Until the first rotation `P` is the
whole ring: one key, whose `kid` is its RFC 7638 thumbprint, so every process and every
home reading the same file signs with the same `kid`.

`rotate(P, at=..., retire_after=...)` adds a key beside `P` (`<stem>.<kid>.pem`, mode
0600) and writes the manifest `<stem>.ring.json` (atomically, by rename):

    {"keys": [{"kid", "file", "created_at", "retire_at"}, ...]}

The last entry is the current key: new signatures use it. Every older key gets a
`retire_at` (RFC 3339) when it stops being current; the key set published (`jwks(at)`)
holds the current key and every key whose `retire_at` is after `at`, so a relying party
that pinned the JWKS URL verifies results signed before the rotation until then, and
learns the new `kid` through its refetch on an unknown `kid`. A rotation forgets (and
deletes the files of) keys already retired at its time.

Every key file must be mode 0600 (or stricter); a looser one is refused with the path
and the mode, never read. Keys are never logged; only `kid`s are.

A `KeyRing` re-reads the ring when the manifest or `P` changes (checked with one `stat`
at most every `recheck_s` seconds), so every process serving from the same files picks
up a rotation without a restart. A ring that cannot be read at a re-check keeps the keys
it had and logs the error once.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bytereplay.encoding import strict_json_loads
from bytereplay.errors import BytereplayError, KeyConfigError
from bytereplay.keys import (
    DEFAULT_ALG,
    SigningKey,
    generate_private_key,
    load_or_create_key,
    read_private_key,
    write_private_key,
)

log = logging.getLogger("bytereplay.keys")

MANIFEST_SUFFIX = ".ring.json"
_FILE_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,199}")  # no path, no hidden file
MAX_MANIFEST_BYTES = 256 * 1024
DEFAULT_RETIRE_AFTER_S = 86400.0  # longer than any shipped policy's freshness window


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(text: str, where: str) -> float:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if value.tzinfo is None:
            raise KeyConfigError(f"{where}: {text!r} has no UTC offset")
        return value.timestamp()
    except (ValueError, OverflowError):
        raise KeyConfigError(f"{where}: {text!r} is not an RFC 3339 time") from None


def manifest_path(key_file: Path) -> Path:
    return key_file.with_name(key_file.stem + MANIFEST_SUFFIX)


@dataclass(frozen=True)
class RingKey:
    key: SigningKey
    file: str
    created_at: float | None
    retire_at: float | None  # None: not retiring (the current key)

    def published_at(self, at: float) -> bool:
        return self.retire_at is None or self.retire_at > at

    def to_json(self) -> dict[str, Any]:
        return {"kid": self.key.kid, "file": self.file,
                "created_at": rfc3339(self.created_at) if self.created_at is not None else None,
                "retire_at": rfc3339(self.retire_at) if self.retire_at is not None else None}


def _read_manifest(path: Path) -> list[dict[str, Any]]:
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_MANIFEST_BYTES + 1)
    except OSError as exc:
        raise KeyConfigError(f"cannot read the key ring {path}: {exc.strerror}") from None
    try:
        doc = strict_json_loads(data, max_bytes=MAX_MANIFEST_BYTES)
    except BytereplayError as exc:
        raise KeyConfigError(f"{path}: not a key ring: {exc.detail}") from None
    entries = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(entries, list) or not entries or \
            not all(isinstance(e, dict) for e in entries):
        raise KeyConfigError(f"{path}: a key ring is {{\"keys\": [{{kid, file, ...}}, ...]}}")
    return entries


def load_ring(key_file: Path, *, alg: str = DEFAULT_ALG, create: bool = False) -> list[RingKey]:
    """The ring's keys, oldest first, the current one last.

    Without a manifest the ring is `key_file` alone; `create` makes it (mode 0600) when
    it does not exist (a home's own key), otherwise a missing file is an error (a
    configured, shared key is never invented)."""
    manifest = manifest_path(key_file)
    if not manifest.exists():
        if create:
            key = load_or_create_key(key_file, alg)
        elif not key_file.exists():
            raise KeyConfigError(f"signing key file {key_file} does not exist")
        else:
            key = SigningKey.from_private(read_private_key(key_file))
        return [RingKey(key, key_file.name, None, None)]
    out: list[RingKey] = []
    for i, entry in enumerate(_read_manifest(manifest)):
        where = f"{manifest}: keys[{i}]"
        name, kid = entry.get("file"), entry.get("kid")
        if not isinstance(name, str) or not _FILE_NAME.fullmatch(name):
            raise KeyConfigError(f"{where}.file: a plain file name beside the ring")
        key = SigningKey.from_private(read_private_key(key_file.with_name(name)))
        if kid != key.kid:
            raise KeyConfigError(f"{where}: kid {kid!r} is not the key's thumbprint")
        times = []
        for field_name in ("created_at", "retire_at"):
            value = entry.get(field_name)
            if value is not None and not isinstance(value, str):
                raise KeyConfigError(f"{where}.{field_name}: RFC 3339 text or null")
            times.append(parse_time(value, f"{where}.{field_name}") if value else None)
        out.append(RingKey(key, name, times[0], times[1]))
    if out[-1].retire_at is not None:
        raise KeyConfigError(f"{manifest}: the current (last) key has a retire_at")
    if len({k.key.kid for k in out}) != len(out):
        raise KeyConfigError(f"{manifest}: a kid is listed twice")
    return out


@contextlib.contextmanager
def _ring_lock(key_file: Path) -> Iterator[None]:
    """One rotation at a time per ring (an advisory lock beside it)."""
    lock = key_file.with_name(f".{key_file.stem}.lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_manifest(key_file: Path, keys: list[RingKey]) -> None:
    import json

    target = manifest_path(key_file)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    text = json.dumps({"keys": [k.to_json() for k in keys]}, indent=2) + "\n"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, target)  # readers see the old ring or the new one, never half of it


@dataclass(frozen=True)
class Rotation:
    created: bool  # True: there was no key; the first one was made
    current: RingKey
    retiring: tuple[RingKey, ...]
    forgotten: tuple[str, ...]  # kids retired before `at`, dropped with their files


def rotate(key_file: Path, *, alg: str = DEFAULT_ALG, at: float | None = None,
           retire_after: float = DEFAULT_RETIRE_AFTER_S) -> Rotation:
    """Add a new current key to the ring named by `key_file` (see the module text)."""
    if retire_after < 0:
        raise KeyConfigError("the retirement delay must be >= 0 seconds")
    now = time.time() if at is None else at
    key_file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _ring_lock(key_file):
        if not key_file.exists() and not manifest_path(key_file).exists():
            first = load_ring(key_file, alg=alg, create=True)[0]
            return Rotation(True, RingKey(first.key, first.file, now, None), (), ())
        ring = load_ring(key_file)
        new = SigningKey.from_private(generate_private_key(alg))
        name = f"{key_file.stem}.{new.kid}.pem"
        write_private_key(key_file.with_name(name), new.private)
        kept: list[RingKey] = []
        forgotten: list[RingKey] = []
        for k in ring:
            retire = k.retire_at if k.retire_at is not None else now + retire_after
            (kept if retire > now else forgotten).append(
                RingKey(k.key, k.file, k.created_at, retire))
        current = RingKey(new, name, now, None)
        _write_manifest(key_file, [*kept, current])
        for k in forgotten:
            with contextlib.suppress(FileNotFoundError):
                key_file.with_name(k.file).unlink()
        return Rotation(False, current, tuple(kept), tuple(k.key.kid for k in forgotten))


class KeyRing:
    """The signing keys of one ring, re-read when its files change (thread-safe)."""

    def __init__(self, key_file: Path, *, alg: str = DEFAULT_ALG, create: bool = False,
                 recheck_s: float = 1.0, clock: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.key_file, self.alg, self.create = Path(key_file), alg, create
        self.recheck_s, self.clock, self._monotonic = recheck_s, clock, monotonic
        self._lock = threading.Lock()
        # Stamped before reading: a change made while reading is seen at the next re-check.
        self._stamp = self._files_stamp()
        self._keys = load_ring(self.key_file, alg=alg, create=create)
        self._checked = monotonic()
        self._failed_stamp: tuple[Any, ...] | None = None
        self.reloads = 0

    def _files_stamp(self) -> tuple[Any, ...]:
        out: list[Any] = []
        for path in (manifest_path(self.key_file), self.key_file):
            try:
                st = path.stat()
            except FileNotFoundError:
                out.append(None)
            else:
                out.append((st.st_mtime_ns, st.st_ino, st.st_size, st.st_mode))
        return tuple(out)

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the ring if its files changed (at most once per `recheck_s`)."""
        now = self._monotonic()
        if not force and now - self._checked < self.recheck_s:
            return
        with self._lock:
            self._checked = now
            stamp = self._files_stamp()
            if stamp in (self._stamp, self._failed_stamp):
                return
            try:
                keys = load_ring(self.key_file, alg=self.alg, create=self.create)
            except KeyConfigError as exc:
                self._failed_stamp = stamp
                log.error("key ring %s not re-read, keeping kids %s: %s", self.key_file,
                          [k.key.kid for k in self._keys], exc.detail)
                return
            self._keys, self._stamp, self._failed_stamp = keys, stamp, None
            self.reloads += 1
            log.info("key ring %s re-read: current kid %s", self.key_file, keys[-1].key.kid)

    @property
    def current(self) -> SigningKey:
        self.refresh()
        return self._keys[-1].key

    def entries(self) -> list[RingKey]:
        self.refresh()
        return list(self._keys)

    def published(self, at: float | None = None) -> list[SigningKey]:
        """The current key and those not retired at `at` (default now), newest first."""
        when = self.clock() if at is None else at
        return [k.key for k in reversed(self.entries()) if k.published_at(when)]

    def jwks(self, at: float | None = None) -> dict[str, Any]:
        return {"keys": [dict(k.jwk) for k in self.published(at)]}
