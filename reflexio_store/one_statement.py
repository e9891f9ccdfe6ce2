"""How single-statement operations (workflow save_state / load_state) reach the database.

An operation on the "connection" routes runs exactly one statement, in autocommit, through a
`OneStatement`. The statement is compiled by SQLAlchemy once per (statement, dialect, schema),
with the same SQL, bind casts and bind processors it would use, and run directly on the pooled
DBAPI connection (`DriverStatement`): psycopg in autocommit, or pysqlite, whose connections
already run without an implicit transaction (a write statement takes SQLite's write lock itself,
waiting on busy_timeout). Measured: SQLAlchemy's execution context (cache key, result metadata,
isolation-level switches on checkout and checkin) cost about 150 us a call on PostgreSQL, three
times the statement's own round trip; a pooled SQLite primary-key read ran at 59,000/s straight
on the driver against 9,700/s through a Core connection.

What the Core path gives is kept: a driver error becomes SQLAlchemy's DBAPIError without its
parameters (not in its message, not on the exception: they may carry a run's state), a
connection the error broke is invalidated so the pool never hands it out again, and the caller
(SessionFactory.one_statement) turns outages into DatabaseUnavailableError, and a SQLite file
locked past its busy timeout into DatabaseBusyError, exactly as on every other route. psycopg's
own statement preparation is left as the connection has it (off behind PgBouncer in
transaction mode).

SQLAlchemy's execution events do not see a statement run this way, so an engine with echo on or
with cursor-execute or error listeners (tracing instrumentation, statement logging) keeps the
Core path (`CoreStatement`; SessionFactory.one_statement decides).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from sqlalchemy.engine import Connection, Dialect, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import PoolProxiedConnection
from sqlalchemy.sql import Executable
from sqlalchemy.sql.compiler import SQLCompiler


class OneStatement(Protocol):
    """Runs the one statement of a single-statement operation."""

    dialect: str

    def rows(self, stmt: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        """The statement's rows, as the driver returns them (no result processors)."""

    def execute(self, stmt: Executable, params: Mapping[str, Any]) -> None:
        """Run a statement that returns no rows."""


class CoreStatement:
    """`OneStatement` on a SQLAlchemy Core connection (an engine someone is watching)."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.dialect = conn.dialect.name

    def rows(self, stmt: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        return self.conn.execute(stmt, params).all()

    def execute(self, stmt: Executable, params: Mapping[str, Any]) -> None:
        self.conn.execute(stmt, params)


class _Compiled:
    """One statement's SQL for one schema, and how to turn values into its parameters."""

    __slots__ = ("compiled", "dialect", "positions", "processors", "sql", "statement")

    def __init__(self, statement: Executable, dialect: Dialect, schema: str | None) -> None:
        self.statement = statement  # kept alive: the cache is keyed by its id and the dialect's
        self.dialect = dialect
        compiled: SQLCompiler = statement.compile(  # type: ignore[attr-defined]
            dialect=dialect,
            schema_translate_map={None: schema} if schema else None,
            render_schema_translate=bool(schema),
        )
        self.compiled = compiled
        self.sql = compiled.string
        processors: Mapping[str, Any] = compiled._bind_processors
        self.processors = {name: fn for name, fn in processors.items() if fn is not None}
        # pysqlite's paramstyle is positional (qmark): the names in the order of their marks.
        self.positions = compiled.positiontup if compiled.positional else None

    def parameters(self, values: Mapping[str, Any]) -> Mapping[str, Any] | list[Any]:
        params = self.compiled.construct_params(values)  # a new dict of every parameter
        for name, process in self.processors.items():
            if name in params:
                params[name] = process(params[name])
        if self.positions is not None:
            return [params[name] for name in self.positions]
        return params


_compiled: dict[tuple[int, int, str | None], _Compiled] = {}
_compiled_lock = threading.Lock()


def _compiled_for(statement: Executable, dialect: Dialect, schema: str | None) -> _Compiled:
    # Per engine's dialect object: engines may differ in what their dialect renders.
    key = (id(statement), id(dialect), schema)
    found = _compiled.get(key)
    if found is None or found.statement is not statement or found.dialect is not dialect:
        found = _Compiled(statement, dialect, schema)
        with _compiled_lock:
            _compiled[key] = found
    return found


def checkout(engine: Engine) -> PoolProxiedConnection:
    """A pooled DBAPI connection. `Engine.raw_connection` lets the driver's connect error
    through as it is; here it becomes SQLAlchemy's DBAPIError, as `Engine.connect` raises it,
    so the retry and outage translation of every route apply."""
    error = engine.dialect.loaded_dbapi.Error
    try:
        return engine.raw_connection()
    except error as exc:
        raise DBAPIError.instance(
            None, None, exc, error, hide_parameters=True, dialect=engine.dialect
        ) from exc


class DriverStatement:
    """`OneStatement` straight on a pooled DBAPI connection (psycopg in autocommit, or pysqlite)."""

    def __init__(self, fairy: PoolProxiedConnection, dialect: Dialect, schema: str | None) -> None:
        self.fairy = fairy
        self.raw: Any = fairy.dbapi_connection
        self._dialect = dialect
        self.dialect = dialect.name
        self.schema = schema
        # psycopg opens a transaction before a statement unless in autocommit; pysqlite's
        # connections here run with isolation_level=None, which never opens one.
        self._autocommit = dialect.name == "postgresql"

    def _run(self, stmt: Executable, params: Mapping[str, Any], fetch: bool) -> Any:
        compiled = _compiled_for(stmt, self._dialect, self.schema)
        values = compiled.parameters(params)
        cursor = None
        try:
            # A connection the server dropped while it sat in the pool fails here, not at
            # checkout: the same error path as a failed statement (invalidated, translated).
            if self._autocommit:
                self.raw.autocommit = True
            cursor = self.raw.cursor()
            cursor.execute(compiled.sql, values)
            return cursor.fetchall() if fetch else None
        except self._dialect.loaded_dbapi.Error as exc:
            broken = self._dialect.is_disconnect(exc, self.raw, cursor)
            if broken:
                self.fairy.invalidate(exc)
            # No parameters kept on the error: they hold a run's state (tokens, user data).
            raise DBAPIError.instance(
                compiled.sql,
                None,
                exc,
                self._dialect.loaded_dbapi.Error,
                hide_parameters=True,
                connection_invalidated=broken,
                dialect=self._dialect,
            ) from exc
        finally:
            if cursor is not None:
                cursor.close()

    def rows(self, stmt: Executable, params: Mapping[str, Any]) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = self._run(stmt, params, fetch=True)
        return rows

    def execute(self, stmt: Executable, params: Mapping[str, Any]) -> None:
        self._run(stmt, params, fetch=False)
