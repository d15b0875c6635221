"""Nonce and result stores (SQLite and a real Redis), and the race that matters:
50 concurrent submissions of the same Evidence, exactly one accepted."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from verifier_fixtures import (
    evidence_factory,
    kit,
    make_verifier,
    new_home,
    redis_url,
    store_options,
)

from bytereplay.ear import flat_submod, peek
from bytereplay.errors import UsageError
from bytereplay.record import ChallengeWindow
from verifier.nonces import (
    EXPIRED,
    REUSED,
    UNKNOWN,
    IssuedNonce,
    NonceRefused,
    RedisStore,
    SqliteStore,
    Store,
    compare_window,
)

__all__ = ["redis_url"]  # the fixture, imported for pytest

N = 50


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


StoreMaker = Callable[[Clock], Store]


@pytest.fixture(params=["sqlite", "redis"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreMaker]:
    made: list[Store] = []
    prefix = f"t{id(request)}:"

    def make(clock: Clock) -> Store:
        store: Store
        if request.param == "sqlite":
            store = SqliteStore(tmp_path / "store.sqlite3", ttl=120, result_ttl=60, clock=clock)
        else:
            url = request.getfixturevalue("redis_url")
            store = RedisStore(url, prefix=prefix, ttl=120, result_ttl=60, clock=clock)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def refused(store: Store, nonce: bytes) -> str:
    with pytest.raises(NonceRefused) as info:
        store.consume(nonce)
    return info.value.reason


def test_consume_once(make_store: StoreMaker) -> None:
    clock = Clock()
    store = make_store(clock)
    issued = store.issue()
    assert len(issued.nonce) == 32
    assert issued.expires_at - issued.issued_at == 120
    assert store.peek(issued.nonce) == "fresh"
    assert store.consume(issued.nonce).nonce == issued.nonce
    assert refused(store, issued.nonce) == REUSED
    assert store.peek(issued.nonce) == REUSED
    assert refused(store, b"\x01" * 32) == UNKNOWN
    assert store.peek(b"\x01" * 32) is None


def test_expiry(make_store: StoreMaker) -> None:
    clock = Clock()
    store = make_store(clock)
    issued = store.issue(size=8)
    assert len(issued.nonce) == 8
    clock.now += 120
    assert refused(store, issued.nonce) == EXPIRED
    short = store.issue(ttl=5)
    clock.now += 4.9
    store.consume(short.nonce)


def test_sizes(make_store: StoreMaker) -> None:
    store = make_store(Clock())
    assert len(store.issue(64).nonce) == 64
    for bad in (7, 65, True):
        with pytest.raises(UsageError):
            store.issue(bad)


def test_nonce_to_json() -> None:
    from verifier.nonces import IssuedNonce

    doc = IssuedNonce(b"\xff" * 8, 1_800_000_000.0, 1_800_000_120.0).to_json()
    assert doc == {"nonce": "__________8", "issued_at": "2027-01-15T08:00:00Z",
                   "expires_at": "2027-01-15T08:02:00Z"}


def test_results(make_store: StoreMaker) -> None:
    clock = Clock()
    store = make_store(clock)
    assert store.get_result("nope") is None
    store.put_pending("job-1")
    assert store.get_result("job-1") == {"state": "pending"}
    store.put_result("job-1", {"result": "x.y.z", "status": "warning"})
    assert store.get_result("job-1") == {"state": "done", "result": "x.y.z", "status": "warning"}
    clock.now += 61
    if isinstance(store, SqliteStore):  # Redis expires by PX on its own clock
        assert store.get_result("job-1") is None


def test_sqlite_survives_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    first = SqliteStore(path)
    used, unused = first.issue(), first.issue()
    first.consume(used.nonce)
    first.close()
    second = SqliteStore(path)
    try:
        assert refused(second, used.nonce) == REUSED
        second.consume(unused.nonce)
        assert path.stat().st_mode & 0o077 == 0
        assert second.gc() == 0
    finally:
        second.close()


def race(consume: Callable[[], Any], n: int = N) -> list[Any]:
    barrier = threading.Barrier(n)

    def one() -> Any:
        barrier.wait()
        try:
            return consume()
        except NonceRefused as exc:
            return exc.reason

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(lambda _: one(), range(n)))


def test_store_race(make_store: StoreMaker) -> None:
    store = make_store(Clock())
    issued = store.issue()
    outcomes = race(lambda: store.consume(issued.nonce))
    assert sum(1 for o in outcomes if not isinstance(o, str)) == 1
    assert sorted(o for o in outcomes if isinstance(o, str)) == [REUSED] * (N - 1)


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_fifty_concurrent_submissions_one_accepted(kind: str, tmp_path: Path,
                                                   request: pytest.FixtureRequest) -> None:
    home = new_home(tmp_path)
    extra = store_options(kind, request, f"race{id(tmp_path)}:")
    verifier = make_verifier(home, replay=False, **extra)
    try:
        assert verifier.store.kind == kind
        evidence = evidence_factory(home).make(verifier.issue_nonce().nonce)
        results = race(lambda: verifier.appraise(evidence, replay=False))
        nonce_checks = [flat_submod(peek(r.token))["bytereplay.checks"]["nonce"]
                        for r in results]
        assert nonce_checks.count("ok") == 1
        assert sum(c.startswith("refused: nonce was already used") for c in nonce_checks) == N - 1
        assert sorted(r.status for r in results) == ["contraindicated"] * (N - 1) + ["warning"]
        assert verifier.metrics.nonce_refusals.labels("reused")._value.get() == N - 1
    finally:
        verifier.close()


@pytest.mark.parametrize(("issued_at", "expires_at", "fact"), [
    ("2027-01-15T08:00:00Z", "2027-01-15T08:02:00Z", "ok"),
    ("2027-01-15T08:00:00.700Z", "2027-01-15T10:02:00+02:00", "ok"),  # same seconds, other spelling
    ("2027-01-15T08:00:01Z", "2027-01-15T08:02:00Z", "differs"),
    ("2027-01-15T08:00:00Z", "2027-01-15T09:02:00Z", "differs"),
    (None, "2027-01-15T08:02:00Z", "missing"),
    ("2027-01-15T08:00:00Z", None, "missing"),
    ("9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "differs"),  # extremes parse
])
def test_compare_window(issued_at: str | None, expires_at: str | None, fact: str) -> None:
    start = datetime(2027, 1, 15, 8, 0, 0, 700_000, tzinfo=UTC).timestamp()
    issued = IssuedNonce(b"n" * 16, start, start + 120)
    got, text = compare_window(ChallengeWindow(issued_at, expires_at), issued)
    assert got == fact
    if fact == "differs":
        assert "2027-01-15T08:00:00Z" in text and "2027-01-15T08:02:00Z" in text
    assert compare_window(None, issued)[0] == "missing"


@pytest.mark.parametrize("persist", [True, False], ids=["append-only-file", "no-persistence"])
def test_redis_restart(tmp_path: Path, persist: bool) -> None:
    """redis-server itself stopped and started again on the same port and folder. With an
    append-only file, a used nonce stays used and an unused one is still good (once);
    without persistence both are forgotten, so the used one is refused as unknown (never
    accepted again) and the unused one must be asked for again."""
    port = kit.free_port()
    folder = tmp_path / "redis"
    try:
        with kit.redis_server(folder, port=port, persist=persist) as url:
            store = RedisStore(url, prefix="br-restart:")
            used, spare = store.issue(), store.issue()
            store.consume(used.nonce)
            store.close()
        with kit.redis_server(folder, port=port, persist=persist) as url:
            store = RedisStore(url, prefix="br-restart:")
            with pytest.raises(NonceRefused) as refused:
                store.consume(used.nonce)
            assert refused.value.reason == (REUSED if persist else UNKNOWN)
            if persist:
                assert store.consume(spare.nonce).issued_at == pytest.approx(spare.issued_at,
                                                                              abs=0.001)
            with pytest.raises(NonceRefused) as again:
                store.consume(spare.nonce)
            assert again.value.reason == (REUSED if persist else UNKNOWN)
            store.close()
    except RuntimeError as exc:  # redis-server missing: a failure, never a skip
        pytest.fail(str(exc))
