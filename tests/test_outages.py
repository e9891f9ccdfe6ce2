"""Outages reach callers as reflexio_store's own errors; an unusable replica is invisible to
readers. Real servers only: the session's cluster, a socket where nothing listens, SQLite files.
(Stopping and killing servers happens in test_faults.py, on its own cluster.)"""

from __future__ import annotations

import logging
import re
import threading
import traceback
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from reflexio_store import SessionFactory, StorageConfigPostgres, StorageConfigSQLite
from reflexio_store.errors import DatabaseBusyError, DatabaseUnavailableError
from reflexio_store.replicas import reset_health
from reflexio_store.settings import StorageSettings, split_urls
from reflexio_store.store import Store
from tests.conftest import PgEndpoints
from tests.support.auth import PasswordRole


@pytest.fixture(autouse=True)
def _fresh_health() -> Iterator[None]:
    """Replica health is per process: no test here leaves a replica marked down for others."""
    reset_health()
    yield
    reset_health()


def dead_url(pg: PgEndpoints, tmp_path: Path) -> str:
    """The primary's URL pointed at a socket directory where no server listens."""
    url = make_url(pg.primary_url)
    return url.update_query_dict({"host": str(tmp_path)}).render_as_string(hide_password=False)


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """No driver exception travels with ours, and no secret is in it anywhere."""
    assert exc.__cause__ is None and exc.__suppress_context__
    rendered = "".join(traceback.format_exception(exc)) + repr(exc) + repr(vars(exc))
    for secret in secrets:
        assert secret not in rendered


def test_bad_password_is_unavailable_with_the_server_reason(
    pg: PgEndpoints, pg_password_role: PasswordRole
) -> None:
    config = StorageConfigPostgres(db_url=pg_password_role.bad_url)
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    with pytest.raises(DatabaseUnavailableError) as info, factory.writer() as session:
        session.execute(text("SELECT 1"))
    message = str(info.value)
    assert "password authentication failed" in message
    assert pg_password_role.name in message and "***" in message
    assert_clean(info.value, pg_password_role.password)
    factory.dispose()


def test_unreachable_primary_is_unavailable_after_bounded_retries(
    pg: PgEndpoints, tmp_path: Path
) -> None:
    factory = SessionFactory.from_config(
        StorageConfigPostgres(db_url=dead_url(pg, tmp_path)), settings=StorageSettings()
    )
    factory._schema_checked = True  # reach the session path itself, not the schema check
    for open_ in (factory.writer, factory.writer_connection):
        with pytest.raises(DatabaseUnavailableError) as info, open_() as handle:
            handle.execute(text("SELECT 1"))
        assert "No such file or directory" in str(info.value)
        assert "Nothing was sent" in str(info.value)  # never connected: safe to repeat
        assert_clean(info.value)
    factory.dispose()


@pytest.mark.parametrize("operation", ["add_profiles", "save_state"])
def test_sqlite_busy_past_its_timeout_names_the_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, operation: str
) -> None:
    """add_profiles writes in an ORM session; save_state is one statement straight on the
    driver (reflexio_store.one_statement): both wait out the busy timeout, then say so."""
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT", "0.2")
    config = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path / 'busy.db'}")
    holder = SessionFactory.from_config(config, settings=StorageSettings())
    other = SessionFactory.from_config(config, settings=StorageSettings())
    store = Store(other)

    secret = f"token-{uuid.uuid4().hex}"  # built here, so no source line in a traceback shows it

    def write() -> object:
        if operation == "save_state":
            store.save_state("run-1", {"status": "running", "metadata": {"token": secret}})
            return store.load_state("run-1")
        return store.add_profiles([{"user_id": "u", "content": "c"}])

    with holder.writer() as session:
        session.execute(text("SELECT 1"))  # BEGIN IMMEDIATE: this file's write lock is held
        with pytest.raises(DatabaseBusyError) as info:
            write()
    assert "REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT" in str(info.value)
    assert "busy.db" in str(info.value)
    assert_clean(info.value, secret)
    assert write()  # free again: it works
    holder.dispose()
    other.dispose()


