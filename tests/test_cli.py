"""The reflexio-store command line: check reports the deployment with secrets masked."""

from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from reflexio_store import ConfigurationError, SessionFactory
from reflexio_store.cli import main
from reflexio_store.migrations import head_revision
from reflexio_store.models import Profile
from reflexio_store.settings import StorageSettings
from tests.conftest import PgEndpoints, make_pg_config
from tests.support.auth import PasswordRole

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "hunter2-not-logged"


def _with_password(url: str) -> str:
    # Unix-socket trust auth ignores the password, so it only travels through our code.
    return make_url(url).set(password=PASSWORD).render_as_string(hide_password=False)


def test_check_reports_reader_and_masks_secrets(
    pg: PgEndpoints,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert pg.replica_url is not None
    monkeypatch.setenv("REFLEXIO_STORAGE", "postgres")
    monkeypatch.setenv("REFLEXIO_DB_URL", _with_password(pg.primary_url))
    monkeypatch.setenv("REFLEXIO_POSTGRES_READ_DB_URL", _with_password(pg.replica_url))
    monkeypatch.setenv("REFLEXIO_POSTGRES_SCHEMA", pg_schema)
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert PASSWORD not in out
    assert "***" in out
    assert "reachable, up, lag " in out
    assert f"{head_revision()} (head {head_revision()})" in out
    assert "pgvector" in out and "0.8" in out


def test_check_fails_on_an_unmigrated_schema(
    pg: PgEndpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code = main(["check", "--url", pg.primary_url, "--schema", "never_migrated"])
    assert code == 1
    out = capsys.readouterr().out
    assert "run `reflexio-store migrate --schema never_migrated`" in out
    assert "pgvector" not in out.split("Not ready.")[1]  # pgvector is there: no advice about it


def test_bad_url_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", f"mysql://u:{PASSWORD}@h/db"]) == 2
    err = capsys.readouterr().err
    assert "unsupported database URL scheme" in err and PASSWORD not in err
    assert "Traceback" not in err


def test_embedding_size_mismatch_is_refused_at_first_use(pg: PgEndpoints, pg_schema: str) -> None:
    settings = StorageSettings(REFLEXIO_EMBEDDING_DIMENSIONS=768)
    factory = SessionFactory.from_config(make_pg_config(pg, pg_schema), settings=settings)
    try:
        with pytest.raises(ConfigurationError, match="512-dimensional"), factory.writer():
            pass
    finally:
        factory.dispose()


def test_sqlite_embedding_size_mismatch_is_refused(tmp_path: object) -> None:
    from reflexio_store import StorageConfigSQLite

    config = StorageConfigSQLite(db_url=f"sqlite:///{tmp_path}/d.db")
    first = SessionFactory.from_config(config, settings=StorageSettings())
    with first.writer() as session:
        session.add(Profile(profile_id="p", user_id="u", content="c", embedding=[0.5] * 512))
    first.dispose()
    _refused_with_dimensions(config, 8, "REFLEXIO_EMBEDDING_DIMENSIONS is 8")


def _refused_with_dimensions(config: Any, dimensions: int, message: str) -> None:
    """A factory for `config` with another embedding size refuses the database at first use."""
    factory = SessionFactory.from_config(
        config, settings=StorageSettings(REFLEXIO_EMBEDDING_DIMENSIONS=dimensions)
    )
    with pytest.raises(ConfigurationError, match=message):
        factory.ensure_schema()
    factory.dispose()


def test_sqlite_embedding_size_is_read_from_any_table_and_check_reports_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only profiles were asked: a store whose vectors were all interactions' took another size,
    and its next search was a raw "Vector dimension mismatch"."""
    from reflexio_store import StorageConfigSQLite
    from reflexio_store.store import Store

    url = f"sqlite:///{tmp_path}/i.db"
    config = StorageConfigSQLite(db_url=url)
    first = SessionFactory.from_config(config, settings=StorageSettings())
    Store(first).add_request("u", [{"content": "hello", "embedding": [0.5] * 512}])
    first.dispose()
    _refused_with_dimensions(config, 768, "holds 512-dimensional embeddings")
    monkeypatch.setenv("REFLEXIO_EMBEDDING_DIMENSIONS", "768")
    monkeypatch.setenv("COLUMNS", "400")
    assert main(["check", "--url", url]) == 1
    assert "holds 512-dimensional embeddings" in " ".join(capsys.readouterr().out.split())


# -- failures are one line with the server's reason; --debug shows the traceback ----------------


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.mark.parametrize(
    "command", [["check"], ["migrate"], ["downgrade", "base", "--yes"], ["downgrade", "0001"]]
)
def test_wrong_password_is_one_line_with_the_servers_reason(
    pg_password_role: PasswordRole,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
) -> None:
    monkeypatch.setenv("COLUMNS", "300")
    assert main([*command, "--url", pg_password_role.bad_url]) != 0
    captured = capsys.readouterr()
    line = _one_error_line(captured.err)
    assert f'password authentication failed for user "{pg_password_role.name}"' in line
    assert "***" in line
    assert "wrong-" not in captured.out + captured.err
    assert "pgvector" not in captured.out.split("connection")[-1] + captured.err
    assert "Traceback" not in captured.err


def test_unreachable_server_is_one_line_and_debug_shows_the_traceback(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.test_db_errors import closed_port_url

    monkeypatch.setenv("COLUMNS", "300")
    url = closed_port_url(PASSWORD)
    assert main(["migrate", "--url", url]) == 2
    captured = capsys.readouterr()
    assert "Connection refused" in _one_error_line(captured.err)
    assert "during the operation" not in captured.err  # nothing ran: it never connected
    assert PASSWORD not in captured.err + captured.out
    assert main(["--debug", "check", "--url", url]) == 2
    captured = capsys.readouterr()
    assert "Traceback" in captured.err and "Connection refused" in captured.err
    assert main(["check", "--debug", "--url", url]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("reflexio-store 0.") and f"schema head {head_revision()}" in out


def test_bad_revision_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    for command in (["migrate", "nope"], ["downgrade", "nope"]):
        assert main([*command, "--url", url]) == 2
        line = _one_error_line(capsys.readouterr().err)
        assert "'nope'" in line and "0001" in line and "head" in line


def _tables(url: str) -> set[str]:
    from sqlalchemy import create_engine, inspect

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return set(inspect(conn).get_table_names())
    finally:
        engine.dispose()


def test_downgrade_base_without_a_terminal_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["migrate", "--url", url]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("yes\n"))  # not a terminal
    assert main(["downgrade", "base", "--url", url]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--yes" in line and "without confirmation" in line
    assert "profiles" in _tables(url)
    assert main(["downgrade", "base", "--yes", "--url", url]) == 0
    assert "profiles" not in _tables(url)


@pytest.mark.parametrize(("answer", "dropped"), [("no", False), ("yes", True)])
def test_downgrade_base_asks_on_a_terminal(tmp_path: Path, answer: str, dropped: bool) -> None:
    url = f"sqlite:///{tmp_path / 'd.db'}"
    assert main(["migrate", "--url", url]) == 0
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "reflexio_store.cli", "downgrade", "base", "--url", url],
        cwd=ROOT,
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    os.close(secondary)
    try:
        os.write(primary, f"{answer}\n".encode())
        out, err = proc.communicate(timeout=120)
    finally:
        os.close(primary)
    assert "Type 'yes'" in out
    assert proc.returncode == (0 if dropped else 2), out + err
    assert ("profiles" not in _tables(url)) is dropped


def test_check_folds_long_urls_and_reports_pgvector_not_yet_created(
    pg_fresh_db: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "70")
    assert main(["check", "--url", pg_fresh_db]) == 1
    out = capsys.readouterr().out
    flat = "".join(ch for ch in out if ch not in "│ \n")
    masked = make_url(pg_fresh_db).render_as_string(hide_password=True)
    assert masked.replace("postgresql:", "postgresql+psycopg:").replace(" ", "") in flat
    assert "…" not in out
    assert "available, not yet created" in " ".join(out.split())
    assert "install pgvector" not in out


def test_alembic_ini_path_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alembic-ini"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.name == "alembic.ini" and path.exists()
    assert "script_location = %(here)s" in path.read_text()


def test_unreachable_reader_is_a_row_with_its_reason(
    pg: PgEndpoints,
    pg_schema: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.test_db_errors import closed_port_url

    monkeypatch.setenv("REFLEXIO_DB_URL", pg.primary_url)
    monkeypatch.setenv("REFLEXIO_POSTGRES_READ_DB_URL", closed_port_url(PASSWORD))
    monkeypatch.setenv("REFLEXIO_POSTGRES_SCHEMA", pg_schema)
    monkeypatch.setenv("COLUMNS", "300")
    main(["check"])
    out = capsys.readouterr().out
    assert "unreachable" in out and "Connection refused" in out and PASSWORD not in out


def test_schema_with_sqlite_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate", "--url", f"sqlite:///{tmp_path / 's.db'}", "--schema", "org_1"]) == 2
    assert "applies to PostgreSQL" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "s.db").exists()


def test_offline_sql_of_an_organization_names_its_version_table(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["migrate", "--sql", "--url", "postgresql://u@h/db", "--schema", "org_9"]) == 0
    out = capsys.readouterr().out
    assert 'CREATE SCHEMA IF NOT EXISTS "org_9"' in out
    assert "CREATE TABLE org_9.alembic_version" in out
    assert "INSERT INTO org_9.alembic_version" in out
