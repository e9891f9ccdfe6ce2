"""The command line on a new user's mistakes: downgrades ask first whatever the revision is
spelled as, migrate never goes back, messages name the revision reached, nothing is created at a
mistyped path, another application's database is refused with advice, and the transfer
commands check their input before touching a target."""

from __future__ import annotations

import io
import sqlite3
import sys
import uuid
from pathlib import Path

import pytest

from reflexio_store.cli import main
from reflexio_store.migrations import head_revision, known_revisions
from tests.conftest import PgEndpoints
from tests.test_cli import _one_error_line, _tables


def _revision(path: Path) -> str | None:
    with sqlite3.connect(path) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


@pytest.fixture
def migrated(tmp_path: Path) -> tuple[Path, str]:
    path = tmp_path / "m.db"
    url = f"sqlite:///{path}"
    assert main(["migrate", "--url", url]) == 0
    return path, url


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))


@pytest.mark.usefixtures("no_terminal")
@pytest.mark.parametrize("spelled", ["-1", "-8", "0001", "base"])
def test_every_downgrade_asks_first(
    migrated: tuple[Path, str], capsys: pytest.CaptureFixture[str], spelled: str
) -> None:
    """`downgrade -8` dropped every table without asking: only the word `base` was guarded."""
    path, url = migrated
    capsys.readouterr()
    assert main(["downgrade", spelled, "--url", url]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "without confirmation" in line and "--yes" in line
    assert _revision(path) == head_revision() and "profiles" in _tables(url)


def test_downgrade_and_migrate_name_the_revision_reached(
    migrated: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    path, url = migrated
    known = known_revisions()
    capsys.readouterr()
    assert main(["downgrade", "-2", "--yes", "--url", url]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert _revision(path) == known[-3]
    assert f"from {known[-1]} to {known[-3]}" in out
    assert main(["migrate", "+1", "--url", url]) == 0
    assert f"from {known[-3]} to {known[-2]}" in " ".join(capsys.readouterr().out.split())
    assert _revision(path) == known[-2]
    assert main(["migrate", "--url", url]) == 0
    assert main(["migrate", "--url", url]) == 0
    assert f"already at {known[-1]}" in " ".join(capsys.readouterr().out.split())


def test_migrate_to_an_older_revision_is_refused(
    migrated: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    """It printed "Migrated ... to 0003" and changed nothing."""
    path, url = migrated
    capsys.readouterr()
    assert main(["migrate", "0003", "--url", url]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "migrate only upgrades" in line and "reflexio-store downgrade 0003" in line
    assert _revision(path) == head_revision()


def test_check_and_downgrade_create_nothing_at_a_mistyped_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-folder" / "typo.db"
    url = f"sqlite:///{missing}"
    assert main(["check", "--url", url]) == 1
    assert "no file" in capsys.readouterr().out
    assert main(["downgrade", "base", "--yes", "--url", url]) == 2
    assert "no SQLite database" in _one_error_line(capsys.readouterr().err)
    assert not missing.parent.exists()


def _reflexio_like(path: Path) -> None:
    """Tables of reflexio_store's names and no alembic_version: Reflexio's own file, say."""
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE profiles (profile_id TEXT PRIMARY KEY, content TEXT)")
        conn.execute("CREATE TABLE agent_playbooks (agent_playbook_id INTEGER PRIMARY KEY)")
        conn.execute("INSERT INTO profiles VALUES ('p1', 'their data')")


def test_another_applications_database_is_refused_with_advice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reflexio's own file (the same default path) failed with "table agent_playbooks already
    exists" and advice to check the folder's permissions."""
    monkeypatch.setenv("COLUMNS", "400")
    path = tmp_path / "reflexio.db"
    _reflexio_like(path)
    url = f"sqlite:///{path}"
    assert main(["migrate", "--url", url]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "agent_playbooks, profiles" in line and "import-reflexio" in line
    assert "writable" not in line and "already exists" not in line
    assert main(["check", "--url", url]) == 1
    assert "another application" in " ".join(capsys.readouterr().out.split())
    assert _tables(url) == {"profiles", "agent_playbooks"}
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT content FROM profiles").fetchall() == [("their data",)]


def test_transfer_commands_check_their_input_before_the_target(
    migrated: tuple[Path, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, source = migrated
    target = tmp_path / "target.db"
    to = f"sqlite:///{target}"
    assert main(["copy", "--from", source, "--to", to, "--batch", "0"]) == 2
    assert "--batch must be an integer from 1 to 50000" in _one_error_line(capsys.readouterr().err)
    assert main(["copy", "--from", source, "--to", to, "--to-schema", "org_1"]) == 2
    assert "--to-schema org_1 applies to PostgreSQL" in _one_error_line(capsys.readouterr().err)
    assert main(["import-reflexio", str(tmp_path / "missing.db"), "--url", to]) == 2
    assert "No Reflexio database" in _one_error_line(capsys.readouterr().err)
    assert not target.exists()
    # --debug after the command, as for every other command.
    assert main(["copy", "--debug", "--from", source, "--to", to, "--batch", "0"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_a_reflexio_file_is_not_imported_into_itself(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "reflexio.db"
    _reflexio_like(path)
    assert main(["import-reflexio", str(path), "--url", f"sqlite:///{path}"]) == 2
    assert "both the Reflexio file and the target" in _one_error_line(capsys.readouterr().err)
    assert _tables(f"sqlite:///{path}") == {"profiles", "agent_playbooks"}


def test_check_shows_settings_that_do_not_apply_and_bad_row_limits(
    migrated: tuple[Path, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL-only variables were accepted silently on SQLite (the statement timeout even
    shown as if it applied), and a misspelt or malformed row limit only failed later, inside
    enforce_row_limits."""
    from reflexio_store import ConfigurationError, SessionFactory, StorageConfigSQLite
    from reflexio_store.store import Store

    _, url = migrated
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS", "100")
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOLER", "pgbouncer")
    capsys.readouterr()
    assert main(["check", "--url", url]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "statement_timeout_ms │ (PostgreSQL only)" in out
    assert "REFLEXIO_POSTGRES_POOLER, REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS" in out
    monkeypatch.setenv("REFLEXIO_ROW_LIMIT_PROFLES", "5")
    assert main(["check", "--url", url]) == 1
    assert "Unknown row limit variable(s) REFLEXIO_ROW_LIMIT_PROFLES" in " ".join(
        capsys.readouterr().out.split()
    )
    store = Store(SessionFactory.from_config(StorageConfigSQLite(db_url=url)))
    with pytest.raises(ConfigurationError, match="REFLEXIO_ROW_LIMIT_PROFILES"):
        store.enforce_row_limits()
    monkeypatch.delenv("REFLEXIO_ROW_LIMIT_PROFLES")
    monkeypatch.setenv("REFLEXIO_ROW_LIMIT_PROFILES", "abc")
    assert main(["check", "--url", url]) == 1
    assert "Invalid row limit settings" in " ".join(capsys.readouterr().out.split())
    store.factory.dispose()


def test_a_locked_file_a_file_for_a_folder_and_the_memory_url_read_clearly(
    migrated: tuple[Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path, url = migrated
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT", "0.2")
    from reflexio_store.engines import sqlite_module

    # The same SQLite library as the store's: two libraries in one process miss each other's locks.
    holder = sqlite_module().connect(str(path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the file
    try:
        capsys.readouterr()
        assert main(["downgrade", "-1", "--yes", "--url", url]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "stayed locked by another writer" in line, line
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _revision(path) == head_revision()
    afile = tmp_path / "afile"
    afile.write_text("")
    assert main(["migrate", "--url", f"sqlite:///{afile}/store.db"]) == 2
    assert f"{afile} is a file, not a folder" in _one_error_line(capsys.readouterr().err)
    assert main(["check", "--url", "sqlite:///:memory:"]) == 0
    out = capsys.readouterr().out
    assert "sqlite:///:memory:" in out and "%3A" not in out


def test_an_organization_schema_holding_another_applications_tables_is_refused(
    pg: PgEndpoints, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL, a second organization: its schema holds a `profiles` table of another
    application and no reflexio_store revision. It is refused and left as it was, while an
    organization migrated beside it is not mistaken for a foreign one."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    monkeypatch.setenv("COLUMNS", "400")
    foreign, ours = f"org_f_{uuid.uuid4().hex[:8]}", f"org_o_{uuid.uuid4().hex[:8]}"
    engine = create_engine(pg.primary_url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{foreign}"')
            conn.exec_driver_sql(f'CREATE TABLE "{foreign}".profiles (id int, note text)')
            conn.exec_driver_sql(f"INSERT INTO \"{foreign}\".profiles VALUES (1, 'theirs')")
        assert main(["migrate", "--url", pg.primary_url, "--schema", ours]) == 0
        capsys.readouterr()
        assert main(["migrate", "--url", pg.primary_url, "--schema", foreign]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert (
            f"schema {foreign}" in line and "(profiles)" in line and "Nothing was changed" in line
        )
        assert main(["check", "--url", pg.primary_url, "--schema", foreign]) == 1
        assert "another application" in " ".join(capsys.readouterr().out.split())
        with engine.connect() as conn:
            tables = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = :s"), {"s": foreign}
            ).scalars()
            assert set(tables) == {"profiles"}
        assert main(["check", "--url", pg.primary_url, "--schema", ours]) == 0
    finally:
        with engine.begin() as conn:
            for schema in (foreign, ours):
                conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        engine.dispose()
