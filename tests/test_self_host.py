"""Self-host mode: DEPLOYMENT_MODE=self-host, SELF_HOST_USERNAME / SELF_HOST_PASSWORD and
DATA_DB_URL bootstrap the one organization on first use; the password is scrypt-hashed, rotated
when the variable changes, and never logged."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from reflexio_store import ConfigurationError, SessionFactory
from reflexio_store.cli import main
from reflexio_store.models import Organization
from reflexio_store.settings import resolve_storage
from reflexio_store.store.organizations import get_organization_by_login, verify_password

FIRST = "first-Secret-9f2"
SECOND = "second-Secret-7c1"


def _self_host_env(monkeypatch: pytest.MonkeyPatch, url: str, password: str) -> None:
    monkeypatch.setenv("DEPLOYMENT_MODE", "self-host")
    monkeypatch.setenv("SELF_HOST_USERNAME", "admin")
    monkeypatch.setenv("SELF_HOST_PASSWORD", password)
    monkeypatch.setenv("DATA_DB_URL", url)


def _first_use(password: str, monkeypatch: pytest.MonkeyPatch, url: str) -> tuple[bool, bool, str]:
    """Start a factory from the environment; return (new password ok, FIRST ok, stored hash)."""
    _self_host_env(monkeypatch, url, password)
    factory = SessionFactory(resolve_storage())
    try:
        with factory.writer() as session:
            org = get_organization_by_login(session, "admin")
            assert org is not None and org.password_hash is not None
            stored = org.password_hash
            new_ok = verify_password(session, "admin", password) is not None
            first_ok = verify_password(session, "admin", FIRST) is not None
            count = session.query(Organization).count()
    finally:
        factory.dispose()
    assert count == 1
    return new_ok, first_ok, stored


def test_bootstrap_on_first_use_and_rotation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    url = f"sqlite:///{tmp_path / 'selfhost.db'}"
    caplog.set_level(logging.DEBUG)
    logging.getLogger("sqlalchemy.engine").setLevel(logging.DEBUG)
    try:
        new_ok, first_ok, first_hash = _first_use(FIRST, monkeypatch, url)
        assert new_ok and first_ok
        assert first_hash.startswith("scrypt") and FIRST not in first_hash
        # Same password on the next start: nothing rotates.
        assert _first_use(FIRST, monkeypatch, url)[2] == first_hash
        # The variable changed: the hash is rotated, the old password stops working.
        new_ok, first_ok, second_hash = _first_use(SECOND, monkeypatch, url)
        assert new_ok and not first_ok and second_hash != first_hash
    finally:
        logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "rotated" in logged and "created organization 'admin'" in logged
    assert FIRST not in logged and SECOND not in logged
    storage = resolve_storage()
    for shown in (repr(storage), str(storage.describe())):
        assert SECOND not in shown


def test_migrate_bootstraps_on_postgres(
    pg_fresh_db: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEPLOYMENT_MODE", "self_host")  # Reflexio's spelling
    monkeypatch.setenv("REFLEXIO_STORAGE", "postgres")
    _self_host_env(monkeypatch, pg_fresh_db, FIRST)
    monkeypatch.setenv("DEPLOYMENT_MODE", "self_host")
    assert main(["migrate"]) == 0
    assert main(["check"]) == 0
    out = capsys.readouterr().out
    assert "Self-host organization admin: created" in out and FIRST not in out
    engine = create_engine(pg_fresh_db, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT login, password_hash FROM public.organizations")).all()
    finally:
        engine.dispose()
    assert [login for login, _ in rows] == ["admin"]
    assert rows[0][1].startswith("scrypt") and FIRST not in rows[0][1]


def test_self_host_needs_both_variables(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOYMENT_MODE", "self-host")
    monkeypatch.setenv("DATA_DB_URL", f"sqlite:///{tmp_path / 'x.db'}")
    monkeypatch.setenv("SELF_HOST_USERNAME", "admin")
    with pytest.raises(ConfigurationError, match="SELF_HOST_PASSWORD"):
        resolve_storage()


def test_two_names_of_the_database_url_must_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DB_URL", "postgresql://u:pw-one@h/a")
    monkeypatch.setenv("REFLEXIO_DB_URL", "postgresql://u:pw-two@h/b")
    with pytest.raises(ConfigurationError, match="REFLEXIO_DB_URL and DATA_DB_URL") as info:
        resolve_storage()
    assert "pw-one" not in str(info.value) and "pw-two" not in str(info.value)


async def test_async_first_use_bootstraps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _self_host_env(monkeypatch, f"sqlite:///{tmp_path / 'async.db'}", FIRST)
    factory = SessionFactory(resolve_storage())
    try:
        async with factory.async_writer() as session:
            logins = (await session.execute(text("SELECT login FROM organizations"))).all()
    finally:
        await factory.adispose()
    assert [login for (login,) in logins] == ["admin"]
