"""Nonces and async results, behind one store interface: SQLite (default) or Redis.

A nonce is issued with an expiry and consumed atomically on first use:

- SQLite: one `UPDATE ... SET used=1 WHERE nonce=? AND used=0 AND expires>?`; only the
  caller whose statement changed the row wins. WAL mode, one connection per thread, so
  threads and processes sharing the file race safely; a nonce used before a restart
  stays used after it. A statement that finds the file locked by another process is
  retried after 50 us, doubling up to 5 ms, for up to 30 s (SQLite's own busy handler
  sleeps 1 ms at least, then longer: on an event loop that is a stall for every
  request); each statement is its own transaction, so a retried one had no effect.
- Redis: a Lua script reads, checks the expiry, deletes the nonce and leaves a `used`
  tombstone in one atomic step, so replicas sharing the server race safely. Keys carry
  a `PX` expiry, so Redis forgets them on its own.

A second use, an unknown nonce and an expired one are each refused with
`NonceRefused(reason)`, reason one of `REASONS`.

A nonce may also be given by the client (`register`, the Veraison session API's
`?nonce=`): an unknown one is stored as issued now; one this store issued and that is
still fresh is taken as it is (its window unchanged); a used or expired one is refused.

Challenge-response sessions (`verifier.veraison_api`) live beside their nonce, in the
same store, and expire with it: a session row/key holds its state (`waiting`,
`processing`, `complete`, `failed`) and its JSON document. `claim_session` moves a
session from `waiting` to `processing` atomically, so of two submissions to one
session exactly one is appraised, whichever process of a fleet receives them.

Async results are written twice: a `pending` marker when the job is accepted and the
whole result, in one write, when it completes. A reader sees one or the other, never
a half-written result.
"""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from bytereplay.eat import NONCE_DEFAULT, NONCE_MAX, NONCE_MIN
from bytereplay.encoding import b64url_encode
from bytereplay.errors import NonceError, UsageError

if TYPE_CHECKING:
    from bytereplay.record import ChallengeWindow

UNKNOWN, REUSED, EXPIRED = "unknown", "reused", "expired"
REASONS = (UNKNOWN, REUSED, EXPIRED)
PENDING, DONE = "pending", "done"
SESSION_WAITING, SESSION_PROCESSING = "waiting", "processing"
SESSION_COMPLETE, SESSION_FAILED = "complete", "failed"
# How long a consumed or expired nonce is remembered, so a late reuse reads as
# "reused"/"expired" rather than "unknown" (it is refused either way).
TOMBSTONE_S = 3600.0
GC_EVERY = 512
BUSY_TIMEOUT_S = 30.0

Clock = Callable[[], float]


class NonceRefused(NonceError):
    """A nonce that cannot be consumed: `reason` is unknown, reused or expired."""

    MESSAGES: ClassVar[dict[str, str]] = {
        UNKNOWN: "nonce was not issued by this verifier (or was forgotten after expiry)",
        REUSED: "nonce was already used: each nonce is accepted once",
        EXPIRED: "nonce expired before the Evidence arrived",
    }

    def __init__(self, reason: str) -> None:
        super().__init__(self.MESSAGES[reason])
        self.reason = reason


def rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class IssuedNonce:
    nonce: bytes
    issued_at: float
    expires_at: float

    @property
    def text(self) -> str:
        return b64url_encode(self.nonce)

    def to_json(self) -> dict[str, str]:
        return {"nonce": self.text, "issued_at": rfc3339(self.issued_at),
                "expires_at": rfc3339(self.expires_at)}


WINDOW_OK, WINDOW_DIFFERS, WINDOW_MISSING = "ok", "differs", "missing"


