"""PostgreSQL: writer on the primary, reader on the streaming replica, bounded labelled pools."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from reflexio_store import PoolTimeoutError, SessionFactory, StatementTimeoutError
from reflexio_store.models import Request
from reflexio_store.reads import run_read
from reflexio_store.sessions import Consistency
from reflexio_store.settings import StorageSettings
from tests.conftest import PgEndpoints, make_pg_config


def _count_connections(url: str, application_name: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :n"),
                    {"n": application_name},
                ).scalar_one()
            )
    finally:
        engine.dispose()


@pytest.fixture
def small_pool_factory(pg: PgEndpoints, pg_schema: str) -> Iterator[SessionFactory]:
    config = make_pg_config(pg, pg_schema, pool_size=3, read_pool_size=3, pool_acquire_timeout=60)
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    yield factory
    factory.dispose()


def test_writer_is_the_primary_and_reader_is_the_replica(pg_factory: SessionFactory) -> None:
    with pg_factory.writer() as session:
        assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is False
        assert session.execute(text("SHOW application_name")).scalar() == "reflexio_store.writer"
    with pg_factory.reader() as session:
        assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        assert session.execute(text("SHOW application_name")).scalar() == "reflexio_store.reader"
        assert session.execute(text("SHOW transaction_read_only")).scalar() == "on"
    with pg_factory.reader(consistency="strong") as session:
        assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is False
        assert session.execute(text("SHOW transaction_read_only")).scalar() == "on"


def test_a_write_becomes_visible_through_the_reader(
    pg_factory: SessionFactory, pg: PgEndpoints
) -> None:
    with pg_factory.writer() as session:
        session.add(Request(request_id="replicated", user_id="u"))
    pg.wait_for_replica()
    with pg_factory.reader() as session:
        assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
        assert session.scalars(select(Request.request_id)).all() == ["replicated"]


def test_engines_without_a_replica_share_one_pool(pg: PgEndpoints, pg_schema: str) -> None:
    config = make_pg_config(pg, pg_schema).model_copy(update={"read_db_url": None})
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    try:
        assert factory.reader_engine is factory.writer_engine
        with factory.reader() as session:
            assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is False
            assert session.execute(text("SHOW transaction_read_only")).scalar() == "on"
            reader_pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
        # The same pooled connection comes back writable for the writer.
        with factory.writer() as session:
            assert session.execute(text("SELECT pg_backend_pid()")).scalar() == reader_pid
            assert session.execute(text("SHOW transaction_read_only")).scalar() == "off"
            session.add(Request(request_id="after-read", user_id="u"))
    finally:
        factory.dispose()


def test_fifty_threads_never_exceed_the_pool_bounds(
    small_pool_factory: SessionFactory, pg: PgEndpoints
) -> None:
    factory = small_pool_factory
    factory.ensure_schema()
    threads, rounds = 50, 6
    errors: list[BaseException] = []
    done = threading.Event()
    observed = {"writer": 0, "reader": 0}

    def monitor() -> None:
        while not done.is_set():
            observed["writer"] = max(
                observed["writer"], _count_connections(pg.primary_url, "reflexio_store.writer")
            )
            assert pg.replica_url is not None
            observed["reader"] = max(
                observed["reader"], _count_connections(pg.replica_url, "reflexio_store.reader")
            )

    def work(t: int) -> None:
        try:
            for i in range(rounds):
                with factory.writer() as session:
                    session.add(Request(request_id=f"{t}-{i}", user_id=f"u{t}"))
                    session.execute(text("SELECT pg_sleep(0.002)"))
                with factory.reader() as session:
                    session.execute(select(func.count()).select_from(Request)).scalar()
                    session.execute(text("SELECT pg_sleep(0.002)"))
        except BaseException as exc:
            errors.append(exc)

    watcher = threading.Thread(target=monitor)
    watcher.start()
    workers = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    done.set()
    watcher.join()

    assert errors == []
    assert 1 <= observed["writer"] <= 3
    assert 1 <= observed["reader"] <= 3
    with factory.reader(consistency="strong") as session:
        assert session.execute(select(func.count()).select_from(Request)).scalar() == 300
    print(f"max server connections seen: {observed}")  # reported in the closing note


def test_a_checkout_that_waits_too_long_raises_our_error(pg: PgEndpoints, pg_schema: str) -> None:
    config = make_pg_config(pg, pg_schema, pool_size=1, pool_acquire_timeout=0.2)
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    try:
        factory.ensure_schema()
        with factory.writer() as held:
            held.execute(text("SELECT 1"))
            with pytest.raises(PoolTimeoutError) as info, factory.writer() as session:
                session.execute(text("SELECT 1"))
        message = str(info.value)
        assert "REFLEXIO_POSTGRES_POOL_SIZE" in message
        assert "REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT" in message
    finally:
        factory.dispose()


def test_dead_connections_are_replaced_before_use(
    pg_factory: SessionFactory, pg: PgEndpoints
) -> None:
    with pg_factory.writer() as session:
        first_pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
    admin = create_engine(pg.primary_url, poolclass=NullPool)
    with admin.connect() as conn:
        # Waits (up to 10 s) until the backend has exited.
        conn.execute(text("SELECT pg_terminate_backend(:p, 10000)"), {"p": first_pid})
    admin.dispose()
    # The connection was returned to the pool moments ago (no idle ping is due): the pool still
    # notices that the server closed it, and hands out a new one.
    with pg_factory.writer() as session:
        second_pid = session.execute(text("SELECT pg_backend_pid()")).scalar()
    assert second_pid != first_pid


def test_a_connection_idle_in_the_pool_is_handed_out_without_a_round_trip(
    pg_factory: SessionFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only connections that are new, idle for PING_AFTER_IDLE_SECONDS or written to by the
    server are pinged; the others go straight to the caller (no ';' query on the wire)."""
    from reflexio_store import engines

    pings: list[object] = []
    dialect = pg_factory.writer_engine.dialect
    original = dialect.do_ping

    def counting_ping(dbapi_connection: object) -> bool:
        pings.append(dbapi_connection)
        return original(dbapi_connection)

    monkeypatch.setattr(dialect, "do_ping", counting_ping)
    with pg_factory.writer() as session:
        session.execute(text("SELECT 1"))
    before = len(pings)
    assert before <= 1  # the first checkout of a new connection
    for _ in range(5):
        with pg_factory.writer() as session:
            session.execute(text("SELECT 1"))
    assert len(pings) == before
    monkeypatch.setattr(engines, "PING_AFTER_IDLE_SECONDS", 0.0)
    with pg_factory.writer() as session:
        session.execute(text("SELECT 1"))
    assert len(pings) == before + 1


