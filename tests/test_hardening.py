"""Defects found in review, each pinned by a test that failed before its fix."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from reflexio_store import (
    ConfigurationError,
    SessionFactory,
    StorageConfigPostgres,
    StorageConfigSQLite,
    ValidationError,
)
from reflexio_store.cli import main
from reflexio_store.settings import StorageSettings
from reflexio_store.store import AsyncStore, Store
from reflexio_store.urls import parse_database_url
from tests.conftest import PgEndpoints

ROOT = Path(__file__).resolve().parent.parent
SECRET = "TOPSECRET-9"


def test_configuration_merges_from_many_threads_all_survive(factory: SessionFactory) -> None:
    store = Store(factory)
    org = store.create_organization("merge@example.com", configuration_json={})
    threads = 12
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            barrier.wait()
            store.update_configuration(org.id, {f"k{i}": i}, merge=True)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    assert errors == []
    config = store.get_configuration(org.id, consistency="strong")
    assert config == {f"k{i}": i for i in range(threads)}


def test_in_memory_sqlite_is_safe_across_threads() -> None:
    factory = SessionFactory.from_config(
        StorageConfigSQLite(db_url="sqlite:///:memory:"), settings=StorageSettings()
    )
    store = Store(factory)
    threads, calls, rows = 4, 25, 10
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for c in range(calls):
                store.add_profiles(
                    [{"user_id": f"u{t}", "content": f"fact {t}-{c}-{r}"} for r in range(rows)]
                )
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    try:
        assert errors == []
        assert store.count_profiles() == threads * calls * rows
    finally:
        factory.dispose()


def test_async_in_memory_sqlite_store_works_raw_async_session_refused_clearly() -> None:
    factory = SessionFactory.from_config(
        StorageConfigSQLite(db_url="sqlite:///:memory:"), settings=StorageSettings()
    )

    async def raw_session() -> None:
        async with factory.async_writer():
            pass

    try:
        # AsyncStore shares the sync pool, so it sees the one in-memory database.
        Store(factory).save_state("mem-run", {"status": "running"})
        state = asyncio.run(AsyncStore(factory).load_state("mem-run"))
        assert state is not None and state["status"] == "running"
        with pytest.raises(ConfigurationError, match="Async sessions need an SQLite file"):
            asyncio.run(raw_session())
    finally:
        factory.dispose()


def test_password_in_query_string_is_masked() -> None:
    raw = f"postgresql://user@db/app?password={SECRET}&sslmode=require"
    config = StorageConfigPostgres(db_url=raw)
    for shown in (
        parse_database_url(raw).masked(),
        repr(parse_database_url(raw)),
        repr(config),
        repr(SessionFactory.from_config(config, settings=StorageSettings())),
    ):
        assert SECRET not in shown
        assert "password=***" in shown


@pytest.mark.parametrize(
    "bad",
    [{"note": "a\x00b"}, {"a\x00": 1}, {"nested": [{"x": float("nan")}]}, {"x": float("inf")}],
)
def test_json_that_postgres_cannot_store_is_refused_on_both(
    factory: SessionFactory, bad: dict[str, object]
) -> None:
    store = Store(factory)
    with pytest.raises(ValidationError):
        store.save_state("run-1", {"status": "running", "pipeline_context": bad})
    with pytest.raises(ValidationError):
        store.upsert_operation_state("svc", bad)
    with pytest.raises(ValidationError):
        store.add_profiles([{"user_id": "u", "content": "c", "custom_features": bad}])
    assert store.load_state("run-1") is None
    assert store.count_profiles() == 0


def test_secrets_in_configuration_never_reach_an_error(factory: SessionFactory) -> None:
    store = Store(factory)
    org = store.create_organization("secret@example.com")
    config = {"storage": {"db_url": f"postgresql://u:{SECRET}@h/db"}, "n": "\x00"}
    with pytest.raises(ValidationError) as info:
        store.update_configuration(org.id, config)
    assert SECRET not in str(info.value)


def test_organizations_migrating_for_the_first_time_at_once(pg: PgEndpoints) -> None:
    """A fresh database: four schemas upgrade concurrently; one creates pgvector, none fail."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg.primary_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = make_url(pg.primary_url).set(database=name).render_as_string(hide_password=False)
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-m", "reflexio_store.cli", "migrate", "--url", url,
                 "--schema", f"org_{i}"],
                cwd=ROOT, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                text=True,
            )
            for i in range(4)
        ]  # fmt: skip
        results = [(p.wait(timeout=180), p.stderr.read() if p.stderr else "") for p in procs]
        assert [code for code, _ in results] == [0, 0, 0, 0], results
        fresh = create_engine(url, poolclass=NullPool)
        with fresh.connect() as conn:
            count = conn.execute(
                text("SELECT count(*) FROM pg_tables WHERE tablename = 'profiles'")
            ).scalar()
        fresh.dispose()
        assert count == 4
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.mark.parametrize("schema", ['x"; DROP TABLE t; --', "1abc", "has space"])
def test_schema_names_from_the_command_line_are_validated(
    schema: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["migrate", "--url", "postgresql://u@127.0.0.1:1/db", "--schema", schema]) == 2
    assert "Invalid PostgreSQL schema name" in capsys.readouterr().err
    result = subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"schema={schema}", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "REFLEXIO_DB_URL": f"sqlite:///{tmp_path / 'x.db'}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Invalid PostgreSQL schema name" in result.stderr


@pytest.mark.parametrize("ttl", [1e20, 10**12, float("inf"), -1, 0])
def test_share_link_ttl_out_of_range_is_a_validation_error(
    sqlite_factory: SessionFactory, ttl: float
) -> None:
    with pytest.raises(ValidationError, match="ttl must be"):
        Store(sqlite_factory).create_share_link("profile", "p1", ttl=ttl)


@pytest.mark.parametrize(
    ("version", "ok"),
    [("0.8.0", True), ("0.8.2", True), ("0.10.1", True), ("1.0", True), ("0.7.4", False),
     ("0.5.1", False)],
)  # fmt: skip
def test_pgvector_version_requirement(version: str, ok: bool) -> None:
    from reflexio_store.migrations import pgvector_version_ok

    assert pgvector_version_ok(version) is ok