def _seconds(text: str) -> int:
    """Whole seconds since the epoch of an RFC 3339 time (the record parser checked it)."""
    return math.floor(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


def compare_window(window: ChallengeWindow | None, issued: IssuedNonce) -> tuple[str, str]:
    """Whether a run record's challenge window is the one its nonce was issued with, to
    the second (the challenge answer gives whole seconds; any offset may be written).
    Returns the fact (`ok`, `differs`, `missing`) and the check text."""
    if window is None or window.issued_at is None or window.expires_at is None:
        return WINDOW_MISSING, "not checked: the run record lacks its challenge window"
    recorded = (window.issued_at, window.expires_at)
    actual = (rfc3339(issued.issued_at), rfc3339(issued.expires_at))
    if [_seconds(t) for t in recorded] == [_seconds(t) for t in actual]:
        return WINDOW_OK, WINDOW_OK
    return WINDOW_DIFFERS, (
        f"differs: the run record says the challenge was issued at {recorded[0]} and expires "
        f"at {recorded[1]}; this verifier issued the nonce at {actual[0]}, expiring {actual[1]}")


class Store(Protocol):
    """Nonces and async results. Every method is safe to call from many threads."""

    kind: str

    def issue(self, size: int = NONCE_DEFAULT, ttl: float | None = None) -> IssuedNonce: ...

    def consume(self, nonce: bytes) -> IssuedNonce:
        """Mark `nonce` used; raises `NonceRefused` unless this call is its first use."""
        ...

    def peek(self, nonce: bytes) -> str | None:
        """'fresh', a refusal reason, or None when this store never saw it (no change)."""
        ...

    def register(self, nonce: bytes, ttl: float | None = None) -> IssuedNonce:
        """Store a client-given nonce as issued (see the module text); `NonceRefused`
        when it was used or has expired."""
        ...

    def put_session(self, session_id: str, doc: dict[str, Any], expires_at: float) -> None: ...

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        """The session's document with its `status`; None when unknown or expired."""
        ...

    def claim_session(self, session_id: str) -> str | None:
        """Move a `waiting` session to `processing`; returns the state it was in (so
        `waiting` means this call claimed it), None when unknown or expired."""
        ...

    def update_session(self, session_id: str, status: str, doc: dict[str, Any]) -> None: ...

    def delete_session(self, session_id: str) -> bool: ...

    def put_pending(self, result_id: str) -> None: ...

    def put_result(self, result_id: str, doc: dict[str, Any]) -> None: ...

    def get_result(self, result_id: str) -> dict[str, Any] | None: ...

    def ping(self) -> bool: ...

    def close(self) -> None: ...


def new_nonce(size: int) -> bytes:
    if isinstance(size, bool) or not isinstance(size, int) or not NONCE_MIN <= size <= NONCE_MAX:
        raise UsageError(f"nonce size must be an integer in {NONCE_MIN}..{NONCE_MAX}")
    return secrets.token_bytes(size)


def check_nonce(nonce: bytes) -> None:
    """A client-given nonce: bytes of NONCE_MIN..NONCE_MAX."""
    if not isinstance(nonce, bytes) or not NONCE_MIN <= len(nonce) <= NONCE_MAX:
        raise UsageError(f"a nonce is {NONCE_MIN}..{NONCE_MAX} bytes")


def new_result_id() -> str:
    return secrets.token_urlsafe(16)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS nonces (
    nonce BLOB PRIMARY KEY,
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    used INTEGER NOT NULL DEFAULT 0,
    used_at REAL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS nonces_expiry ON nonces (expires_at);
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS results (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    doc TEXT,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""


class SqliteStore:
    """The default store: one SQLite file (WAL), shared by threads and processes."""

    kind = "sqlite"

    def __init__(self, path: Path, *, ttl: float = 120.0, result_ttl: float = 3600.0,
                 clock: Clock = time.time) -> None:
        self.path, self.ttl, self.result_ttl, self.clock = Path(path), ttl, result_ttl, clock
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._issued = 0
        conn = self._conn()
        with self._conns_lock:
            conn.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            conn.executescript(_SCHEMA)
            conn.execute("PRAGMA busy_timeout=0")
        self.path.chmod(0o600)

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=0")  # `_run` waits, in finer steps
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _run(self, sql: str, params: tuple[Any, ...] = ()) -> tuple[list[Any], int]:
        """Rows and row count of one statement, retried while another process holds the
        write lock (see the module text)."""
        conn = self._conn()
        delay, deadline = 5e-5, 0.0
        while True:
            try:
                cur = conn.execute(sql, params)
                return cur.fetchall(), cur.rowcount
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                now = time.monotonic()
                deadline = deadline or now + BUSY_TIMEOUT_S
                if now > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5e-3)

    def issue(self, size: int = NONCE_DEFAULT, ttl: float | None = None) -> IssuedNonce:
        nonce = new_nonce(size)
        now = self.clock()
        issued = IssuedNonce(nonce, now, now + (ttl if ttl is not None else self.ttl))
        self._run("INSERT INTO nonces (nonce, issued_at, expires_at) VALUES (?, ?, ?)",
                  (nonce, issued.issued_at, issued.expires_at))
        self._issued += 1
        if self._issued % GC_EVERY == 0:
            self.gc()
        return issued

    def consume(self, nonce: bytes) -> IssuedNonce:
        now = self.clock()
        rows, _ = self._run(  # fetch all: the statement (and its implicit transaction) ends
            "UPDATE nonces SET used = 1, used_at = ? WHERE nonce = ? AND used = 0 "
            "AND expires_at > ? RETURNING issued_at, expires_at",
            (now, nonce, now))
        if rows:
            return IssuedNonce(nonce, float(rows[0][0]), float(rows[0][1]))
        raise NonceRefused(self._reason(nonce, now) or UNKNOWN)

    def register(self, nonce: bytes, ttl: float | None = None) -> IssuedNonce:
        check_nonce(nonce)
        now = self.clock()
        self._run("INSERT INTO nonces (nonce, issued_at, expires_at) VALUES (?, ?, ?) "
                  "ON CONFLICT(nonce) DO NOTHING",
                  (nonce, now, now + (ttl if ttl is not None else self.ttl)))
        rows, _ = self._run("SELECT issued_at, expires_at, used FROM nonces WHERE nonce = ?",
                            (nonce,))
        if not rows:  # gc'd between the two statements: a tombstone just expired
            raise NonceRefused(EXPIRED)
        row = rows[0]
        if row[2]:
            raise NonceRefused(REUSED)
        if float(row[1]) <= now:
            raise NonceRefused(EXPIRED)
        return IssuedNonce(nonce, float(row[0]), float(row[1]))

    def put_session(self, session_id: str, doc: dict[str, Any], expires_at: float) -> None:
        self._run("INSERT INTO sessions (id, state, doc, expires_at) VALUES (?, ?, ?, ?)",
                  (session_id, str(doc["status"]), json.dumps(doc, separators=(",", ":")),
                   expires_at))

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        rows, _ = self._run("SELECT state, doc FROM sessions WHERE id = ? AND expires_at > ?",
                            (session_id, self.clock()))
        if not rows:
            return None
        doc: dict[str, Any] = json.loads(rows[0][1])
        return {**doc, "status": rows[0][0]}

    def claim_session(self, session_id: str) -> str | None:
        now = self.clock()
        won, _ = self._run("UPDATE sessions SET state = ? WHERE id = ? AND state = ? AND "
                           "expires_at > ? RETURNING id",
                           (SESSION_PROCESSING, session_id, SESSION_WAITING, now))
        if won:
            return SESSION_WAITING
        rows, _ = self._run("SELECT state FROM sessions WHERE id = ? AND expires_at > ?",
                            (session_id, now))
        return None if not rows else str(rows[0][0])

    def update_session(self, session_id: str, status: str, doc: dict[str, Any]) -> None:
        self._run("UPDATE sessions SET state = ?, doc = ? WHERE id = ?",
                  (status, json.dumps({**doc, "status": status}, separators=(",", ":")),
                   session_id))

    def delete_session(self, session_id: str) -> bool:
        _, n = self._run("DELETE FROM sessions WHERE id = ? AND expires_at > ?",
                         (session_id, self.clock()))
        return bool(n)

    def _reason(self, nonce: bytes, now: float) -> str | None:
        rows, _ = self._run("SELECT used, expires_at FROM nonces WHERE nonce = ?", (nonce,))
        if not rows:
            return None
        row = rows[0]
        if row[0]:
            return REUSED
        return EXPIRED if float(row[1]) <= now else "fresh"

    def peek(self, nonce: bytes) -> str | None:
        return self._reason(nonce, self.clock())

    def gc(self) -> int:
        """Forget nonces and results well past their expiry."""
        now = self.clock()
        _, n = self._run("DELETE FROM nonces WHERE expires_at < ?", (now - TOMBSTONE_S,))
        self._run("DELETE FROM results WHERE expires_at < ?", (now,))
        self._run("DELETE FROM sessions WHERE expires_at < ?", (now,))
        return int(n)

    def put_pending(self, result_id: str) -> None:
        now = self.clock()
        self._run(
            "INSERT INTO results (id, state, doc, created_at, expires_at) VALUES (?, ?, NULL, ?, ?)",
            (result_id, PENDING, now, now + self.result_ttl))

    def put_result(self, result_id: str, doc: dict[str, Any]) -> None:
        now = self.clock()
        text = json.dumps(doc, separators=(",", ":"))
        # One statement: the row flips from pending to the whole result at once.
        self._run(
            "INSERT INTO results (id, state, doc, created_at, expires_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(id) DO UPDATE SET state = excluded.state, doc = excluded.doc, "
            "expires_at = excluded.expires_at",
            (result_id, DONE, text, now, now + self.result_ttl))

    def get_result(self, result_id: str) -> dict[str, Any] | None:
        rows, _ = self._run("SELECT state, doc, expires_at FROM results WHERE id = ?",
                            (result_id,))
        if not rows or float(rows[0][2]) <= self.clock():
            return None
        row = rows[0]
        if row[0] == PENDING:
            return {"state": PENDING}
        doc: dict[str, Any] = json.loads(row[1])
        return {"state": DONE, **doc}

    def ping(self) -> bool:
        self._run("SELECT 1")
        return True

    def close(self) -> None:
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


# KEYS[1] nonce key, KEYS[2] its tombstone; ARGV[1] now (ms), ARGV[2] tombstone ttl (ms).
# The value is "<issued_ms>:<expires_ms>". Returns the value, or "!<reason>".
_CONSUME_LUA = """
local v = redis.call('GET', KEYS[1])
if not v then
  local t = redis.call('GET', KEYS[2])
  if t then return '!' .. t end
  return '!unknown'
end
local sep = string.find(v, ':', 1, true)
local expires = tonumber(string.sub(v, sep + 1))
if expires <= tonumber(ARGV[1]) then
  return '!expired'
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[2], 'reused', 'PX', ARGV[2])
return v
"""


# KEYS[1] nonce key, KEYS[2] its tombstone; ARGV[1] value, ARGV[2] key ttl (ms).
# Returns the stored value (new or already there), or "!reused".
_REGISTER_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return '!reused' end
redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
return redis.call('GET', KEYS[1])
"""

# KEYS[1] session hash. Returns the state before (claimed when 'waiting'), or false.
_CLAIM_LUA = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return false end
if state == 'waiting' then redis.call('HSET', KEYS[1], 'state', 'processing') end
return state
"""

# KEYS[1] session hash; ARGV[1] state, ARGV[2] doc. Only an existing session is updated
# (none comes back after its expiry or a DELETE).
_UPDATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'doc', ARGV[2])
return 1
"""


class RedisStore:
    """Nonces and results in Redis, for a fleet of verifier replicas."""

    kind = "redis"

    def __init__(self, url: str, *, prefix: str = "bytereplay:", ttl: float = 120.0,
                 result_ttl: float = 3600.0, clock: Clock = time.time) -> None:
        import redis

        self.url, self.prefix, self.ttl, self.result_ttl = url, prefix, ttl, result_ttl
        self.clock = clock
        self.client = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0,
                                           health_check_interval=30)
        self._consume = self.client.register_script(_CONSUME_LUA)
        self._register = self.client.register_script(_REGISTER_LUA)
        self._claim = self.client.register_script(_CLAIM_LUA)
        self._update = self.client.register_script(_UPDATE_LUA)

    def _nkey(self, nonce: bytes) -> str:
        return f"{self.prefix}nonce:{b64url_encode(nonce)}"

    def _tkey(self, nonce: bytes) -> str:
        return f"{self.prefix}used:{b64url_encode(nonce)}"

    def _rkey(self, result_id: str) -> str:
        return f"{self.prefix}result:{result_id}"

    def _skey(self, session_id: str) -> str:
        return f"{self.prefix}session:{session_id}"

    def issue(self, size: int = NONCE_DEFAULT, ttl: float | None = None) -> IssuedNonce:
        nonce = new_nonce(size)
        now = self.clock()
        life = ttl if ttl is not None else self.ttl
        issued = IssuedNonce(nonce, now, now + life)
        value = f"{int(now * 1000)}:{int(issued.expires_at * 1000)}"
        # Kept past its expiry for a while, so a late use reads as 'expired', not 'unknown'.
        ok = self.client.set(self._nkey(nonce), value, px=int((life + TOMBSTONE_S) * 1000),
                             nx=True)
        if not ok:  # 2**-64 collision at 8 bytes; never at the default 32
            return self.issue(size, ttl)
        return issued

    def consume(self, nonce: bytes) -> IssuedNonce:
        now_ms = int(self.clock() * 1000)
        out = self._consume(keys=[self._nkey(nonce), self._tkey(nonce)],
                            args=[now_ms, int(TOMBSTONE_S * 1000)])
        text = out.decode() if isinstance(out, bytes) else str(out)
        if text.startswith("!"):
            reason = text[1:]
            raise NonceRefused(reason if reason in REASONS else UNKNOWN)
        issued_ms, _, expires_ms = text.partition(":")
        return IssuedNonce(nonce, int(issued_ms) / 1000, int(expires_ms) / 1000)

    def register(self, nonce: bytes, ttl: float | None = None) -> IssuedNonce:
        check_nonce(nonce)
        now = self.clock()
        life = ttl if ttl is not None else self.ttl
        value = f"{int(now * 1000)}:{int((now + life) * 1000)}"
        out = self._register(keys=[self._nkey(nonce), self._tkey(nonce)],
                             args=[value, int((life + TOMBSTONE_S) * 1000)])
        text = out.decode() if isinstance(out, bytes) else str(out)
        if text.startswith("!"):
            raise NonceRefused(REUSED)
        issued_ms, _, expires_ms = text.partition(":")
        if int(expires_ms) <= int(now * 1000):
            raise NonceRefused(EXPIRED)
        return IssuedNonce(nonce, int(issued_ms) / 1000, int(expires_ms) / 1000)

    def put_session(self, session_id: str, doc: dict[str, Any], expires_at: float) -> None:
        key = self._skey(session_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.hset(key, mapping={"state": str(doc["status"]),
                                "doc": json.dumps(doc, separators=(",", ":"))})
        pipe.pexpireat(key, int(expires_at * 1000))
        pipe.execute()

    def get_session(self, session_id: str) -> dict[str, Any] | None:
        state, text = self.client.hmget(self._skey(session_id), ["state", "doc"])
        if state is None or text is None:
            return None
        doc: dict[str, Any] = json.loads(text)
        return {**doc, "status": state.decode() if isinstance(state, bytes) else str(state)}

    def claim_session(self, session_id: str) -> str | None:
        out = self._claim(keys=[self._skey(session_id)])
        if out is None:
            return None
        return out.decode() if isinstance(out, bytes) else str(out)

    def update_session(self, session_id: str, status: str, doc: dict[str, Any]) -> None:
        text = json.dumps({**doc, "status": status}, separators=(",", ":"))
        self._update(keys=[self._skey(session_id)], args=[status, text])

    def delete_session(self, session_id: str) -> bool:
        return bool(self.client.delete(self._skey(session_id)))

    def peek(self, nonce: bytes) -> str | None:
        value = self.client.get(self._nkey(nonce))
        if value is None:
            return REUSED if self.client.exists(self._tkey(nonce)) else None
        text = value.decode() if isinstance(value, bytes) else str(value)
        expires = int(text.partition(":")[2]) / 1000
        return EXPIRED if expires <= self.clock() else "fresh"

    def put_pending(self, result_id: str) -> None:
        self.client.set(self._rkey(result_id), json.dumps({"state": PENDING}),
                        px=int(self.result_ttl * 1000))

    def put_result(self, result_id: str, doc: dict[str, Any]) -> None:
        text = json.dumps({"state": DONE, **doc}, separators=(",", ":"))
        self.client.set(self._rkey(result_id), text, px=int(self.result_ttl * 1000))

    def get_result(self, result_id: str) -> dict[str, Any] | None:
        value = self.client.get(self._rkey(result_id))
        if value is None:
            return None
        doc: dict[str, Any] = json.loads(value)
        return doc

    def ping(self) -> bool:
        return bool(self.client.ping())

    def close(self) -> None:
        self.client.close()


def open_store(kind: str, *, path: Path, redis_url: str, redis_prefix: str, ttl: float,
               result_ttl: float, clock: Clock = time.time) -> Store:
    if kind == "sqlite":
        return SqliteStore(path, ttl=ttl, result_ttl=result_ttl, clock=clock)
    if kind == "redis":
        return RedisStore(redis_url, prefix=redis_prefix, ttl=ttl, result_ttl=result_ttl,
                          clock=clock)
    raise UsageError(f"unknown store {kind!r}")
