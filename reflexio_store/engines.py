"""Engine factories. Plain functions of their arguments: they know nothing of settings.

SQLite: the pysqlite3 driver (SQLite 3.51 with extension loading) when installed, so that sqlite-vec
loads even where the Python's own sqlite3 cannot load extensions; WAL, busy_timeout, foreign_keys
and synchronous=NORMAL on connect; write transactions begin with BEGIN IMMEDIATE so concurrent
writers queue on the busy timeout instead of failing mid-transaction.

PostgreSQL: psycopg 3, a bounded pool (no overflow), labelled by application_name. A connection
is pinged on checkout when it sat in the pool for PING_AFTER_IDLE_SECONDS or more (or is new to
the pool); a dead one is replaced before the caller sees it.
"""

from __future__ import annotations

import logging
import select
import sqlite3
import time
from types import ModuleType
from typing import Any, Literal

from sqlalchemy import event, exc
from sqlalchemy.engine import URL, Connection, Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from reflexio_store.errors import ConfigurationError
from reflexio_store.json_text import postgres_json_dumps
from reflexio_store.pool import BoundedAsyncQueuePool, BoundedQueuePool, labelled_pool_class
from reflexio_store.settings import PoolSettings, expand_home
from reflexio_store.urls import SECRET_QUERY_KEYS, DatabaseURL

Role = Literal["writer", "reader"]
WRITE_OPTION = "reflexio_store_write"
"""Execution option marking a connection whose transactions write (SQLite: BEGIN IMMEDIATE)."""
SINGLE_STATEMENT_OPTION = "reflexio_store_single_statement"
"""SQLite: no BEGIN for this connection; its one statement runs in autocommit (a write statement
takes the write lock itself, waiting on busy_timeout). Setting the isolation level instead would
cost a PRAGMA when the connection goes back to the pool."""

SQLITE_CACHE_KIB = 32 * 1024
SQLITE_MMAP_BYTES = 1 << 30

log = logging.getLogger(__name__)


def sqlite_module() -> ModuleType:
    """pysqlite3 (extension loading guaranteed) when installed, else the standard sqlite3."""
    try:
        import pysqlite3.dbapi2 as module

        return module  # type: ignore[no-any-return]
    except ImportError:  # pragma: no cover - depends on the platform's wheels
        return sqlite3


_sqlite_vec_problem: str | None = None


def sqlite_vec_problem() -> str | None:
    """Why sqlite-vec could not be loaded into this process's last SQLite connection (None: it
    was, or no connection has been opened), with what to do about it."""
    return _sqlite_vec_problem


def _load_sqlite_vec(dbapi_connection: Any) -> bool:
    global _sqlite_vec_problem
    try:
        import sqlite_vec

        dbapi_connection.enable_load_extension(True)
        try:
            sqlite_vec.load(dbapi_connection)
        finally:
            dbapi_connection.enable_load_extension(False)
        _sqlite_vec_problem = None
        return True
    except ImportError:
        _sqlite_vec_problem = "the sqlite-vec package is not installed (pip install sqlite-vec)"
    except AttributeError:
        # The Python was built without loadable SQLite extensions (macOS system and some
        # distribution builds) and pysqlite3-binary has no wheel for this platform.
        _sqlite_vec_problem = (
            "this Python's sqlite3 module cannot load extensions: install pysqlite3-binary "
            "(wheels for Linux x86_64), or use a Python built with loadable SQLite extensions "
            "(python.org installers, or pyenv/uv builds with --enable-loadable-sqlite-extensions)"
        )
    except Exception as exc:  # sqlite3.Error, or pysqlite3's own Error classes
        _sqlite_vec_problem = f"loading it failed: {exc}"
    log.warning(
        "sqlite-vec could not be loaded: %s; vector search is unavailable", _sqlite_vec_problem
    )
    return False


def _use_wal(cursor: Any, timeout_s: float) -> None:
    """Switch the file to WAL (a no-op once it is). Switching a new file needs an exclusive lock,
    and while another process holds one (its first migration) SQLite answers "database is
    locked" at once, without its busy handler: measured in 2 of 40 pairs of processes migrating
    a new file together. Setting up a connection changes no data, so it is retried until the
    busy timeout."""
    deadline = time.monotonic() + timeout_s
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except Exception as exc:  # pysqlite3 and sqlite3 raise their own OperationalError
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)  # back-off while the other process holds the lock
        delay = min(delay * 2, 0.2)


