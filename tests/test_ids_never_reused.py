"""Integer ids are never handed out twice, on SQLite as on PostgreSQL (revision 0007): a reader
that remembers the last id it processed (Reflexio's watermarks) must never skip a new row.
Revision 0007 rebuilds SQLite's tables to get there, so it must keep every row, link, full-text
entry and trigger, and its downgrade must too."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, select, text

from reflexio_store import SessionFactory, StorageConfigSQLite
from reflexio_store.engines import sqlite_module
from reflexio_store.errors import ConfigurationError, SchemaNotReadyError
from reflexio_store.migrations import downgrade, upgrade
from reflexio_store.models import Base, Organization, Profile
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store

KEYED_TABLES = sorted(
    t.name for t in Base.metadata.tables.values() if t.autoincrement_column is not None
)


@pytest.mark.parametrize(
    ("model", "row"),
    [
        (Profile, {"user_id": "u", "content": "c", "extractor_names": [], "tags": []}),
        (Organization, {"is_active": True, "configuration_json": {}}),
    ],
)
def test_the_id_of_a_deleted_newest_row_is_not_given_again(
    factory: SessionFactory, model: Any, row: dict[str, Any]
) -> None:
    key = model.__table__.autoincrement_column
    unique = "login" if model is Organization else "profile_id"

    def add(n: int) -> None:
        with factory.writer() as s:
            s.add(model(**row, **{unique: f"row-{n}"}))

    add(1)
    add(2)
    with factory.writer() as s:
        newest = s.execute(select(func.max(key))).scalar_one()
        s.execute(delete(model.__table__).where(key == newest))
    add(3)
    with factory.reader("strong") as s:
        again = s.execute(select(func.max(key))).scalar_one()
    assert again > newest, f"{model.__tablename__}: id {newest} was handed out again"


@contextlib.contextmanager
def _connect(path: Path) -> Iterator[Any]:
    """The store's own SQLite library: two SQLite libraries in one process would release each
    other's POSIX locks on the file."""
    conn = sqlite_module().connect(str(path))
    try:
        yield conn
    finally:
        conn.close()


def _table_sql(path: Path) -> dict[str, str]:
    with _connect(path) as conn:
        return dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'"))


def _contents(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table and the schema's indexes and triggers, for comparison."""
    with _connect(path) as conn:
        listed = conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name NOT LIKE '%_fts%' AND name != 'alembic_version'"
        )
        tables = [name for (name,) in listed]
        rows = {t: sorted(conn.execute(f'SELECT * FROM "{t}"'), key=repr) for t in tables}
        rows["schema objects"] = sorted(
            conn.execute(
                "SELECT type, name, tbl_name, sql FROM sqlite_master "
                "WHERE type IN ('index', 'trigger') AND sql IS NOT NULL"
            )
        )
        return rows


def _seed(store: Store) -> dict[str, Any]:
    org = store.create_organization("org@example.com", configuration_json={"k": 1})
    store.create_api_token(org.id, "ci")
    users = store.add_user_playbooks(
        [
            {"user_id": f"u{i}", "playbook_name": "tone", "content": f"be brief {i}"}
            for i in range(3)
        ]
    )
    (agent,) = store.add_agent_playbooks([{"playbook_name": "tone", "content": "aggregated"}])
    store.add_agent_playbook_sources(agent, users)
    store.add_profiles(
        [{"user_id": "u1", "content": f"likes purple elephants {i}"} for i in range(5)]
    )
    store.add_request(
        "u1", [{"role": "user", "content": "purple elephants again"}], request_id="r1"
    )
    job = store.create_optimization_job(playbook_name="tone")
    candidate = store.add_optimization_candidate(job.id, "candidate")
    store.add_optimization_evaluation(candidate.id, score=0.5)
    store.add_optimization_event(job.id, "started")
    return {"org": org.id, "job": job.id, "agent": agent}


def _fts_hits(path: Path) -> list[tuple[Any, ...]]:
    with _connect(path) as conn:
        return sorted(
            conn.execute("SELECT 'p', rowid FROM profiles_fts WHERE profiles_fts MATCH 'elephant' "
                         "UNION ALL SELECT 'i', rowid FROM interactions_fts "
                         "WHERE interactions_fts MATCH 'elephant'")
        )  # fmt: skip


