"""Operation state and lease locks, on SQLite and on PostgreSQL (primary + replica)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from reflexio_store import SessionFactory, ValidationError
from reflexio_store.models import OperationState
from reflexio_store.store import AsyncStore, Store


def _expire(factory: SessionFactory, name: str) -> None:
    """Move a lease's expiry into the past (what the passing of time would do)."""
    with factory.writer() as session:
        session.execute(
            update(OperationState)
            .where(OperationState.service_name == name)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=5))
        )


def test_state_round_trip(factory: SessionFactory) -> None:
    store = Store(factory)
    assert store.get_operation_state("svc") is None
    state = {"cursor": 42, "nested": {"ids": [1, 2, "x"], "ok": True, "none": None}}
    assert store.upsert_operation_state("svc", state) == state
    assert store.get_operation_state("svc") == state
    store.upsert_operation_state("svc", {"cursor": 43})
    assert store.get_operation_state("svc") == {"cursor": 43}
    assert store.delete_operation_state("svc") is True
    assert store.delete_operation_state("svc") is False
    assert store.get_operation_state("svc") is None


def test_state_and_lease_are_independent(factory: SessionFactory) -> None:
    store = Store(factory)
    store.upsert_operation_state("svc", {"a": 1})
    assert store.try_acquire_lock("svc", "w1", 30) is True
    store.upsert_operation_state("svc", {"a": 2})
    assert store.get_lock_owner("svc") == "w1"  # saving state does not drop the lease
    assert store.try_acquire_lock("svc", "w2", 30) is False
    assert store.get_operation_state("svc") == {"a": 2}  # taking a lease keeps the state


def test_bad_state_is_refused(factory: SessionFactory) -> None:
    store = Store(factory)
    with pytest.raises(ValidationError, match="JSON"):
        store.upsert_operation_state("svc", {"when": datetime.now(UTC)})
    with pytest.raises(ValidationError, match="mapping"):
        store.upsert_operation_state("svc", [1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="service_name"):
        store.upsert_operation_state("", {})
    with pytest.raises(ValidationError, match="ttl_seconds"):
        store.try_acquire_lock("l", "w", 0)
    with pytest.raises(ValidationError, match="ttl_seconds"):
        store.try_acquire_lock("l", "w", float("nan"))
    assert store.get_operation_state("svc") is None


@pytest.mark.parametrize(
    "ttl", [1e20, 10**30, 315_360_001, float("inf"), float("-inf"), -1, True, "30", None]
)
def test_out_of_range_ttl_is_a_validation_error(factory: SessionFactory, ttl: Any) -> None:
    # Huge values used to escape as a raw OverflowError from `now + timedelta(seconds=...)`.
    store = Store(factory)
    with pytest.raises(ValidationError, match="ttl_seconds"):
        store.try_acquire_lock("l", "w", ttl)
    assert store.try_acquire_lock("l", "w", 30) is True
    with pytest.raises(ValidationError, match="ttl_seconds"):
        store.renew_lock("l", "w", ttl)
    assert store.get_lock_owner("l") == "w"


def test_ten_year_ttl_is_accepted(factory: SessionFactory) -> None:
    store = Store(factory)
    ten_years = 10 * 365 * 24 * 60 * 60
    assert store.try_acquire_lock("l", "w", ten_years) is True
    assert store.renew_lock("l", "w", float(ten_years)) is True
    with factory.writer() as session:
        expires_at = session.scalar(
            select(OperationState.expires_at).where(OperationState.service_name == "l")
        )
    assert expires_at is not None
    expires_at = expires_at if expires_at.tzinfo else expires_at.replace(tzinfo=UTC)
    assert expires_at > datetime.now(UTC) + timedelta(days=3600)


def test_many_threads_race_for_one_lock(factory: SessionFactory) -> None:
    workers = 16
    store = Store(factory)
    barrier = threading.Barrier(workers)
    results: dict[str, bool] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        owner = f"worker-{i}"
        try:
            barrier.wait(timeout=30)
            got = store.try_acquire_lock("race", owner, 60)
            with lock:
                results[owner] = got
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == workers
    winners = [owner for owner, got in results.items() if got]
    assert len(winners) == 1, results
    assert store.get_lock_owner("race") == winners[0]
    with factory.writer() as session:
        row = session.scalars(select(OperationState).where(OperationState.service_name == "race"))
        assert row.one().owner == winners[0]


def test_race_for_an_expired_lease(factory: SessionFactory) -> None:
    """When the lease has expired, exactly one of many contenders takes it over."""
    store = Store(factory)
    assert store.try_acquire_lock("race2", "old", 60)
    _expire(factory, "race2")
    workers = 8
    barrier = threading.Barrier(workers)
    results: list[bool] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait(timeout=30)
        got = store.try_acquire_lock("race2", f"new-{i}", 60)
        with lock:
            results.append(got)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert sorted(results) == [False] * (workers - 1) + [True]
    assert (store.get_lock_owner("race2") or "").startswith("new-")


def test_expired_lease_can_be_taken_over(factory: SessionFactory) -> None:
    store = Store(factory)
    assert store.try_acquire_lock("job", "a", 60) is True
    assert store.try_acquire_lock("job", "b", 60) is False
    _expire(factory, "job")
    assert store.get_lock_owner("job") is None
    assert store.try_acquire_lock("job", "b", 60) is True
    assert store.get_lock_owner("job") == "b"
    # The old owner lost it: it can neither renew nor release it.
    assert store.renew_lock("job", "a", 60) is False
    assert store.release_lock("job", "a") is False
    assert store.get_lock_owner("job") == "b"


def test_only_the_owner_releases(factory: SessionFactory) -> None:
    store = Store(factory)
    assert store.try_acquire_lock("job", "a", 60)
    assert store.release_lock("job", "b") is False
    assert store.get_lock_owner("job") == "a"
    assert store.try_acquire_lock("job", "b", 60) is False
    assert store.release_lock("job", "a") is True
    assert store.get_lock_owner("job") is None
    assert store.release_lock("job", "a") is False
    assert store.try_acquire_lock("job", "b", 60) is True
    assert store.release_lock("missing", "a") is False


def _expires_at(factory: SessionFactory, name: str) -> datetime:
    with factory.reader("strong") as session:
        value = session.scalar(
            select(OperationState.expires_at).where(OperationState.service_name == name)
        )
    assert value is not None
    return value


def test_reacquire_by_owner_extends(factory: SessionFactory) -> None:
    store = Store(factory)
    assert store.try_acquire_lock("job", "a", 10)
    first = _expires_at(factory, "job")
    assert first.tzinfo is not None
    assert timedelta(seconds=0) < first - datetime.now(UTC) <= timedelta(seconds=10)
    assert store.try_acquire_lock("job", "a", 3600)
    second = _expires_at(factory, "job")
    assert second - first > timedelta(seconds=3000)
    assert store.renew_lock("job", "a", 7200)
    assert _expires_at(factory, "job") - second > timedelta(seconds=3000)
    assert store.renew_lock("job", "b", 7200) is False


async def test_async_lock(factory: SessionFactory) -> None:
    store = AsyncStore(factory)
    try:
        assert await store.try_acquire_lock("alock", "a", 60) is True
        assert await store.try_acquire_lock("alock", "b", 60) is False
        assert await store.get_lock_owner("alock") == "a"
        await store.upsert_operation_state("asvc", {"x": [1, {"y": None}]})
        assert await store.get_operation_state("asvc") == {"x": [1, {"y": None}]}
        assert await store.release_lock("alock", "a") is True
        assert await store.try_acquire_lock("alock", "b", 60) is True
    finally:
        await factory.adispose()
