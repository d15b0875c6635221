"""Endorsement provisioning: CoRIM reference values submitted to the verifier, stored.

`POST /endorsement-provisioning/v1/submit` (Veraison's provisioning API) takes a CoRIM
as `application/rim+cbor` (unsigned) or `application/rim+cose` (signed, COSE_Sign1).

- The endpoint is off (404) unless `provisioning_token_file` names a file (mode 0600)
  holding the bearer token; a request without `Authorization: Bearer <that token>` is
  refused (401). The token is compared in constant time and never logged.
- With `provisioning_keys` configured (PEM or JWK public keys of the CoRIM signers),
  only signed CoRIMs are taken, and one of those keys must verify the signature; the
  key is never taken from the message. Without them, unsigned CoRIMs are taken (the
  token is then the only guard) and signed ones are refused (nothing to verify with).
- The CoRIM is read strictly (`bytereplay.corim`); its values become the same
  `ReferenceValues` the JSON file gives (`verifier.reference.parse`) and are added to
  those stored in `$BYTEREPLAY_HOME/reference-values.provisioned.json` (the JSON file's
  form). The file is replaced atomically (temporary file, fsync, rename) under a lock
  file, so a refused CoRIM, or a crash mid-write, changes nothing stored.
- Appraisal uses the configured JSON file's values together with the stored ones
  (`ProvisionedStore.current()` re-reads the file when it changes, so every process
  sharing the home sees a submission).
"""

from __future__ import annotations

import contextlib
import fcntl
import hmac
import os
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from bytereplay import corim
from bytereplay.encoding import compact_json
from bytereplay.errors import (
    AuthError,
    CorimError,
    KeyConfigError,
    NotFoundError,
    StoreUnavailable,
    UsageError,
)
from bytereplay.keys import PublicKey, read_public_key
from verifier import reference as reference_values
from verifier.reference import ReferenceValues

SESSION_MEDIA = "application/vnd.veraison.provisioning-session+json"
CORIM_MEDIA = (corim.MEDIA_CORIM, corim.MEDIA_SIGNED_CORIM)
MAX_TOKEN_BYTES = 4096
MIN_TOKEN_CHARS = 16


def read_token(path: Path) -> str:
    """The bearer token in `path` (surrounding whitespace stripped): the file must be
    mode 0600 or stricter and hold at least 16 printable ASCII characters."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        data = path.read_bytes()[:MAX_TOKEN_BYTES + 1]
    except OSError as exc:
        raise KeyConfigError(f"cannot read provisioning token {path}: {exc.strerror}") from None
    if mode & 0o077:
        raise KeyConfigError(f"{path} is readable by others (mode {mode:o}); expected 0600")
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise KeyConfigError(f"{path}: the provisioning token is ASCII text") from None
    if not MIN_TOKEN_CHARS <= len(token) <= MAX_TOKEN_BYTES or not token.isprintable() \
            or " " in token:
        raise KeyConfigError(f"{path}: the provisioning token is {MIN_TOKEN_CHARS}.."
                             f"{MAX_TOKEN_BYTES} printable characters without spaces")
    return token


class ProvisionedStore:
    """The provisioned reference values in one JSON file, re-read when it changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None
        self._values = ReferenceValues()

    def _stamp(self) -> tuple[int, int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def current(self) -> ReferenceValues:
        """What is stored now (nothing stored: values that claim nothing). A stored file
        that cannot be read is StoreUnavailable (503), never read as "no values"."""
        stamp = self._stamp()
        with self._lock:
            if stamp != self._seen:
                try:
                    self._values = reference_values.load(self.path) if stamp else ReferenceValues()
                except UsageError as exc:
                    raise StoreUnavailable(f"the provisioned reference values: {exc.detail}") \
                        from None
                self._seen = stamp
            return self._values

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def add(self, values: ReferenceValues) -> ReferenceValues:
        """Store the union of what is stored and `values`, atomically; returns it."""
        with self._exclusive():
            self._seen = None  # read it afresh under the lock
            stored = self.current()
            merged = stored.union(values)
            doc = {"comment": "reference values provisioned as CoRIM "
                              "(POST /endorsement-provisioning/v1/submit); written by the "
                              "verifier", **merged.document()}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".refvals-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(compact_json(doc, sort_keys=True))
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, self.path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return self.current()


class Provisioner:
    """The provisioning endpoint's guard and its CoRIM reader, over one store."""

    def __init__(self, token_file: Path | None, key_files: Sequence[Path],
                 store: ProvisionedStore) -> None:
        self._token = read_token(token_file) if token_file is not None else None
        self.keys: tuple[PublicKey, ...] = tuple(read_public_key(p) for p in key_files)
        self.store = store

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def authorize(self, authorization: str | None) -> None:
        """404 while the endpoint is off; 401 unless the header is `Bearer <token>`."""
        if self._token is None:
            raise NotFoundError("endorsement provisioning is off: no provisioning_token_file "
                                "is configured")
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
                given.strip().encode("utf-8", "surrogateescape"), self._token.encode("ascii")):
            raise AuthError("a bearer token is required for endorsement provisioning "
                            "(Authorization: Bearer <token>)")

    def submit(self, data: bytes, media_type: str) -> corim.Corim:
        """Read, check and store one CoRIM; a refusal (a typed error) stores nothing."""
        if self.keys and media_type != corim.MEDIA_SIGNED_CORIM:
            raise CorimError(f"this verifier takes only signed CoRIMs "
                             f"({corim.MEDIA_SIGNED_CORIM}): provisioning_keys is configured")
        read = corim.read(data, self.keys, media_type=media_type)
        values = reference_values.parse(read.values, f"corim:{read.id}")
        if not values.configured:
            raise CorimError("the CoRIM holds no reference values")
        self.store.add(values)
        return read