def test_revision_0007_and_its_downgrade_keep_every_row_link_and_trigger(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    storage = resolve_storage(StorageConfigSQLite(db_url=f"sqlite:///{path}"), StorageSettings())
    upgrade(storage, "0006")
    assert "AUTOINCREMENT" not in _table_sql(path)["profiles"]
    upgrade(storage)
    factory = SessionFactory(storage)
    store = Store(factory)
    ids = _seed(store)
    factory.dispose()
    before, hits = _contents(path), _fts_hits(path)
    assert len(hits) == 6

    downgrade(storage, "0006")
    sql = _table_sql(path)
    assert not [t for t in KEYED_TABLES if "AUTOINCREMENT" in sql[t]]
    assert _contents(path) == before and _fts_hits(path) == hits

    upgrade(storage)
    sql = _table_sql(path)
    assert [t for t in KEYED_TABLES if "AUTOINCREMENT" not in sql[t]] == []
    assert _contents(path) == before and _fts_hits(path) == hits

    factory = SessionFactory(storage)
    store = Store(factory)
    try:
        # Triggers still follow new rows (full text, vector change log); cascades still run.
        store.add_profiles([{"user_id": "u2", "content": "an elephant parade"}])
        assert len(_fts_hits(path)) == 7
        with factory.writer() as s:
            changes = s.execute(text("SELECT count(*) FROM vector_changes")).scalar_one()
        assert changes >= 1
        store.delete_organization(ids["org"])
        store.delete_optimization_job(ids["job"])
        remaining = _contents(path)
        assert remaining["api_tokens"] == []
        assert remaining["playbook_optimization_candidates"] == []
        assert remaining["playbook_optimization_events"] == []
        assert remaining["playbook_optimization_evaluations"] == []
        assert len(remaining["agent_playbook_sources"]) == 3
        # And the organization's id is not given to the next one.
        again = store.create_organization("next@example.com")
        assert again.id > ids["org"]
    finally:
        factory.dispose()


def test_revision_0007_refuses_to_run_with_foreign_keys_on(tmp_path: Path) -> None:
    """Run by hand on a connection with foreign keys on, the rebuild would empty child tables
    through ON DELETE CASCADE: it refuses, and changes nothing."""
    from alembic import command
    from reflexio_store.engines import create_sqlite_engine
    from reflexio_store.migrations import alembic_config

    path = tmp_path / "fk.db"
    storage = resolve_storage(StorageConfigSQLite(db_url=f"sqlite:///{path}"), StorageSettings())
    upgrade(storage, "0006")
    engine = create_sqlite_engine(storage.writer_url, storage.writer_pool)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")  # in a transaction: env.py cannot turn them off
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            cfg = alembic_config(storage)
            cfg.attributes["connection"] = conn
            with pytest.raises(SchemaNotReadyError, match="foreign keys off"):
                command.upgrade(cfg, "head")
    finally:
        engine.dispose()
    assert "AUTOINCREMENT" not in _table_sql(path)["profiles"]


def test_revision_0007_offline_is_a_configuration_error(tmp_path: Path) -> None:
    """`migrate --sql` cannot print a rebuild that reads the stored table definitions: a clear
    ConfigurationError (no traceback from the CLI), and the database is left as it was."""
    import subprocess
    import sys

    path = tmp_path / "offline.db"
    storage = resolve_storage(StorageConfigSQLite(db_url=f"sqlite:///{path}"), StorageSettings())
    upgrade(storage, "0006")
    with pytest.raises(ConfigurationError, match="run it online"):
        upgrade(storage, "0006:0007", sql=True)
    result = subprocess.run(
        [sys.executable, "-m", "reflexio_store.cli", "migrate", "--sql"],
        env={"PATH": "/usr/bin:/bin", "REFLEXIO_DB_URL": f"sqlite:///{path}"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "run it online" in result.stderr and "Traceback" not in result.stderr
    assert "AUTOINCREMENT" not in _table_sql(path)["profiles"]


def _at_0006(tmp_path: Path, name: str) -> tuple[Path, Any]:
    path = tmp_path / name
    storage = resolve_storage(StorageConfigSQLite(db_url=f"sqlite:///{path}"), StorageSettings())
    upgrade(storage, "0006")
    return path, storage


def test_rows_orphaned_before_revision_0007_do_not_block_it(tmp_path: Path) -> None:
    """A row orphaned by a tool that ran with foreign keys off (the sqlite3 shell's default) is
    not the rebuild's doing: the upgrade goes through and leaves it as it was."""
    path, storage = _at_0006(tmp_path, "orphan.db")
    with _connect(path) as conn:
        conn.execute(
            "INSERT INTO api_tokens (id, organization_id, token_hash, created_at) "
            "VALUES (7, 999, 'h', '2026-01-01 00:00:00')"
        )
        conn.commit()
    upgrade(storage)
    with _connect(path) as conn:
        assert conn.execute("SELECT id, organization_id FROM api_tokens").fetchall() == [(7, 999)]
        assert "AUTOINCREMENT" in _table_sql(path)["api_tokens"]


def test_the_newest_row_deleted_before_revision_0007_does_not_give_its_id_again(
    tmp_path: Path,
) -> None:
    """Before 0007 SQLite would hand out a deleted newest id again; the rebuild starts the
    sequence above every id the vector change log has seen inserted."""
    path, storage = _at_0006(tmp_path, "seeded.db")
    with _connect(path) as conn:
        for n in range(3):
            conn.execute(
                "INSERT INTO profiles (profile_id, user_id, content, extractor_names, tags, "
                "status) VALUES (?, 'u', 'c', '[]', '[]', 'current')",
                (f"p{n}",),
            )
        conn.execute("DELETE FROM profiles WHERE id = 3")
        conn.commit()
    upgrade(storage)
    factory = SessionFactory(storage)
    try:
        with factory.writer() as s:
            s.add(
                Profile(profile_id="p-new", user_id="u", content="c", extractor_names=[], tags=[])
            )
        with factory.reader() as s:
            newest = s.execute(select(func.max(Profile.id))).scalar_one()
        assert newest == 4, "id 3 belonged to a deleted row and must not be handed out again"
    finally:
        factory.dispose()


def test_an_in_memory_database_keeps_foreign_keys_on_after_migrating_itself() -> None:
    """An in-memory file migrates on its one pooled connection, with foreign keys off for the
    rebuild; that connection serves the application next, with them on again."""
    factory = SessionFactory.from_config(
        StorageConfigSQLite(db_url="sqlite:///:memory:"), settings=StorageSettings()
    )
    store = Store(factory)
    try:
        org = store.create_organization("mem@example.com")
        store.create_api_token(org.id, "ci")
        with factory.writer() as s:
            assert s.execute(text("PRAGMA foreign_keys")).scalar() == 1
        store.delete_organization(org.id)
        with factory.reader() as s:
            assert s.execute(text("SELECT count(*) FROM api_tokens")).scalar() == 0
    finally:
        factory.dispose()
