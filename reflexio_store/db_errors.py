"""The server's reason for a failed connection, in one masked line, and the error that carries it.

libpq reports a refused connection as several lines ("connection failed: connection to server at
... failed: FATAL:  password authentication failed for user "app"", then hints). Callers want the
last, useful part: `server_reason` extracts it, and `unavailable_error` wraps it with the masked
URL into a DatabaseUnavailableError. Shared by the migration/check paths and runtime failover.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import URL
from sqlalchemy.exc import DBAPIError, OperationalError

from reflexio_store.errors import DatabaseUnavailableError
from reflexio_store.urls import DatabaseURL, mask_url

# SQLSTATE classes that mean "could not use the server at all": connection exceptions (08),
# invalid authorization (28), missing database (3D000), too many connections (53300), and
# operator intervention: shutting down, starting up, crash recovery (57P01..57P05).
_UNAVAILABLE_SQLSTATES = ("08", "28", "3D000", "53300", "57P0")
# SQLite primary result codes of a file that cannot be used: PERM, READONLY, IOERR, CORRUPT,
# FULL, CANTOPEN, NOLFS, NOTADB.
_SQLITE_UNAVAILABLE = frozenset({3, 8, 10, 11, 13, 14, 22, 26})
_FATAL = re.compile(r"(?:FATAL|ERROR):\s+")
_MAX_REASON = 300


def _secrets_of(url: DatabaseURL | URL | str | None) -> list[str]:
    if url is None or isinstance(url, str):
        return []
    raw = url.url if isinstance(url, DatabaseURL) else url
    found = [raw.password] if raw.password else []
    found += [str(v) for k, v in raw.query.items() if k.lower() in ("password", "sslpassword")]
    return [str(s) for s in found if s]


_SHORT_SECRET = 6


def _masked(text: str, secret: str) -> str:
    """`text` with `secret` replaced by ***. A short secret is replaced only where it stands
    alone: replacing every "e" would mangle the message and show which letters the password is."""
    if len(secret) >= _SHORT_SECRET:
        return text.replace(secret, "***")
    return re.sub(rf"(?<!\w){re.escape(secret)}(?!\w)", "***", text)


def server_reason(exc: BaseException, url: DatabaseURL | URL | str | None = None) -> str:
    """One line saying why the driver or server refused: 'password authentication failed for
    user "app"', 'Connection refused', 'the database system is starting up'. Any password of
    `url` is replaced by ***."""
    orig = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    text = str(orig).strip() or type(orig).__name__
    first = text.splitlines()[0].strip()
    fatal = _FATAL.search(first)
    if fatal is not None:
        reason = first[fatal.end() :]
    elif " failed: " in first:
        reason = first.rsplit(" failed: ", 1)[1]
    else:
        reason = first.removeprefix("connection failed: ")
    for secret in _secrets_of(url):
        reason = _masked(reason, secret)
    reason = reason.strip() or type(orig).__name__
    return reason if len(reason) <= _MAX_REASON else reason[: _MAX_REASON - 3] + "..."


_TOO_LARGE = (
    "number of parameters must be between",  # psycopg: at most 65,535 bound values
    "too many sql variables",  # SQLite's SQLITE_MAX_VARIABLE_NUMBER
    "expression tree is too large",  # SQLite's SQLITE_MAX_EXPR_DEPTH
)


def is_statement_too_large(exc: BaseException) -> bool:
    """The database or its driver refused a statement for its size (too many bound values, an
    expression too deep): the operation's input was too large, the database is fine."""
    if not isinstance(exc, DBAPIError):
        return False
    text = str(exc.orig).lower()
    return any(marker in text for marker in _TOO_LARGE)


def is_text_too_large_to_index(exc: BaseException) -> bool:
    """PostgreSQL refused a row whose text makes a full-text entry over its 1 MB limit (many
    distinct words): the row's input was too large, the database is fine."""
    if not isinstance(exc, DBAPIError):
        return False
    return getattr(exc.orig, "sqlstate", None) == "54000" and "tsvector" in str(exc.orig)


def is_unavailable(exc: BaseException) -> bool:
    """True when `exc` says the database could not be reached or refused the connection (as
    opposed to a bad statement): a connection-level OperationalError or an invalidated
    connection."""
    if not isinstance(exc, DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlite_code = getattr(exc.orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int):
        # Only the file itself failing: "table x already exists" or "no such table" is the
        # statement's (or the file's contents'), and the folder-and-disk advice would mislead.
        return sqlite_code & 0xFF in _SQLITE_UNAVAILABLE
    sqlstate = getattr(exc.orig, "sqlstate", None)
    if sqlstate is None:
        # psycopg gives no SQLSTATE when the connection itself failed, while "database is
        # locked" is a busy database and a statement with too many parameters was refused by
        # the client library.
        return "locked" not in str(exc.orig).lower() and not is_statement_too_large(exc)
    return str(sqlstate).startswith(_UNAVAILABLE_SQLSTATES)


def unavailable_error(
    exc: BaseException, url: DatabaseURL | URL | str, action: str = "connect to"
) -> DatabaseUnavailableError:
    """A DatabaseUnavailableError naming the masked URL and the server's reason (raise it
    `from None`: the driver's exception may carry the connection string)."""
    where = url.masked() if isinstance(url, DatabaseURL) else mask_url(url)
    return DatabaseUnavailableError(
        f"Could not {action} the database {where}: {server_reason(exc, url)}. "
        + unavailable_advice(url)
    )


def unavailable_advice(url: DatabaseURL | URL | str) -> str:
    """What to check when a database cannot be used: a file for SQLite, a server otherwise."""
    sqlite = (
        url.backend == "sqlite"
        if isinstance(url, DatabaseURL)
        else str(url).lower().startswith("sqlite")
    )
    if sqlite:
        return (
            "Check that the file's folder exists and is writable by this process, that the disk "
            "has room, and that the file is a SQLite database on a local disk."
        )
    return (
        "Check that the server is running and reachable and that the URL's user and password "
        "are right."
    )