def _apply_sqlite_pragmas(dbapi_connection: Any, busy_timeout_ms: int, memory: bool) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        if not memory:
            _use_wal(cursor, busy_timeout_ms / 1000)
        # A profile row with its 2 KB vector is about one page: the default 2 MB page cache
        # thrashes on a user's rows at 100k profiles. mmap reads share the OS page cache.
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        if not memory:
            cursor.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _install_sqlite_transaction_control(engine: Engine) -> None:
    """Let SQLAlchemy, not the driver, emit BEGIN (SQLAlchemy's documented pysqlite recipe)."""

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        options = conn.get_execution_options()
        if options.get(SINGLE_STATEMENT_OPTION):
            return  # one statement in the driver's autocommit: its own transaction
        if options.get(WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def _sqlite_path(url: DatabaseURL) -> str:
    path = url.sqlite_path
    if path is None:
        return ":memory:"
    path = expand_home(path, "The SQLite path")
    problem = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except (OSError, ValueError) as exc:
        # FileExistsError (a file where a folder should be), NotADirectoryError, name too long,
        # permission denied, an embedded NUL.
        problem = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        if isinstance(exc, FileExistsError):
            problem = f"{exc.filename or 'a part of that path'} is a file, not a folder"
    if problem is not None:
        raise ConfigurationError(
            f"Cannot create the folder of the SQLite database {str(path)[:200]}: {problem}. "
            "Choose a path in a writable folder (REFLEXIO_DB_URL=sqlite:////abs/path/reflexio.db "
            "or SQLITE_FILE_DIRECTORY)."
        )
    return str(path)


def create_sqlite_engine(url: DatabaseURL, pool: PoolSettings) -> Engine:
    module = sqlite_module()
    memory = url.is_memory
    busy_ms = int(pool.acquire_timeout * 1000)
    kwargs: dict[str, Any] = {
        "module": module,
        "pool_logging_name": "reflexio_store.sqlite",
        "hide_parameters": True,
    }
    kwargs.update(
        poolclass=labelled_pool_class(BoundedQueuePool, "writer"),
        max_overflow=0,
        pool_timeout=pool.acquire_timeout,
        # The most recently returned connection is taken first: warm connections stay in use,
        # and one AsyncStore found not ready for inline use (reflexio_store.inline_sqlite) is
        # the next a worker takes and reopens.
        pool_use_lifo=True,
        connect_args={"check_same_thread": False, "timeout": pool.acquire_timeout},
    )
    if memory:
        # An in-memory database lives in one connection: a pool of exactly one, so threads take
        # turns (a shared StaticPool connection would mix their transactions).
        kwargs["pool_size"] = 1
        target: URL | str = "sqlite://"
    else:
        kwargs["pool_size"] = pool.size
        target = f"sqlite:///{_sqlite_path(url)}"
    engine = create_engine(target, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        _load_sqlite_vec(dbapi_connection)
        _apply_sqlite_pragmas(dbapi_connection, busy_ms, memory)

    _install_sqlite_transaction_control(engine)
    return engine


def _aiosqlite_dbapi(aiosqlite: ModuleType, module: ModuleType) -> Any:
    """SQLAlchemy's aiosqlite DBAPI adapter, its error classes taken from `module` (pysqlite3):
    the stock adapter knows only the standard sqlite3's, so pysqlite3's errors left async
    sessions raw (no IntegrityError, no 'database is locked' as DatabaseBusyError)."""
    from sqlalchemy.dialects.sqlite.aiosqlite import AsyncAdapt_aiosqlite_dbapi

    class Adapter(AsyncAdapt_aiosqlite_dbapi):
        def _init_dbapi_attributes(self) -> None:
            super()._init_dbapi_attributes()
            for name in (
                "DatabaseError",
                "Error",
                "IntegrityError",
                "NotSupportedError",
                "OperationalError",
                "ProgrammingError",
                "InterfaceError",
                "InternalError",
                "DataError",
                "Warning",
            ):
                setattr(self, name, getattr(self.sqlite, name))

    return Adapter(aiosqlite, module)


def create_async_sqlite_engine(url: DatabaseURL, pool: PoolSettings) -> AsyncEngine:
    import aiosqlite

    if url.is_memory:
        raise ConfigurationError(
            "Async sessions need an SQLite file: an in-memory database lives in the one "
            "connection of the sync engine. Use sqlite:///path/to/file.db for async sessions."
        )
    module = sqlite_module()
    path = _sqlite_path(url)
    busy_ms = int(pool.acquire_timeout * 1000)

    def connector() -> Any:
        # Runs in aiosqlite's worker thread, so the extension loads on the thread that owns it.
        conn = module.connect(
            path, check_same_thread=False, isolation_level=None, timeout=pool.acquire_timeout
        )
        _load_sqlite_vec(conn)
        return conn

    async def creator() -> Any:
        connection = aiosqlite.Connection(connector, 64)
        # A pooled connection's worker thread must not keep the interpreter alive at exit; what
        # it committed is already durable (WAL), and uncommitted work is rolled back by SQLite.
        connection._thread.daemon = True
        return await connection

    kwargs: dict[str, Any] = {
        "async_creator": creator,
        "module": _aiosqlite_dbapi(aiosqlite, module),
        "hide_parameters": True,
        "poolclass": labelled_pool_class(BoundedAsyncQueuePool, "writer"),
        "pool_size": pool.size,
        "max_overflow": 0,
        "pool_timeout": pool.acquire_timeout,
    }
    engine = create_async_engine("sqlite+aiosqlite://", **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        _apply_sqlite_pragmas(dbapi_connection, busy_ms, url.is_memory)

    _install_sqlite_transaction_control(engine.sync_engine)
    return engine


Pooler = Literal["pgbouncer"] | None


def secret_free_url(url: URL) -> tuple[URL, dict[str, str]]:
    """The URL without its password (user part or libpq ?password= style keys), and those
    secrets as connect arguments: the engine's URL, reprs and logs then hold no secret."""
    secrets: dict[str, str] = {}
    if url.password is not None:
        secrets["password"] = str(url.password)
        # URL.set() ignores None: build the URL again without the password.
        url = URL.create(
            url.drivername,
            username=url.username,
            host=url.host,
            port=url.port,
            database=url.database,
            query=url.query,
        )
    keys = [k for k in url.query if k.lower() in SECRET_QUERY_KEYS]
    for key in keys:
        value = url.query[key]
        secrets[key] = value if isinstance(value, str) else value[-1]
    if keys:
        url = url.difference_update_query(keys)
    return url, secrets


def postgres_connect_args(
    url: URL, *, application_name: str, pooler: Pooler
) -> tuple[URL, dict[str, Any]]:
    """Driver arguments shared by every PostgreSQL engine: label, connect timeout, secrets, and
    behind a transaction-mode pooler no server-side prepared statements (a prepared statement
    lives on one server connection, which the next transaction may not get)."""
    target, secrets = secret_free_url(url)
    args: dict[str, Any] = {"application_name": application_name, "connect_timeout": 10}
    if pooler is not None:
        args["prepare_threshold"] = None
    args.update(secrets)
    return target, args


def _postgres_kwargs(
    url: URL, role: Role, pool: PoolSettings, pooler: Pooler, base_pool: type[Any]
) -> tuple[URL, dict[str, Any]]:
    label = f"reflexio_store.{role}"
    target, connect_args = postgres_connect_args(url, application_name=label, pooler=pooler)
    kwargs: dict[str, Any] = {
        "poolclass": labelled_pool_class(base_pool, role),
        "pool_size": pool.size,
        "max_overflow": 0,
        "pool_timeout": pool.acquire_timeout,
        "pool_logging_name": label,
        "connect_args": connect_args,
        "hide_parameters": True,
        # Large floats read back as floats from jsonb (reflexio_store.json_text).
        "json_serializer": postgres_json_dumps,
    }
    return target, kwargs


def create_postgres_engine(
    url: DatabaseURL, pool: PoolSettings, *, role: Role, pooler: Pooler = None
) -> Engine:
    """A bounded engine for one database and role. It carries nothing of an organization: the
    schema is chosen per session through `schema_translate_map` (see engine_registry)."""
    target, kwargs = _postgres_kwargs(url.url, role, pool, pooler, BoundedQueuePool)
    engine = create_engine(target, **kwargs)
    ping_after_idle(engine)
    return engine


def create_async_postgres_engine(
    url: DatabaseURL, pool: PoolSettings, *, role: Role, pooler: Pooler = None
) -> AsyncEngine:
    target, kwargs = _postgres_kwargs(url.url, role, pool, pooler, BoundedAsyncQueuePool)
    engine = create_async_engine(target, **kwargs)
    ping_after_idle(engine.sync_engine)
    return engine


PING_AFTER_IDLE_SECONDS = 1.0
"""A pooled connection idle at least this long is pinged (a round trip) before use."""
_CHECKED_IN = "reflexio_checked_in"


def _has_news(dbapi_connection: Any) -> bool:
    """True when the server has written to an idle connection (or it has no socket to look at).

    A healthy idle connection has nothing to read; a backend that was terminated, or a server
    that shut down or crashed, leaves an error message and end-of-file on the socket. Looking
    costs a poll of the socket, not a round trip."""
    raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    pgconn = getattr(raw, "pgconn", None)
    try:
        fd = pgconn.socket  # type: ignore[union-attr]
        readable, _, _ = select.select([fd], [], [], 0)
    except Exception:
        return True
    return bool(readable)


def ping_after_idle(engine: Engine) -> None:
    """Ping a connection on checkout when it is new, was idle PING_AFTER_IDLE_SECONDS, or the
    server wrote to it while it was idle; otherwise hand it out at once.

    A ping on every checkout (SQLAlchemy's pool_pre_ping) is a round trip that cost about a
    sixth of a workflow load_state. A dead connection is still replaced before the caller sees
    it: the ping fails and the pool opens another connection."""
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _remember(dbapi_connection: Any, record: Any) -> None:
        record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _ping(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        last = record.info.get(_CHECKED_IN)
        if (
            last is not None
            and time.monotonic() - last < PING_AFTER_IDLE_SECONDS
            and not _has_news(dbapi_connection)
        ):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:
            # The pool discards this connection and checks out (or opens) another one.
            raise exc.DisconnectionError("the pooled connection is closed") from error
