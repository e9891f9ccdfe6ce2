"""Engines and sessions on real databases: pragmas, writer/reader behaviour, column types."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import Text, func, insert, select, text

from reflexio_store import ReadOnlySessionError, SessionFactory, StorageConfigSQLite
from reflexio_store.errors import ValidationError
from reflexio_store.models import Profile, Request, WorkflowRun
from reflexio_store.settings import StorageSettings
from tests.conftest import PgEndpoints


def _profile(i: int, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {"profile_id": f"p{i}", "user_id": "u1", "content": f"fact {i}"}
    row.update(kw)
    return row


def test_sqlite_connection_settings(sqlite_factory: SessionFactory) -> None:
    with sqlite_factory.writer() as session:
        conn = session.connection()
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("SELECT vec_version()").scalar().startswith("v")


def test_sqlite_concurrent_writers_queue_instead_of_failing(
    sqlite_factory: SessionFactory,
) -> None:
    """8 threads x 500 committed read-modify-write transactions on one file: no error, all rows."""
    threads, per_thread = 8, 500
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)
    sqlite_factory.ensure_schema()

    def work(t: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with sqlite_factory.writer() as session:
                    # Read first, then write: a deferred BEGIN would fail here with
                    # "database is locked" when another writer got in between.
                    session.execute(select(Request.request_id).limit(1)).all()
                    session.add(Request(request_id=f"r{t}-{i}", user_id=f"u{t}"))
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert errors == []
    with sqlite_factory.reader() as session:
        count = session.execute(text("SELECT count(*) FROM requests")).scalar()
    assert count == threads * per_thread


def test_writer_commits_on_success_and_rolls_back_on_error(factory: SessionFactory) -> None:
    with factory.writer() as session:
        session.add(Request(request_id="kept", user_id="u"))
    with pytest.raises(RuntimeError), factory.writer() as session:
        session.add(Request(request_id="dropped", user_id="u"))
        session.flush()
        raise RuntimeError("boom")
    with factory.reader(consistency="strong") as session:
        ids = set(session.scalars(select(Request.request_id)))
    assert ids == {"kept"}


def test_reader_refuses_writes(factory: SessionFactory) -> None:
    with pytest.raises(ReadOnlySessionError), factory.reader() as session:
        session.add(Request(request_id="x", user_id="u"))
        session.flush()
    with pytest.raises(ReadOnlySessionError), factory.reader() as session:
        session.execute(insert(Request).values(request_id="y", user_id="u"))
    with factory.reader(consistency="strong") as session:
        assert session.scalars(select(Request)).all() == []


def test_datetimes_are_aware_utc_and_naive_values_are_refused(factory: SessionFactory) -> None:
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2026, 5, 1, 12, 30, 15, 123456, tzinfo=plus_two)
    with factory.writer() as session:
        session.execute(insert(Profile), [_profile(1, expires_at=moment)])
    with factory.reader(consistency="strong") as session:
        row = session.scalars(select(Profile)).one()
    assert row.expires_at == moment
    assert row.expires_at is not None and row.expires_at.tzinfo is not None
    assert row.expires_at.utcoffset() == timedelta(0)
    assert row.created_at.tzinfo is not None
    with pytest.raises(ValidationError, match="naive datetime"), factory.writer() as session:
        session.execute(insert(Profile), [_profile(2, expires_at=datetime(2026, 1, 1))])


def test_time_comparisons_work_in_sql(factory: SessionFactory) -> None:
    base = datetime(2026, 1, 1, tzinfo=UTC)
    with factory.writer() as session:
        session.execute(
            insert(Profile), [_profile(i, created_at=base + timedelta(days=i)) for i in range(10)]
        )
    with factory.reader(consistency="strong") as session:
        ids = session.scalars(
            select(Profile.profile_id)
            .where(Profile.created_at >= base + timedelta(days=3))
            .where(Profile.created_at < base + timedelta(days=6))
            .order_by(Profile.created_at)
        ).all()
    assert ids == ["p3", "p4", "p5"]


def test_json_comes_back_as_python_objects_on_both(factory: SessionFactory) -> None:
    meta = {"tags": ["x", "y"], "nested": {"n": 1, "ok": True}, "none": None}
    with factory.writer() as session:
        session.add(WorkflowRun(run_id="r1", status="running", run_metadata=meta))
    with factory.reader(consistency="strong") as session:
        run = session.get(WorkflowRun, "r1")
    assert run is not None and run.run_metadata == meta
    assert isinstance(run.pipeline_context, dict)


def test_embeddings_are_compact_vectors(factory: SessionFactory) -> None:
    vector = [float(i % 7) / 7 + 0.01 for i in range(512)]
    with factory.writer() as session:
        session.execute(insert(Profile), [_profile(1, embedding=vector)])
    with factory.reader(consistency="strong") as session:
        row = session.scalars(select(Profile)).one()
        assert row.embedding == pytest.approx(vector, rel=1e-6)
        if factory.backend == "sqlite":
            kind, size = session.execute(
                text("SELECT typeof(embedding), length(embedding) FROM profiles")
            ).one()
            assert (kind, size) == ("blob", 512 * 4)
        else:
            kind = session.execute(select(func.pg_typeof(Profile.embedding).cast(Text))).scalar()
            assert kind == "vector"


def test_bad_embeddings_are_refused(factory: SessionFactory) -> None:
    for bad in ([float("nan")] * 512, [0.0] * 512, "not a vector"):
        with pytest.raises(ValidationError), factory.writer() as session:
            session.execute(insert(Profile), [_profile(1, embedding=bad)])
    with factory.reader(consistency="strong") as session:
        assert session.scalars(select(Profile)).all() == []


async def test_async_sessions(factory: SessionFactory, pg: PgEndpoints) -> None:
    try:
        async with factory.async_writer() as session:
            session.add(Request(request_id="async-1", user_id="u"))
        if factory.has_replica:
            await asyncio.to_thread(pg.wait_for_replica)
        async with factory.async_reader() as session:
            ids = (await session.scalars(select(Request.request_id))).all()
        assert ids == ["async-1"]
        with pytest.raises(ReadOnlySessionError):
            async with factory.async_reader() as session:
                session.add(Request(request_id="async-2", user_id="u"))
                await session.flush()
        if factory.backend == "postgresql":
            async with factory.async_reader() as session:
                assert (await session.execute(text("SELECT pg_is_in_recovery()"))).scalar()
    finally:
        await factory.adispose()


def test_in_memory_sqlite_migrates_itself() -> None:
    factory = SessionFactory.from_config(
        StorageConfigSQLite(db_url="sqlite:///:memory:"), settings=StorageSettings()
    )
    with factory.writer() as session:
        session.add(Request(request_id="m", user_id="u"))
    with factory.reader() as session:
        assert session.scalars(select(Request.request_id)).all() == ["m"]
    factory.dispose()


def test_sqlite_file_and_directory_are_created_on_first_use(tmp_path: Path) -> None:
    target = tmp_path / "new" / "nested" / "store.db"
    factory = SessionFactory.from_config(
        StorageConfigSQLite(db_url=f"sqlite:///{target}"), settings=StorageSettings()
    )
    assert not target.exists()  # nothing happens at construction
    with factory.writer() as session:
        session.add(Request(request_id="r", user_id="u"))
    assert target.exists()
    factory.dispose()


def test_async_sqlite_errors_are_sqlalchemys_and_a_locked_file_is_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The async engine connects through pysqlite3, whose errors SQLAlchemy's aiosqlite adapter
    did not know: a duplicate key left async_writer() as a raw pysqlite3 IntegrityError, and a
    locked file never became DatabaseBusyError."""
    from sqlalchemy.exc import IntegrityError

    from reflexio_store.engines import sqlite_module
    from reflexio_store.errors import DatabaseBusyError

    monkeypatch.setenv("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT", "0.2")
    path = tmp_path / "a.db"
    factory = SessionFactory.from_config(StorageConfigSQLite(db_url=f"sqlite:///{path}"))
    row = {"run_id": "r1", "status": "s", "pipeline_context": {}, "metadata": {}}

    async def write() -> None:
        async with factory.async_writer() as session:
            await session.execute(insert(WorkflowRun), [row])

    asyncio.run(write())
    with pytest.raises(IntegrityError):
        asyncio.run(write())
    holder = sqlite_module().connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        row = {**row, "run_id": "r2"}
        with pytest.raises(DatabaseBusyError, match="stayed locked"):
            asyncio.run(write())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    asyncio.run(write())
    factory.dispose()
