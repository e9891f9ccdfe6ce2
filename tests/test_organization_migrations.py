"""Organizations migrate in any order: public and organization schemas each keep their own version
table, looked up schema-qualified, through every entry point (CLI, alembic -x schema=,
REFLEXIO_POSTGRES_SCHEMA, auto-migrate)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from alembic import command
from reflexio_store import SessionFactory, StorageConfigPostgres
from reflexio_store.cli import main
from reflexio_store.migrations import alembic_config, head_revision, upgrade
from reflexio_store.models import Profile
from reflexio_store.settings import StorageSettings, resolve_storage

ROOT = Path(__file__).resolve().parent.parent


def _storage(url: str, schema: str | None, **settings: object):  # type: ignore[no-untyped-def]
    return resolve_storage(
        StorageConfigPostgres(db_url=url, schema=schema), StorageSettings(**settings)
    )


def _state(url: str, schema: str) -> tuple[int, str | None]:
    """(number of reflexio tables in `schema`, its own version_num) read schema-qualified."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names(schema=schema))
            version = None
            if "alembic_version" in tables:
                version = conn.execute(
                    text(f'SELECT version_num FROM "{schema}".alembic_version')
                ).scalar()
            return len(tables - {"alembic_version"}), version
    finally:
        engine.dispose()


def _cli_migrate(url: str, schema: str | None, revision: str = "head") -> int:
    args = ["migrate", revision, "--url", url]
    return main([*args, "--schema", schema] if schema else args)


def _alembic(url: str, schema: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "alembic", "-x", f"url={url}", "-x", f"schema={schema}", *args],
        cwd=ROOT,
        env=os.environ.copy(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _assert_at_head(url: str, *schemas: str) -> None:
    full = _state(url, "public")[0] if "public" in schemas else None
    for schema in schemas:
        count, version = _state(url, schema)
        assert version == head_revision(), (schema, version)
        assert count >= 10, (schema, count)
        if full is not None:
            assert count == full, schema


def test_public_first_then_organizations(
    pg_fresh_db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _cli_migrate(pg_fresh_db, None) == 0
    assert _cli_migrate(pg_fresh_db, "org_1") == 0
    # alembic's own command line, -x schema=
    result = _alembic(pg_fresh_db, "org_2", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    # REFLEXIO_POSTGRES_SCHEMA through the environment
    monkeypatch.setenv("REFLEXIO_STORAGE", "postgres")
    monkeypatch.setenv("REFLEXIO_DB_URL", pg_fresh_db)
    monkeypatch.setenv("REFLEXIO_POSTGRES_SCHEMA", "org_3")
    upgrade(resolve_storage())
    # auto-migrate on first use
    factory = SessionFactory(_storage(pg_fresh_db, "org_5", REFLEXIO_AUTO_MIGRATE=True))
    try:
        with factory.writer() as session:
            session.add(Profile(profile_id="p5", user_id="u", content="only in org_5"))
    finally:
        factory.dispose()
    _assert_at_head(pg_fresh_db, "public", "org_1", "org_2", "org_3", "org_5")
    capsys.readouterr()
    monkeypatch.setenv("COLUMNS", "200")
    for schema in ("org_1", "org_2", "org_3", "org_5"):
        assert main(["check", "--url", pg_fresh_db, "--schema", schema]) == 0, schema
    assert main(["check", "--url", pg_fresh_db]) == 0
    assert main(["check", "--url", pg_fresh_db, "--schema", "org_never"]) == 1
    # Each schema's rows are its own.
    engine = create_engine(pg_fresh_db, poolclass=NullPool)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM org_5.profiles")).scalar() == 1
        assert conn.execute(text("SELECT count(*) FROM public.profiles")).scalar() == 0
    engine.dispose()


def test_organizations_first_then_public(pg_fresh_db: str) -> None:
    assert _cli_migrate(pg_fresh_db, "org_a") == 0
    assert _cli_migrate(pg_fresh_db, "org_b") == 0
    assert _state(pg_fresh_db, "public") == (0, None)
    assert _cli_migrate(pg_fresh_db, None) == 0
    _assert_at_head(pg_fresh_db, "public", "org_a", "org_b")


def test_interleaved_revisions_and_downgrades(pg_fresh_db: str) -> None:
    assert _cli_migrate(pg_fresh_db, "org_x", "0001") == 0
    assert _cli_migrate(pg_fresh_db, None, "0002") == 0
    assert _state(pg_fresh_db, "org_x")[1] == "0001"
    assert _state(pg_fresh_db, "public")[1] == "0002"
    result = _alembic(pg_fresh_db, "org_y", "upgrade", "0001")
    assert result.returncode == 0, result.stderr
    assert _cli_migrate(pg_fresh_db, "org_x") == 0
    assert _cli_migrate(pg_fresh_db, None) == 0
    result = _alembic(pg_fresh_db, "org_y", "upgrade", "head")
    assert result.returncode == 0, result.stderr
    _assert_at_head(pg_fresh_db, "public", "org_x", "org_y")
    # Downgrading one organization leaves the others where they are.
    assert main(["downgrade", "base", "--yes", "--url", pg_fresh_db, "--schema", "org_x"]) == 0
    assert _state(pg_fresh_db, "org_x") == (0, None)
    _assert_at_head(pg_fresh_db, "public", "org_y")
    # No difference between models and migrations in an organization or in public.
    for schema in ("org_y", None):
        command.check(alembic_config(_storage(pg_fresh_db, schema)))


def test_concurrent_migrations_of_different_organizations(pg_fresh_db: str) -> None:
    """Separate processes (Alembic's context is process-global): each organization's lock is
    its own, and the database-wide pgvector creation is serialised."""
    schemas = ["org_c1", "org_c2", "org_c3", "public"]
    procs = []
    for schema in schemas:
        args = [sys.executable, "-m", "reflexio_store.cli", "migrate", "--url", pg_fresh_db]
        if schema != "public":
            args += ["--schema", schema]
        procs.append(
            subprocess.Popen(
                args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            )
        )
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    assert [code for code, _ in results] == [0] * len(schemas), results
    _assert_at_head(pg_fresh_db, *schemas)


def test_organizations_auto_migrating_at_once_in_one_process(pg_fresh_db: str) -> None:
    """First requests of several organizations arriving together in one process (threads)."""
    from concurrent.futures import ThreadPoolExecutor

    schemas = [f"org_t{i}" for i in range(4)]
    factories = [
        SessionFactory(_storage(pg_fresh_db, schema, REFLEXIO_AUTO_MIGRATE=True))
        for schema in schemas
    ]

    def first_use(factory: SessionFactory) -> None:
        with factory.writer() as session:
            session.add(Profile(profile_id="p", user_id="u", content=str(factory.storage.schema)))

    try:
        with ThreadPoolExecutor(len(factories)) as pool:
            list(pool.map(first_use, factories))
    finally:
        for factory in factories:
            factory.dispose()
    _assert_at_head(pg_fresh_db, *schemas)
