"""The session factory: a writer and a reader, each with its own bounded pool.

`writer()` commits on success and rolls back on error. `reader()` refuses writes (flushes and
DML raise ReadOnlySessionError; on PostgreSQL its transactions are also READ ONLY on the server,
with the optional statement_timeout). With no reader URL the reader uses the writer's engine.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Literal

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
)
from sqlalchemy.orm import ORMExecuteState, Session, SessionTransaction, sessionmaker

from reflexio_store.engines import (
    WRITE_OPTION,
    create_async_postgres_engine,
    create_async_sqlite_engine,
    create_postgres_engine,
    create_sqlite_engine,
)
from reflexio_store.errors import ReadOnlySessionError
from reflexio_store.settings import (
    ResolvedStorage,
    StorageConfig,
    StorageSettings,
    resolve_storage,
)

Consistency = Literal["eventual", "strong"]


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


class SessionFactory:
    """Builds writer and reader sessions for one storage configuration (one organization).

    Engines are created lazily on first use; nothing connects at construction.
    """

    def __init__(self, storage: ResolvedStorage) -> None:
        self.storage = storage
        self._lock = threading.RLock()
        self._writer_engine: Engine | None = None
        self._reader_engine: Engine | None = None
        self._async_writer_engine: AsyncEngine | None = None
        self._async_reader_engine: AsyncEngine | None = None
        self._schema_checked = False
        self._makers: dict[str, Any] = {}
        self._reader_class: type[ReadOnlySession] | None = None
        self.session_info: dict[str, Any] = {
            "embedding_dimensions": storage.embedding_dimensions,
            "backend": storage.backend,
        }

    @classmethod
    def from_config(
        cls, config: StorageConfig | None = None, *, settings: StorageSettings | None = None
    ) -> SessionFactory:
        return cls(resolve_storage(config, settings))

    def __repr__(self) -> str:
        s = self.storage
        reader = s.reader_url.masked() if s.reader_url else "writer"
        return f"SessionFactory(writer={s.writer_url.masked()!r}, reader={reader!r})"

    # -- engines -----------------------------------------------------------------------------

    @property
    def backend(self) -> str:
        return self.storage.backend

    @property
    def has_replica(self) -> bool:
        return self.storage.reader_url is not None

    @property
    def writer_engine(self) -> Engine:
        if self._writer_engine is None:
            with self._lock:
                if self._writer_engine is None:
                    self._writer_engine = self._make_engine("writer")
        return self._writer_engine

    @property
    def reader_engine(self) -> Engine:
        if self.storage.reader_url is None:
            return self.writer_engine
        if self._reader_engine is None:
            with self._lock:
                if self._reader_engine is None:
                    self._reader_engine = self._make_engine("reader")
        return self._reader_engine

    @property
    def async_writer_engine(self) -> AsyncEngine:
        if self._async_writer_engine is None:
            with self._lock:
                if self._async_writer_engine is None:
                    self._async_writer_engine = self._make_async_engine("writer")
        return self._async_writer_engine

    @property
    def async_reader_engine(self) -> AsyncEngine:
        if self.storage.reader_url is None:
            return self.async_writer_engine
        if self._async_reader_engine is None:
            with self._lock:
                if self._async_reader_engine is None:
                    self._async_reader_engine = self._make_async_engine("reader")
        return self._async_reader_engine

    def _make_engine(self, role: Literal["writer", "reader"]) -> Engine:
        s = self.storage
        if s.backend == "sqlite":
            return create_sqlite_engine(s.writer_url, s.writer_pool)
        url = s.reader_url if role == "reader" and s.reader_url else s.writer_url
        pool = s.reader_pool if role == "reader" else s.writer_pool
        return create_postgres_engine(url, pool, role=role, schema=s.schema)

    def _make_async_engine(self, role: Literal["writer", "reader"]) -> AsyncEngine:
        s = self.storage
        if s.backend == "sqlite":
            return create_async_sqlite_engine(s.writer_url, s.writer_pool)
        url = s.reader_url if role == "reader" and s.reader_url else s.writer_url
        pool = s.reader_pool if role == "reader" else s.writer_pool
        return create_async_postgres_engine(url, pool, role=role, schema=s.schema)

    # -- schema readiness ----------------------------------------------------------------------

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
            options: dict[str, Any] = {"expire_on_commit": False, "info": self.session_info}
            if key == "writer":
                bind = self.writer_engine.execution_options(**{WRITE_OPTION: True})
                maker = sessionmaker(bind=bind, **options)
            elif key in ("reader:strong", "reader:eventual"):
                engine = self.writer_engine if key == "reader:strong" else self.reader_engine
                maker = sessionmaker(
                    bind=self._read_only(engine), class_=self._reader_class, **options
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

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A read-write session on the primary: commits on success, rolls back on error."""
        self.ensure_schema()
        maker: sessionmaker[Session] = self._maker("writer")
        with maker() as session, session.begin():
            yield session

    @contextmanager
    def reader(self, consistency: Consistency = "eventual") -> Iterator[ReadOnlySession]:
        """A read-only session on the replica (or on the writer when `consistency="strong"`)."""
        self.ensure_schema()
        maker: sessionmaker[ReadOnlySession] = self._maker(f"reader:{consistency}")
        with maker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def async_writer(self) -> AsyncIterator[AsyncSession]:
        self.ensure_schema()
        maker: async_sessionmaker[AsyncSession] = self._maker("async_writer")
        async with maker() as session, session.begin():
            yield session

    @asynccontextmanager
    async def async_reader(
        self, consistency: Consistency = "eventual"
    ) -> AsyncIterator[AsyncSession]:
        self.ensure_schema()
        maker: async_sessionmaker[AsyncSession] = self._maker(f"async_reader:{consistency}")
        async with maker() as session, session.begin():
            yield session

    @contextmanager
    def writer_connection(self, *, write: bool = True) -> Iterator[Connection]:
        """A Core connection on the primary inside one transaction (committed on success when
        `write`, else rolled back): the cheapest path for single-statement operations."""
        self.ensure_schema()
        engine = self.writer_engine
        if write:
            with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
                yield conn
        else:
            with engine.connect() as conn:
                yield conn

    @asynccontextmanager
    async def async_writer_connection(
        self, *, write: bool = True
    ) -> AsyncIterator[AsyncConnection]:
        self.ensure_schema()
        engine = self.async_writer_engine
        if write:
            async with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
                yield conn
        else:
            async with engine.connect() as conn:
                yield conn

    # -- lifecycle -----------------------------------------------------------------------------

    def dispose(self) -> None:
        """Close every pooled connection (sync engines). Use `adispose` for the async ones."""
        self._makers.clear()
        for engine in (self._writer_engine, self._reader_engine):
            if engine is not None:
                engine.dispose()

    async def adispose(self) -> None:
        for engine in (self._async_writer_engine, self._async_reader_engine):
            if engine is not None:
                await engine.dispose()
        self.dispose()


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
    """Dispose and forget every cached factory (tests, or after forking)."""
    with _factories_lock:
        for factory in _factories.values():
            factory.dispose()
        _factories.clear()
