"""Refused and unreachable databases reach callers as DatabaseUnavailableError: masked URL and
the server's own reason in one line."""

from __future__ import annotations

import socket

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool

from reflexio_store import DatabaseUnavailableError, SessionFactory, StorageConfigPostgres
from reflexio_store.db_errors import is_unavailable, server_reason
from reflexio_store.settings import StorageSettings
from tests.conftest import PgEndpoints
from tests.support.auth import PasswordRole


def closed_port_url(password: str = "secret-pw") -> str:
    # A port nobody listens on: bind one, note it, close it.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"postgresql://app:{password}@127.0.0.1:{port}/app"


def test_wrong_password_is_the_servers_reason(pg_password_role: PasswordRole) -> None:
    factory = SessionFactory.from_config(
        StorageConfigPostgres(db_url=pg_password_role.bad_url), settings=StorageSettings()
    )
    try:
        with pytest.raises(DatabaseUnavailableError) as info:
            factory.ensure_schema()
    finally:
        factory.dispose()
    message = str(info.value)
    assert f'password authentication failed for user "{pg_password_role.name}"' in message
    assert "***" in message and "wrong-" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_refused_connection_is_the_servers_reason() -> None:
    url = closed_port_url()
    factory = SessionFactory.from_config(
        StorageConfigPostgres(db_url=url), settings=StorageSettings()
    )
    try:
        with pytest.raises(DatabaseUnavailableError, match="Connection refused") as info:
            factory.ensure_schema()
    finally:
        factory.dispose()
    assert "secret-pw" not in str(info.value)
    assert "\n" not in str(info.value)


def test_a_bad_statement_is_not_an_outage(pg: PgEndpoints) -> None:
    engine = create_engine(pg.primary_url, poolclass=NullPool)
    try:
        with engine.connect() as conn, pytest.raises(DBAPIError) as info:
            conn.execute(text("SELECT * FROM no_such_table_here"))
    finally:
        engine.dispose()
    assert not is_unavailable(info.value)
    assert server_reason(info.value).startswith('relation "no_such_table_here" does not exist')


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            'connection failed: connection to server on socket "/run/pg/.s.PGSQL.5432" failed: '
            "FATAL:  the database system is starting up",
            "the database system is starting up",
        ),
        (
            'connection failed: connection to server at "10.0.0.5", port 5432 failed: FATAL:  '
            'password authentication failed for user "app"\nconnection to server at ...',
            'password authentication failed for user "app"',
        ),
        (
            'connection failed: connection to server at "127.0.0.1", port 1 failed: Connection '
            "refused\n\tIs the server running on that host and accepting TCP/IP connections?",
            "Connection refused",
        ),
        (
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
            "failed to resolve host 'db.invalid': [Errno -2] Name or service not known",
        ),
    ],
)
def test_reason_is_the_useful_part_of_libpq_messages(message: str, reason: str) -> None:
    # The exception types psycopg raises for these; the texts are libpq's own formats.
    import psycopg

    assert server_reason(psycopg.OperationalError(message)) == reason


def test_reason_masks_the_urls_password() -> None:
    import psycopg

    exc = psycopg.OperationalError("FATAL:  role with password hunter2 rejected")
    from sqlalchemy.engine import make_url

    url = make_url("postgresql://app:hunter2@h/db")
    assert "hunter2" not in server_reason(exc, url)
