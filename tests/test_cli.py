"""The reflexio-store command line: check reports the deployment with secrets masked."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from reflexio_store import ConfigurationError, SessionFactory
from reflexio_store.cli import main
from reflexio_store.migrations import head_revision
from reflexio_store.models import Profile
from reflexio_store.settings import StorageSettings
from tests.conftest import PgEndpoints, make_pg_config

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
    assert "in recovery: True" in out
    assert f"{head_revision()} (head {head_revision()})" in out
    assert "pgvector" in out and "0.8" in out


def test_check_fails_on_an_unmigrated_schema(
    pg: PgEndpoints, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    code = main(["check", "--url", pg.primary_url, "--schema", "never_migrated"])
    assert code == 1
    assert "Run `reflexio-store migrate`" in capsys.readouterr().out


def test_bad_url_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", f"mysql://u:{PASSWORD}@h/db"]) == 2
    err = capsys.readouterr().err
    assert "Unsupported database URL scheme" in err and PASSWORD not in err
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
    second = SessionFactory.from_config(
        config, settings=StorageSettings(REFLEXIO_EMBEDDING_DIMENSIONS=8)
    )
    with pytest.raises(ConfigurationError, match="REFLEXIO_EMBEDDING_DIMENSIONS is 8"):
        second.ensure_schema()
    second.dispose()
