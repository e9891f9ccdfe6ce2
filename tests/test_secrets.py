"""Secrets never leave: database passwords, login passwords, API tokens, share link tokens and
configuration values are swept for in reprs, DEBUG logs (sqlalchemy.engine included), CLI
output and every exception object with its whole __cause__/__context__ chain."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from reflexio_store import SessionFactory, StorageConfigPostgres, security
from reflexio_store.cli import main
from reflexio_store.errors import ReflexioStoreError, ValidationError
from reflexio_store.settings import StorageSettings, resolve_storage
from reflexio_store.store import Store
from tests.conftest import PgEndpoints

DB_PASSWORD = "DbPw-7f3a-secret"
LOGIN_PASSWORD = "LoginPw-91b2-secret"
CONFIG_SECRET = "sk-ConfigKey-5521-secret"
LONE = "\ud800"


def _with_password(url: str, password: str = DB_PASSWORD) -> str:
    # Unix-socket trust auth ignores the password, so it only travels through our code.
    return make_url(url).set(password=password).render_as_string(hide_password=False)


def _with_query_password(url: str) -> str:
    parsed = make_url(url)
    return parsed.set(query={**parsed.query, "password": DB_PASSWORD}).render_as_string(
        hide_password=False
    )


def exception_texts(exc: BaseException) -> Iterator[str]:
    """Everything an exception object carries, along its whole cause/context chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    pending = [exc]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield repr(current)
        yield str(current)
        yield repr(current.args)
        for name in ("object", "params", "statement", "orig", "detail"):
            value = getattr(current, name, None)
            if value is not None:
                yield repr(value)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)


def leaked(texts: Iterator[str] | list[str], secrets: list[str]) -> list[str]:
    return [secret for text in texts for secret in secrets if secret in text]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("sqlalchemy.engine", "sqlalchemy.pool", "reflexio_store"):
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def secret_factory(pg: PgEndpoints, pg_schema: str) -> Iterator[SessionFactory]:
    """A PostgreSQL factory whose writer and reader URLs carry a password."""
    config = StorageConfigPostgres(
        db_url=_with_password(pg.primary_url),
        read_db_url=_with_query_password(pg.replica_url),
        schema=pg_schema,
    )
    factory = SessionFactory.from_config(config, settings=StorageSettings())
    yield factory
    factory.dispose()


def _raised(call: Callable[[], Any]) -> BaseException:
    try:
        call()
    except ReflexioStoreError as exc:
        return exc
    raise AssertionError("expected a ReflexioStoreError")