def test_unreachable_replica_falls_back_to_the_primary_and_is_logged_once(
    pg: PgEndpoints, pg_schema: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dead = dead_url(pg, tmp_path)
    config = StorageConfigPostgres(db_url=pg.primary_url, read_db_urls=(dead,), schema=pg_schema)
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    store = Store(factory)
    ids = store.add_profiles([{"user_id": "u", "content": "dark mode everywhere"}])
    caplog.set_level(logging.WARNING, logger="reflexio_store.replicas")
    for _ in range(5):
        assert [p.profile_id for p in store.list_profiles(user_id="u")] == ids
        with factory.reader() as session:
            assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is False
    (replica,) = factory.replicas.replicas
    assert replica.health.state == "down"
    assert "No such file or directory" in (replica.health.reason or "")
    downs = [r for r in caplog.records if "is down" in r.getMessage()]
    assert len(downs) == 1
    status = factory.replicas.status()
    assert status[0]["state"] == "down" and status[0]["reachable"] is False
    factory.dispose()


def test_reads_spread_over_several_replicas(pg: PgEndpoints, pg_schema: str) -> None:
    assert pg.replica_url is not None
    first = make_url(pg.replica_url)
    second = first.update_query_dict({"connect_timeout": "7"})  # same server, another pool
    urls = f"{first.render_as_string(False)}, {second.render_as_string(False)}"
    config = StorageConfigPostgres(db_url=pg.primary_url, read_db_url=urls, schema=pg_schema)
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    assert len(factory.replicas.replicas) == 2
    served = []
    for _ in range(6):
        with factory.reader() as session:
            assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is True
            served.append(session.get_bind())
    # both replicas took reads, each through its own pool
    assert {b.url for b in served} == {r.engine.url for r in factory.replicas.replicas}
    assert len({id(r.engine.pool) for r in factory.replicas.replicas}) == 2
    assert all(r.health.state == "up" for r in factory.replicas.replicas)
    factory.dispose()


def test_strong_reads_stay_on_the_primary(pg_factory: SessionFactory) -> None:
    with pg_factory.reader("strong") as session:
        assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is False
    with pg_factory.reader() as session:
        assert session.execute(text("SELECT pg_is_in_recovery()")).scalar() is True


def test_reader_url_lists_keep_libpq_multi_host_commas() -> None:
    raw = "postgresql://a@h1:5432,h2:5432/db, postgres://b@r2/db\npostgresql://c@r3/db"
    assert split_urls(raw) == [
        "postgresql://a@h1:5432,h2:5432/db",
        "postgres://b@r2/db",
        "postgresql://c@r3/db",
    ]
    assert split_urls(None) == [] and split_urls(" , ") == []


def test_check_shows_each_replica_state_and_lag(
    pg: PgEndpoints,
    pg_schema: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from reflexio_store.cli import main

    assert pg.replica_url is not None
    monkeypatch.setenv("REFLEXIO_STORAGE", "postgres")
    monkeypatch.setenv("REFLEXIO_DB_URL", pg.primary_url)
    monkeypatch.setenv(
        "REFLEXIO_POSTGRES_READ_DB_URL", f"{pg.replica_url} {dead_url(pg, tmp_path)}"
    )
    monkeypatch.setenv("REFLEXIO_POSTGRES_SCHEMA", pg_schema)
    monkeypatch.setenv("COLUMNS", "300")
    pg.wait_for_replica()
    assert main(["check"]) == 0  # an unreachable replica is reported, not fatal
    out = capsys.readouterr().out
    # The lag is measured against the clock: WAL written by a test a moment earlier (autovacuum,
    # a checkpoint) can show as a few ms even on a caught-up replica.
    assert re.search(r"reachable, up, lag \d+ ms", out), out
    assert "unreachable: No such file or directory" in out


def test_a_read_whose_replica_connection_breaks_runs_again_on_the_primary(
    pg_factory: SessionFactory, caplog: pytest.LogCaptureFixture
) -> None:
    from reflexio_store.reads import run_read

    calls: list[bool] = []

    def read(session: Session) -> bool:
        on_replica = bool(session.execute(text("SELECT pg_is_in_recovery()")).scalar())
        calls.append(on_replica)
        if on_replica:  # the replica drops this connection in the middle of the read
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return on_replica

    caplog.set_level(logging.WARNING, logger="reflexio_store.replicas")
    assert run_read(pg_factory, "eventual", read) is False  # answered by the primary
    assert calls == [True, False]
    (replica,) = pg_factory.replicas.replicas
    assert replica.health.state == "down"
    assert len([r for r in caplog.records if "is down" in r.getMessage()]) == 1


async def test_async_reader_falls_back_from_an_unreachable_replica(
    pg: PgEndpoints, pg_schema: str, tmp_path: Path
) -> None:
    config = StorageConfigPostgres(
        db_url=pg.primary_url, read_db_urls=(dead_url(pg, tmp_path),), schema=pg_schema
    )
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    async with factory.async_reader() as session:
        assert (await session.execute(text("SELECT pg_is_in_recovery()"))).scalar() is False
    assert factory.replicas.replicas[0].health.state == "down"
    await factory.adispose()


def test_a_new_file_locked_by_another_process_is_waited_for_not_refused(tmp_path: Path) -> None:
    """Switching a new SQLite file to WAL needs an exclusive lock; while another connection is
    in a write transaction (its first migration) SQLite refuses at once, without its busy
    handler. Opening a connection waits instead (two processes migrating a new file together
    failed this way in 2 of 40 tries)."""
    from reflexio_store.engines import sqlite_module

    path = tmp_path / "new.db"
    holder = sqlite_module().connect(str(path), isolation_level=None)
    holder.execute("CREATE TABLE t (x)")  # a rollback-journal file, as a first migration starts
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO t VALUES (1)")  # a write transaction under way (RESERVED lock)
    config = StorageConfigSQLite(db_url=f"sqlite:///{path}")
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    outcome: list[object] = []

    def connect() -> None:
        try:
            with factory.writer_engine.connect() as conn:
                outcome.append(conn.exec_driver_sql("PRAGMA journal_mode").scalar())
        except Exception as exc:
            outcome.append(exc)

    opener = threading.Thread(target=connect)
    opener.start()
    try:
        opener.join(0.5)
        assert opener.is_alive() and not outcome, f"gave up while the lock was held: {outcome}"
    finally:
        holder.execute("COMMIT")
        holder.close()
    opener.join(30)
    assert outcome == ["wal"]
    factory.dispose()
