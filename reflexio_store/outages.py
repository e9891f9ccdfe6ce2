"""Outages reach callers as reflexio_store's own errors, decided in one place.

- A database that cannot be reached, refuses the login, is starting up or shutting down, or drops
  the connection mid-transaction: `DatabaseUnavailableError` with the masked URL and the server's
  reason (db_errors.server_reason). It is raised `from None`: the driver's exception can carry the
  statement's parameters, so it never travels with ours.
- SQLite still locked by another writer after its busy timeout: `DatabaseBusyError` naming the
  setting that controls that timeout.
- A PostgreSQL statement cancelled by its statement timeout: `StatementTimeoutError` naming
  the setting (reader sessions take REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS).

Only the opening of a connection is retried (`open_with_retry`): a statement that failed may have
run, so nothing after the connection exists is retried here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError, OperationalError

from reflexio_store.db_errors import (
    is_statement_too_large,
    is_text_too_large_to_index,
    is_unavailable,
    server_reason,
    unavailable_advice,
)
from reflexio_store.errors import (
    ConfigurationError,
    DatabaseBusyError,
    DatabaseUnavailableError,
    ReflexioStoreError,
    StatementTimeoutError,
    ValidationError,
)
from reflexio_store.urls import DatabaseURL

T = TypeVar("T")

BUSY_TIMEOUT_SETTING = "REFLEXIO_POSTGRES_POOL_ACQUIRE_TIMEOUT (pool_acquire_timeout)"
"""On SQLite the acquire timeout is also the busy timeout (engines.create_sqlite_engine)."""

CONNECT_RETRY_SECONDS = 2.0
"""How long opening a connection is retried while the server is starting, restarting or
refusing connections, before DatabaseUnavailableError."""
_FIRST_DELAY = 0.05

# A refused login or a missing database does not fix itself in two seconds: not retried.
_PERMANENT = (
    "authentication failed",
    "does not exist",
    "pg_hba.conf",
    "permission denied",
    "ssl",
    "certificate",
    "invalid",
)


def is_busy(exc: BaseException) -> bool:
    """SQLite's 'database is locked' / 'database table is locked' after the busy timeout."""
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def is_statement_timeout(exc: BaseException) -> bool:
    """PostgreSQL's query_canceled (57014) for a statement timeout, not a cancel request."""
    if not isinstance(exc, DBAPIError):
        return False
    orig = exc.orig
    return getattr(orig, "sqlstate", None) == "57014" and "statement timeout" in str(orig)


def _is_sqlite(exc: DBAPIError) -> bool:
    return "sqlite" in type(exc.orig).__module__


def is_outage(exc: BaseException) -> bool:
    """The database could not be used at all (as opposed to a bad statement or a busy file)."""
    if not isinstance(exc, DBAPIError) or is_busy(exc):
        return False
    if _is_sqlite(exc):
        # SQLite reports "no such table" and syntax errors as OperationalError too.
        text = str(exc.orig).lower()
        return "unable to open" in text or "disk i/o" in text
    return is_unavailable(exc)


def is_transient_connect_failure(exc: BaseException) -> bool:
    """An outage that may end by itself (refused, starting up, shutting down, too many clients),
    not a refused login or a missing database."""
    if not is_outage(exc):
        return False
    reason = server_reason(exc).lower()
    return not any(word in reason for word in _PERMANENT)


def _is_missing_sqlite_vec(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", "")).lower()
    return isinstance(exc, DBAPIError) and "no such function: vec_" in text


def translate(
    exc: BaseException, url: DatabaseURL, *, connected: bool = True
) -> ReflexioStoreError | None:
    """Our error for a driver error that is an outage or a busy SQLite file, else None.
    `connected=False`: the connection was never established, so nothing ran."""
    if is_busy(exc):
        where = url.sqlite_path or url.masked()
        return DatabaseBusyError(
            f"The SQLite database {where} stayed locked by another writer for longer than its "
            f"busy timeout, set by {BUSY_TIMEOUT_SETTING}. Raise that timeout, keep write "
            "transactions short, or retry the operation."
        )
    if is_statement_too_large(exc):
        reason = str(getattr(exc, "orig", exc)).strip()
        return ValidationError(
            f"The operation's input makes a statement larger than the database takes ({reason}): "
            "PostgreSQL binds at most 65,535 values per statement, SQLite limits bound variables "
            "and expression depth. Pass fewer values (ids, filter lists, metadata_filter keys) "
            "or split the call; nothing was written."
        )
    if is_text_too_large_to_index(exc):
        return ValidationError(
            "A text holds more distinct words than PostgreSQL's full-text index takes for one "
            "row (1 MB of index): shorten or split it; nothing was written."
        )
    if _is_missing_sqlite_vec(exc):
        from reflexio_store.engines import sqlite_vec_problem

        return ConfigurationError(
            "Vector search on SQLite needs the sqlite-vec extension, which this process could "
            f"not load: {sqlite_vec_problem() or 'it is not loaded'}. Text search and every "
            "other operation work without it."
        )
    if is_statement_timeout(exc):
        return StatementTimeoutError(
            f"The database {url.masked()} cancelled a statement that ran longer than its "
            "statement timeout; nothing it would have written was committed. Reader sessions "
            "take that timeout from REFLEXIO_POSTGRES_STATEMENT_TIMEOUT_MS (the server or the "
            "role may set one too): raise it, or narrow the operation (filters, a smaller "
            "limit or top_k)."
        )
    if is_outage(exc):
        outcome = (
            "Nothing was sent to it; the operation can be repeated once it is back."
            if not connected
            else "The connection broke during the operation: a write it interrupted may or may "
            "not have committed, so check before repeating it."
        )
        return DatabaseUnavailableError(
            f"The database {url.masked()} is unavailable: {server_reason(exc, url)}. "
            f"{unavailable_advice(url)} {outcome}"
        )
    return None


def raise_translated(exc: BaseException, url: DatabaseURL, *, connected: bool = True) -> None:
    """Raise our error for `exc` (without its driver cause) when it is an outage or a busy
    SQLite file; return otherwise, so the caller re-raises the original."""
    error = translate(exc, url, connected=connected)
    if error is not None:
        raise error from None


def open_with_retry(open_: Callable[[], T], url: DatabaseURL) -> T:
    """`open_()` (a checkout or a session's first connection), retried for up to
    CONNECT_RETRY_SECONDS while the failure is transient. Nothing ran on a connection that was
    never established, so retrying is safe for writes too."""
    deadline = time.monotonic() + CONNECT_RETRY_SECONDS
    delay = _FIRST_DELAY
    while True:
        try:
            return open_()
        except DBAPIError as exc:
            if not is_transient_connect_failure(exc) or time.monotonic() + delay > deadline:
                raise_translated(exc, url, connected=False)
                raise
        time.sleep(delay)  # back-off between connection attempts, not a synchronisation
        delay *= 2


async def aopen_with_retry(open_: Callable[[], Awaitable[T]], url: DatabaseURL) -> T:
    """`open_with_retry` for asyncio."""
    deadline = time.monotonic() + CONNECT_RETRY_SECONDS
    delay = _FIRST_DELAY
    while True:
        try:
            return await open_()
        except DBAPIError as exc:
            if not is_transient_connect_failure(exc) or time.monotonic() + delay > deadline:
                raise_translated(exc, url, connected=False)
                raise
        await asyncio.sleep(delay)
        delay *= 2
