"""The session factory: a writer and a reader, each with its own bounded pool.

`writer()` commits on success and rolls back on error. `reader()` refuses writes: flushes and
ORM DML raise ReadOnlySessionError before any SQL is sent, and the database itself refuses SQL
text that writes (PostgreSQL: READ ONLY transactions, with the optional statement_timeout;
SQLite: PRAGMA query_only on the connection while the session holds it), which leaves `reader()`
as ReadOnlySessionError too. With no reader URL the reader uses the writer's engine.
With replica URLs, eventual reads are spread over them and fall back to the primary when a replica
cannot be used (replicas.py). Every session connects before it is handed out (retried while the
server is starting: outages.py), and outages leave as DatabaseUnavailableError / DatabaseBusyError.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal, cast

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

from reflexio_store.db_errors import server_reason
from reflexio_store.engine_registry import EngineKey, Flavor, registry
from reflexio_store.engines import (
    SINGLE_STATEMENT_OPTION,
    WRITE_OPTION,
    Role,
    create_async_postgres_engine,
    create_async_sqlite_engine,
    create_postgres_engine,
    create_sqlite_engine,
)
from reflexio_store.errors import ReadOnlySessionError
from reflexio_store.one_statement import (
    CoreStatement,
    DriverStatement,
    OneStatement,
    checkout,
)
from reflexio_store.outages import aopen_with_retry, is_outage, open_with_retry, raise_translated
from reflexio_store.replicas import LAG_SQL, Choice, ReplicaRouter
from reflexio_store.settings import (
    PoolSettings,
    ResolvedStorage,
    StorageConfig,
    StorageSettings,
    resolve_storage,
)
from reflexio_store.urls import DatabaseURL

Consistency = Literal["eventual", "strong"]
REPLICA_INFO = "reflexio_store.replica"
"""Session.info key: the replica Choice a reader session reads from (absent on the primary)."""
QUERY_ONLY_INFO = "reflexio_store.query_only"
"""Connection.info key (kept by the pool per DBAPI connection): a caller's reader session put
this SQLite connection in PRAGMA query_only; the pool turns it off when the connection returns."""
_SQLITE_READONLY = 8
"""SQLite's result code for a write refused by query_only. A read-only file answers it too, but
only to a write: from a reader session it always means that a write was attempted."""
_PG_READ_ONLY_SQL_TRANSACTION = "25006"


class ReadOnlySession(Session):
    """A Session that refuses to write. Search and listing code takes this type."""


def _refuse_flush(session: Session, _ctx: Any, _instances: Any) -> None:
    raise ReadOnlySessionError(
        "This is a reader session: it cannot write. Use factory.writer() for mutations."
    )


def _refuse_dml(state: ORMExecuteState) -> None:
    if state.is_insert or state.is_update or state.is_delete:
        raise ReadOnlySessionError(
            "This is a reader session: INSERT/UPDATE/DELETE are refused. "
            "Use factory.writer() for mutations."
        )


event.listen(ReadOnlySession, "before_flush", _refuse_flush)
event.listen(ReadOnlySession, "do_orm_execute", _refuse_dml)


def _refused_write(exc: BaseException) -> ReadOnlySessionError | None:
    """Our error for SQL text that the database refused to write through a reader session
    (PostgreSQL's READ ONLY transaction or hot standby, SQLite's query_only), else None."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    if (
        getattr(orig, "sqlstate", None) != _PG_READ_ONLY_SQL_TRANSACTION
        and getattr(orig, "sqlite_errorcode", None) != _SQLITE_READONLY
    ):
        return None
    return ReadOnlySessionError(
        f"This is a reader session: it is read-only, and the database refused a write sent "
        f"through it ({server_reason(exc)}). Use factory.writer() for mutations."
    )


def _run_pragma(dbapi_connection: Any, pragma: str) -> None:
    # On the driver's connection: the pool's reset hook has no SQLAlchemy Connection, and both
    # ends of a reader session's connection go the same way. aiosqlite's adapter runs it too
    # (both hooks are called inside SQLAlchemy's greenlet).
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(pragma)
    finally:
        cursor.close()