@pytest.mark.postgres
def test_no_secret_in_reprs_logs_or_exceptions(
    secret_factory: SessionFactory,
    debug_logs: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(security, "SCRYPT_N", 2**4)  # cheap hashes: this test hashes often
    store = Store(secret_factory)
    org = store.create_organization(
        "acme", password=LOGIN_PASSWORD, configuration_json={"api_key": CONFIG_SECRET}
    )
    issued = store.create_api_token(org.id, "ci")
    link = store.create_share_link("profile", "p1", ttl=60)
    assert store.verify_password("acme", LOGIN_PASSWORD) is not None
    assert store.lookup_api_token(issued.token) is not None
    secrets = [DB_PASSWORD, LOGIN_PASSWORD, CONFIG_SECRET, issued.token, link.token]
    login_secrets = [DB_PASSWORD, LOGIN_PASSWORD, issued.token, link.token]

    refusals = {
        "create with unencodable password": lambda: store.create_organization(
            "other", password=LOGIN_PASSWORD + LONE
        ),
        "create with NUL in password": lambda: store.create_organization(
            "other", password=LOGIN_PASSWORD + "\x00"
        ),
        "set unencodable password": lambda: store.set_password(org.id, LOGIN_PASSWORD + LONE),
        "verify unencodable password": lambda: store.verify_password("acme", LOGIN_PASSWORD + LONE),
        "verify unknown login, unencodable": lambda: store.verify_password(
            "nobody", LOGIN_PASSWORD + LONE
        ),
        "lookup unencodable token": lambda: store.lookup_api_token(issued.token + LONE),
        "lookup token with NUL": lambda: store.lookup_api_token(issued.token + "\x00"),
        "resolve unencodable link": lambda: store.resolve_share_link(link.token + LONE),
        "delete unencodable link": lambda: store.delete_share_link(link.token + LONE),
        # Values PostgreSQL's jsonb refuses: validated before sending, so the server neither
        # answers with the document nor logs it.
        "configuration with NUL": lambda: store.update_configuration(
            org.id, {"api_key": CONFIG_SECRET, "note": "a\x00b"}
        ),
        "configuration with lone surrogate": lambda: store.update_configuration(
            org.id, {"api_key": CONFIG_SECRET, "note": LONE}
        ),
        "configuration with NaN": lambda: store.update_configuration(
            org.id, {"api_key": CONFIG_SECRET, "score": float("nan")}
        ),
        "duplicate login with configuration": lambda: store.create_organization(
            "acme", password=LOGIN_PASSWORD, configuration_json={"api_key": CONFIG_SECRET}
        ),
    }
    for what, call in refusals.items():
        exc = _raised(call)
        assert not leaked(exception_texts(exc), secrets), what
    assert store.get_configuration(org.id) == {"api_key": CONFIG_SECRET}  # nothing was written

    engines = [secret_factory.writer_engine, secret_factory.reader_engine]
    reprs = [
        repr(secret_factory),
        repr(store),
        repr(secret_factory.storage),
        str(secret_factory.storage.describe()),
        repr(issued),
        repr(link),
        repr(org),
    ]
    # Engines, their URLs and pools (issue 7 item 3, landed with the engine registry).
    for engine in engines:
        reprs += [repr(engine), str(engine.url), repr(engine.url), repr(engine.pool)]
        reprs.append(engine.pool.status())
    assert not leaked(reprs, secrets)
    # Logs at DEBUG (SQL, parameters are hidden; rows are logged, and the configuration is a
    # stored row, so only the login secrets are looked for there).
    assert not leaked([r.getMessage() for r in debug_logs.records], login_secrets)


@pytest.mark.postgres
def test_settings_from_the_environment_mask_the_password(
    pg: PgEndpoints, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REFLEXIO_STORAGE", "postgres")
    monkeypatch.setenv("REFLEXIO_DB_URL", _with_password(pg.primary_url))
    monkeypatch.setenv("REFLEXIO_POSTGRES_READ_DB_URL", _with_query_password(pg.replica_url))
    settings = StorageSettings()
    storage = resolve_storage(None, settings)
    texts = [repr(settings), str(settings), repr(storage), str(storage.describe())]
    assert not leaked(texts, [DB_PASSWORD])


@pytest.mark.postgres
def test_cli_check_never_prints_the_password(
    pg: PgEndpoints,
    pg_schema: str,
    capsys: pytest.CaptureFixture[str],
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    for url in (_with_password(pg.primary_url), _with_query_password(pg.primary_url)):
        code = main(["check", "--url", url, "--schema", pg_schema])
        out, err = capsys.readouterr()
        assert code == 0, out + err
        assert not leaked([out, err], [DB_PASSWORD])
    assert not leaked([r.getMessage() for r in debug_logs.records], [DB_PASSWORD])


@pytest.mark.postgres
def test_refused_database_password_is_not_in_the_error(
    pg_password_role: Any, debug_logs: pytest.LogCaptureFixture
) -> None:
    from reflexio_store.errors import DatabaseUnavailableError

    bad_password = make_url(pg_password_role.bad_url).password
    factory = SessionFactory.from_config(
        StorageConfigPostgres(db_url=pg_password_role.bad_url), settings=StorageSettings()
    )
    try:
        exc = _raised(lambda: Store(factory).get_profile("p1"))
    finally:
        factory.dispose()
    assert isinstance(exc, DatabaseUnavailableError)
    secrets = [str(bad_password), pg_password_role.password]
    assert not leaked(exception_texts(exc), secrets)
    assert not leaked([r.getMessage() for r in debug_logs.records], secrets)


class _CountingScrypt:
    def __init__(self) -> None:
        self.calls = 0
        self.real = security._scrypt

    def __call__(self, *args: Any) -> bytes:
        self.calls += 1
        return self.real(*args)


@pytest.mark.parametrize(
    "password",
    ["right", "wrong", "", "x" * 2000, "a\x00b", "a" + LONE, 42, None, b"bytes"],
    ids=["right", "wrong", "empty", "too-long", "nul", "surrogate", "int", "none", "bytes"],
)
@pytest.mark.parametrize("login", ["known", "unknown", "", "a\x00", LONE, 7])
def test_verify_password_costs_one_scrypt_whatever_the_input(
    sqlite_factory: SessionFactory,
    monkeypatch: pytest.MonkeyPatch,
    login: Any,
    password: Any,
) -> None:
    """Known or unknown login, valid or refused input: exactly one scrypt of the default cost,
    so answer times say nothing about which logins exist."""
    monkeypatch.setattr(security, "SCRYPT_N", 2**4)
    store = Store(sqlite_factory)
    store.create_organization("known", password="right")
    counter = _CountingScrypt()
    monkeypatch.setattr(security, "_scrypt", counter)
    try:
        store.verify_password(login, password)
    except ValidationError as exc:
        assert "right" not in str(exc) and LONE not in str(exc)
    assert counter.calls == 1


def test_a_row_shows_its_keys_never_its_text_and_runs_no_sql(
    sqlite_factory: SessionFactory,
) -> None:
    """Printed search hits showed `<...Profile object at 0x...>`; now the keys and status, from
    what is loaded (an expired row shows less rather than querying), never content."""
    store = Store(sqlite_factory)
    store.add_profiles([{"user_id": "u1", "content": "private words", "profile_id": "p1"}])
    (profile,) = store.get_profiles_by_ids(["p1"])
    shown = repr(profile)
    assert shown.startswith("Profile(id=") and "profile_id='p1'" in shown
    assert "user_id='u1'" in shown and "status='pending'" in shown
    assert "private" not in shown
