"""AsyncStore runs each operation on a worker thread through Store's route and bounded pools."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from reflexio_store import SessionFactory, StorageConfigSQLite, sessions
from reflexio_store.errors import ValidationError
from reflexio_store.settings import StorageSettings
from reflexio_store.store import AsyncStore, Store
from tests.conftest import PgEndpoints, make_pg_config

POOL = 2


class _PeakCheckouts:
    """Counts connections checked out of a pool at once, through the pool's own events."""

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0
        self._lock = threading.Lock()

    def watch(self, engine: Any) -> None:
        event.listen(engine, "checkout", self._out)
        event.listen(engine, "checkin", self._in)

    def _out(self, *_: Any) -> None:
        with self._lock:
            self.current += 1
            self.peak = max(self.peak, self.current)

    def _in(self, *_: Any) -> None:
        with self._lock:
            self.current -= 1


@pytest.fixture(params=["sqlite", "postgres"])
def small_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    settings = StorageSettings(pool_size=POOL, read_pool_size=POOL)
    if request.param == "sqlite":
        config: Any = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'a.db'}")
    else:
        pg: PgEndpoints = request.getfixturevalue("pg")
        config = make_pg_config(pg, request.getfixturevalue("pg_schema"))
    factory = SessionFactory.from_config(config, settings=settings)
    yield factory
    factory.dispose()


async def test_concurrent_async_calls_stay_within_the_sync_pools(
    small_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise AssertionError("AsyncStore built an asyncio engine (a second set of connections)")

    for name in ("create_async_sqlite_engine", "create_async_postgres_engine"):
        monkeypatch.setattr(sessions, name, refuse)
    store = AsyncStore(small_factory)
    writer, reader = _PeakCheckouts(), _PeakCheckouts()
    writer.watch(small_factory.writer_engine)
    if small_factory.has_replica:
        reader.watch(small_factory.reader_engine)
    calls = 24
    await asyncio.gather(
        *(
            store.save_state(f"run-{i}", {"status": "running", "total_steps": i})
            for i in range(calls)
        )
    )
    states = await asyncio.gather(*(store.load_state(f"run-{i}") for i in range(calls)))
    assert [s["total_steps"] for s in states if s is not None] == list(range(calls))
    listed = await asyncio.gather(
        *(store.list_runs(status="running", consistency="strong") for _ in range(8))
    )
    assert all(len(runs) == calls for runs in listed)
    assert 1 <= writer.peak <= POOL
    assert reader.peak <= POOL
    # No asyncio engine (and so no second set of connections) was ever built.
    assert all(flavor == "sync" for _, flavor in small_factory.engines_in_use)
    assert writer.current == 0 and reader.current == 0


async def test_async_errors_are_the_store_errors(small_factory: SessionFactory) -> None:
    store = AsyncStore(small_factory)
    with pytest.raises(ValidationError, match="status"):
        await store.save_state("bad", {"status": ""})
    with pytest.raises(ValidationError, match="consistency"):
        await store.list_runs(consistency="sometimes")  # type: ignore[call-overload]
    assert await store.load_state("bad") is None


async def test_async_sees_sync_writes_and_back(small_factory: SessionFactory) -> None:
    sync, store = Store(small_factory), AsyncStore(small_factory)
    sync.save_state("from-sync", {"status": "queued"})
    loaded = await store.load_state("from-sync")
    assert loaded is not None and loaded["status"] == "queued"
    await store.save_state("from-async", {"status": "done"})
    reloaded = sync.load_state("from-async")
    assert reloaded is not None and reloaded["status"] == "done"