def _enter_query_only(_s: Session, _t: SessionTransaction, connection: Connection) -> None:
    # SQLite has no READ ONLY transaction: query_only makes it refuse any write, SQL text
    # included. It outlives the transaction, so the flag is set first: whatever happens next,
    # the pool's reset (_leave_query_only) turns it off before the connection is used again.
    connection.info[QUERY_ONLY_INFO] = True
    _run_pragma(connection.connection.dbapi_connection, "PRAGMA query_only = ON")


def _leave_query_only(
    dbapi_connection: Any, record: ConnectionPoolEntry | None, state: PoolResetState
) -> None:
    """Pool `reset` hook of SQLite engines: every return to the pool, whether the session
    committed, rolled back, raised or closed early, passes here (an invalidated connection is
    closed instead, and its replacement starts with query_only off). Other checkouts pay one
    dict lookup. A failure here makes the pool invalidate the connection."""
    if record is None or not record.info.pop(QUERY_ONLY_INFO, False):
        return
    if state.terminate_only:
        return  # discarded, not pooled (asyncio connections collected as garbage allow no IO)
    _run_pragma(dbapi_connection, "PRAGMA query_only = OFF")


def _sqlite_engine(url: DatabaseURL, pool: PoolSettings, flavor: Flavor) -> Any:
    """An SQLite engine whose pool takes query_only off the connections of callers' readers."""
    if flavor == "sync":
        engine: Any = create_sqlite_engine(url, pool)
        event.listen(engine, "reset", _leave_query_only)
    else:
        engine = create_async_sqlite_engine(url, pool)
        event.listen(engine.sync_engine, "reset", _leave_query_only)
    return engine


def observed(engine: Engine) -> bool:
    """Someone watches this engine's statements (echo, or cursor-execute or error listeners
    such as tracing instrumentation): single statements then take the Core path, which they
    see."""
    dispatch = engine.dispatch
    return bool(
        engine.echo
        or dispatch.before_cursor_execute
        or dispatch.after_cursor_execute
        # SQLAlchemy 2 keeps handle_error listeners on the engine's dialect.
        or engine.dialect.dispatch.handle_error
    )