def test_statement_timeout_applies_to_reader_transactions(pg: PgEndpoints, pg_schema: str) -> None:
    settings = StorageSettings(REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS=100)
    factory = SessionFactory.from_config(make_pg_config(pg, pg_schema), settings=settings)
    try:
        with pytest.raises(StatementTimeoutError) as info, factory.reader() as session:
            session.execute(text("SELECT pg_sleep(2)"))
        assert "REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS" in str(info.value)
        assert info.value.__cause__ is None  # the driver's error (and parameters) stay behind
        with factory.writer() as session:  # writers are not limited
            session.execute(text("SELECT pg_sleep(0.2)"))
    finally:
        factory.dispose()


def test_each_schema_is_a_separate_organization(pg: PgEndpoints, pg_schema: str) -> None:
    from reflexio_store.migrations import upgrade
    from reflexio_store.settings import resolve_storage

    other = pg_schema + "_b"
    upgrade(resolve_storage(make_pg_config(pg, other), StorageSettings()))
    a = SessionFactory.from_config(make_pg_config(pg, pg_schema), settings=StorageSettings())
    b = SessionFactory.from_config(make_pg_config(pg, other), settings=StorageSettings())
    try:
        with a.writer() as session:
            session.add(Request(request_id="only-in-a", user_id="u"))
        with b.reader(consistency="strong") as session:
            assert session.scalars(select(Request)).all() == []
        with a.reader(consistency="strong") as session:
            assert session.scalars(select(Request.request_id)).all() == ["only-in-a"]
        admin = create_engine(pg.primary_url, poolclass=NullPool)
        with admin.connect() as conn:
            tables = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE schemaname = :s AND tablename = :t"),
                {"s": other, "t": "alembic_version"},
            ).scalar()
        assert tables == 1  # the version table lives in the organization's schema
    finally:
        a.dispose()
        b.dispose()
        admin = create_engine(pg.primary_url, poolclass=NullPool)
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{other}" CASCADE')
        admin.dispose()


def _in_own_transaction(session: Session) -> tuple[bool, str]:
    """(the statement is its transaction's first and only one, transaction_read_only): in
    autocommit PostgreSQL starts a transaction with each statement, at the statement's own
    timestamp; after a BEGIN sent earlier, now() is older than statement_timestamp()."""
    row = session.execute(
        text("SELECT now() = statement_timestamp(), current_setting('transaction_read_only')")
    ).one()
    return bool(row[0]), str(row[1])


@pytest.mark.parametrize("consistency", ["eventual", "strong"])
def test_store_reads_run_each_statement_in_autocommit(
    pg_factory: SessionFactory, consistency: Consistency
) -> None:
    """Store's read operations send no BEGIN READ ONLY / COMMIT: one round trip a statement,
    on the replica and on the primary."""
    own, _ = run_read(pg_factory, consistency, _in_own_transaction)
    assert own is True
    # Sessions handed to callers keep their READ ONLY transaction on the server.
    with pg_factory.reader(consistency) as session:
        assert _in_own_transaction(session) == (False, "on")
        with pytest.raises(DBAPIError, match="read-only transaction"):
            session.execute(text("CREATE TABLE must_not_exist (x int)"))


def test_store_reads_keep_a_transaction_for_the_statement_timeout(
    pg: PgEndpoints, pg_schema: str
) -> None:
    settings = StorageSettings(REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS=100)
    factory = SessionFactory.from_config(make_pg_config(pg, pg_schema), settings=settings)
    try:
        for consistency in ("eventual", "strong"):
            assert run_read(factory, consistency, _in_own_transaction) == (False, "on")
            with pytest.raises(StatementTimeoutError, match="statement timeout"):
                run_read(factory, consistency, lambda s: s.execute(text("SELECT pg_sleep(2)")))
    finally:
        factory.dispose()
