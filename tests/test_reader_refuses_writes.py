"""A reader session refuses writes sent as SQL text on both databases, with ReadOnlySessionError,
and writes nothing; on SQLite (query_only) the pooled connection it used can write again for the
next user, whatever the reader block did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from reflexio_store import ReadOnlySessionError, SessionFactory, StorageConfigSQLite
from reflexio_store.models import Request
from reflexio_store.settings import StorageSettings
from reflexio_store.store import Store

REFUSED = r"reader session: it is read-only.*Use factory\.writer\(\)"
SEEDED = {("r1", "u5"), ("r2", "u6")}


def _table(factory: SessionFactory, name: str) -> str:
    # SQL text is not schema-translated: on PostgreSQL name the organization's schema, or the
    # statement would fail on a missing table before the server checks that it writes.
    schema = factory.storage.schema
    return f'"{schema}".{name}' if schema else name


def _writes(factory: SessionFactory) -> list[str]:
    requests = _table(factory, "requests")
    return [
        f"INSERT INTO {requests} (request_id, user_id) VALUES ('r9', 'u9')",
        f"UPDATE {requests} SET user_id = 'changed' WHERE request_id = 'r1'",
        f"DELETE FROM {requests} WHERE user_id = 'u5'",
        f"CREATE TABLE {_table(factory, 'reader_made_this')} (x integer)",
    ]


def _seed(factory: SessionFactory) -> None:
    with factory.writer() as session:
        session.add_all([Request(request_id=r, user_id=u) for r, u in sorted(SEEDED)])


def _rows(factory: SessionFactory) -> set[tuple[str, str]]:
    with factory.writer() as session:
        return {(r, u) for r, u in session.execute(select(Request.request_id, Request.user_id))}


def _table_exists(factory: SessionFactory, name: str) -> bool:
    with factory.writer() as session:
        if factory.backend == "sqlite":
            sql = "SELECT count(*) FROM sqlite_master WHERE name = :name"
            return bool(session.execute(text(sql), {"name": name}).scalar())
        found = session.execute(text("SELECT to_regclass(:name)"), {"name": _table(factory, name)})
        return found.scalar() is not None


def test_reader_refuses_sql_writes(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    _seed(factory)
    sync_replica()
    for consistency in ("eventual", "strong"):
        for sql in _writes(factory):
            with (
                pytest.raises(ReadOnlySessionError, match=REFUSED) as refused,
                factory.reader(consistency) as session,
            ):
                session.execute(text(sql))
            assert refused.value.__cause__ is None  # the driver's error stays behind
    assert _rows(factory) == SEEDED
    assert not _table_exists(factory, "reader_made_this")
    with factory.reader() as session:
        count = session.execute(text(f"SELECT count(*) FROM {_table(factory, 'requests')}"))
        assert count.scalar() == len(SEEDED)


async def test_async_reader_refuses_sql_writes(
    factory: SessionFactory, sync_replica: Callable[[], None]
) -> None:
    try:
        _seed(factory)
        sync_replica()
        for consistency in ("eventual", "strong"):
            for sql in _writes(factory):
                with pytest.raises(ReadOnlySessionError, match=REFUSED):
                    async with factory.async_reader(consistency) as session:
                        await session.execute(text(sql))
        async with factory.async_reader() as session:
            rows = await session.execute(select(Request.request_id, Request.user_id))
            assert {(r, u) for r, u in rows} == SEEDED
        assert _rows(factory) == SEEDED
        assert not _table_exists(factory, "reader_made_this")
    finally:
        await factory.adispose()


# -- SQLite: one pooled connection, reused by readers and writers alike -------------------------


@pytest.fixture
def one_connection(tmp_path: Path) -> Iterator[SessionFactory]:
    """An SQLite factory whose pools hold one connection: every session gets the same one."""
    config = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'one.db'}")
    settings = StorageSettings(REFLEXIO_POSTGRES_POOL_SIZE=1)
    factory = SessionFactory.from_config(config, settings=settings)
    _seed(factory)
    yield factory
    factory.dispose()


def _driver_connection(session: Session) -> Any:
    return session.connection().connection.dbapi_connection


async def _async_driver_connection(session: AsyncSession) -> Any:
    return (await session.connection()).sync_connection.connection.dbapi_connection  # type: ignore[union-attr]


def _refused_write(factory: SessionFactory) -> None:
    with pytest.raises(ReadOnlySessionError, match=REFUSED), factory.reader() as session:
        session.execute(text("DELETE FROM requests"))


def _raised(factory: SessionFactory) -> None:
    with pytest.raises(RuntimeError), factory.reader() as session:
        session.execute(text("SELECT 1"))
        raise RuntimeError("the caller's own error")


def _closed_early(factory: SessionFactory) -> None:
    with factory.reader() as session:
        session.execute(text("SELECT 1"))
        session.close()


def _rolled_back_early(factory: SessionFactory) -> None:
    with factory.reader() as session:
        session.execute(text("SELECT 1"))
        session.rollback()


def _wrote_after_its_own_commit(factory: SessionFactory) -> None:
    # The commit gives the connection back to the pool (query_only turned off): the next
    # transaction of the same session must be guarded again.
    with pytest.raises(ReadOnlySessionError, match=REFUSED), factory.reader() as session:
        session.execute(text("SELECT 1"))
        session.commit()
        session.execute(text("DELETE FROM requests"))


@pytest.mark.parametrize(
    "reader_block",
    [_refused_write, _raised, _closed_early, _rolled_back_early, _wrote_after_its_own_commit],
)
def test_the_pooled_connection_writes_again_after_a_reader(
    one_connection: SessionFactory, reader_block: Callable[[SessionFactory], None]
) -> None:
    factory = one_connection
    with factory.writer() as session:
        raw = _driver_connection(session)
    reader_block(factory)
    with factory.writer() as session:
        assert _driver_connection(session) is raw  # the reader's connection, back from the pool
        assert session.execute(text("PRAGMA query_only")).scalar() == 0
        session.add(Request(request_id="w1", user_id="u7"))
    Store(factory).add_request("u8", request_id="w2")
    assert _rows(factory) == SEEDED | {("w1", "u7"), ("w2", "u8")}


def test_an_invalidated_reader_connection_is_replaced_by_one_that_writes(
    one_connection: SessionFactory,
) -> None:
    factory = one_connection
    with factory.reader() as session:
        raw = _driver_connection(session)
        session.connection().invalidate()
        session.rollback()
    with factory.writer() as session:
        assert _driver_connection(session) is not raw
        assert session.execute(text("PRAGMA query_only")).scalar() == 0
    Store(factory).add_request("u8", request_id="w2")
    assert ("w2", "u8") in _rows(factory)


def test_store_reads_send_no_pragma(one_connection: SessionFactory) -> None:
    """Store's read operations only read: they run without query_only and its two PRAGMAs,
    which a caller's reader() session pays."""
    factory = one_connection
    store = Store(factory)
    with factory.writer() as session:
        raw = _driver_connection(session)
    sent: list[str] = []
    raw.set_trace_callback(sent.append)
    try:
        assert store.get_request("r1") is not None
        assert store.get_requests_by_user("u5")
        assert [s for s in sent if "query_only" in s] == []
        with factory.reader() as session:
            assert session.execute(text("SELECT count(*) FROM requests")).scalar() == len(SEEDED)
        pragmas = [s for s in sent if "query_only" in s]
        assert pragmas == ["PRAGMA query_only = ON", "PRAGMA query_only = OFF"]
    finally:
        raw.set_trace_callback(None)


async def test_async_pooled_connection_writes_again_after_a_reader(
    one_connection: SessionFactory,
) -> None:
    factory = one_connection
    try:
        async with factory.async_writer() as session:
            raw = await _async_driver_connection(session)
        with pytest.raises(ReadOnlySessionError, match=REFUSED):
            async with factory.async_reader() as session:
                assert await _async_driver_connection(session) is raw
                await session.execute(text("DELETE FROM requests"))
        with pytest.raises(RuntimeError):
            async with factory.async_reader() as session:
                await session.execute(text("SELECT 1"))
                raise RuntimeError("the caller's own error")
        async with factory.async_writer() as session:
            assert await _async_driver_connection(session) is raw
            assert (await session.execute(text("PRAGMA query_only"))).scalar() == 0
            session.add(Request(request_id="w1", user_id="u7"))
        Store(factory).add_request("u8", request_id="w2")
        assert _rows(factory) == SEEDED | {("w1", "u7"), ("w2", "u8")}
    finally:
        await factory.adispose()