class SessionFactory:
    """Builds writer and reader sessions for one storage configuration (one organization).

    Engines come from the process-wide registry (reflexio_store.engine_registry): factories of
    organizations on one database share its pools. What belongs to this organization (schema
    translation, read-only transactions, the statement timeout, SQLite's BEGIN IMMEDIATE for
    writes) is applied per session and connection through `Engine.execution_options` views, which
    share the pool of the engine they view. Nothing connects at construction.
    """

    def __init__(self, storage: ResolvedStorage) -> None:
        self.storage = storage
        self._lock = threading.RLock()
        # Keyed (role, flavor), and (role, flavor, url) for each replica.
        self._engines: dict[tuple[Any, ...], Any] = {}
        self._leases: dict[tuple[Any, ...], EngineKey] = {}
        self._replica_binds: dict[tuple[Flavor, DatabaseURL, bool], Any] = {}
        self._sqlite_key: EngineKey | None = None
        self._schema_checked = False
        self.replicas = ReplicaRouter(
            storage.replica_urls,
            lambda url: self._engine("reader", "sync", url),
            lambda url: self._engine("reader", "async", url),
            max_lag_ms=storage.read_max_lag_ms,
        )
        self._makers: dict[str, Any] = {}
        self._reader_class: type[ReadOnlySession] | None = None
        self._query_only_class: type[ReadOnlySession] | None = None
        self.session_info: dict[str, Any] = {
            "embedding_dimensions": storage.embedding_dimensions,
            "backend": storage.backend,
        }
        if storage.vector_exact_rows is not None:
            self.session_info["vector_exact_rows"] = storage.vector_exact_rows

    @classmethod
    def from_config(
        cls, config: StorageConfig | None = None, *, settings: StorageSettings | None = None
    ) -> SessionFactory:
        return cls(resolve_storage(config, settings))

    def __repr__(self) -> str:
        s = self.storage
        reader = ", ".join(u.masked() for u in s.replica_urls) or "writer"
        return f"SessionFactory(writer={s.writer_url.masked()!r}, reader={reader!r})"

    # -- engines -----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.storage.backend

    @property
    def has_replica(self) -> bool:
        return bool(self.replicas)

    @property
    def writer_engine(self) -> Engine:
        """This organization's view of the shared writer engine (its schema translated)."""
        return self._engine("writer", "sync")  # type: ignore[no-any-return]

    @property
    def reader_engine(self) -> Engine:
        """The first replica's engine (the writer's without replicas). Reads choose among all
        replicas through `self.replicas`."""
        if not self.replicas:
            return self.writer_engine
        return self.replicas.replicas[0].engine

    @property
    def async_writer_engine(self) -> AsyncEngine:
        return self._engine("writer", "async")  # type: ignore[no-any-return]

    @property
    def async_reader_engine(self) -> AsyncEngine:
        if not self.replicas:
            return self.async_writer_engine
        return self.replicas.replicas[0].async_engine

    @property
    def engines_in_use(self) -> frozenset[tuple[Role, Flavor]]:
        """Which (role, sync/async) engines this factory has leased so far."""
        return frozenset((slot[0], slot[1]) for slot in self._engines)

    def _engine(self, role: Role, flavor: Flavor, url: DatabaseURL | None = None) -> Any:
        """The engine of `role` (a replica's when `url` is given: each its own bounded pool)."""
        slot = (role, flavor) if url is None else (role, flavor, url)
        engine = self._engines.get(slot)
        if engine is not None:
            return engine
        with self._lock:
            engine = self._engines.get(slot)
            if engine is None:
                engine = self._engines[slot] = self._lease(role, flavor, url, slot)
            return engine

    def _lease(
        self, role: Role, flavor: Flavor, url: DatabaseURL | None, slot: tuple[Any, ...]
    ) -> Any:
        s = self.storage
        url = url or s.writer_url
        pool = s.reader_pool if role == "reader" else s.writer_pool
        if url.is_memory:
            # An in-memory database is its engine's one connection: never shared, never closed.
            return _sqlite_engine(url, pool, flavor)
        key = EngineKey.of(url, role=role, flavor=flavor, pool=pool, pooler=s.pooler)

        def build() -> Any:
            if s.backend == "sqlite":
                return _sqlite_engine(url, pool, flavor)
            if flavor == "sync":
                return create_postgres_engine(url, pool, role=role, pooler=s.pooler)
            return create_async_postgres_engine(url, pool, role=role, pooler=s.pooler)

        shared = registry.acquire(key, build)
        self._leases[slot] = key
        if s.backend == "sqlite" and flavor == "sync":
            registry.max_open_sqlite = s.sqlite_max_open_databases
            self._sqlite_key = key
        if s.schema is None:
            return shared.execution_options()
        return shared.execution_options(schema_translate_map={None: s.schema})

    def touch(self) -> None:
        """SQLite: this file was just used (the registry closes the least recently used)."""
        if self._sqlite_key is not None:
            registry.touch_sqlite(self._sqlite_key)

    def touch_without_waiting(self) -> bool:
        """`touch` for an event loop's thread: marks the file as just used only if that needs
        neither waiting for the registry's lock nor closing another file; False otherwise."""
        key = self._sqlite_key
        return key is not None and registry.mark_sqlite_used(key)

    def leased_writer_engine(self) -> Engine | None:
        """The sync writer engine if this factory holds it already; None rather than building
        or leasing one (which takes locks and may create a folder)."""
        return self._engines.get(("writer", "sync"))

    # -- schema readiness ----------------------------------------------------------------------

    @property
    def schema_checked(self) -> bool:
        """This factory has migrated or verified its schema (`ensure_schema` has run)."""
        return self._schema_checked

    def ensure_schema(self) -> None:
        """Once per factory: migrate (if auto-migrate) or verify the schema is at head."""
        if self._schema_checked:
            return
        with self._lock:
            if self._schema_checked:
                return
            from reflexio_store.migrations import ensure_schema_ready

            ensure_schema_ready(self.storage, self.writer_engine)
            self._schema_checked = True

    async def aensure_schema(self) -> None:
        """`ensure_schema` for async users, on a connection of the async pool: checking through
        the sync engine would hold a second pool's connection beside the async one."""
        if self._schema_checked:
            return
        from reflexio_store.migrations import ensure_schema_ready

        async with self.async_writer_engine.connect() as connection:
            await connection.run_sync(
                lambda sync: ensure_schema_ready(self.storage, _OneConnection.engine(sync))
            )
        self._schema_checked = True

    # -- sessions ------------------------------------------------------------------------------

    def _reader_session_class(self) -> type[ReadOnlySession]:
        """A ReadOnlySession subclass of this factory, carrying the reader's statement timeout
        on PostgreSQL. Registered once per factory, not per session."""
        cls: type[ReadOnlySession] = type("ReadOnlySession", (ReadOnlySession,), {})
        timeout = self.storage.statement_timeout_ms
        if self.storage.backend != "postgresql" or timeout is None:
            return cls
        statement = f"SET LOCAL statement_timeout = {int(timeout)}"

        def after_begin(_s: Session, _t: SessionTransaction, connection: Connection) -> None:
            connection.exec_driver_sql(statement)

        event.listen(cls, "after_begin", after_begin)
        return cls

    def _query_only_session_class(self) -> type[ReadOnlySession]:
        """SQLite: the reader session class handed to callers, whose connections refuse writes
        sent as SQL text. Store's reads (only reads) use the plain one, without the PRAGMAs."""
        assert self._reader_class is not None
        cls: type[ReadOnlySession] = type("QueryOnlySession", (self._reader_class,), {})
        event.listen(cls, "after_begin", _enter_query_only)
        return cls

    def _read_only(self, engine: Any) -> Any:
        # psycopg opens these transactions with BEGIN READ ONLY: the server refuses writes, at
        # no extra round trip. SQLAlchemy restores the setting when the connection is returned.
        if self.storage.backend == "postgresql":
            return engine.execution_options(postgresql_readonly=True)
        return engine

    def _maker(self, key: str) -> Any:
        """Session makers are built once per factory and kind (building them per call is slow)."""
        maker = self._makers.get(key)
        if maker is not None:
            return maker
        with self._lock:
            if key in self._makers:
                return self._makers[key]
            if self._reader_class is None:
                self._reader_class = self._reader_session_class()
            if key.endswith(":query_only") and self._query_only_class is None:
                self._query_only_class = self._query_only_session_class()
            options: dict[str, Any] = {"expire_on_commit": False, "info": self.session_info}
            if key == "writer":
                bind = self.writer_engine.execution_options(**{WRITE_OPTION: True})
                maker = sessionmaker(bind=bind, **options)
            elif key in ("reader:strong", "reader:eventual", "reader:strong:autocommit"):
                engine = self.reader_engine if key == "reader:eventual" else self.writer_engine
                bind = self._read_only(engine)
                if key.endswith(":autocommit"):
                    bind = bind.execution_options(isolation_level="AUTOCOMMIT")
                maker = sessionmaker(bind=bind, class_=self._reader_class, **options)
            elif key == "reader:query_only":
                maker = sessionmaker(
                    bind=self.writer_engine, class_=self._query_only_class, **options
                )
            elif key == "async_reader:query_only":
                maker = async_sessionmaker(
                    bind=self.async_writer_engine,
                    sync_session_class=self._query_only_class,
                    **options,
                )
            elif key == "async_writer":
                abind = self.async_writer_engine.execution_options(**{WRITE_OPTION: True})
                maker = async_sessionmaker(bind=abind, **options)
            else:
                aengine = (
                    self.async_writer_engine
                    if key == "async_reader:strong"
                    else self.async_reader_engine
                )
                maker = async_sessionmaker(
                    bind=self._read_only(aengine), sync_session_class=self._reader_class, **options
                )
            self._makers[key] = maker
            return maker

    def _open(self, maker: Any, url: DatabaseURL, **kwargs: Any) -> Any:
        """A session with its transaction begun and its connection checked out, retried while
        the server is starting (nothing has run on it yet, so this is safe for writes)."""

        def attempt() -> Any:
            session = maker(**kwargs)
            try:
                session.begin()
                session.connection()
            except BaseException:
                session.close()
                raise
            return session

        return open_with_retry(attempt, url)

    async def _aopen(self, maker: Any, url: DatabaseURL, **kwargs: Any) -> Any:
        async def attempt() -> Any:
            session = maker(**kwargs)
            try:
                await session.begin()
                await session.connection()
            except BaseException:
                await session.close()
                raise
            return session

        return await aopen_with_retry(attempt, url)

    def _replica_failed(self, choice: Choice, exc: DBAPIError | None) -> None:
        if choice.measure_lag:
            choice.replica.health.release_lag()
        if exc is not None and is_outage(exc):
            reason = server_reason(exc, choice.replica.url)
            choice.replica.health.failed(reason, probe=choice.probe)
        elif choice.probe:
            choice.replica.health.probe_abandoned()

    def _open_on_replica(self, autocommit: bool = False) -> Session | None:
        """A reader session on a chosen replica, or None when none is usable: unreachable
        (marked down), too far behind, or every replica is backing off."""
        choice = self.replicas.choose()
        if choice is None:
            return None
        replica = choice.replica
        bind = self._replica_bind(replica.url, "sync", autocommit)
        session: Session = self._maker("reader:eventual")(bind=bind)
        session.info[REPLICA_INFO] = choice
        lag: float | None = None
        try:
            session.begin()
            connection = session.connection()
            if choice.measure_lag:
                lag = connection.execute(LAG_SQL).scalar()
        except DBAPIError as exc:
            session.close()
            self._replica_failed(choice, exc)
            if is_outage(exc):
                return None
            raise
        except BaseException:
            session.close()
            self._replica_failed(choice, None)
            raise
        if choice.measure_lag and self.replicas.too_far_behind(replica, lag):
            session.close()
            if choice.probe:
                replica.health.probe_abandoned()
            return None
        replica.health.succeeded(probe=choice.probe)
        return session

    async def _aopen_on_replica(self) -> AsyncSession | None:
        choice = self.replicas.choose()
        if choice is None:
            return None
        replica = choice.replica
        bind = self._replica_bind(replica.url, "async")
        session: AsyncSession = self._maker("async_reader:eventual")(bind=bind)
        session.info[REPLICA_INFO] = choice
        lag: float | None = None
        try:
            await session.begin()
            connection = await session.connection()
            if choice.measure_lag:
                lag = (await connection.execute(LAG_SQL)).scalar()
        except DBAPIError as exc:
            await session.close()
            self._replica_failed(choice, exc)
            if is_outage(exc):
                return None
            raise
        except BaseException:
            await session.close()
            self._replica_failed(choice, None)
            raise
        if choice.measure_lag and self.replicas.too_far_behind(replica, lag):
            await session.close()
            if choice.probe:
                replica.health.probe_abandoned()
            return None
        replica.health.succeeded(probe=choice.probe)
        return session

    def _replica_bind(self, url: DatabaseURL, flavor: Flavor, autocommit: bool = False) -> Any:
        """A replica's read-only engine view, built once (dropped with the makers on dispose)."""
        bind = self._replica_binds.get((flavor, url, autocommit))
        if bind is None:
            bind = self._read_only(self._engine("reader", flavor, url))
            if autocommit:
                bind = bind.execution_options(isolation_level="AUTOCOMMIT")
            self._replica_binds[(flavor, url, autocommit)] = bind
        return bind

    def session_url(self, session: Session | AsyncSession | None) -> DatabaseURL:
        """The URL a session reads from: its replica's, else the primary's."""
        choice = session.info.get(REPLICA_INFO) if session is not None else None
        return choice.replica.url if isinstance(choice, Choice) else self.storage.writer_url

    @property
    def _autocommit_operations(self) -> bool:
        """Store's read operations run each statement in autocommit on PostgreSQL (see
        `read_session`), unless a statement timeout needs a transaction for its SET LOCAL."""
        return self.storage.backend == "postgresql" and self.storage.statement_timeout_ms is None

    @contextmanager
    def read_session(
        self,
        consistency: Consistency = "eventual",
        *,
        autocommit: bool = False,
        refuse_sql_writes: bool = False,
    ) -> Iterator[ReadOnlySession]:
        """Like `reader()`, but driver errors leave untranslated, so that a caller able to run
        its read again (reads.run_read) can tell a broken replica from a bad statement. The
        session's `info[REPLICA_INFO]` names its replica.

        `autocommit`: the session runs one of Store's read operations, whose statements only
        read. On PostgreSQL (without a statement timeout) each statement then runs in
        autocommit: one round trip instead of three (BEGIN READ ONLY, the statement, COMMIT),
        and under READ COMMITTED each statement had its own snapshot anyway. Sessions handed
        to callers (`reader()`) keep their READ ONLY transaction: the server refuses any
        write sent through them.

        `refuse_sql_writes` (`reader()`'s sessions, handed to callers who may send SQL text):
        on SQLite the session's connections are in PRAGMA query_only while it holds them (a
        PRAGMA on taking one, another when the pool takes it back). Store's read operations,
        which only read, go without: their reads cost no extra statement."""
        self.ensure_schema()
        self.touch()
        autocommit = autocommit and self._autocommit_operations
        session = (
            self._open_on_replica(autocommit)
            if consistency == "eventual" and self.replicas
            else None
        )
        if session is None:
            if refuse_sql_writes and self.storage.backend == "sqlite":
                maker = self._maker("reader:query_only")
            else:
                maker = self._maker("reader:strong:autocommit" if autocommit else "reader:strong")
            session = self._open(maker, self.storage.writer_url)
        with session:
            yield session  # type: ignore[misc]
            session.commit()

    @asynccontextmanager
    async def async_read_session(
        self, consistency: Consistency = "eventual", *, refuse_sql_writes: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """`read_session` for asyncio."""
        await self.aensure_schema()
        session = None
        if consistency == "eventual" and self.replicas:
            session = await self._aopen_on_replica()
        if session is None:
            sqlite = refuse_sql_writes and self.storage.backend == "sqlite"
            maker = self._maker("async_reader:query_only" if sqlite else "async_reader:strong")
            session = await self._aopen(maker, self.storage.writer_url)
        async with session:
            yield session
            await session.commit()

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A read-write session on the primary: commits on success, rolls back on error."""
        self.ensure_schema()
        self.touch()
        url = self.storage.writer_url
        try:
            session: Session = self._open(self._maker("writer"), url)
            with session:
                yield session
                session.commit()
        except DBAPIError as exc:
            raise_translated(exc, url)
            raise

    @contextmanager
    def reader(
        self, consistency: Consistency = "eventual", *, autocommit: bool = False
    ) -> Iterator[ReadOnlySession]:
        """A read-only session on a replica (or on the primary when `consistency="strong"`,
        when there is none, or when none is usable). A write raises ReadOnlySessionError: an
        ORM write before any SQL is sent, SQL text that writes once the database refused it
        (PostgreSQL's READ ONLY transaction, SQLite's query_only); nothing is written.

        `autocommit=True` (for code that only reads, statement by statement): on PostgreSQL
        without a statement timeout each statement is its own transaction, one round trip
        instead of BEGIN READ ONLY + statement + COMMIT; on SQLite the connection is not put
        in query_only (two PRAGMAs saved). ORM writes are still refused, but neither database
        refuses a write sent as SQL text, and server-side cursors (yield_per) need the default
        transaction."""
        session: ReadOnlySession | None = None
        try:
            with self.read_session(
                consistency, autocommit=autocommit, refuse_sql_writes=not autocommit
            ) as session:
                yield session
        except DBAPIError as exc:
            refused = _refused_write(exc)
            if refused is not None:
                raise refused from None
            raise_translated(exc, self.session_url(session))
            raise

    @asynccontextmanager
    async def async_writer(self) -> AsyncIterator[AsyncSession]:
        await self.aensure_schema()
        url = self.storage.writer_url
        try:
            session: AsyncSession = await self._aopen(self._maker("async_writer"), url)
            async with session:
                yield session
                await session.commit()
        except DBAPIError as exc:
            raise_translated(exc, url)
            raise

    @asynccontextmanager
    async def async_reader(
        self, consistency: Consistency = "eventual"
    ) -> AsyncIterator[AsyncSession]:
        """`reader()` for asyncio."""
        session: AsyncSession | None = None
        try:
            async with self.async_read_session(consistency, refuse_sql_writes=True) as session:
                yield session
        except Exception as exc:
            # SQLAlchemy's aiosqlite adapter wraps only the standard sqlite3 module's errors:
            # pysqlite3's (engines.sqlite_module) arrive here as they are.
            refused = _refused_write(exc)
            if refused is not None:
                raise refused from None
            if isinstance(exc, DBAPIError):
                raise_translated(exc, self.session_url(session))
            raise

    @contextmanager
    def writer_connection(self, *, write: bool = True) -> Iterator[Connection]:
        """A Core connection on the primary inside one transaction (committed on success when
        `write`, else rolled back): the cheapest path for single-statement operations."""
        self.ensure_schema()
        self.touch()
        url = self.storage.writer_url
        engine = self.writer_engine
        if write:
            engine = engine.execution_options(**{WRITE_OPTION: True})
        try:
            with open_with_retry(engine.connect, url) as conn:
                if write:
                    with conn.begin():
                        yield conn
                else:
                    yield conn
        except DBAPIError as exc:
            raise_translated(exc, url)
            raise

    @contextmanager
    def one_statement(self) -> Iterator[OneStatement]:
        """A runner for ONE statement on the primary, in autocommit: the statement is its own
        transaction (one round trip on PostgreSQL; on SQLite a write takes the write lock itself,
        waiting on busy_timeout). See reflexio_store.one_statement."""
        engine = self.writer_engine
        if observed(engine):
            with self.writer_connection(write=False) as conn:
                if self.backend == "postgresql":
                    conn.execution_options(isolation_level="AUTOCOMMIT")
                else:
                    conn.execution_options(**{SINGLE_STATEMENT_OPTION: True})
                yield CoreStatement(conn)
            return
        self.ensure_schema()
        self.touch()
        url = self.storage.writer_url
        try:
            fairy = open_with_retry(lambda: checkout(engine), url)
            raw: Any = fairy.dbapi_connection
            try:
                yield DriverStatement(fairy, engine.dialect, self.storage.schema)
            finally:
                try:
                    if self.backend == "postgresql" and raw.autocommit and not raw.closed:
                        # Back to the pool as the pool's other users expect it: transactional.
                        raw.autocommit = False
                except engine.dialect.loaded_dbapi.Error as exc:
                    fairy.invalidate(exc)  # broken: closed, never handed out again
                fairy.close()
        except DBAPIError as exc:
            raise_translated(exc, url)
            raise

    @asynccontextmanager
    async def async_writer_connection(
        self, *, write: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        await self.aensure_schema()
        url = self.storage.writer_url
        engine = self.async_writer_engine
        if write:
            engine = engine.execution_options(**{WRITE_OPTION: True})
        try:
            async with await aopen_with_retry(engine.connect, url) as conn:
                if write:
                    async with conn.begin():
                        yield conn
                else:
                    yield conn
        except DBAPIError as exc:
            raise_translated(exc, url)
            raise

    # -- lifecycle -----------------------------------------------------------------------------

    def dispose(self) -> None:
        """Give back this factory's sync engines: an engine no other organization uses is
        disposed (its connections closed). Use `adispose` for the async ones too."""
        self._release("sync")

    async def adispose(self) -> None:
        for engine in self._release("async"):
            await engine.dispose()
        self.dispose()

    def _release(self, flavor: Flavor) -> list[Any]:
        """Forget this factory's engines of `flavor`; dispose (sync) or return (async) those
        whose last lease this was."""
        unused: list[Any] = []
        with self._lock:
            self._makers.clear()
            self._replica_binds.clear()
            for slot in [slot for slot in self._engines if slot[1] == flavor]:
                view = self._engines.pop(slot)
                key = self._leases.pop(slot, None)
                engine = view if key is None else registry.release(key)
                if slot == ("writer", "sync"):
                    self._sqlite_key = None
                if engine is not None:
                    unused.append(engine)
        if flavor == "sync":
            for engine in unused:
                engine.dispose()
        return unused


class _OneConnection:
    """Lends one open connection where `ensure_schema_ready` expects an engine to connect
    from; leaving each block rolls back, as closing a pooled connection would."""

    def __init__(self, connection: Connection) -> None:
        self._connection = connection

    @classmethod
    def engine(cls, connection: Connection) -> Engine:
        return cast(Engine, cls(connection))

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        try:
            yield self._connection
        finally:
            self._connection.rollback()


_factories: dict[ResolvedStorage, SessionFactory] = {}
_factories_lock = threading.Lock()


def get_session_factory(config: StorageConfig | None = None) -> SessionFactory:
    """The process-wide factory for `config` (default: the environment), built on first call."""
    storage = resolve_storage(config)
    with _factories_lock:
        factory = _factories.get(storage)
        if factory is None:
            factory = _factories[storage] = SessionFactory(storage)
        return factory


def reset_session_factories() -> None:
    """Dispose and forget every cached factory and shared engine (tests, or after forking)."""
    with _factories_lock:
        for factory in _factories.values():
            factory.dispose()
        _factories.clear()
    registry.dispose_all()
